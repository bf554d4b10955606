//! The events of an owner's chat list stream (`GET /chats/events`, ARCHITECTURE.md §8.2):
//! a sidebar follows its user's chats being created, changed and deleted without polling.
//!
//! Each owner has one capped stream beside the chat streams (the same shard tags, publisher,
//! reader and SSE cursor; see [`super::StreamTopic`]). What it says is deliberately coarse:
//! `created` and `updated` carry the chat's whole list entry as it is after the change
//! ([`ChatListEntry`]), so a client replaces what it shows instead of patching fields, and a
//! skipped intermediate state (a turn that went `pending` → `running` → `waiting` faster
//! than the announcer read it) costs nothing. `deleted` names the chat. Subagent chats are
//! announced too, with `root_chat_id` naming the root whose `children` list them.
//!
//! ```
//! use agentq_core::events::ChatListEvent;
//! use uuid::Uuid;
//!
//! let gone = ChatListEvent::Deleted { chat_id: Uuid::nil(), root_chat_id: None };
//! assert_eq!(gone.name(), "deleted");
//! let (_, data) = gone.encode(8 * 1024);
//! assert_eq!(data, r#"{"chat_id":"00000000-0000-0000-0000-000000000000","root_chat_id":null}"#);
//! ```

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::ResetReason;
use crate::store::ChatListEntry;

/// An event on an owner's chat list stream. The variant is the SSE `event:` name; the
/// fields are `data`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChatListEvent {
    /// A chat was created: a root chat, or a subagent chat (`chat.root_chat_id` names its
    /// root).
    Created {
        /// The chat's list entry as it is now.
        chat: ChatListEntry,
        /// True when `chat.labels` was left out to keep the event within the event size
        /// cap: read the chat (`GET /chats/{id}`) for them.
        truncated: bool,
    },
    /// A chat changed: its status, title, archive state, pin position, labels or activity.
    /// Replace the entry shown with this one (unless it shows a later `updated_at`).
    Updated {
        /// The chat's list entry as it is now.
        chat: ChatListEntry,
        /// As for `created`.
        truncated: bool,
    },
    /// A chat was deleted (a root chat with its subagent chats: one event each, the root
    /// first). Its id never comes back.
    Deleted {
        /// The chat.
        chat_id: Uuid,
        /// Its root, for a subagent chat; `null` for a root chat.
        root_chat_id: Option<Uuid>,
    },
    /// The stream cannot continue without a gap: the events after the client's
    /// `Last-Event-ID` were trimmed or expired. Reload the list (`GET /chats`); the stream
    /// goes on after this event. Sent by the API only, never stored.
    Reset {
        /// Why the client must reload.
        reason: ResetReason,
    },
}

impl ChatListEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            ChatListEvent::Created { .. } => "created",
            ChatListEvent::Updated { .. } => "updated",
            ChatListEvent::Deleted { .. } => "deleted",
            ChatListEvent::Reset { .. } => "reset",
        }
    }

    /// The event's name and `data` JSON, at most `max_bytes` long where that can be had by
    /// leaving the labels out (a title is at most 200 characters, so the rest of an entry
    /// is small; labels may reach tens of kilobytes).
    pub fn encode(&self, max_bytes: usize) -> (&'static str, String) {
        let mut data = self.data_value();
        let mut text = data.to_string();
        if text.len() > max_bytes
            && let Some(chat) = data.get_mut("chat").and_then(Value::as_object_mut)
        {
            chat.remove("labels");
            data["truncated"] = Value::Bool(true);
            text = data.to_string();
            crate::metrics::event_truncated(self.name());
        }
        (self.name(), text)
    }

    fn data_value(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("events serialize");
        value
            .get_mut("data")
            .map(Value::take)
            .unwrap_or_else(|| serde_json::json!({}))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{ChatStatus, ClientType};

    fn entry(labels: usize) -> ChatListEntry {
        let now = chrono::Utc::now();
        ChatListEntry {
            id: Uuid::now_v7(),
            owner_id: Uuid::now_v7(),
            parent_chat_id: None,
            root_chat_id: None,
            title: "Fix the build".into(),
            status: ChatStatus::Running,
            client_type: ClientType::Ui,
            pin_order: Some(1),
            labels: (0..labels)
                .map(|i| (format!("key-{i:02}"), "v".repeat(256)))
                .collect::<BTreeMap<_, _>>(),
            archived: false,
            archived_at: None,
            subagent_type: None,
            closed: false,
            last_activity_at: now,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn an_update_carries_the_whole_entry_and_never_the_owner() {
        let chat = entry(2);
        let (name, data) = ChatListEvent::Updated {
            chat: chat.clone(),
            truncated: false,
        }
        .encode(8 * 1024);
        assert_eq!(name, "updated");
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["chat"]["id"], chat.id.to_string());
        assert_eq!(data["chat"]["status"], "running");
        assert_eq!(data["chat"]["pin_order"], 1);
        assert_eq!(data["chat"]["labels"].as_object().unwrap().len(), 2);
        assert_eq!(data["truncated"], false);
        assert!(data["chat"].get("owner_id").is_none());
    }

    #[test]
    fn labels_too_large_for_the_cap_are_left_out_and_flagged() {
        let (_, data) = ChatListEvent::Created {
            chat: entry(50),
            truncated: false,
        }
        .encode(8 * 1024);
        assert!(data.len() <= 8 * 1024, "{}", data.len());
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["truncated"], true);
        assert!(data["chat"].get("labels").is_none());
        assert_eq!(data["chat"]["title"], "Fix the build");
    }
}
