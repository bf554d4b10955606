//! Which wire format a provider speaks. One type for the worker's flags (`--provider`), the
//! admin API (`kind`), the `providers.kind` column and the worker's model resolver, so an
//! unknown kind is refused where it enters (a 400 naming `kind`, a flag error, a row that
//! does not decode) and is never taken for OpenAI.

use serde::{Deserialize, Serialize};

/// A provider's wire format (ARCHITECTURE.md §3). Stored as text; the `providers.kind`
/// CHECK constraint lists the [`ProviderKind::STORED`] values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, clap::ValueEnum,
)]
#[sqlx(type_name = "text", rename_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProviderKind {
    /// OpenAI Chat Completions with `stream: true` (OpenAI, OpenRouter, vLLM, Ollama, LiteLLM).
    Openai,
    /// Any OpenAI-compatible server at a base URL of your own; the key is optional.
    #[value(skip)]
    OpenaiCompat,
    /// Anthropic Messages with `stream: true`.
    Anthropic,
    /// OpenRouter, which speaks OpenAI Chat Completions.
    #[value(skip)]
    Openrouter,
    /// AWS Bedrock's Converse stream API: a stored bearer token (a Bedrock API key), or no
    /// stored key and the worker's AWS credential chain with SigV4 (stored only).
    #[value(skip)]
    Bedrock,
    /// Built-in echo model: no network, for local trials and benchmarks (flags only; never
    /// stored).
    Echo,
}

impl ProviderKind {
    /// The kinds a provider stored as data may have (the admin API refuses the others).
    pub const STORED: [ProviderKind; 5] = [
        ProviderKind::Openai,
        ProviderKind::OpenaiCompat,
        ProviderKind::Anthropic,
        ProviderKind::Openrouter,
        ProviderKind::Bedrock,
    ];

    /// The wire name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::OpenaiCompat => "openai-compat",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Openrouter => "openrouter",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Echo => "echo",
        }
    }

    /// The base URL used when none is given; `None` when the kind needs one
    /// (`openai-compat`) or has none (`echo`). Bedrock's is empty: the worker calls the
    /// regional endpoint `https://bedrock-runtime.{region}.amazonaws.com`.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Openrouter => Some("https://openrouter.ai/api/v1"),
            ProviderKind::Bedrock => Some(""),
            ProviderKind::OpenaiCompat | ProviderKind::Echo => None,
        }
    }

    /// Whether a stored provider of this kind is unusable without an API key. A row of
    /// such a kind without a key is refused (the `providers_api_key_required` check, a 400
    /// naming `api_key`); self-hosted OpenAI-compatible servers often need none, and
    /// Bedrock without a stored token uses the worker's AWS credential chain.
    pub fn needs_api_key(self) -> bool {
        match self {
            ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Openrouter => true,
            ProviderKind::OpenaiCompat | ProviderKind::Bedrock | ProviderKind::Echo => false,
        }
    }

    /// Whether a provider of this kind without a stored key authenticates with what the
    /// worker finds around it (Bedrock: environment, profile, instance or task role).
    pub fn allows_ambient_credentials(self) -> bool {
        matches!(self, ProviderKind::Bedrock)
    }

    /// Whether requests to a provider of this kind may carry `prompt_cache_key` (OpenAI's
    /// cache routing hint). Only OpenAI is known to accept it: an OpenAI-compatible server or
    /// a router may reject a field it does not know (ARCHITECTURE.md §7).
    pub fn accepts_prompt_cache_key(self) -> bool {
        matches!(self, ProviderKind::Openai)
    }

    /// Whether a request to a provider of this kind caps its output with
    /// `max_completion_tokens` instead of `max_tokens`: OpenAI takes it for every model,
    /// and its reasoning models refuse `max_tokens` (also on requests without an effort,
    /// such as a compaction summary or a title). The other OpenAI-style kinds keep
    /// `max_tokens`, which every such server knows.
    pub fn caps_reasoning_with_max_completion_tokens(self) -> bool {
        matches!(self, ProviderKind::Openai)
    }

    /// Whether a provider of this kind may be stored as data.
    pub fn is_stored(self) -> bool {
        Self::STORED.contains(&self)
    }

    /// The stored kinds as `a, b, c`, for error messages.
    pub fn stored_list() -> String {
        Self::STORED.map(ProviderKind::as_str).join(", ")
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_the_stored_list() {
        for kind in ProviderKind::STORED {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            let back: ProviderKind = serde_json::from_value(json).unwrap();
            assert_eq!(back, kind);
        }
        assert_eq!(
            ProviderKind::stored_list(),
            "openai, openai-compat, anthropic, openrouter, bedrock"
        );
        // Only Bedrock calls without a stored key on credentials of the worker's own.
        for kind in ProviderKind::STORED {
            assert_eq!(
                kind.allows_ambient_credentials(),
                kind == ProviderKind::Bedrock
            );
        }
        assert!(serde_json::from_str::<ProviderKind>("\"gpt\"").is_err());
        assert!(!ProviderKind::Echo.is_stored());
    }

    #[test]
    fn the_flag_keeps_its_three_values() {
        use clap::ValueEnum;
        let names: Vec<_> = ProviderKind::value_variants()
            .iter()
            .filter_map(|k| k.to_possible_value())
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(names, ["openai", "anthropic", "echo"]);
    }
}
