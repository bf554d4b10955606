//! `message_agent`: a user message to the child, sent the way the API sends one
//! (`Store::send_message`: a new turn if idle, else queued, and with `interrupt` the running
//! turn is stopped so the message starts next). A closed child takes no message.

use agentq_core::{
    StoreError,
    domain::{MessagePart, ToolCallRow},
    outcome::ChatOutcome,
    store::{BusyBehavior, InterruptOutcome, SendOptions, SendOutcome},
};
use serde_json::{Value, json};

use super::{ToolContext, announce, chat_id_arg, not_a_child, reply, text_arg};
use crate::tools::ToolOutput;

/// Runs one `message_agent` call.
pub async fn run(ctx: &ToolContext<'_>, call: &ToolCallRow) -> Result<ToolOutput, StoreError> {
    let args = &call.arguments;
    let (child_id, text) = match (chat_id_arg(args), text_arg(args, "message")) {
        (Ok(id), Ok(text)) => (id, text),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    let interrupt = match args.get("interrupt") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Ok(Err("`interrupt` must be true or false".into())),
    };
    let Some(child) = ctx.store.child_chat(call.chat_id, child_id).await? else {
        return Ok(Err(not_a_child(child_id)));
    };
    if child.closed {
        return Ok(Err(format!(
            "the subagent {child_id} is closed; spawn a new one"
        )));
    }
    let busy = if interrupt {
        BusyBehavior::Interrupt
    } else {
        BusyBehavior::Queue
    };
    let content = [MessagePart::Text {
        text: text.to_owned(),
    }];
    let delivered = match ctx
        .store
        .send_message(
            child.id,
            child.owner_id,
            &content,
            &SendOptions {
                busy,
                ..SendOptions::default()
            },
        )
        .await
    {
        Ok((SendOutcome::Started { message, turn_id }, _)) => {
            announce(
                ctx,
                ChatOutcome::TurnStarted {
                    chat_id: child.id,
                    message,
                    turn_id,
                },
            )
            .await;
            "started"
        }
        Ok((SendOutcome::Queued { position, .. }, _)) => {
            announce(
                ctx,
                ChatOutcome::MessageQueued {
                    chat_id: child.id,
                    position,
                },
            )
            .await;
            if interrupt {
                stop_turn(ctx, child.id, child.owner_id).await?;
            }
            "queued"
        }
        // The child's queue is full: the model should wait first.
        Err(StoreError::Conflict(why)) => return Ok(Err(why)),
        Err(e) => return Err(e),
    };
    let child = ctx
        .store
        .child_chat(call.chat_id, child_id)
        .await?
        .unwrap_or(child);
    Ok(Ok(reply::child(&child, json!({ "delivered": delivered }))))
}

/// Interrupts the child's turn, if one is unfinished, and announces a turn stopped here.
pub(super) async fn stop_turn(
    ctx: &ToolContext<'_>,
    chat_id: uuid::Uuid,
    owner: uuid::Uuid,
) -> Result<(), StoreError> {
    match ctx.store.request_interrupt(chat_id, owner).await {
        Ok(InterruptOutcome::Requested { .. }) => Ok(()),
        Ok(InterruptOutcome::Stopped(outcome)) => {
            announce(
                ctx,
                ChatOutcome::TurnFinished {
                    chat_id,
                    error: None,
                    outcome,
                },
            )
            .await;
            Ok(())
        }
        // Nothing runs (it finished meanwhile): nothing to stop.
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
