-- Issue #12, item 4: the per-user tokens MCP servers with `oauth2` and `user_oidc` auth
-- are called with (ARCHITECTURE.md §3). Every token is sealed by `core::secrets` before it
-- gets here and is only ever opened by a worker calling a server (or refreshing it); the
-- API never returns one.

-- A user's tokens for one `oauth2` server, from its authorization-code flow. Refreshing
-- locks the row (`Store::lock_user_token`), so two workers never both spend a rotating
-- refresh token.
CREATE TABLE mcp_oauth_tokens (
    server_id                uuid NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    user_id                  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_token_ciphertext  bytea NOT NULL,
    refresh_token_ciphertext bytea,
    -- NULL: the server did not say (the token is used until the server refuses it).
    expires_at               timestamptz,
    scopes                   text[] NOT NULL DEFAULT '{}',
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX mcp_oauth_tokens_user_idx ON mcp_oauth_tokens (user_id);

-- An authorization-code flow in progress: the state parameter (stored as its SHA-256, so a
-- database read cannot finish someone's flow), who started it for which server, the sealed
-- PKCE verifier and the redirect URI the code is bound to. The callback deletes the row as
-- it reads it, so a state works once; rows expire after minutes.
CREATE TABLE mcp_oauth_states (
    state_sha256             text PRIMARY KEY,
    server_id                uuid NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    user_id                  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_verifier_ciphertext bytea NOT NULL,
    redirect_uri             text NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    expires_at               timestamptz NOT NULL
);
CREATE INDEX mcp_oauth_states_user_idx ON mcp_oauth_states (user_id, created_at);
CREATE INDEX mcp_oauth_states_expiry_idx ON mcp_oauth_states (expires_at);

-- A user's OIDC tokens (stored by the login front end through
-- `PUT /api/v1/users/me/oidc-token`), forwarded to `user_oidc` servers.
CREATE TABLE user_oidc_tokens (
    user_id                  uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    access_token_ciphertext  bytea NOT NULL,
    refresh_token_ciphertext bytea,
    expires_at               timestamptz,
    scopes                   text[] NOT NULL DEFAULT '{}',
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- The OIDC client agentq refreshes those tokens with (one row, site owners set it through
-- `PUT /api/v1/admin/oidc-client`): the issuer's token endpoint and the client's
-- credentials, the secret sealed.
CREATE TABLE oidc_client (
    id                       integer PRIMARY KEY CHECK (id = 1),
    token_url                text,
    client_id                text,
    client_secret_ciphertext bytea,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
INSERT INTO oidc_client (id) VALUES (1);
