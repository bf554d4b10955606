//! Context budget and compaction (issue #13 items 1 and 2; ARCHITECTURE.md §7), against a
//! fake OpenAI-compatible model with a small context window that refuses, as OpenAI does,
//! any request that does not fit: a chat of 50 long exchanges, with tool calls among them,
//! keeps answering; every request stays within the window; summaries replace the older
//! part of what is sent while the originals stay listed; tool calls and their results are
//! never sent apart.

mod support;

use std::{collections::HashSet, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    fake_openai::{Reply, SUMMARIZER_OPENING, max_output, request_tokens},
};
use uuid::Uuid;

/// The fake model's window, in its own tokens (4 bytes each).
const WINDOW: u64 = 4_000;
/// The model's output cap.
const MAX_OUTPUT: u64 = 400;

/// A model with the small window on the test's fake, priced; returns its id.
async fn small_model(app: &TestApp) -> String {
    let owner = create_owner(&app.services, "owner@example.com").await;
    app.model_on_fake(
        &owner,
        "small-window",
        json!({"context_limit": WINDOW, "max_output_tokens": MAX_OUTPUT,
               "input_price_micros": 1_000_000, "output_price_micros": 2_000_000}),
    )
    .await
}

/// About 1.2 KB of prose for exchange `i`: a quarter of the window with its echo.
fn long_message(i: usize) -> String {
    let filler = "the agent reads the repository and reports what it found ".repeat(20);
    format!("Exchange {i}: {filler}")
}

/// Every tool call an assistant message of `body` makes is answered by a tool message
/// after it, and every tool message answers a call made before it.
fn pairs_are_whole(body: &Value) -> Result<(), String> {
    let mut open: HashSet<String> = HashSet::new();
    let mut made: HashSet<String> = HashSet::new();
    for m in body["messages"].as_array().unwrap() {
        match m["role"].as_str().unwrap() {
            "assistant" => {
                if let Some(id) = open.iter().next() {
                    return Err(format!("call {id} has no result before the next answer"));
                }
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let id = call["id"].as_str().unwrap().to_owned();
                    open.insert(id.clone());
                    made.insert(id);
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap();
                if !made.contains(id) {
                    return Err(format!("result of {id} sent without its call"));
                }
                open.remove(id);
            }
            _ => {}
        }
    }
    match open.iter().next() {
        Some(id) => Err(format!("call {id} sent without its result")),
        None => Ok(()),
    }
}

fn is_summarizer(body: &Value) -> bool {
    body["messages"][0]["content"]
        .as_str()
        .is_some_and(|s| s.starts_with(SUMMARIZER_OPENING))
}

#[sqlx::test]
async fn fifty_long_exchanges_keep_answering_within_a_small_window(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.lift_rate_limits().await;
    app.fake.set_chunk_delay(Duration::ZERO);
    app.fake.set_context_limit(Some(WINDOW));
    let model = small_model(&app).await;
    // Debug runs on: compaction steps are recorded as such.
    let owner = create_owner(&app.services, "site@example.com").await;
    app.enable_debug_runs(&owner).await;
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": long_message(0), "model_config_id": model}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(chat, 2, Duration::from_secs(20))
        .await;
    for i in 1..50 {
        if i % 7 == 0 {
            // The model calls a tool first; its answer comes in the turn's next step.
            app.fake.script([Reply::ToolCalls(vec![(
                format!("call_{i}"),
                "current_time".into(),
                json!({}),
            )])]);
        }
        let (status, body) = app
            .post(
                &format!("/api/v1/chats/{chat}/messages"),
                json!({"message": long_message(i)}),
            )
            .await;
        assert!(status.is_success(), "exchange {i}: {status} {body}");
        wait_idle(&app, chat, i).await;
    }

    let received = app.fake.received();
    let answers: Vec<&Value> = received
        .iter()
        .map(|r| &r.body)
        .filter(|b| !is_summarizer(b))
        .collect();
    let summaries = received.len() - answers.len();
    // Every request the model received fit its window: none was refused.
    let mut largest = 0;
    for (n, r) in received.iter().enumerate() {
        let needed = request_tokens(&r.body) + max_output(&r.body).unwrap_or(0);
        assert!(
            needed <= WINDOW,
            "request {n} needs {needed} tokens of {WINDOW}"
        );
        largest = largest.max(needed);
    }
    eprintln!(
        "{} requests, {summaries} compactions, the largest {largest} of {WINDOW} tokens",
        received.len()
    );
    for (n, body) in answers.iter().enumerate() {
        if let Err(e) = pairs_are_whole(body) {
            panic!("answer request {n}: {e}");
        }
    }
    // 50 answers, 7 of them after a tool call, and the summarizer's requests.
    assert_eq!(answers.len(), 50 + 7, "answer requests");
    assert!(
        summaries >= 5,
        "only {summaries} compactions for 50 long exchanges"
    );

    // Every exchange was answered, in order, and the summaries are listed as such, the
    // originals with them.
    let messages = app.messages(chat).await;
    let texts: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "assistant" && m["kind"] == "message")
        .filter_map(|m| m["content"][0]["text"].as_str())
        .collect();
    assert_eq!(texts.len(), 50, "one answer per exchange");
    for (i, text) in texts.iter().enumerate() {
        assert!(
            text.starts_with(&format!("Echo: Exchange {i}:")),
            "answer {i}: {text:.40}"
        );
    }
    let listed: Vec<&Value> = messages.iter().filter(|m| m["kind"] == "summary").collect();
    assert_eq!(
        listed.len(),
        summaries,
        "one summary message per compaction"
    );
    // Each compaction's usage and cost are counted, on its summary message.
    for summary in &listed {
        assert!(
            summary["usage"]["input_tokens"].as_u64() > Some(0),
            "{summary}"
        );
        assert!(summary["cost_micros"].as_i64() > Some(0), "{summary}");
        assert!(summary["compacted_through"].is_string(), "{summary}");
    }
    // And each is a step of its turn's debug run.
    let (status, export) = app.get(&format!("/api/v1/chats/{chat}/debug/export")).await;
    assert_eq!(status, StatusCode::OK);
    let recorded = export["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|run| run["steps"].as_array().unwrap())
        .filter(|step| step["request"]["purpose"] == "compaction")
        .count();
    assert_eq!(recorded, summaries, "compaction steps in the debug runs");
    assert!(
        messages.iter().any(|m| m["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Exchange 0:"))),
        "the first message is still listed"
    );
    // The last request began with the latest summary, not with the first message.
    let last = answers.last().unwrap();
    let first_user = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap();
    assert!(
        first_user["content"]
            .as_str()
            .unwrap()
            .contains("Summary of the earlier part of this conversation"),
        "{first_user}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_message_too_long_for_the_window_fails_with_context_length_until_edited(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    app.fake.set_chunk_delay(Duration::ZERO);
    app.fake.set_context_limit(Some(WINDOW));
    let model = small_model(&app).await;
    let huge = format!("Exchange 0: {}", "far too much text ".repeat(1_200));
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": huge, "model_config_id": model}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    let failed = support::eventually(Duration::from_secs(20), "the turn to fail", || async {
        let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (body["status"] == "error").then_some(body)
    })
    .await;
    assert_eq!(failed["last_error"]["kind"], "context_length", "{failed}");
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("Shorten it"), "{message}");
    assert!(
        app.fake.received().is_empty(),
        "nothing was sent: no request that cannot fit, and no summary of it"
    );
    assert!(
        app.messages(chat)
            .await
            .iter()
            .all(|m| m["kind"] != "summary")
    );

    // Shortened by an edit, it is answered.
    let first = app.messages(chat).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/{first}"),
            json!({"message": long_message(0)}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    wait_idle(&app, chat, 0).await;
    app.stop().await;
}

