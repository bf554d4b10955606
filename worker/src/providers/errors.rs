//! Turning provider failures into [`ChatError`]s with a kind and a sentence a user can act on.
//!
//! Every adapter reports the same situations (a refused request, no answer in time, a stream
//! that goes quiet or is cut) the same way, so the turn engine can retry on `kind` and
//! `retryable` without knowing which wire format failed.

use std::time::Duration;

use agentq_core::{ChatError, ChatErrorKind};
use futures::StreamExt;

use super::limits::ERROR_BODY_MAX_BYTES;

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
                || lower.contains("context window")
                || lower.contains("prompt is too long")
                || lower.contains("input is too long")
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

/// Classifies a non-success response, keeping how long the provider asked us to wait so the
/// turn's retry honours it. Reads at most [`ERROR_BODY_MAX_BYTES`] of the body, and only
/// until `until`: a body that never ends is cut there and what arrived is kept.
pub async fn from_response(
    provider: &str,
    response: reqwest::Response,
    until: tokio::time::Instant,
) -> ChatError {
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let body = read_error_body(response, until).await;
    let mut error = classify_http_error(provider, status, &body);
    error.retry_after = wait;
    error
}

/// Up to [`ERROR_BODY_MAX_BYTES`] of `response`'s body, read until `until`; dropping the
/// response closes the connection rather than reading the rest.
async fn read_error_body(response: reqwest::Response, until: tokio::time::Instant) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while body.len() < ERROR_BODY_MAX_BYTES {
        match tokio::time::timeout_at(until, chunks.next()).await {
            Ok(Some(Ok(chunk))) => {
                let room = ERROR_BODY_MAX_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            // The end, a broken connection or the time limit: what arrived is the body.
            Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The provider answered with a redirect. agentq follows none: the request carries the key
/// and the configured headers, and another host must not receive them.
pub fn redirect_refused(provider: &str, status: u16) -> ChatError {
    ChatError {
        message: format!(
            "{provider} answered with a redirect (HTTP {status}), which agentq does not follow \
             so that keys and headers never reach another host; check the provider's base URL."
        ),
        kind: ChatErrorKind::Config,
        provider: Some(provider.to_owned()),
        retryable: false,
        status_code: Some(status),
        detail: None,
        retry_after: None,
    }
}

/// The attempt ran for its whole deadline. Not retried: a provider that streams this long
/// (a model repeating itself, a proxy that never ends the body) would do it again.
pub fn attempt_deadline(provider: &str, deadline: Duration) -> ChatError {
    ChatError::new(
        ChatErrorKind::Timeout,
        format!(
            "{provider} was still answering after {}, the longest one attempt may take \
             (AGENTQ_PROVIDER_ATTEMPT_DEADLINE_SECS).",
            seconds(deadline)
        ),
    )
    .with_provider(provider)
}

/// The answer grew past the byte cap. Not retried: the same request would likely produce
/// the same answer.
pub fn answer_too_large(provider: &str, max_bytes: usize) -> ChatError {
    ChatError::new(
        ChatErrorKind::Generic,
        format!(
            "{provider} sent an answer longer than {max_bytes} bytes, the most agentq accepts \
             (text, reasoning and tool calls together; AGENTQ_PROVIDER_MAX_ANSWER_BYTES)."
        ),
    )
    .with_provider(provider)
}

/// How long a `Retry-After` header asks to wait: delay-seconds or an HTTP date (a date in
/// the past means now), at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, chrono::Utc::now())
}

/// The longest `Retry-After` taken from a provider (the turn waits at most
/// `--provider-max-backoff-secs` anyway); larger values, `1e20` included, are clamped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        // Clamped before the conversion: `Duration::from_secs_f64` panics past u64 seconds.
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// No response headers within the startup budget: the provider may be queueing us.
pub fn startup_timeout(provider: &str, waited: Duration) -> ChatError {
    ChatError::new(
        ChatErrorKind::StartupTimeout,
        format!("{provider} sent nothing within {}.", seconds(waited)),
    )
    .with_provider(provider)
    .retryable(true)
}

/// A started stream went quiet for longer than the silence budget.
pub fn silence_timeout(provider: &str, waited: Duration) -> ChatError {
    ChatError::new(
        ChatErrorKind::StreamSilenceTimeout,
        format!(
            "{provider} stopped sending for {} in the middle of an answer.",
            seconds(waited)
        ),
    )
    .with_provider(provider)
    .retryable(true)
}

/// The stream ended (EOF or a dropped connection) before the wire format's end marker.
pub fn stream_cut(provider: &str, detail: impl Into<String>) -> ChatError {
    ChatError::new(
        ChatErrorKind::Generic,
        format!("{provider} closed the stream in the middle of an answer."),
    )
    .with_provider(provider)
    .retryable(true)
    .with_detail(detail)
}

/// A stream event that is not the JSON its wire format promises; a retry usually gets a
/// clean stream.
pub fn unreadable_event(provider: &str, detail: impl Into<String>) -> ChatError {
    ChatError::new(
        ChatErrorKind::Generic,
        format!("{provider} sent a stream chunk agentq cannot read."),
    )
    .with_provider(provider)
    .retryable(true)
    .with_detail(detail)
}

/// A tool call whose streamed arguments are not JSON; the model wrote them, so the same
/// request is not retried blindly.
pub fn invalid_tool_arguments(provider: &str, tool: &str, detail: impl Into<String>) -> ChatError {
    ChatError::new(
        ChatErrorKind::Generic,
        format!("{provider} sent arguments for the tool `{tool}` that are not valid JSON."),
    )
    .with_provider(provider)
    .with_detail(detail)
}

/// An adapter that cannot be built from its settings.
pub fn config_error(provider: &str, detail: impl Into<String>) -> ChatError {
    ChatError::new(
        ChatErrorKind::Config,
        format!("{provider} is not configured correctly."),
    )
    .with_provider(provider)
    .with_detail(detail)
}

/// `7 s`, or `0.25 s` for the sub-second budgets tests use.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} s", (d.as_secs_f64() * 100.0).round() / 100.0)
    }
}

/// A transport failure (connection refused, reset, TLS). The detail says why, with the
/// causes reqwest keeps, but not the URL it embeds.
pub fn transport_error(provider: &str, error: reqwest::Error) -> ChatError {
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
        detail: Some(with_causes(&error.without_url())),
        retry_after: None,
    }
}

/// `error: cause: cause`, each distinct cause once.
pub(super) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
        let anthropic_ctx = classify_http_error(
            "Anthropic",
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
        );
        assert_eq!(anthropic_ctx.kind, ChatErrorKind::ContextLength);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:59:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn retry_after_values_no_duration_can_hold_are_clamped_or_ignored() {
        let now = chrono::Utc::now();
        for huge in [
            "1e20",
            "18446744073709551616",
            "99999999999999999999999999999999",
            "1.7976931348623157e308",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
        }
        for ignored in ["-5", "-1e20", "NaN", "inf", "-inf", ""] {
            assert_eq!(parse_retry_after(ignored, now), None, "{ignored}");
        }
        assert_eq!(
            parse_retry_after("3599.5", now),
            Some(Duration::from_millis(3_599_500))
        );
    }
}
