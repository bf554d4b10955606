//! The chat list (`GET /api/v1/chats`; ARCHITECTURE.md §11): an owner's root chats that match
//! a search ([`ChatQuery`], `crate::chat_query`), pinned first by position, then most recently
//! updated, newest id first, each with its subagent chats embedded.
//!
//! # One index range per page
//!
//! The order is one key, `(pinned, -pin_order, updated_at, id)`, every part descending, and
//! `chats_list_idx` holds it after `(owner_id, archived)`. A page after a cursor is then the
//! index range below the cursor's key (a row comparison), read backwards until the page is
//! full: as cheap on page 1,000 as on page 1, and stable when many chats share one
//! `updated_at` (the id breaks the tie, so every chat has its own place). `archived:any`
//! reads the two ranges (not archived, archived) and merges them.
//!
//! The other terms are conditions on the same statement. PostgreSQL either walks the range
//! and filters (a term most chats match) or starts from an index of the term and sorts
//! what it found (a rare one): `chats_search_idx` for `title`, `status`, `client_type` and
//! `label`, the `chat_diff_statuses` indexes for `pr`, `repo`, `pr_title` and `pr_status`
//! (migrations `20261203002000`, `20261203002100`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Store, chats::CHAT_COLUMNS, pg_json, pg_text, subagents::CHILD_COLUMNS};
use crate::{
    StoreError,
    chat_query::{ArchiveScope, ChatQuery, PrStatus, Term},
    domain::Chat,
    store::ChildChat,
};

/// One chat of the list, with its subagent chats.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatListItem {
    /// The root chat.
    #[serde(flatten)]
    pub chat: Chat,
    /// Its subagent chats, oldest first, closed ones included (at most the spawn cap of
    /// one chat).
    pub children: Vec<ChildChat>,
}

/// One page of the chat list.
#[derive(Debug, Clone)]
pub struct ChatPage {
    /// The chats, pinned first, then most recently updated.
    pub chats: Vec<ChatListItem>,
    /// Pass as `after_id` to get the next page; `None` on the last page.
    pub next_after_id: Option<Uuid>,
}

/// The list order, every part descending: pinned chats first, by position (1 first), then
/// the most recently updated, then the newest id. `chats_list_idx` holds the same
/// expressions.
const LIST_ORDER: &str = "(c.pin_order IS NOT NULL) DESC, (-coalesce(c.pin_order, 0)) DESC, \
                          c.updated_at DESC, c.id DESC";
/// The list order's key, for the row comparison with a cursor.
const LIST_KEY: &str =
    "((c.pin_order IS NOT NULL), (-coalesce(c.pin_order, 0)), c.updated_at, c.id)";

/// A chat's place in the list order.
#[derive(Debug, sqlx::FromRow)]
struct ListKey {
    pinned: bool,
    negative_pin: i32,
    updated_at: DateTime<Utc>,
    id: Uuid,
}

impl Store {
    /// `owner`'s root chats matching `query`, pinned first, then most recently updated,
    /// at most `limit`, after the chat `after_id` (the last of the previous page), with
    /// their subagent chats. An `after_id` that names no root chat of `owner` (deleted
    /// since, say) is [`StoreError::NotFound`]: its place in the order is unknown.
    pub async fn list_root_chats(
        &self,
        owner: Uuid,
        query: &ChatQuery,
        limit: i64,
        after_id: Option<Uuid>,
    ) -> Result<ChatPage, StoreError> {
        let after = match after_id {
            Some(id) => Some(self.list_key(owner, id).await?),
            None => None,
        };
        let archived: &[bool] = match query.archive_scope() {
            ArchiveScope::Only(false) => &[false],
            ArchiveScope::Only(true) => &[true],
            ArchiveScope::Both => &[false, true],
            ArchiveScope::Neither => &[],
        };
        let mut sql = QueryBuilder::<Postgres>::new("");
        match archived {
            [] => {
                return Ok(ChatPage {
                    chats: Vec::new(),
                    next_after_id: None,
                });
            }
            [only] => push_range(&mut sql, owner, *only, after.as_ref(), query, limit + 1),
            both => {
                // Two index ranges, each already in order, merged: never a sort of all the
                // owner's chats.
                sql.push(format!("SELECT {CHAT_COLUMNS} FROM ("));
                for (n, archived) in both.iter().enumerate() {
                    if n > 0 {
                        sql.push(" UNION ALL ");
                    }
                    push_range(&mut sql, owner, *archived, after.as_ref(), query, limit + 1);
                }
                sql.push(format!(") c ORDER BY {LIST_ORDER} LIMIT "));
                sql.push_bind(limit + 1);
            }
        }
        // Not a prepared statement kept for reuse: PostgreSQL would in time plan it once for
        // any values, and the good plan depends on them (`title:fix` matching half the
        // chats wants the ordered range, `title:x7Qz` the trigram index). Planned per call
        // with the values, it costs well under a millisecond more.
        let mut chats: Vec<Chat> = sql
            .build_query_as()
            .persistent(false)
            .fetch_all(&self.pool)
            .await?;
        let next_after_id = if chats.len() as i64 > limit {
            chats.truncate(limit as usize);
            chats.last().map(|c| c.id)
        } else {
            None
        };
        let chats = self.with_children(owner, chats).await?;
        Ok(ChatPage {
            chats,
            next_after_id,
        })
    }

