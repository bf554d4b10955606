//! The HTTP/1.1 accept loop, on hyper directly.
//!
//! `axum::serve` builds its connections without a timer, and hyper enforces no
//! header-read timeout without one: a client that opens connections and sends half a
//! request line holds each of them (a socket and a task) for ever. Here every connection
//! gets hyper's Tokio timer and `header_read_timeout`, which hyper counts from when it
//! starts waiting for a request head (the connection opened, or the previous response
//! ended), so it bounds slow headers and idle keep-alive connections alike. The rest
//! matches what `axum::serve` did: `TCP_NODELAY`, and on shutdown no new connections while
//! in-flight requests finish (open event streams end by themselves, see
//! `ApiState::shutdown`).

use std::{io, time::Duration};

use agentq_core::shutdown::CancellationToken;
use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown`, then waits for open connections to finish
/// their requests.
pub(crate) async fn serve_http1(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // SSE writes many small frames; without TCP_NODELAY, Nagle's algorithm holds each
        // one back until the previous is acknowledged (about 40 ms with delayed ACKs).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header-read timeouts, resets and clients that go away mid-request.
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// Errors of one connection (it was reset before we took it) are nothing to wait for;
/// others (out of file descriptors) would make the loop spin, so it pauses.
async fn accept_failed(e: io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused => {}
        _ => {
            tracing::error!(error = %e, "accepting connections failed; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
