-- Issue #10, items 10 and 12: access is re-checked where work starts, tokens can be revoked.
--
-- A user is `active`, `suspended` (kept, but refused on every route) or `deleted` (kept for
-- its chats' history, refused like a suspended one). Tokens are revoked by stamping
-- `revoked_at` (the row stays, so a token list can tell an operator when); authentication
-- ignores revoked and expired tokens.
ALTER TABLE users ADD COLUMN status text NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'suspended', 'deleted'));
ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
