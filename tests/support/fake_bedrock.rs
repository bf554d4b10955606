//! A real HTTP server on 127.0.0.1 speaking Bedrock's Converse stream
//! (`POST /model/{modelId}/converse-stream`): it checks every request's credentials (a
//! bearer token, or a SigV4 signature recomputed with `aws-sigv4` from the known access key
//! and secret), keeps what it received, and answers each request with the next scripted
//! [`Reply`] as binary event-stream frames (a short text once the script is empty).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::{
    Router,
    body::Bytes,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// The access key id the fake accepts signatures of.
pub const ACCESS_KEY_ID: &str = "AKIAFAKEBEDROCK00001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "fake/secret+key/for/the/bedrock/tests/0001";
/// The session token that goes with them.
pub const SESSION_TOKEN: &str = "fake-session-token-for-bedrock";
/// The bearer token (Bedrock API key) the fake accepts.
pub const BEARER_TOKEN: &str = "bedrock-api-key-fake-0001";
/// The text every unscripted answer streams.
pub const ANSWER: &str = "Hello from the fake Bedrock.";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A text answer, in two deltas.
    Text(String),
    /// A short text, then one `toolUse` block: id, tool name, input (streamed in two pieces).
    ToolUse(String, String, Value),
    /// A text delta, then an exception frame of this type and message.
    Exception(String, String),
    /// An HTTP error: status, `x-amzn-ErrorType`, message.
    Http(u16, String, String),
}

/// How a received request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// A valid SigV4 signature by [`ACCESS_KEY_ID`] for this region and service.
    SigV4 {
        /// The region of the credential scope.
        region: String,
        /// The service of the credential scope.
        service: String,
        /// The signed headers.
        signed_headers: String,
        /// The session token sent.
        session_token: Option<String>,
    },
}

/// One request the fake accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The model id, decoded from the path.
    pub model: String,
    /// How it was authenticated.
    pub auth: Auth,
    /// Its JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    refused: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Reply>>,
}

/// A running fake.
pub struct FakeBedrock {
    /// `http://127.0.0.1:<port>`, the provider's base URL.
    pub base_url: String,
    shared: Arc<Shared>,
}

impl FakeBedrock {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let shared: Arc<Shared> = Arc::default();
        let app = Router::new()
            .route("/model/{model}/converse-stream", post(converse_stream))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            shared,
        }
    }

    /// Requests accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Why requests were refused (a bad signature or token), so far.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// Answers the next accepted requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }
}

async fn converse_stream(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    let auth = match authenticate(&parts.headers, parts.uri.path(), &body) {
        Ok(auth) => auth,
        Err(why) => {
            shared.refused.lock().unwrap().push(why.clone());
            return http_error(403, "InvalidSignatureException", &why);
        }
    };
    shared.received.lock().unwrap().push(Received {
        model,
        auth,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::Text(ANSWER.into()));
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    let text = |index: u64, text: &str| {
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": index, "delta": {"text": text}}),
        )
    };
    let stop_reason = match reply {
        Reply::Http(status, kind, message) => return http_error(status, &kind, &message),
        Reply::Exception(kind, message) => {
            frames.push(text(0, "Partial "));
            frames.push(frame(
                &[
                    (":message-type", "exception"),
                    (":exception-type", &kind),
                    (":content-type", "application/json"),
                ],
                &json!({ "message": message }).to_string(),
            ));
            return stream(frames);
        }
        Reply::Text(answer) => {
            let (a, b) = answer.split_at(answer.len() / 2);
            frames.push(text(0, a));
            frames.push(text(0, b));
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            "end_turn"
        }
        Reply::ToolUse(id, name, input) => {
            frames.push(text(0, "Checking."));
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
            ));
            let input = input.to_string();
            let (a, b) = input.split_at(input.len() / 2);
            for piece in [a, b] {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": 1})));
            "tool_use"
        }
    };
    frames.push(event("messageStop", json!({ "stopReason": stop_reason })));
    frames.push(event(
        "metadata",
        json!({"usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
               "metrics": {"latencyMs": 3}}),
    ));
    stream(frames)
}

fn stream(frames: Vec<Vec<u8>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")],
        frames.concat(),
    )
        .into_response()
}

fn http_error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [
            ("x-amzn-ErrorType", kind.to_owned()),
            ("content-type", "application/json".to_owned()),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn event(kind: &str, payload: Value) -> Vec<u8> {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        &payload.to_string(),
    )
}

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

/// The request's credentials, or why they are refused. A SigV4 signature is checked by
/// signing the same request again with the known secret, at the request's own
/// `x-amz-date`, and comparing the whole `Authorization` header.
fn authenticate(headers: &HeaderMap, path: &str, body: &[u8]) -> Result<Auth, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization").ok_or("no Authorization header")?;
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return if token == BEARER_TOKEN {
            Ok(Auth::Bearer(token.to_owned()))
        } else {
            Err(format!("unknown bearer token {token}"))
        };
    }
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("neither a bearer token nor SigV4")?;
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .ok_or(format!("no {name} in the Authorization header"))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, _day, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("malformed credential scope {credential}"));
    };
    if key_id != ACCESS_KEY_ID {
        return Err(format!("unknown access key {key_id}"));
    }
    let date = header("x-amz-date").ok_or("no x-amz-date")?;
    let time: SystemTime = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
        .map_err(|e| format!("x-amz-date {date}: {e}"))?
        .and_utc()
        .into();
    let session_token = header("x-amz-security-token");
    // The signer adds the date and the session token itself.
    let signed: Vec<(String, String)> = signed_headers
        .split(';')
        .filter(|name| !matches!(*name, "x-amz-date" | "x-amz-security-token"))
        .map(|name| Ok((name.to_owned(), header(name).ok_or(format!("no {name}"))?)))
        .collect::<Result<_, String>>()?;
    let host = header("host").ok_or("no host")?;
    let identity = Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        session_token.clone(),
        None,
        "fake-bedrock",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{host}{path}");
    let request = SignableRequest::new(
        "POST",
        url,
        signed.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let expected = instructions
        .headers()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.to_owned())
        .ok_or("the signer gave no Authorization")?;
    if expected != authorization {
        return Err(format!(
            "signature mismatch: expected {expected}, got {authorization}"
        ));
    }
    Ok(Auth::SigV4 {
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        session_token,
    })
}
