//! What one chat event may weigh on the stream.
//!
//! A chat's event stream is capped in entries (`XADD MAXLEN ~`); capping each entry's size
//! too bounds the stream in bytes (`max_len × max_event_bytes`), and with it every replay
//! page and every buffer of the API's shared reader. The bounding happens here, when an
//! event is encoded for publishing, so callers keep building [`ChatEvent`]s from whole
//! domain values.
//!
//! - A `message` event is a preview: text and reasoning keep their first
//!   [`PayloadLimits::preview_bytes`] (together), and tool arguments or results larger than
//!   what is left become a string holding the start of their JSON. `data.truncated` says
//!   whether anything was cut (always present on `message`); the whole message is one
//!   `GET /chats/{id}/messages` away.
//! - Any event still larger than [`PayloadLimits::max_event_bytes`] (a huge tool-arguments
//!   delta, an `action_required` with huge arguments) is shrunk by halving its largest
//!   string or list until it fits, and carries `data.truncated: true`.
//!
//! ```
//! use agentq_core::events::{ChatEvent, PayloadLimits, payload};
//! use agentq_core::domain::{MessagePart, Role};
//!
//! let delta = ChatEvent::MessagePart {
//!     role: Role::Assistant,
//!     part: MessagePart::Text { text: "x".repeat(100_000) },
//!     step: 0,
//! };
//! let encoded = payload::encode(&delta, &PayloadLimits::default());
//! assert!(encoded.data.len() <= PayloadLimits::default().max_event_bytes);
//! assert!(encoded.truncated);
//! ```

use serde_json::Value;

use super::ChatEvent;

/// Size limits of one published event.
#[derive(Debug, Clone, Copy)]
pub struct PayloadLimits {
    /// Largest `data` of one event, in bytes of JSON.
    pub max_event_bytes: usize,
    /// Bytes of content a `message` event previews.
    pub preview_bytes: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: 8 * 1024,
            preview_bytes: 2 * 1024,
        }
    }
}

/// An event ready for the stream.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// SSE event name.
    pub name: &'static str,
    /// SSE data (JSON), within the limits.
    pub data: String,
    /// Whether something was cut to fit.
    pub truncated: bool,
}

/// The smallest cap honoured: room for the ids and names every event needs.
const MIN_EVENT_BYTES: usize = 512;

/// How many halvings [`shrink`] tries before it gives up on the event's content.
const MAX_SHRINK_ROUNDS: usize = 64;

/// Encodes `event` within `limits`.
pub fn encode(event: &ChatEvent, limits: &PayloadLimits) -> EncodedEvent {
    let max = limits.max_event_bytes.max(MIN_EVENT_BYTES);
    let mut data = event.data_value();
    let mut truncated = false;
    if let ChatEvent::Message { .. } = event
        && let Some(content) = data
            .get_mut("message")
            .and_then(|m| m.get_mut("content"))
            .and_then(Value::as_array_mut)
    {
        truncated = preview_content(content, limits.preview_bytes);
    }
    let mut text = data.to_string();
    if text.len() > max {
        truncated = true;
        // Leave room for the flag added below.
        shrink(&mut data, max - 32);
        text = data.to_string();
        if text.len() > max - 32 {
            // Nothing left to cut that would help (thousands of tiny fields): keep only the
            // flag; the client reloads from the messages endpoint.
            data = serde_json::json!({});
        }
    }
    if truncated || matches!(event, ChatEvent::Message { .. }) {
        if let Some(object) = data.as_object_mut() {
            object.insert("truncated".into(), Value::Bool(truncated));
        }
        text = data.to_string();
    }
    if truncated {
        crate::metrics::event_truncated(event.name());
    }
    EncodedEvent {
        name: event.name(),
        data: text,
        truncated,
    }
}

/// Cuts a message's content parts to `budget` bytes of text; true if anything was cut.
fn preview_content(parts: &mut [Value], budget: usize) -> bool {
    let mut left = budget;
    let mut cut = false;
    for part in parts.iter_mut() {
        let Some(part) = part.as_object_mut() else {
            continue;
        };
        // A reasoning signature and redacted reasoning are opaque: cut like the rest.
        for field in ["text", "arguments", "output", "signature", "data"] {
            let Some(value) = part.get_mut(field) else {
                continue;
            };
            match value {
                Value::String(s) => {
                    let kept = s.floor_char_boundary(left);
                    if kept < s.len() {
                        s.truncate(kept);
                        cut = true;
                    }
                    left -= kept;
                }
                other => {
                    let json = other.to_string();
                    if json.len() > left {
                        let kept = json.floor_char_boundary(left);
                        *other = Value::String(json[..kept].to_owned());
                        cut = true;
                        left -= kept;
                    } else {
                        left -= json.len();
                    }
                }
            }
        }
    }
    cut
}

