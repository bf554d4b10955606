//! agentq-worker: consumes the `turns` queue (later `tools` and `mail`) and runs each job.
//!
//! [`runtime`] wires the Redis Streams backend from `core::queue` into apalis workers;
//! [`turn`] runs one chat turn against a provider from [`providers`].

pub mod models;
pub mod providers;
pub mod runtime;
pub mod tools;
pub mod turn;

pub use runtime::{Engines, WorkerHandle, engine, start};
