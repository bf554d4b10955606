//! The body of `POST` and `PATCH /api/v1/admin/mcp-servers` and how it becomes a row:
//! each field checked (a 400 naming it), secrets sealed, then merged into the server's
//! current state. The one rule about credentials lives in [`McpServerBody::merge_into`]:
//! a change of `auth_type` forgets every credential of the old type first, and the result
//! must carry what the (new) type needs.

use std::collections::BTreeMap;

use agentq_core::{
    secrets::SecretBox,
    store::{McpAuthType, McpAvailability, McpServerWrite, McpTransport},
};
use serde::Deserialize;

use crate::error::{ApiError, refuse_control_chars};

/// Longest slug: it prefixes tool names (`<slug>__<tool>`), which providers cap at 64.
pub const MAX_SLUG_CHARS: usize = 32;
/// Longest display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Longest URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Most entries in each tool list, custom headers and scopes.
const MAX_LIST_ENTRIES: usize = 200;
/// Longest tool name in a list, header value or scope.
const MAX_ITEM_BYTES: usize = 4096;

/// Headers the MCP transport sets itself (framing, content negotiation, the session);
/// configuring one would break the connection.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// Body of `POST` and `PATCH /api/v1/admin/mcp-servers`. In a patch, absent fields keep
/// their value. Secrets (`api_key`, `custom_headers`, `oauth_client_secret`) are write-only.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerBody {
    /// Unique, required on create: lowercase letters and digits in runs joined by single
    /// hyphens (`^[a-z0-9]+(-[a-z0-9]+)*$`), at most 32 characters. No `_`, so the first
    /// `__` of a tool name `<slug>__<tool>` always ends the slug.
    #[schema(max_length = 32, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    /// Name shown to people, 1-100 characters; required on create.
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
    /// What the server offers (at most 2000 characters).
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// The server's MCP endpoint, an `http://` or `https://` URL; required on create.
    pub url: Option<String>,
    /// `streamable_http` (the default and only value).
    pub transport: Option<McpTransport>,
    /// `none` (default), `oauth2`, `api_key`, `custom_headers` or `user_oidc`. Changing it
    /// removes every stored credential of the old type.
    pub auth_type: Option<McpAuthType>,
    /// For `api_key`: the header that carries the key (e.g. `X-Api-Key`).
    pub api_key_header: Option<String>,
    /// For `api_key`: the key, sealed and never returned (`has_api_key`).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub api_key: Option<String>,
    /// For `custom_headers`: at least one header name and value, all sealed and never
    /// returned (`has_custom_headers`); replaces the stored set.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub custom_headers: Option<BTreeMap<String, String>>,
    /// For `oauth2`: the client id.
    pub oauth_client_id: Option<String>,
    /// For `oauth2`: the client secret, sealed and never returned (`has_client_secret`).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub oauth_client_secret: Option<String>,
    /// For `oauth2`: the authorization endpoint (`http(s)://`).
    pub oauth_authorize_url: Option<String>,
    /// For `oauth2`: the token endpoint (`http(s)://`).
    pub oauth_token_url: Option<String>,
    /// For `oauth2`: scopes to ask for.
    pub oauth_scopes: Option<Vec<String>>,
    /// `force_on`, `default_on` or `default_off` (default).
    pub availability: Option<McpAvailability>,
    /// Disabled servers apply to no chat (default true).
    pub enabled: Option<bool>,
    /// Tools offered (empty: all the server lists).
    pub tool_allow_list: Option<Vec<String>>,
    /// Tools never offered; wins over the allow list.
    pub tool_deny_list: Option<Vec<String>>,
    /// Whether the tools are offered in plan mode (default false).
    pub allow_in_plan_mode: Option<bool>,
    /// An organization id: only that organization's chats may use the server and only its
    /// members see it listed; `null` makes it site-wide (the default); absent: unchanged.
    #[serde(default, deserialize_with = "crate::routes::admin::present")]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub organization_id: Option<Option<uuid::Uuid>>,
}

/// A secret that is absent stays; `null` is refused (a 400 naming the field) instead of
/// being read as "keep": a client that sends `null` means to remove the secret, which
/// only a new `auth_type` does.
fn not_null<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(de)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "cannot be null: send a new value, or change `auth_type` to remove the old one",
        )),
    }
}

impl McpServerBody {
    /// The row a create writes.
    pub fn into_new(self, secrets: Option<&SecretBox>) -> Result<McpServerWrite, ApiError> {
        if self.slug.is_none() {
            return Err(ApiError::invalid("slug", "is required"));
        }
        if self.display_name.is_none() {
            return Err(ApiError::invalid("display_name", "is required"));
        }
        if self.url.is_none() {
            return Err(ApiError::invalid("url", "is required"));
        }
        let base = McpServerWrite {
            enabled: true,
            ..McpServerWrite::default()
        };
        self.merge_into(base, secrets, true)
    }

