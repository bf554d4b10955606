-- Whether a person chose the chat's title (on create or with PATCH /api/v1/chats/{id}), so
-- a generated title (issue #13 item 5) never replaces it. Existing chats: their titles were
-- either given on create or derived from the first message; which is unknown, so they count
-- as not chosen.
ALTER TABLE chats ADD COLUMN title_set_by_user boolean NOT NULL DEFAULT false;
