//! How the document describes a Server-Sent Events frame (ARCHITECTURE.md §11).
//!
//! `ChatEvent` and `ChatListEvent` are the events as a client holds them once parsed:
//! `{"event": "status", "data": {...}}`. On the wire the `data:` line is text, JSON
//! encoded. The streams' `text/event-stream` responses therefore point at a frame schema
//! (`ChatEventFrame`, `ChatListEventFrame`), the way OpenAPI 3.2 describes SSE: per variant,
//! `event` as before, an optional `id` (what `Last-Event-ID` takes back) and `data` as a
//! string whose `contentMediaType` is JSON and whose `contentSchema` is the variant's data.
//! Tools that read SSE by the document (schemathesis in `.ci/schemathesis`) then check each
//! frame's data against its event's schema.

use serde_json::{Value, json};
use utoipa::openapi::{self, RefOr, schema::Ref};

/// The event schemas that are streamed, and the name of their frame schema.
const STREAMED: &[(&str, &str)] = &[
    ("ChatEvent", "ChatEventFrame"),
    ("ChatListEvent", "ChatListEventFrame"),
];

/// Adds the frame schemas and points every `text/event-stream` response at them.
pub(crate) fn describe_frames(doc: &mut openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for (event, frame) in STREAMED {
        let Some(schema) = components.schemas.get(*event) else {
            panic!("the document has no {event} schema to stream");
        };
        let mut value = serde_json::to_value(schema).expect("a schema serializes");
        if let Some(variants) = value.get_mut("oneOf").and_then(Value::as_array_mut) {
            variants.iter_mut().for_each(as_frame);
        }
        let frame_schema = serde_json::from_value(value).expect("a frame schema deserializes");
        components.schemas.insert((*frame).to_owned(), frame_schema);
    }
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            for response in operation.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let Some(RefOr::T(content)) = response.content.get_mut("text/event-stream") else {
                    continue;
                };
                if let Some(RefOr::Ref(schema_ref)) = &content.schema {
                    let name = schema_ref.ref_location.rsplit('/').next().unwrap_or("");
                    if let Some((_, frame)) = STREAMED.iter().find(|(event, _)| *event == name) {
                        content.schema = Some(RefOr::Ref(Ref::from_schema_name(*frame)));
                    }
                }
            }
        }
    }
}

/// One variant `{event, data}` -> `{event, id, data: JSON text of data}`.
fn as_frame(variant: &mut Value) {
    let Some(properties) = variant.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(data) = properties.remove("data") {
        properties.insert(
            "data".to_owned(),
            json!({
                "type": "string",
                "description": "The `data:` line: this event's data as JSON text.",
                "contentMediaType": "application/json",
                "contentSchema": data,
            }),
        );
    }
    properties.insert(
        "id".to_owned(),
        json!({
            "type": "string",
            "description": "The `id:` line: send it back as `Last-Event-ID` to resume after this event.",
        }),
    );
}
