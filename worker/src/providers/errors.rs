//! Turning provider failures into [`ChatError`]s with a kind and a sentence a user can act on.

use agentq_core::{ChatError, ChatErrorKind};

/// Classifies a non-success HTTP response from `provider`.
pub fn classify_http_error(provider: &str, status: u16, body: &str) -> ChatError {
    let detail = provider_message(body);
    let lower = body.to_ascii_lowercase();
    let (kind, retryable, what) = match status {
        401 | 403 => (
            ChatErrorKind::Auth,
            false,
            "rejected the API key".to_owned(),
        ),
        429 => (
            ChatErrorKind::RateLimit,
            true,
            "is rate limiting requests".to_owned(),
        ),
        529 => (ChatErrorKind::Overloaded, true, "is overloaded".to_owned()),
        503 => (ChatErrorKind::Overloaded, true, "is unavailable".to_owned()),
        408 | 504 => (ChatErrorKind::Timeout, true, "timed out".to_owned()),
        400 | 413 | 422
            if lower.contains("context_length")
                || lower.contains("context length")
                || lower.contains("maximum context")
                || lower.contains("too many tokens") =>
        {
            (
                ChatErrorKind::ContextLength,
                false,
                "says the conversation is longer than the model's context".to_owned(),
            )
        }
        400 if lower.contains("content_filter") || lower.contains("content management policy") => (
            ChatErrorKind::ContentFilter,
            false,
            "refused the content".to_owned(),
        ),
        404 => (
            ChatErrorKind::Config,
            false,
            "does not know this model or endpoint".to_owned(),
        ),
        s if s >= 500 => (ChatErrorKind::Generic, true, "failed".to_owned()),
        _ => (
            ChatErrorKind::Generic,
            false,
            "rejected the request".to_owned(),
        ),
    };
    ChatError {
        message: format!("{provider} {what} (HTTP {status})."),
        kind,
        provider: Some(provider.to_owned()),
        retryable,
        status_code: Some(status),
        detail,
        retry_after: None,
    }
}

/// How long a `Retry-After` header asks to wait: delay-seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds >= 0.0).then(|| std::time::Duration::from_secs_f64(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// A transport failure (connection refused, reset, TLS).
pub fn transport_error(provider: &str, error: &reqwest::Error) -> ChatError {
    let (kind, what) = if error.is_timeout() {
        (ChatErrorKind::Timeout, "did not answer in time")
    } else {
        (ChatErrorKind::Generic, "could not be reached")
    };
    ChatError {
        message: format!("{provider} {what}."),
        kind,
        provider: Some(provider.to_owned()),
        retryable: true,
        status_code: None,
        detail: Some(without_url(error)),
        retry_after: None,
    }
}

/// The `error.message` of an OpenAI- or Anthropic-style error body, else the body itself
/// (shortened).
fn provider_message(body: &str) -> Option<String> {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    from_json.or_else(|| {
        let trimmed = body.trim();
        (!trimmed.is_empty()).then(|| trimmed.chars().take(500).collect())
    })
}

/// reqwest errors print the URL, which may carry a key in its query; drop it.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<provider url>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_users_can_act_on() {
        let e = classify_http_error("OpenAI", 429, r#"{"error":{"message":"slow down"}}"#);
        assert_eq!(e.kind, ChatErrorKind::RateLimit);
        assert!(e.retryable);
        assert_eq!(e.detail.as_deref(), Some("slow down"));
        assert_eq!(e.message, "OpenAI is rate limiting requests (HTTP 429).");
        assert_eq!(
            classify_http_error("OpenAI", 401, "").kind,
            ChatErrorKind::Auth
        );
        let ctx = classify_http_error(
            "OpenAI",
            400,
            r#"{"error":{"code":"context_length_exceeded"}}"#,
        );
        assert_eq!(ctx.kind, ChatErrorKind::ContextLength);
        assert!(!ctx.retryable);
        assert_eq!(
            classify_http_error("X", 529, "").kind,
            ChatErrorKind::Overloaded
        );
    }
}
