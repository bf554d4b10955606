//! The OpenAPI document at `/api/v1/openapi.json` describes exactly the API that runs: every
//! route the router serves has an operation (so a route added without documentation fails
//! here), the document is OpenAPI 3.1 and holds together, the SSE stream's documented events
//! are the ones it sends, and the Swagger UI at `/docs` works without network access.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use agentq_core::config;
use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use support::{app::TestApp, sse};

/// Served routes that are not API operations: the Swagger UI's HTML page and assets.
const NOT_DOCUMENTED: [&str; 3] = ["/docs", "/docs/", "/docs/{*rest}"];

/// The operator dashboard's HTML pages, forms and assets (`api/src/dashboard/`): served
/// beside the API, for browsers, and not part of the JSON API or its document.
fn is_dashboard(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// The SSE event names of ARCHITECTURE.md §8 (`reset` is sent by the API when events were lost).
const EVENT_NAMES: [&str; 11] = [
    "status",
    "message_part",
    "message",
    "queue_update",
    "retry",
    "error",
    "action_required",
    "messages_superseded",
    "compaction",
    "title",
    "reset",
];

#[sqlx::test]
async fn every_route_the_router_serves_is_documented_and_nothing_else(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let doc = fetch_document(&app).await;

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            operations(item).map(move |(method, _)| (path.clone(), method.to_uppercase()))
        })
        .collect();

    let mut served = BTreeSet::new();
    let paths = served_paths(&app);
    // The exception below must not hide everything: the dashboard is found, and the
    // document holds nothing under `/admin` (its admin API lives under `/api/v1/admin`).
    assert!(
        paths.iter().any(|p| p == "/admin"),
        "the dashboard is served"
    );
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| !is_dashboard(p)),
        "dashboard pages are not API operations"
    );
    for path in paths {
        if NOT_DOCUMENTED.contains(&path.as_str()) || is_dashboard(&path) {
            continue;
        }
        for method in served_methods(&app, &path).await {
            served.insert((path.clone(), method));
        }
    }

    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "served but not in the OpenAPI document (register it with `routes!` and a \
         `#[utoipa::path]`): {undocumented:?}\ndocumented but not served: {not_served:?}"
    );
    // The probes above prove little if they found nothing.
    assert!(served.len() >= 30, "only {} routes found", served.len());
    for must in [
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/api/v1/openapi.json", "GET"),
        ("/api/v1/chats", "POST"),
        ("/api/v1/chats/{chat_id}/stream", "GET"),
    ] {
        assert!(
            served.contains(&(must.0.into(), must.1.into())),
            "{must:?} not found among the served routes"
        );
    }
}

#[sqlx::test]
async fn the_document_is_openapi_3_1_and_holds_together(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let doc = fetch_document(&app).await;

    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1"), "openapi is {version}");
    assert_eq!(doc["info"]["title"], "agentq");

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "suspiciously few $refs: {}", refs.len());
    for reference in &refs {
        assert!(
            resolve(&doc, reference).is_some(),
            "`$ref: {reference}` points at nothing"
        );
    }

    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));

    let error_body = &doc["components"]["schemas"]["ErrorBody"];
    for field in ["message", "detail", "validations"] {
        assert!(
            error_body["properties"].get(field).is_some(),
            "ErrorBody lacks `{field}`: {error_body}"
        );
    }
    let validation = &doc["components"]["schemas"]["Validation"]["properties"];
    assert!(validation.get("field").is_some() && validation.get("detail").is_some());

    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let ops: Vec<_> = operations(item).collect();
        assert!(!ops.is_empty(), "{path} has no operation");
        for (method, op) in ops {
            let at = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_owned()),
                "{at}: operationId `{id}` reused"
            );

            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{at} documents no success response"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{at} {status} is not the error shape"
                    );
                }
            }
            assert!(responses.contains_key("500"), "{at} lacks 500");

            let public = op["security"] == serde_json::json!([{}]);
            assert_eq!(
                responses.contains_key("401"),
                !public,
                "{at}: a 401 is documented exactly when a token is required"
            );

            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, templated, "{at}: path parameters");
        }
    }

    for public in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        assert_eq!(
            doc["paths"][public]["get"]["security"],
            serde_json::json!([{}]),
            "{public} needs no token"
        );
    }
}

#[sqlx::test]
async fn the_stream_is_documented_as_server_sent_events_with_the_events_it_sends(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let doc = fetch_document(&app).await;

    let ok = &doc["paths"]["/api/v1/chats/{chat_id}/stream"]["get"]["responses"]["200"];
    let schema = &ok["content"]["text/event-stream"]["schema"];
    let schema = resolve(&doc, schema["$ref"].as_str().expect("a $ref")).expect("resolves");
    let variants: BTreeMap<&str, &Value> = schema["oneOf"]
        .as_array()
        .expect("one variant per event")
        .iter()
        .map(|v| {
            let name = v["properties"]["event"]["enum"][0].as_str().expect("name");
            // The `data:` line is JSON text; its schema is the data's.
            let data = &v["properties"]["data"];
            assert_eq!(data["type"], "string", "{name}");
            assert_eq!(data["contentMediaType"], "application/json", "{name}");
            (name, &data["contentSchema"])
        })
        .collect();
    let names: BTreeSet<&str> = variants.keys().copied().collect();
    assert_eq!(names, BTreeSet::from(EVENT_NAMES));
    let description = ok["description"].as_str().unwrap_or_default();
    for name in EVENT_NAMES {
        assert!(description.contains(&format!("`{name}`")), "{description}");
    }

    // What the stream really sends matches: creating a chat publishes `status` and `message`.
    let chat_id = app.create_chat("hello").await;
    let received = sse::read_until(
        &app.client,
        &format!("{}/api/v1/chats/{chat_id}/stream", app.base),
        &app.token,
        None,
        std::time::Duration::from_secs(5),
        |e| e.event == "message",
    )
    .await;
    assert!(received.iter().any(|e| e.event == "status"), "{received:?}");
    assert!(
        received.iter().any(|e| e.event == "message"),
        "{received:?}"
    );
    for event in &received {
        let data = variants
            .get(event.event.as_str())
            .unwrap_or_else(|| panic!("`{}` is not documented", event.event));
        for field in data["required"].as_array().expect("required fields") {
            let field = field.as_str().expect("a name");
            assert!(
                event.data.get(field).is_some(),
                "`{}` lacks documented field `{field}`: {}",
                event.event,
                event.data
            );
        }
    }
}

