//! The event protocol: what a committed change of a chat tells its clients (events on the
//! chat's stream) and which jobs it starts (ARCHITECTURE.md §8.1).
//!
//! Every process that changes a chat (the API, a worker running a turn or a tool call, the
//! scheduler's recovery) commits through [`crate::store`], wraps what the store returned in a
//! [`ChatOutcome`], and calls [`ChatOutcome::announce`]: this module is the one place that
//! says which events an outcome publishes, in which order, and which `RunTurn` /
//! `RunToolCall` jobs follow it. Events first, then jobs, so a client never sees a new step's
//! deltas before the status that announces it.
//!
//! An outcome a chat list shows (a chat created, its status, title, archive state or pin
//! changed, a chat deleted) is also reported to the process's chat list announcer
//! ([`ChatOutcome::list_change`], ARCHITECTURE.md §8.2), which publishes it on the owner's
//! list stream (`GET /chats/events`).
//!
//! Enqueueing can fail (Redis down). The change is committed in PostgreSQL by then, and
//! recovery re-enqueues whatever waits too long (ARCHITECTURE.md §7), so callers do not undo
//! anything: the API logs a warning, a job fails (its retry finds nothing to do), a recovery
//! tick reports the error.
//!
//! ```no_run
//! # async fn example(
//! #     store: &agentq_core::store::Store,
//! #     events: &agentq_core::events::EventPublisher,
//! #     producer: &agentq_core::queue::Producer,
//! #     call: &agentq_core::domain::ToolCallRow,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use agentq_core::outcome::ChatOutcome;
//! let output = serde_json::json!({ "ok": true });
//! if let Some(fan_in) = store.finish_tool_call(call, "worker-1/abc", &output, false).await? {
//!     // The step's last call: the results message, `pending`, and the turn's next job.
//!     ChatOutcome::FannedIn(fan_in).announce(events, producer).await?;
//! }
//! # Ok(())
//! # }
//! ```

use uuid::Uuid;

use crate::{
    ChatError, ChatErrorKind,
    domain::{ChatStatus, Message},
    events::{ActionToolCall, ChatEvent, ChatListChange, EventPublisher},
    queue::{Producer, RunToolCall, RunTurn},
    store::{ChatListEntry, FanIn, Rewrite, ToolStep, TurnOutcome},
};

/// A committed change of a chat, as the store reported it.
#[derive(Debug, Clone)]
pub enum ChatOutcome {
    /// A chat was created with its first user message and turn: by `POST /chats`, or a
    /// subagent chat by `spawn_subagent`. Its events are `TurnStarted`'s.
    Created {
        /// The chat.
        chat_id: Uuid,
        /// The persisted user message.
        message: Message,
        /// The queued turn.
        turn_id: Uuid,
        /// The chat's list entry as created (`None`: announced after a read).
        list_entry: Option<Box<ChatListEntry>>,
    },
    /// A user message started a turn in an idle chat.
    TurnStarted {
        /// The chat.
        chat_id: Uuid,
        /// The persisted user message.
        message: Message,
        /// The queued turn.
        turn_id: Uuid,
    },
    /// A message waits in the chat's queue behind the running turn.
    MessageQueued {
        /// The chat.
        chat_id: Uuid,
        /// Its 1-based place in the queue.
        position: i64,
    },
    /// A worker acquired a step of the turn. `attempt > 1` means an earlier run of the
    /// step was lost: what it streamed is void.
    StepStarted {
        /// The chat.
        chat_id: Uuid,
        /// The acquisition's attempt number (1 for the first run).
        attempt: i32,
        /// The chat's list entry as the acquisition left it (`None`: announced after a
        /// read).
        list_entry: Option<Box<ChatListEntry>>,
    },
    /// A turn ended: completed, interrupted, or failed with `error`.
    TurnFinished {
        /// The chat.
        chat_id: Uuid,
        /// Why the turn failed (`None` when it completed or was interrupted).
        error: Option<ChatError>,
        /// The answer, a promoted queued message and the next turn, the chat's status.
        outcome: Box<TurnOutcome>,
    },
    /// A step asked for tools: builtin calls become jobs, the client's calls wait for it.
    ToolStep {
        /// The chat.
        chat_id: Uuid,
        /// The assistant message and the calls.
        step: ToolStep,
    },
    /// A client posted its results while builtin calls of the same step still run (the
    /// last of them resumes the turn).
    ToolResultsAccepted {
        /// The chat.
        chat_id: Uuid,
    },
    /// The step's last call finished: the turn continues with every result, or (a
    /// plan-mode call succeeded) the chat waits for the user.
    FannedIn(FanIn),
    /// A step compacted the older part of its conversation into a summary message.
    Compacted {
        /// The summary message (kind `summary`).
        summary: Message,
        /// How many messages it replaced in what the model sees.
        messages_compacted: usize,
        /// Estimated tokens of the step's request before and after.
        tokens: (u64, u64),
    },
    /// The chat got a generated title.
    Titled {
        /// The chat.
        chat_id: Uuid,
        /// The title.
        title: String,
    },
    /// A running turn was handed back (`running` -> `queued`) by a draining worker.
    Released {
        /// The turn, to run again at once.
        turn_id: Uuid,
    },
    /// An edit or a regenerate superseded the end of an idle chat's conversation and
    /// queued a new turn (with the edit's new user message).
    Rewritten(Rewrite),
    /// What a chat list shows of chats changed without a turn: a rename, archive or
    /// restore, pin or labels (`PATCH /chats/{id}`). No chat event; the list's.
    Organized {
        /// The chat, then the other chats its pin change moved.
        chat_ids: Vec<Uuid>,
    },
    /// A chat was deleted with its subagent chats (`Store::delete_chat`): their event
    /// streams go too.
    Deleted {
        /// Their owner (whose list stream hears of it).
        owner_id: Uuid,
        /// The deleted chats, the root first.
        chat_ids: Vec<Uuid>,
    },
}

