//! Everything this test process logs, kept in memory so a test can search it: the API and
//! the workers `TestApp` runs in-process log through the global `tracing` subscriber, which
//! [`capture`] installs at `debug` for every crate (more than an operator's default `info`),
//! in the JSON format with each event's spans and their fields.
//!
//! One subscriber per process: nextest runs each test in its own, so a test that captures
//! sees only its own lines.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter, prelude::*};

/// The lines logged since [`capture`] was first called in this process.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// How many lines were logged so far.
    pub fn line_count(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Starts capturing (once per process) and returns the capture.
pub fn capture() -> CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        tracing_subscriber::registry()
            .with(EnvFilter::new("debug"))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(logs.clone()),
            )
            .try_init()
            .expect("no other subscriber in a test that captures logs");
        logs
    })
    .clone()
}
