//! Compaction (issue #13 item 2; ARCHITECTURE.md §7): when a step's request would pass its
//! share of the model's input budget ([`Budget::compact_at`]), the step first asks a model
//! (the site's `compaction` model, else the chat's) to summarize the older part of the
//! conversation, stores the summary as a message of kind `summary` that stands for those
//! messages in every later request, announces a `compaction` event, and goes on with the
//! shorter conversation.
//!
//! - **What is kept.** The most recent messages that fit in [`KEEP_SHARE`] of the budget
//!   stay as they are; the cut is always before a user or assistant message, never before a
//!   tool result, so a tool call and its results are summarized together or kept together.
//! - **What the summarizer reads.** The older part as one plain-text transcript (the
//!   previous summary first), not as the provider's message list: it carries no tool
//!   definitions, and parts too long for the summarizer's own window are cut to fit.
//! - **A step of the turn.** The summary call retries like the answer (`retry` events), is
//!   interrupted and stopped by a lost lease like it, is recorded in the debug run (its
//!   steps say `purpose: compaction`), and its usage and cost are on the summary message.
//!   The summary is written only by the lease holder and at most once per step and cut,
//!   so a step that runs again after a crash finds it and does not summarize again.
//! - **Refused anyway.** When the provider refuses a request as too long although the
//!   estimate said it fits, the step compacts at once (`RequestFrame::force`, keeping a
//!   quarter of the estimate) and asks once more.
//! - **The latest request survives.** When the cut falls inside the latest request's own
//!   tool loop (one request, many steps), the request is appended word for word to the
//!   summary, so the model still answers exactly it.
//! - **When nothing helps.** A latest message that cannot fit on its own (with the system
//!   message and tools) fails the turn at once with kind `context_length`, without a
//!   summary: the user edits it or starts over. A conversation still over the budget after
//!   compaction fails the same way.

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{AcquiredTurn, Message, MessageKind, MessagePart, ReasoningEffort, Role},
    outcome::ChatOutcome,
    store::{NewSummary, WorkContext},
};
use uuid::Uuid;

use super::{
    Answer, Purpose, StepContext, Stops, TurnEngine, TurnJobError,
    context::{Budget, TokenCounter, estimate},
    debug_record::DebugRecording,
    history::{answer_open_calls, unsaved_user_message},
};
use crate::{
    models::{ModelTarget, ResolveError},
    providers::{ProviderRequest, ToolSpec},
    tools::Offer,
};

/// Share of the input budget the kept, most recent messages may take.
pub const KEEP_SHARE: f64 = 0.3;

/// What the summarizer is told.
const SUMMARIZER: &str = "You compact the conversation of an AI coding agent with its user. \
Write a summary that lets the agent continue the work without the original messages: the \
user's goals and requests (quote the latest request exactly), decisions and constraints, \
what was done so far and its results (files, commands, errors, tool results that matter), \
and what remains to do. Be specific and brief; write only the summary.";

/// How the older part of a conversation is introduced to the model in later requests.
pub const SUMMARY_PREFIX: &str = "Summary of the earlier part of this conversation \
(the original messages were compacted):\n\n";

/// Introduces the latest request, kept word for word, at the end of a summary that
/// stands for it.
const LATEST_REQUEST: &str = "The user's latest request, word for word:\n";

/// What a step sends after the budget check.
pub(super) enum Fitted {
    /// The history to send (compacted or not).
    Ready(Vec<Message>),
    /// The step ends here (failed, interrupted or its lease lost).
    Ended(Answer),
}

/// What a step's request holds besides its messages, for the estimate.
pub(super) struct RequestFrame<'a> {
    pub(super) system: Option<&'a str>,
    pub(super) tools: &'a [ToolSpec],
    /// The step's reasoning effort, whose thinking takes room too.
    pub(super) reasoning: Option<ReasoningEffort>,
    /// The provider refused this step's request as too long: compact now, whatever the
    /// estimate says.
    pub(super) force: bool,
}