/// The jobs that follow outcomes, enqueued turns first (one pipeline per queue).
#[derive(Debug, Default, Clone)]
pub struct FollowUps {
    /// `RunTurn` jobs.
    pub turns: Vec<RunTurn>,
    /// `RunToolCall` jobs.
    pub tool_calls: Vec<RunToolCall>,
}

impl FollowUps {
    /// Adds another outcome's jobs.
    pub fn extend(&mut self, other: FollowUps) {
        self.turns.extend(other.turns);
        self.tool_calls.extend(other.tool_calls);
    }

    /// How many jobs.
    pub fn len(&self) -> usize {
        self.turns.len() + self.tool_calls.len()
    }

    /// Whether there is no job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enqueues the jobs: the turns in one round trip, then the tool calls in another.
    pub async fn enqueue(&self, producer: &Producer) -> redis::RedisResult<()> {
        producer.enqueue_many(&self.turns).await?;
        producer.enqueue_many(&self.tool_calls).await?;
        Ok(())
    }
}

impl ChatOutcome {
    /// The chat the outcome belongs to (`None` for a released turn, which names no chat).
    pub fn chat_id(&self) -> Option<Uuid> {
        match self {
            Self::Created { chat_id, .. }
            | Self::TurnStarted { chat_id, .. }
            | Self::MessageQueued { chat_id, .. }
            | Self::StepStarted { chat_id, .. }
            | Self::TurnFinished { chat_id, .. }
            | Self::ToolStep { chat_id, .. }
            | Self::ToolResultsAccepted { chat_id }
            | Self::Titled { chat_id, .. } => Some(*chat_id),
            Self::Compacted { summary, .. } => Some(summary.chat_id),
            Self::FannedIn(fan_in) => Some(fan_in.chat_id),
            Self::Rewritten(rewrite) => Some(rewrite.chat_id),
            Self::Deleted { chat_ids, .. } | Self::Organized { chat_ids } => {
                chat_ids.first().copied()
            }
            Self::Released { .. } => None,
        }
    }

    /// Publishes the outcome's events, then enqueues its jobs. The events are out whatever
    /// the enqueue does; its error is the caller's to log or return (see the module page).
    pub async fn announce(
        &self,
        events: &EventPublisher,
        producer: &Producer,
    ) -> redis::RedisResult<()> {
        self.publish(events);
        self.follow_ups().enqueue(producer).await
    }

    /// Publishes the outcome's events on its chat's stream, in protocol order, and reports
    /// what a chat list shows of it to the list announcer.
    pub fn publish(&self, events: &EventPublisher) {
        self.publish_chat_events(events);
        if let Some(change) = self.list_change() {
            events.chat_list_changed(change);
        }
    }

