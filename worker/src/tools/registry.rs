//! The tool registry (issue #12, item 1; ARCHITECTURE.md §7): the one place that decides
//! which tools a step offers the model and that runs a call by name.
//!
//! Tools come from sources ([`ToolSource`]): the builtins, the skill tool `read_skill`
//! (offered when the chat's owner has a skill), the tools of the chat's MCP servers
//! (`super::mcp`: listed before the step, [`StepTools::mcp`]), the subagent tools
//! (`spawn_subagent`, `wait_agent`, `message_agent`, `close_agent`; `super::subagents`),
//! the chat's client-defined tools, and plan mode's `ask_user_question` and `propose_plan`
//! (a plan step keeps only the tools that change nothing, `super::plan_mode`). A new source
//! is a new variant with its own branch in [`ToolRegistry::offer`] and
//! [`ToolRegistry::execute`].
//!
//! A step's offer ([`Offer`]) is decided once, before the request is sent; the model's
//! calls are classified against that same offer ([`Offer::call`]) and each call row stores
//! the source that offered it, or `not_offered` (column `tool_calls.source`). A worker that
//! runs the call later, in any process and after any crash, runs it from that stored source,
//! never from what the registry would offer now; a `not_offered` call (a hallucinated
//! name, a builtin this step did not offer, `read_skill` for a user without skills) is
//! answered with an error result and nothing runs.
//!
//! Names are compared exactly, case included: `Sleep` is not `sleep`. Providers pass names
//! through verbatim, so a different case is a different (unoffered) tool, and a loose match
//! could run a tool the model did not name. When two sources offer the same name, the
//! earlier source wins (worker tools before client tools; the API refuses client tools
//! named like a worker tool, so this only guards old chats).
//!
//! ```
//! use agentq_worker::tools::{StepTools, SubagentTools, ToolRegistry, ToolSource};
//!
//! let registry = ToolRegistry::default();
//! let offer = registry.offer(&StepTools::default());
//! assert_eq!(offer.source_of("sleep"), Some(ToolSource::Builtin));
//! assert_eq!(offer.source_of("read_skill"), None);
//! let call = offer.call("call_1".into(), "not_a_tool".into(), serde_json::json!({}));
//! assert_eq!(call.source, "not_offered");
//! assert!(!call.dynamic);
//! ```

use std::sync::Arc;

use agentq_core::{
    StoreError,
    domain::{DynamicTool, ToolCallRow},
    events::EventPublisher,
    queue::Producer,
    store::{NewToolCall, Store},
};
use serde_json::Value;

use super::{
    Builtins,
    mcp::{McpOffer, McpTools},
    plan_mode,
    skill::{READ_SKILL_TOOL, read_skill, read_skill_spec},
    subagents::{self, SubagentTools},
};
use crate::providers::ToolSpec;

/// Where an offered tool comes from, and so who runs a call to it.
///
/// Stored per call as text (`tool_calls.source`, [`ToolSource::as_str`]). Sources to come,
/// each a variant here: `Subagent` (`spawn_subagent`, `wait_agent`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSource {
    /// A builtin ([`Builtins`]); a worker runs it.
    Builtin,
    /// The skill tool `read_skill`; a worker runs it.
    Skill,
    /// A tool the chat's client defined; the client runs it (`requires_action`).
    Client,
    /// `<slug>__<tool>` of one of the chat's MCP servers; a worker calls the server.
    Mcp,
    /// Plan mode's `ask_user_question` and `propose_plan`; a worker runs them, and one
    /// that succeeds hands the turn to the user (`super::plan_mode`).
    PlanMode,
    /// A subagent tool (`spawn_subagent`, `wait_agent`, ...); a worker runs it.
    Subagent,
    /// A subagent tool as plan mode offers them: `spawn_subagent` accepts only `explore`.
    ExploreSubagent,
}

/// What `tool_calls.source` says of a call the step did not offer.
pub const NOT_OFFERED: &str = "not_offered";

