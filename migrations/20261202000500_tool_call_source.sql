-- The tool registry (issue #12 item 1; ARCHITECTURE.md §7): which source offered each call
-- in its step ('builtin', 'skill', 'client'; later 'mcp', 'subagent', 'plan_mode'), or
-- 'not_offered' when the model named a tool the step did not offer. The worker that sent the
-- request decides it, in the transaction that records the call, so any worker that runs the
-- call later (another process, after a crash) executes it from the same source or refuses it,
-- whatever changed since (a skill deleted, a server reconfigured). No CHECK: the worker's
-- `ToolSource` enum is the one list of values, and new sources come with their own branches.
ALTER TABLE tool_calls ADD COLUMN source text NOT NULL DEFAULT 'builtin';
UPDATE tool_calls SET source = 'client' WHERE kind = 'dynamic';
