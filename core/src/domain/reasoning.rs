//! How hard a model reasons before it answers (issue #13, item 3): a model's
//! `reasoning_effort` option, which a chat may override. One type for the `models` and
//! `chats` columns, the admin and chat APIs and the worker's requests, so an unknown value
//! is refused where it enters (a 400 naming the field, a row that does not decode).
//!
//! The worker sends it as each provider understands it (ARCHITECTURE.md §7): OpenAI's
//! `reasoning_effort` as is, Anthropic's `thinking` with the token budget
//! [`ReasoningEffort::thinking_budget`] gives the level.

use serde::{Deserialize, Serialize};

/// A reasoning level. Stored as text; the `models.reasoning_effort` and
/// `chats.reasoning_effort` CHECK constraints list the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReasoningEffort {
    /// A little reasoning (Anthropic: 1,024 thinking tokens, its minimum).
    Low,
    /// Some reasoning (Anthropic: 4,096 thinking tokens).
    Medium,
    /// Much reasoning (Anthropic: 16,384 thinking tokens).
    High,
}

impl ReasoningEffort {
    /// Every value, in order.
    pub const ALL: [ReasoningEffort; 3] = [
        ReasoningEffort::Low,
        ReasoningEffort::Medium,
        ReasoningEffort::High,
    ];

    /// The wire name, as stored and sent (OpenAI's `reasoning_effort` takes it as is).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
        }
    }

    /// Anthropic's `thinking.budget_tokens` for this level. Anthropic accepts 1,024 at
    /// least; each level is four times the one below, and `high` stays well inside the
    /// output limits of the models that think (32k and up), since the request's
    /// `max_tokens` is this budget plus the answer's own cap.
    pub fn thinking_budget(self) -> u32 {
        match self {
            ReasoningEffort::Low => 1_024,
            ReasoningEffort::Medium => 4_096,
            ReasoningEffort::High => 16_384,
        }
    }
}

/// Read from a string, so a value of another JSON type is an error about this field
/// ("invalid type"), not a JSON syntax error (serde_json's derived enums report one).
impl<'de> Deserialize<'de> for ReasoningEffort {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        ReasoningEffort::ALL
            .into_iter()
            .find(|e| e.as_str() == text)
            .ok_or_else(|| serde::de::Error::unknown_variant(&text, &["low", "medium", "high"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_refuse_other_values() {
        for effort in ReasoningEffort::ALL {
            let json = serde_json::to_value(effort).unwrap();
            assert_eq!(json, effort.as_str());
            assert_eq!(
                serde_json::from_value::<ReasoningEffort>(json).unwrap(),
                effort
            );
        }
        assert!(serde_json::from_value::<ReasoningEffort>("max".into()).is_err());
        assert!(serde_json::from_value::<ReasoningEffort>(3.into()).is_err());
    }

    #[test]
    fn budgets_grow_with_the_level_from_anthropics_minimum() {
        assert_eq!(ReasoningEffort::Low.thinking_budget(), 1_024);
        assert!(ReasoningEffort::Medium.thinking_budget() > ReasoningEffort::Low.thinking_budget());
        assert!(
            ReasoningEffort::High.thinking_budget() > ReasoningEffort::Medium.thinking_budget()
        );
    }
}