    /// What a chat list shows of the outcome. Every variant says, so a new one cannot
    /// forget: a status change, a new chat or a new message (the list's activity and
    /// order) is an update; a queued message and a handed-back turn (a worker picks it up
    /// again at once, and that is announced) are not. The chat's entry goes with the
    /// change when the store returned it (a turn's own statements), so the announcer needs
    /// no read.
    pub fn list_change(&self) -> Option<ChatListChange> {
        let committed = |entry: &ChatListEntry, created: bool| ChatListChange::Committed {
            entry: Box::new(entry.clone()),
            created,
        };
        match self {
            Self::Created {
                list_entry: Some(entry),
                ..
            } => Some(committed(entry, true)),
            Self::StepStarted {
                list_entry: Some(entry),
                ..
            } => Some(committed(entry, false)),
            Self::TurnFinished { outcome, .. } if outcome.list_entry.is_some() => outcome
                .list_entry
                .as_deref()
                .map(|entry| committed(entry, false)),
            Self::Created { chat_id, .. } => Some(ChatListChange::Created(*chat_id)),
            Self::TurnStarted { chat_id, .. }
            | Self::StepStarted { chat_id, .. }
            | Self::TurnFinished { chat_id, .. }
            | Self::ToolStep { chat_id, .. }
            | Self::ToolResultsAccepted { chat_id } => {
                Some(ChatListChange::Updated(vec![*chat_id]))
            }
            Self::FannedIn(fan_in) => Some(ChatListChange::Updated(vec![fan_in.chat_id])),
            Self::Rewritten(rewrite) => Some(ChatListChange::Updated(vec![rewrite.chat_id])),
            Self::Organized { chat_ids } => Some(ChatListChange::Updated(chat_ids.clone())),
            Self::Deleted { owner_id, chat_ids } => Some(ChatListChange::Deleted {
                owner_id: *owner_id,
                chat_ids: chat_ids.clone(),
            }),
            // A generated title changes the chat's entry; a compaction changes nothing a list
            // shows.
            Self::Titled { chat_id, .. } => Some(ChatListChange::Updated(vec![*chat_id])),
            Self::MessageQueued { .. } | Self::Released { .. } | Self::Compacted { .. } => None,
        }
    }

