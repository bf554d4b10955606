//! Where an outbox email stands (ARCHITECTURE.md §4.4).

use serde::{Deserialize, Serialize};

/// Lifecycle of an outbox email; every transition is one function in
/// `store::notifications` fenced by the claim's attempt number. The
/// `notification_messages.status` CHECK constraint lists the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting to be sent (first try, or a retry after its backoff).
    Queued,
    /// A mail worker claimed it and holds the lease.
    Sending,
    /// Delivered; never sent again.
    Sent,
    /// Rejected for good, or out of attempts.
    Failed,
}
