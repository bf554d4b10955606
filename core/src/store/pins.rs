//! Pinned chats (issue #14 item 4; ARCHITECTURE.md §3, §11): an owner's pinned root chats
//! hold positions 1, 2, ... in `chats.pin_order` (NULL: not pinned), and the chat list shows
//! them first, in that order (`chat_list.rs`). Auto-archive never takes a pinned chat.
//!
//! A change names one chat and the position it wants; the owner's other pinned chats are
//! renumbered around it in the same statement, so positions stay 1..n whatever clients
//! send: pinning at 2 puts the chat second and moves the old second one to third, a
//! position past the end is the end, unpinning closes the gap. Two changes of one owner's
//! pins take turns on a transaction-scoped advisory lock ([`lock_pins`]), taken before any
//! row lock, so concurrent renumberings neither deadlock nor interleave.

use uuid::Uuid;

use crate::StoreError;

/// Most chats one owner may have pinned at once.
pub const MAX_PINNED_CHATS: i64 = 100;

/// Makes the transaction the only one changing `owner`'s pins until it ends. The first lock
/// of the transaction: every renumbering locks rows of several of the owner's chats.
pub(super) async fn lock_pins(tx: &mut sqlx::PgConnection, owner: Uuid) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('pins:' || $1::text, 0))")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Pins `owner`'s root chat `chat_id` at `position` (1 first; past the end: last) or unpins
/// it (`None`), renumbering the owner's other pinned chats 1, 2, ... in their current order
/// around it. The caller holds [`lock_pins`] and the chat's lock. A subagent chat (listed
/// with its root) and a pin past [`MAX_PINNED_CHATS`] are [`StoreError::Conflict`]. Returns
/// the chats whose position changed (the chat itself among them, unless it stayed put), so
/// the caller can announce each (their list entries changed).
pub(super) async fn set_pin_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    owner: Uuid,
    position: Option<i32>,
) -> Result<Vec<Uuid>, StoreError> {
    let (is_root, pinned, others): (bool, bool, i64) = sqlx::query_as(
        "SELECT c.parent_chat_id IS NULL, c.pin_order IS NOT NULL,
                (SELECT count(*) FROM chats o WHERE o.owner_id = $2 AND o.parent_chat_id IS NULL
                   AND o.pin_order IS NOT NULL AND o.id <> $1)
         FROM chats c WHERE c.id = $1",
    )
    .bind(chat_id)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    if !is_root {
        return Err(StoreError::Conflict(
            "a subagent chat is listed with its root chat: pin the root".into(),
        ));
    }
    if position.is_some() && !pinned && others >= MAX_PINNED_CHATS {
        return Err(StoreError::Conflict(format!(
            "{MAX_PINNED_CHATS} chats are pinned already: unpin one first"
        )));
    }
    Ok(sqlx::query_scalar(
        "WITH others AS (
            SELECT id, row_number() OVER (ORDER BY pin_order, updated_at DESC, id DESC)::int AS n
            FROM chats
            WHERE owner_id = $2 AND parent_chat_id IS NULL AND pin_order IS NOT NULL AND id <> $1
         ), wanted AS (
            -- NULL (unpin) stays NULL: `least` would ignore it.
            SELECT CASE WHEN $3::int IS NOT NULL
                        THEN least($3::int, (SELECT count(*) FROM others)::int + 1) END AS at
         ), placed AS (
            SELECT o.id, CASE WHEN o.n >= w.at THEN o.n + 1 ELSE o.n END AS pos
            FROM others o, wanted w
            UNION ALL
            SELECT $1, w.at FROM wanted w
         )
         UPDATE chats c SET pin_order = p.pos FROM placed p
         WHERE c.id = p.id AND c.pin_order IS DISTINCT FROM p.pos
         RETURNING c.id",
    )
    .bind(chat_id)
    .bind(owner)
    .bind(position)
    .fetch_all(&mut *tx)
    .await?)
}
