//! A TCP proxy on 127.0.0.1 in front of PostgreSQL that can make some of its connections
//! go silent: their bytes stop flowing both ways while both sockets stay open, as when a
//! peer vanishes or a middlebox drops a half-open connection. Nothing is closed or reset,
//! so the client learns of it only by a timeout of its own.
//!
//! Which connections go silent is decided by their startup message, which names the
//! client's `application_name` in clear text: connect with TLS off
//! (`PgSslMode::Disable`), or the proxy sees only the TLS handshake.

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};

/// The startup message is at most this long (PostgreSQL refuses longer ones).
const MAX_STARTUP: usize = 10_000;

pub struct SilentProxy {
    /// The port to connect to instead of PostgreSQL's.
    pub port: u16,
    /// Whether marked connections are silent now.
    silent: watch::Sender<bool>,
    /// Accepts connections; owns their tasks, so aborting it closes every socket.
    accepting: tokio::task::JoinHandle<()>,
}

impl SilentProxy {
    /// Forwards connections to `upstream` (`host:port`); those whose startup message
    /// contains `marked` (an `application_name`) go silent while [`SilentProxy::silence`]
    /// holds: the open ones for good, a new one from its first byte.
    pub async fn start(upstream: String, marked: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (silent, watching) = watch::channel(false);
        let marked = marked.as_bytes().to_vec();
        let accepting = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (watching, marked, upstream) =
                    (watching.clone(), marked.clone(), upstream.clone());
                connections.spawn(async move {
                    let _ = forward(client, &upstream, &marked, watching).await;
                });
            }
        });
        Self {
            port,
            silent,
            accepting,
        }
    }

    /// From now on the marked connections pass no byte either way.
    pub fn silence(&self) {
        self.silent.send_replace(true);
    }

    /// New marked connections pass again, and those that arrived while silent are closed
    /// (their client tries again); those silenced while open stay silent.
    pub fn heal(&self) {
        self.silent.send_replace(false);
    }
}

impl Drop for SilentProxy {
    /// Closes every connection, the silent ones too, so their PostgreSQL sessions end and
    /// the test's database can be dropped.
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: &str,
    marked: &[u8],
    mut silent: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The startup message: a 4-byte length (itself included), then the rest.
    let mut length = [0u8; 4];
    client.read_exact(&mut length).await?;
    let rest = (u32::from_be_bytes(length) as usize).clamp(4, MAX_STARTUP) - 4;
    let mut startup = vec![0u8; rest];
    client.read_exact(&mut startup).await?;
    let is_marked = startup.windows(marked.len()).any(|w| w == marked);
    if is_marked && *silent.borrow() {
        // Held, unanswered, until the proxy heals; then closed.
        let _ = silent.wait_for(|silent| !silent).await;
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&length).await?;
    server.write_all(&startup).await?;
    let gate = is_marked.then_some(silent);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, gate.clone()) => {}
        _ = pump(server_read, client_write, gate) => {}
    }
    Ok(())
}

/// Copies `from` to `to` until either ends; once `gate` says silent, holds both open and
/// passes nothing more (what it read meanwhile is dropped).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    gate: Option<watch::Receiver<bool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if gate.as_ref().is_some_and(|g| *g.borrow()) {
            // Silent: keep the sockets, answer nothing, ever.
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..read]).await.is_err() {
            return;
        }
    }
}
