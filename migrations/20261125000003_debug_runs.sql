-- Debug runs (issue #3): one run per turn when debug logging is on (the site switch and
-- the chat owner's switch), one step per provider attempt.

ALTER TABLE users ADD COLUMN debug_logging_enabled boolean NOT NULL DEFAULT false;

CREATE TABLE chat_debug_runs (
    id           uuid PRIMARY KEY,
    chat_id      uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    turn_id      uuid NOT NULL UNIQUE REFERENCES chat_turns(id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'completed', 'awaiting_tools', 'failed', 'interrupted')),
    provider     text,
    model        text,
    usage        jsonb,
    error        jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_debug_runs_chat_idx ON chat_debug_runs (chat_id, id DESC);
-- The retention purge deletes by age of the last change.
CREATE INDEX chat_debug_runs_updated_idx ON chat_debug_runs (updated_at);

CREATE TABLE chat_debug_steps (
    id             uuid PRIMARY KEY,
    run_id         uuid NOT NULL REFERENCES chat_debug_runs(id) ON DELETE CASCADE,
    step           integer NOT NULL,
    attempt        integer NOT NULL,
    request        jsonb NOT NULL,
    response       jsonb,
    usage          jsonb,
    error          jsonb,
    started_at     timestamptz NOT NULL,
    first_byte_ms  integer,
    duration_ms    integer NOT NULL
);
CREATE INDEX chat_debug_steps_run_idx ON chat_debug_steps (run_id, id);
