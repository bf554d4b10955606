//! The builtin tools: small, side-effect-free utilities every chat gets. They exercise the
//! whole fan-out/fan-in path (and let tests run many calls in parallel) until MCP tools
//! arrive.

use std::time::Duration;

use serde_json::{Value, json};

use crate::providers::ToolSpec;

/// The set of builtin tools.
#[derive(Clone, Debug, Default)]
pub struct Builtins;

/// Longest `sleep` a model may ask for.
const MAX_SLEEP_SECS: f64 = 30.0;

impl Builtins {
    /// What the model is told about them.
    pub fn specs(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "current_time".into(),
                description: "Returns the current date and time in UTC (RFC 3339).".into(),
                input_schema: std::sync::Arc::new(json!({ "type": "object", "properties": {} })),
            },
            ToolSpec {
                name: "sleep".into(),
                description: "Waits the given number of seconds (at most 30), then returns. Useful to wait for something external.".into(),
                input_schema: std::sync::Arc::new(json!({
                    "type": "object",
                    "properties": { "seconds": { "type": "number", "minimum": 0, "maximum": MAX_SLEEP_SECS } },
                    "required": ["seconds"]
                })),
            },
        ]
    }

    /// Whether `name` is a builtin.
    pub fn has(&self, name: &str) -> bool {
        matches!(name, "current_time" | "sleep")
    }

    /// Whether the builtin `name` changes nothing outside the call (so a plan step may
    /// offer it): both do, today; a builtin that writes must answer `false`.
    pub fn changes_nothing(&self, name: &str) -> bool {
        matches!(name, "current_time" | "sleep")
    }

    /// Runs a builtin; `Err` is an error result the model sees (not a job failure).
    pub async fn run(&self, name: &str, arguments: &Value) -> Result<Value, String> {
        match name {
            "current_time" => Ok(json!({ "utc": chrono::Utc::now().to_rfc3339() })),
            "sleep" => {
                let seconds = arguments
                    .get("seconds")
                    .and_then(Value::as_f64)
                    .ok_or("`seconds` must be a number")?;
                if !(0.0..=MAX_SLEEP_SECS).contains(&seconds) {
                    return Err(format!("`seconds` must be between 0 and {MAX_SLEEP_SECS}"));
                }
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                Ok(json!({ "slept_seconds": seconds }))
            }
            other => Err(format!("unknown tool `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_name_is_reserved_for_clients() {
        let names: Vec<String> = Builtins.specs().into_iter().map(|s| s.name).collect();
        let reserved = agentq_core::domain::BUILTIN_TOOL_NAMES;
        assert!(names.iter().all(|n| reserved.contains(&n.as_str())));
        assert!(reserved.contains(&crate::tools::READ_SKILL_TOOL));
        assert!(names.iter().all(|n| Builtins.has(n)));
    }
}
