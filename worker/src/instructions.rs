//! The system message of a step (issue #12, item 2; ARCHITECTURE.md §7): one text composed
//! from, in this order, the site's system prompt, the chat owner's instructions, the
//! chat's own instructions, the list of the owner's skills, and tool guidance. Each part
//! that is empty is left out; when all are, the request has no system message.
//!
//! It is read afresh for every step (with the turn, by the statement that acquires it:
//! `AcquiredTurn::instructions`, which the tool registry's offer reads too: `read_skill` is offered exactly when skills are listed;
//! the tool guidance is the offer's, `crate::tools::Offer::guidance`), so a change
//! to the site prompt, the user's instructions or their skills applies from the next step,
//! and a retried step sends what the first attempt sent unless something changed between.
//! The adapters send it the way their wire format expects (OpenAI: a leading `system`
//! message; Anthropic: the top-level `system` field).
//!
//! ```
//! use agentq_core::store::{InstructionSources, SkillListing};
//! use agentq_worker::instructions::compose;
//!
//! let sources = InstructionSources {
//!     site: "Be kind.".into(),
//!     user: String::new(),
//!     chat: Some("Answer in French.".into()),
//!     skills: vec![SkillListing { name: "pdf-forms".into(), description: "Fill PDF forms.".into() }],
//! };
//! let system = compose(&sources, "").unwrap();
//! assert!(system.starts_with("Be kind.\n\nAnswer in French.\n\n# Skills\n"));
//! assert!(system.ends_with("- pdf-forms: Fill PDF forms."));
//! assert_eq!(compose(&InstructionSources::default(), ""), None);
//! ```

use agentq_core::store::InstructionSources;

/// The tool the skills list tells the model to read a skill with (the tool registry offers
/// it whenever the list is there).
pub use crate::tools::READ_SKILL_TOOL;

/// The system message of a step, or `None` when there is nothing to say: the parts that
/// are not blank joined with blank lines (see the module page); `tool_guidance` is the
/// step's offer's ([`crate::tools::Offer::guidance`]).
pub fn compose(sources: &InstructionSources, tool_guidance: &str) -> Option<String> {
    let skills = skills_section(sources);
    let parts = [
        sources.site.as_str(),
        sources.user.as_str(),
        sources.chat.as_deref().unwrap_or_default(),
        skills.as_str(),
        tool_guidance,
    ];
    let text = parts
        .iter()
        .map(|part| part.trim())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    (!text.is_empty()).then_some(text)
}

/// The owner's skills, one per line, with how to read one ('' when there are none).
fn skills_section(sources: &InstructionSources) -> String {
    if sources.skills.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "# Skills\n\nThe user has written these skills: instructions for particular tasks. When \
         a task matches a skill's description, read the skill first with the `{READ_SKILL_TOOL}` \
         tool (argument `name`) and follow it.\n"
    );
    for skill in &sources.skills {
        if skill.description.is_empty() {
            text.push_str(&format!("\n- {}", skill.name));
        } else {
            text.push_str(&format!("\n- {}: {}", skill.name, skill.description));
        }
    }
    text
}
