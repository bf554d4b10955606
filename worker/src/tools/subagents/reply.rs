//! The one shape every subagent tool answers with: the child's `chat_id`,
//! `subagent_type`, `status`, `title` and whether it is `closed`, plus what the tool adds.

use agentq_core::store::ChildChat;
use serde_json::{Map, Value, json};

/// `child` as the model sees it, with `extra` fields added.
pub fn child(child: &ChildChat, extra: Value) -> Value {
    let mut reply = json!({
        "chat_id": child.id,
        "subagent_type": child.subagent_type,
        "status": child.status.as_str(),
        "title": child.title,
        "closed": child.closed,
    });
    if let (Some(reply), Value::Object(extra)) = (reply.as_object_mut(), extra) {
        let extra: Map<String, Value> = extra;
        reply.extend(extra);
    }
    reply
}
