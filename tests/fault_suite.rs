//! The fault suite (issue #18, item 1): N turns through real agentq processes (an API, three
//! turn workers, a mail worker and a scheduler) on a PostgreSQL and a Redis of the suite's
//! own, while it kills workers with SIGKILL, restarts Redis, flushes it, restarts
//! PostgreSQL, makes the fake provider fail 10 % of requests and keeps the SMTP server down
//! through a digest tick. Afterwards it counts, in PostgreSQL and in what clients and the
//! SMTP server received, that nothing was lost and nothing doubled, and prints the counts.
//!
//! A quarter of the turns make parallel tool calls, a quarter call client tools, a quarter
//! spawn a subagent and wait for it, the rest are plain. `AGENTQ_FAULT_TURNS` sets N
//! (default 200, what CI runs); `AGENTQ_FAULT_SEED` the seed of every random choice.
//!
//! ```text
//! AGENTQ_FAULT_TURNS=1000 cargo test -p agentq --test fault_suite -- --nocapture
//! ```

mod support;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner, create_user},
    eventually,
    fake_openai::{InjectedFaults, LAST_RESULT_CHAT_ID, Reply},
    postgres_server::PrivatePostgres,
    process::{AgentqProcess, LogFormat},
    redis_server::PrivateRedis,
    smtp::{SmtpSink, smtp_url},
};
use tokio::{sync::Semaphore, task::JoinSet};
use uuid::Uuid;

/// Turn workers running at any time (each killed one is replaced at once).
const WORKERS: usize = 3;
/// SIGKILLs of turn workers in one run.
const KILLS: usize = 10;
/// Users who get an archive digest, each with two chats that go idle.
const DIGEST_USERS: usize = 5;
/// Chats a client drives at once.
const IN_FLIGHT: usize = 32;
/// One chat in this many has an SSE reader following it.
const READ_EVERY: usize = 12;

/// What a turn does, by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// Three builtin tool calls in one step, then an answer.
    Parallel,
    /// Two calls of a client tool, answered by the client, then an answer.
    Client,
    /// Spawns a subagent, waits for it, then answers.
    Subagent,
    /// Just an answer.
    Plain,
}

impl Kind {
    fn of(index: usize) -> Self {
        match index % 4 {
            0 => Kind::Parallel,
            1 => Kind::Client,
            2 => Kind::Subagent,
            _ => Kind::Plain,
        }
    }

    /// The marker in the turn's message that the fake provider's responder reads.
    fn marker(self, index: usize) -> String {
        let letter = match self {
            Kind::Parallel => 'P',
            Kind::Client => 'C',
            Kind::Subagent => 'S',
            Kind::Plain => 'T',
        };
        format!("[{letter} {index:05}]")
    }

    /// Tool calls the turn makes when it completes.
    fn tool_calls(self) -> usize {
        match self {
            Kind::Parallel => 3,
            Kind::Client | Kind::Subagent => 2,
            Kind::Plain => 0,
        }
    }
}

/// The fake model: each conversation's reply follows from the request alone (its marker and
/// how many tool results it already holds), so a step retried after any fault gets the same
/// reply again.
fn respond(body: &Value) -> Option<Reply> {
    let first = support::fake_openai::first_user_text(body);
    let results = body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
    let marker = first.get(first.find('[')?..=first.find(']')?)?.to_owned();
    let calls = |calls: Vec<(&str, &str, Value)>| {
        Reply::ToolCalls(
            calls
                .into_iter()
                .map(|(id, name, args)| (id.to_owned(), name.to_owned(), args))
                .collect(),
        )
    };
    Some(match (marker.as_bytes()[1], results) {
        (b'P', 0) => calls(vec![
            ("call_a", "sleep", json!({"seconds": 0.05})),
            ("call_b", "current_time", json!({})),
            ("call_c", "sleep", json!({"seconds": 0.1})),
        ]),
        (b'C', 0) => calls(vec![
            ("call_a", "client_lookup", json!({"key": "first"})),
            ("call_b", "client_lookup", json!({"key": "second"})),
        ]),
        (b'S', 0) => calls(vec![(
            "call_spawn",
            "spawn_subagent",
            json!({"subagent_type": "general", "prompt": format!("child task for {}", &marker[1..marker.len() - 1]), "title": "Helper"}),
        )]),
        (b'S', 1) => calls(vec![(
            "call_wait",
            "wait_agent",
            json!({"chat_id": LAST_RESULT_CHAT_ID, "timeout_seconds": 600}),
        )]),
        (b'P' | b'C' | b'S', _) => Reply::Text(format!(
            "All tools of {marker} returned; here is the summary of what they said."
        )),
        _ => return None,
    })
}

