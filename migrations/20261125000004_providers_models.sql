-- Providers and models as data (issue #3). Keys and extra headers are encrypted at rest
-- (nonce || XChaCha20-Poly1305 ciphertext under AGENTQ_SECRET_KEY); the API never returns them.

CREATE TABLE providers (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    kind                    text NOT NULL CHECK (kind IN ('openai', 'openai-compat', 'anthropic', 'openrouter')),
    base_url                text NOT NULL,
    api_key_ciphertext      bytea,
    headers_ciphertext      bytea,
    enabled                 boolean NOT NULL DEFAULT true,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Prices are micro-dollars per million tokens, so cost = tokens * price / 1e6 micro-dollars.
CREATE TABLE models (
    id                      uuid PRIMARY KEY,
    provider_id             uuid NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    display_name            text NOT NULL DEFAULT '',
    context_limit           integer CHECK (context_limit > 0),
    max_output_tokens       integer CHECK (max_output_tokens > 0),
    reasoning_effort        text CHECK (reasoning_effort IN ('low', 'medium', 'high')),
    input_price_micros      bigint NOT NULL DEFAULT 0 CHECK (input_price_micros >= 0),
    output_price_micros     bigint NOT NULL DEFAULT 0 CHECK (output_price_micros >= 0),
    cache_read_price_micros bigint NOT NULL DEFAULT 0 CHECK (cache_read_price_micros >= 0),
    cache_write_price_micros bigint NOT NULL DEFAULT 0 CHECK (cache_write_price_micros >= 0),
    is_default              boolean NOT NULL DEFAULT false,
    enabled                 boolean NOT NULL DEFAULT true,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider_id, name)
);
-- At most one default model.
CREATE UNIQUE INDEX models_single_default_idx ON models ((true)) WHERE is_default;

ALTER TABLE chats ADD CONSTRAINT chats_model_config_fk
    FOREIGN KEY (model_config_id) REFERENCES models(id) ON DELETE SET NULL;
