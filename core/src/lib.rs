//! agentq-core: everything the api, worker and scheduler processes share.
//!
//! ARCHITECTURE.md §2 is the map. PostgreSQL is the source of truth ([`store`]); Redis
//! carries jobs ([`queue`]) and live chat events ([`events`]), both of which can be lost and
//! rebuilt from PostgreSQL; [`outcome`] is the one place that turns a committed change
//! into events and jobs. No other crate writes SQL or knows a Redis key name.

pub mod auth;
pub mod chat_query;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
#[cfg(test)]
mod fuzzing;
pub mod metrics;
pub mod notifications;
pub mod oauth;
pub mod outcome;
pub mod queue;
pub mod rate_limit;
pub mod redis_conn;
pub mod secrets;
pub mod services;
pub mod shutdown;
pub mod skill_md;
pub mod store;
pub mod text;

pub use error::{ChatError, ChatErrorKind, StoreError};