/// HTTP as the suite's clients see it: every status counted, every 5xx body kept.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    statuses: Arc<Mutex<BTreeMap<u16, usize>>>,
    server_errors: Arc<Mutex<Vec<String>>>,
    /// Creates answered with the chat of an earlier try of the same key.
    replays: Arc<AtomicUsize>,
}

impl Client {
    async fn send(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        self.send_with_key(method, token, path, body, None).await
    }

    /// [`Client::send`] with an `Idempotency-Key`; an answer from an earlier try's chat
    /// (`Idempotent-Replayed: true`) is counted.
    async fn send_with_key(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await?;
        let status = response.status();
        if response.headers().get("idempotent-replayed").is_some() {
            self.replays.fetch_add(1, Ordering::Relaxed);
        }
        let text = response.text().await.unwrap_or_default();
        *self
            .statuses
            .lock()
            .unwrap()
            .entry(status.as_u16())
            .or_default() += 1;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_server_error() && (status != StatusCode::SERVICE_UNAVAILABLE || json.is_null())
        {
            self.server_errors
                .lock()
                .unwrap()
                .push(format!("{method} {path}: {status} {text}"));
        }
        Ok((status, json))
    }
}

/// What one SSE reader saw, over all its connections.
#[derive(Default, Debug, Clone)]
struct ReaderCounts {
    connections: usize,
    events: usize,
    duplicate_event_ids: usize,
    duplicate_messages: usize,
    answers_matched: usize,
    answers_doubled: usize,
    answers_unverified: usize,
    answers_mismatched: usize,
    resets: usize,
    retries: usize,
    doubled_detail: Vec<String>,
    /// Each id seen twice: the chat, the id, the event name, and the resets and
    /// connections the reader had seen by then (to tell a repeat across a `reset`, after
    /// Redis lost the stream, from one within a stream).
    duplicate_detail: Vec<String>,
}

impl ReaderCounts {
    fn add(&mut self, other: &ReaderCounts) {
        self.connections += other.connections;
        self.events += other.events;
        self.duplicate_event_ids += other.duplicate_event_ids;
        self.duplicate_messages += other.duplicate_messages;
        self.answers_matched += other.answers_matched;
        self.answers_doubled += other.answers_doubled;
        self.answers_unverified += other.answers_unverified;
        self.answers_mismatched += other.answers_mismatched;
        self.resets += other.resets;
        self.retries += other.retries;
        self.doubled_detail
            .extend(other.doubled_detail.iter().cloned());
        self.duplicate_detail
            .extend(other.duplicate_detail.iter().cloned());
    }
}

