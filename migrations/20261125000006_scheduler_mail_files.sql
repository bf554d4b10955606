-- Issue #4: the scheduler's tick ledger, the email outbox, and files linked to chats.

-- One row per cron tick of a ledgered job (maintenance): the primary key makes a tick run
-- once however many scheduler replicas fire it; the row keeps what the tick did.
CREATE TABLE scheduler_ticks (
    job          text NOT NULL,
    tick_at      timestamptz NOT NULL,
    runner       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      jsonb,
    error        text,
    PRIMARY KEY (job, tick_at)
);
CREATE INDEX scheduler_ticks_started_idx ON scheduler_ticks (started_at);

-- The email outbox (ARCHITECTURE.md §3): every email is written here, in the transaction
-- that decided to send it, before a SendMail job tries to deliver it.
CREATE TABLE notification_messages (
    id               uuid PRIMARY KEY,
    user_id          uuid REFERENCES users(id) ON DELETE CASCADE,
    recipient        text NOT NULL,
    template         text NOT NULL,
    payload          jsonb NOT NULL,
    dedupe_key       text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz,
    -- When a SendMail job was last enqueued for the row: recovery nudges again only when
    -- that job seems lost (ARCHITECTURE.md §6: a job is an idempotent nudge).
    nudged_at        timestamptz,
    sent_at          timestamptz,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Recovery finds undelivered rows whose nudge was lost without scanning sent mail.
CREATE INDEX notification_messages_due_idx ON notification_messages (next_attempt_at)
    WHERE status IN ('queued', 'sending');

-- Uploads and tool-created files; a file lives while some chat links it.
CREATE TABLE files (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        text NOT NULL,
    media_type  text NOT NULL DEFAULT 'application/octet-stream',
    content     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_created_idx ON files (created_at);

CREATE TABLE chat_file_links (
    chat_id     uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    file_id     uuid NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, file_id)
);
CREATE INDEX chat_file_links_file_idx ON chat_file_links (file_id);

-- Family-wide last activity (ARCHITECTURE.md §10): activity in a subagent chat is activity
-- of its root, so auto-archive never takes a family whose child is still busy. Roots never
-- fire these (WHEN), so the hot path of ordinary chats pays nothing.
CREATE FUNCTION chats_touch_root() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE chats SET last_activity_at = NEW.last_activity_at
    WHERE id = NEW.root_chat_id AND last_activity_at < NEW.last_activity_at;
    RETURN NULL;
END;
$$;

CREATE TRIGGER chats_child_activity_update
    AFTER UPDATE OF last_activity_at ON chats
    FOR EACH ROW
    WHEN (NEW.root_chat_id IS NOT NULL AND NEW.last_activity_at > OLD.last_activity_at)
    EXECUTE FUNCTION chats_touch_root();

CREATE TRIGGER chats_child_activity_insert
    AFTER INSERT ON chats
    FOR EACH ROW
    WHEN (NEW.root_chat_id IS NOT NULL)
    EXECUTE FUNCTION chats_touch_root();
