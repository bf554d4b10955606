-- The model each subagent type runs on (issue #12 item 6; README "Subagents"): site owners
-- may pick one per type; NULL (the default) runs a child on its parent's model. A model
-- deleted later simply stops overriding.
ALTER TABLE site_config
    ADD COLUMN general_subagent_model_id uuid,
    ADD COLUMN explore_subagent_model_id uuid,
    ADD CONSTRAINT site_config_general_subagent_model_fk FOREIGN KEY (general_subagent_model_id)
        REFERENCES models (id) ON DELETE SET NULL,
    ADD CONSTRAINT site_config_explore_subagent_model_fk FOREIGN KEY (explore_subagent_model_id)
        REFERENCES models (id) ON DELETE SET NULL;
