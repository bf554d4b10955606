-- Debug steps store only the messages that are new since the chat's previous recorded
-- step (`request.messages_from` says where they start in the conversation), so debug
-- storage grows with the conversation, not with its square. The run remembers the last
-- message a step of it recorded.
ALTER TABLE chat_debug_runs ADD COLUMN last_message_id uuid;