/// Follows a chat's stream as a client would: reconnecting every second or two (and
/// whenever the server is away) with `Last-Event-ID`, assembling each step's answer from its
/// `message_part` deltas, dropping what came before a `retry` (or a `reset`), and comparing
/// the assembly with the step's `message` event.
async fn read_stream(client: Client, token: String, chat: Uuid, hold: Duration) -> ReaderCounts {
    let url = format!("{}/api/v1/chats/{chat}/stream", client.base);
    let mut counts = ReaderCounts::default();
    let mut last_id: Option<String> = None;
    let mut seen_ids = HashSet::new();
    let mut seen_messages = HashSet::new();
    let mut assembling: BTreeMap<i64, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1200);
    let mut done = false;
    while !done && tokio::time::Instant::now() < deadline {
        let mut request = client
            .http
            .get(&url)
            .bearer_auth(&token)
            .timeout(Duration::from_secs(60));
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = match tokio::time::timeout(Duration::from_secs(15), request.send()).await {
            Ok(Ok(r)) if r.status() == StatusCode::OK => r,
            _ => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        counts.connections += 1;
        let mut events = response.bytes_stream().eventsource();
        let until = tokio::time::Instant::now() + hold;
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(until, events.next()).await {
            counts.events += 1;
            if !event.id.is_empty() {
                // A `reset`'s id is where the stream stood when it was found lost, `0-0` when
                // Redis no longer had it: a chat whose stream this suite loses twice (the
                // Redis restart, then the flush) gets two resets with that id. Every other
                // frame's id is its event's, once in the stream.
                if event.event != "reset" && !seen_ids.insert(event.id.clone()) {
                    counts.duplicate_event_ids += 1;
                    counts.duplicate_detail.push(format!(
                        "chat {chat}: id {} ({}) after {} resets, on connection {}",
                        event.id, event.event, counts.resets, counts.connections
                    ));
                }
                last_id = Some(event.id.clone());
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            match event.event.as_str() {
                "message_part" if data["part"]["type"] == "text" => {
                    let step = data["step"].as_i64().unwrap_or(-1);
                    assembling
                        .entry(step)
                        .or_default()
                        .push_str(data["part"]["text"].as_str().unwrap_or_default());
                }
                "retry" => {
                    counts.retries += 1;
                    assembling.clear();
                }
                "reset" => {
                    counts.resets += 1;
                    assembling.clear();
                }
                "message" if data["message"]["role"] == "assistant" => {
                    let message = &data["message"];
                    let id = message["id"].as_str().unwrap_or_default().to_owned();
                    if !seen_messages.insert(id) {
                        counts.duplicate_messages += 1;
                        continue;
                    }
                    let answer: String = message["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["type"] == "text")
                        .filter_map(|p| p["text"].as_str())
                        .collect();
                    let assembled = assembling
                        .remove(&message["step"].as_i64().unwrap_or(-1))
                        .unwrap_or_default();
                    if answer.is_empty() || data["truncated"] == true {
                        continue;
                    }
                    if assembled == answer {
                        counts.answers_matched += 1;
                    } else if assembled.matches(&answer).count() >= 2
                        || (assembled.len() > answer.len() && assembled.contains(&answer))
                    {
                        counts.answers_doubled += 1;
                        counts
                            .doubled_detail
                            .push(format!("chat {chat}: {assembled:?} for {answer:?}"));
                    } else if assembled.is_empty() {
                        counts.answers_unverified += 1;
                    } else {
                        counts.answers_mismatched += 1;
                    }
                }
                "status" if matches!(data["status"].as_str(), Some("waiting" | "error")) => {
                    done = true;
                }
                _ => {}
            }
            if done {
                break;
            }
        }
        if !done && counts.resets > 0 {
            // Events were lost (Redis was flushed): the client reloads the chat instead.
            if let Ok((StatusCode::OK, body)) = client
                .send(Method::GET, &token, &format!("/api/v1/chats/{chat}"), None)
                .await
            {
                done = matches!(body["status"].as_str(), Some("waiting" | "error"));
            }
        }
    }
    counts
}

/// One turn as the client drove it.
#[derive(Debug)]
struct Driven {
    index: usize,
    status: String,
    create_attempts: usize,
    results_posted: usize,
}

/// What the driver of every turn shares.
#[derive(Clone)]
struct Shared {
    client: Client,
    pool: sqlx::PgPool,
    app_store: agentq_core::store::Store,
    tokens: Arc<Vec<String>>,
    readers: Arc<Mutex<Vec<tokio::task::JoinHandle<ReaderCounts>>>>,
    digest_chats: Arc<Mutex<Vec<Uuid>>>,
    seed: u64,
}

/// The token a turn's chat belongs to: the first ten plain turns are the digest users'.
fn owner_of(index: usize) -> usize {
    if Kind::of(index) == Kind::Plain && index < 4 * 2 * DIGEST_USERS {
        1 + (index / 4) % DIGEST_USERS
    } else {
        0
    }
}

/// Creates the turn's chat (retrying while the services are away, with one
/// `Idempotency-Key` for every try, so a create answered with an error that committed
/// anyway is answered with its chat the next time, not made again), answers
/// its client tools, and waits until it is `waiting` or `error`.
async fn drive_turn(shared: Shared, index: usize) -> Driven {
    let kind = Kind::of(index);
    let marker = kind.marker(index);
    let token = shared.tokens[owner_of(index)].clone();
    let mut body = json!({"message": format!("{marker} please answer in a handful of words, the more the better for streaming")});
    if kind == Kind::Client {
        body["dynamic_tools"] = json!([{
            "name": "client_lookup",
            "description": "Looks a key up in the client's own index",
            "input_schema": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}
        }]);
    }
    // One key for every try: a try whose answer was lost (a timeout, a crash after the
    // commit) made the chat or did not, and the next one gets that chat or makes it.
    let idempotency_key = format!("fault-suite-{}-{index}", shared.seed);
    let mut create_attempts = 0;
    let chat = loop {
        create_attempts += 1;
        if create_attempts > 1 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        match shared
            .client
            .send_with_key(
                Method::POST,
                &token,
                "/api/v1/chats",
                Some(body.clone()),
                Some(&idempotency_key),
            )
            .await
        {
            Ok((StatusCode::CREATED, created)) => {
                break created["id"].as_str().unwrap().parse().unwrap();
            }
            _ => continue,
        }
    };
    if index % READ_EVERY == READ_EVERY / 2 {
        let hold = Duration::from_millis(800 + (shared.seed ^ index as u64) % 1500);
        let reader = tokio::spawn(read_stream(
            shared.client.clone(),
            token.clone(),
            chat,
            hold,
        ));
        shared.readers.lock().unwrap().push(reader);
    }
    let mut results_posted = 0;
    let status = loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let Ok((StatusCode::OK, state)) = shared
            .client
            .send(Method::GET, &token, &format!("/api/v1/chats/{chat}"), None)
            .await
        else {
            continue;
        };
        match state["status"].as_str().unwrap_or_default() {
            status @ ("waiting" | "error") => break status.to_owned(),
            "requires_action" => {
                let Ok((StatusCode::OK, waiting)) = shared
                    .client
                    .send(
                        Method::GET,
                        &token,
                        &format!("/api/v1/chats/{chat}/tool-calls"),
                        None,
                    )
                    .await
                else {
                    continue;
                };
                let results: Vec<Value> = waiting["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| json!({"tool_call_id": c["tool_call_id"], "output": {"found": c["args"]["key"]}}))
                    .collect();
                if results.is_empty() {
                    continue;
                }
                if let Ok((StatusCode::ACCEPTED, _)) = shared
                    .client
                    .send(
                        Method::POST,
                        &token,
                        &format!("/api/v1/chats/{chat}/tool-results"),
                        Some(json!({ "results": results })),
                    )
                    .await
                {
                    results_posted += 1;
                }
            }
            _ => {}
        }
    };
    if owner_of(index) != 0 && status == "waiting" {
        // The digest users' chats go idle ten days ago, so the next tick archives them.
        let long_ago = Utc::now() - chrono::Duration::days(10);
        eventually(Duration::from_secs(60), "backdating a digest chat", || {
            let store = shared.app_store.clone();
            async move { store.backdate_chat_activity(chat, long_ago).await.ok() }
        })
        .await;
        shared.digest_chats.lock().unwrap().push(chat);
    }
    Driven {
        index,
        status,
        create_attempts,
        results_posted,
    }
}

/// A deterministic stream of numbers from the seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) % below
    }
}

