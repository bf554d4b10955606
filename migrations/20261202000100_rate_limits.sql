-- Per-user rate limits (issue #10, item 8), enforced cluster-wide in Redis by the API.
-- `*_per_minute` is the sustained rate (0 turns that limit off); `*_burst` is how many
-- requests may come back to back from rest (never more than a minute's allowance).
ALTER TABLE site_config
    ADD COLUMN chats_per_minute           integer NOT NULL DEFAULT 60  CHECK (chats_per_minute BETWEEN 0 AND 100000),
    ADD COLUMN chats_burst                integer NOT NULL DEFAULT 30  CHECK (chats_burst BETWEEN 1 AND 10000),
    ADD COLUMN messages_per_minute        integer NOT NULL DEFAULT 60  CHECK (messages_per_minute BETWEEN 0 AND 100000),
    ADD COLUMN messages_burst             integer NOT NULL DEFAULT 30  CHECK (messages_burst BETWEEN 1 AND 10000),
    ADD COLUMN stream_connects_per_minute integer NOT NULL DEFAULT 120 CHECK (stream_connects_per_minute BETWEEN 0 AND 100000),
    ADD COLUMN stream_connects_burst      integer NOT NULL DEFAULT 60  CHECK (stream_connects_burst BETWEEN 1 AND 10000);
