//! AWS event-stream framing (`application/vnd.amazon.eventstream`), the binary body of
//! Bedrock's Converse stream, cut into payloads for the shared read loop ([`super::sse`]).
//!
//! Each frame is a prelude (total length, headers length, prelude CRC), headers, a payload
//! and a message CRC; `aws-smithy-eventstream` checks both CRCs and reads the headers. Only
//! the frame's declared length is read here, to refuse a frame longer than the answer cap
//! before buffering it. Each frame becomes one JSON payload in the shape of the Converse
//! stream's union, `{"<:event-type>": <payload>}`, and exception or error frames become
//! `{"exception": {"type": "<:exception-type>", "body": <payload>}}`, so the Bedrock parser
//! reads one document per payload as the SSE parsers do.

use aws_smithy_types::event_stream::Message;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::sse::{PayloadError, Payloads};

/// The prelude: total length, headers length, prelude CRC (4 bytes each).
const PRELUDE_BYTES: usize = 12;

/// The payloads of the frames of `body`, each frame at most `max` bytes.
pub(super) fn payloads(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    max: usize,
) -> Payloads {
    let state = Frames {
        body: Box::pin(body),
        buffer: BytesMut::new(),
        max,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut frames = state?;
        let item = frames.next_payload().await?;
        let more = item.is_ok();
        Some((item, more.then_some(frames)))
    }))
}

type Body = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The body and the bytes of the frame being received.
struct Frames {
    body: Body,
    buffer: BytesMut,
    max: usize,
}

impl Frames {
    /// The next frame's payload; `None` at a clean end (between frames).
    async fn next_payload(&mut self) -> Option<Result<String, PayloadError>> {
        loop {
            match self.complete_frame() {
                Err(e) => return Some(Err(e)),
                Ok(Some(frame)) => {
                    return Some(
                        aws_smithy_eventstream::frame::read_message_from(frame)
                            .map_err(|e| PayloadError::Broken(format!("unreadable frame: {e}")))
                            .map(|message| payload(&message)),
                    );
                }
                Ok(None) => {}
            }
            match self.body.next().await {
                None if self.buffer.is_empty() => return None,
                None => {
                    return Some(Err(PayloadError::Broken(
                        "the stream ended in the middle of a frame".into(),
                    )));
                }
                Some(Err(e)) => {
                    return Some(Err(PayloadError::Broken(super::errors::with_causes(
                        &e.without_url(),
                    ))));
                }
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
            }
        }
    }

    /// The first frame of the buffer once it is whole; an error as soon as its declared
    /// length is past the cap.
    fn complete_frame(&mut self) -> Result<Option<Bytes>, PayloadError> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let declared = (&self.buffer[..4]).get_u32() as usize;
        if declared > self.max {
            return Err(PayloadError::TooLarge);
        }
        if declared < PRELUDE_BYTES + 4 {
            return Err(PayloadError::Broken(format!(
                "a frame declares {declared} bytes, fewer than its prelude"
            )));
        }
        if self.buffer.len() < declared {
            return Ok(None);
        }
        Ok(Some(self.buffer.split_to(declared).freeze()))
    }
}

