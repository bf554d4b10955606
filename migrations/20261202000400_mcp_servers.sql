-- Issue #12, item 3: MCP servers a site owner configures and chats choose from
-- (ARCHITECTURE.md §3). Secrets (an API key's value, custom header values, an OAuth client
-- secret) are sealed by `core::secrets` before they get here and are never read back by
-- the API; the worker opens them to call the server.
--
-- The slug is the prefix of every tool name the model sees (`<slug>__<tool>`): lowercase
-- letters and digits in runs joined by single hyphens, at most 32 characters, so it never
-- holds `_` and the first `__` of a tool name always ends the slug. The API checks the rule
-- first and says why; the CHECK keeps any other writer honest.
CREATE TABLE mcp_servers (
    id                              uuid PRIMARY KEY,
    slug                            text NOT NULL
                                    CONSTRAINT mcp_servers_slug_check
                                    CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 32),
    display_name                    text NOT NULL,
    description                     text NOT NULL DEFAULT '',
    url                             text NOT NULL,
    transport                       text NOT NULL DEFAULT 'streamable_http'
                                    CHECK (transport IN ('streamable_http')),
    auth_type                       text NOT NULL DEFAULT 'none'
                                    CHECK (auth_type IN ('none', 'oauth2', 'api_key', 'custom_headers', 'user_oidc')),
    -- api_key: the header that carries the key, and the sealed key.
    api_key_header                  text,
    api_key_ciphertext              bytea,
    -- custom_headers: a sealed JSON object of header name to value.
    custom_headers_ciphertext       bytea,
    -- oauth2: the client registration (the flow itself is issue #12's later part).
    oauth_client_id                 text,
    oauth_client_secret_ciphertext  bytea,
    oauth_authorize_url             text,
    oauth_token_url                 text,
    oauth_scopes                    text[] NOT NULL DEFAULT '{}',
    availability                    text NOT NULL DEFAULT 'default_off'
                                    CHECK (availability IN ('force_on', 'default_on', 'default_off')),
    enabled                         boolean NOT NULL DEFAULT true,
    -- Empty allow list: every tool the server lists. The deny list wins over it.
    tool_allow_list                 text[] NOT NULL DEFAULT '{}',
    tool_deny_list                  text[] NOT NULL DEFAULT '{}',
    allow_in_plan_mode              boolean NOT NULL DEFAULT false,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mcp_servers_slug_key UNIQUE (slug)
);

-- A chat's explicit choice of MCP servers. NULL: the chat never chose, so `default_on`
-- servers apply; a list (possibly empty) replaces the defaults, so leaving a `default_on`
-- server out of it opts out of it. `force_on` servers apply either way, disabled ones never
-- (`Store::effective_mcp_servers`). Ids of deleted servers simply match nothing.
ALTER TABLE chats ADD COLUMN mcp_server_ids uuid[];
