-- A chat's own reasoning level (issue #13, item 3), overriding its model's
-- `reasoning_effort` from the next step on; NULL: the model's. Same values as
-- `models.reasoning_effort` (`ReasoningEffort` in core::domain).
ALTER TABLE chats ADD COLUMN reasoning_effort text
    CONSTRAINT chats_reasoning_effort_check CHECK (reasoning_effort IN ('low', 'medium', 'high'));
