-- Turn engine: client-defined tools, interrupts, tool-call deadlines (issue #3).

-- Tools the client defined at chat creation: [{name, description, input_schema}].
ALTER TABLE chats ADD COLUMN dynamic_tools jsonb NOT NULL DEFAULT '[]';

-- Set by POST /chats/{id}/interrupt; the worker holding the lease polls for it.
ALTER TABLE chat_turns ADD COLUMN interrupt_requested boolean NOT NULL DEFAULT false;
CREATE INDEX chat_turns_interrupt_idx ON chat_turns (lease_owner)
    WHERE interrupt_requested AND status = 'running';

-- `dynamic` calls wait for the client; `builtin` calls run as RunToolCall jobs.
ALTER TABLE tool_calls ADD COLUMN kind text NOT NULL DEFAULT 'builtin' CHECK (kind IN ('builtin', 'dynamic'));
-- A waiting (dynamic) call expires into an error at this time.
ALTER TABLE tool_calls ADD COLUMN deadline_at timestamptz;
ALTER TABLE tool_calls ADD COLUMN enqueued_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX tool_calls_unfinished_idx ON tool_calls (status, lease_expires_at)
    WHERE status IN ('queued', 'running', 'waiting');

-- An answer cut short by an interrupt keeps what streamed, marked as such.
ALTER TABLE chat_messages ADD COLUMN interrupted boolean NOT NULL DEFAULT false;
