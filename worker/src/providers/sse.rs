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
    let max = max_event_bytes(limits);
    let payloads = match framing {
        Framing::Sse => sse_payloads(response.bytes_stream(), max),
        Framing::EventStream => super::eventstream::payloads(response.bytes_stream(), max),
    };
    read_payloads(payloads, parser, limits, deadline)
}

/// The read loop proper: `payloads` through `parser`, within `limits` and until
/// `deadline`.
fn read_payloads<P: WireParser>(
    payloads: Payloads,
    parser: P,
    limits: &ProviderLimits,
    deadline: Instant,
) -> ProviderStream {
    let limits = *limits;
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

/// The `data` of the SSE events of `body`, each event at most `max` bytes.
fn sse_payloads<B: AsRef<[u8]> + Send + 'static>(
    body: impl Stream<Item = reqwest::Result<B>> + Send + 'static,
    max: usize,
) -> Payloads {
    let events = events_at_most(body, max).eventsource();
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

/// `body` as text, failing once one SSE event (the bytes between two blank lines, line
/// ends not counted) is longer than `max` bytes, before the SSE parser buffers more of it.
///
/// The text is made here, not by the SSE parser (eventsource-stream 0.2.3), whose decoder
/// fails two ways on bytes a provider may send (docs/fuzzing.md): it keeps every byte from
/// an invalid one on in a buffer and never passes anything again (one stray byte held the
/// rest of the body in memory and ended the answer only at the deadline), and it panics on
/// a body that starts with a byte-order mark (it cuts one byte off a three-byte
/// character). So bytes that are not UTF-8 become U+FFFD ([`LossyUtf8`]), the one leading
/// BOM the SSE format allows is dropped here, and the parser's first text is a blank line,
/// which ends no event and leaves it no BOM to strip.
fn events_at_most<B: AsRef<[u8]> + Send + 'static>(
    body: impl Stream<Item = reqwest::Result<B>> + Send + 'static,
    max: usize,
) -> impl Stream<Item = Result<String, BodyError>> + Send + 'static {
    let state = (Box::pin(body), EventSize::default(), LossyUtf8::default());
    let body = futures::stream::unfold(Some(state), move |state| async move {
        let (mut body, mut size, mut text) = state?;
        match body.next().await {
            None => text.finish().map(|rest| (Ok(rest), None)),
            // reqwest's errors name the URL; the detail shown to users must not.
            Some(Err(e)) => Some((Err(BodyError::Transport(e.without_url())), None)),
            Some(Ok(chunk)) => {
                if size.add(chunk.as_ref()) > max {
                    return Some((Err(BodyError::EventTooLarge), None));
                }
                let decoded = text.decode(chunk.as_ref());
                Some((Ok(decoded), Some((body, size, text))))
            }
        }
    });
    let mut started = false;
    body.map(move |text| {
        let text = text?;
        if started || text.is_empty() {
            return Ok(text);
        }
        started = true;
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
        Ok(format!("\n{text}"))
    })
}

/// A UTF-8 decoder for a body that arrives in chunks: a character split between two
/// chunks is whole in the text, and each invalid sequence is one U+FFFD, exactly as
/// `String::from_utf8_lossy` reads the body in one piece.
#[derive(Default)]
struct LossyUtf8 {
    /// The start of a character the chunk ended in (at most 3 bytes).
    pending: Vec<u8>,
}