    /// `current` with this change applied, checked as a whole.
    pub fn merge_into(
        self,
        mut w: McpServerWrite,
        secrets: Option<&SecretBox>,
        creating: bool,
    ) -> Result<McpServerWrite, ApiError> {
        if let Some(slug) = self.slug {
            w.slug = check_slug(slug)?;
        }
        if let Some(name) = self.display_name {
            let name = crate::error::trimmed_within("display_name", &name, MAX_DISPLAY_NAME_CHARS)?
                .to_owned();
            if name.is_empty() {
                return Err(ApiError::invalid(
                    "display_name",
                    format!("must be 1-{MAX_DISPLAY_NAME_CHARS} characters"),
                ));
            }
            refuse_control_chars("display_name", &name)?;
            w.display_name = name;
        }
        if let Some(description) = self.description {
            if description.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(ApiError::invalid(
                    "description",
                    format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
                ));
            }
            // Line breaks and tabs are welcome in a description; other control characters not.
            refuse_control_chars("description", &description.replace(['\n', '\r', '\t'], " "))?;
            w.description = description.trim().to_owned();
        }
        if let Some(url) = self.url {
            w.url = check_url("url", url)?;
        }
        if let Some(transport) = self.transport {
            w.transport = transport;
        }
        if let Some(availability) = self.availability {
            w.availability = availability;
        }
        if let Some(enabled) = self.enabled {
            w.enabled = enabled;
        }
        if let Some(plan) = self.allow_in_plan_mode {
            w.allow_in_plan_mode = plan;
        }
        if let Some(organization) = self.organization_id {
            w.organization_id = organization;
        }
        if let Some(list) = self.tool_allow_list {
            w.tool_allow_list = check_list("tool_allow_list", list)?;
        }
        if let Some(list) = self.tool_deny_list {
            w.tool_deny_list = check_list("tool_deny_list", list)?;
        }

        // Credentials: a new type starts from none, so no secret of the old one lingers.
        if let Some(auth) = self.auth_type
            && (creating || auth != w.auth_type)
        {
            w.clear_credentials();
            w.auth_type = auth;
        }
        let auth = w.auth_type;
        let only_for = |field: &str, wanted: McpAuthType| -> Result<(), ApiError> {
            if auth == wanted {
                Ok(())
            } else {
                Err(ApiError::invalid(
                    field,
                    format!(
                        "applies only to auth_type `{}`; this server's is `{}`",
                        auth_name(wanted),
                        auth_name(auth)
                    ),
                ))
            }
        };
        let seal = |field: &str, plain: &str| -> Result<Vec<u8>, ApiError> {
            secrets.map(|b| b.seal(plain)).ok_or_else(|| {
                ApiError::invalid(
                    field,
                    "cannot be stored: the server has no AGENTQ_SECRET_KEY configured",
                )
            })
        };
        if let Some(header) = self.api_key_header {
            only_for("api_key_header", McpAuthType::ApiKey)?;
            w.api_key_header = Some(check_header_name("api_key_header", &header)?);
        }
        if let Some(key) = self.api_key {
            only_for("api_key", McpAuthType::ApiKey)?;
            let key = key.trim();
            check_header_value("api_key", key)?;
            w.api_key_ciphertext = Some(seal("api_key", key)?);
        }
        if let Some(headers) = self.custom_headers {
            only_for("custom_headers", McpAuthType::CustomHeaders)?;
            if headers.is_empty() {
                return Err(ApiError::invalid(
                    "custom_headers",
                    "must name at least one header",
                ));
            }
            if headers.len() > MAX_LIST_ENTRIES {
                return Err(ApiError::invalid(
                    "custom_headers",
                    format!("may hold at most {MAX_LIST_ENTRIES} headers"),
                ));
            }
            let mut checked = BTreeMap::new();
            for (name, value) in &headers {
                let name = check_header_name("custom_headers", name)?;
                check_header_value(&format!("custom_headers.{name}"), value)?;
                checked.insert(name, value.clone());
            }
            let json = serde_json::to_string(&checked).unwrap_or_default();
            w.custom_headers_ciphertext = Some(seal("custom_headers", &json)?);
        }
        if let Some(id) = self.oauth_client_id {
            only_for("oauth_client_id", McpAuthType::Oauth2)?;
            let id = id.trim().to_owned();
            if id.is_empty() || id.len() > MAX_ITEM_BYTES {
                return Err(ApiError::invalid("oauth_client_id", "must be 1-4096 bytes"));
            }
            refuse_control_chars("oauth_client_id", &id)?;
            w.oauth_client_id = Some(id);
        }
        if let Some(secret) = self.oauth_client_secret {
            only_for("oauth_client_secret", McpAuthType::Oauth2)?;
            if secret.trim().is_empty() {
                return Err(ApiError::invalid(
                    "oauth_client_secret",
                    "must not be empty",
                ));
            }
            w.oauth_client_secret_ciphertext = Some(seal("oauth_client_secret", secret.trim())?);
        }
        if let Some(url) = self.oauth_authorize_url {
            only_for("oauth_authorize_url", McpAuthType::Oauth2)?;
            w.oauth_authorize_url = Some(check_url("oauth_authorize_url", url)?);
        }
        if let Some(url) = self.oauth_token_url {
            only_for("oauth_token_url", McpAuthType::Oauth2)?;
            w.oauth_token_url = Some(check_url("oauth_token_url", url)?);
        }
        if let Some(scopes) = self.oauth_scopes {
            only_for("oauth_scopes", McpAuthType::Oauth2)?;
            if scopes.len() > MAX_LIST_ENTRIES {
                return Err(ApiError::invalid(
                    "oauth_scopes",
                    format!("may hold at most {MAX_LIST_ENTRIES} scopes"),
                ));
            }
            if let Some(bad) = scopes.iter().find(|s| {
                s.is_empty() || s.len() > MAX_ITEM_BYTES || !s.bytes().all(|b| b.is_ascii_graphic())
            }) {
                return Err(ApiError::invalid(
                    "oauth_scopes",
                    format!("`{bad}` is not a scope (printable ASCII without spaces)"),
                ));
            }
            w.oauth_scopes = scopes;
        }

