-- Chat list search and organizing (issue #14 items 1 and 4; ARCHITECTURE.md §3, §11).
--
-- pg_trgm answers `title:` (a case-insensitive substring) from an index, and btree_gin lets
-- one GIN index hold the owner, status and client type next to the title's trigrams and
-- the labels, so any mix of those filters is one bitmap scan of the owner's matching chats.
-- Both are trusted extensions (PostgreSQL 13+): a database owner without superuser rights
-- can create them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- Pinned chats hold positions 1, 2, ... (PATCH renumbers them); NULL is not pinned.
ALTER TABLE chats ADD CONSTRAINT chats_pin_order_check CHECK (pin_order > 0);

-- The list order, pinned first (by position), then most recently updated, newest id first,
-- as one index whose columns all sort the same way, so a page after a cursor is a range of
-- it (a row comparison) however deep the page. Per owner and archive state: the default
-- list is the owner's chats that are not archived.
DROP INDEX chats_owner_roots_idx;
CREATE INDEX chats_list_idx ON chats
    (owner_id, archived, (pin_order IS NOT NULL), (-coalesce(pin_order, 0)), updated_at, id)
    WHERE parent_chat_id IS NULL;

-- The selective filters of the search syntax: `title:`, `status:`, `client_type:`, `label:`.
CREATE INDEX chats_search_idx ON chats USING gin
    (owner_id, status, client_type, title gin_trgm_ops, labels jsonb_path_ops)
    WHERE parent_chat_id IS NULL;

-- Deleting a chat (DELETE /api/v1/chats/{id}, and the retention purge) deletes its tool
-- calls and clears its turns from messages through foreign keys; without these each deleted
-- chat or turn scanned the whole table.
CREATE INDEX tool_calls_chat_idx ON tool_calls (chat_id);
CREATE INDEX chat_messages_turn_idx ON chat_messages (turn_id);
