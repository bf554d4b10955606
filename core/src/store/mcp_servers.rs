//! MCP servers as data (issue #12, item 3; ARCHITECTURE.md §3): what site owners configure
//! through the admin API, what any user may list, which servers a chat chose, and which
//! ones apply to a chat's turn.
//!
//! Secrets arrive here already sealed (`core::secrets`) and leave only inside a
//! [`McpServerRecord`], which the worker opens to call the server; the API shows a
//! [`McpServerView`] (`has_api_key`, `has_custom_headers`, `has_client_secret`) or, to
//! users who are not site owners, a [`McpServerListing`]. The API merges a change into the
//! current record and writes the whole row back ([`McpServerWrite`]), so the rule "changing
//! `auth_type` clears the old secrets" lives in one function there, not in SQL.
//!
//! # Which servers a chat gets
//!
//! `chats.mcp_server_ids` is NULL until the chat chooses; then it is the chosen list
//! (possibly empty). [`Store::effective_mcp_servers`]: enabled servers only; `force_on`
//! always; `default_on` when the chat never chose or chose it; `default_off` only when
//! chosen. So an explicit list replaces the defaults, and a chat opts out of a `default_on`
//! server by choosing a list without it (`[]` opts out of all of them).
//!
//! A server with an `organization_id` belongs to that organization (issue #15, item 2):
//! only its chats may choose it, its `force_on` / `default_on` availability applies to
//! them only, and only its members see it listed. A server without one is site-wide.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Store;
use crate::StoreError;

/// How agentq talks to the server. Only streamable HTTP for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum McpTransport {
    /// MCP's streamable HTTP transport (one endpoint, POST and optional SSE).
    #[default]
    StreamableHttp,
}

/// What a call to the server carries to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum McpAuthType {
    /// Nothing.
    #[default]
    None,
    /// `Authorization: Bearer` with the calling user's token from the server's OAuth flow.
    Oauth2,
    /// One configured header (`api_key_header`) carrying the stored key.
    ApiKey,
    /// Every configured header (at least one).
    CustomHeaders,
    /// `Authorization: Bearer` with the chat owner's OIDC access token.
    UserOidc,
}

/// Whether chats get the server without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum McpAvailability {
    /// Every chat, whatever it chose.
    ForceOn,
    /// Chats that did not choose, and chats that chose it.
    DefaultOn,
    /// Only chats that chose it.
    #[default]
    DefaultOff,
}

/// A server's whole row, sealed secrets included: for the API's merge and for workers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct McpServerRecord {
    /// Id.
    pub id: Uuid,
    /// Unique slug, the prefix of its tools' names (`<slug>__<tool>`).
    pub slug: String,
    /// Name shown to people.
    pub display_name: String,
    /// What it offers, for people.
    pub description: String,
    /// Its endpoint (`http://` or `https://`).
    pub url: String,
    /// Transport.
    pub transport: McpTransport,
    /// Authentication.
    pub auth_type: McpAuthType,
    /// For `api_key`: the header carrying the key.
    pub api_key_header: Option<String>,
    /// For `api_key`: the sealed key.
    pub api_key_ciphertext: Option<Vec<u8>>,
    /// For `custom_headers`: a sealed JSON object of header name to value.
    pub custom_headers_ciphertext: Option<Vec<u8>>,
    /// For `oauth2`: the client id.
    pub oauth_client_id: Option<String>,
    /// For `oauth2`: the sealed client secret.
    pub oauth_client_secret_ciphertext: Option<Vec<u8>>,
    /// For `oauth2`: the authorization endpoint.
    pub oauth_authorize_url: Option<String>,
    /// For `oauth2`: the token endpoint.
    pub oauth_token_url: Option<String>,
    /// For `oauth2`: scopes to ask for.
    pub oauth_scopes: Vec<String>,
    /// Availability.
    pub availability: McpAvailability,
    /// Disabled servers apply to no chat.
    pub enabled: bool,
    /// Tools offered (empty: all); the deny list wins.
    pub tool_allow_list: Vec<String>,
    /// Tools never offered.
    pub tool_deny_list: Vec<String>,
    /// Whether its tools are offered in plan mode.
    pub allow_in_plan_mode: bool,
    /// The organization it belongs to; `None`: site-wide.
    pub organization_id: Option<Uuid>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change (workers key their tools-list cache on it).
    pub updated_at: DateTime<Utc>,
}

