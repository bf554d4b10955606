//! Signalling the private servers by pid with kill(2) (through `nix`): their clean
//! shutdown signal, and signal 0 to tell whether an adopted server still lives.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Sends `signal` to `pid`; whether it was delivered.
pub(super) fn send_signal(pid: u32, signal: Signal) -> bool {
    kill(as_pid(pid), signal).is_ok()
}

/// Whether `pid` is a live process we may signal (signal 0 tests without sending).
pub(super) fn process_is_alive(pid: u32) -> bool {
    kill(as_pid(pid), None).is_ok()
}

pub(super) fn as_pid(pid: u32) -> Pid {
    // Pids fit in an i32 (the kernel's `pid_t`); a larger value names no process.
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}
