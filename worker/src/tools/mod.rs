//! The tools a model is offered and the calls a worker runs, each call its own
//! `RunToolCall` job (ARCHITECTURE.md §7): the [`ToolRegistry`] decides a step's offer
//! and runs a call from the source that offered it; [`ToolRunner`] runs the job around it.
//! Client-defined tools are offered here but never run on a worker.

mod builtin;
pub mod mcp;
mod plan_mode;
mod registry;
mod runner;
mod skill;
mod subagents;

pub use builtin::Builtins;
pub use plan_mode::{ASK_USER_QUESTION_TOOL, MAX_PLAN_BYTES, PROPOSE_PLAN_TOOL};
pub use registry::{
    Execution, NOT_OFFERED, Offer, OfferedTool, StepTools, ToolContext, ToolOutput, ToolRegistry,
    ToolSource,
};
pub use runner::ToolRunner;
pub use skill::READ_SKILL_TOOL;
pub use subagents::{
    MAX_LIVE_SUBAGENTS, MAX_SUBAGENT_PROMPT_BYTES, MAX_SUBAGENTS_PER_CHAT, MAX_WAIT_SECS,
    SubagentTools,
};
