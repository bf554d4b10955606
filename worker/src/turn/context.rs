//! The context budget of a step (issue #13 item 1; ARCHITECTURE.md §7): before each
//! provider call the worker knows, without calling anything, about how many tokens the
//! request takes, and so whether it must compact first.
//!
//! The estimate starts from what the provider itself reported: the input tokens of the
//! previous step's request, plus that step's output (now part of the conversation), plus an
//! estimate of every message added since (tool results, a new user message). With no
//! previous step to start from (a chat's first step, or the first after a compaction, whose
//! request no longer extends the last one) the whole request is estimated.
//!
//! Estimating text: models whose family `tiktoken-rs` knows (OpenAI's `gpt-*`, `o1`..`o4`,
//! and their fine-tunes) are counted with their own encoding; every other model (Anthropic's,
//! whose tokenizer is not public, and whatever an OpenAI-compatible server runs) is counted
//! as one token per 3 bytes of JSON, which overestimates English prose (about 4 bytes a
//! token) and is close for code and JSON. Overestimating only compacts a little early;
//! underestimating would send a request the provider refuses. Text over 256 KiB is never
//! tokenized (it would take seconds); it is estimated by size.

use agentq_core::domain::{Message, MessageKind, Role};
use tiktoken_rs::CoreBPE;

use crate::providers::ToolSpec;

/// Bytes of JSON counted as one token when the model's tokenizer is unknown.
const BYTES_PER_TOKEN: usize = 3;

/// Text longer than this is estimated by size, not tokenized.
const MAX_TOKENIZED_BYTES: usize = 256 * 1024;

/// Tokens counted for each message's framing (role, separators), as OpenAI documents.
const TOKENS_PER_MESSAGE: u64 = 4;

/// Output reserved when the model has no `max_output_tokens`.
const DEFAULT_OUTPUT_RESERVE: u32 = 4096;

/// Counts tokens of text the way one model family does, or estimates them.
#[derive(Clone, Copy)]
pub struct TokenCounter {
    bpe: Option<&'static CoreBPE>,
}

impl TokenCounter {
    /// The counter for `model`: its own encoding when `tiktoken-rs` knows the family,
    /// else the size estimate.
    pub fn for_model(model: &str) -> Self {
        let bpe = tiktoken_rs::tokenizer::get_tokenizer(model)
            .and_then(|t| tiktoken_rs::bpe_for_tokenizer(t).ok());
        Self { bpe }
    }

    /// Whether this counter uses a real encoding.
    pub fn is_exact(&self) -> bool {
        self.bpe.is_some()
    }

    /// Tokens of `text`.
    pub fn text(&self, text: &str) -> u64 {
        match self.bpe {
            Some(bpe) if text.len() <= MAX_TOKENIZED_BYTES => {
                bpe.encode_with_special_tokens(text).len() as u64
            }
            _ => text.len().div_ceil(BYTES_PER_TOKEN) as u64,
        }
    }

    /// Tokens of one message as a provider receives it (its content as JSON, plus framing).
    pub fn message(&self, message: &Message) -> u64 {
        let json = serde_json::to_string(&message.content).unwrap_or_default();
        self.text(&json) + TOKENS_PER_MESSAGE
    }

    /// Tokens of a whole request: the system message, the tools and the messages.
    pub fn request(&self, system: Option<&str>, tools: &[ToolSpec], messages: &[Message]) -> u64 {
        let system = system.map_or(0, |s| self.text(s) + TOKENS_PER_MESSAGE);
        let tools = if tools.is_empty() {
            0
        } else {
            self.text(&serde_json::to_string(tools).unwrap_or_default())
        };
        system + tools + messages.iter().map(|m| self.message(m)).sum::<u64>()
    }
}

/// How much of the model's context a step's request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Input tokens a request may take at most: the context window less the output
    /// reserved for the answer.
    pub input: u64,
    /// Past this many input tokens, the step compacts first.
    pub compact_at: u64,
}

impl Budget {
    /// The budget of a model with `context_limit` tokens and `max_output_tokens` (`None`:
    /// 4,096 reserved, at most a quarter of the window) plus `reasoning` tokens it may
    /// think (a reasoning effort's budget: Anthropic counts thinking in `max_tokens`, and
    /// OpenAI's reasoning tokens take room in the window too), compacting at `threshold`
    /// (a share, 0.8 by default). `None` when the model states no context limit: no
    /// compaction.
    pub fn new(
        context_limit: Option<u32>,
        max_output_tokens: Option<u32>,
        reasoning: u32,
        threshold: f64,
    ) -> Option<Self> {
        let limit = u64::from(context_limit?);
        let output =
            u64::from(max_output_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVE.min(context_limit? / 4)))
                + u64::from(reasoning);
        let input = limit.saturating_sub(output).max(1);
        let compact_at = ((input as f64) * threshold.clamp(0.05, 1.0)) as u64;
        Some(Self {
            input,
            compact_at: compact_at.max(1),
        })
    }
}