impl ToolSource {
    /// The stored name of the source.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Skill => "skill",
            Self::Client => "client",
            Self::Mcp => "mcp",
            Self::PlanMode => "plan_mode",
            Self::Subagent => "subagent",
            Self::ExploreSubagent => "explore_subagent",
        }
    }

    /// The source a stored name means; `None` for `not_offered` (and anything unknown, so
    /// a call recorded by a newer worker is refused by an older one, never misrun).
    pub fn from_stored(stored: &str) -> Option<Self> {
        match stored {
            "builtin" => Some(Self::Builtin),
            "skill" => Some(Self::Skill),
            "client" => Some(Self::Client),
            "mcp" => Some(Self::Mcp),
            "plan_mode" => Some(Self::PlanMode),
            "subagent" => Some(Self::Subagent),
            "explore_subagent" => Some(Self::ExploreSubagent),
            _ => None,
        }
    }
}

/// What a step's offer depends on (read once per step, before the request).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTools<'a> {
    /// The chat's client-defined tools.
    pub dynamic_tools: &'a [DynamicTool],
    /// Whether the chat's owner has at least one skill.
    pub has_skills: bool,
    /// The tools of the chat's MCP servers, listed for this step ([`McpTools::offer`]).
    pub mcp: Option<&'a McpOffer>,
    /// Whether the chat is in plan mode: only tools that change nothing (MCP tools only of
    /// servers with `allow_in_plan_mode`), plus the plan-mode tools (`super::plan_mode`).
    pub plan_mode: bool,
    /// Which subagent tools the chat gets (none for a subagent; `explore` children only in
    /// plan mode, [`SubagentTools::for_chat`]).
    pub subagents: SubagentTools,
    /// An `explore` subagent: only tools that change nothing (builtins that change nothing,
    /// `read_skill`, MCP tools whose server marks them `readOnlyHint`).
    pub read_only: bool,
}

/// One offered tool.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    /// What the model is told.
    pub spec: ToolSpec,
    /// Where it comes from.
    pub source: ToolSource,
}

/// The tools one step offers, in the order the model sees them.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    tools: Vec<OfferedTool>,
    /// MCP servers left out of this step because they could not be listed: `(slug, why)`.
    mcp_unavailable: Vec<(String, String)>,
}

impl Offer {
    /// Adds a tool unless an earlier source offers its name already.
    fn push(&mut self, spec: ToolSpec, source: ToolSource) {
        if self.source_of(&spec.name).is_some() {
            tracing::warn!(tool = %spec.name, source = source.as_str(), "a tool of this name is offered already; not offering it twice");
            return;
        }
        self.tools.push(OfferedTool { spec, source });
    }

    /// Keeps only the tools `keep` accepts.
    fn retain(&mut self, keep: impl FnMut(&OfferedTool) -> bool) {
        self.tools.retain(keep);
    }

    /// The specs to send the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec.clone()).collect()
    }

    /// The offered tools.
    pub fn tools(&self) -> &[OfferedTool] {
        &self.tools
    }

    /// Where the offered tool `name` comes from (exact match); `None`: not offered.
    pub fn source_of(&self, name: &str) -> Option<ToolSource> {
        self.tools
            .iter()
            .find(|t| t.spec.name == name)
            .map(|t| t.source)
    }

    /// A call the model made, classified against this offer: the client answers calls to
    /// its own tools; a worker answers every other call, refusing it when not offered.
    pub fn call(&self, provider_call_id: String, name: String, arguments: Value) -> NewToolCall {
        let source = self.source_of(&name);
        if source.is_none() {
            tracing::info!(tool = %name, "the model called a tool this step did not offer; it gets an error result");
        }
        NewToolCall {
            dynamic: source == Some(ToolSource::Client),
            source: source.map_or(NOT_OFFERED, ToolSource::as_str).to_owned(),
            provider_call_id,
            name,
            arguments,
        }
    }

    /// How to use the offered tools that need saying, for the system message's tool
    /// guidance part ('' when none does). Kept short: the specs say the rest.
    pub fn guidance(&self) -> String {
        let mut lines = Vec::new();
        if self.source_of(READ_SKILL_TOOL) == Some(ToolSource::Skill) {
            lines.push(format!(
                "- `{READ_SKILL_TOOL}`: call it before a task that a skill covers, and follow \
                 the skill it returns over your own habits."
            ));
        }
        for (slug, reason) in &self.mcp_unavailable {
            lines.push(format!(
                "- MCP server `{slug}` is unavailable right now ({reason}); its tools \
                 (`{slug}__*`) are not offered in this step. If the task needs them, say so."
            ));
        }
        if self.source_of(plan_mode::PROPOSE_PLAN_TOOL) == Some(ToolSource::PlanMode) {
            lines.push(plan_mode::GUIDANCE.to_owned());
        }
        if lines.is_empty() {
            return String::new();
        }
        format!("# Tools\n\n{}", lines.join("\n"))
    }
}

