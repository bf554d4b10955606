-- Diff statuses reported by integrations and kept current by the scheduler's refresher
-- (issue #14 item 2; ARCHITECTURE.md §10). A report (`PUT /chats/{id}/diff-status`)
-- replaces the row and makes it due at once; the refresher claims due rows of its GitHub
-- host with `FOR UPDATE SKIP LOCKED`, asks the GitHub REST API, and records the answer.
ALTER TABLE chat_diff_statuses
    -- `host[:port]` of `pr_url` (lowercase) when it is an http(s) URL: the refresher
    -- claims only the rows of the host it is configured for; others stay as reported.
    ADD COLUMN pr_host          text,
    -- When an integration last reported the row.
    ADD COLUMN reported_at      timestamptz NOT NULL DEFAULT now(),
    -- When GitHub last answered for the PR (NULL: as reported, never refreshed).
    ADD COLUMN refreshed_at     timestamptz,
    -- When the refresher should look again (NULL: never; a merged PR, or no PR URL). A
    -- claim moves it one lease ahead, so a refresher that dies leaves the row due again.
    ADD COLUMN next_refresh_at  timestamptz,
    -- The claim of the tick working on the row; every outcome names it, so a report made
    -- meanwhile (which clears it) is never overwritten by an older answer.
    ADD COLUMN refresh_claim    uuid,
    -- Refreshes that failed in a row (the backoff's exponent), and why the last one did
    -- (`not_found`, `http_502`, `unreachable`, ...; NULL after a success).
    ADD COLUMN refresh_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN refresh_error    text,
    ADD CONSTRAINT chat_diff_statuses_counts_check
        CHECK (additions >= 0 AND deletions >= 0 AND changed_files >= 0);

UPDATE chat_diff_statuses
SET pr_host = lower(substring(pr_url FROM '^[Hh][Tt][Tt][Pp][Ss]?://(?:[^/?#@]*@)?([^/?#]+)')),
    next_refresh_at = CASE WHEN pr_url IS NOT NULL AND pr_state IS DISTINCT FROM 'merged'
                           THEN now() END;

-- The refresher's claim: due rows of one host, oldest first.
CREATE INDEX chat_diff_statuses_refresh_idx ON chat_diff_statuses (pr_host, next_refresh_at)
    WHERE next_refresh_at IS NOT NULL;

-- A GitHub API that asked us to wait (a rate limit, a refused token), by API base URL: every
-- scheduler process reads it before a tick, so one that was told to wait makes all wait.
CREATE TABLE github_api_backoffs (
    api_url    text PRIMARY KEY,
    until      timestamptz NOT NULL,
    reason     text NOT NULL CHECK (reason IN ('rate_limit', 'unauthorized')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