        // What the type needs must be there once the change is applied.
        let missing = match auth {
            McpAuthType::ApiKey if w.api_key_header.is_none() => Some("api_key_header"),
            McpAuthType::ApiKey if w.api_key_ciphertext.is_none() => Some("api_key"),
            McpAuthType::CustomHeaders if w.custom_headers_ciphertext.is_none() => {
                Some("custom_headers")
            }
            McpAuthType::Oauth2 if w.oauth_client_id.is_none() => Some("oauth_client_id"),
            McpAuthType::Oauth2 if w.oauth_authorize_url.is_none() => Some("oauth_authorize_url"),
            McpAuthType::Oauth2 if w.oauth_token_url.is_none() => Some("oauth_token_url"),
            _ => None,
        };
        if let Some(field) = missing {
            return Err(ApiError::invalid(
                field,
                format!("is required for auth_type `{}`", auth_name(auth)),
            ));
        }
        Ok(w)
    }
}

/// The wire name of an auth type, for messages.
fn auth_name(auth: McpAuthType) -> &'static str {
    match auth {
        McpAuthType::None => "none",
        McpAuthType::Oauth2 => "oauth2",
        McpAuthType::ApiKey => "api_key",
        McpAuthType::CustomHeaders => "custom_headers",
        McpAuthType::UserOidc => "user_oidc",
    }
}

/// The slug rule (see [`McpServerBody::slug`]).
fn check_slug(slug: String) -> Result<String, ApiError> {
    let well_formed = !slug.is_empty()
        && slug.split('-').all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !well_formed {
        return Err(ApiError::invalid(
            "slug",
            "must be lowercase letters and digits in runs joined by single hyphens (`^[a-z0-9]+(-[a-z0-9]+)*$`); no `_`, so `<slug>__<tool>` stays unambiguous",
        ));
    }
    if slug.len() > MAX_SLUG_CHARS {
        return Err(ApiError::invalid(
            "slug",
            format!("must be at most {MAX_SLUG_CHARS} characters"),
        ));
    }
    Ok(slug)
}

/// An `http://` or `https://` URL with a host, read with `url::Url`. Control characters
/// are refused rather than dropped (the URL stored is the URL checked), and so are
/// credentials in it: they would be shown to every site owner; use an auth type instead.
pub(crate) fn check_url(field: &str, raw: String) -> Result<String, ApiError> {
    let raw = raw.trim().to_owned();
    if raw.len() > MAX_URL_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_URL_BYTES} bytes"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "must not hold control characters"));
    }
    match url::Url::parse(&raw) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(ApiError::invalid(
            field,
            "must not hold credentials; set them with auth_type",
        )),
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(raw)
        }
        _ => Err(ApiError::invalid(
            field,
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// A header name HTTP accepts and the transport does not set itself, lowercased.
fn check_header_name(field: &str, name: &str) -> Result<String, ApiError> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty() || axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(ApiError::invalid(
            field,
            format!("`{name}` is not a valid header name"),
        ));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(ApiError::invalid(
            field,
            format!("`{name}` is set by the MCP transport itself and cannot be configured"),
        ));
    }
    Ok(lower)
}

/// A non-empty value an HTTP header can carry.
fn check_header_value(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_ITEM_BYTES {
        return Err(ApiError::invalid(field, "must be 1-4096 bytes"));
    }
    if axum::http::HeaderValue::from_str(value).is_err() {
        return Err(ApiError::invalid(
            field,
            "holds characters an HTTP header cannot carry (control characters or non-ASCII)",
        ));
    }
    Ok(())
}

/// A list of tool names: bounded, no blanks, no control characters, duplicates dropped.
fn check_list(field: &str, list: Vec<String>) -> Result<Vec<String>, ApiError> {
    if list.len() > MAX_LIST_ENTRIES {
        return Err(ApiError::invalid(
            field,
            format!("may hold at most {MAX_LIST_ENTRIES} tool names"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, name) in list.into_iter().enumerate() {
        if name.is_empty() || name.len() > MAX_ITEM_BYTES {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                "must be a tool name of 1-4096 bytes",
            ));
        }
        refuse_control_chars(&format!("{field}[{i}]"), &name)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}
