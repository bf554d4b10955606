//! Extractors whose rejections are [`ApiError`]s, so every client mistake gets the JSON
//! error shape with the offending field named, never axum's plain-text defaults.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Query, Request, rejection::BytesRejection},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use utoipa::{
    IntoParams,
    openapi::path::{Parameter, ParameterIn},
};
use uuid::Uuid;

use crate::{ApiState, error::ApiError};

/// A JSON body; errors name the field by its path (`content[0].text`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        parse_json(&json_bytes(req, state).await?).map(JsonBody)
    }
}

/// The bytes of a JSON body: refused (415) unless sent as JSON, and (413) past
/// `max_body_bytes`.
pub async fn json_bytes(req: Request, state: &ApiState) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "send the request body as JSON with `Content-Type: application/json`".into(),
        ));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner) if is_length_limit(&inner) => {
            ApiError::PayloadTooLarge {
                limit: state.config.max_body_bytes,
            }
        }
        other => ApiError::BadRequest {
            message: format!("could not read the request body: {other}"),
            validations: vec![],
        },
    })?;
    Ok(bytes)
}

fn is_length_limit(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(
        e,
        axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)
    )
}

/// Parses a JSON object, separating syntax errors (malformed JSON) from field errors.
///
/// Every body is an object: an array is refused, though serde would read a struct from one.
/// A number whose fraction is zero (`5.0`) is the integer JSON Schema says it is, so an
/// integer field takes it (a fraction still fails, naming the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::invalid(
            "body",
            "must be a JSON object, not an array",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end().map_err(|e| malformed(&e))?;
            Ok(value)
        }
        Err(e) if is_integral_float(e.inner()) => {
            let mut value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
            integral_floats_as_integers(&mut value);
            serde_path_to_error::deserialize(value).map_err(field_error)
        }
        Err(e) => Err(field_error(e)),
    }
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return malformed(inner);
    }
    let path = e.path().to_string();
    let detail = strip_position(&inner.to_string());
    if path == "." || path.is_empty() {
        // serde reports missing and unknown fields at the parent; name them.
        let field = backticked(&detail).unwrap_or_else(|| "body".into());
        return ApiError::invalid(field, detail);
    }
    ApiError::invalid(path, detail)
}

/// serde_json's refusal of a float where an integer goes: `invalid type: floating point`.
fn is_integral_float(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with("invalid type: floating point")
}

/// Rewrites `5.0` as `5` throughout, within the range of `i64`/`u64`.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                // 2^63 and 2^64 as f64: the casts below saturate, so stay strictly below.
                if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
                    *n = (f as i64).into();
                } else if (0.0..1.844_674_407_370_955_2e19).contains(&f) {
                    *n = (f as u64).into();
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        message: format!("the request body is not valid JSON: {e}"),
        validations: vec![],
    }
}

/// `missing field `message`` -> `message`.
fn backticked(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let end = text[start..].find('`')? + start;
    Some(text[start..end].to_owned())
}

/// serde_json appends " at line 1 column 12"; clients need the field, not the column.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// Query parameters; errors name the parameter.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(QueryParams(v)),
            Err(e) => {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_owned();
                Err(ApiError::invalid(query_field(&detail), detail))
            }
        }
    }
}

/// The parameter a query-string error is about: `limit: invalid digit` names `limit`, and
/// serde's `unknown field `q`, expected ...` and `duplicate field `q`` name `q`; else
/// `query`.
fn query_field(detail: &str) -> String {
    if (detail.starts_with("unknown field `") || detail.starts_with("duplicate field `"))
        && let Some(name) = backticked(detail)
    {
        return name;
    }
    detail
        .split(':')
        .next()
        .filter(|f| !f.contains(' '))
        .unwrap_or("query")
        .to_owned()
}

/// The `{chat_id}` path segment.
pub struct ChatId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ChatId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(ChatId(id)),
            Err(_) => Err(ApiError::invalid("chat_id", "must be a UUID")),
        }
    }
}

/// Documents [`ChatId`] in OpenAPI: the extractor parses by hand (to name the parameter in
/// its 400), so the parameter's shape is declared here.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ChatPath {
    /// The chat's id.
    chat_id: Uuid,
}

impl IntoParams for ChatId {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        ChatPath::into_params(parameter_in)
    }
}

/// The `{token_id}` path segment.
pub struct TokenId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for TokenId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(TokenId(id)),
            Err(_) => Err(ApiError::invalid("token_id", "must be a UUID")),
        }
    }
}

/// Documents [`TokenId`] in OpenAPI, as [`ChatPath`] does for [`ChatId`].
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TokenPath {
    /// The token's id (from the token list).
    token_id: Uuid,
}

