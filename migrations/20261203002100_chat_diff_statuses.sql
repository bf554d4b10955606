-- Where a chat's work stands in git (ARCHITECTURE.md §3), what `pr:`, `repo:`, `pr_title:` and
-- `pr_status:` search. Issue #14 item 2 reports and refreshes these rows; this is the
-- table the search needs, one row per chat, gone with the chat.
CREATE TABLE chat_diff_statuses (
    chat_id            uuid PRIMARY KEY REFERENCES chats(id) ON DELETE CASCADE,
    git_remote_origin  text,
    git_branch         text,
    pr_url             text,
    pr_number          integer CHECK (pr_number > 0),
    pr_title           text,
    pr_state           text CHECK (pr_state IN ('open', 'closed', 'merged')),
    pr_draft           boolean NOT NULL DEFAULT false,
    additions          integer,
    deletions          integer,
    changed_files      integer,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- `pr:<number>`.
CREATE INDEX chat_diff_statuses_pr_number_idx ON chat_diff_statuses (pr_number)
    WHERE pr_number IS NOT NULL;
-- `pr_status:`.
CREATE INDEX chat_diff_statuses_pr_state_idx ON chat_diff_statuses (pr_state, pr_draft)
    WHERE pr_state IS NOT NULL;
-- `repo:` (the origin or the PR URL) and `pr_title:`, case-insensitive substrings.
CREATE INDEX chat_diff_statuses_text_idx ON chat_diff_statuses USING gin
    (git_remote_origin gin_trgm_ops, pr_url gin_trgm_ops, pr_title gin_trgm_ops);
