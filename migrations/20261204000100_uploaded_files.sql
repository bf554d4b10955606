-- Issue #14, item 3: uploaded files (ARCHITECTURE.md §3). An upload may name an
-- organization of its uploader's; such a file is linked only to chats of that organization.
-- Deleting the organization deletes its files, as it deletes its chats.
ALTER TABLE files
    ADD COLUMN organization_id uuid REFERENCES organizations(id) ON DELETE CASCADE;

-- The reader check of `GET /api/v1/files/{id}` and the worker's load go from a file to
-- the chats linking it (`chat_file_links_file_idx`) and from a chat to its files (the
-- primary key); the per-chat link count of uploads reads the primary key too.
