-- Spend limits (issue #15 item 4; ARCHITECTURE.md §3, §11). One site-wide period and
-- default limit in `site_config` (NULL: no default), and overrides per user and per
-- organization (agentq's groups); a user's limit is their own override, else the smallest
-- of their organizations' overrides, else the default. Limits are micro-dollars, as costs.
ALTER TABLE site_config
    ADD COLUMN spend_period text NOT NULL DEFAULT 'month' CHECK (spend_period IN ('day', 'week', 'month')),
    ADD COLUMN spend_limit_micros bigint CHECK (spend_limit_micros >= 0);

CREATE TABLE user_spend_limits (
    user_id      uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    limit_micros bigint NOT NULL CHECK (limit_micros >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization_spend_limits (
    organization_id uuid PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    limit_micros    bigint NOT NULL CHECK (limit_micros >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The admin usage report reads costs by date range over every chat.
CREATE INDEX chat_messages_cost_idx ON chat_messages (created_at)
    WHERE role = 'assistant' AND cost_micros IS NOT NULL;