/// Stateful tools (schemathesis in `.ci/schemathesis`) reach a route behind an id only by a
/// link from a response that gives one: every operation with a path parameter that is not an
/// enum is the target of a link, and every link names an operation and its parameters.
#[sqlx::test]
async fn every_operation_behind_an_id_is_reached_by_a_link(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let doc = fetch_document(&app).await;

    let mut targets: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations(item) {
            let id = operation["operationId"].as_str().expect("operationId");
            let params = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter(|p| resolve_schema(&doc, &p["schema"])["enum"].is_null())
                        .map(|p| p["name"].as_str().expect("name").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            targets.insert(id.to_owned(), (format!("{method} {path}"), params));
        }
    }

    let mut linked: BTreeSet<String> = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for (_, operation) in operations(item) {
            let responses = operation["responses"].as_object().expect("responses");
            for link in responses.values().filter_map(|r| r["links"].as_object()) {
                for link in link.values() {
                    let target = link["operationId"].as_str().expect("operationId");
                    let (name, params) = targets
                        .get(target)
                        .unwrap_or_else(|| panic!("a link names {target}, which is no operation"));
                    for param in params {
                        assert!(
                            link["parameters"][param].is_string(),
                            "the link to {name} gives no `{param}`: {link}"
                        );
                    }
                    linked.insert(target.to_owned());
                }
            }
        }
    }
    let unreached: Vec<&String> = targets
        .iter()
        .filter(|(id, (_, params))| !params.is_empty() && !linked.contains(*id))
        .map(|(_, (name, _))| name)
        .collect();
    assert!(
        unreached.is_empty(),
        "no link reaches these operations (add a rule to api/src/openapi_links.rs): {unreached:?}"
    );
}

/// A parameter's schema, through a `$ref` if it is one.
fn resolve_schema<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => resolve(doc, reference).expect("resolves"),
        None => schema,
    }
}

#[sqlx::test]
async fn the_docs_page_is_served_from_the_binary_and_reads_the_document(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();

    let page = client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        content_type(&page).starts_with("text/html"),
        "{}",
        content_type(&page)
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    for asset in ["swagger-ui.css", "swagger-ui-bundle.js"] {
        let response = client
            .get(format!("{}/docs/{asset}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 1000, "{asset}");
    }
    let initializer = client
        .get(format!("{}/docs/swagger-initializer.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        initializer.contains("/api/v1/openapi.json"),
        "{initializer}"
    );
}

/// `GET /api/v1/openapi.json`, without a token.
async fn fetch_document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/json");
    response.json().await.unwrap()
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The operations of a path item, by lower-case method.
fn operations(item: &Value) -> impl Iterator<Item = (&str, &Value)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    METHODS
        .into_iter()
        .filter_map(move |m| item.get(m).map(|op| (m, op)))
}

/// The paths the app's router serves. axum has no API to list them, but its `Debug` output
/// names every path of the router (`RouteId(3): "/api/v1/chats"`); the fallback router that
/// follows holds only axum's own catch-all. If axum changes that output, the assertions on
/// what must be found fail instead of the test passing on an empty list.
fn served_paths(app: &TestApp) -> Vec<String> {
    let state = agentq_api::ApiState::new(&app.services, config::defaults());
    let debug = format!("{:?}", agentq_api::router(state));
    let start = debug.find("path_router:").expect("a path router");
    let end = debug.find("fallback_router:").expect("a fallback router");
    let routes = &debug[start..end];
    let mut paths = Vec::new();
    let mut rest = routes;
    while let Some(i) = rest.find("): \"/") {
        rest = &rest[i + 4..];
        let close = rest.find('"').expect("a closing quote");
        paths.push(rest[..close].to_owned());
        rest = &rest[close..];
    }
    paths
}

/// The methods the server answers on `path`, asked black-box: a `TRACE`, which no route
/// serves, gets a 405 whose `Allow` header lists them. `HEAD` comes with `GET` in axum and
/// is not an operation of its own.
async fn served_methods(app: &TestApp, path: &str) -> Vec<String> {
    let concrete: String = path
        .split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(param) if param.starts_with('*') => "x",
            Some(_) => "00000000-0000-0000-0000-000000000000",
            None => segment,
        })
        .collect::<Vec<_>>()
        .join("/");
    let response = app
        .client
        .request(Method::TRACE, format!("{}{concrete}", app.base))
        .send()
        .await
        .unwrap();
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        // A route that answers any method cannot be matched to operations.
        return vec![format!("ANY (TRACE got {})", response.status())];
    }
    let allow = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    allow
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty() && m != "HEAD")
        .collect()
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Resolves a local `$ref` (`#/components/schemas/Chat`) as a JSON pointer.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}