impl TurnEngine {
    /// Compacts `history` first when the request would pass the model's compaction
    /// threshold, or whenever `frame.force` (the provider refused it as too long); see the module
    /// page.
    pub(super) async fn fit_context(
        &self,
        turn: &AcquiredTurn,
        target: &ModelTarget,
        stops: Stops<'_>,
        frame: &RequestFrame<'_>,
        history: Vec<Message>,
        debug_run: Option<Uuid>,
    ) -> Result<Fitted, TurnJobError> {
        let force = frame.force;
        let Some(budget) = Budget::new(
            target.context_limit,
            target.max_output_tokens,
            frame.reasoning.map_or(0, |e| e.thinking_budget()),
            self.limits.compaction_threshold,
        ) else {
            return Ok(Fitted::Ready(history));
        };
        let counter = TokenCounter::for_model(&target.model);
        let before = estimate(&counter, frame.system, frame.tools, &history);
        if before <= budget.compact_at && !force {
            return Ok(Fitted::Ready(history));
        }
        let too_long = |after: u64| {
            Answer::Failed(ChatError::new(
                ChatErrorKind::ContextLength,
                format!(
                    "The conversation does not fit in the context of {} even after \
                     compaction: about {after} tokens for at most {} (its context limit less \
                     the output it may write). Start a new chat, or use a model with a \
                     larger context.",
                    target.model, budget.input
                ),
            ))
        };
        // The latest request must reach the model whole: when it alone (with the system
        // message and the tools) cannot fit, no summary helps, and the user has to shorten
        // it (an edit) or start over.
        let latest = history
            .iter()
            .rposition(|m| m.role == Role::User && m.kind == MessageKind::Message);
        if let Some(i) = latest {
            let alone = counter.request(frame.system, frame.tools, &history[i..=i]);
            if alone > budget.input {
                return Ok(Fitted::Ended(Answer::Failed(ChatError::new(
                    ChatErrorKind::ContextLength,
                    format!(
                        "The latest message is about {alone} tokens with the instructions and \
                         tools, more than the {} that {} takes in one request (its context \
                         limit less the output it may write). Shorten it (edit the message) or \
                         use a model with a larger context.",
                        budget.input, target.model
                    ),
                ))));
            }
        }
        // Kept: at most KEEP_SHARE of the budget, and at most half of what the system
        // message and the tools leave below the threshold (room for the summary, so the
        // next step does not compact again at once). When the provider refused the request
        // as too long, the estimate is off by an unknown factor: a quarter of it is kept.
        let frame_tokens = counter.request(frame.system, frame.tools, &[]);
        let mut keep = ((budget.input as f64 * KEEP_SHARE) as u64)
            .min(budget.compact_at.saturating_sub(frame_tokens) / 2);
        if force {
            // In the counter's own units, as the cut counts (`before` may start from the
            // provider's report).
            keep = keep.min(counter.request(None, &[], &history) / 4);
        }
        let Some(cut) = choose_cut(&counter, &history, keep) else {
            // Nothing older to summarize: send it if it fits at all.
            if before <= budget.input {
                return Ok(Fitted::Ready(history));
            }
            return Ok(Fitted::Ended(too_long(before)));
        };
        let summarizer = match self
            .models
            .resolve(
                self.store
                    .chat_context_model(turn.chat_id, WorkContext::Compaction)
                    .await?,
                turn.owner_id,
            )
            .await
        {
            Ok(summarizer) => summarizer,
            Err(ResolveError::Unusable(error)) => return Ok(Fitted::Ended(Answer::Failed(error))),
            Err(ResolveError::Store(e)) => return Err(e.into()),
        };
        let older = &history[..cut];
        let compacted_through = older.last().expect("a cut leaves older messages").id;
        let request = summary_request(&summarizer, &budget, older);
        let offer = Offer::default();
        let step = StepContext {
            turn,
            target: &summarizer,
            interrupted: stops.interrupted,
            lease_lost: stops.lease_lost,
            offer: &offer,
            purpose: Purpose::Compaction,
        };
        let debug = debug_run.map(|run_id| DebugRecording {
            run_id,
            messages_from: 0,
        });
        let completion = match self.answer_with_retries(step, request, debug).await {
            Answer::Complete { completion, .. } => completion,
            Answer::Failed(mut error) => {
                error.message = format!("Compacting the conversation failed: {}", error.message);
                return Ok(Fitted::Ended(Answer::Failed(error)));
            }
            // Half a summary is not an answer: nothing of it is kept.
            Answer::Interrupted(_) => return Ok(Fitted::Ended(Answer::Interrupted(None))),
            ended => return Ok(Fitted::Ended(ended)),
        };
        let text: String = completion
            .content
            .iter()
            .filter_map(MessagePart::as_text)
            .collect();
        if text.trim().is_empty() {
            return Ok(Fitted::Ended(Answer::Failed(
                ChatError::new(
                    ChatErrorKind::Generic,
                    "Compacting the conversation failed: the model wrote an empty summary.",
                )
                .with_provider(summarizer.provider_name.clone()),
            )));
        }
        // A cut inside the latest request's tool loop summarizes the request itself: it is
        // kept word for word after the summary, so the model still answers exactly it. A
        // request an earlier summary already carries (a second compaction in the same
        // loop) is carried on.
        let carried: Option<String> = match latest {
            Some(i) if i < cut => Some(
                history[i]
                    .content
                    .iter()
                    .filter_map(MessagePart::as_text)
                    .collect(),
            ),
            Some(_) => None,
            None => history
                .first()
                .filter(|m| m.kind == MessageKind::Summary)
                .and_then(|m| m.content.iter().find_map(MessagePart::as_text))
                .and_then(|s| s.split_once(LATEST_REQUEST))
                .map(|(_, request)| request.to_owned()),
        };
        let text = match carried {
            Some(words) => format!("{}\n\n{LATEST_REQUEST}{words}", text.trim_end()),
            None => text,
        };
        let saved = self
            .store
            .save_summary(&NewSummary {
                chat_id: turn.chat_id,
                turn_id: turn.id,
                step: turn.step,
                lease_owner: &turn.lease_owner,
                text: &text,
                compacted_through,
                model: &completion.model,
                usage: &completion.usage,
                cost_micros: completion.cost_micros,
            })
            .await?;
        let history = answer_open_calls(self.store.prompt_history(turn.chat_id).await?);
        let after = estimate(&counter, frame.system, frame.tools, &history);
        match saved {
            Some(summary) => {
                tracing::info!(
                    tokens_before = before,
                    tokens_after = after,
                    messages = cut,
                    tokenizer = if counter.is_exact() { "model" } else { "bytes" },
                    "compacted the conversation"
                );
                agentq_core::metrics::compaction();
                ChatOutcome::Compacted {
                    summary,
                    messages_compacted: older
                        .iter()
                        .filter(|m| m.kind == MessageKind::Message)
                        .count(),
                    tokens: (before, after),
                }
                .publish(&self.events);
            }
            // Not ours any more (whether or not the renewal noticed yet); the next holder
            // decides again.
            None if stops.lease_lost.is_cancelled()
                || !self.store.holds_turn(turn.id, &turn.lease_owner).await? =>
            {
                return Ok(Fitted::Ended(Answer::LeaseLost));
            }
            // The step's summary exists (an earlier run of it wrote one): go on with it.
            None => {}
        }
        if after > budget.input {
            return Ok(Fitted::Ended(too_long(after)));
        }
        Ok(Fitted::Ready(history))
    }
}

