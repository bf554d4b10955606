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
//! what it found (a rare one; `title:` is walked first, below): `chats_search_idx` for
//! `status`, `client_type` and `label`,
//! `title_grams_idx` of the table `title_grams` for `title`, the `chat_diff_statuses`
//! indexes for `pr`, `repo`, `pr_title` and `pr_status` (migrations `20261203002000`,
//! `20261205000200`, `20261209000100`, `20261203002100`).
//!
//! # `title:` per owner
//!
//! A title's grams are its lowercase 3-character pieces hashed with its owner
//! (`chat_title_grams`), so the index's list for a piece holds one owner's chats: a search
//! reads lists as long as its owner's own chats, not the whole table's (a trigram index over
//! a million `chat N` titles decoded a million-item list per common trigram, 20-30 ms,
//! whoever searched). The grams only choose candidates; `title ILIKE` decides, so a hash
//! collision costs a row read, never a wrong answer. They live in a table of their own,
//! `title_grams`, written when a root chat is created and when its title or owner
//! changes: as a column of `chats` they went into their index again with every write of
//! the chat row (a turn's, an archive's), none of which is a HOT update.
//!
//! PostgreSQL cannot estimate how many chats a text's grams match: it multiplies each
//! gram's frequency as if they were independent, and every gram of a title carries the
//! owner, so `title:"chat 1"` looks like ten matches when it is twelve thousand, and the
//! planner gathers and sorts them all (25 ms at 100,000 chats) instead of walking the range
//! (1 ms). A `title:` search therefore walks first: each range's first
//! [`TITLE_WALK_PAGES`] pages in list order, filtered, stopping at a page's worth of
//! matches (`walk_range`). A range the walk read to its end, or where it found a page's
//! worth, is answered; only a term rarer than that in a longer range (under a twentieth of
//! the walked window) goes on to the statement that may start from the grams' index, which
//! for such a term gathers few. The two ranges of `archived:any` are read in one snapshot.

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
/// A `title:` search first reads this many pages' worth of its range in list order
/// (`walk_range`): a term that a twentieth of the owner's chats match is answered
/// there, reading about as many rows as it returns times twenty, before the title grams'
/// index would gather every match to sort them.
const TITLE_WALK_PAGES: i64 = 20;

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
        let mut chats = if archived.is_empty() {
            Vec::new()
        } else if query
            .terms()
            .iter()
            .any(|term| matches!(term, Term::Title(text) if has_grams(text)))
        {
            self.title_search(owner, archived, after.as_ref(), query, limit + 1)
                .await?
        } else {
            let mut sql = QueryBuilder::<Postgres>::new("");
            if let [only] = archived {
                push_range(&mut sql, owner, *only, after.as_ref(), query, limit + 1);
            } else {
                // Two index ranges, each already in order, merged: never a sort of all the
                // owner's chats.
                sql.push(format!("SELECT {CHAT_COLUMNS} FROM ("));
                for (n, archived) in archived.iter().enumerate() {
                    if n > 0 {
                        sql.push(" UNION ALL ");
                    }
                    push_range(&mut sql, owner, *archived, after.as_ref(), query, limit + 1);
                }
                sql.push(format!(") c ORDER BY {LIST_ORDER} LIMIT "));
                sql.push_bind(limit + 1);
            }
            fetch(&mut sql, &self.pool).await?
        };
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

    /// The first `limit` chats of a search with a `title:` term that has grams, each range's
    /// from [`range_matches`], two ranges merged. Two ranges read one snapshot (a
    /// repeatable-read transaction), so a chat archived meanwhile is on the page once, in
    /// the range it was in.
    async fn title_search(
        &self,
        owner: Uuid,
        ranges: &[bool],
        after: Option<&ListKey>,
        query: &ChatQuery,
        limit: i64,
    ) -> Result<Vec<Chat>, StoreError> {
        // One range: the page is one statement's, the walk's or the other's.
        if let [only] = ranges {
            let mut conn = self.pool.acquire().await?;
            return range_matches(&mut conn, owner, *only, after, query, limit).await;
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let mut found = Vec::new();
        for archived in ranges {
            found.extend(range_matches(&mut tx, owner, *archived, after, query, limit).await?);
        }
        tx.commit().await?;
        // Each range's first `limit` matches in order: the merged first `limit` are among
        // them.
        found.sort_by_key(|chat| {
            std::cmp::Reverse((
                chat.pin_order.is_some(),
                -chat.pin_order.unwrap_or(0),
                chat.updated_at,
                chat.id,
            ))
        });
        found.truncate(limit as usize);
        Ok(found)
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

/// The rows a list statement finds.
async fn fetch<'e, T>(
    sql: &mut QueryBuilder<Postgres>,
    db: impl sqlx::PgExecutor<'e>,
) -> Result<Vec<T>, StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    // Not a prepared statement kept for reuse: PostgreSQL would in time plan it once for any
    // values, and the good plan depends on them (`status:error` matching few chats wants its
    // index, `status:waiting` matching most the ordered range). Planned per call with the
    // values, it costs well under a millisecond more.
    Ok(sql.build_query_as().persistent(false).fetch_all(db).await?)
}

