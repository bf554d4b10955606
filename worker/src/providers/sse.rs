//! The read loop both adapters share: pull SSE events from a response body, enforce the
//! silence timeout, hand each payload to the wire format's parser, and end the stream
//! exactly once (at the parser's last event, an error, or the end of the body).

use std::time::Duration;

use agentq_core::ChatError;
use eventsource_stream::Eventsource;
use futures::StreamExt;

use super::{ProviderEvent, ProviderStream, errors::silence_timeout};

/// What one payload produced.
pub(super) enum Fed {
    /// Events; more payloads follow.
    More(Vec<ProviderEvent>),
    /// The wire format's final event (`[DONE]`, `message_stop`): these events, then the end.
    Last(Vec<ProviderEvent>),
}

/// How the body ended before the parser saw its final event.
pub(super) enum BodyEnd {
    /// The body ended cleanly.
    Eof,
    /// The connection broke (the detail says how).
    Broken(String),
}

/// One wire format's event parser.
pub(super) trait WireParser: Send + 'static {
    /// The provider's name, for errors.
    fn provider(&self) -> &str;
    /// One non-empty `data` payload.
    fn feed(&mut self, data: &str) -> Result<Fed, ChatError>;
    /// The body ended or broke first: the last events, or why the answer is incomplete.
    fn end(&mut self, end: BodyEnd) -> Result<Vec<ProviderEvent>, ChatError>;
}

/// Streams the events of `response` through `parser`.
pub(super) fn answer_stream<P: WireParser>(
    response: reqwest::Response,
    parser: P,
    silence: Duration,
) -> ProviderStream {
    let events = response.bytes_stream().eventsource();
    let stream = futures::stream::unfold(Some((events, parser)), move |state| async move {
        let (mut events, mut parser) = state?;
        loop {
            let last = match tokio::time::timeout(silence, events.next()).await {
                Err(_) => Err(silence_timeout(parser.provider(), silence)),
                Ok(None) => parser.end(BodyEnd::Eof),
                Ok(Some(Err(e))) => parser.end(BodyEnd::Broken(e.to_string())),
                Ok(Some(Ok(event))) => {
                    let data = event.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    match parser.feed(data) {
                        Ok(Fed::More(batch)) if batch.is_empty() => continue,
                        Ok(Fed::More(batch)) => return Some((Ok(batch), Some((events, parser)))),
                        Ok(Fed::Last(batch)) => Ok(batch),
                        Err(e) => Err(e),
                    }
                }
            };
            // Every path that reaches here ends the stream.
            return match last {
                Ok(batch) if batch.is_empty() => None,
                other => Some((other, None)),
            };
        }
    })
    .flat_map(|batch: Result<Vec<ProviderEvent>, ChatError>| match batch {
        Ok(events) => futures::stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>()),
        Err(e) => futures::stream::iter(vec![Err(e)]),
    });
    Box::pin(stream)
}