/// Where the kept part starts: the longest tail of `history` within `keep` tokens that
/// starts at a user or assistant message (never at a tool result, so calls and
/// results stay together). `history.len()` keeps nothing. `None`: nothing older than the
/// kept part could be summarized (only an earlier summary, or nothing).
fn choose_cut(counter: &TokenCounter, history: &[Message], keep: u64) -> Option<usize> {
    let mut tail = 0u64;
    let mut cut = history.len();
    for i in (0..history.len()).rev() {
        let m = &history[i];
        if m.kind == MessageKind::Summary {
            break;
        }
        tail += counter.message(m);
        if tail > keep {
            break;
        }
        if m.role != Role::Tool {
            cut = i;
        }
    }
    history[..cut]
        .iter()
        .any(|m| m.kind == MessageKind::Message)
        .then_some(cut)
}

/// The summarizer's request: the older messages as one transcript, cut to fit its window.
fn summary_request(
    summarizer: &ModelTarget,
    budget: &Budget,
    older: &[Message],
) -> ProviderRequest {
    // The summarizer's own window, else the chat model's; a fifth of it for the summary.
    let window = Budget::new(
        summarizer.context_limit,
        summarizer.max_output_tokens,
        0,
        1.0,
    )
    .unwrap_or(*budget);
    let max_output = (window.input / 5).clamp(256, 4096) as u32;
    let counter = TokenCounter::for_model(&summarizer.model);
    let room = window
        .input
        .saturating_sub(u64::from(max_output))
        .saturating_sub(counter.text(SUMMARIZER) + 64);
    let transcript = transcript(&counter, older, room);
    ProviderRequest {
        model: summarizer.model.clone(),
        system: Some(SUMMARIZER.to_owned()),
        messages: vec![unsaved_user_message(
            older.last().map_or(Uuid::nil(), |m| m.chat_id),
            format!(
                "<conversation>\n{transcript}\n</conversation>\n\nSummarize the conversation above."
            ),
        )],
        tools: Vec::new(),
        max_output_tokens: Some(
            summarizer
                .max_output_tokens
                .map_or(max_output, |m| m.min(max_output)),
        ),
        cache: None,
        cache_key: None,
        // The transcript names attached files; their content is not summarized.
        files: Default::default(),
        // A summary is plain writing.
        reasoning_effort: None,
    }
}

