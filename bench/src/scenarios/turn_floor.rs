//! `turn_floor`: the least PostgreSQL work one turn's state can cost on agentq's schema,
//! with no agentq in the path, so "agentq / floor" is a number for the turns rows as
//! "agentq / ceiling" is for the queue. A turn's state changes three times, at three
//! moments no statement can span (the client's request, a worker's pickup, the model's
//! answer), so a turn is at least three transactions; here each is one statement:
//!
//! - accept: the chat (`pending`), its first user message and its queued turn;
//! - pickup: the turn `running` with a lease, the chat `running`;
//! - answer: the assistant message, the turn `completed`, the chat `waiting`.
//!
//! The tables, indexes, constraints and triggers are agentq's own (a freshly migrated
//! database): what the chat list and search need costs the same here. What agentq adds on
//! top (authentication, spend limits, the step's reads, events, the queue) is left out on
//! purpose: that difference is what the ratio shows.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::keys;
use crate::common::{Ctx, Row, cpu_by_command, cpu_per_item, cpu_share, n};

pub const ABOUT: &str = "the least PostgreSQL work a turn costs on agentq's schema, no \
agentq in the path: three one-statement transactions a turn (accept: chat + user message + \
queued turn; pickup: turn running + chat running; answer: assistant message + turn \
completed + chat waiting), 64 concurrent clients on their own connections, 5,000 turns \
(quick) or 30,000 (full). Gives agentq / floor for the turns rows.";

const CLIENTS: usize = 64;

const ACCEPT: &str = "WITH c AS (
        INSERT INTO chats (id, owner_id, organization_id, title, status)
        VALUES ($1, $4, $5, $6, 'pending') RETURNING id
     ), t AS (
        INSERT INTO chat_turns (id, chat_id, seq, status) SELECT $2, id, 1, 'queued' FROM c
     )
     INSERT INTO chat_messages (id, chat_id, turn_id, role, content)
     SELECT $3, id, $2, 'user', '[{\"type\":\"text\",\"text\":\"hello\"}]' FROM c";

const PICKUP: &str = "WITH t AS (
        UPDATE chat_turns SET status = 'running', attempt = attempt + 1, lease_owner = 'floor',
               lease_expires_at = now() + interval '30 seconds', started_at = now()
        WHERE id = $1 AND status = 'queued' RETURNING chat_id
     )
     UPDATE chats SET status = 'running', updated_at = now() FROM t WHERE chats.id = t.chat_id";

const ANSWER: &str = "WITH t AS (
        UPDATE chat_turns SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL,
               finished_at = now()
        WHERE id = $1 AND status = 'running' RETURNING id, chat_id
     ), m AS (
        INSERT INTO chat_messages (id, chat_id, turn_id, role, step, content)
        SELECT $2, chat_id, id, 'assistant', 0, '[{\"type\":\"text\",\"text\":\"hello\"}]' FROM t
     )
     UPDATE chats SET status = 'waiting', updated_at = now(), last_activity_at = now()
     FROM t WHERE chats.id = t.chat_id";

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let turns = ctx.pick(5_000, 30_000);
    let limit = ctx.pick(Duration::from_secs(60), Duration::from_secs(180));
    let db = ctx.fresh_db("floor", CLIENTS as u32).await?;
    let (owner, org) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO organizations (id, name) VALUES ($1, 'floor')")
        .bind(org)
        .execute(&db.pool)
        .await?;
    sqlx::query("INSERT INTO users (id, email) VALUES ($1, 'floor@bench.invalid')")
        .bind(owner)
        .execute(&db.pool)
        .await?;
    // Every client's connection open and its statements prepared before the clock starts,
    // as in a running agentq.
    let (warm, _) = drive(&db.pool, owner, org, CLIENTS, Instant::now() + limit).await?;
    anyhow::ensure!(warm == CLIENTS, "the warm-up turns failed");
    let cpu = cpu_by_command();
    let started = Instant::now();
    let (done, failed) = drive(&db.pool, owner, org, turns, started + limit).await?;
    let wall = started.elapsed();
    let after = cpu_by_command();
    drop(db);
    ctx.cleanup().await;
    let rate = done as f64 / wall.as_secs_f64();
    if failed == 0 && done == turns {
        ctx.record(keys::TURN_FLOOR, rate);
    }
    Ok(vec![Row::new(
        "turn_floor",
        "a turn's three transactions on agentq's schema, no agentq (accept, pickup, answer)",
        format!(
            "{} turns/s ({done} of {turns} turns, {failed} failed, {CLIENTS} clients); {}; per turn: {}",
            n(rate),
            cpu_share(&cpu, &after, wall),
            cpu_per_item(&cpu, &after, done),
        ),
        "reported (the turns rows' floor)",
        None,
    )])
}

/// Runs `turns` turns over [`CLIENTS`] clients until `deadline`; returns (completed,
/// failed).
async fn drive(
    pool: &sqlx::PgPool,
    owner: Uuid,
    org: Uuid,
    turns: usize,
    deadline: Instant,
) -> anyhow::Result<(usize, usize)> {
    let per_client = turns.div_ceil(CLIENTS);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let pool = pool.clone();
            let count = per_client.min(turns.saturating_sub(c * per_client));
            tokio::spawn(async move {
                let (mut done, mut failed) = (0usize, 0usize);
                for i in 0..count {
                    if Instant::now() > deadline {
                        break;
                    }
                    match one_turn(&pool, owner, org, &format!("client {c} turn {i}")).await {
                        Ok(()) => done += 1,
                        Err(e) => {
                            failed += 1;
                            if failed == 1 {
                                eprintln!("   turn_floor: {e}");
                            }
                        }
                    }
                }
                (done, failed)
            })
        })
        .collect();
    let (mut done, mut failed) = (0, 0);
    for task in tasks {
        let (d, f) = task.await?;
        done += d;
        failed += f;
    }
    Ok((done, failed))
}

/// One turn's three transactions, each a statement of its own (autocommit).
async fn one_turn(pool: &sqlx::PgPool, owner: Uuid, org: Uuid, title: &str) -> anyhow::Result<()> {
    let (chat, turn) = (Uuid::now_v7(), Uuid::now_v7());
    let accepted = sqlx::query(ACCEPT)
        .bind(chat)
        .bind(turn)
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(org)
        .bind(title)
        .execute(pool)
        .await?;
    let picked = sqlx::query(PICKUP).bind(turn).execute(pool).await?;
    let answered = sqlx::query(ANSWER)
        .bind(turn)
        .bind(Uuid::now_v7())
        .execute(pool)
        .await?;
    anyhow::ensure!(
        (
            accepted.rows_affected(),
            picked.rows_affected(),
            answered.rows_affected()
        ) == (1, 1, 1),
        "a statement of turn {turn} changed no row"
    );
    Ok(())
}
