//! Plan mode (issue #12, item 5; ARCHITECTURE.md §7): a chat in plan mode
//! (`chats.plan_mode = 'plan'`) investigates, asks and proposes, and changes nothing.
//!
//! - **The offer.** A plan step keeps only the tools [`allowed`] says change nothing (the
//!   builtins, `read_skill`, and, as those sources arrive, MCP tools of servers with
//!   `allow_in_plan_mode` and `spawn_subagent`, which only starts `explore` children), and
//!   adds `ask_user_question` and `propose_plan`. Client tools are dropped: agentq cannot
//!   tell what they change. A call to anything else is classified `not_offered` like any
//!   unoffered name and runs nothing. Outside plan mode the two tools are not offered
//!   (the reference product describes them as plan-mode tools).
//! - **`ask_user_question {questions}`** validates the questions (1 to [`MAX_QUESTIONS`],
//!   each a `header`, a `question` and 2 to 4 `options` of `label` and `description`,
//!   every text bounded); a bad call is an error result the model can correct.
//! - **`propose_plan {title?, content}`** stores the markdown plan (at most
//!   [`MAX_PLAN_BYTES`]) as a file of kind `plan` linked to the chat, with the call's id as
//!   the file's id, so a call run twice stores one plan.
//!
//! A successful call of either ends the turn for the user: its result says the question or
//! plan is shown to the user, and the step's fan-in completes the turn and leaves the chat
//! `requires_action` (`core::store`'s `fan_in`) instead of calling the model again. The
//! user's next message starts the next turn, so the model sees the question or plan (its
//! call and result) followed by the answer. A failed call (bad input) is an ordinary error
//! result and the turn goes on.

use agentq_core::{
    StoreError,
    domain::ToolCallRow,
    store::{PLAN_MODE_SOURCE, Store},
    text::{describe_char, forbidden_char},
};
use serde_json::{Value, json};

use super::{
    Builtins,
    registry::{OfferedTool, ToolOutput, ToolSource},
};
use crate::providers::ToolSpec;

/// Asks the user structured questions.
pub const ASK_USER_QUESTION_TOOL: &str = "ask_user_question";
/// Proposes a plan for the user to review.
pub const PROPOSE_PLAN_TOOL: &str = "propose_plan";

/// Most questions in one `ask_user_question` call.
pub const MAX_QUESTIONS: usize = 4;
/// Fewest and most options of a question.
const OPTIONS: std::ops::RangeInclusive<usize> = 2..=4;
/// Longest `header`, `question`, option `label` and option `description`, in characters.
const MAX_HEADER_CHARS: usize = 80;
const MAX_QUESTION_CHARS: usize = 2_000;
const MAX_LABEL_CHARS: usize = 120;
const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Largest plan, in bytes of markdown.
pub const MAX_PLAN_BYTES: usize = 32 * 1024;
/// Longest plan title, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// What the system message says about plan mode when the step is a plan step.
pub const GUIDANCE: &str = "- You are in plan mode: investigate with the tools offered, \
     which change nothing, and do not try to make changes. When a decision is the user's, \
     call `ask_user_question`; when the plan is ready, call `propose_plan` with it in \
     markdown. Either ends your turn until the user answers.";

/// The plan-mode tools, in the order the model sees them.
pub fn specs() -> Vec<ToolSpec> {
    let text = |description: &str| json!({ "type": "string", "description": description });
    vec![
        ToolSpec {
            name: ASK_USER_QUESTION_TOOL.into(),
            description: format!(
                "Ask the user 1-{MAX_QUESTIONS} structured questions, each with 2-4 answer \
                 options, when a decision is theirs. Ends your turn; the user's answer comes \
                 as their next message."
            ),
            input_schema: std::sync::Arc::new(json!({
                "type": "object",
                "properties": {
                    "questions": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_QUESTIONS,
                        "items": {
                            "type": "object",
                            "properties": {
                                "header": text("A short label for the question."),
                                "question": text("The question, in full."),
                                "options": {
                                    "type": "array",
                                    "minItems": OPTIONS.start(),
                                    "maxItems": OPTIONS.end(),
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "label": text("A short answer."),
                                            "description": text("What choosing it means."),
                                        },
                                        "required": ["label", "description"]
                                    }
                                }
                            },
                            "required": ["header", "question", "options"]
                        }
                    }
                },
                "required": ["questions"]
            })),
        },
        ToolSpec {
            name: PROPOSE_PLAN_TOOL.into(),
            description: format!(
                "Propose your plan to the user for review: markdown, at most {} KiB. Ends \
                 your turn; the user answers with their next message.",
                MAX_PLAN_BYTES / 1024
            ),
            input_schema: std::sync::Arc::new(json!({
                "type": "object",
                "properties": {
                    "title": text("A short title for the plan."),
                    "content": text("The plan, in markdown."),
                },
                "required": ["content"]
            })),
        },
    ]
}