/// Halves the largest string or list inside `value` until its JSON fits in `max` bytes (or
/// [`MAX_SHRINK_ROUNDS`] pass).
fn shrink(value: &mut Value, max: usize) {
    for _ in 0..MAX_SHRINK_ROUNDS {
        if json_len(value) <= max {
            return;
        }
        if !halve_largest(value) {
            return;
        }
    }
}

/// Descends into the largest child until the node that dominates the size, and halves it.
/// False when nothing can be halved.
fn halve_largest(value: &mut Value) -> bool {
    let own = json_len(value);
    match value {
        Value::String(s) => {
            if s.is_empty() {
                return false;
            }
            let kept = s.floor_char_boundary(s.len() / 2);
            s.truncate(kept);
            true
        }
        Value::Array(items) => {
            if let Some((i, size)) = largest(items.iter())
                && size * 2 > own
                && halve_largest(&mut items[i])
            {
                return true;
            }
            if items.is_empty() {
                return false;
            }
            items.truncate(items.len() / 2);
            true
        }
        Value::Object(map) => {
            let Some((i, _)) = largest(map.values()) else {
                return false;
            };
            let child = map.values_mut().nth(i).expect("index from the same map");
            halve_largest(child)
        }
        _ => false,
    }
}

fn largest<'a>(values: impl Iterator<Item = &'a Value>) -> Option<(usize, usize)> {
    values
        .map(json_len)
        .enumerate()
        .max_by_key(|(_, size)| *size)
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{Message, MessagePart, Role},
        events::ActionToolCall,
    };

    fn message(content: Vec<MessagePart>) -> ChatEvent {
        ChatEvent::Message {
            message: Box::new(Message {
                id: uuid::Uuid::now_v7(),
                chat_id: uuid::Uuid::now_v7(),
                turn_id: None,
                role: Role::Assistant,
                step: Some(2),
                content,
                model: Some("m".into()),
                usage: None,
                cost_micros: None,
                interrupted: false,
                kind: crate::domain::MessageKind::Message,
                compacted_through: None,
                created_at: chrono::Utc::now(),
                superseded_at: None,
            }),
        }
    }

    fn parse(e: &EncodedEvent) -> Value {
        serde_json::from_str(&e.data).unwrap()
    }

    #[test]
    fn a_small_message_is_whole_and_says_so() {
        let e = encode(
            &message(vec![MessagePart::Text { text: "hi".into() }]),
            &PayloadLimits::default(),
        );
        let data = parse(&e);
        assert_eq!(data["truncated"], false);
        assert_eq!(data["message"]["content"][0]["text"], "hi");
    }

    #[test]
    fn a_megabyte_message_becomes_a_preview_with_its_ids() {
        let limits = PayloadLimits::default();
        let text = "é".repeat(500_000);
        let event = message(vec![
            MessagePart::Text { text },
            MessagePart::ToolCall {
                tool_call_id: "c1".into(),
                name: "write".into(),
                arguments: serde_json::json!({ "body": "x".repeat(100_000) }),
            },
        ]);
        let e = encode(&event, &limits);
        assert!(e.data.len() <= limits.max_event_bytes, "{}", e.data.len());
        let data = parse(&e);
        assert_eq!(data["truncated"], true);
        assert_eq!(data["message"]["role"], "assistant");
        assert_eq!(data["message"]["step"], 2);
        assert!(data["message"]["id"].is_string());
        let preview = data["message"]["content"][0]["text"].as_str().unwrap();
        assert!(preview.len() <= limits.preview_bytes && preview.len() > 1000);
        assert_eq!(data["message"]["content"][1]["name"], "write");
    }

    #[test]
    fn huge_action_arguments_are_cut_to_the_cap() {
        let limits = PayloadLimits::default();
        let calls = (0..50)
            .map(|i| ActionToolCall {
                tool_call_id: uuid::Uuid::now_v7(),
                tool_name: format!("tool{i}"),
                args: serde_json::json!({ "blob": "y".repeat(20_000) }),
            })
            .collect();
        let e = encode(&ChatEvent::ActionRequired { tool_calls: calls }, &limits);
        assert!(e.data.len() <= limits.max_event_bytes, "{}", e.data.len());
        assert!(e.truncated);
        assert_eq!(parse(&e)["truncated"], true);
    }

    #[test]
    fn small_events_pass_unchanged() {
        let event = ChatEvent::QueueUpdate { queued_messages: 3 };
        let e = encode(&event, &PayloadLimits::default());
        assert_eq!(e.data, event.data_json());
        assert!(!e.truncated);
    }
}
