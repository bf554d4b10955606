//! Plan mode in the store (issue #12, item 5; ARCHITECTURE.md §4.1, §7): a chat's
//! `plan_mode` and `instructions` settings, the plans `propose_plan` stores as files linked
//! to the chat (kind `plan`), and the rule that ends a turn for the user: a step in which a
//! plan-mode call (`ask_user_question`, `propose_plan`) succeeded does not go on to the
//! model; its fan-in completes the turn and leaves the chat `requires_action` until the
//! user's next message (`tool_calls::fan_in`).
//!
//! A plan file's id is the id of the tool call that proposed it, so a call that runs twice
//! (its worker lost after storing the file) stores one file, not two.

use uuid::Uuid;

use super::{Store, chats::CHAT_COLUMNS, pg_json, pg_text};
use crate::{
    StoreError,
    domain::{Chat, ChatFile, PlanMode, ReasoningEffort},
};

/// `tool_calls.source` of the calls that hand a turn to the user when they succeed; the
/// worker's `ToolSource::PlanMode` stores this name.
pub const PLAN_MODE_SOURCE: &str = "plan_mode";

/// Most files a chat's file list returns (newest first).
pub const MAX_LISTED_FILES: i64 = 200;

/// Changes to a chat's settings; `None` leaves a setting as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ChatSettings {
    /// Enter (`Some(Some(Plan))`) or leave (`Some(None)`) plan mode.
    pub plan_mode: Option<Option<PlanMode>>,
    /// The chat's own instructions (`Some(None)`: none).
    pub instructions: Option<Option<String>>,
    /// Archive (`Some(true)`) or restore (`Some(false)`) a root chat and its subagent chats.
    pub archived: Option<bool>,
    /// A title the user chose (checked by the caller); a generated title never replaces it.
    pub title: Option<String>,
    /// The chat's own reasoning level (`Some(None)`: back to its model's).
    pub reasoning_effort: Option<Option<ReasoningEffort>>,
    /// Pin a root chat at a position (`Some(Some(n))`, 1 first; the owner's other pinned
    /// chats make room) or unpin it (`Some(None)`); see `pins.rs`.
    pub pin_order: Option<Option<i32>>,
    /// New labels, replacing the old ones (checked by the caller).
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// The chat's model (`Some(None)`: none, so the resolution order goes on; see
    /// `store::model_contexts`), checked by the caller.
    pub model_config_id: Option<Option<Uuid>>,
}

/// What [`Store::update_chat_settings`] changed.
#[derive(Debug, Clone)]
pub struct SettingsUpdate {
    /// The chat as it is now.
    pub chat: Chat,
    /// The owner's other pinned chats whose position a pin change moved.
    pub repositioned: Vec<Uuid>,
}

/// Enters or leaves plan mode inside the caller's transaction, which holds the chat's lock
/// (`Store::send_message`, `Store::update_chat_settings`). A subagent chat never enters it:
/// nobody would answer its questions, and its parent's `wait_agent` waits for it to be idle
/// ([`StoreError::Conflict`]).
pub(super) async fn set_plan_mode_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    plan_mode: Option<PlanMode>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE chats SET plan_mode = $2, updated_at = now()
         WHERE id = $1 AND (parent_chat_id IS NULL OR $2 IS NULL)",
    )
    .bind(chat_id)
    .bind(plan_mode)
    .execute(tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(
            "a subagent chat cannot enter plan mode: its parent waits for its answers".into(),
        ));
    }
    Ok(())
}

const FILE_COLUMNS: &str = "f.id, f.name, f.kind, f.media_type, octet_length(f.content)::bigint AS size_bytes, f.created_at";

