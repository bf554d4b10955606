//! Generated titles (issue #13 item 5; ARCHITECTURE.md §7). A root chat's title starts as
//! the first 80 characters of its first message; after the chat's first answer the worker
//! that completed the turn asks the `title` model for a better one.
//!
//! - **Asked for in the answer's transaction.** The commit of a chat's first answer marks
//!   it `title_generation = 'pending'` ([`AnswerTitle::Generate`]), unless the user
//!   chose a title; a worker with titles off marks it `done` at once
//!   ([`AnswerTitle::Keep`]), and its later answers close a request still pending.
//!   PostgreSQL holds the request; the job that ran the turn is only its first nudge (a
//!   later answer's job claims any request still pending), and recovery re-sends the
//!   turn's job when a request waits too long ([`Store::nudge_pending_titles`]), so a lost
//!   job or a crashed worker loses no title.
//! - **Not guarded against a call in flight** (known, as before the finish was folded):
//!   a claim does not mark the request taken, so a later answer's job or a nudge that
//!   comes while a title call runs (up to 30 s) claims again, and a titles-off worker's
//!   answer closes it; at most [`MAX_TITLE_ATTEMPTS`] calls are made, and a call whose
//!   request was closed or failed meanwhile stores nothing.
//! - **Claimed, then stored once.** [`Store::claim_title`] counts an attempt and reads what
//!   the model needs; [`Store::save_generated_title`] writes the title only while the
//!   request is pending and the user has set none, so a duplicate job stores nothing twice
//!   and a title the user set in the meantime is never overwritten.

use std::time::Duration;

use uuid::Uuid;

use super::{Store, pg_text};
use crate::StoreError;

/// Attempts at a title before the first message's text is kept for good.
pub const MAX_TITLE_ATTEMPTS: i32 = 3;

/// What the title model is asked about.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TitleWork {
    /// The chat.
    pub chat_id: Uuid,
    /// The chat's owner (whose provider key the title request uses).
    pub owner_id: Uuid,
    /// The chat's first user message, as text.
    pub first_message: String,
    /// The first answer, as text.
    pub first_answer: String,
}

/// What a chat's answer does about its title, in the commit of the answer
/// (`turns::promote_queued_message`, in the same update of the chat row): a first answer
/// settles the request of a root chat whose title the user did not choose and for which
/// none was asked yet; a later answer finds any request still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerTitle {
    /// Ask for a generated title: the request is `pending` until the worker stores one
    /// (the outcome says a title is pending: asked for now, or still pending).
    Generate,
    /// Keep the first message's text (titles are off on this worker): the request is
    /// `done` at once, and a request still pending from a worker that had titles on is
    /// closed (`done`) the same way.
    Keep,
}

impl Store {
    /// The title work of the chat of `turn_id`, if a title is pending for it and attempts
    /// remain; counts this attempt. A request that used its attempts becomes `failed`.
    pub async fn claim_title(&self, turn_id: Uuid) -> Result<Option<TitleWork>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed: Option<(Uuid, i32)> = sqlx::query_as(
            "UPDATE chats SET title_attempts = title_attempts + 1,
                    title_generation = CASE WHEN title_attempts >= $2 THEN 'failed' ELSE 'pending' END
             WHERE id = (SELECT chat_id FROM chat_turns WHERE id = $1)
               AND title_generation = 'pending'
             RETURNING id, title_attempts",
        )
        .bind(turn_id)
        .bind(MAX_TITLE_ATTEMPTS)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((chat_id, attempts)) = claimed.filter(|&(_, n)| n <= MAX_TITLE_ATTEMPTS) else {
            tx.commit().await?;
            return Ok(None);
        };
        tracing::debug!(chat.id = %chat_id, attempts, "generating the chat's title");
        // The texts of the first live user message and the first answer after it.
        let work: TitleWork = sqlx::query_as(
            "SELECT $1::uuid AS chat_id, (SELECT owner_id FROM chats WHERE id = $1) AS owner_id,
                    coalesce((SELECT string_agg(p->>'text', '') FROM jsonb_array_elements(m.content) p
                              WHERE p->>'type' = 'text'), '') AS first_message,
                    coalesce((SELECT string_agg(p->>'text', '') FROM chat_messages a,
                                     jsonb_array_elements(a.content) p
                              WHERE a.id = (SELECT id FROM chat_messages
                                            WHERE chat_id = $1 AND role = 'assistant' AND kind = 'message'
                                              AND superseded_at IS NULL AND id > m.id
                                            ORDER BY id LIMIT 1)
                                AND p->>'type' = 'text'), '') AS first_answer
             FROM chat_messages m
             WHERE m.chat_id = $1 AND m.role = 'user' AND m.superseded_at IS NULL
             ORDER BY m.id LIMIT 1",
        )
        .bind(chat_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(work))
    }

    /// Stores a generated title if the chat's request is still pending and the user set no
    /// title meanwhile; `Some(title)` when it was stored (announce it), `None` otherwise.
    /// Either way the request is done.
    pub async fn save_generated_title(
        &self,
        chat_id: Uuid,
        title: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE chats SET title = CASE WHEN title_set_by_user THEN title ELSE $2 END,
                    title_generation = 'done',
                    updated_at = CASE WHEN title_set_by_user THEN updated_at ELSE now() END
             WHERE id = $1 AND title_generation = 'pending'
             RETURNING CASE WHEN title_set_by_user THEN NULL ELSE title END",
        )
        .bind(chat_id)
        .bind(pg_text(title))
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Closes the pending title request of the chat of `turn_id` without a title (titles
    /// are off on this worker): the first message's text stays.
    pub async fn close_title_request(&self, turn_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE chats SET title_generation = 'done'
             WHERE id = (SELECT chat_id FROM chat_turns WHERE id = $1) AND title_generation = 'pending'",
        )
        .bind(turn_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pending title requests asked for more than `stale` ago (their nudge seems lost):
    /// marks them asked for now and returns the last completed turn of each chat, whose
    /// job generates the title again.
    pub async fn nudge_pending_titles(
        &self,
        stale: Duration,
        batch: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let turns: Vec<Option<Uuid>> = sqlx::query_scalar(
            "UPDATE chats c SET title_requested_at = now()
             WHERE c.id IN (
                SELECT id FROM chats
                WHERE title_generation = 'pending'
                  AND title_requested_at < now() - make_interval(secs => $1)
                ORDER BY title_requested_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
             RETURNING (SELECT t.id FROM chat_turns t
                        WHERE t.chat_id = c.id AND t.status = 'completed'
                        ORDER BY t.seq DESC LIMIT 1)",
        )
        .bind(stale.as_secs_f64())
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        Ok(turns.into_iter().flatten().collect())
    }
}
