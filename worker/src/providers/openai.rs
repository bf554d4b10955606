//! OpenAI Chat Completions with `stream: true`, the wire format OpenAI, OpenRouter, vLLM,
//! Ollama and LiteLLM all speak. Parsing is lenient: missing or empty fields, absent
//! `usage`, and unknown chunk fields are tolerated.

use std::time::Duration;

use agentq_core::{
    ChatError, ChatErrorKind,
    domain::{Message, MessagePart, Role, Usage},
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{
    ProviderEvent, ProviderRequest, ProviderStream,
    errors::{classify_http_error, transport_error},
};

const NAME: &str = "OpenAI";

/// An OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    startup_timeout: Duration,
    silence_timeout: Duration,
}

impl OpenAiProvider {
    /// `base_url` like `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        startup_timeout: Duration,
        silence_timeout: Duration,
    ) -> Result<Self, ChatError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key: api_key.filter(|k| !k.is_empty()),
            startup_timeout,
            silence_timeout,
        })
    }

    /// Sends the request and streams the answer's deltas.
    pub async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ChatError> {
        let body = json!({
            "model": request.model,
            "messages": request.messages.iter().filter_map(wire_message).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let mut http = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let response = match tokio::time::timeout(self.startup_timeout, http.send()).await {
            Err(_) => {
                return Err(ChatError {
                    message: format!(
                        "{NAME} sent nothing within {} s.",
                        self.startup_timeout.as_secs()
                    ),
                    kind: ChatErrorKind::StartupTimeout,
                    provider: Some(NAME.into()),
                    retryable: true,
                    status_code: None,
                    detail: None,
                    retry_after: None,
                });
            }
            Ok(Err(e)) => return Err(transport_error(NAME, &e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(classify_http_error(NAME, status.as_u16(), &text));
        }
        let silence = self.silence_timeout;
        let events = response.bytes_stream().eventsource();
        let stream =
            futures::stream::unfold((events, false), move |(mut events, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let next = match tokio::time::timeout(silence, events.next()).await {
                        Err(_) => return Some((Err(silence_error(silence)), (events, true))),
                        Ok(None) => return None,
                        Ok(Some(Err(e))) => {
                            return Some((Err(stream_cut(&e.to_string())), (events, true)));
                        }
                        Ok(Some(Ok(event))) => event,
                    };
                    let data = next.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    if data == "[DONE]" {
                        return None;
                    }
                    match parse_chunk(data) {
                        Ok(parsed) if parsed.is_empty() => continue,
                        Ok(parsed) => return Some((Ok(parsed), (events, false))),
                        Err(e) => return Some((Err(e), (events, true))),
                    }
                }
            })
            .flat_map(|batch: Result<Vec<ProviderEvent>, ChatError>| match batch {
                Ok(events) => futures::stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            });
        Ok(Box::pin(stream))
    }
}

/// The wire form of a stored message (text parts joined), or `None` if it has no text.
fn wire_message(message: &Message) -> Option<serde_json::Value> {
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => return None,
    };
    let text: String = message
        .content
        .iter()
        .filter_map(MessagePart::as_text)
        .collect::<Vec<_>>()
        .join("\n");
    if text.is_empty() {
        return None;
    }
    Some(json!({ "role": role, "content": text }))
}

#[derive(Deserialize, Default)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// Events in one `data:` chunk.
fn parse_chunk(data: &str) -> Result<Vec<ProviderEvent>, ChatError> {
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| ChatError {
        message: format!("{NAME} sent a stream chunk agentq cannot read."),
        kind: ChatErrorKind::Generic,
        provider: Some(NAME.into()),
        retryable: true,
        status_code: None,
        detail: Some(e.to_string()),
        retry_after: None,
    })?;
    if let Some(error) = chunk.error {
        let status = error
            .get("code")
            .and_then(|c| c.as_u64())
            .map(|c| c as u16)
            .unwrap_or(500);
        return Err(classify_http_error(
            NAME,
            status,
            &json!({ "error": error }).to_string(),
        ));
    }
    let mut out = Vec::new();
    if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
        out.push(ProviderEvent::Model(model));
    }
    for choice in chunk.choices {
        if let Some(delta) = choice.delta {
            if let Some(r) = delta
                .reasoning_content
                .or(delta.reasoning)
                .filter(|r| !r.is_empty())
            {
                out.push(ProviderEvent::Reasoning(r));
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(ProviderEvent::Text(text));
            }
        }
        if choice.finish_reason.as_deref() == Some("content_filter") {
            return Err(ChatError {
                message: format!("{NAME} stopped the answer with its content filter."),
                kind: ChatErrorKind::ContentFilter,
                provider: Some(NAME.into()),
                retryable: false,
                status_code: None,
                detail: None,
                retry_after: None,
            });
        }
    }
    if let Some(u) = chunk.usage {
        let cached = u
            .prompt_tokens_details
            .map(|d| d.cached_tokens)
            .unwrap_or(0);
        out.push(ProviderEvent::Usage(Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        }));
    }
    Ok(out)
}

fn silence_error(silence: Duration) -> ChatError {
    ChatError {
        message: format!(
            "{NAME} stopped sending for {} s in the middle of an answer.",
            silence.as_secs()
        ),
        kind: ChatErrorKind::StreamSilenceTimeout,
        provider: Some(NAME.into()),
        retryable: true,
        status_code: None,
        detail: None,
        retry_after: None,
    }
}

fn stream_cut(detail: &str) -> ChatError {
    ChatError {
        message: format!("{NAME} closed the stream in the middle of an answer."),
        kind: ChatErrorKind::Generic,
        provider: Some(NAME.into()),
        retryable: true,
        status_code: None,
        detail: Some(detail.to_owned()),
        retry_after: None,
    }
}

fn config_error(detail: String) -> ChatError {
    ChatError {
        message: format!("{NAME} is not configured correctly."),
        kind: ChatErrorKind::Config,
        provider: Some(NAME.into()),
        retryable: false,
        status_code: None,
        detail: Some(detail),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_from_different_servers_parse() {
        let openai = r#"{"id":"x","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk(openai).unwrap(),
            vec![
                ProviderEvent::Model("gpt-4o".into()),
                ProviderEvent::Text("Hi".into())
            ]
        );
        // Ollama/vLLM style: no model, empty delta, usage in the last chunk.
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(
            parse_chunk(usage).unwrap(),
            vec![ProviderEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 5,
                cache_read_tokens: 2,
                cache_write_tokens: 0
            })]
        );
        let reasoning = r#"{"choices":[{"delta":{"reasoning_content":"hmm","content":""}}]}"#;
        assert_eq!(
            parse_chunk(reasoning).unwrap(),
            vec![ProviderEvent::Reasoning("hmm".into())]
        );
        assert!(
            parse_chunk(r#"{"choices":[{"delta":{}}]}"#)
                .unwrap()
                .is_empty()
        );
        let in_stream = r#"{"error":{"message":"overloaded","code":503}}"#;
        assert_eq!(
            parse_chunk(in_stream).unwrap_err().kind,
            ChatErrorKind::Overloaded
        );
    }
}
