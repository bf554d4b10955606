//! Process-wide shutdown signal.
//!
//! Every long-running loop (queue fetchers, ack flushers, the HTTP server, scheduler ticks)
//! watches one [`CancellationToken`], so SIGTERM drains a process in a known order instead of
//! dropping work mid-flight.

pub use tokio_util::sync::CancellationToken;

/// Resolves on SIGINT or SIGTERM; the binary cancels its token when this returns.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
