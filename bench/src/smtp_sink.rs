//! A real SMTP server on 127.0.0.1 (mailin-embedded on its own threads, as
//! tests/support/smtp.rs runs it) that only counts the messages it accepts: the digest
//! scenario's mail server. Its threads end with the bench process.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use mailin_embedded::{Handler, Response, Server, response};

#[derive(Clone)]
struct Counter(Arc<AtomicUsize>);

impl Handler for Counter {
    fn data(&mut self, _buf: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.0.fetch_add(1, Ordering::Relaxed);
        response::OK
    }
}

/// A running SMTP sink.
pub struct SmtpSink {
    pub port: u16,
    received: Arc<AtomicUsize>,
}

impl SmtpSink {
    /// Starts a sink on a free port, serving `threads` connections at once.
    pub fn start(threads: u32) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicUsize::new(0));
        let mut server = Server::new(Counter(received.clone()));
        server
            .with_name("sink.bench")
            .with_num_threads(threads)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Ok(Self { port, received })
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Messages accepted so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}
