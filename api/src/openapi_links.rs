//! OpenAPI `links` of the document: which response gives the id that another operation's
//! path takes (ARCHITECTURE.md §11).
//!
//! A client generator or a fuzzer (schemathesis, run by `.ci/schemathesis`) follows a link
//! from `POST /api/v1/chats` to `GET /api/v1/chats/{chat_id}` with the id that response
//! returned, so it reaches the routes behind ids instead of meeting 404s with made-up ones.
//! The links are one table here, added to the generated document, rather than `links(...)`
//! on each handler: a rule names a producer and the path prefix it produces, and every
//! operation under that prefix whose path parameters the rule supplies gets a link. So a
//! new route under `/api/v1/chats/{chat_id}` is linked without touching this file, and
//! `tests/openapi.rs` fails when an operation behind an id is the target of no link.

use utoipa::openapi::{self, RefOr, link::LinkBuilder, path::Operation};

/// One producer: the operation, its success status, the path prefix of what it produces, and
/// where each path parameter of that prefix comes from (an OpenAPI runtime expression).
struct LinkRule {
    from: &'static str,
    status: &'static str,
    prefix: &'static str,
    parameters: &'static [(&'static str, &'static str)],
}

const fn rule(
    from: &'static str,
    status: &'static str,
    prefix: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> LinkRule {
    LinkRule {
        from,
        status,
        prefix,
        parameters,
    }
}

/// Every producer of an id that a path takes.
const RULES: &[LinkRule] = &[
    rule(
        "create_chat",
        "201",
        "/api/v1/chats/{chat_id}",
        &[("chat_id", "$response.body#/id")],
    ),
    rule(
        "send_message",
        "201",
        "/api/v1/chats/{chat_id}/messages/{message_id}",
        &[
            ("chat_id", "$request.path.chat_id"),
            ("message_id", "$response.body#/message/id"),
        ],
    ),
    rule(
        "list_files",
        "200",
        "/api/v1/chats/{chat_id}/files/{file_id}",
        &[
            ("chat_id", "$request.path.chat_id"),
            ("file_id", "$response.body#/files/0/id"),
        ],
    ),
    rule(
        "list_runs",
        "200",
        "/api/v1/chats/{chat_id}/debug/runs/{run_id}",
        &[
            ("chat_id", "$request.path.chat_id"),
            ("run_id", "$response.body#/runs/0/id"),
        ],
    ),
    rule(
        "upload_file",
        "201",
        "/api/v1/files/{file_id}",
        &[("file_id", "$response.body#/id")],
    ),
    rule(
        "list_dead_letters",
        "200",
        "/api/v1/admin/queues/{queue}/dead-letters/{id}",
        &[
            ("queue", "$request.path.queue"),
            ("id", "$response.body#/dead_letters/0/id"),
        ],
    ),
    rule(
        "create_provider",
        "201",
        "/api/v1/admin/providers/{id}",
        &[("id", "$response.body#/id")],
    ),
    rule(
        "create_model",
        "201",
        "/api/v1/admin/models/{id}",
        &[("id", "$response.body#/id")],
    ),
    rule(
        "create_server",
        "201",
        "/api/v1/admin/mcp-servers/{id}",
        &[("id", "$response.body#/id")],
    ),
    rule(
        "create_server",
        "201",
        "/api/v1/mcp-servers/{id}",
        &[("id", "$response.body#/id")],
    ),
    rule(
        "create_organization",
        "201",
        "/api/v1/admin/organizations/{organization_id}",
        &[("organization_id", "$response.body#/id")],
    ),
    rule(
        "create_organization",
        "201",
        "/api/v1/organizations/{organization_id}",
        &[("organization_id", "$response.body#/id")],
    ),
    rule(
        "create_organization",
        "201",
        "/api/v1/admin/spend-limits/organizations/{organization_id}",
        &[("organization_id", "$response.body#/id")],
    ),
    rule(
        "add_member",
        "201",
        "/api/v1/organizations/{organization_id}/members/{user_id}",
        &[
            ("organization_id", "$request.path.organization_id"),
            ("user_id", "$response.body#/user_id"),
        ],
    ),
    rule(
        "create_user",
        "201",
        "/api/v1/admin/users/{user_id}",
        &[("user_id", "$response.body#/id")],
    ),
    rule(
        "create_user",
        "201",
        "/api/v1/admin/spend-limits/users/{user_id}",
        &[("user_id", "$response.body#/id")],
    ),
    rule(
        "create_skill",
        "201",
        "/api/v1/users/me/skills/{name}",
        &[("name", "$response.body#/name")],
    ),
    rule(
        "import_skill",
        "201",
        "/api/v1/users/me/skills/{name}",
        &[("name", "$response.body#/name")],
    ),
    rule(
        "create_token",
        "201",
        "/api/v1/users/me/tokens/{token_id}",
        &[("token_id", "$response.body#/token/id")],
    ),
    rule(
        "list_provider_keys",
        "200",
        "/api/v1/users/me/provider-keys/{provider}",
        &[("provider", "$response.body#/providers/0/provider_id")],
    ),
    rule(
        "put_provider_key",
        "200",
        "/api/v1/users/me/provider-keys/{provider}",
        &[("provider", "$request.path.provider")],
    ),
];

/// Adds a link from each rule's producer response to every operation it can feed.
pub(crate) fn add_links(doc: &mut openapi::OpenApi) {
    // Targets first (immutable walk), then the producers' responses (mutable).
    let mut links: Vec<(&'static str, &'static str, String, openapi::link::Link)> = vec![];
    for (path, item) in &doc.paths.paths {
        for (method, operation) in operations(item) {
            let Some(target) = operation.operation_id.as_deref() else {
                continue;
            };
            for rule in RULES {
                if !under(path, rule.prefix) || !supplies_every_parameter(path, rule) {
                    continue;
                }
                if rule.from == target {
                    continue;
                }
                let mut link = LinkBuilder::new()
                    .operation_id(target)
                    .description(format!("{method} {path} on what this response names."));
                for (name, expression) in rule.parameters {
                    link = link.parameter(*name, *expression);
                }
                links.push((rule.from, rule.status, target.to_owned(), link.build()));
            }
        }
    }
    for (from, status, target, link) in links {
        let Some(response) = doc
            .paths
            .paths
            .values_mut()
            .flat_map(operations_mut)
            .find(|op| op.operation_id.as_deref() == Some(from))
            .and_then(|op| op.responses.responses.get_mut(status))
        else {
            panic!("link rule names {from} {status}, which the document does not have");
        };
        if let RefOr::T(response) = response {
            response.links.insert(target, RefOr::T(link));
        }
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the rule gives a value for each `{parameter}` of `path`.
fn supplies_every_parameter(path: &str, rule: &LinkRule) -> bool {
    path_parameters(path).all(|p| rule.parameters.iter().any(|(name, _)| *name == p))
}

/// The `{names}` in a path template.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn operations(item: &openapi::PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

fn operations_mut(item: &mut openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}
