//! Bearer-token authentication: `Authorization: Bearer aq_...`, checked against the
//! SHA-256 digest stored in `api_tokens` (the secret itself is never stored or logged).

use agentq_core::{auth::hash_token, domain::AuthenticatedUser};
use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{ApiState, error::ApiError};

/// The authenticated caller; add it to a handler's arguments to require a token.
pub struct CurrentUser(pub AuthenticatedUser);

impl FromRequestParts<ApiState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
            })?;
        let value = header.to_str().map_err(|_| {
            ApiError::Unauthorized("the Authorization header is not valid text".into())
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let user = state
            .store
            .authenticate(&hash_token(token))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the API token is invalid or expired".into()))?;
        Ok(CurrentUser(user))
    }
}
