-- agentq foundation schema: identity, chats, messages, turns, tool calls, site config.
-- ARCHITECTURE.md §3 is the map; later migrations add providers, files, debug runs, outbox.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    name        text NOT NULL DEFAULT '',
    site_role   text NOT NULL DEFAULT 'member' CHECK (site_role IN ('owner', 'member')),
    login_type  text NOT NULL DEFAULT 'token' CHECK (login_type IN ('token', 'password', 'oidc', 'none')),
    digest_emails_enabled boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE organization_members (
    organization_id uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    roles           text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user_idx ON organization_members (user_id);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    secret_sha256 text NOT NULL UNIQUE,
    expires_at    timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE chats (
    id                uuid PRIMARY KEY,
    owner_id          uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    organization_id   uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    parent_chat_id    uuid REFERENCES chats(id) ON DELETE CASCADE,
    root_chat_id      uuid REFERENCES chats(id) ON DELETE CASCADE,
    title             text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'pending', 'running', 'paused', 'requires_action', 'error')),
    plan_mode         text CHECK (plan_mode IN ('plan')),
    mode              text CHECK (mode IN ('general', 'explore', 'computer_use')),
    client_type       text NOT NULL DEFAULT 'api' CHECK (client_type IN ('ui', 'api')),
    model_config_id   uuid,
    pin_order         integer,
    labels            jsonb NOT NULL DEFAULT '{}',
    archived          boolean NOT NULL DEFAULT false,
    archived_at       timestamptz,
    last_activity_at  timestamptz NOT NULL DEFAULT now(),
    last_error        jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- The chat list: an owner's root chats, pinned first, then most recently updated (keyset).
CREATE INDEX chats_owner_roots_idx ON chats (owner_id, updated_at DESC, id DESC)
    WHERE parent_chat_id IS NULL;
CREATE INDEX chats_root_idx ON chats (root_chat_id) WHERE root_chat_id IS NOT NULL;

CREATE TABLE chat_turns (
    id                uuid PRIMARY KEY,
    chat_id           uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    seq               integer NOT NULL,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'awaiting_tools', 'completed', 'failed', 'interrupted')),
    attempt           integer NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    step              integer NOT NULL DEFAULT 0,
    started_at        timestamptz,
    finished_at       timestamptz,
    error             jsonb,
    -- When a RunTurn job was last sent for it; recovery re-sends only when this is old.
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chat_id, seq)
);
-- One unfinished turn per chat: the invariant that makes duplicate jobs harmless.
CREATE UNIQUE INDEX chat_turns_one_unfinished_idx ON chat_turns (chat_id)
    WHERE status IN ('queued', 'running', 'awaiting_tools');
-- Recovery scans: queued too long, running with an expired lease.
CREATE INDEX chat_turns_unfinished_idx ON chat_turns (status, lease_expires_at)
    WHERE status IN ('queued', 'running', 'awaiting_tools');

CREATE TABLE chat_messages (
    id          uuid PRIMARY KEY,
    chat_id     uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    turn_id     uuid REFERENCES chat_turns(id) ON DELETE SET NULL,
    role        text NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    step        integer,
    content     jsonb NOT NULL,
    model       text,
    usage       jsonb,
    cost_micros bigint,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Ids are uuid v7, so id order is creation order.
CREATE INDEX chat_messages_chat_idx ON chat_messages (chat_id, id);
-- One assistant message per turn step: a replayed job cannot double an answer.
CREATE UNIQUE INDEX chat_messages_turn_step_idx ON chat_messages (turn_id, step)
    WHERE role = 'assistant';

CREATE TABLE chat_queued_messages (
    id             uuid PRIMARY KEY,
    chat_id        uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    content        jsonb NOT NULL,
    busy_behavior  text NOT NULL DEFAULT 'queue' CHECK (busy_behavior IN ('queue', 'interrupt')),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_queued_messages_chat_idx ON chat_queued_messages (chat_id, id);

CREATE TABLE tool_calls (
    id                uuid PRIMARY KEY,
    turn_id           uuid NOT NULL REFERENCES chat_turns(id) ON DELETE CASCADE,
    chat_id           uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    step              integer NOT NULL,
    provider_call_id  text NOT NULL,
    name              text NOT NULL,
    arguments         jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed')),
    result            jsonb,
    attempt           integer NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    UNIQUE (turn_id, step, provider_call_id)
);
CREATE INDEX tool_calls_turn_idx ON tool_calls (turn_id, step);

-- A single row of site-wide settings (id is always 1).
CREATE TABLE site_config (
    id                     smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    auto_archive_days      integer NOT NULL DEFAULT 0 CHECK (auto_archive_days BETWEEN 0 AND 3650),
    auto_archive_limit     integer NOT NULL DEFAULT 1000 CHECK (auto_archive_limit BETWEEN 1 AND 100000),
    chat_retention_days    integer NOT NULL DEFAULT 30 CHECK (chat_retention_days BETWEEN 0 AND 3650),
    debug_retention_days   integer NOT NULL DEFAULT 30 CHECK (debug_retention_days BETWEEN 0 AND 3650),
    debug_logging_enabled  boolean NOT NULL DEFAULT false,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
INSERT INTO site_config (id) VALUES (1);
