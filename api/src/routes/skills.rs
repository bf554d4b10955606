//! `/api/v1/users/me/skills`: the caller's personal skills (issue #12, item 7;
//! ARCHITECTURE.md §11). Create one from JSON fields or import a raw `SKILL.md`; read,
//! change and delete one by its name, which is unique per user (a name, not an id, is what
//! the model sees and asks for). The rules are `core::skill_md`'s: kebab-case names, a
//! one-line description, at most 64 KiB and 100 skills per user; every refusal is a 400
//! naming the field (and, for a `SKILL.md`, the line).

use agentq_core::{
    skill_md::{self, MAX_SKILL_BYTES, MAX_SKILLS_PER_USER, SkillDraft, SkillError},
    store::{Skill, SkillChanges, SkillSummary, SkillWrite},
};
use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
};
use serde::{Deserialize, Serialize};

use crate::{
    ApiState,
    auth::CurrentUser,
    error::{ApiError, ErrorBody, Validation},
    extract::JsonBody,
};

/// The caller's skills.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SkillList {
    /// By name, without bodies.
    pub skills: Vec<SkillSummary>,
    /// The most skills a user may have.
    pub max_skills: i64,
}

/// Body of `POST /api/v1/users/me/skills`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSkillRequest {
    /// Kebab-case (`^[a-z0-9]+(-[a-z0-9]+)*$`), at most 64 characters, unique per user;
    /// `import` is reserved.
    #[schema(
        required = true,
        nullable = false,
        max_length = 64,
        pattern = "^[a-z0-9]+(-[a-z0-9]+)*$"
    )]
    pub name: Option<String>,
    /// One line shown to the model (whitespace runs, line breaks and tabs included, become
    /// one space; at most 1024 characters, no other control characters).
    #[serde(default)]
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0008\\u000E-\\u001F\\u007F-\\u0084\\u0086-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    pub description: Option<String>,
    /// The markdown body (not blank, at most 64 KiB).
    #[schema(required = true, nullable = false, pattern = "\\S")]
    pub body: Option<String>,
}

/// Body of `PATCH /api/v1/users/me/skills/{name}`; absent fields keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSkillRequest {
    /// A new name (renames the skill).
    #[schema(max_length = 64, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub name: Option<String>,
    /// A new description.
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0008\\u000E-\\u001F\\u007F-\\u0084\\u0086-\\u009F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    pub description: Option<String>,
    /// A new body (not blank, at most 64 KiB).
    #[schema(pattern = "\\S")]
    pub body: Option<String>,
}

/// A 400 from the skill rules: the field, and the line of a `SKILL.md` when known.
fn refused(e: SkillError, what: &str) -> ApiError {
    let detail = match e.line {
        Some(line) => format!("line {line}: {}", e.detail),
        None => e.detail.clone(),
    };
    ApiError::BadRequest {
        message: format!("invalid {what}: {e}"),
        validations: vec![Validation {
            field: e.field.into(),
            detail,
        }],
    }
}

/// The answer to a creation or an update.
fn saved(outcome: SkillWrite, name: &str) -> Result<Skill, ApiError> {
    match outcome {
        SkillWrite::Saved(skill) => Ok(skill),
        SkillWrite::NameTaken => Err(ApiError::Conflict(format!(
            "you already have a skill named `{name}`; change or delete that one"
        ))),
        SkillWrite::LimitReached => Err(ApiError::invalid(
            "skills",
            format!(
                "you already have {MAX_SKILLS_PER_USER} skills, the most a user may have; delete one first"
            ),
        )),
    }
}

async fn create(state: &ApiState, owner: uuid::Uuid, draft: SkillDraft) -> Result<Skill, ApiError> {
    let outcome = state
        .store
        .create_skill(owner, &draft, MAX_SKILLS_PER_USER)
        .await?;
    saved(outcome, &draft.name)
}

/// `GET /api/v1/users/me/skills`.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/skills",
    tag = "users",
    responses((status = 200, description = "The caller's skills, by name, without bodies.", body = SkillList))
)]
pub async fn list_skills(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<SkillList>, ApiError> {
    Ok(Json(SkillList {
        skills: state.store.list_skills(user.id).await?,
        max_skills: MAX_SKILLS_PER_USER,
    }))
}

/// `POST /api/v1/users/me/skills` -> 201 with the skill.
#[utoipa::path(
    post,
    path = "/api/v1/users/me/skills",
    tag = "users",
    request_body = CreateSkillRequest,
    responses(
        (status = 201, description = "The skill.", body = Skill),
        (status = 400, description = "A field breaks the skill rules, or the caller has 100 skills; `validations` names it.", body = ErrorBody),
        (status = 409, description = "The caller has a skill of that name.", body = ErrorBody),
    )
)]
pub async fn create_skill(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<CreateSkillRequest>,
) -> Result<(StatusCode, Json<Skill>), ApiError> {
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("name", "is required"))?;
    let text = body
        .body
        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
    let draft = skill_md::check_skill(&name, body.description.as_deref().unwrap_or(""), &text)
        .map_err(|e| refused(e, "skill"))?;
    let skill = create(&state, user.id, draft).await?;
    Ok((StatusCode::CREATED, Json(skill)))
}

