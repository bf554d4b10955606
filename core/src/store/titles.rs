//! Generated titles (issue #13 item 5; ARCHITECTURE.md §7). A root chat's title starts as
//! the first 80 characters of its first message; after the chat's first answer the worker
//! that completed the turn asks the `title` model for a better one.
//!
//! - **Asked for in the answer's transaction.** The commit of a chat's first answer marks
//!   it `title_generation = 'pending'` ([`AnswerTitle::Generate`]), unless the user
//!   chose a title; a worker with titles off marks it `done` at once
//!   ([`AnswerTitle::Keep`]), and its later answers close a request still pending.
//!   PostgreSQL holds the request; the job that ran the turn is only its first nudge (a
//!   later answer's job claims any request still pending and unclaimed), and recovery re-sends the
//!   turn's job when a request waits too long ([`Store::nudge_pending_titles`]), so a lost
//!   job or a crashed worker loses no title.
//! - **Claimed while a call is in flight.** A claim stamps `title_claimed_at`; for
//!   [`TITLE_CLAIM_TTL`] after it (twice the model call's bound) no later answer's job,
//!   recovery nudge or titles-off worker claims or closes the request, so one call runs at
//!   a time. A failed call clears its own stamp ([`Store::release_title_claim`]; a claim
//!   taken after its own expired is not touched) and the next answer or nudge tries again
//!   at once; a worker that died during its call holds the claim until it expires, and
//!   recovery's nudge comes after that. A call slower than the claim (a database that
//!   makes it wait) may meet a second one: the first to store wins, the other stores
//!   nothing.
//! - **Claimed, then stored once.** [`Store::claim_title`] counts an attempt and reads what
//!   the model needs; [`Store::save_generated_title`] writes the title only while the
//!   request is pending and the user has set none, so a duplicate job stores nothing twice
//!   and a title the user set in the meantime is never overwritten.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, pg_text};
use crate::StoreError;

/// Attempts at a title before the first message's text is kept for good.
pub const MAX_TITLE_ATTEMPTS: i32 = 3;

/// How long a claim holds a title request: no one else claims or closes it meanwhile. The
/// worker's whole title call (model lookup, call and store) must fit well inside it.
pub const TITLE_CLAIM_TTL: Duration = Duration::from_secs(60);

/// SQL: the chat row's title request is not claimed by a call in flight (no claim, or one
/// older than [`TITLE_CLAIM_TTL`]; a unit test keeps the two equal).
pub(super) const UNCLAIMED: &str =
    "(title_claimed_at IS NULL OR title_claimed_at < now() - interval '60 seconds')";

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
    /// When this claim was stamped: what [`Store::release_title_claim`] releases (only
    /// this claim, never a later one).
    pub claimed_at: DateTime<Utc>,
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
    /// The title work of the chat of `turn_id`, if a title is pending for it, no call is in
    /// flight for it and attempts remain; counts this attempt and stamps the claim (the
    /// caller stores a title or releases the claim). A request that used its attempts
    /// becomes `failed`.
    pub async fn claim_title(&self, turn_id: Uuid) -> Result<Option<TitleWork>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The claim is stamped with the clock, not the transaction's start, so a wait for
        // the row's lock does not age it; the stamp is also the claim's token.
        let claimed: Option<(Uuid, i32, DateTime<Utc>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE chats SET title_attempts = title_attempts + 1, title_claimed_at = clock_timestamp(),
                    title_generation = CASE WHEN title_attempts >= $2 THEN 'failed' ELSE 'pending' END
             WHERE id = (SELECT chat_id FROM chat_turns WHERE id = $1)
               AND title_generation = 'pending' AND {UNCLAIMED}
             RETURNING id, title_attempts, title_claimed_at"
        )))
        .bind(turn_id)
        .bind(MAX_TITLE_ATTEMPTS)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((chat_id, attempts, claimed_at)) =
            claimed.filter(|&(_, n, _)| n <= MAX_TITLE_ATTEMPTS)
        else {
            tx.commit().await?;
            return Ok(None);
        };
        tracing::debug!(chat.id = %chat_id, attempts, "generating the chat's title");
        // The texts of the first live user message and the first answer after it.
        let work: TitleWork = sqlx::query_as(
            "SELECT $1::uuid AS chat_id, (SELECT owner_id FROM chats WHERE id = $1) AS owner_id,
                    $2::timestamptz AS claimed_at,
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
        .bind(claimed_at)
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

    /// Releases `work`'s claim after its call stored nothing (the model was unusable,
    /// failed, took too long or wrote no usable title): the chat's next answer or a recovery
    /// nudge tries again at once while attempts remain; after the last attempt the request
    /// is `failed` now. Only this claim is released: one that expired and was claimed again
    /// meanwhile (its stamp differs) is left to its call.
    pub async fn release_title_claim(&self, work: &TitleWork) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE chats SET title_claimed_at = NULL,
                    title_generation = CASE WHEN title_attempts >= $3 THEN 'failed' ELSE 'pending' END
             WHERE id = $1 AND title_generation = 'pending' AND title_claimed_at = $2",
        )
        .bind(work.chat_id)
        .bind(work.claimed_at)
        .bind(MAX_TITLE_ATTEMPTS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes the pending title request of the chat of `turn_id` without a title (titles
    /// are off on this worker), unless a call is in flight for it: the first message's
    /// text stays.
    pub async fn close_title_request(&self, turn_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE chats SET title_generation = 'done'
             WHERE id = (SELECT chat_id FROM chat_turns WHERE id = $1)
               AND title_generation = 'pending' AND {UNCLAIMED}"
        )))
        .bind(turn_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pending title requests asked for more than `stale` ago and with no call in flight
    /// (their nudge seems lost): marks them asked for now and returns the last completed
    /// turn of each chat, whose job generates the title again.
    pub async fn nudge_pending_titles(
        &self,
        stale: Duration,
        batch: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let turns: Vec<Option<Uuid>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE chats c SET title_requested_at = now()
             WHERE c.id IN (
                SELECT id FROM chats
                WHERE title_generation = 'pending'
                  AND title_requested_at < now() - make_interval(secs => $1)
                  AND {UNCLAIMED}
                ORDER BY title_requested_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
             RETURNING (SELECT t.id FROM chat_turns t
                        WHERE t.chat_id = c.id AND t.status = 'completed'
                        ORDER BY t.seq DESC LIMIT 1)"
        )))
        .bind(stale.as_secs_f64())
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        Ok(turns.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_claim_window_is_the_claims_time_to_live() {
        let secs = TITLE_CLAIM_TTL.as_secs();
        assert!(
            UNCLAIMED.contains(&format!("interval '{secs} seconds'")),
            "{UNCLAIMED}"
        );
    }
}