/// Waits until exchange `i` is answered and the chat is idle again.
async fn wait_idle(app: &TestApp, chat: Uuid, i: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = app.get(&format!("/api/v1/chats/{chat}")).await;
        match body["status"].as_str() {
            Some("waiting") => {
                let messages = app.messages(chat).await;
                let answered = messages.iter().any(|m| {
                    m["role"] == "assistant"
                        && m["content"][0]["text"]
                            .as_str()
                            .is_some_and(|t| t.starts_with(&format!("Echo: Exchange {i}:")))
                });
                if answered {
                    return;
                }
            }
            Some("error") => {
                let sent: Vec<(u64, bool)> = app
                    .fake
                    .received()
                    .iter()
                    .map(|r| (request_tokens(&r.body), is_summarizer(&r.body)))
                    .collect();
                panic!(
                    "exchange {i} failed: {}; requests (tokens, summarizer): {sent:?}",
                    body["last_error"]
                )
            }
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "exchange {i} not answered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A model whose tokenizer agentq knows (`gpt-4o…`: o200k) behind a server that counts
/// differently: runs of `=` are a few tokens to agentq, a token per 4 bytes to the server.
/// The estimate stays under the threshold, the server refuses the request as too long,
/// and the step compacts at once and asks again instead of failing the chat for good.
#[sqlx::test]
async fn a_request_the_provider_refuses_as_too_long_is_compacted_and_sent_again(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    app.fake.set_chunk_delay(Duration::ZERO);
    app.fake.set_context_limit(Some(WINDOW));
    let owner = create_owner(&app.services, "owner@example.com").await;
    let model = app
        .model_on_fake(
            &owner,
            "gpt-4o-window",
            json!({"context_limit": WINDOW, "max_output_tokens": MAX_OUTPUT}),
        )
        .await;
    let message = |i: usize| format!("Exchange {i}: {}", "=".repeat(2_400));
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": message(0), "model_config_id": model}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    wait_idle(&app, chat, 0).await;
    for i in 1..6 {
        let (status, body) = app
            .post(
                &format!("/api/v1/chats/{chat}/messages"),
                json!({"message": message(i)}),
            )
            .await;
        assert!(status.is_success(), "exchange {i}: {status} {body}");
        wait_idle(&app, chat, i).await;
    }
    // The server refused at least one request, and each refusal was followed by a summary
    // request and the same step asked again, answered.
    let received = app.fake.received();
    let refused: Vec<usize> = received
        .iter()
        .enumerate()
        .filter(|(_, r)| request_tokens(&r.body) + max_output(&r.body).unwrap_or(0) > WINDOW)
        .map(|(n, _)| n)
        .collect();
    assert!(
        !refused.is_empty(),
        "the server never refused: the test shows nothing"
    );
    for n in refused {
        assert!(
            received.get(n + 1).is_some_and(|r| is_summarizer(&r.body)),
            "request {n} was refused and not followed by a compaction"
        );
    }
    let messages = app.messages(chat).await;
    assert!(messages.iter().any(|m| m["kind"] == "summary"));
    app.stop().await;
}