/// `POST /api/v1/users/me/skills/import` -> 201 with the skill: the body is a raw
/// `SKILL.md` (`Content-Type: text/markdown` or `text/plain`, UTF-8, at most 64 KiB).
#[utoipa::path(
    post,
    path = "/api/v1/users/me/skills/import",
    tag = "users",
    request_body(
        content = String,
        content_type = "text/markdown",
        description = "A `SKILL.md`: `---`, YAML frontmatter with `name` (required) and \
                       `description` (optional; other fields are ignored), `---`, then the \
                       markdown body. `text/plain` is accepted too."
    ),
    responses(
        (status = 201, description = "The skill.", body = Skill),
        (status = 400, description = "The file breaks the skill rules (missing frontmatter, bad name, too large, ...), or the caller has 100 skills; `validations` names the field and the line.", body = ErrorBody),
        (status = 409, description = "The caller has a skill of that name.", body = ErrorBody),
        (status = 415, description = "The body is not `text/markdown` or `text/plain`.", body = ErrorBody),
    )
)]
pub async fn import_skill(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Skill>), ApiError> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(
        mime.as_str(),
        "text/markdown" | "text/x-markdown" | "text/plain"
    ) {
        return Err(ApiError::UnsupportedMediaType(
            "send the SKILL.md as the request body with `Content-Type: text/markdown`".into(),
        ));
    }
    // Read here rather than through the router's body limit, so that a file over the skill
    // limit is a 400 naming it (it is the file that is wrong, not the request); the
    // server's own limit still applies when it is the smaller one.
    let limit = MAX_SKILL_BYTES.min(state.config.max_body_bytes);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        if limit < MAX_SKILL_BYTES {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::invalid(
                "SKILL.md",
                format!("is larger than {MAX_SKILL_BYTES} bytes, the most a skill may take"),
            )
        }
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::invalid("SKILL.md", format!("is not UTF-8: {e}")))?;
    let draft = skill_md::parse_skill_md(text).map_err(|e| refused(e, "SKILL.md"))?;
    let skill = create(&state, user.id, draft).await?;
    Ok((StatusCode::CREATED, Json(skill)))
}

/// `GET /api/v1/users/me/skills/{name}`.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/skills/{name}",
    tag = "users",
    params(("name" = String, Path, description = "The skill's name.")),
    responses(
        (status = 200, description = "The skill with its body.", body = Skill),
        (status = 404, description = "The caller has no skill of that name.", body = ErrorBody),
    )
)]
pub async fn get_skill(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Skill>, ApiError> {
    let name = possible_name(name)?;
    match state.store.get_skill(user.id, &name).await {
        Err(agentq_core::StoreError::NotFound) => Err(not_found(&name)),
        other => Ok(Json(other?)),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("you have no skill named `{name}`"))
}

/// `name` from a path, when it could name a skill at all: no skill has a name that breaks
/// the naming rule, so such a name (U+0000, which PostgreSQL would refuse, included) is the
/// 404 the routes document, before any query.
fn possible_name(name: String) -> Result<String, ApiError> {
    match skill_md::check_name(&name) {
        Ok(()) => Ok(name),
        Err(_) => Err(not_found(&name.escape_debug().to_string())),
    }
}

/// `PATCH /api/v1/users/me/skills/{name}`: changes or renames the skill.
#[utoipa::path(
    patch,
    path = "/api/v1/users/me/skills/{name}",
    tag = "users",
    params(("name" = String, Path, description = "The skill's current name.")),
    request_body = UpdateSkillRequest,
    responses(
        (status = 200, description = "The skill after the change.", body = Skill),
        (status = 400, description = "A field breaks the skill rules; `validations` names it.", body = ErrorBody),
        (status = 404, description = "The caller has no skill of that name.", body = ErrorBody),
        (status = 409, description = "A rename to a name the caller already uses.", body = ErrorBody),
    )
)]
pub async fn update_skill(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UpdateSkillRequest>,
) -> Result<Json<Skill>, ApiError> {
    let name = possible_name(name)?;
    let field = |field: &str, detail: String| ApiError::invalid(field, detail);
    if let Some(new_name) = &body.name {
        skill_md::check_name(new_name).map_err(|d| field("name", d))?;
    }
    let description = body
        .description
        .as_deref()
        .map(skill_md::normalize_description)
        .transpose()
        .map_err(|d| field("description", d))?;
    if let Some(text) = &body.body {
        skill_md::check_body(text).map_err(|d| field("body", d))?;
    }
    let changes = SkillChanges {
        name: body.name.clone(),
        description,
        body: body.body,
    };
    match state.store.update_skill(user.id, &name, &changes).await {
        Err(agentq_core::StoreError::NotFound) => Err(not_found(&name)),
        other => Ok(Json(saved(other?, body.name.as_deref().unwrap_or(&name))?)),
    }
}

/// `DELETE /api/v1/users/me/skills/{name}` -> 204.
#[utoipa::path(
    delete,
    path = "/api/v1/users/me/skills/{name}",
    tag = "users",
    params(("name" = String, Path, description = "The skill's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "The caller has no skill of that name.", body = ErrorBody),
    )
)]
pub async fn delete_skill(
    State(state): State<ApiState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = possible_name(name)?;
    if state.store.delete_skill(user.id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}
