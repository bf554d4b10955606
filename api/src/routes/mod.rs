//! Routes under `/api/v1`, one module per resource.

mod admin;
mod admin_processes;
mod admin_queues;
mod chat_list_events;
mod chats;
pub(crate) mod debug;
mod diff_status;
mod files;
mod health;
mod instructions;
mod interrupt;
pub(crate) mod mcp_servers;
mod messages;
mod model_contexts;
mod models;
mod notifications;
mod oidc;
mod organizations;
mod provider_keys;
mod regenerate;
mod site_config;
mod skills;
mod stream;
mod subagents;
mod tokens;
mod tool_results;
mod uploads;
mod usage;

use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ApiState, error::ApiError, openapi};

/// Every route the API serves, each with its OpenAPI operation.
///
/// `routes!` takes each handler's path and method from its `#[utoipa::path]`, so the router
/// and the document (see [`crate::openapi`]) come from this one list. Register new routes
/// here with `.routes(routes!(...))`, not `.route(...)`: a plain route would be served but
/// undocumented, and `tests/openapi.rs` fails on it.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(chats::create_chat, chats::list_chats))
        .routes(routes!(chat_list_events::stream_chat_list))
        .routes(routes!(
            chats::get_chat,
            chats::update_chat,
            chats::delete_chat
        ))
        .routes(routes!(diff_status::put_diff_status))
        .routes(routes!(admin_queues::list_queues))
        .routes(routes!(admin_processes::list_processes))
        .routes(routes!(site_config::get_config, site_config::put_config))
        .routes(routes!(
            admin_queues::list_dead_letters,
            admin_queues::drop_all
        ))
        .routes(routes!(admin_queues::retry_all))
        .routes(routes!(admin_queues::retry_one))
        .routes(routes!(admin_queues::drop_one))
        .routes(routes!(
            admin::providers::list_providers,
            admin::providers::create_provider
        ))
        .routes(routes!(
            admin::providers::update_provider,
            admin::providers::delete_provider
        ))
        .routes(routes!(
            admin::models::list_models,
            admin::models::create_model
        ))
        .routes(routes!(
            admin::models::update_model,
            admin::models::delete_model
        ))
        .routes(routes!(messages::list_messages, messages::send_message))
        .routes(routes!(messages::edit_message))
        .routes(routes!(regenerate::regenerate))
        .routes(routes!(files::list_files))
        .routes(routes!(files::get_file))
        .routes(routes!(uploads::upload_file))
        .routes(routes!(uploads::download_file))
        .routes(routes!(uploads::file_metadata))
        .routes(routes!(stream::stream_chat))
        .routes(routes!(interrupt::interrupt))
        .routes(routes!(debug::list_runs))
        .routes(routes!(debug::get_run))
        .routes(routes!(debug::export))
        .routes(routes!(debug::put_preferences))
        .routes(routes!(
            notifications::get_preferences,
            notifications::put_preferences
        ))
        .routes(routes!(tool_results::submit))
        .routes(routes!(tool_results::waiting))
        .routes(routes!(subagents::list_children))
        .routes(routes!(
            subagents::get_subagent_models,
            subagents::put_subagent_models
        ))
        .routes(routes!(
            model_contexts::get_model_contexts,
            model_contexts::put_model_contexts
        ))
        .routes(routes!(model_contexts::get_chat_model))
        .routes(routes!(
            model_contexts::get_model_overrides,
            model_contexts::put_model_overrides
        ))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(skills::list_skills, skills::create_skill))
        .routes(routes!(skills::import_skill))
        .routes(routes!(
            skills::get_skill,
            skills::update_skill,
            skills::delete_skill
        ))
        .routes(routes!(
            instructions::get_user_instructions,
            instructions::put_user_instructions
        ))
        .routes(routes!(
            instructions::get_system_prompt,
            instructions::put_system_prompt
        ))
        .routes(routes!(mcp_servers::list_enabled))
        .routes(routes!(
            mcp_servers::list_servers,
            mcp_servers::create_server
        ))
        .routes(routes!(
            mcp_servers::get_server,
            mcp_servers::update_server,
            mcp_servers::delete_server
        ))
        .routes(routes!(mcp_servers::oauth::start_oauth))
        .routes(routes!(mcp_servers::oauth::disconnect_oauth))
        .routes(routes!(mcp_servers::oauth::oauth_callback))
        .routes(routes!(
            oidc::get_oidc_token,
            oidc::put_oidc_token,
            oidc::delete_oidc_token
        ))
        .routes(routes!(oidc::get_oidc_client, oidc::put_oidc_client))
        .routes(routes!(provider_keys::list_provider_keys))
        .routes(routes!(
            provider_keys::put_provider_key,
            provider_keys::delete_provider_key
        ))
        .routes(routes!(models::list_my_models))
        .routes(routes!(usage::get_my_usage))
        .routes(routes!(usage::get_usage_report))
        .routes(routes!(
            admin::spend_limits::get_spend_limits,
            admin::spend_limits::put_spend_limits
        ))
        .routes(routes!(
            admin::spend_limits::put_user_spend_limit,
            admin::spend_limits::delete_user_spend_limit
        ))
        .routes(routes!(
            admin::spend_limits::put_organization_spend_limit,
            admin::spend_limits::delete_organization_spend_limit
        ))
        .routes(routes!(admin::users::list_users, admin::users::create_user))
        .routes(routes!(admin::users::get_user, admin::users::update_user))
        .routes(routes!(
            admin::organizations::list_organizations,
            admin::organizations::create_organization
        ))
        .routes(routes!(
            admin::organizations::rename_organization,
            admin::organizations::delete_organization
        ))
        .routes(routes!(organizations::my_organizations))
        .routes(routes!(
            organizations::list_members,
            organizations::add_member
        ))
        .routes(routes!(
            organizations::set_member_roles,
            organizations::remove_member
        ))
        .routes(routes!(organizations::organization_usage))
}

/// JSON 404 for unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
