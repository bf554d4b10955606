//! Edit and regenerate (issue #13, item 6; ARCHITECTURE.md §4.1), seen from the provider
//! and the API: after an edit the model sees the conversation up to the edited message and
//! the new text, nothing of what followed; after a regenerate it sees the same question
//! without the old answer; the replaced messages leave the message list (they stay
//! readable with `include_superseded=true`, their cost with them) and streaming clients
//! are told to drop them; both are refused while a turn is unfinished, 404 for what is not
//! the caller's and 400 for editing an answer.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner, create_user},
    fake_openai::{Reply, answer_to},
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// The user and assistant texts of an OpenAI request, in order (`role: text`).
fn conversation_sent(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user" || m["role"] == "assistant")
        .map(|m| {
            format!(
                "{}: {}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The id of a message from the list.
fn id_of(message: &Value) -> Uuid {
    message["id"].as_str().unwrap().parse().unwrap()
}

/// Sends `text` to an idle chat and waits until it is answered (`count` messages).
async fn exchange(app: &TestApp, chat: Uuid, text: &str, count: usize) -> Vec<Value> {
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({ "message": text }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.wait_until_answered(chat, count, WAIT).await
}

#[sqlx::test]
async fn editing_the_first_message_leaves_the_model_only_the_edited_one(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let chat = app.create_chat("What is the capital of France?").await;
    app.wait_until_answered(chat, 2, WAIT).await;
    let before = exchange(&app, chat, "And of Italy?", 4).await;
    let first = id_of(&before[0]);

    let (status, edited) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/{first}"),
            json!({ "message": "What is the capital of Spain?" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["superseded_from_message_id"], json!(first));
    assert_eq!(
        edited["superseded_messages"], 4,
        "the whole old conversation"
    );
    assert_eq!(edited["message"]["role"], "user");
    assert_eq!(
        edited["message"]["content"][0]["text"],
        "What is the capital of Spain?"
    );
    assert_ne!(edited["message"]["id"], json!(first), "a new message");

    let messages = app.wait_until_answered(chat, 2, WAIT).await;
    assert_eq!(
        messages.len(),
        2,
        "the list shows the new conversation: {messages:?}"
    );
    assert_eq!(messages[0]["id"], edited["message"]["id"]);
    assert_eq!(
        messages[1]["content"][0]["text"],
        answer_to("What is the capital of Spain?")
    );

    // The request after the edit holds the edited message and nothing of the old exchanges.
    let received = app.fake.received();
    assert_eq!(received.len(), 3, "two answers, then the edit's");
    assert_eq!(
        conversation_sent(&received[2].body),
        ["user: What is the capital of Spain?"]
    );
    let sent = received[2].body.to_string();
    for gone in ["France", "Italy"] {
        assert!(!sent.contains(gone), "{gone} was replaced: {sent}");
    }

    // The replaced messages are kept, marked, and listed when asked for.
    let (status, all) = app
        .get(&format!(
            "/api/v1/chats/{chat}/messages?include_superseded=true"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all = all["messages"].as_array().unwrap();
    assert_eq!(all.len(), 6);
    let superseded: Vec<&Value> = all
        .iter()
        .filter(|m| !m["superseded_at"].is_null())
        .collect();
    assert_eq!(superseded.len(), 4);
    assert_eq!(superseded[0]["id"], json!(first));
    assert!(messages.iter().all(|m| m["superseded_at"].is_null()));

    // A streaming client is told to drop them before the new turn's events.
    let events = app
        .events_until(chat, WAIT, |e| e.event == "messages_superseded")
        .await;
    let drop = events.last().unwrap();
    assert_eq!(drop.event, "messages_superseded", "{events:?}");
    assert_eq!(drop.data["from_message_id"], json!(first));
    assert_eq!(drop.data["reason"], "edit");

    // A superseded message cannot be edited again: its replacement can.
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/{first}"),
            json!({ "message": "Portugal?" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("replaced"),
        "{body}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn regenerating_asks_the_same_question_again_without_the_old_answer(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    // A priced model, to see that a replaced answer keeps its cost.
    let owner = create_owner(&app.services, "root@example.com").await;
    let post = reqwest::Method::POST;
    let (status, provider) = app
        .send(
            post.clone(),
            &owner,
            "/api/v1/admin/providers",
            Some(json!({"name": "Fake", "kind": "openai-compat", "base_url": app.fake.base_url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let (status, model) = app
        .send(
            post,
            &owner,
            "/api/v1/admin/models",
            Some(
                json!({"provider_id": provider["id"], "name": "fake-gpt", "is_default": true,
                        "input_price_micros": 1_000_000, "output_price_micros": 1_000_000}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");

    // The first turn uses a tool: an assistant call, its result and the answer.
    app.fake.script([
        Reply::ToolCalls(vec![("call_1".into(), "current_time".into(), json!({}))]),
        Reply::Text("The old answer.".into()),
        Reply::Text("The new answer.".into()),
    ]);
    let chat = app.create_chat("What time is it?").await;
    let before = app.wait_until_answered(chat, 4, WAIT).await;
    assert_eq!(before[3]["content"][0]["text"], "The old answer.");
    let old_cost = before[3]["cost_micros"].clone();
    assert!(old_cost.as_i64().unwrap() > 0, "{old_cost}");

    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/regenerate"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["superseded_from_message_id"], before[1]["id"],
        "from the turn's first answer on"
    );
    assert_eq!(body["superseded_messages"], 3, "call, result, answer");

    let messages = app.wait_until_answered(chat, 2, WAIT).await;
    let texts: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["content"][0]["text"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("user", "What time is it?"),
            ("assistant", "The new answer.")
        ],
        "the same question, the new answer"
    );
    assert_eq!(
        messages[0]["id"], before[0]["id"],
        "the user message is kept"
    );

    let received = app.fake.received();
    assert_eq!(received.len(), 3);
    let regenerated = &received[2].body;
    assert_eq!(
        conversation_sent(regenerated),
        ["user: What time is it?"],
        "{regenerated}"
    );
    let sent = regenerated.to_string();
    assert!(!sent.contains("The old answer."), "{sent}");
    assert!(
        !sent.contains("call_1"),
        "the old tool step is gone too: {sent}"
    );

    // The old answer stays in the table with its cost.
    let (_, all) = app
        .get(&format!(
            "/api/v1/chats/{chat}/messages?include_superseded=true"
        ))
        .await;
    let all = all["messages"].as_array().unwrap();
    assert_eq!(all.len(), 5);
    let old = all.iter().find(|m| m["id"] == before[3]["id"]).unwrap();
    assert!(!old["superseded_at"].is_null());
    assert_eq!(old["cost_micros"], old_cost);

    let events = app
        .events_until(chat, WAIT, |e| e.event == "messages_superseded")
        .await;
    let drop = events.last().unwrap();
    assert_eq!(drop.data["from_message_id"], before[1]["id"]);
    assert_eq!(drop.data["reason"], "regenerate");

    // Again: only the newest answer is replaced.
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/regenerate"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["superseded_from_message_id"], messages[1]["id"]);
    assert_eq!(body["superseded_messages"], 1);
    let messages = app.wait_until_answered(chat, 2, WAIT).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[1]["content"][0]["text"],
        answer_to("What time is it?")
    );
    app.stop().await;
}

#[sqlx::test]
async fn edit_and_regenerate_are_refused_while_a_turn_runs(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    app.fake.set_chunk_delay(Duration::from_millis(100));
    // The answer never ends until the turn is interrupted.
    app.fake.script([Reply::Endless("more ".into())]);
    let chat = app.create_chat("Tell me everything.").await;
    app.events_until(chat, WAIT, |e| e.event == "message_part")
        .await;
    let first = id_of(&app.messages(chat).await[0]);

    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/{first}"),
            json!({ "message": "Tell me less." }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("running"),
        "{body}"
    );
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/regenerate"), Value::Null)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("running"),
        "{body}"
    );

    // Nothing changed: the turn still runs and no message is superseded.
    let (_, all) = app
        .get(&format!(
            "/api/v1/chats/{chat}/messages?include_superseded=true"
        ))
        .await;
    let all = all["messages"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0]["superseded_at"].is_null());
    let (_, chat_now) = app.get(&format!("/api/v1/chats/{chat}")).await;
    assert_eq!(chat_now["status"], "running");

    // Once it stops, an edit goes through.
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/interrupt"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_until_answered(chat, 2, WAIT).await;
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/{first}"),
            json!({ "message": "Tell me less." }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages = app.wait_until_answered(chat, 2, WAIT).await;
    assert_eq!(
        messages[1]["content"][0]["text"],
        answer_to("Tell me less.")
    );
    app.stop().await;
}

#[sqlx::test]
async fn others_chats_and_messages_are_404_and_answers_cannot_be_edited(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let chat = app.create_chat("Alice's question").await;
    let messages = app.wait_until_answered(chat, 2, WAIT).await;
    let (question, answer) = (id_of(&messages[0]), id_of(&messages[1]));

    // Someone else's chat: 404 for both, and nothing happens.
    let (status, body) = app
        .patch_as(
            &bob,
            &format!("/api/v1/chats/{chat}/messages/{question}"),
            json!({ "message": "Bob's question" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app
        .post_as(
            &bob,
            &format!("/api/v1/chats/{chat}/regenerate"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A message of another chat (Bob's), or none at all: 404 naming the message.
    let (status, bobs) = app
        .post_as(&bob, "/api/v1/chats", json!({ "message": "Bob's own" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bobs}");
    let bobs_chat: Uuid = bobs["id"].as_str().unwrap().parse().unwrap();
    let (status, bob_messages) = app
        .get_as(&bob, &format!("/api/v1/chats/{bobs_chat}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let bobs_message = id_of(&bob_messages["messages"][0]);
    for other in [bobs_message, Uuid::now_v7()] {
        let (status, body) = app
            .patch_as(
                &app.token,
                &format!("/api/v1/chats/{chat}/messages/{other}"),
                json!({ "message": "hijack" }),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("message"),
            "{body}"
        );
    }

    // An answer is not the user's to edit: 400 naming the message id.
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/{answer}"),
            json!({ "message": "a better answer" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], "message_id", "{body}");
    assert!(
        body["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("assistant"),
        "{body}"
    );
    // The new text is checked as a sent message is.
    for (bad, why) in [
        (json!({ "message": "  " }), "empty"),
        (json!({}), "required"),
    ] {
        let (status, body) = app
            .patch_as(
                &app.token,
                &format!("/api/v1/chats/{chat}/messages/{question}"),
                bad,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["validations"][0]["field"], "message", "{body}");
        assert!(body.to_string().contains(why), "{body}");
    }
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{chat}/messages/not-a-uuid"),
            json!({ "message": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Nothing was superseded by any of it.
    let (_, all) = app
        .get(&format!(
            "/api/v1/chats/{chat}/messages?include_superseded=true"
        ))
        .await;
    let all = all["messages"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|m| m["superseded_at"].is_null()));
    app.stop().await;
}

#[sqlx::test]
async fn a_closed_subagent_chat_is_neither_edited_nor_regenerated(pool: sqlx::PgPool) {
    use agentq_core::store::{NewSubagent, Spawned};

    let app = TestApp::start_api_only(pool).await;
    let parent = app.create_chat("Parent task").await;
    let store = &app.services.store;
    let Spawned::Created { child, message, .. } = store
        .spawn_subagent(&NewSubagent {
            parent_chat_id: parent,
            call_id: Uuid::now_v7(),
            subagent_type: "general",
            prompt: "Child task",
            title: "",
            max_live: 5,
            max_total: 50,
        })
        .await
        .unwrap()
    else {
        panic!("the child is spawned");
    };
    assert!(
        store
            .close_child_chat(parent, child.id)
            .await
            .unwrap()
            .is_some()
    );

    let (status, body) = app
        .patch_as(
            &app.token,
            &format!("/api/v1/chats/{}/messages/{}", child.id, message.id),
            json!({ "message": "Another task" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("closed"),
        "{body}"
    );
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{}/regenerate", child.id),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("closed"),
        "{body}"
    );
    app.stop().await;
}
