//! The read loop every adapter shares: pull payloads from a response body (SSE events'
//! `data`, or AWS event-stream frames from [`super::eventstream`]), enforce the silence
//! timeout, the attempt's deadline and the answer's byte cap, hand each payload to the wire
//! format's parser, and end the stream exactly once (at the parser's last event, an error,
//! or the end of the body).
//!
//! Every value that comes from the provider passes here before the turn engine sees it, so
//! this is also where values no honest provider sends are bounded: an SSE event larger than
//! the answer cap, token counts beyond any model's, a model name longer than any model's.

use agentq_core::{ChatError, domain::Usage};
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::{
    ProviderEvent, ProviderStream,
    errors::{answer_too_large, attempt_deadline, silence_timeout},
    limits::ProviderLimits,
};

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
    /// Bytes of tool calls (ids, names, arguments) received so far in this answer, whether
    /// the calls were emitted yet or are still being assembled. Never decreases.
    fn tool_call_bytes(&self) -> usize;
}

/// Slack over the answer cap for one SSE event's framing (`data:`, the JSON around a delta).
const EVENT_FRAMING_BYTES: usize = 64 * 1024;

/// The largest token count passed on: far above any model's context, far below what would
/// overflow a sum of many in `i64` (PostgreSQL `bigint`) or a cost in micro-dollars.
pub(super) const MAX_TOKEN_COUNT: u64 = 1_000_000_000_000;

/// The longest model name passed on (it is stored with every answer).
const MAX_MODEL_NAME_BYTES: usize = 200;

/// How a response body is cut into payloads for the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Server-sent events; each event's `data` is a payload.
    Sse,
    /// AWS event-stream frames (Bedrock); see [`super::eventstream`].
    EventStream,
}

/// Why the body yielded no payload.
#[derive(Debug)]
pub(super) enum PayloadError {
    /// One event or frame grew past the limit before it was complete.
    TooLarge,
    /// The connection broke or the framing is unreadable (the detail says how).
    Broken(String),
}

/// The payloads of one response body, in order.
pub(super) type Payloads =
    std::pin::Pin<Box<dyn Stream<Item = Result<String, PayloadError>> + Send>>;

/// The largest single event or frame accepted for an answer capped at `max_answer_bytes`.
pub(super) fn max_event_bytes(limits: &ProviderLimits) -> usize {
    limits.max_answer_bytes.saturating_add(EVENT_FRAMING_BYTES)
}

