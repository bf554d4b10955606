-- Compaction (issue #13 item 2; ARCHITECTURE.md §7): when a step would pass its share of
-- the model's context, the older part of the conversation is summarized by the model into
-- a message of kind `summary` that stands for every message up to `compacted_through` in
-- what later steps send. The originals stay (the API still lists them).
ALTER TABLE chat_messages
    ADD COLUMN kind text NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'summary')),
    ADD COLUMN compacted_through uuid,
    ADD CONSTRAINT chat_messages_summary_shape
        CHECK ((kind = 'summary') = (compacted_through IS NOT NULL));

-- One answer per turn step, as before; a summary is not an answer.
DROP INDEX chat_messages_turn_step_idx;
CREATE UNIQUE INDEX chat_messages_turn_step_idx ON chat_messages (turn_id, step)
    WHERE role = 'assistant' AND kind = 'message';
-- At most one compaction per step: a step that runs again after a crash finds its summary.
CREATE UNIQUE INDEX chat_messages_summary_step_idx ON chat_messages (turn_id, step)
    WHERE kind = 'summary';
-- The latest summary of a chat, read before every step.
CREATE INDEX chat_messages_summary_idx ON chat_messages (chat_id, id) WHERE kind = 'summary';
