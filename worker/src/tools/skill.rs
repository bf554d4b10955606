//! The skill tool, `read_skill {name}` (issue #12, item 7): the system prompt lists the chat
//! owner's skills by name and description (`crate::instructions`), and the model reads the
//! one it needs with this tool. It is offered only when the owner has a skill, and it reads
//! the skill afresh when the call runs, as a `RunToolCall` job like every worker tool.

use agentq_core::{StoreError, store::Store};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::providers::ToolSpec;

/// The tool's name.
pub const READ_SKILL_TOOL: &str = "read_skill";

/// How many skill names an unknown-name error lists (a user has at most 100).
const NAMES_LISTED: i64 = 20;

/// What the model is told about the tool.
pub fn read_skill_spec() -> ToolSpec {
    ToolSpec {
        name: READ_SKILL_TOOL.into(),
        description: "Returns one of the user's skills (listed in the system prompt): its \
                      name, description and full instructions."
            .into(),
        input_schema: std::sync::Arc::new(json!({
            "type": "object",
            "properties": { "name": { "type": "string", "description": "The skill's name, as listed." } },
            "required": ["name"]
        })),
    }
}

/// Runs `read_skill` for a call of `chat_id`: the skill, or an error result naming the
/// skills there are. `Err` only when the database fails (the job is retried).
pub async fn read_skill(
    store: &Store,
    chat_id: Uuid,
    arguments: &Value,
) -> Result<Result<Value, String>, StoreError> {
    let Some(name) = arguments.get("name").and_then(Value::as_str) else {
        return Ok(Err("`name` must be a string: the name of a skill".into()));
    };
    if let Some(skill) = store.chat_owner_skill(chat_id, name).await? {
        return Ok(Ok(json!({
            "name": skill.name,
            "description": skill.description,
            "body": skill.body,
        })));
    }
    let (names, total) = store.chat_owner_skill_names(chat_id, NAMES_LISTED).await?;
    let listed = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = total - names.len() as i64;
    Ok(Err(match (names.is_empty(), more > 0) {
        (true, _) => format!("there is no skill named `{name}`: the user has no skills"),
        (false, false) => format!("there is no skill named `{name}`; the skills are: {listed}"),
        (false, true) => {
            format!("there is no skill named `{name}`; the skills are: {listed} and {more} more")
        }
    }))
}
