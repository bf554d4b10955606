-- Issue #15, items 1, 2 and 6: token scopes, the organization new users join, and
-- organization-scoped MCP servers (ARCHITECTURE.md §11.1).
--
-- A token's scopes: NULL means every right its user has (tokens made before scopes existed
-- and tokens made without any keep working as they did); a list limits the token to those.
-- A scope never adds a right the user lacks: `admin` on a member's token grants nothing.
ALTER TABLE api_tokens ADD COLUMN scopes text[]
    CONSTRAINT api_tokens_scopes_check
    CHECK (scopes IS NULL OR (cardinality(scopes) > 0 AND scopes <@ ARRAY[
        'chat:read', 'chat:create', 'chat:update', 'chat:delete', 'admin']::text[]));

-- Roles an organization member may hold; the API checks the names first and says why.
ALTER TABLE organization_members ADD CONSTRAINT organization_members_roles_check
    CHECK (roles <@ ARRAY['organization-admin', 'agents-access']::text[]) NOT VALID;

-- New users (created by `agentq admin create-user`, the admin API or any other path through
-- `Store::create_user`) join this organization with `agents-access`; NULL: they join none
-- unless told. An organization named here cannot be deleted until the setting changes.
ALTER TABLE site_config ADD COLUMN auto_grant_agents_access_organization_id uuid
    CONSTRAINT site_config_auto_grant_organization_fk REFERENCES organizations(id);

-- An MCP server may belong to one organization: only chats of that organization may
-- choose it, and its `force_on` / `default_on` availability applies to them only. NULL: a
-- site-wide server, as before. Deleting the organization is refused while it has servers.
ALTER TABLE mcp_servers ADD COLUMN organization_id uuid
    CONSTRAINT mcp_servers_organization_fk REFERENCES organizations(id);
CREATE INDEX mcp_servers_organization_idx ON mcp_servers (organization_id)
    WHERE organization_id IS NOT NULL;