/// A string header of `message`.
fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// One frame as a JSON payload (empty for a frame of a type the stream does not define,
/// which the read loop skips).
fn payload(message: &Message) -> String {
    let body = String::from_utf8_lossy(message.payload());
    let body = if body.trim().is_empty() {
        "{}"
    } else {
        body.as_ref()
    };
    match header(message, ":message-type") {
        Some("event") => match header(message, ":event-type") {
            Some(event) => format!("{{{}:{body}}}", Value::from(event)),
            None => String::new(),
        },
        Some("exception") => {
            let kind = header(message, ":exception-type").unwrap_or("exception");
            let body: Value =
                serde_json::from_str(body).unwrap_or_else(|_| json!({"message": body}));
            json!({"exception": {"type": kind, "body": body}}).to_string()
        }
        Some("error") => {
            let kind = header(message, ":error-code").unwrap_or("error");
            let text = header(message, ":error-message").unwrap_or_default();
            json!({"exception": {"type": kind, "body": {"message": text}}}).to_string()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_types::event_stream::{Header, HeaderValue};

    use super::*;

    fn frame(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        let mut message = Message::new(Bytes::from(payload.to_owned()));
        for (name, value) in headers {
            message = message.add_header(Header::new(
                name.to_string(),
                HeaderValue::String(value.to_string().into()),
            ));
        }
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
        out
    }

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        frame(
            &[(":message-type", "event"), (":event-type", kind)],
            payload,
        )
    }

    async fn collect(chunks: Vec<Vec<u8>>, max: usize) -> Vec<Result<String, String>> {
        let body = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        payloads(body, max)
            .map(|item| {
                item.map_err(|e| match e {
                    PayloadError::TooLarge => "too large".to_owned(),
                    PayloadError::Broken(detail) => detail,
                })
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn frames_split_anywhere_become_union_payloads() {
        let mut bytes = event("contentBlockDelta", r#"{"delta":{"text":"Hi"}}"#);
        bytes.extend(frame(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            r#"{"message":"slow down"}"#,
        ));
        for split in [1, 5, 13, bytes.len() - 1] {
            let chunks = vec![bytes[..split].to_vec(), bytes[split..].to_vec()];
            let got = collect(chunks, 1 << 20).await;
            assert_eq!(
                got,
                vec![
                    Ok(r#"{"contentBlockDelta":{"delta":{"text":"Hi"}}}"#.to_owned()),
                    Ok(json!({"exception": {"type": "throttlingException",
                                            "body": {"message": "slow down"}}})
                    .to_string()),
                ],
                "split at {split}"
            );
        }
    }

    #[tokio::test]
    async fn a_frame_past_the_cap_is_refused_before_it_is_buffered() {
        let big = event(
            "contentBlockDelta",
            &format!("{{\"x\":\"{}\"}}", "a".repeat(500)),
        );
        // Only the prelude has arrived: the declared length is enough to refuse it.
        let got = collect(vec![big[..12].to_vec()], 100).await;
        assert_eq!(got, vec![Err("too large".to_owned())]);
    }

    #[tokio::test]
    async fn a_corrupt_or_cut_frame_breaks_the_stream() {
        let mut bytes = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let got = collect(vec![bytes.clone()], 1 << 20).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("unreadable frame")),
            "{got:?}"
        );
        let cut = collect(vec![bytes[..20].to_vec()], 1 << 20).await;
        assert!(
            matches!(&cut[..], [Err(e)] if e.contains("middle of a frame")),
            "{cut:?}"
        );
    }
}

/// Hostile event-stream bodies (docs/fuzzing.md): frames of every message type, corrupted
/// or cut anywhere, and bytes that are no frames at all.
#[cfg(test)]
mod fuzz {
    use aws_smithy_types::event_stream::{Header, HeaderValue};
    use proptest::{prelude::*, sample::Index};

    use super::*;
    use crate::providers::sse::fuzz::{config, cut, cuts};

    fn frame(headers: Vec<(String, String)>, payload: Vec<u8>) -> Vec<u8> {
        let mut message = Message::new(Bytes::from(payload));
        for (name, value) in headers {
            message = message.add_header(Header::new(name, HeaderValue::String(value.into())));
        }
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
        out
    }

    /// A frame of any message type, with JSON, text, invalid UTF-8 or no payload.
    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        let message_type = prop_oneof![
            Just("event"),
            Just("exception"),
            Just("error"),
            Just("other")
        ];
        let name = prop_oneof![
            Just(":event-type"),
            Just(":exception-type"),
            Just(":error-code"),
            Just(":error-message"),
            Just(":content-type"),
        ];
        let value = prop_oneof![
            Just("contentBlockDelta".to_owned()),
            Just("throttlingException".to_owned()),
            "[a-zA-Z\"\\\\{}\u{0}é]{0,12}",
        ];
        let payload = prop_oneof![
            Just(br#"{"delta":{"text":"Hi"}}"#.to_vec()),
            Just(b"".to_vec()),
            Just(b"not json".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        (
            message_type,
            proptest::collection::vec((name, value), 0..3),
            payload,
        )
            .prop_map(|(kind, headers, payload)| {
                let mut all = vec![(":message-type".to_owned(), kind.to_owned())];
                all.extend(headers.into_iter().map(|(n, v)| (n.to_owned(), v)));
                frame(all, payload)
            })
    }

    /// Frames, one byte perhaps flipped, the body perhaps cut short.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any_frame(), 0..12),
            proptest::option::of((any::<Index>(), 1u8..=255)),
            proptest::option::of(any::<Index>()),
        )
            .prop_map(|(frames, flip, end)| {
                let mut body = frames.concat();
                if let Some((at, mask)) = flip
                    && !body.is_empty()
                {
                    let at = at.index(body.len());
                    body[at] ^= mask;
                }
                if let Some(end) = end {
                    body.truncate(end.index(body.len() + 1));
                }
                body
            })
    }

    fn read(chunks: Vec<Vec<u8>>, max: usize) -> Vec<Result<String, String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        runtime.block_on(
            payloads(body, max)
                .map(|item| {
                    item.map_err(|e| match e {
                        PayloadError::TooLarge => "too large".to_owned(),
                        PayloadError::Broken(detail) => detail,
                    })
                })
                .collect(),
        )
    }

    proptest! {
        #![proptest_config(config(1000))]

        /// The payloads are the same however the body is cut, each is bounded by its frame,
        /// and the first error ends them.
        #[test]
        fn fuzz_event_stream_frames_read_the_same_however_they_are_cut(
            body in body(),
            cuts in cuts(),
            max in prop_oneof![Just(64usize), Just(1 << 20)],
        ) {
            let whole = read(vec![body.clone()], max);
            prop_assert_eq!(&read(cut(&body, &cuts), max), &whole);
            let text: usize = whole.iter().map(|p| p.as_ref().map_or(0, String::len)).sum();
            // Invalid UTF-8 becomes U+FFFD (3 bytes), plus the JSON around each payload.
            prop_assert!(text <= 3 * body.len() + 128 * whole.len());
            if let Some(first_error) = whole.iter().position(Result::is_err) {
                prop_assert_eq!(first_error, whole.len() - 1);
            }
        }

        #[test]
        fn fuzz_any_bytes_are_frames_or_an_error(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in cuts(),
        ) {
            let whole = read(vec![body.clone()], 1 << 20);
            prop_assert_eq!(read(cut(&body, &cuts), 1 << 20), whole);
        }
    }
}
