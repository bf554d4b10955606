//! One provider attempt, the same for every wire format: send the request, refuse a
//! redirect, read an error body within bounds, or stream the answer through the shared read
//! loop ([`super::sse`]), all within the attempt's deadline ([`ProviderLimits`]). Every
//! error it returns or streams is redacted for the chat's owner ([`Redactor`]).

use futures::StreamExt;
use tokio::time::Instant;

use agentq_core::ChatError;

use super::{
    ProviderStream,
    errors::{from_response, redirect_refused, startup_timeout, transport_error},
    limits::ProviderLimits,
    redact::Redactor,
    sse::{self, Framing, WireParser},
};

/// Sends `request` and streams the answer `parser` reads from its SSE events.
pub(super) async fn send<P: WireParser>(
    request: reqwest::RequestBuilder,
    parser: P,
    limits: &ProviderLimits,
    redactor: &Redactor,
) -> Result<ProviderStream, ChatError> {
    send_framed(request, Framing::Sse, parser, limits, redactor).await
}

/// [`send`] for a body cut into payloads by `framing`.
pub(super) async fn send_framed<P: WireParser>(
    request: reqwest::RequestBuilder,
    framing: Framing,
    parser: P,
    limits: &ProviderLimits,
    redactor: &Redactor,
) -> Result<ProviderStream, ChatError> {
    let deadline = Instant::now() + limits.attempt_deadline;
    let stream = start(request, framing, parser, limits, deadline)
        .await
        .map_err(|e| redactor.error(e))?;
    let redactor = redactor.clone();
    Ok(Box::pin(
        stream.map(move |item| item.map_err(|e| redactor.error(e))),
    ))
}

async fn start<P: WireParser>(
    request: reqwest::RequestBuilder,
    framing: Framing,
    parser: P,
    limits: &ProviderLimits,
    deadline: Instant,
) -> Result<ProviderStream, ChatError> {
    let provider = parser.provider().to_owned();
    let startup = limits.startup_timeout.min(limits.attempt_deadline);
    let response = match tokio::time::timeout(startup, request.send()).await {
        Err(_) => return Err(startup_timeout(&provider, startup)),
        Ok(Err(e)) => return Err(transport_error(&provider, e)),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    // The client follows no redirect (see `http_client`), so a 3xx arrives here.
    if status.is_redirection() {
        return Err(redirect_refused(&provider, status.as_u16()));
    }
    if !status.is_success() {
        let until = (Instant::now() + limits.error_body_timeout).min(deadline);
        return Err(from_response(&provider, response, until).await);
    }
    Ok(sse::answer_stream(
        response, framing, parser, limits, deadline,
    ))
}
