//! agentq-worker: consumes the `turns`, `tools` and `mail` queues and runs each job.
//!
//! [`runtime`] wires the Redis Streams backend from `core::queue` into apalis workers;
//! [`turn`] runs one chat turn against a provider from [`providers`]; [`tools`] runs tool
//! calls; [`mail`] delivers outbox emails; [`instructions`] composes each step's system
//! message.

#[cfg(test)]
mod fuzzing;
pub mod instructions;
pub mod leases;
pub mod mail;
pub mod models;
pub mod providers;
pub mod runtime;
pub mod tools;
pub mod turn;

pub use mail::MailSender;
pub use runtime::{Engines, WorkerHandle, engine, start};