/// Streams the events of `response` through `parser`, within `limits` and until `deadline`.
pub(super) fn answer_stream<P: WireParser>(
    response: reqwest::Response,
    framing: Framing,
    parser: P,
    limits: &ProviderLimits,
    deadline: Instant,
) -> ProviderStream {
    let limits = *limits;
    let payloads = match framing {
        Framing::Sse => sse_payloads(response, max_event_bytes(&limits)),
        Framing::EventStream => {
            super::eventstream::payloads(response.bytes_stream(), max_event_bytes(&limits))
        }
    };
    let reader = Reader {
        events: payloads,
        parser,
        text_bytes: 0,
    };
    let stream = futures::stream::unfold(Some(reader), move |state| async move {
        let mut reader = state?;
        let provider = reader.parser.provider().to_owned();
        loop {
            // Checked before waiting too: a provider that always has the next event ready
            // would otherwise never let the timer fire.
            if Instant::now() >= deadline {
                let error = attempt_deadline(&provider, limits.attempt_deadline);
                return Some((Err(error), None));
            }
            let silent_at = Instant::now() + limits.silence_timeout;
            let wake = silent_at.min(deadline);
            let last = match tokio::time::timeout_at(wake, reader.events.next()).await {
                Err(_) if wake == deadline => {
                    Err(attempt_deadline(&provider, limits.attempt_deadline))
                }
                Err(_) => Err(silence_timeout(&provider, limits.silence_timeout)),
                Ok(None) => reader.parser.end(BodyEnd::Eof),
                Ok(Some(Err(PayloadError::TooLarge))) => {
                    Err(answer_too_large(&provider, limits.max_answer_bytes))
                }
                Ok(Some(Err(PayloadError::Broken(detail)))) => {
                    reader.parser.end(BodyEnd::Broken(detail))
                }
                Ok(Some(Ok(data))) => {
                    let data = data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    match reader.parser.feed(data) {
                        Ok(Fed::More(batch)) => match reader.bounded(batch, &limits) {
                            Ok(batch) if batch.is_empty() => continue,
                            Ok(batch) => return Some((Ok(batch), Some(reader))),
                            Err(e) => Err(e),
                        },
                        Ok(Fed::Last(batch)) => reader.bounded(batch, &limits),
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

/// The `data` of the SSE events of `response`, each event at most `max` bytes.
fn sse_payloads(response: reqwest::Response, max: usize) -> Payloads {
    let events = events_at_most(response.bytes_stream(), max).eventsource();
    Box::pin(events.map(|event| match event {
        Ok(event) => Ok(event.data),
        Err(EventStreamError::Transport(BodyError::EventTooLarge)) => Err(PayloadError::TooLarge),
        Err(e) => Err(PayloadError::Broken(e.to_string())),
    }))
}

/// The state of one answer's read loop.
struct Reader<P> {
    events: Payloads,
    parser: P,
    /// Text and reasoning bytes (signatures and redacted reasoning included: they are
    /// stored with the answer) passed on so far.
    text_bytes: usize,
}

impl<P: WireParser> Reader<P> {
    /// `batch` with the provider's values bounded, or the error of an answer past the cap.
    fn bounded(
        &mut self,
        mut batch: Vec<ProviderEvent>,
        limits: &ProviderLimits,
    ) -> Result<Vec<ProviderEvent>, ChatError> {
        for event in &mut batch {
            match event {
                ProviderEvent::Text(text)
                | ProviderEvent::Reasoning(text)
                | ProviderEvent::ReasoningSignature(text)
                | ProviderEvent::RedactedReasoning(text) => {
                    self.text_bytes = self.text_bytes.saturating_add(text.len());
                }
                ProviderEvent::Usage(usage) => *usage = bounded_usage(usage),
                ProviderEvent::Model(model) => {
                    let end = model.floor_char_boundary(MAX_MODEL_NAME_BYTES);
                    model.truncate(end);
                }
                ProviderEvent::ToolCall { .. } => {}
            }
        }
        let answer_bytes = self
            .text_bytes
            .saturating_add(self.parser.tool_call_bytes());
        if answer_bytes > limits.max_answer_bytes {
            return Err(answer_too_large(
                self.parser.provider(),
                limits.max_answer_bytes,
            ));
        }
        Ok(batch)
    }
}

/// Token counts no larger than [`MAX_TOKEN_COUNT`].
fn bounded_usage(usage: &Usage) -> Usage {
    Usage {
        input_tokens: usage.input_tokens.min(MAX_TOKEN_COUNT),
        output_tokens: usage.output_tokens.min(MAX_TOKEN_COUNT),
        cache_read_tokens: usage.cache_read_tokens.min(MAX_TOKEN_COUNT),
        cache_write_tokens: usage.cache_write_tokens.min(MAX_TOKEN_COUNT),
    }
}

/// Why the body stopped before the SSE parser saw it.
#[derive(Debug)]
enum BodyError {
    /// The connection failed.
    Transport(reqwest::Error),
    /// One event grew past the limit: the SSE parser would have buffered it whole.
    EventTooLarge,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Transport(e) => f.write_str(&super::errors::with_causes(e)),
            BodyError::EventTooLarge => f.write_str("an event larger than the answer cap"),
        }
    }
}

/// `body`, failing once one SSE event (the bytes between two blank lines, line ends not
/// counted) is longer than `max` bytes, before the SSE parser buffers more of it.
fn events_at_most<B: AsRef<[u8]>>(
    body: impl Stream<Item = reqwest::Result<B>> + Send + 'static,
    max: usize,
) -> impl Stream<Item = Result<B, BodyError>> + Send + 'static {
    let mut size = EventSize::default();
    body.map(move |chunk| {
        // reqwest's errors name the URL; the detail shown to users must not.
        let chunk = chunk.map_err(|e| BodyError::Transport(e.without_url()))?;
        if size.add(chunk.as_ref()) > max {
            return Err(BodyError::EventTooLarge);
        }
        Ok(chunk)
    })
}

/// The size of the SSE event being received; lines end with CR, LF or CRLF.
#[derive(Default)]
struct EventSize {
    /// Bytes of the current event.
    event: usize,
    /// Bytes of the current line.
    line: usize,
    /// The last byte was a CR (a LF right after it ends the same line).
    after_cr: bool,
}

impl EventSize {
    /// Adds `chunk`; the largest size the event reached within it.
    fn add(&mut self, chunk: &[u8]) -> usize {
        let mut largest = self.event;
        for &byte in chunk {
            if byte == b'\n' && self.after_cr {
                self.after_cr = false;
                continue;
            }
            self.after_cr = byte == b'\r';
            if byte == b'\n' || byte == b'\r' {
                if self.line == 0 {
                    self.event = 0;
                }
                self.line = 0;
            } else {
                self.line += 1;
                self.event += 1;
                largest = largest.max(self.event);
            }
        }
        largest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_ends_at_a_blank_line_whatever_the_line_ends() {
        for (blank, name) in [("\n\n", "LF"), ("\r\n\r\n", "CRLF"), ("\r\r", "CR")] {
            let mut size = EventSize::default();
            let eol = &blank[..blank.len() / 2];
            let event = format!("data: 12345{eol}data: 678{eol}{eol}");
            assert_eq!(size.add(event.as_bytes()), 20, "{name}");
            // The next event starts from zero, even split across chunks.
            assert_eq!(size.add(b"data: "), 6, "{name}");
            assert_eq!(size.add(b"x"), 7, "{name}");
            assert_eq!(size.add(blank.as_bytes()), 7, "{name}");
            assert_eq!(size.add(b"da"), 2, "{name}");
        }
    }

    #[test]
    fn a_line_without_end_keeps_growing() {
        let mut size = EventSize::default();
        for i in 1..=100 {
            assert_eq!(size.add(&[b'a'; 1000]), i * 1000);
        }
    }

    #[test]
    fn token_counts_are_bounded() {
        let usage = bounded_usage(&Usage {
            input_tokens: u64::MAX,
            output_tokens: 7,
            cache_read_tokens: u64::MAX - 1,
            cache_write_tokens: MAX_TOKEN_COUNT + 1,
        });
        assert_eq!(usage.input_tokens, MAX_TOKEN_COUNT);
        assert_eq!(usage.output_tokens, 7);
        assert_eq!(usage.cache_read_tokens, MAX_TOKEN_COUNT);
        assert_eq!(usage.cache_write_tokens, MAX_TOKEN_COUNT);
    }
}

/// `json` with every lone UTF-16 surrogate escape (`\ud83d` without its pair, as a provider
/// sends when it splits an emoji between two chunks) replaced by `\ufffd`. serde_json
/// refuses such a document outright, which would discard a whole answer (and retry the
/// paid call) for one broken character; here it costs that character only. Borrows when
/// there is nothing to fix.
pub(crate) fn without_lone_surrogates(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.contains("\\u") && !json.contains("\\U") {
        return std::borrow::Cow::Borrowed(json);
    }
    let bytes = json.as_bytes();
    let hex4 = |at: usize| -> Option<u16> {
        let digits = json.get(at..at + 4)?;
        u16::from_str_radix(digits, 16).ok()
    };
    let escape_at = |at: usize| -> Option<u16> {
        (bytes.get(at) == Some(&b'\\') && bytes.get(at + 1) == Some(&b'u'))
            .then(|| hex4(at + 2))
            .flatten()
    };
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            i += 2; // `\\`, `\"`, `\n`, ...: the escaped character is not an escape start
            continue;
        };
        let paired = (0xD800..0xDC00).contains(&unit)
            && escape_at(i + 6).is_some_and(|low| (0xDC00..0xE000).contains(&low));
        if paired {
            i += 12;
        } else if (0xD800..0xE000).contains(&unit) {
            let out = out.get_or_insert_with(|| String::with_capacity(json.len()));
            out.push_str(&json[copied..i]);
            out.push_str("\\ufffd");
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(json),
        Some(mut out) => {
            out.push_str(&json[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod surrogate_tests {
    use super::without_lone_surrogates;

    fn text(json: &str) -> String {
        serde_json::from_str::<String>(&without_lone_surrogates(json)).unwrap()
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_and_pairs_stay() {
        assert_eq!(text(r#""x\ud83d""#), "x\u{FFFD}");
        assert_eq!(text(r#""\ude00y""#), "\u{FFFD}y");
        assert_eq!(text(r#""\ud83d\ude00""#), "\u{1F600}");
        assert_eq!(
            text(r#""a\\ud800b""#),
            "a\\ud800b",
            "an escaped backslash is not an escape"
        );
        assert!(matches!(
            without_lone_surrogates(r#"{"plain": "\n"}"#),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
