//! `/admin/attention`: the chats needing an operator's look. Chats left in `error` with
//! their `ChatError` kind and message, and the turns of the last day that recovery started
//! again after their worker was lost (a start count above one); each links to the chat's
//! debug export. The export is the one of `GET /api/v1/chats/{chat_id}/debug/export`,
//! served here to the signed-in site owner (a browser sends a cookie, not a bearer token).

use axum::{
    extract::{Path, State},
    response::Response,
};
use chrono::{Duration, Utc};
use maud::{Markup, html};
use uuid::Uuid;

use super::{
    PageError,
    layout::{self, Nav},
    session::AdminSession,
};
use crate::ApiState;

/// Rows per table.
const SHOWN: i64 = 100;

/// `GET /admin/attention`.
pub async fn page(
    State(state): State<ApiState>,
    session: AdminSession,
) -> Result<Markup, PageError> {
    let errored = state.store.chats_in_error(SHOWN).await?;
    let recovered = state
        .store
        .recovered_turns(Utc::now() - Duration::hours(24), SHOWN)
        .await?;
    let body = html! {
        section {
            h2 { "Chats in error (" (errored.len()) @if errored.len() as i64 == SHOWN { "+" } ")" }
            @if errored.is_empty() {
                p.empty { "No chat is in error." }
            } @else {
                table #chats-in-error {
                    thead { tr {
                        th { "Chat" } th { "Owner" } th { "Kind" } th { "Error" } th { "Since" } th { "" }
                    } }
                    tbody {
                        @for chat in &errored {
                            @let error = chat.last_error.as_ref();
                            tr data-chat=(chat.id) {
                                td {
                                    @if chat.title.is_empty() { span.muted { "untitled" } } @else { (chat.title) }
                                    br; code.muted { (chat.id) }
                                }
                                td { (chat.owner_email) }
                                td { code.kind { (error.and_then(|e| e["kind"].as_str()).unwrap_or("unknown")) } }
                                td.error {
                                    (error.and_then(|e| e["message"].as_str()).unwrap_or(""))
                                    @if let Some(detail) = error.and_then(|e| e["detail"].as_str()) {
                                        br; span.muted { (detail) }
                                    }
                                }
                                td { (layout::ago(chat.updated_at)) }
                                td { a href={"/admin/chats/" (chat.id) "/debug-export"} { "Debug export" } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Turns recovery re-ran, last 24 h (" (recovered.len()) ")" }
            @if recovered.is_empty() {
                p.empty { "No turn had to be started again." }
            } @else {
                table #recovered-turns {
                    thead { tr {
                        th { "Turn" } th { "Chat" } th { "Status" } th.num { "Starts" } th { "Created" } th { "" }
                    } }
                    tbody {
                        @for turn in &recovered {
                            tr data-turn=(turn.id) {
                                td { code { (turn.id) } }
                                td { code { (turn.chat_id) } }
                                td { (turn.status) }
                                td.num { (turn.attempt) }
                                td { (layout::ago(turn.created_at)) }
                                td { a href={"/admin/chats/" (turn.chat_id) "/debug-export"} { "Debug export" } }
                            }
                        }
                    }
                }
            }
        }
        p.hint { "Debug exports hold runs only when debug logging is on for the site and the chat's owner." }
    };
    Ok(layout::page(
        "Chats needing attention",
        Nav::Attention,
        &session,
        body,
    ))
}

/// `GET /admin/chats/{chat_id}/debug-export`: the chat's debug export, for a site owner.
pub async fn debug_export(
    State(state): State<ApiState>,
    session: AdminSession,
    Path(chat_id): Path<Uuid>,
) -> Result<Response, PageError> {
    tracing::info!(user.id = %session.user.id, chat.id = %chat_id, "dashboard: debug export");
    crate::routes::debug::export_document(&state, chat_id)
        .await
        .map_err(|e| PageError::Unavailable(e.to_string()))
}