/// One range's first `limit` matches of a `title:` search: walked ([`walk_range`]), or,
/// where the walk is not enough, found by the statement that may start from the title grams.
async fn range_matches(
    conn: &mut sqlx::PgConnection,
    owner: Uuid,
    archived: bool,
    after: Option<&ListKey>,
    query: &ChatQuery,
    limit: i64,
) -> Result<Vec<Chat>, StoreError> {
    if let Some(chats) = walk_range(&mut *conn, owner, archived, after, query, limit).await? {
        return Ok(chats);
    }
    let mut sql = QueryBuilder::<Postgres>::new("");
    push_range(&mut sql, owner, archived, after, query, limit);
    fetch(&mut sql, &mut *conn).await
}

/// A chat the title walk read: a match, or the last chat of the walk's window.
#[derive(sqlx::FromRow)]
struct Walked {
    #[sqlx(flatten)]
    chat: Chat,
    walk_hit: bool,
    walk_last: bool,
}

/// One range's first `limit` matches of `query`, found by reading its first
/// [`TITLE_WALK_PAGES`] `* limit` chats in list order and stopping at the `limit`-th match;
/// `None` when that window was full and held fewer (the rest of the range may hold more).
/// A window the range did not fill read all of it: its matches are all there are.
async fn walk_range(
    conn: &mut sqlx::PgConnection,
    owner: Uuid,
    archived: bool,
    after: Option<&ListKey>,
    query: &ChatQuery,
    limit: i64,
) -> Result<Option<Vec<Chat>>, StoreError> {
    let window = limit * TITLE_WALK_PAGES;
    // The window in list order, its parts named so that the outer ORDER BY is the inner one's
    // and PostgreSQL stops reading at the `limit`-th match; its last chat comes out too,
    // match or not, to say the window was full.
    let mut sql = QueryBuilder::<Postgres>::new("SELECT * FROM (SELECT c.*, (true");
    for term in query.terms() {
        push_term(&mut sql, owner, term, false);
    }
    sql.push(format!(
        ") AS walk_hit FROM (SELECT {CHAT_COLUMNS}, (c.pin_order IS NOT NULL) AS list_pinned, \
         (-coalesce(c.pin_order, 0)) AS list_pin, row_number() OVER (ORDER BY {LIST_ORDER}) = "
    ));
    sql.push_bind(window);
    sql.push(" AS walk_last ");
    push_range_of(&mut sql, owner, archived, after);
    sql.push(format!(" ORDER BY {LIST_ORDER} LIMIT "));
    sql.push_bind(window);
    sql.push(
        ") c) c WHERE c.walk_hit OR c.walk_last \
         ORDER BY c.list_pinned DESC, c.list_pin DESC, c.updated_at DESC, c.id DESC LIMIT ",
    );
    sql.push_bind(limit);
    let rows: Vec<Walked> = fetch(&mut sql, &mut *conn).await?;
    let full = rows.iter().any(|row| row.walk_last);
    let hits: Vec<Chat> = rows
        .into_iter()
        .filter(|row| row.walk_hit)
        .map(|row| row.chat)
        .collect();
    Ok((hits.len() as i64 >= limit || !full).then_some(hits))
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
    sql.push(format!("(SELECT {CHAT_COLUMNS} "));
    push_range_of(sql, owner, archived, after);
    for term in query.terms() {
        push_term(sql, owner, term, true);
    }
    sql.push(format!(" ORDER BY {LIST_ORDER} LIMIT "));
    sql.push_bind(limit);
    sql.push(")");
}

/// `FROM` and `WHERE` of one range: `owner`'s root chats with this archive state, below the
/// cursor.
fn push_range_of(
    sql: &mut QueryBuilder<Postgres>,
    owner: Uuid,
    archived: bool,
    after: Option<&ListKey>,
) {
    // `archived` is written into the statement, not bound: a plan made for one value would
    // not fit the other (the archived range is usually the larger).
    sql.push(format!(
        "FROM chats c WHERE c.parent_chat_id IS NULL AND c.archived = {archived} AND c.owner_id = "
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
}

/// The condition of one search term on `owner`'s chat `c` (`archived` terms choose the
/// ranges instead); `title_grams`: a `title:` term also asks the owner's title grams, for a
/// statement that may start from their index. `pr`, `repo`, `pr_title` and `pr_status`
/// other than `none` match only chats that have a diff status.
fn push_term(sql: &mut QueryBuilder<Postgres>, owner: Uuid, term: &Term, title_grams: bool) {
    const DIFF_STATUS: &str =
        " AND EXISTS (SELECT 1 FROM chat_diff_statuses d WHERE d.chat_id = c.id AND ";
    match term {
        Term::Archived(_) => {}
        Term::Title(text) => {
            // The owner's title grams (migration `20261205000200`; the function as a loop
            // since `20261206000100`, their own table since `20261209000100`) find the
            // candidates; the ILIKE decides.
            let text = pg_text(text);
            if title_grams && has_grams(&text) {
                sql.push(
                    " AND c.id IN (SELECT g.chat_id FROM title_grams g \
                     WHERE g.grams @> chat_title_grams(",
                );
                sql.push_bind(owner);
                sql.push(", ");
                sql.push_bind(text.clone().into_owned());
                sql.push("))");
            }
            sql.push(" AND c.title ILIKE ");
            sql.push_bind(contains(&text));
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

/// Whether a `title:` text has grams (3 characters or more): `@> '{}'` would read the whole
/// index, so a shorter text is left to the ILIKE alone.
fn has_grams(text: &str) -> bool {
    pg_text(text).chars().nth(2).is_some()
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
