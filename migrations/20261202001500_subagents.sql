-- Subagents (issue #12 item 6; ARCHITECTURE.md §4.3, §7). A child chat remembers the
-- `spawn_subagent` call that created it, so a re-run of that call (a lost worker) finds the
-- child instead of spawning a second one.
ALTER TABLE chats ADD COLUMN spawn_call_id uuid;
CREATE UNIQUE INDEX chats_spawn_call_idx ON chats (spawn_call_id) WHERE spawn_call_id IS NOT NULL;
CREATE INDEX chats_parent_idx ON chats (parent_chat_id, id) WHERE parent_chat_id IS NOT NULL;
-- `close_agent`: the child takes no more messages from its parent and leaves the parent's
-- count of open subagents. Not `archived`: a child is archived and restored with its root.
ALTER TABLE chats ADD COLUMN closed_at timestamptz;

-- A `wait_agent` call parks as `waiting` with the child it waits for (and its timeout in
-- `deadline_at`) instead of holding a worker: the child's finished turn, or recovery past the
-- deadline, sends the call's job again. Client calls that wait have no child here.
ALTER TABLE tool_calls ADD COLUMN waits_for_chat_id uuid;
CREATE INDEX tool_calls_waits_for_idx ON tool_calls (waits_for_chat_id)
    WHERE status = 'waiting' AND waits_for_chat_id IS NOT NULL;
