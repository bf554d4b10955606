-- A step may compact twice: once by its estimate and once more when the provider still
-- refuses the request as too long (ARCHITECTURE.md §7.2). Each summary stands for a
-- different stretch, so a summary is unique per step and cut; a step that runs again after
-- a crash with the same cut still finds its summary instead of writing another.
DROP INDEX chat_messages_summary_step_idx;
CREATE UNIQUE INDEX chat_messages_summary_step_idx ON chat_messages (turn_id, step, compacted_through)
    WHERE kind = 'summary';
