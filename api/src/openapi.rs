//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`, and the
//! Swagger UI that reads it at `GET /docs` (ARCHITECTURE.md §11).
//!
//! The document is generated from the code, never written by hand: every handler carries a
//! `#[utoipa::path]`, and [`crate::routes`] registers handlers with `utoipa_axum::routes!`,
//! which takes the path and method from that attribute. So one list of routes feeds both the
//! router and the document, and `tests/openapi.rs` fails when a route is served without an
//! operation. Request and response types derive `ToSchema` (types from `agentq-core` through
//! its `openapi` feature), so the schemas follow the structs.
//!
//! What every operation shares is added here rather than repeated on each handler: the
//! bearer security scheme (required unless an operation opts out with `security(())`), and
//! the error responses that come from extractors and middleware, not from the handler's own
//! logic: 401 from [`crate::auth::CurrentUser`], 400/413/415 from [`crate::extract::JsonBody`]
//! and 500 from any failure. Each is the [`ErrorBody`] shape.
//!
//! The Swagger UI assets are compiled into the binary (`utoipa-swagger-ui`'s `vendored`
//! feature), so `/docs` works without network access at build or run time.

use std::sync::LazyLock;

use axum::{Router, http::header};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Content, RefOr, Response, ResponseBuilder,
        path::Operation,
        schema::Ref,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::{
    ApiState,
    error::{ErrorBody, Validation},
};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// Where the Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";
/// The name of the bearer-token security scheme (also spelled out in `ApiDoc`'s `security`).
const BEARER: &str = "bearer";

/// The document's fixed parts; the paths come from [`crate::routes::routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentq",
        description = "REST and Server-Sent Events API of agentq: chats whose turns run on \
                       workers, their messages and events, and the site's administration. \
                       Authenticate with `Authorization: Bearer <token>`. Errors are JSON: \
                       `{message, detail, validations: [{field, detail}]}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody, Validation)),
    modifiers(&BearerAuth),
    tags(
        (name = "chats", description = "Chats, their turns, interrupts and client-run tools."),
        (name = "messages", description = "A chat's messages."),
        (name = "files", description = "Uploaded files, which messages attach to chats (`file_ids`)."),
        (name = "events", description = "A chat's live events (Server-Sent Events)."),
        (name = "debug", description = "What each turn sent to its provider and got back."),
        (name = "users", description = "The caller's own settings."),
        (name = "models", description = "The models a user can pick, and whether they have a key for each."),
        (name = "mcp-servers", description = "MCP servers a chat may choose (site owners manage them under admin)."),
        (name = "admin", description = "Site settings, queues, providers, models, users and organizations; site owners only (reading the settings: anyone), with a token holding `admin` or no scopes."),
        (name = "organizations", description = "An organization's members, roles and usage; its `organization-admin`s and site owners, with a token holding `admin` or no scopes."),
        (name = "health", description = "Probes and metrics for orchestrators; no token needed."),
        (name = "meta", description = "This document."),
    )
)]
pub(crate) struct ApiDoc;

/// Declares the bearer scheme that the document-wide `security` requirement names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("aq_...")
            .description(Some(
                "An API token (`aq_...`); only its SHA-256 digest is stored.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The document, built once from the same routes the server runs. Public so that tools
/// (a client generator, a dump in CI) can read it without starting a server.
pub fn document() -> &'static openapi::OpenApi {
    static DOCUMENT: LazyLock<openapi::OpenApi> = LazyLock::new(|| {
        let (_, mut doc) = crate::routes::routes().split_for_parts();
        add_shared_error_responses(&mut doc);
        crate::openapi_sse::describe_frames(&mut doc);
        crate::openapi_links::add_links(&mut doc);
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc
    });
    &DOCUMENT
}

/// The document as served: serialized once, since it never changes while the process runs.
fn document_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .expect("the document serializes")
    });
    &JSON
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((
        status = 200,
        description = "The OpenAPI 3.1 document of this API.",
        content_type = "application/json",
        body = Object
    ))
)]
pub(crate) async fn openapi_json() -> ([(header::HeaderName, &'static str); 1], &'static str) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// The Swagger UI at `/docs`, pointed at [`OPENAPI_PATH`] (which the API router serves).
pub(crate) fn docs_router() -> Router<ApiState> {
    Router::from(SwaggerUi::new(DOCS_PATH).config(Config::from(OPENAPI_PATH)))
}

/// Adds the error responses that extractors and middleware produce to every operation that
/// can meet them, unless the handler documented that status itself.
fn add_shared_error_responses(doc: &mut openapi::OpenApi) {
    let global_security = doc.security.clone().unwrap_or_default();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let security = operation.security.as_ref().unwrap_or(&global_security);
            let needs_token = security.iter().any(|r| *r != Default::default());
            if needs_token {
                add_error(
                    operation,
                    401,
                    "No token, or the token is invalid, expired or revoked.",
                );
                add_error(
                    operation,
                    403,
                    "The caller's account is suspended or deleted, lacks a role it needs, or the token lacks the scope the route needs (the message names it).",
                );
            }
            if takes_json(operation) {
                add_error(
                    operation,
                    400,
                    "The body is not valid JSON or a field is invalid; `validations` names it.",
                );
                add_error(operation, 413, "The body is larger than the limit.");
                add_error(operation, 415, "The body is not `application/json`.");
            }
            add_error(
                operation,
                500,
                "An unexpected failure; it has been logged, not returned.",
            );
        }
    }
}

fn takes_json(operation: &Operation) -> bool {
    match &operation.request_body {
        Some(RefOr::T(body)) => body.content.contains_key("application/json"),
        _ => false,
    }
}

fn add_error(operation: &mut Operation, status: u16, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(error_response(description)));
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}