    fn publish_chat_events(&self, events: &EventPublisher) {
        let status = |chat_id: Uuid, status: ChatStatus| ChatEvent::Status { status, chat_id };
        let message = |chat_id: Uuid, message: &Message| {
            events.publish(
                chat_id,
                ChatEvent::Message {
                    message: Box::new(message.clone()),
                },
            )
        };
        match self {
            Self::Created {
                chat_id,
                message: m,
                ..
            }
            | Self::TurnStarted {
                chat_id,
                message: m,
                ..
            } => {
                events.publish(*chat_id, status(*chat_id, ChatStatus::Pending));
                message(*chat_id, m);
            }
            Self::MessageQueued { chat_id, position } => events.publish(
                *chat_id,
                ChatEvent::QueueUpdate {
                    queued_messages: *position,
                },
            ),
            Self::StepStarted {
                chat_id, attempt, ..
            } => {
                events.publish(*chat_id, status(*chat_id, ChatStatus::Running));
                if *attempt > 1 {
                    // Whatever an earlier run of this step streamed is void: say so before
                    // the new run's first delta, so a client does not glue two answers
                    // together.
                    events.publish(
                        *chat_id,
                        ChatEvent::Retry {
                            attempt: (*attempt - 1) as u32,
                            delay_ms: 0,
                            error: "The worker running this step stopped before it finished; \
                                    the step starts again and replaces what it had streamed."
                                .into(),
                            kind: ChatErrorKind::WorkerLost,
                            provider: None,
                            status_code: None,
                            retrying_at: chrono::Utc::now(),
                        },
                    );
                }
            }
            Self::TurnFinished {
                chat_id,
                error,
                outcome,
            } => {
                if let Some(error) = error {
                    events.publish(
                        *chat_id,
                        ChatEvent::Error {
                            error: error.clone(),
                        },
                    );
                }
                for m in outcome.message.iter().chain(outcome.promoted.iter()) {
                    message(*chat_id, m);
                }
                events.publish(*chat_id, status(*chat_id, outcome.status));
            }
            Self::ToolStep { chat_id, step } => {
                message(*chat_id, &step.message);
                if !step.dynamic.is_empty() {
                    let tool_calls = step
                        .dynamic
                        .iter()
                        .map(|c| ActionToolCall {
                            tool_call_id: c.id,
                            tool_name: c.name.clone(),
                            args: c.arguments.clone(),
                        })
                        .collect();
                    events.publish(*chat_id, ChatEvent::ActionRequired { tool_calls });
                    events.publish(*chat_id, status(*chat_id, ChatStatus::RequiresAction));
                }
            }
            Self::ToolResultsAccepted { chat_id } => {
                events.publish(*chat_id, status(*chat_id, ChatStatus::Running));
            }
            Self::FannedIn(fan_in) => {
                message(fan_in.chat_id, &fan_in.results);
                match &fan_in.awaits_user {
                    // A plan-mode question or plan waits for the user (or a queued message
                    // answers it at once).
                    Some(outcome) => {
                        if let Some(m) = &outcome.promoted {
                            message(fan_in.chat_id, m);
                        }
                        events.publish(fan_in.chat_id, status(fan_in.chat_id, outcome.status));
                    }
                    None => {
                        events.publish(fan_in.chat_id, status(fan_in.chat_id, ChatStatus::Pending))
                    }
                }
            }
            Self::Rewritten(rewrite) => {
                // First the drop, so a client never shows the new turn beside the old one.
                if let Some(from_message_id) = rewrite.superseded_from {
                    events.publish(
                        rewrite.chat_id,
                        ChatEvent::MessagesSuperseded {
                            from_message_id,
                            reason: rewrite.by,
                        },
                    );
                }
                events.publish(
                    rewrite.chat_id,
                    status(rewrite.chat_id, ChatStatus::Pending),
                );
                if let Some(m) = &rewrite.message {
                    message(rewrite.chat_id, m);
                }
            }
            Self::Compacted {
                summary,
                messages_compacted,
                tokens: (tokens_before, tokens_after),
            } => events.publish(
                summary.chat_id,
                ChatEvent::Compaction {
                    summary_message_id: summary.id,
                    compacted_through: summary.compacted_through.unwrap_or(summary.id),
                    messages_compacted: *messages_compacted,
                    tokens_before: *tokens_before,
                    tokens_after: *tokens_after,
                },
            ),
            Self::Titled { chat_id, title } => events.publish(
                *chat_id,
                ChatEvent::Title {
                    title: title.clone(),
                },
            ),
            Self::Released { .. } | Self::Organized { .. } => {}
            Self::Deleted { chat_ids, .. } => events.forget(chat_ids.clone()),
        }
    }

    /// The jobs the outcome starts.
    pub fn follow_ups(&self) -> FollowUps {
        let turn = |turn_id: Uuid| FollowUps {
            turns: vec![RunTurn { turn_id }],
            tool_calls: Vec::new(),
        };
        match self {
            Self::Created { turn_id, .. }
            | Self::TurnStarted { turn_id, .. }
            | Self::Released { turn_id } => turn(*turn_id),
            Self::Rewritten(rewrite) => turn(rewrite.turn_id),
            Self::FannedIn(fan_in) => match &fan_in.awaits_user {
                None => turn(fan_in.turn_id),
                Some(outcome) => after_turn(outcome),
            },
            Self::TurnFinished { outcome, .. } => after_turn(outcome),
            Self::ToolStep { step, .. } => FollowUps {
                turns: Vec::new(),
                tool_calls: step
                    .builtin
                    .iter()
                    .map(|c| RunToolCall { tool_call_id: c.id })
                    .collect(),
            },
            Self::MessageQueued { .. }
            | Self::StepStarted { .. }
            | Self::ToolResultsAccepted { .. }
            | Self::Organized { .. }
            | Self::Deleted { .. }
            | Self::Compacted { .. }
            | Self::Titled { .. } => FollowUps::default(),
        }
    }
}

/// The jobs a finished turn starts: the promoted message's turn, and, when the chat went
/// idle, the parent's `wait_agent` calls parked on it (a subagent finished).
fn after_turn(outcome: &TurnOutcome) -> FollowUps {
    FollowUps {
        turns: outcome
            .next_turn_id
            .map(|turn_id| RunTurn { turn_id })
            .into_iter()
            .collect(),
        tool_calls: outcome
            .waiting_calls
            .iter()
            .map(|&tool_call_id| RunToolCall { tool_call_id })
            .collect(),
    }
}
