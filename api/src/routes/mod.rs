//! Routes under `/api/v1`, one module per resource.

mod admin;
mod admin_queues;
mod chats;
mod debug;
mod health;
mod interrupt;
mod messages;
mod notifications;
mod site_config;
mod stream;
mod tool_results;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{ApiState, error::ApiError};

/// Every route the API serves.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/api/v1/chats",
            post(chats::create_chat).get(chats::list_chats),
        )
        .route("/api/v1/chats/{chat_id}", get(chats::get_chat))
        .route("/api/v1/admin/queues", get(admin_queues::list_queues))
        .route(
            "/api/v1/admin/config",
            get(site_config::get_config).put(site_config::put_config),
        )
        .route(
            "/api/v1/admin/queues/{queue}/dead-letters",
            get(admin_queues::list_dead_letters).delete(admin_queues::drop_all),
        )
        .route(
            "/api/v1/admin/queues/{queue}/dead-letters/retry",
            post(admin_queues::retry_all),
        )
        .route(
            "/api/v1/admin/queues/{queue}/dead-letters/{id}/retry",
            post(admin_queues::retry_one),
        )
        .route(
            "/api/v1/admin/queues/{queue}/dead-letters/{id}",
            axum::routing::delete(admin_queues::drop_one),
        )
        .route(
            "/api/v1/admin/providers",
            get(admin::list_providers).post(admin::create_provider),
        )
        .route(
            "/api/v1/admin/providers/{id}",
            axum::routing::patch(admin::update_provider).delete(admin::delete_provider),
        )
        .route(
            "/api/v1/admin/models",
            get(admin::list_models).post(admin::create_model),
        )
        .route(
            "/api/v1/admin/models/{id}",
            axum::routing::patch(admin::update_model).delete(admin::delete_model),
        )
        .route(
            "/api/v1/chats/{chat_id}/messages",
            get(messages::list_messages).post(messages::send_message),
        )
        .route("/api/v1/chats/{chat_id}/stream", get(stream::stream_chat))
        .route(
            "/api/v1/chats/{chat_id}/interrupt",
            post(interrupt::interrupt),
        )
        .route("/api/v1/chats/{chat_id}/debug/runs", get(debug::list_runs))
        .route(
            "/api/v1/chats/{chat_id}/debug/runs/{run_id}",
            get(debug::get_run),
        )
        .route("/api/v1/chats/{chat_id}/debug/export", get(debug::export))
        .route(
            "/api/v1/users/me/preferences",
            axum::routing::put(debug::put_preferences),
        )
        .route(
            "/api/v1/users/me/notification-preferences",
            get(notifications::get_preferences).put(notifications::put_preferences),
        )
        .route(
            "/api/v1/chats/{chat_id}/tool-results",
            post(tool_results::submit),
        )
}

/// JSON 404 for unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
