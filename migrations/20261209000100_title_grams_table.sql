-- A root chat's title grams move out of `chats` into a table of their own (issue #17's
-- archive and turns rows; ARCHITECTURE.md §3).
--
-- Every write of a chat row changes `updated_at` (and a turn's also `status`), both indexed,
-- so none is a HOT update: each wrote a new entry into every index of `chats`, the GIN index
-- of the column `chats.title_grams` (`chats_title_grams_idx`) included, although no such
-- write changes the title. A 36-character title is 34 grams, so each turn's status writes
-- and each archived chat pushed 34 keys into that index's pending list, and an archive tick of 1,000 chats overflowed it and
-- paid its merge: about 40 of a warm tick's 74 ms over 1,000,000 chats (bench/RESULTS.md,
-- session 27). In `title_grams` the grams are written when a root chat is created and when
-- its title or owner changes, and at no other time.
--
-- The search asks this table for the chats whose grams hold the searched text's
-- (`store/chat_list.rs`), by the same index and the same 256 kB pending list as before
-- (migration 20261205000200 says why 256 kB).
CREATE TABLE title_grams (
    chat_id uuid PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
    grams   int[] NOT NULL
);

INSERT INTO title_grams (chat_id, grams)
SELECT id, title_grams FROM chats WHERE parent_chat_id IS NULL AND title_grams IS NOT NULL;

CREATE INDEX title_grams_idx ON title_grams USING gin (grams)
    WITH (gin_pending_list_limit = 256);
-- The search's plan needs the new table's statistics from its first statement on.
ANALYZE title_grams;

DROP TRIGGER chats_title_grams ON chats;
DROP FUNCTION chats_set_title_grams();
-- Drops `chats_title_grams_idx` with it.
ALTER TABLE chats DROP COLUMN title_grams;

-- A subagent's chat (a `parent_chat_id`) is never listed, so it has no grams; a chat's
-- parent is set when it is created, and nothing agentq does changes it (the search also
-- asks `parent_chat_id IS NULL`).
CREATE FUNCTION chats_insert_title_grams() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO title_grams (chat_id, grams)
    VALUES (NEW.id, chat_title_grams(NEW.owner_id, NEW.title));
    RETURN NULL;
END $$;

CREATE TRIGGER chats_insert_title_grams AFTER INSERT ON chats
    FOR EACH ROW WHEN (NEW.parent_chat_id IS NULL)
    EXECUTE FUNCTION chats_insert_title_grams();

CREATE FUNCTION chats_update_title_grams() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE title_grams SET grams = chat_title_grams(NEW.owner_id, NEW.title)
    WHERE chat_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER chats_update_title_grams AFTER UPDATE OF title, owner_id ON chats
    FOR EACH ROW
    WHEN (NEW.parent_chat_id IS NULL
          AND (OLD.title IS DISTINCT FROM NEW.title OR OLD.owner_id IS DISTINCT FROM NEW.owner_id))
    EXECUTE FUNCTION chats_update_title_grams();