impl McpServerRecord {
    /// Whether the lists let the model see `tool`: not denied, and allowed when an allow
    /// list is set.
    pub fn offers_tool(&self, tool: &str) -> bool {
        !self.tool_deny_list.iter().any(|t| t == tool)
            && (self.tool_allow_list.is_empty() || self.tool_allow_list.iter().any(|t| t == tool))
    }

    /// What a site owner sees: everything but the secrets, which show as `has_*`.
    pub fn view(&self) -> McpServerView {
        McpServerView {
            id: self.id,
            slug: self.slug.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            url: self.url.clone(),
            transport: self.transport,
            auth_type: self.auth_type,
            api_key_header: self.api_key_header.clone(),
            has_api_key: self.api_key_ciphertext.is_some(),
            has_custom_headers: self.custom_headers_ciphertext.is_some(),
            oauth_client_id: self.oauth_client_id.clone(),
            has_client_secret: self.oauth_client_secret_ciphertext.is_some(),
            oauth_authorize_url: self.oauth_authorize_url.clone(),
            oauth_token_url: self.oauth_token_url.clone(),
            oauth_scopes: self.oauth_scopes.clone(),
            availability: self.availability,
            enabled: self.enabled,
            tool_allow_list: self.tool_allow_list.clone(),
            tool_deny_list: self.tool_deny_list.clone(),
            allow_in_plan_mode: self.allow_in_plan_mode,
            organization_id: self.organization_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// What any user sees of an enabled server.
    pub fn listing(&self) -> McpServerListing {
        McpServerListing {
            id: self.id,
            slug: self.slug.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            auth_type: self.auth_type,
            availability: self.availability,
            allow_in_plan_mode: self.allow_in_plan_mode,
            connected: None,
        }
    }

    /// The writable fields, to merge a change into.
    pub fn to_write(&self) -> McpServerWrite {
        McpServerWrite {
            slug: self.slug.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            url: self.url.clone(),
            transport: self.transport,
            auth_type: self.auth_type,
            api_key_header: self.api_key_header.clone(),
            api_key_ciphertext: self.api_key_ciphertext.clone(),
            custom_headers_ciphertext: self.custom_headers_ciphertext.clone(),
            oauth_client_id: self.oauth_client_id.clone(),
            oauth_client_secret_ciphertext: self.oauth_client_secret_ciphertext.clone(),
            oauth_authorize_url: self.oauth_authorize_url.clone(),
            oauth_token_url: self.oauth_token_url.clone(),
            oauth_scopes: self.oauth_scopes.clone(),
            availability: self.availability,
            enabled: self.enabled,
            tool_allow_list: self.tool_allow_list.clone(),
            tool_deny_list: self.tool_deny_list.clone(),
            allow_in_plan_mode: self.allow_in_plan_mode,
            organization_id: self.organization_id,
        }
    }
}

/// A server as the admin API shows it: no secrets, only whether each is stored.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServerView {
    /// Id (what chats name in `mcp_server_ids`).
    pub id: Uuid,
    /// Unique slug: lowercase letters and digits joined by single hyphens, at most 32
    /// characters; its tools reach the model as `<slug>__<tool>`.
    pub slug: String,
    /// Name shown to people.
    pub display_name: String,
    /// What it offers.
    pub description: String,
    /// Endpoint.
    pub url: String,
    /// Transport.
    pub transport: McpTransport,
    /// Authentication.
    pub auth_type: McpAuthType,
    /// For `api_key`: the header carrying the key.
    pub api_key_header: Option<String>,
    /// Whether an API key is stored.
    pub has_api_key: bool,
    /// Whether custom headers are stored.
    pub has_custom_headers: bool,
    /// For `oauth2`: the client id.
    pub oauth_client_id: Option<String>,
    /// Whether an OAuth client secret is stored.
    pub has_client_secret: bool,
    /// For `oauth2`: the authorization endpoint.
    pub oauth_authorize_url: Option<String>,
    /// For `oauth2`: the token endpoint.
    pub oauth_token_url: Option<String>,
    /// For `oauth2`: the scopes asked for.
    pub oauth_scopes: Vec<String>,
    /// Availability.
    pub availability: McpAvailability,
    /// Enabled.
    pub enabled: bool,
    /// Tools offered (empty: all).
    pub tool_allow_list: Vec<String>,
    /// Tools never offered (wins over the allow list).
    pub tool_deny_list: Vec<String>,
    /// Whether its tools are offered in plan mode.
    pub allow_in_plan_mode: bool,
    /// The organization whose chats alone may use it; `null`: every chat (site-wide).
    pub organization_id: Option<Uuid>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// An enabled server as any user sees it (to choose it for a chat).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServerListing {
    /// Id (what chats name in `mcp_server_ids`).
    pub id: Uuid,
    /// Slug, the prefix of its tools' names.
    pub slug: String,
    /// Name shown to people.
    pub display_name: String,
    /// What it offers.
    pub description: String,
    /// Authentication (`oauth2` servers need the user to connect first).
    pub auth_type: McpAuthType,
    /// Availability.
    pub availability: McpAvailability,
    /// Whether its tools are offered in plan mode.
    pub allow_in_plan_mode: bool,
    /// For `oauth2` servers: whether the caller has connected (holds tokens for it);
    /// absent for the other auth types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
}

/// Every writable column of a server, secrets sealed.
#[derive(Debug, Clone, Default)]
pub struct McpServerWrite {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// URL.
    pub url: String,
    /// Transport.
    pub transport: McpTransport,
    /// Authentication.
    pub auth_type: McpAuthType,
    /// Header of an API key.
    pub api_key_header: Option<String>,
    /// Sealed API key.
    pub api_key_ciphertext: Option<Vec<u8>>,
    /// Sealed custom headers (JSON object).
    pub custom_headers_ciphertext: Option<Vec<u8>>,
    /// OAuth client id.
    pub oauth_client_id: Option<String>,
    /// Sealed OAuth client secret.
    pub oauth_client_secret_ciphertext: Option<Vec<u8>>,
    /// OAuth authorization endpoint.
    pub oauth_authorize_url: Option<String>,
    /// OAuth token endpoint.
    pub oauth_token_url: Option<String>,
    /// OAuth scopes.
    pub oauth_scopes: Vec<String>,
    /// Availability.
    pub availability: McpAvailability,
    /// Enabled.
    pub enabled: bool,
    /// Allow list.
    pub tool_allow_list: Vec<String>,
    /// Deny list.
    pub tool_deny_list: Vec<String>,
    /// Plan mode.
    pub allow_in_plan_mode: bool,
    /// Owning organization (`None`: site-wide).
    pub organization_id: Option<Uuid>,
}

impl McpServerWrite {
    /// Forgets every credential: what a change of `auth_type` does before the new type's
    /// credentials are applied, so no secret of the old type lingers.
    pub fn clear_credentials(&mut self) {
        self.api_key_header = None;
        self.api_key_ciphertext = None;
        self.custom_headers_ciphertext = None;
        self.oauth_client_id = None;
        self.oauth_client_secret_ciphertext = None;
        self.oauth_authorize_url = None;
        self.oauth_token_url = None;
        self.oauth_scopes.clear();
    }
}

const COLUMNS: &str = "id, slug, display_name, description, url, transport, auth_type, api_key_header, \
     api_key_ciphertext, custom_headers_ciphertext, oauth_client_id, oauth_client_secret_ciphertext, \
     oauth_authorize_url, oauth_token_url, oauth_scopes, availability, enabled, tool_allow_list, \
     tool_deny_list, allow_in_plan_mode, organization_id, created_at, updated_at";

impl Store {
    /// Creates a server. A taken slug is `StoreError::Duplicate { field: "slug" }`.
    pub async fn create_mcp_server(
        &self,
        w: &McpServerWrite,
    ) -> Result<McpServerRecord, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO mcp_servers (id, slug, display_name, description, url, transport, auth_type,
                 api_key_header, api_key_ciphertext, custom_headers_ciphertext, oauth_client_id,
                 oauth_client_secret_ciphertext, oauth_authorize_url, oauth_token_url, oauth_scopes,
                 availability, enabled, tool_allow_list, tool_deny_list, allow_in_plan_mode,
                 organization_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(&w.slug)
        .bind(&w.display_name)
        .bind(&w.description)
        .bind(&w.url)
        .bind(w.transport)
        .bind(w.auth_type)
        .bind(&w.api_key_header)
        .bind(&w.api_key_ciphertext)
        .bind(&w.custom_headers_ciphertext)
        .bind(&w.oauth_client_id)
        .bind(&w.oauth_client_secret_ciphertext)
        .bind(&w.oauth_authorize_url)
        .bind(&w.oauth_token_url)
        .bind(&w.oauth_scopes)
        .bind(w.availability)
        .bind(w.enabled)
        .bind(&w.tool_allow_list)
        .bind(&w.tool_deny_list)
        .bind(w.allow_in_plan_mode)
        .bind(w.organization_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Overwrites every writable column of a server (the API merged the change into the
    /// record it read) if the row is still the version `read_at` (its `updated_at`): a
    /// concurrent change in between is [`StoreError::Conflict`] (re-read and merge again), so two merges never lose
    /// each other's changes (nor restore a replaced credential). No such server:
    /// [`StoreError::NotFound`].
    pub async fn update_mcp_server(
        &self,
        id: Uuid,
        read_at: DateTime<Utc>,
        w: &McpServerWrite,
    ) -> Result<McpServerRecord, StoreError> {
        let updated = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE mcp_servers SET slug = $2, display_name = $3, description = $4, url = $5,
                 transport = $6, auth_type = $7, api_key_header = $8, api_key_ciphertext = $9,
                 custom_headers_ciphertext = $10, oauth_client_id = $11,
                 oauth_client_secret_ciphertext = $12, oauth_authorize_url = $13,
                 oauth_token_url = $14, oauth_scopes = $15, availability = $16, enabled = $17,
                 tool_allow_list = $18, tool_deny_list = $19, allow_in_plan_mode = $20,
                 organization_id = $22,
                 updated_at = greatest(now(), updated_at + interval '1 microsecond')
             WHERE id = $1 AND updated_at = $21 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(&w.slug)
        .bind(&w.display_name)
        .bind(&w.description)
        .bind(&w.url)
        .bind(w.transport)
        .bind(w.auth_type)
        .bind(&w.api_key_header)
        .bind(&w.api_key_ciphertext)
        .bind(&w.custom_headers_ciphertext)
        .bind(&w.oauth_client_id)
        .bind(&w.oauth_client_secret_ciphertext)
        .bind(&w.oauth_authorize_url)
        .bind(&w.oauth_token_url)
        .bind(&w.oauth_scopes)
        .bind(w.availability)
        .bind(w.enabled)
        .bind(&w.tool_allow_list)
        .bind(&w.tool_deny_list)
        .bind(w.allow_in_plan_mode)
        .bind(read_at)
        .bind(w.organization_id)
        .fetch_optional(&self.pool)
        .await?;
        match updated {
            Some(server) => Ok(server),
            None => {
                self.get_mcp_server(id).await?;
                Err(StoreError::Conflict(
                    "the server was changed by another request meanwhile; send the change again"
                        .into(),
                ))
            }
        }
    }

    /// One server, sealed secrets included.
    pub async fn get_mcp_server(&self, id: Uuid) -> Result<McpServerRecord, StoreError> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mcp_servers WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Every server, by slug (`enabled_only`: the ones users may choose).
    pub async fn list_mcp_servers(
        &self,
        enabled_only: bool,
    ) -> Result<Vec<McpServerRecord>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mcp_servers WHERE enabled OR NOT $1 ORDER BY slug"
        )))
        .bind(enabled_only)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a server; chats that chose it simply stop matching it.
    pub async fn delete_mcp_server(&self, id: Uuid) -> Result<(), StoreError> {
        super::changed_one(
            sqlx::query("DELETE FROM mcp_servers WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    /// Which of `ids` a chat of `organization` may not choose, in order, each with the
    /// organization it belongs to when that is the reason (`None`: no enabled server).
    pub async fn unusable_mcp_server_ids(
        &self,
        ids: &[Uuid],
        organization: Uuid,
    ) -> Result<Vec<(Uuid, Option<Uuid>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT u.i, s.organization_id FROM unnest($1::uuid[]) WITH ORDINALITY AS u(i, n)
             LEFT JOIN mcp_servers s ON s.id = u.i AND s.enabled
             WHERE s.id IS NULL OR s.organization_id <> $2
             ORDER BY n",
        )
        .bind(ids)
        .bind(organization)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The enabled servers `user` may list: site-wide ones and those of organizations
    /// they belong to, by slug.
    pub async fn list_mcp_servers_for_user(
        &self,
        user: Uuid,
    ) -> Result<Vec<McpServerRecord>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mcp_servers s
             WHERE s.enabled AND (s.organization_id IS NULL OR EXISTS (
                SELECT 1 FROM organization_members m
                WHERE m.organization_id = s.organization_id AND m.user_id = $1))
             ORDER BY slug"
        )))
        .bind(user)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The chat's explicit choice (`None`: it never chose).
    pub async fn chat_mcp_server_choice(
        &self,
        chat_id: Uuid,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        sqlx::query_scalar("SELECT mcp_server_ids FROM chats WHERE id = $1")
            .bind(chat_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The server with `slug` if it applies to `chat_id` now (the same rule as
    /// [`Store::effective_mcp_servers`]), with the chat's owner: what a worker re-reads
    /// before it runs a call, so a server disabled, deleted or dropped from the chat since
    /// the step's offer runs nothing. `None`: it does not apply (or no such chat).
    pub async fn effective_mcp_server(
        &self,
        chat_id: Uuid,
        slug: &str,
    ) -> Result<Option<(McpServerRecord, Uuid)>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar("SELECT owner_id FROM chats WHERE id = $1")
            .bind(chat_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(owner) = owner else {
            return Ok(None);
        };
        let server: Option<McpServerRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mcp_servers s
             WHERE s.slug = $2 AND s.enabled AND EXISTS (
                SELECT 1 FROM chats c WHERE c.id = $1 AND {APPLIES})",
            APPLIES = applies_to("s", "c")
        )))
        .bind(chat_id)
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        Ok(server.map(|s| (s, owner)))
    }

