-- Generated titles (issue #13 item 5; ARCHITECTURE.md §7): after a root chat's first
-- answer, the turn's worker asks the `title` model for a title. `title_generation` is that
-- work's state: NULL (not asked yet), `pending` (asked for; the answering turn's job, or a
-- recovery nudge of it, generates it), `done` (stored, or the user set one meanwhile) or
-- `failed` (the model gave no usable title in `title_attempts` tries; the first message's
-- first 80 characters stay). `title_requested_at` is when it was last asked for, so
-- recovery re-sends a lost nudge.
ALTER TABLE chats
    ADD COLUMN title_generation text CHECK (title_generation IN ('pending', 'done', 'failed')),
    ADD COLUMN title_requested_at timestamptz,
    ADD COLUMN title_attempts integer NOT NULL DEFAULT 0;

CREATE INDEX chats_title_pending_idx ON chats (title_requested_at) WHERE title_generation = 'pending';

-- Chats that answered before titles were generated keep the title they have: a title is
-- asked for after a chat's first answer only.
UPDATE chats SET title_generation = 'done'
WHERE EXISTS (SELECT 1 FROM chat_turns t WHERE t.chat_id = chats.id AND t.status = 'completed');
