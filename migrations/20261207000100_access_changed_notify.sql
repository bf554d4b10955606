-- Every change to who may do what notifies `agentq_access_changed`, so each API process
-- drops what it cached of tokens, memberships and spend limits (api/src/access_cache.rs,
-- ARCHITECTURE.md §11.3). Triggers, not calls in the store: a write that reaches these
-- tables by any path (the API, the CLI, an operator's SQL) notifies, and the notification
-- is sent when the write commits, never before and never for a write rolled back.
--
-- Statement-level: one notification per statement however many rows it changes, and
-- PostgreSQL folds a transaction's identical notifications into one.
CREATE FUNCTION notify_access_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentq_access_changed', TG_TABLE_NAME);
    RETURN NULL;
END $$;

-- A token's use writes only `last_used_at` (at most once a minute): no notification.
CREATE TRIGGER api_tokens_access_changed
    AFTER UPDATE OF user_id, secret_sha256, expires_at, revoked_at, scopes OR DELETE
    ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();
CREATE TRIGGER api_tokens_access_truncated
    AFTER TRUNCATE ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();

-- What authentication returns of a user: email, site role, status.
CREATE TRIGGER users_access_changed
    AFTER UPDATE OF email, site_role, status OR DELETE
    ON users FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();
CREATE TRIGGER users_access_truncated
    AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();

CREATE TRIGGER organization_members_access_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON organization_members FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();

-- A membership names its organization.
CREATE TRIGGER organizations_access_changed
    AFTER UPDATE OR DELETE OR TRUNCATE
    ON organizations FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();

CREATE TRIGGER user_spend_limits_access_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON user_spend_limits FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();

CREATE TRIGGER organization_spend_limits_access_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON organization_spend_limits FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();

-- The site's spend period and default limit.
CREATE TRIGGER site_config_access_changed
    AFTER UPDATE OF spend_period, spend_limit_micros
    ON site_config FOR EACH STATEMENT EXECUTE FUNCTION notify_access_changed();
