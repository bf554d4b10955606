//! What a chat's system message is composed from (ARCHITECTURE.md §3): the site's system
//! prompt, the owner's instructions, the chat's own, and the owner's skills by name. The
//! worker gets them with the turn it acquires, in the same statement
//! (`store::instructions::sources_columns`).

use serde::Deserialize;

/// Everything a chat's system message is composed from, read in one round trip. As
/// columns of a row: `instructions_site`, `instructions_user`, `instructions_chat` and
/// `instructions_skills` (a JSON array), so a statement that returns more (the acquired
/// turn) can carry them beside its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct InstructionSources {
    /// The site's system prompt ('' when none).
    #[sqlx(rename = "instructions_site")]
    pub site: String,
    /// The chat owner's personal instructions ('' when none).
    #[sqlx(rename = "instructions_user")]
    pub user: String,
    /// The chat's own instructions.
    #[sqlx(rename = "instructions_chat")]
    pub chat: Option<String>,
    /// The owner's skills, by name.
    #[sqlx(rename = "instructions_skills", json)]
    pub skills: Vec<SkillListing>,
}

/// A skill as the system prompt lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SkillListing {
    /// Kebab-case name.
    pub name: String,
    /// One line ('' when none).
    pub description: String,
}