impl IntoParams for TokenId {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        TokenPath::into_params(parameter_in)
    }
}

/// The `{file_id}` path segment of `/api/v1/files/{file_id}`.
pub struct FileId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for FileId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(FileId(id)),
            Err(_) => Err(ApiError::invalid("file_id", "must be a UUID")),
        }
    }
}

/// Documents [`FileId`] in OpenAPI, as [`ChatPath`] does for [`ChatId`].
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct FilePath {
    /// The file's id (from its upload).
    file_id: Uuid,
}

impl IntoParams for FileId {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        FilePath::into_params(parameter_in)
    }
}

/// The `{chat_id}/.../{run_id}` path segments.
pub struct ChatAndRunIds(pub Uuid, pub Uuid);

/// Documents [`ChatAndRunIds`] in OpenAPI, as [`ChatPath`] does for [`ChatId`].
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ChatRunPath {
    /// The chat's id.
    chat_id: Uuid,
    /// The debug run's id.
    run_id: Uuid,
}

impl IntoParams for ChatAndRunIds {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        ChatRunPath::into_params(parameter_in)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChatAndRunIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((chat, run)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
        let chat = chat
            .parse()
            .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
        let run = run
            .parse()
            .map_err(|_| ApiError::invalid("run_id", "must be a UUID"))?;
        Ok(ChatAndRunIds(chat, run))
    }
}

/// The `{chat_id}/files/{file_id}` path segments.
pub struct ChatAndFileIds(pub Uuid, pub Uuid);

/// Documents [`ChatAndFileIds`] in OpenAPI, as [`ChatPath`] does for [`ChatId`].
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ChatFilePath {
    /// The chat's id.
    chat_id: Uuid,
    /// The file's id.
    file_id: Uuid,
}

impl IntoParams for ChatAndFileIds {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        ChatFilePath::into_params(parameter_in)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChatAndFileIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((chat, file)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
        let chat = chat
            .parse()
            .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
        let file = file
            .parse()
            .map_err(|_| ApiError::invalid("file_id", "must be a UUID"))?;
        Ok(ChatAndFileIds(chat, file))
    }
}

/// The `{chat_id}/messages/{message_id}` path segments.
pub struct ChatAndMessageIds(pub Uuid, pub Uuid);

/// Documents [`ChatAndMessageIds`] in OpenAPI, as [`ChatPath`] does for [`ChatId`].
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ChatMessagePath {
    /// The chat's id.
    chat_id: Uuid,
    /// The message's id.
    message_id: Uuid,
}

impl IntoParams for ChatAndMessageIds {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        ChatMessagePath::into_params(parameter_in)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ChatAndMessageIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((chat, message)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
        let chat = chat
            .parse()
            .map_err(|_| ApiError::invalid("chat_id", "must be a UUID"))?;
        let message = message
            .parse()
            .map_err(|_| ApiError::invalid("message_id", "must be a UUID"))?;
        Ok(ChatAndMessageIds(chat, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        message: String,
        n: Option<u32>,
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { validations, .. } => validations
                .first()
                .map(|v| v.field.clone())
                .unwrap_or_default(),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(query_field("limit: invalid digit found in string"), "limit");
        assert_eq!(
            query_field("unknown field `sort`, expected one of `q`, `limit`, `after_id`"),
            "sort"
        );
        assert_eq!(query_field("duplicate field `q`"), "q");
        assert_eq!(query_field("something else went wrong"), "query");
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(parse_json::<Body>(br#"{}"#).unwrap_err()),
            "message"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"message":"a","n":"x"}"#).unwrap_err()),
            "n"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"message":"a","extra":1}"#).unwrap_err()),
            "extra"
        );
        match parse_json::<Body>(br#"{"message":"#).unwrap_err() {
            ApiError::BadRequest {
                message,
                validations,
            } => {
                assert!(message.contains("not valid JSON"), "{message}");
                assert!(validations.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_array_is_no_body_even_where_serde_would_read_a_struct_from_it() {
        assert_eq!(
            field_of(parse_json::<Body>(br#" ["a", 1]"#).unwrap_err()),
            "body"
        );
    }

    #[test]
    fn an_integer_field_takes_a_number_whose_fraction_is_zero() {
        let body: Body = parse_json(br#"{"message":"a","n":5.0}"#).unwrap();
        assert_eq!(body.n, Some(5));
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"message":"a","n":5.5}"#).unwrap_err()),
            "n"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"message":"a","n":-1.0}"#).unwrap_err()),
            "n"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"message":"a","n":1e300}"#).unwrap_err()),
            "n"
        );
    }
}
