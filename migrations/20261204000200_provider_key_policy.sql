-- Key policy per provider and users' own provider keys (issue #15 item 3; ARCHITECTURE.md
-- §3, §11). A turn's key is resolved per step (`core::domain::key_policy`): the user's key
-- when user keys are allowed and the user stored one; else the central key (the provider's
-- `api_key_ciphertext`) when the central key serves everyone (user keys not allowed) or
-- as the fallback; else the provider is unavailable to that user (`missing_key`).
--
-- Rows that cannot mean anything are refused here, whatever wrote them:
--   central off, user keys off             nobody has a key (disable the provider instead)
--   fallback on without user keys allowed  nothing to fall back from
--   fallback on with the central key off   nothing to fall back to
ALTER TABLE providers
    ADD COLUMN central_api_key_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN allow_user_api_key boolean NOT NULL DEFAULT false,
    ADD COLUMN allow_central_api_key_fallback boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT providers_key_policy_check CHECK (
        (central_api_key_enabled OR allow_user_api_key)
        AND (NOT allow_central_api_key_fallback
             OR (central_api_key_enabled AND allow_user_api_key))
    );

-- A user's own key for one provider, sealed by `core::secrets` (nonce || XChaCha20-Poly1305
-- ciphertext under AGENTQ_SECRET_KEY); only a worker opens it, for that user's turns.
-- Kept when the provider stops allowing user keys (it is then simply not used), deleted
-- with the user or the provider.
CREATE TABLE user_provider_keys (
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_id        uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    api_key_ciphertext bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider_id)
);
CREATE INDEX user_provider_keys_provider_idx ON user_provider_keys (provider_id);