/// What a tool call produced: `Ok` a result, `Err` an error result the model sees (the
/// turn goes on either way).
pub type ToolOutput = Result<Value, String>;

/// What running a call came to.
#[derive(Debug)]
pub enum Execution {
    /// The call's output: store it (and fan in).
    Done(ToolOutput),
    /// The call is not finished by this run and stores nothing now: a `wait_agent` call
    /// parked until its child finishes (or its lease was lost meanwhile).
    Waiting,
}

/// What a running call may use besides its row.
#[derive(Clone, Copy)]
pub struct ToolContext<'a> {
    /// The database.
    pub store: &'a Store,
    /// Publishes the events of what a tool changed (a spawned child's first message).
    pub events: &'a EventPublisher,
    /// Enqueues the jobs of what a tool changed (a spawned child's turn).
    pub producer: &'a Producer,
    /// The lease owner of this acquisition of the call.
    pub lease_owner: &'a str,
}

/// The tool sources a worker knows; shared by the turn engine (offer) and the tool runner
/// (execute).
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    builtins: Builtins,
    /// The MCP source; `None`: MCP tools are neither offered nor run.
    mcp: Option<Arc<McpTools>>,
}

impl ToolRegistry {
    /// The registry with MCP servers as a source (one [`McpTools`] per worker process,
    /// shared by its turns and tool calls, so they share its tools-list cache).
    pub fn with_mcp(mcp: Arc<McpTools>) -> Self {
        Self {
            mcp: Some(mcp),
            ..Self::default()
        }
    }

    /// The MCP source, to list a step's MCP tools before [`ToolRegistry::offer`].
    pub fn mcp(&self) -> Option<&McpTools> {
        self.mcp.as_deref()
    }

    /// What one step offers: the builtins (only those that change nothing to a read-only
    /// subagent), `read_skill` when the owner has a skill, the MCP tools listed for the
    /// step, the subagent tools, then the client's tools; in plan mode only those that
    /// change nothing (MCP tools only of servers allowed in it), then `ask_user_question`
    /// and `propose_plan`.
    pub fn offer(&self, step: &StepTools<'_>) -> Offer {
        let mut offer = Offer::default();
        for spec in self.builtins.specs() {
            if !step.read_only || self.builtins.changes_nothing(&spec.name) {
                offer.push(spec, ToolSource::Builtin);
            }
        }
        if step.has_skills {
            offer.push(read_skill_spec(), ToolSource::Skill);
        }
        if let Some(mcp) = step.mcp {
            // Plan steps see only servers whose site owner allows them in plan mode;
            // `explore` children only tools the server marks `readOnlyHint`.
            let shown = |allowed: bool| allowed || !step.plan_mode;
            let tools = mcp
                .tools
                .iter()
                .filter(|t| shown(t.allow_in_plan_mode) && (t.read_only || !step.read_only));
            for tool in tools {
                offer.push(tool.spec.clone(), ToolSource::Mcp);
            }
            offer.mcp_unavailable = mcp
                .unavailable
                .iter()
                .filter(|s| shown(s.allow_in_plan_mode))
                .map(|s| (s.slug.clone(), s.reason.clone()))
                .collect();
        }
        for (spec, source) in subagents::specs(step.subagents) {
            offer.push(spec, source);
        }
        for tool in step.dynamic_tools {
            offer.push(
                ToolSpec {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    input_schema: std::sync::Arc::new(tool.input_schema.clone()),
                },
                ToolSource::Client,
            );
        }
        if step.plan_mode {
            offer.retain(|tool| plan_mode::allowed(tool, &self.builtins));
            for spec in plan_mode::specs() {
                offer.push(spec, ToolSource::PlanMode);
            }
        }
        offer
    }