/// Estimated input tokens of a request of `history` (the prompt history: summary first),
/// `system` and `tools`: the last answer's reported input and output plus what follows it,
/// or the whole request when no answer written after the summary reported usage.
pub fn estimate(
    counter: &TokenCounter,
    system: Option<&str>,
    tools: &[ToolSpec],
    history: &[Message],
) -> u64 {
    // A usage reported before the latest summary measured the conversation before it was
    // compacted: no anchor then.
    let summary = history
        .first()
        .filter(|m| m.kind == MessageKind::Summary)
        .map(|m| m.id);
    let anchor = history.iter().rposition(|m| {
        summary.is_none_or(|s| m.id > s)
            && m.role == Role::Assistant
            && m.kind == MessageKind::Message
            && m.usage.as_ref().is_some_and(|u| u.input_tokens > 0)
    });
    match anchor {
        Some(i) => {
            let usage = history[i].usage.as_ref().expect("anchor has usage");
            // Saturating: a provider's report is not trusted to be sane.
            history[i + 1..].iter().map(|m| counter.message(m)).fold(
                usage.input_tokens.saturating_add(usage.output_tokens),
                u64::saturating_add,
            )
        }
        None => counter.request(system, tools, history),
    }
}

#[cfg(test)]
mod tests {
    use agentq_core::domain::Usage;
    use uuid::Uuid;

    use super::*;

    fn message(role: Role, text: &str, usage: Option<Usage>) -> Message {
        let mut m = super::super::history::unsaved_user_message(Uuid::nil(), text.into());
        m.role = role;
        m.usage = usage;
        m
    }

    #[test]
    fn openai_families_are_counted_with_their_encoding_and_others_by_size() {
        let gpt = TokenCounter::for_model("gpt-4o-mini");
        assert!(gpt.is_exact());
        assert_eq!(gpt.text("hello world"), 2);
        let claude = TokenCounter::for_model("claude-sonnet-4");
        assert!(!claude.is_exact());
        assert_eq!(claude.text("hello world"), 4, "11 bytes / 3, rounded up");
        // Huge text is estimated by size even for a known family.
        let big = "a ".repeat(MAX_TOKENIZED_BYTES);
        assert_eq!(gpt.text(&big), big.len().div_ceil(3) as u64);
    }

    #[test]
    fn the_estimate_starts_from_the_last_reported_usage() {
        let counter = TokenCounter::for_model("fake");
        let reported = Usage {
            input_tokens: 1_000,
            output_tokens: 50,
            ..Usage::default()
        };
        let history = vec![
            message(Role::User, &"x".repeat(30_000), None),
            message(Role::Assistant, "answer", Some(reported)),
            message(Role::User, &"y".repeat(297), None),
        ];
        // 1,000 in + 50 out + the new message: its JSON (~330 bytes / 3) plus framing.
        let after = counter.message(&history[2]);
        assert_eq!(estimate(&counter, None, &[], &history), 1_050 + after);
        // Without any reported usage the whole request is estimated.
        let first = &history[..1];
        assert_eq!(
            estimate(&counter, Some("be brief"), &[], first),
            counter.request(Some("be brief"), &[], first)
        );
    }

    #[test]
    fn the_budget_reserves_the_output_and_compacts_at_its_share() {
        let b = Budget::new(Some(10_000), Some(1_000), 0, 0.8).unwrap();
        assert_eq!(b.input, 9_000);
        assert_eq!(b.compact_at, 7_200);
        // No max_output_tokens: 4,096 reserved, or a quarter of a small window.
        assert_eq!(
            Budget::new(Some(100_000), None, 0, 0.8).unwrap().input,
            95_904
        );
        assert_eq!(Budget::new(Some(2_000), None, 0, 0.8).unwrap().input, 1_500);
        assert!(Budget::new(None, Some(10), 0, 0.8).is_none());
        // Thinking is reserved on top of the answer's cap.
        assert_eq!(
            Budget::new(Some(40_000), Some(1_000), 16_384, 0.8)
                .unwrap()
                .input,
            22_616
        );
    }
}
