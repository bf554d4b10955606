-- `paused` was allowed by the chats.status CHECK but nothing ever wrote it, and
-- `ChatStatus` has no such variant (ARCHITECTURE.md §4.1): the CHECK now lists exactly the
-- values the code reads and writes. No row can hold `paused`, so the new constraint holds
-- for every existing row.
ALTER TABLE chats DROP CONSTRAINT chats_status_check;
ALTER TABLE chats ADD CONSTRAINT chats_status_check
    CHECK (status IN ('waiting', 'pending', 'running', 'requires_action', 'error'));
