//! PostgreSQL constraint violations turned into typed [`StoreError`]s, here and only here,
//! so no caller ever matches on a constraint name (ARCHITECTURE.md §5, §11). A constraint
//! listed below becomes [`StoreError::Duplicate`], [`StoreError::UnknownReference`] or
//! [`StoreError::Required`] naming the request field it guards; any other violation stays
//! a database error (a bug or a broken invariant, not a client mistake).

use crate::StoreError;

/// What a violated constraint means for the caller.
enum Meaning {
    /// A unique constraint: the value is taken.
    Duplicate,
    /// A foreign key: the value names no row.
    UnknownReference,
    /// A check that a value is present (a provider's key, for kinds that need one).
    Required,
}

/// Constraint name, what its violation means, and the field it guards.
const CONSTRAINTS: &[(&str, Meaning, &str)] = &[
    ("providers_name_key", Meaning::Duplicate, "name"),
    // `providers_key_policy_check` is not listed: `create_provider` and `update_provider`
    // judge the policy first (the latter under the row's lock) and name the field
    // `KeyPolicy::problem` blames; the check is the backstop for plain SQL.
    ("providers_api_key_required", Meaning::Required, "api_key"),
    ("models_provider_id_name_key", Meaning::Duplicate, "name"),
    ("mcp_servers_slug_key", Meaning::Duplicate, "slug"),
    ("organizations_name_key", Meaning::Duplicate, "name"),
    (
        "organization_members_user_id_fkey",
        Meaning::UnknownReference,
        "user_id",
    ),
    (
        "site_config_auto_grant_organization_fk",
        Meaning::UnknownReference,
        "auto_grant_agents_access_organization_id",
    ),
    (
        "mcp_servers_organization_fk",
        Meaning::UnknownReference,
        "organization_id",
    ),
    ("user_skills_owner_name_key", Meaning::Duplicate, "name"),
    (
        "models_provider_id_fkey",
        Meaning::UnknownReference,
        "provider_id",
    ),
    (
        "chats_model_config_fk",
        Meaning::UnknownReference,
        "model_config_id",
    ),
    (
        "site_config_general_subagent_model_fk",
        Meaning::UnknownReference,
        "general",
    ),
    (
        "site_config_explore_subagent_model_fk",
        Meaning::UnknownReference,
        "explore",
    ),
    (
        "site_config_root_model_fk",
        Meaning::UnknownReference,
        "root",
    ),
    (
        "site_config_title_model_fk",
        Meaning::UnknownReference,
        "title",
    ),
    (
        "site_config_compaction_model_fk",
        Meaning::UnknownReference,
        "compaction",
    ),
    ("users_root_model_fk", Meaning::UnknownReference, "root"),
    (
        "chat_queued_messages_model_config_id_fkey",
        Meaning::UnknownReference,
        "model_config_id",
    ),
];

/// The store's error for `e`: a typed one when `e` violates a constraint listed above.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    let known = match &e {
        sqlx::Error::Database(db) => db.constraint().and_then(|name| {
            CONSTRAINTS
                .iter()
                .find(|(constraint, _, _)| *constraint == name)
        }),
        _ => None,
    };
    match known {
        Some((_, Meaning::Duplicate, field)) => StoreError::Duplicate { field },
        Some((_, Meaning::UnknownReference, field)) => StoreError::UnknownReference { field },
        Some((_, Meaning::Required, field)) => StoreError::Required { field },
        None => StoreError::Database(e),
    }
}
