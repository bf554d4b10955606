-- Issue #12, item 5: what a file is. `plan` files are the plans `propose_plan` stores for a
-- chat in plan mode (ARCHITECTURE.md §7); every other file is a `file`.
ALTER TABLE files
    ADD COLUMN kind text NOT NULL DEFAULT 'file' CHECK (kind IN ('file', 'plan'));