    /// The servers whose tools a turn of `chat_id` may offer, by slug (see the module page
    /// for the rule). Allow/deny lists and plan mode are applied per tool by the caller.
    pub async fn effective_mcp_servers(
        &self,
        chat_id: Uuid,
    ) -> Result<Vec<McpServerRecord>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mcp_servers s
             WHERE s.enabled AND EXISTS (
                SELECT 1 FROM chats c WHERE c.id = $1 AND {APPLIES})
             ORDER BY s.slug",
            APPLIES = applies_to("s", "c")
        )))
        .bind(chat_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Whether the server `server` (an `mcp_servers` alias) applies to the chat `chat` (a
/// `chats` alias), enabled or not: the rule of the module page, in one place for every
/// query that applies it.
fn applies_to(server: &str, chat: &str) -> String {
    format!(
        "({server}.organization_id IS NULL OR {server}.organization_id = {chat}.organization_id)
         AND ({server}.availability = 'force_on'
              OR ({chat}.mcp_server_ids IS NULL AND {server}.availability = 'default_on')
              OR {server}.id = ANY(coalesce({chat}.mcp_server_ids, '{{}}')))"
    )
}

/// A boolean column, `any_mcp_server`, for a query over the chat `chat` (a `chats` alias):
/// whether any enabled server applies to it, so a step of a chat with none (most chats)
/// skips [`Store::effective_mcp_servers`] (the acquiring statement returns it,
/// `AcquiredTurn::any_mcp_server`).
pub(super) fn any_applies_column(chat: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM mcp_servers ms WHERE ms.enabled AND {}) AS any_mcp_server",
        applies_to("ms", chat)
    )
}

/// Records a chat's explicit choice of servers (replacing any earlier one) inside the
/// caller's transaction, which holds the chat's lock (`Store::send_message`).
pub(super) async fn choose_mcp_servers_in(
    tx: &mut sqlx::PgConnection,
    chat_id: Uuid,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    super::changed_one(
        sqlx::query("UPDATE chats SET mcp_server_ids = $2, updated_at = now() WHERE id = $1")
            .bind(chat_id)
            .bind(ids)
            .execute(tx)
            .await?,
    )
}
