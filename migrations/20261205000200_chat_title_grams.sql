-- `title:` search per owner (issue #17's search row; ARCHITECTURE.md §11).
--
-- The trigram index of 20261203002000 held every owner's titles in one set of posting
-- lists, so a term sharing a trigram with most titles (`chat 4242` among a million `chat N`)
-- decoded that trigram's list over every tenant's chats: 20-30 ms at 1,000,000 chats
-- whoever searched. `chat_title_grams` hashes each 3-character piece of the lowercased title
-- together with the owner, so an owner's grams are theirs alone and a search reads lists as
-- long as its owner's own chats (bench/RESULTS.md, "The `title:` search at 1,000,000 chats,
-- explained").
--
-- It stays exact: PostgreSQL's ILIKE on this database's encoding compares lower(title) with
-- lower(pattern), so every 3-character piece of a searched text's lowercase is one of a
-- matching title's; the list keeps `title ILIKE` as the recheck, which also drops the rare
-- chats whose grams collide. A text under 3 characters has no grams (`'{}'`) and the list
-- does not ask the index for it.
--
-- The title is lowercased once, not per piece, and repeated pieces are kept (GIN stores each
-- key of a row once): 28 us for a 35-character title here, against 41 us for the same
-- with `lower` per piece and DISTINCT.
CREATE FUNCTION chat_title_grams(owner uuid, title text) RETURNS int[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(
        SELECT hashtext(s.owner || substr(s.title, i, 3))
        FROM (SELECT owner::text AS owner, lower(title) AS title) AS s,
             generate_series(1, char_length(s.title) - 2) AS i
    );

ALTER TABLE chats ADD COLUMN title_grams int[];

-- Set on insert and whenever the title or the owner is written; an update that names
-- neither (a turn's status writes) does not run it.
CREATE FUNCTION chats_set_title_grams() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.title_grams := chat_title_grams(NEW.owner_id, NEW.title);
    RETURN NEW;
END $$;

CREATE TRIGGER chats_title_grams BEFORE INSERT OR UPDATE OF title, owner_id ON chats
    FOR EACH ROW EXECUTE FUNCTION chats_set_title_grams();

-- The old index goes first, so the backfill does not write it. Like every migration here this
-- runs in one transaction at startup, holding `chats` until it commits.
DROP INDEX chats_search_idx;
UPDATE chats SET title_grams = chat_title_grams(owner_id, title);

-- The filters of the old index but the title's trigrams, so a turn's writes of a chat row
-- no longer extract them, and the grams in an index of their own.
CREATE INDEX chats_search_idx ON chats USING gin
    (owner_id, status, client_type, labels jsonb_path_ops)
    WHERE parent_chat_id IS NULL;

-- A GIN index takes new entries into a pending list that every search reads whole until it
-- is merged; at the default 4 MB that list held 20,000 chats' grams and cost a search 10 ms
-- whoever's they were. 256 kB bounds that to about 1 ms and cost no measurable write speed
-- (bench/RESULTS.md, session 15).
CREATE INDEX chats_title_grams_idx ON chats USING gin (title_grams)
    WITH (gin_pending_list_limit = 256)
    WHERE parent_chat_id IS NULL;