    /// Where `owner`'s root chat `id` stands in the list order.
    async fn list_key(&self, owner: Uuid, id: Uuid) -> Result<ListKey, StoreError> {
        sqlx::query_as(
            "SELECT pin_order IS NOT NULL AS pinned, -coalesce(pin_order, 0) AS negative_pin,
                    updated_at, id
             FROM chats WHERE id = $1 AND owner_id = $2 AND parent_chat_id IS NULL",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// The page's chats with their subagent chats (one query for the page).
    async fn with_children(
        &self,
        owner: Uuid,
        chats: Vec<Chat>,
    ) -> Result<Vec<ChatListItem>, StoreError> {
        let ids: Vec<Uuid> = chats.iter().map(|c| c.id).collect();
        let children: Vec<ChildChat> = if ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CHILD_COLUMNS} FROM chats
                 WHERE parent_chat_id = ANY($1) AND owner_id = $2 ORDER BY parent_chat_id, id"
            )))
            .bind(&ids)
            .bind(owner)
            .fetch_all(&self.pool)
            .await?
        };
        let mut by_parent: HashMap<Uuid, Vec<ChildChat>> = HashMap::new();
        for child in children {
            by_parent
                .entry(child.parent_chat_id)
                .or_default()
                .push(child);
        }
        Ok(chats
            .into_iter()
            .map(|chat| ChatListItem {
                children: by_parent.remove(&chat.id).unwrap_or_default(),
                chat,
            })
            .collect())
    }
}

/// One index range of the list: `owner`'s root chats with this archive state, below the
/// cursor, matching every term, in list order, at most `limit`; parenthesized, so two of
/// them can be joined with `UNION ALL`.
fn push_range(
    sql: &mut QueryBuilder<Postgres>,
    owner: Uuid,
    archived: bool,
    after: Option<&ListKey>,
    query: &ChatQuery,
    limit: i64,
) {
    // `archived` is written into the statement, not bound: a plan made for one value would
    // not fit the other (the archived range is usually the larger).
    sql.push(format!(
        "(SELECT {CHAT_COLUMNS} FROM chats c WHERE c.parent_chat_id IS NULL AND c.archived = {archived} AND c.owner_id = "
    ));
    sql.push_bind(owner);
    if let Some(key) = after {
        sql.push(format!(" AND {LIST_KEY} < ("));
        sql.push_bind(key.pinned);
        sql.push(", ");
        sql.push_bind(key.negative_pin);
        sql.push(", ");
        sql.push_bind(key.updated_at);
        sql.push(", ");
        sql.push_bind(key.id);
        sql.push(")");
    }
    for term in query.terms() {
        push_term(sql, term);
    }
    sql.push(format!(" ORDER BY {LIST_ORDER} LIMIT "));
    sql.push_bind(limit);
    sql.push(")");
}

/// The condition of one search term on the chat `c` (`archived` terms choose the ranges
/// instead). `pr`, `repo`, `pr_title` and `pr_status` other than `none` match only chats
/// that have a diff status.
fn push_term(sql: &mut QueryBuilder<Postgres>, term: &Term) {
    const DIFF_STATUS: &str =
        " AND EXISTS (SELECT 1 FROM chat_diff_statuses d WHERE d.chat_id = c.id AND ";
    match term {
        Term::Archived(_) => {}
        Term::Title(text) => {
            sql.push(" AND c.title ILIKE ");
            sql.push_bind(contains(text));
        }
        Term::Status(statuses) => {
            sql.push(" AND c.status = ANY(");
            sql.push_bind(
                statuses
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<String>>(),
            );
            sql.push(")");
        }
        Term::ClientType(client_type) => {
            sql.push(" AND c.client_type = ");
            sql.push_bind(*client_type);
        }
        Term::Label { key, value } => {
            sql.push(" AND c.labels @> ");
            sql.push_bind(pg_json(&serde_json::json!({ key: value })));
        }
        Term::Pr(number) => {
            sql.push(DIFF_STATUS);
            sql.push("d.pr_number = ");
            sql.push_bind(*number);
            sql.push(")");
        }
        Term::Repo(text) => {
            let pattern = contains(text);
            sql.push(DIFF_STATUS);
            sql.push("(d.git_remote_origin ILIKE ");
            sql.push_bind(pattern.clone());
            sql.push(" OR d.pr_url ILIKE ");
            sql.push_bind(pattern);
            sql.push("))");
        }
        Term::PrTitle(text) => {
            sql.push(DIFF_STATUS);
            sql.push("d.pr_title ILIKE ");
            sql.push_bind(contains(text));
            sql.push(")");
        }
        Term::PrStatus(status) => match pr_state(*status) {
            Some(condition) => {
                sql.push(DIFF_STATUS);
                sql.push(condition);
                sql.push(")");
            }
            None => {
                sql.push(
                    " AND NOT EXISTS (SELECT 1 FROM chat_diff_statuses d WHERE d.chat_id = c.id \
                     AND (d.pr_number IS NOT NULL OR d.pr_url IS NOT NULL))",
                );
            }
        },
    }
}

/// The diff status condition of `pr_status:<status>`; `None` for `none`, which is the
/// absence of a PR (no diff status, or one without a PR number or URL).
fn pr_state(status: PrStatus) -> Option<&'static str> {
    Some(match status {
        PrStatus::Draft => "d.pr_state = 'open' AND d.pr_draft",
        PrStatus::Open => "d.pr_state = 'open' AND NOT d.pr_draft",
        PrStatus::Merged => "d.pr_state = 'merged'",
        PrStatus::Closed => "d.pr_state = 'closed'",
        PrStatus::None => return None,
    })
}

/// A `LIKE` pattern matching text that holds `text`, whose `%`, `_` and `\` match only
/// themselves.
fn contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in pg_text(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_the_text_match_only_themselves() {
        assert_eq!(contains("100%_done\\"), "%100\\%\\_done\\\\%");
        assert_eq!(contains("a\0b"), "%a\u{FFFD}b%");
    }
}