impl Store {
    /// Changes `owner`'s chat settings, from the next step of a turn on, in one
    /// transaction under the chat's lock, so a refused change (a subagent chat archived,
    /// pinned or put in plan mode on its own, one pin too many: [`StoreError::Conflict`])
    /// changes nothing; returns the chat and the other chats a pin change moved. Someone
    /// else's chat is [`StoreError::NotFound`].
    pub async fn update_chat_settings(
        &self,
        chat_id: Uuid,
        owner: Uuid,
        settings: &ChatSettings,
    ) -> Result<SettingsUpdate, StoreError> {
        let mut tx = self.pool.begin().await?;
        if settings.pin_order.is_some() {
            // Before the chat's lock: a renumbering locks the owner's other pinned chats.
            super::pins::lock_pins(&mut tx, owner).await?;
        }
        super::lock_chat(&mut tx, chat_id, Some(owner)).await?;
        let mut repositioned = Vec::new();
        if let Some(position) = settings.pin_order {
            repositioned = super::pins::set_pin_in(&mut tx, chat_id, owner, position).await?;
            repositioned.retain(|id| *id != chat_id);
        }
        if let Some(plan_mode) = settings.plan_mode {
            set_plan_mode_in(&mut tx, chat_id, plan_mode).await?;
        }
        if let Some(archived) = settings.archived {
            super::chats::set_archived_in(&mut tx, chat_id, archived).await?;
        }
        let chat = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE chats SET
                instructions = CASE WHEN $2 THEN $3 ELSE instructions END,
                title = coalesce($4, title),
                title_set_by_user = title_set_by_user OR $4 IS NOT NULL,
                reasoning_effort = CASE WHEN $5 THEN $6 ELSE reasoning_effort END,
                labels = coalesce($7, labels),
                model_config_id = CASE WHEN $8 THEN $9 ELSE model_config_id END,
                updated_at = now()
             WHERE id = $1
             RETURNING {CHAT_COLUMNS}"
        )))
        .bind(chat_id)
        .bind(settings.instructions.is_some())
        .bind(
            settings
                .instructions
                .as_ref()
                .and_then(|i| i.as_deref().map(pg_text)),
        )
        .bind(settings.title.as_deref().map(pg_text))
        .bind(settings.reasoning_effort.is_some())
        .bind(settings.reasoning_effort.flatten())
        .bind(settings.labels.as_ref().map(pg_json))
        .bind(settings.model_config_id.is_some())
        .bind(settings.model_config_id.flatten())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SettingsUpdate { chat, repositioned })
    }

    /// Stores the plan that the tool call `call_id` of `chat_id` proposed as a markdown
    /// file of kind `plan`, owned by the chat's owner and linked to the chat; a second run
    /// of the same call finds its file and stores nothing. [`StoreError::NotFound`]: the
    /// chat is gone.
    pub async fn store_plan(
        &self,
        call_id: Uuid,
        chat_id: Uuid,
        title: &str,
        content: &str,
    ) -> Result<ChatFile, StoreError> {
        let mut tx = self.pool.begin().await?;
        let linked = sqlx::query(
            "WITH f AS (
                INSERT INTO files (id, owner_id, name, media_type, content, kind)
                SELECT $1, owner_id, $3, 'text/markdown', convert_to($4, 'UTF8'), 'plan'
                FROM chats WHERE id = $2
                ON CONFLICT (id) DO NOTHING
             )
             SELECT 1 FROM chats WHERE id = $2",
        )
        .bind(call_id)
        .bind(chat_id)
        .bind(pg_text(title))
        .bind(pg_text(content))
        .execute(&mut *tx)
        .await?;
        if linked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO chat_file_links (chat_id, file_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(chat_id)
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.chat_file(chat_id, call_id).await
    }

    /// The files linked to a chat, newest first (at most [`MAX_LISTED_FILES`]), without
    /// their content.
    pub async fn chat_files(&self, chat_id: Uuid) -> Result<Vec<ChatFile>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM files f JOIN chat_file_links l ON l.file_id = f.id
             WHERE l.chat_id = $1 ORDER BY f.created_at DESC, f.id DESC LIMIT $2"
        )))
        .bind(chat_id)
        .bind(MAX_LISTED_FILES)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One file linked to a chat, with its content as text (absent when not UTF-8).
    /// [`StoreError::NotFound`] when the chat does not link it.
    pub async fn chat_file(&self, chat_id: Uuid, file_id: Uuid) -> Result<ChatFile, StoreError> {
        #[derive(sqlx::FromRow)]
        struct WithContent {
            #[sqlx(flatten)]
            file: ChatFile,
            bytes: Vec<u8>,
        }
        let row: WithContent = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS}, f.content AS bytes
             FROM files f JOIN chat_file_links l ON l.file_id = f.id
             WHERE l.chat_id = $1 AND f.id = $2"
        )))
        .bind(chat_id)
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut file = row.file;
        file.content = String::from_utf8(row.bytes).ok();
        Ok(file)
    }
}

/// Whether a plan-mode call of the step succeeded, so the step's fan-in hands the turn to
/// the user instead of the model. The caller holds the turn lock.
pub(super) async fn step_awaits_user(
    tx: &mut sqlx::PgConnection,
    turn_id: Uuid,
    step: i32,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tool_calls WHERE turn_id = $1 AND step = $2
                        AND source = $3 AND status = 'succeeded')",
    )
    .bind(turn_id)
    .bind(step)
    .bind(PLAN_MODE_SOURCE)
    .fetch_one(&mut *tx)
    .await?)
}