    /// Runs `call` from the source its step offered it from (`tool_calls.source`); a call
    /// that was not offered runs nothing and gets an error result naming the tool. `Err`
    /// only when the database fails (the job is retried).
    pub async fn execute(
        &self,
        ctx: &ToolContext<'_>,
        call: &ToolCallRow,
    ) -> Result<Execution, StoreError> {
        let (store, name) = (ctx.store, call.name.as_str());
        Ok(Execution::Done(
            match ToolSource::from_stored(&call.source) {
                Some(ToolSource::Builtin) if self.builtins.has(name) => {
                    self.builtins.run(name, &call.arguments).await
                }
                Some(ToolSource::Skill) if name == READ_SKILL_TOOL => {
                    read_skill(store, call.chat_id, &call.arguments).await?
                }
                Some(ToolSource::Mcp) => match &self.mcp {
                    Some(mcp) => mcp.execute(store, call).await?,
                    None => Err(format!(
                        "`{name}` is an MCP tool, and this worker runs no MCP client; nothing was run"
                    )),
                },
                Some(ToolSource::PlanMode) => plan_mode::execute(store, call).await?,
                // The client answers its own tools; a worker never runs one.
                Some(ToolSource::Client) => Err(format!(
                    "`{name}` is a tool of the client, which answers it itself; agentq did not run it"
                )),
                Some(source @ (ToolSource::Subagent | ToolSource::ExploreSubagent)) => {
                    return subagents::execute(ctx, call, source == ToolSource::ExploreSubagent)
                        .await;
                }
                _ => Err(not_offered(name)),
            },
        ))
    }
}