/// A fault, due when this many turns have been submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillWorker,
    RestartRedis,
    RestartPostgres,
    FlushRedis,
    DigestTickWithSmtpDown,
}

/// The counts the suite prints and asserts.
#[derive(Debug, Default)]
struct Counts {
    turns: usize,
    by_kind: BTreeMap<String, usize>,
    root_turns_by_status: BTreeMap<String, i64>,
    child_turns_by_status: BTreeMap<String, i64>,
    chats_by_client_status: BTreeMap<String, usize>,
    steps: i64,
    assistant_messages: i64,
    steps_without_one_assistant_message: i64,
    user_messages_found: usize,
    user_messages_lost: usize,
    user_messages_doubled: usize,
    tool_calls_by_status: BTreeMap<String, i64>,
    tool_calls_without_result: i64,
    tool_calls_expected: usize,
    tool_calls_of_completed_roots: i64,
    client_results_posted: usize,
    create_retries: usize,
    create_replays: usize,
    workers_killed: usize,
    workers_exited_on_their_own: usize,
    redis_restarts: usize,
    redis_flushes: usize,
    postgres_restarts: usize,
    outage_probes: BTreeMap<u16, usize>,
    outage_probes_without_json: usize,
    outage_seconds: f64,
    slowest_outage_probe_ms: u128,
    provider_requests: usize,
    provider_faults: InjectedFaults,
    digests_queued: usize,
    digests_sent: i64,
    digest_attempts: i64,
    digest_mails_by_recipient: BTreeMap<String, usize>,
    chats_archived: usize,
    sse: ReaderCounts,
    sse_readers: usize,
    client_statuses: BTreeMap<u16, usize>,
    client_server_errors: Vec<String>,
    seconds: f64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fault suite: {} turns in {:.1} s",
            self.turns, self.seconds
        )?;
        writeln!(f, "  turns by kind: {:?}", self.by_kind)?;
        writeln!(f, "  root turns by status: {:?}", self.root_turns_by_status)?;
        writeln!(
            f,
            "  subagent turns by status: {:?}",
            self.child_turns_by_status
        )?;
        writeln!(
            f,
            "  chats as the client last saw them: {:?}",
            self.chats_by_client_status
        )?;
        writeln!(
            f,
            "  steps {} / assistant messages {} / steps without exactly one: {}",
            self.steps, self.assistant_messages, self.steps_without_one_assistant_message
        )?;
        writeln!(
            f,
            "  user messages: {} found, {} lost, {} doubled ({} creates retried, {} answered with an earlier try's chat)",
            self.user_messages_found,
            self.user_messages_lost,
            self.user_messages_doubled,
            self.create_retries,
            self.create_replays
        )?;
        writeln!(
            f,
            "  tool calls by status: {:?}, {} without a result; {} of completed root turns (expected {}); {} client result posts",
            self.tool_calls_by_status,
            self.tool_calls_without_result,
            self.tool_calls_of_completed_roots,
            self.tool_calls_expected,
            self.client_results_posted
        )?;
        writeln!(
            f,
            "  faults: {} workers SIGKILLed ({} exited on their own), Redis restarted {} and flushed {}, PostgreSQL restarted {}",
            self.workers_killed,
            self.workers_exited_on_their_own,
            self.redis_restarts,
            self.redis_flushes,
            self.postgres_restarts
        )?;
        writeln!(
            f,
            "  API during the {:.1} s PostgreSQL outage: {:?} ({} without a JSON body, slowest answer {} ms)",
            self.outage_seconds,
            self.outage_probes,
            self.outage_probes_without_json,
            self.slowest_outage_probe_ms
        )?;
        writeln!(
            f,
            "  provider: {} requests, {} failed on purpose ({:?})",
            self.provider_requests,
            self.provider_faults.total(),
            self.provider_faults
        )?;
        writeln!(
            f,
            "  digests: {} chats archived, {} queued, {} sent after {} SMTP attempts, mails by recipient {:?}",
            self.chats_archived,
            self.digests_queued,
            self.digests_sent,
            self.digest_attempts,
            self.digest_mails_by_recipient
        )?;
        writeln!(
            f,
            "  SSE: {} readers, {} connections, {} events, {} duplicate ids, {} duplicate messages; answers {} matched, {} doubled, {} mismatched, {} unverified (after {} resets, {} retries)",
            self.sse_readers,
            self.sse.connections,
            self.sse.events,
            self.sse.duplicate_event_ids,
            self.sse.duplicate_messages,
            self.sse.answers_matched,
            self.sse.answers_doubled,
            self.sse.answers_mismatched,
            self.sse.answers_unverified,
            self.sse.resets,
            self.sse.retries
        )?;
        writeln!(
            f,
            "  client statuses: {:?}; 5xx other than a JSON 503: {:?}",
            self.client_statuses, self.client_server_errors
        )?;
        if !self.sse.duplicate_detail.is_empty() {
            writeln!(f, "  duplicate ids: {:?}", self.sse.duplicate_detail)?;
        }
        if !self.sse.doubled_detail.is_empty() {
            writeln!(f, "  doubled answers: {:?}", self.sse.doubled_detail)?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turns_lose_and_double_nothing_through_killed_workers_lost_redis_a_restarted_database_a_failing_provider_and_smtp_down()
 {
    let started = Instant::now();
    let turns: usize = std::env::var("AGENTQ_FAULT_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("AGENTQ_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(18);
    assert!(turns >= 4 * 2 * DIGEST_USERS, "at least 40 turns");
    let mut dice = Dice(seed);

    let postgres = Arc::new(PrivatePostgres::start());
    let mut redis = PrivateRedis::start().await;
    let mut app = TestApp::start_api_on_database(postgres.url(), redis.url()).await;
    app.lift_rate_limits().await;
    let owner = create_owner(&app.services, "root@example.com").await;
    app.configure_site(&owner, json!({"auto_archive_days": 7}))
        .await;
    let mut tokens = vec![app.token.clone()];
    let digest_recipients: Vec<String> = (0..DIGEST_USERS)
        .map(|i| format!("digest-{i}@example.com"))
        .collect();
    for email in &digest_recipients {
        tokens.push(create_user(&app.services, email, "acme").await);
    }
    app.fake.respond_with(respond);
    app.fake.inject_faults(seed, 10, Duration::from_secs(4));

    let api = AgentqProcess::api(&app, LogFormat::Json);
    api.serving().await;
    app.base = api.base_url().to_owned();
    let smtp_port = SmtpSink::unused_port();
    let _mail = AgentqProcess::mail_worker(&app, &smtp_url(smtp_port));
    let _scheduler = AgentqProcess::spawn(
        &app,
        "scheduler",
        &[
            "--maintenance-cron",
            "0 0 1 1 *",
            "--recovery-interval-secs",
            "1",
            "--recovery-stale-secs",
            "5",
        ],
    );
    // The cap on starts of one step (default 3) is not what this suite checks: with 10 kills
    // and a 30 s database outage (whose pool timeouts count as starts) an unlucky step can
    // use 3 and fail with `worker_lost`, a visible error rather than a loss. The cap has a
    // test of its own: `a_turn_that_keeps_losing_its_worker_fails_with_worker_lost`
    // (tests/turn_engine.rs).
    let worker_flags = [
        "--turn-max-attempts",
        "10",
        "--concurrency",
        "16",
        "--provider-startup-timeout-secs",
        "2",
        "--provider-max-backoff-secs",
        "2",
    ];
    let mut workers: Vec<AgentqProcess> = (0..WORKERS)
        .map(|_| AgentqProcess::worker(&app, &worker_flags))
        .collect();

    let client = Client {
        http: reqwest::Client::new(),
        base: app.base.clone(),
        statuses: Arc::default(),
        server_errors: Arc::default(),
        replays: Arc::default(),
    };
    let shared = Shared {
        client: client.clone(),
        pool: app.services.store.pool().clone(),
        app_store: app.services.store.clone(),
        tokens: Arc::new(tokens),
        readers: Arc::default(),
        digest_chats: Arc::default(),
        seed,
    };

    // The faults, each due after a share of the turns was submitted: ten kills at random
    // moments, the rest at fixed points in between.
    let mut schedule: Vec<(usize, Fault)> = (0..KILLS)
        .map(|_| {
            (
                turns / 20 + dice.next((turns * 17 / 20) as u64) as usize,
                Fault::KillWorker,
            )
        })
        .collect();
    schedule.extend([
        (turns / 4, Fault::RestartRedis),
        (turns * 2 / 5, Fault::RestartPostgres),
        (turns / 2, Fault::FlushRedis),
        (turns * 13 / 20, Fault::DigestTickWithSmtpDown),
    ]);
    schedule.sort();

    let mut counts = Counts {
        turns,
        ..Counts::default()
    };
    let mut smtp_up: Option<tokio::task::JoinHandle<SmtpSink>> = None;
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut drivers = JoinSet::new();
    let finished = Arc::new(AtomicUsize::new(0));
    let probe_chat = Arc::new(Mutex::new(None::<Uuid>));
    let mut next_fault = 0;
    for index in 0..turns {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (driver, finished) = (shared.clone(), finished.clone());
        drivers.spawn(async move {
            let driven = drive_turn(driver, index).await;
            finished.fetch_add(1, Ordering::SeqCst);
            drop(permit);
            driven
        });
        replace_exited_workers(&app, &mut workers, &worker_flags, &mut counts);
        while next_fault < schedule.len() && schedule[next_fault].0 <= index {
            let fault = schedule[next_fault].1;
            next_fault += 1;
            match fault {
                Fault::KillWorker => {
                    tokio::time::sleep(Duration::from_millis(dice.next(700))).await;
                    let victim = dice.next(WORKERS as u64) as usize;
                    workers[victim].kill();
                    workers[victim] = AgentqProcess::worker(&app, &worker_flags);
                    counts.workers_killed += 1;
                }
                Fault::RestartRedis => {
                    redis.restart().await;
                    counts.redis_restarts += 1;
                }
                Fault::FlushRedis => {
                    let mut conn = redis::Client::open(redis.url())
                        .unwrap()
                        .get_multiplexed_async_connection()
                        .await
                        .unwrap();
                    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
                    counts.redis_flushes += 1;
                }
                Fault::RestartPostgres => {
                    let chat = *probe_chat.lock().unwrap();
                    let probe_path = match chat {
                        Some(chat) => format!("/api/v1/chats/{chat}"),
                        None => "/api/v1/chats?limit=1".to_owned(),
                    };
                    restart_postgres(
                        &postgres,
                        &client,
                        &shared.tokens[0],
                        &probe_path,
                        &mut counts,
                    )
                    .await;
                }
                Fault::DigestTickWithSmtpDown => {
                    eventually(
                        Duration::from_secs(240),
                        "the digest users' chats to be idle",
                        || async {
                            (shared.digest_chats.lock().unwrap().len() == 2 * DIGEST_USERS)
                                .then_some(())
                        },
                    )
                    .await;
                    // Nothing listens on the SMTP port during the tick and for 5 s after.
                    let tick = eventually(Duration::from_secs(60), "the digest tick", || async {
                        app.maintenance_tick(Utc::now()).await
                    })
                    .await;
                    counts.chats_archived = tick.archived;
                    counts.digests_queued = tick.emails_queued;
                    smtp_up = Some(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        SmtpSink::start_on(smtp_port)
                    }));
                }
            }
        }
        if probe_chat.lock().unwrap().is_none() && index > 0 {
            *probe_chat.lock().unwrap() = sqlx::query_scalar(
                "SELECT id FROM chats WHERE parent_chat_id IS NULL ORDER BY id LIMIT 1",
            )
            .fetch_optional(&shared.pool)
            .await
            .ok()
            .flatten();
        }
    }
    let mut driven = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120 + turns as u64);
    while !drivers.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} of {turns} turns unfinished at the deadline",
            turns - finished.load(Ordering::SeqCst)
        );
        replace_exited_workers(&app, &mut workers, &worker_flags, &mut counts);
        if let Ok(Some(done)) =
            tokio::time::timeout(Duration::from_millis(500), drivers.join_next()).await
        {
            driven.push(done.unwrap());
        }
    }
    let readers: Vec<_> = shared.readers.lock().unwrap().drain(..).collect();
    counts.sse_readers = readers.len();
    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("every SSE reader ends once its chat is done")
            .unwrap();
        counts.sse.add(&seen);
    }
    let smtp = smtp_up.expect("the digest tick ran").await.unwrap();
    let pool = shared.pool.clone();
    eventually(Duration::from_secs(60), "every digest sent", || async {
        let unsent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notification_messages WHERE status <> 'sent'")
                .fetch_one(&pool)
                .await
                .ok()?;
        (unsent == 0).then_some(())
    })
    .await;
    // Late duplicates would come within a second or two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    counts.provider_faults = app.fake.stop_faults();
    counts.provider_requests = app.fake.received().len();
    count_in_postgres(&pool, &driven, &mut counts).await;
    for recipient in &digest_recipients {
        counts
            .digest_mails_by_recipient
            .insert(recipient.clone(), smtp.messages_to(recipient).len());
    }
    counts.client_statuses = client.statuses.lock().unwrap().clone();
    counts.client_server_errors = client.server_errors.lock().unwrap().clone();
    counts.create_replays = client.replays.load(Ordering::Relaxed);
    counts.seconds = started.elapsed().as_secs_f64();
    println!("{counts}");

    let unfinished: i64 = ["queued", "running", "awaiting_tools"]
        .iter()
        .map(|s| {
            counts.root_turns_by_status.get(*s).copied().unwrap_or(0)
                + counts.child_turns_by_status.get(*s).copied().unwrap_or(0)
        })
        .sum();
    assert_eq!(unfinished, 0, "every turn is in a terminal state\n{counts}");
    assert_eq!(
        counts.root_turns_by_status.get("completed").copied(),
        Some(turns as i64),
        "every turn completed\n{counts}"
    );
    assert_eq!(
        counts.steps_without_one_assistant_message, 0,
        "each step has exactly one assistant message\n{counts}"
    );
    assert_eq!(
        (
            counts.user_messages_found,
            counts.user_messages_lost,
            counts.user_messages_doubled
        ),
        (turns, 0, 0),
        "no user message lost or doubled\n{counts}"
    );
    assert_eq!(
        counts.tool_calls_without_result, 0,
        "every tool call ran to a result\n{counts}"
    );
    assert_eq!(
        counts.tool_calls_of_completed_roots, counts.tool_calls_expected as i64,
        "each completed turn made its tool calls once\n{counts}"
    );
    assert_eq!(
        (
            counts.chats_archived,
            counts.digests_queued,
            counts.digests_sent
        ),
        (2 * DIGEST_USERS, DIGEST_USERS, DIGEST_USERS as i64),
        "every digest queued and sent\n{counts}"
    );
    assert!(
        counts.digest_attempts > DIGEST_USERS as i64,
        "SMTP was down when the digests were first sent\n{counts}"
    );
    assert!(
        counts.digest_mails_by_recipient.values().all(|n| *n == 1),
        "every digest delivered exactly once\n{counts}"
    );
    assert_eq!(
        (
            counts.sse.duplicate_event_ids,
            counts.sse.duplicate_messages,
            counts.sse.answers_doubled
        ),
        (0, 0, 0),
        "no client saw an answer twice\n{counts}"
    );
    assert!(
        counts.sse.answers_matched > 0,
        "readers verified answers\n{counts}"
    );
    assert!(
        counts.outage_probes.get(&503).copied().unwrap_or(0) > 0
            && counts.outage_probes.keys().all(|s| *s == 503)
            && counts.outage_probes_without_json == 0,
        "the API answered 503 with a JSON body while PostgreSQL was down\n{counts}"
    );
    assert!(
        counts.client_server_errors.is_empty(),
        "never a 500\n{counts}"
    );
    assert_eq!(
        (
            counts.workers_killed,
            counts.redis_restarts,
            counts.redis_flushes,
            counts.postgres_restarts
        ),
        (KILLS, 1, 1, 1),
        "every fault happened\n{counts}"
    );
    assert!(
        counts.provider_faults.total() > 0,
        "the provider failed on purpose\n{counts}"
    );
    let api_log_errors: Vec<String> = api
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("internal error"))
        .collect();
    assert!(
        api_log_errors.is_empty(),
        "the API logged no internal error: {api_log_errors:?}\n{counts}"
    );
    drop(workers);
    app.stop().await;
}

