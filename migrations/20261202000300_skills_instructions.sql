-- Issue #12, items 2 and 7: instructions at three levels and personal skills
-- (ARCHITECTURE.md §3). The worker composes them into one system message per step
-- (worker/src/instructions.rs).
--
-- Instructions are plain text; '' (site, user) and NULL (chat) mean none. Sizes are bounded
-- by the API (32 KiB each), not here, so the bound can change without a migration.
ALTER TABLE site_config ADD COLUMN system_prompt text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN instructions text NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN instructions text;

-- A user's skills: named markdown documents the model is told about (name and
-- description in the system prompt) and reads on demand. The name rule is the SKILL.md
-- one (kebab-case, at most 64 characters); the API checks it first and says why, the CHECK
-- keeps any other writer honest. Counts (100 per user) and sizes (64 KiB) are the API's.
CREATE TABLE user_skills (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        text NOT NULL
                CONSTRAINT user_skills_name_check
                CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 64),
    description text NOT NULL DEFAULT '',
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_skills_owner_name_key UNIQUE (owner_id, name)
);
