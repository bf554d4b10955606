//! Which event stream: one chat's, or one owner's chat list.
//!
//! Both kinds are capped Redis streams under the same shard hash tags
//! (`crate::queue::chat_event_shard_tag`), written by the same publisher and read by the same
//! shared reader ([`super::EventHub`]) and SSE cursor, so a [`StreamTopic`] is all that
//! tells them apart: its key, and the shard its reader runs in.

use uuid::Uuid;

use crate::queue::{chat_event_shard, chat_events_key, chat_list_events_key};

/// An event stream to publish to or follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamTopic {
    /// A chat's events (`GET /chats/{id}/stream`).
    Chat(Uuid),
    /// The changes of an owner's chat list (`GET /chats/events`).
    ChatList {
        /// The owner.
        owner_id: Uuid,
    },
}

impl StreamTopic {
    /// The shard whose reader follows the stream.
    pub fn shard(&self) -> u16 {
        match self {
            StreamTopic::Chat(id) | StreamTopic::ChatList { owner_id: id } => chat_event_shard(*id),
        }
    }

    /// The stream's Redis key.
    pub fn key(&self, prefix: &str) -> String {
        match self {
            StreamTopic::Chat(chat_id) => chat_events_key(prefix, *chat_id),
            StreamTopic::ChatList { owner_id } => chat_list_events_key(prefix, *owner_id),
        }
    }
}

/// A chat id names the chat's stream.
impl From<Uuid> for StreamTopic {
    fn from(chat_id: Uuid) -> Self {
        StreamTopic::Chat(chat_id)
    }
}
