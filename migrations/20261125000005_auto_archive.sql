-- Auto-archive (issue #4): the tick is an index range scan over candidate roots by their
-- last activity, not a scan of messages per chat.
CREATE INDEX chats_archive_candidates_idx ON chats (last_activity_at, id)
    WHERE parent_chat_id IS NULL AND NOT archived AND pin_order IS NULL;
