-- Issue #4 follow-up: recovery re-nudges an undelivered email with a growing interval (so a
-- deployment without a mail sender does not flood the mail stream), and a user's outbox
-- rows are found (and cascade-deleted with the user) by index.
ALTER TABLE notification_messages ADD COLUMN nudges integer NOT NULL DEFAULT 0;
CREATE INDEX notification_messages_user_idx ON notification_messages (user_id);

-- The chat retention purge takes archived roots by archive time: a range scan, not a scan
-- of every chat (measured: 240 ms per tick over a million chats without it).
CREATE INDEX chats_archived_roots_idx ON chats (archived_at)
    WHERE parent_chat_id IS NULL AND archived;