/// The error result of a call to a tool the step did not offer.
pub(super) fn not_offered(name: &str) -> String {
    format!(
        "`{name}` is not a tool offered in this step (names are exact, case included), so \
         nothing was run; call only the tools listed in the request"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client_tool(name: &str) -> DynamicTool {
        DynamicTool {
            name: name.into(),
            description: "a client tool".into(),
            input_schema: json!({"type": "object"}),
        }
    }

    #[test]
    fn a_step_offers_builtins_then_read_skill_then_client_tools() {
        let registry = ToolRegistry::default();
        let tools = [client_tool("open_file")];
        let offer = registry.offer(&StepTools {
            dynamic_tools: &tools,
            has_skills: true,
            ..StepTools::default()
        });
        let names: Vec<String> = offer.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["current_time", "sleep", "read_skill", "open_file"]);
        assert_eq!(offer.source_of("open_file"), Some(ToolSource::Client));
        assert!(offer.guidance().contains("`read_skill`"));

        let without = registry.offer(&StepTools {
            ..StepTools::default()
        });
        assert_eq!(without.source_of("read_skill"), None);
        assert_eq!(without.guidance(), "");
    }

    #[test]
    fn calls_are_classified_exactly_against_the_offer() {
        let offer = ToolRegistry::default().offer(&StepTools {
            dynamic_tools: &[client_tool("open_file")],
            ..StepTools::default()
        });
        let call = |name: &str| offer.call("id".into(), name.into(), json!({}));
        assert_eq!(call("sleep").source, "builtin");
        assert_eq!(call("Sleep").source, NOT_OFFERED);
        assert_eq!(call("read_skill").source, NOT_OFFERED);
        assert_eq!(call("not_a_tool").source, NOT_OFFERED);
        assert!(call("open_file").dynamic);
        assert!(!call("not_a_tool").dynamic);
    }

    #[test]
    fn a_client_tool_never_shadows_a_worker_tool() {
        let offer = ToolRegistry::default().offer(&StepTools {
            dynamic_tools: &[client_tool("sleep")],
            ..StepTools::default()
        });
        assert_eq!(offer.specs().len(), 2);
        assert_eq!(offer.source_of("sleep"), Some(ToolSource::Builtin));
    }

    #[test]
    fn a_plan_step_offers_only_what_changes_nothing_and_the_plan_tools() {
        let registry = ToolRegistry::default();
        let tools = [client_tool("open_file")];
        let offer = registry.offer(&StepTools {
            dynamic_tools: &tools,
            has_skills: true,
            plan_mode: true,
            subagents: SubagentTools::for_chat(None, true),
            ..StepTools::default()
        });
        let names: Vec<String> = offer.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "current_time",
                "sleep",
                "read_skill",
                "spawn_subagent",
                "wait_agent",
                "ask_user_question",
                "propose_plan"
            ]
        );
        assert_eq!(
            offer.source_of("spawn_subagent"),
            Some(ToolSource::ExploreSubagent)
        );
        assert_eq!(
            offer
                .call("id".into(), "open_file".into(), json!({}))
                .source,
            NOT_OFFERED
        );
        assert!(offer.guidance().contains("plan mode"));
        let normal = registry.offer(&StepTools {
            dynamic_tools: &tools,
            subagents: SubagentTools::for_chat(None, false),
            ..StepTools::default()
        });
        assert_eq!(
            normal.source_of("spawn_subagent"),
            Some(ToolSource::Subagent)
        );
        assert_eq!(
            normal.source_of("message_agent"),
            Some(ToolSource::Subagent)
        );
        assert_eq!(normal.source_of("propose_plan"), None);
        assert_eq!(normal.source_of("ask_user_question"), None);
    }

    #[test]
    fn stored_sources_read_back_and_unknown_ones_are_refused() {
        for source in [
            ToolSource::Builtin,
            ToolSource::Skill,
            ToolSource::Client,
            ToolSource::Mcp,
            ToolSource::PlanMode,
            ToolSource::Subagent,
            ToolSource::ExploreSubagent,
        ] {
            assert_eq!(ToolSource::from_stored(source.as_str()), Some(source));
        }
        assert_eq!(ToolSource::from_stored(NOT_OFFERED), None);
        assert_eq!(ToolSource::from_stored("a_source_of_tomorrow"), None);
    }

    #[test]
    fn mcp_tools_are_offered_before_client_tools_and_plan_mode_keeps_only_allowed_servers() {
        use super::super::mcp::{McpOfferedTool, UnavailableServer};
        let tool = |name: &str, allow_in_plan_mode, read_only| McpOfferedTool {
            spec: ToolSpec {
                name: name.into(),
                description: String::new(),
                input_schema: std::sync::Arc::new(json!({"type": "object"})),
            },
            allow_in_plan_mode,
            read_only,
        };
        let mcp = McpOffer {
            tools: vec![
                tool("docs__search", true, false),
                tool("git__push", false, false),
                tool("git__log", false, true),
            ],
            unavailable: vec![UnavailableServer {
                slug: "wiki".into(),
                reason: "MCP server `wiki` is unreachable: refused".into(),
                allow_in_plan_mode: false,
            }],
        };
        let registry = ToolRegistry::default();
        let offer = registry.offer(&StepTools {
            dynamic_tools: &[client_tool("open_file")],
            mcp: Some(&mcp),
            ..StepTools::default()
        });
        let names: Vec<String> = offer.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "current_time",
                "sleep",
                "docs__search",
                "git__push",
                "git__log",
                "open_file"
            ]
        );
        assert_eq!(
            offer.call("c".into(), "git__push".into(), json!({})).source,
            "mcp"
        );
        assert!(
            offer
                .guidance()
                .contains("MCP server `wiki` is unavailable")
        );

        let plan = registry.offer(&StepTools {
            mcp: Some(&mcp),
            plan_mode: true,
            ..StepTools::default()
        });
        assert_eq!(plan.source_of("docs__search"), Some(ToolSource::Mcp));
        assert_eq!(plan.source_of("git__push"), None);
        assert_eq!(plan.source_of("git__log"), None);
        assert!(!plan.guidance().contains("wiki"), "{}", plan.guidance());

        // An `explore` child: only the tools its servers mark `readOnlyHint`.
        let explore = registry.offer(&StepTools {
            mcp: Some(&mcp),
            read_only: true,
            ..StepTools::default()
        });
        assert_eq!(explore.source_of("git__log"), Some(ToolSource::Mcp));
        assert_eq!(explore.source_of("docs__search"), None);
        assert_eq!(explore.source_of("git__push"), None);
    }
}
