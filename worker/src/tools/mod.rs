//! Tools a worker runs itself ("builtin"), each as its own `RunToolCall` job. MCP servers
//! and subagents plug in here later; client-defined tools never run on a worker.

mod builtin;
pub mod mcp;
mod runner;

pub use builtin::Builtins;
pub use runner::ToolRunner;