/// Starts a replacement for every turn worker that exited by itself.
fn replace_exited_workers(
    app: &TestApp,
    workers: &mut [AgentqProcess],
    flags: &[&str],
    counts: &mut Counts,
) {
    for worker in workers.iter_mut() {
        if worker.exited().is_some() {
            counts.workers_exited_on_their_own += 1;
            *worker = AgentqProcess::worker(app, flags);
        }
    }
}

/// Stops PostgreSQL, polls the API's `probe_path` while it is down (each answer counted by
/// status), and starts it again.
async fn restart_postgres(
    postgres: &Arc<PrivatePostgres>,
    client: &Client,
    token: &str,
    probe_path: &str,
    counts: &mut Counts,
) {
    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap();
    let down = Instant::now();
    let mut answered = 0;
    while answered < 3 && down.elapsed() < Duration::from_secs(30) {
        let asked = Instant::now();
        if let Ok((status, body)) = client.send(Method::GET, token, probe_path, None).await {
            answered += 1;
            counts.slowest_outage_probe_ms = counts
                .slowest_outage_probe_ms
                .max(asked.elapsed().as_millis());
            *counts.outage_probes.entry(status.as_u16()).or_default() += 1;
            if body["message"].as_str().is_none() {
                counts.outage_probes_without_json += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || pg.start_again())
        .await
        .unwrap();
    counts.outage_seconds = down.elapsed().as_secs_f64();
    counts.postgres_restarts += 1;
}

/// The exact counts, from PostgreSQL.
async fn count_in_postgres(pool: &sqlx::PgPool, driven: &[Driven], counts: &mut Counts) {
    for d in driven {
        *counts
            .by_kind
            .entry(format!("{:?}", Kind::of(d.index)))
            .or_default() += 1;
        *counts
            .chats_by_client_status
            .entry(d.status.clone())
            .or_default() += 1;
        counts.create_retries += d.create_attempts - 1;
        counts.client_results_posted += d.results_posted;
    }
    let by_status: Vec<(bool, String, i64)> = sqlx::query_as(
        "SELECT c.parent_chat_id IS NULL, t.status, count(*) FROM chat_turns t \
         JOIN chats c ON c.id = t.chat_id GROUP BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (root, status, n) in by_status {
        let map = if root {
            &mut counts.root_turns_by_status
        } else {
            &mut counts.child_turns_by_status
        };
        map.insert(status, n);
    }
    // Every step of every completed turn (steps 0..=step) has exactly one assistant
    // message; no turn has two for one step.
    let (steps, assistant, wrong): (i64, i64, i64) = sqlx::query_as(
        "WITH per_step AS ( \
           SELECT t.id, s.step, (SELECT count(*) FROM chat_messages m \
              WHERE m.turn_id = t.id AND m.role = 'assistant' AND m.step = s.step) AS n \
           FROM chat_turns t, generate_series(0, t.step) AS s(step) \
           WHERE t.status = $1) \
         SELECT count(*), \
           (SELECT count(*) FROM chat_messages WHERE role = 'assistant'), \
           count(*) FILTER (WHERE n <> 1) \
             + (SELECT count(*) FROM (SELECT 1 FROM chat_messages WHERE role = 'assistant' \
                GROUP BY turn_id, step HAVING count(*) > 1) d) \
         FROM per_step",
    )
    .bind("completed")
    .fetch_one(pool)
    .await
    .unwrap();
    (
        counts.steps,
        counts.assistant_messages,
        counts.steps_without_one_assistant_message,
    ) = (steps, assistant, wrong);
    // Every submitted turn's user message, once.
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(m.content->0->>'text', '') FROM chat_messages m \
         JOIN chats c ON c.id = m.chat_id WHERE m.role = 'user' AND c.parent_chat_id IS NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found: HashMap<String, usize> = HashMap::new();
    for text in &texts {
        if let (Some(start), Some(end)) = (text.find('['), text.find(']')) {
            *found.entry(text[start..=end].to_owned()).or_default() += 1;
        }
    }
    for d in driven {
        match found.get(&Kind::of(d.index).marker(d.index)) {
            None => counts.user_messages_lost += 1,
            Some(1) => counts.user_messages_found += 1,
            Some(_) => {
                counts.user_messages_found += 1;
                counts.user_messages_doubled += 1;
            }
        }
    }
    let calls: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, count(*), count(*) FILTER (WHERE result IS NULL) FROM tool_calls GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (status, n, without_result) in calls {
        if !matches!(status.as_str(), "succeeded" | "failed") {
            counts.tool_calls_without_result += n;
        } else {
            counts.tool_calls_without_result += without_result;
        }
        counts.tool_calls_by_status.insert(status, n);
    }
    counts.tool_calls_of_completed_roots = sqlx::query_scalar(
        "SELECT count(*) FROM tool_calls tc JOIN chat_turns t ON t.id = tc.turn_id \
         JOIN chats c ON c.id = tc.chat_id WHERE c.parent_chat_id IS NULL AND t.status = $1",
    )
    .bind("completed")
    .fetch_one(pool)
    .await
    .unwrap();
    counts.tool_calls_expected = driven
        .iter()
        .filter(|d| d.status == "waiting")
        .map(|d| Kind::of(d.index).tool_calls())
        .sum();
    (counts.digests_sent, counts.digest_attempts) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = $1), coalesce(sum(attempts), 0)::bigint \
         FROM notification_messages WHERE template = 'archive_digest'",
    )
    .bind("sent")
    .fetch_one(pool)
    .await
    .unwrap();
}