/// Whether a plan step may keep `tool`, which an earlier source offered: only tools that
/// change nothing.
pub fn allowed(tool: &OfferedTool, builtins: &Builtins) -> bool {
    // Exhaustive on purpose: a new source must say whether plan mode keeps it.
    match tool.source {
        ToolSource::Builtin => builtins.changes_nothing(&tool.spec.name),
        ToolSource::Skill | ToolSource::PlanMode => true,
        // Only servers with `allow_in_plan_mode` were listed for a plan step
        // (`ToolRegistry::offer`): their site owner says their tools change nothing.
        ToolSource::Mcp => true,
        // A plan step is offered the explore-only subagent tools (`SubagentTools::for_chat`):
        // `spawn_subagent` starts `explore` children only, which change nothing either.
        ToolSource::ExploreSubagent => true,
        ToolSource::Subagent => false,
        // The client's tools may change anything; agentq cannot tell.
        ToolSource::Client => false,
    }
}

/// Runs a call recorded with source `plan_mode`. `Err` only when the database fails.
pub async fn execute(store: &Store, call: &ToolCallRow) -> Result<ToolOutput, StoreError> {
    debug_assert_eq!(ToolSource::PlanMode.as_str(), PLAN_MODE_SOURCE);
    Ok(match call.name.as_str() {
        ASK_USER_QUESTION_TOOL => ask_user_question(&call.arguments),
        PROPOSE_PLAN_TOOL => propose_plan(store, call).await?,
        name => Err(super::registry::not_offered(name)),
    })
}

/// Validates the questions; the result repeats them for the transcript.
fn ask_user_question(arguments: &Value) -> ToolOutput {
    let questions = arguments
        .get("questions")
        .and_then(Value::as_array)
        .ok_or("`questions` must be an array of questions")?;
    if questions.is_empty() || questions.len() > MAX_QUESTIONS {
        return Err(format!(
            "`questions` must hold 1 to {MAX_QUESTIONS} questions (it holds {})",
            questions.len()
        ));
    }
    let mut asked = Vec::with_capacity(questions.len());
    for (i, question) in questions.iter().enumerate() {
        let at = format!("questions[{i}]");
        let header = text_field(question, &at, "header", MAX_HEADER_CHARS)?;
        let text = text_field(question, &at, "question", MAX_QUESTION_CHARS)?;
        let options = question
            .get("options")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("`{at}.options` must be an array of options"))?;
        if !OPTIONS.contains(&options.len()) {
            return Err(format!(
                "`{at}.options` must hold {} to {} options (it holds {})",
                OPTIONS.start(),
                OPTIONS.end(),
                options.len()
            ));
        }
        let mut choices: Vec<Value> = Vec::with_capacity(options.len());
        for (j, option) in options.iter().enumerate() {
            let at = format!("{at}.options[{j}]");
            let label = text_field(option, &at, "label", MAX_LABEL_CHARS)?;
            let description = text_field(option, &at, "description", MAX_DESCRIPTION_CHARS)?;
            if choices.iter().any(|c| c["label"] == label) {
                return Err(format!("`{at}.label` repeats the label `{label}`"));
            }
            choices.push(json!({ "label": label, "description": description }));
        }
        asked.push(json!({ "header": header, "question": text, "options": choices }));
    }
    Ok(json!({
        "questions": asked,
        "status": "awaiting_user",
        "note": "The questions are shown to the user; their answer comes as their next message.",
    }))
}

