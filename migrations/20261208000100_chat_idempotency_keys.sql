-- `POST /api/v1/chats` with an `Idempotency-Key` header: a client that lost the answer to a
-- create (a timeout, a dropped connection, a server that crashed after its commit) sends
-- the same request with the same key again and gets the chat its first try made, never a
-- second one (api/src/idempotency_key.rs, ARCHITECTURE.md §9).
--
-- The key is the caller's (unique per owner), kept as long as the chat is; the fingerprint
-- is a SHA-256 of the request's JSON body (written canonically), so the key cannot be
-- reused for a different request by mistake. Both stay NULL for a chat created without a
-- key, which the partial index then leaves out: a create without a key writes no entry.
ALTER TABLE chats
    ADD COLUMN idempotency_key text,
    ADD COLUMN idempotency_fingerprint bytea,
    ADD CONSTRAINT chats_idempotency_key_with_fingerprint
        CHECK ((idempotency_key IS NULL) = (idempotency_fingerprint IS NULL));

CREATE UNIQUE INDEX chats_owner_idempotency_key_idx
    ON chats (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
