//! Where a turn's debug run stands (ARCHITECTURE.md §4.2): it follows its turn, step by step.

use serde::{Deserialize, Serialize};

/// Lifecycle of a debug run. `running` while a step calls the provider; after the step it
/// says how the step ended, `awaiting_tools` until the next step starts it `running` again.
/// The `chat_debug_runs.status` CHECK constraint lists the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DebugRunStatus {
    /// A step is calling the provider.
    Running,
    /// The step asked for tools; the next step runs the run again.
    AwaitingTools,
    /// The turn answered.
    Completed,
    /// The step failed (or its worker lost the lease).
    Failed,
    /// The user stopped the turn.
    Interrupted,
}

impl DebugRunStatus {
    /// Whether the run is over (`awaiting_tools` and `running` are not).
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            DebugRunStatus::Running | DebugRunStatus::AwaitingTools
        )
    }
}