/// The older messages as text, each line cut so the whole fits in `room` tokens; when even
/// short lines do not fit, the oldest are dropped.
fn transcript(counter: &TokenCounter, older: &[Message], room: u64) -> String {
    let lines: Vec<String> = older.iter().flat_map(lines_of).collect();
    // Each line counted once (plus its line break); the whole is their sum.
    let cost = |line: &String| counter.text(line) + 1;
    if lines.iter().map(cost).sum::<u64>() <= room {
        return lines.join("\n");
    }
    // Bytes per line that would fit, at 3 bytes a token (the size estimate's rate), less
    // the cut marker and the line break.
    let per_line = ((room as usize / lines.len().max(1)).saturating_sub(2) * 3)
        .saturating_sub(CUT_MARKER.len())
        .max(200);
    let cut: Vec<String> = lines.iter().map(|l| shorten(l, per_line)).collect();
    let costs: Vec<u64> = cut.iter().map(cost).collect();
    // When even short lines do not fit, the oldest go, but never an earlier summary (the
    // first line when there is one): it stands for everything before it.
    let keep_first = older
        .first()
        .is_some_and(|m| m.kind == MessageKind::Summary);
    let mut total: u64 = costs.iter().sum();
    let mut from = usize::from(keep_first);
    while total > room && from + 1 < cut.len() {
        total -= costs[from];
        from += 1;
    }
    let head = cut.iter().take(usize::from(keep_first));
    head.chain(&cut[from..])
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per part of `m`, as the summarizer reads it.
fn lines_of(m: &Message) -> Vec<String> {
    let who = match (m.kind, m.role) {
        (MessageKind::Summary, _) => "Earlier summary",
        (_, Role::User) => "User",
        (_, Role::Assistant) => "Assistant",
        (_, Role::Tool) => "Tool",
    };
    m.content
        .iter()
        .filter_map(|part| match part {
            MessagePart::Text { text } => Some(format!("{who}: {text}")),
            // Reasoning stays with its provider: not summarized, not sent elsewhere.
            MessagePart::Reasoning { .. } | MessagePart::RedactedReasoning { .. } => None,
            MessagePart::ToolCall {
                name, arguments, ..
            } => Some(format!("{who} called {name} with {arguments}")),
            MessagePart::ToolResult {
                output, is_error, ..
            } => {
                let failed = if *is_error { " (failed)" } else { "" };
                Some(format!("{who} result{failed}: {output}"))
            }
            // The file stays attached to its message; the summary names it.
            MessagePart::File {
                name,
                mimetype,
                size,
                ..
            } => Some(format!(
                "{who} attached the file {name} ({mimetype}, {size} bytes)"
            )),
        })
        .collect()
}

/// Marks a transcript line that was cut.
const CUT_MARKER: &str = " [...cut]";

/// `line` cut to at most `max` bytes on a character boundary, marked when cut.
fn shorten(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_owned();
    }
    format!("{}{CUT_MARKER}", &line[..line.floor_char_boundary(max)])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(role: Role, content: Vec<MessagePart>) -> Message {
        let mut m = unsaved_user_message(Uuid::nil(), String::new());
        m.role = role;
        m.content = content;
        m
    }

    fn text(role: Role, bytes: usize) -> Message {
        message(
            role,
            vec![MessagePart::Text {
                text: "x".repeat(bytes),
            }],
        )
    }

    #[test]
    fn the_cut_never_separates_a_call_from_its_results() {
        let counter = TokenCounter::for_model("fake");
        let call = message(
            Role::Assistant,
            vec![MessagePart::ToolCall {
                tool_call_id: "c".into(),
                name: "t".into(),
                arguments: json!({}),
            }],
        );
        let result = message(
            Role::Tool,
            vec![MessagePart::ToolResult {
                tool_call_id: "c".into(),
                output: json!("y".repeat(600)),
                is_error: false,
            }],
        );
        let history = vec![
            text(Role::User, 3_000),
            text(Role::Assistant, 3_000),
            text(Role::User, 300),
            call,
            result,
        ];
        // Keep at most 300 tokens (~900 bytes): the tool result alone fits, the call and
        // result together fit too, the user message before them does not.
        let cut = choose_cut(&counter, &history, 300).unwrap();
        assert_eq!(cut, 3, "kept: the call and its result, together");
        assert_ne!(history[cut].role, Role::Tool);
    }

    #[test]
    fn a_tail_too_long_to_keep_is_summarized_whole_and_a_lone_summary_is_not_compacted() {
        let counter = TokenCounter::for_model("fake");
        let history = vec![text(Role::User, 3_000), text(Role::Assistant, 3_000)];
        assert_eq!(choose_cut(&counter, &history, 30), Some(2));
        let mut summary = text(Role::Assistant, 3_000);
        summary.kind = MessageKind::Summary;
        assert_eq!(choose_cut(&counter, &[summary], 30), None);
    }

    #[test]
    fn an_earlier_summary_is_never_dropped_from_the_transcript() {
        let counter = TokenCounter::for_model("fake");
        let mut summary = text(Role::Assistant, 5_000);
        summary.kind = MessageKind::Summary;
        let older: Vec<Message> = std::iter::once(summary)
            .chain((0..200).map(|_| text(Role::User, 5_000)))
            .collect();
        let t = transcript(&counter, &older, 2_000);
        assert!(
            counter.text(&t) <= 2_000 + 200,
            "{} tokens",
            counter.text(&t)
        );
        assert!(t.starts_with("Earlier summary: "), "{:.40}", t);
        assert!(t.lines().count() < 201, "the oldest other lines went");
    }

    #[test]
    fn a_transcript_too_long_for_the_summarizer_is_cut_to_fit() {
        let counter = TokenCounter::for_model("fake");
        let older: Vec<Message> = (0..20).map(|_| text(Role::User, 5_000)).collect();
        let t = transcript(&counter, &older, 2_000);
        assert!(counter.text(&t) <= 2_000, "{} tokens", counter.text(&t));
        assert!(t.contains("[...cut]"));
        assert_eq!(
            t.lines().count(),
            20,
            "every message is still there, shortened"
        );
    }
}