impl LossyUtf8 {
    /// The text of `chunk`, up to a character it ends in the middle of.
    fn decode(&mut self, chunk: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(chunk);
        let mut text = String::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are UTF-8: this never falls back.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                        None => {
                            // A character cut by the chunk's end: the next chunk ends it.
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        text
    }

    /// The end of the body: a character left unfinished is one U+FFFD.
    fn finish(&mut self) -> Option<String> {
        (!std::mem::take(&mut self.pending).is_empty())
            .then(|| char::REPLACEMENT_CHARACTER.to_string())
    }
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

/// What the property tests named `fuzz_*` of every wire format share (docs/fuzzing.md):
/// the real read loop over a body given in chunks, SSE framing with the noise servers add,
/// and ways to cut a body.
#[cfg(test)]
pub(super) mod fuzz {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use bytes::Bytes;
    use proptest::{prelude::*, sample::Index};

    use super::*;

    /// Small limits, so that generated answers reach the cap.
    pub(in crate::providers) fn limits() -> ProviderLimits {
        ProviderLimits {
            max_answer_bytes: 2048,
            ..ProviderLimits::default()
        }
    }

    pub(in crate::providers) use crate::fuzzing::config;

    /// Everything the read loop made of `body` through `parser`: events, then the error
    /// that ended the answer, if any.
    pub(in crate::providers) fn read_body<P: WireParser>(
        framing: Framing,
        body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
        parser: P,
        limits: &ProviderLimits,
    ) -> Vec<Result<ProviderEvent, ChatError>> {
        let max = max_event_bytes(limits);
        let payloads = match framing {
            Framing::Sse => sse_payloads(body, max),
            Framing::EventStream => super::super::eventstream::payloads(body, max),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(3600);
            read_payloads(payloads, parser, limits, deadline)
                .collect()
                .await
        })
    }

    /// [`read_body`] of a body that arrives as `chunks`.
    pub(in crate::providers) fn read_chunks<P: WireParser>(
        framing: Framing,
        chunks: Vec<Vec<u8>>,
        parser: P,
        limits: &ProviderLimits,
    ) -> Vec<Result<ProviderEvent, ChatError>> {
        let body = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        read_body(framing, body, parser, limits)
    }

    /// `bytes` cut where `cuts` say (any number of cuts, anywhere: mid-line, mid-character,
    /// between a CR and its LF).
    pub(in crate::providers) fn cut(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for to in at.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[from..to].to_vec());
            from = to;
        }
        chunks
    }

    /// Where to cut a body: none to a few dozen places.
    pub(in crate::providers) fn cuts() -> impl Strategy<Value = Vec<Index>> {
        proptest::collection::vec(any::<Index>(), 0..24)
    }

    /// One line of noise servers send between events: comments, other fields, `event:`
    /// names, stray bytes (invalid UTF-8 and U+0000 included).
    fn noise() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b": keep-alive".to_vec()),
            Just(b"event: ping".to_vec()),
            Just(b"id: 7".to_vec()),
            Just(b"id: \0".to_vec()),
            Just(b"retry: 99999999999999999999999".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"data".to_vec()),
            Just(b"data:".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    /// `payloads` as an SSE body: each as one event's `data` (`data:` or `data: `, with an
    /// `event:` line sometimes), lines ending in LF, CRLF or CR, noise lines and blank lines
    /// between events.
    pub(in crate::providers) fn sse_body(
        payloads: impl Strategy<Value = Vec<(Option<String>, String)>>,
    ) -> impl Strategy<Value = Vec<u8>> {
        payloads
            .prop_flat_map(|payloads| {
                let n = payloads.len();
                let framing = (
                    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
                    any::<bool>(),
                    proptest::option::weighted(0.1, noise()),
                );
                (Just(payloads), proptest::collection::vec(framing, n..=n))
            })
            .prop_map(|(payloads, framings)| {
                let mut body = Vec::new();
                for ((event, data), (eol, spaced, noise)) in payloads.iter().zip(framings) {
                    if let Some(noise) = noise {
                        body.extend_from_slice(&noise);
                        body.extend_from_slice(eol.as_bytes());
                    }
                    if let Some(event) = event {
                        body.extend_from_slice(format!("event: {event}{eol}").as_bytes());
                    }
                    let prefix = if spaced { "data: " } else { "data:" };
                    body.extend_from_slice(format!("{prefix}{data}{eol}{eol}").as_bytes());
                }
                body
            })
    }

    /// Text as providers stream it: ASCII, multi-byte characters (cut anywhere by the
    /// chunking), U+0000, quotes, escapes, lone surrogates.
    pub(in crate::providers) fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,12}",
            "[é日😀\u{0}\"\\\\\u{202e}\u{fffd}]{1,6}",
            any::<String>(),
        ]
    }

    /// The bytes of the answer's events the read loop counts against the cap.
    pub(in crate::providers) fn answer_bytes(events: &[Result<ProviderEvent, ChatError>]) -> usize {
        events
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .map(|event| match event {
                ProviderEvent::Text(t)
                | ProviderEvent::Reasoning(t)
                | ProviderEvent::ReasoningSignature(t)
                | ProviderEvent::RedactedReasoning(t) => t.len(),
                ProviderEvent::ToolCall { id, name, .. } => id.len() + name.len(),
                ProviderEvent::Usage(_) | ProviderEvent::Model(_) => 0,
            })
            .sum()
    }

    /// A body that never ends: `head`, then `tail` over and over; the count of bytes read
    /// from it so far.
    pub(in crate::providers) fn endless(
        head: Vec<u8>,
        tail: Vec<u8>,
    ) -> (
        impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
        Arc<AtomicUsize>,
    ) {
        let read = Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        let chunks = std::iter::once(head).chain(std::iter::repeat(tail));
        let body = futures::stream::iter(chunks).map(move |chunk| {
            counter.fetch_add(chunk.len(), Ordering::Relaxed);
            Ok(Bytes::from(chunk))
        });
        (body, read)
    }

    /// Noise-only bodies: whatever the bytes and however they are cut, the read loop
    /// ends, the same way.
    struct Silent;

    impl WireParser for Silent {
        fn provider(&self) -> &str {
            "Test"
        }
        fn feed(&mut self, data: &str) -> Result<Fed, ChatError> {
            Ok(Fed::More(vec![ProviderEvent::Text(data.to_owned())]))
        }
        fn end(&mut self, end: BodyEnd) -> Result<Vec<ProviderEvent>, ChatError> {
            Ok(match end {
                BodyEnd::Eof => vec![],
                BodyEnd::Broken(detail) => vec![ProviderEvent::Model(detail)],
            })
        }
        fn tool_call_bytes(&self) -> usize {
            0
        }
    }

    proptest! {
        #![proptest_config(config(500))]

        /// Any bytes at all: the SSE layer passes the same payloads whatever the chunks,
        /// and never more text than the body held.
        #[test]
        fn fuzz_any_bytes_read_the_same_however_they_are_cut(
            body in proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    1 => Just(b'\n'),
                    1 => Just(b'\r'),
                    1 => Just(b':'),
                ],
                0..3000,
            ),
            cuts in cuts(),
        ) {
            let whole = read_chunks(Framing::Sse, vec![body.clone()], Silent, &limits());
            let cut = read_chunks(Framing::Sse, cut(&body, &cuts), Silent, &limits());
            prop_assert_eq!(&cut, &whole);
            // Each invalid byte may become a 3-byte U+FFFD.
            prop_assert!(answer_bytes(&whole) <= 3 * body.len());
        }
    }

    #[test]
    fn fuzz_an_endless_line_is_refused_once_past_the_cap() {
        for tail in [b"a".to_vec(), b"a".repeat(4096), b"\xff".repeat(1000)] {
            let (body, read) = endless(b"data: {\"x\": \"".to_vec(), tail.clone());
            let events = read_body(Framing::Sse, body, Silent, &limits());
            let error = events.last().unwrap().as_ref().unwrap_err();
            assert!(
                error.message.contains("longer than 2048 bytes"),
                "{error:?}"
            );
            let max = max_event_bytes(&limits());
            let read = read.load(Ordering::Relaxed);
            assert!(read <= max + tail.len() + 16, "read {read} bytes");
        }
    }

    /// Found reading eventsource-stream's decoder while writing
    /// `fuzz_any_bytes_read_the_same_however_they_are_cut`: it keeps every byte from an
    /// invalid one on and passes nothing again, so one stray byte cost the rest of the
    /// answer (and held the body in memory).
    #[test]
    fn a_stray_invalid_byte_costs_one_character_not_the_rest_of_the_answer() {
        let body = b"data: a\xffb\n\ndata: c\n\n".to_vec();
        let events = read_chunks(Framing::Sse, vec![body], Silent, &limits());
        assert_eq!(
            events,
            vec![
                Ok(ProviderEvent::Text("a\u{FFFD}b".into())),
                Ok(ProviderEvent::Text("c".into())),
            ]
        );
    }

    /// Found by `fuzz_openai_streams_read_the_same_however_they_are_cut`: eventsource-stream
    /// strips a leading byte-order mark by cutting one byte off it, and panicked.
    #[test]
    fn a_body_that_starts_with_a_byte_order_mark_is_read_not_a_panic() {
        let body = b"\xEF\xBB\xBFdata: a\n\n".to_vec();
        let split = vec![body[..1].to_vec(), body[1..2].to_vec(), body[2..].to_vec()];
        for chunks in [vec![body.clone()], split] {
            let events = read_chunks(Framing::Sse, chunks, Silent, &limits());
            assert_eq!(events, vec![Ok(ProviderEvent::Text("a".into()))]);
        }
        // Only one is the format's: a second starts a field name (not `data`).
        let twice = b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n".to_vec();
        let events = read_chunks(Framing::Sse, vec![twice], Silent, &limits());
        assert_eq!(events, vec![Ok(ProviderEvent::Text("b".into()))]);
    }

    #[test]
    fn a_character_cut_between_chunks_decodes_as_in_one_piece() {
        let bytes = "é日😀".as_bytes();
        for at in 0..=bytes.len() {
            let mut decoder = LossyUtf8::default();
            let mut text = decoder.decode(&bytes[..at]);
            text.push_str(&decoder.decode(&bytes[at..]));
            assert_eq!(decoder.finish(), None);
            assert_eq!(text, "é日😀", "cut at {at}");
        }
        let mut decoder = LossyUtf8::default();
        assert_eq!(decoder.decode(b"a\xF0\x9F"), "a");
        assert_eq!(decoder.finish().as_deref(), Some("\u{FFFD}"));
    }
}
