//! Where the scheduler reads the time. Production uses the system clock; tests inject one
//! that runs at a chosen offset, so a tick "on 2026-06-05" happens now.

use chrono::{DateTime, Utc};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock shifted by a fixed offset: time still passes, from another date.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock(pub chrono::Duration);

impl OffsetClock {
    /// A clock whose "now" is `at` at the moment of the call.
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self(at - Utc::now())
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}