/// Stores the plan as a file of kind `plan` linked to the chat.
async fn propose_plan(store: &Store, call: &ToolCallRow) -> Result<ToolOutput, StoreError> {
    let arguments = &call.arguments;
    let Some(content) = arguments.get("content").and_then(Value::as_str) else {
        return Ok(Err(
            "`content` must be a string: the plan, in markdown".into()
        ));
    };
    if content.trim().is_empty() {
        return Ok(Err("`content` must not be empty: write the plan".into()));
    }
    if content.len() > MAX_PLAN_BYTES {
        return Ok(Err(format!(
            "`content` is {} bytes; a plan may take at most {MAX_PLAN_BYTES} bytes: shorten it",
            content.len()
        )));
    }
    let title = match arguments.get("title") {
        None | Some(Value::Null) => "Plan".to_owned(),
        Some(_) => match text_field(arguments, "", "title", MAX_TITLE_CHARS) {
            Ok(title) => title,
            Err(e) => return Ok(Err(e)),
        },
    };
    match store
        .store_plan(call.id, call.chat_id, &title, content)
        .await
    {
        Ok(file) => Ok(Ok(json!({
            "file_id": file.id,
            "kind": "plan",
            "title": file.name,
            "bytes": file.size_bytes,
            "status": "awaiting_user",
            "note": "The plan is shown to the user for review; their answer comes as their next message.",
        }))),
        Err(StoreError::NotFound) => Ok(Err("the chat no longer exists".into())),
        Err(e) => Err(e),
    }
}

/// A string field of `object`: present, not blank, at most `max` characters, without
/// control characters. `at` names the object in errors (`questions[0]`).
fn text_field(object: &Value, at: &str, field: &str, max: usize) -> Result<String, String> {
    let path = if at.is_empty() {
        field.to_owned()
    } else {
        format!("{at}.{field}")
    };
    let text = object
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{path}` must be a string"))?;
    if text.trim().is_empty() {
        return Err(format!("`{path}` must not be empty"));
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(format!(
            "`{path}` is {chars} characters; at most {max} are allowed"
        ));
    }
    if let Some(c) = forbidden_char(text) {
        return Err(format!(
            "`{path}` must not contain control characters (found {})",
            describe_char(c)
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(label: &str) -> Value {
        json!({ "label": label, "description": format!("choose {label}") })
    }

    fn ask(options: Vec<Value>) -> ToolOutput {
        ask_user_question(&json!({
            "questions": [{ "header": "Database", "question": "Which database?", "options": options }]
        }))
    }

    #[test]
    fn questions_with_two_to_four_options_are_asked() {
        let result = ask(vec![option("PostgreSQL"), option("SQLite")]).unwrap();
        assert_eq!(result["status"], "awaiting_user");
        assert_eq!(result["questions"][0]["options"][1]["label"], "SQLite");
        assert!(ask((0..4).map(|i| option(&format!("o{i}"))).collect()).is_ok());
    }

    #[test]
    fn bad_questions_are_errors_that_say_what_is_wrong() {
        let one = ask(vec![option("only")]).unwrap_err();
        assert!(
            one.contains("`questions[0].options` must hold 2 to 4"),
            "{one}"
        );
        let five = ask((0..5).map(|i| option(&format!("o{i}"))).collect()).unwrap_err();
        assert!(five.contains("it holds 5"), "{five}");
        let twice = ask(vec![option("a"), option("a")]).unwrap_err();
        assert!(twice.contains("repeats the label"), "{twice}");
        let blank = ask(vec![option("a"), json!({"label": " ", "description": "x"})]);
        assert!(
            blank
                .unwrap_err()
                .contains("`questions[0].options[1].label` must not be empty")
        );
        let none = ask_user_question(&json!({ "questions": [] })).unwrap_err();
        assert!(none.contains("1 to 4 questions"), "{none}");
        let long = ask(vec![option(&"x".repeat(121)), option("b")]).unwrap_err();
        assert!(long.contains("at most 120"), "{long}");
        assert!(ask_user_question(&json!({})).is_err());
    }

    #[test]
    fn the_stored_source_is_the_one_the_store_hands_to_the_user() {
        assert_eq!(ToolSource::PlanMode.as_str(), PLAN_MODE_SOURCE);
    }

    #[test]
    fn plan_tool_names_are_reserved_for_workers() {
        let reserved = agentq_core::domain::BUILTIN_TOOL_NAMES;
        assert!(specs().iter().all(|s| reserved.contains(&s.name.as_str())));
    }
}
