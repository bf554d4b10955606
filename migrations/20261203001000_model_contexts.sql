-- Model overrides by context (issue #13 item 4; README "Models by context"). Site owners
-- pick a model for each context (root chats, the two subagent types, titles, compaction);
-- a user may pick one for their own root chats; a chat names its model in
-- `chats.model_config_id` (set on create, by PATCH, or by a message that switches it). The
-- one resolution order lives in core/src/store/model_contexts.rs. A model deleted later
-- simply stops overriding (ON DELETE SET NULL).
ALTER TABLE site_config
    ADD COLUMN root_model_id uuid,
    ADD COLUMN title_model_id uuid,
    ADD COLUMN compaction_model_id uuid,
    ADD CONSTRAINT site_config_root_model_fk FOREIGN KEY (root_model_id)
        REFERENCES models (id) ON DELETE SET NULL,
    ADD CONSTRAINT site_config_title_model_fk FOREIGN KEY (title_model_id)
        REFERENCES models (id) ON DELETE SET NULL,
    ADD CONSTRAINT site_config_compaction_model_fk FOREIGN KEY (compaction_model_id)
        REFERENCES models (id) ON DELETE SET NULL;

ALTER TABLE users
    ADD COLUMN root_model_id uuid,
    ADD CONSTRAINT users_root_model_fk FOREIGN KEY (root_model_id)
        REFERENCES models (id) ON DELETE SET NULL;

-- A message sent while a turn runs waits in the queue; the model it switches to applies
-- when it is promoted, not to the turn it waits behind.
ALTER TABLE chat_queued_messages
    ADD COLUMN model_config_id uuid REFERENCES models (id) ON DELETE SET NULL;
