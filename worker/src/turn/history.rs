//! The conversation as a provider accepts it. Both wire formats refuse a request in which
//! an assistant's tool call has no result before the next message, and the stored history
//! can hold such calls: a turn interrupted while its calls ran or waited (a client tool in
//! `requires_action`, a parked `wait_agent`) ends without a results message. Left as is,
//! every later turn of the chat would be refused by the provider. So before a step is sent,
//! each call without a result gets an error result saying why ([`answer_open_calls`]);
//! the stored messages stay as they were.

use std::collections::HashSet;

use agentq_core::domain::{Message, MessagePart, Role};
use serde_json::json;
use uuid::Uuid;

/// What the model reads for a call that never got its result.
pub const NO_RESULT: &str =
    "No result: the turn was interrupted or stopped before this call finished.";

/// Gives every tool call in `history` that has no result an error result: added to the
/// tool message that follows its assistant message, or in a new tool message right after
/// it.
pub fn answer_open_calls(history: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(history.len());
    let mut iter = history.into_iter().peekable();
    while let Some(message) = iter.next() {
        let calls: Vec<String> = match message.role {
            Role::Assistant => message
                .content
                .iter()
                .filter_map(|part| match part {
                    MessagePart::ToolCall { tool_call_id, .. } => Some(tool_call_id.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let template = message.clone();
        out.push(message);
        if calls.is_empty() {
            continue;
        }
        // The results that follow this step, in the tool messages right after it.
        let mut answered = HashSet::new();
        while let Some(next) = iter.next_if(|m| m.role == Role::Tool) {
            for part in &next.content {
                if let MessagePart::ToolResult { tool_call_id, .. } = part {
                    answered.insert(tool_call_id.clone());
                }
            }
            out.push(next);
        }
        let missing: Vec<MessagePart> = calls
            .into_iter()
            .filter(|id| !answered.contains(id))
            .map(|tool_call_id| MessagePart::ToolResult {
                tool_call_id,
                output: json!({ "error": NO_RESULT }),
                is_error: true,
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == Role::Tool => last.content.extend(missing),
            _ => out.push(Message {
                role: Role::Tool,
                content: missing,
                step: template.step,
                model: None,
                usage: None,
                cost_micros: None,
                interrupted: false,
                ..template
            }),
        }
    }
    out
}

/// A user message that is never stored: the request of work a step does besides answering
/// (a compaction's summary, a title).
pub(super) fn unsaved_user_message(chat_id: Uuid, text: String) -> Message {
    Message::user(
        Uuid::now_v7(),
        chat_id,
        None,
        vec![MessagePart::Text { text }],
        chrono::Utc::now(),
    )
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn message(role: Role, content: Vec<MessagePart>) -> Message {
        Message::plain(Uuid::now_v7(), Uuid::nil(), None, role, content, Utc::now())
    }

    fn call(id: &str) -> MessagePart {
        MessagePart::ToolCall {
            tool_call_id: id.into(),
            name: "open_file".into(),
            arguments: json!({}),
        }
    }

    fn result(id: &str) -> MessagePart {
        MessagePart::ToolResult {
            tool_call_id: id.into(),
            output: json!("ok"),
            is_error: false,
        }
    }

    fn text(t: &str) -> MessagePart {
        MessagePart::Text { text: t.into() }
    }

    fn results_of(message: &Message) -> Vec<(String, bool)> {
        message
            .content
            .iter()
            .filter_map(|p| match p {
                MessagePart::ToolResult {
                    tool_call_id,
                    is_error,
                    ..
                } => Some((tool_call_id.clone(), *is_error)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answered_calls_are_left_alone() {
        let history = vec![
            message(Role::User, vec![text("hi")]),
            message(Role::Assistant, vec![call("a"), call("b")]),
            message(Role::Tool, vec![result("a"), result("b")]),
            message(Role::Assistant, vec![text("done")]),
        ];
        let before = serde_json::to_value(&history).unwrap();
        let after = answer_open_calls(history);
        assert_eq!(serde_json::to_value(&after).unwrap(), before);
    }

    #[test]
    fn an_interrupted_step_gets_error_results_before_the_next_message() {
        let history = vec![
            message(Role::User, vec![text("hi")]),
            message(
                Role::Assistant,
                vec![text("let me look"), call("a"), call("b")],
            ),
            message(Role::User, vec![text("never mind")]),
            message(Role::Assistant, vec![call("c"), call("d")]),
            message(Role::Tool, vec![result("c")]),
        ];
        let after = answer_open_calls(history);
        let roles: Vec<Role> = after.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User,
                Role::Assistant,
                Role::Tool
            ]
        );
        assert_eq!(
            results_of(&after[2]),
            [("a".to_owned(), true), ("b".to_owned(), true)]
        );
        assert_eq!(
            results_of(&after[5]),
            [("c".to_owned(), false), ("d".to_owned(), true)]
        );
    }
}
