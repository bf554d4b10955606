//! Spend limits (issue #15, item 4; `agentq_core::store::spend_limits`): a user over their
//! limit gets no new turn (409) until the period resets, the turn that crosses the limit
//! finishes, periods roll over on UTC boundaries, a user's own limit beats their
//! organizations' smallest, which beats the site default, and the usage endpoints show the
//! figures the limits are checked against.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    fake_openai::Reply,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// A provider on the fake and a default model priced at a micro-dollar per token, in and
/// out, so every answer costs as many micro-dollars as it used tokens.
async fn priced_model(app: &TestApp, owner: &str) {
    let (status, provider) = app
        .send(
            Method::POST,
            owner,
            "/api/v1/admin/providers",
            Some(json!({"name": "Fake", "kind": "openai-compat", "base_url": app.fake.base_url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let (status, model) = app
        .send(
            Method::POST,
            owner,
            "/api/v1/admin/models",
            Some(
                json!({"provider_id": provider["id"], "name": "fake-gpt", "is_default": true,
                        "input_price_micros": 1_000_000, "output_price_micros": 1_000_000}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
}

async fn set_limits(app: &TestApp, owner: &str, body: Value) -> Value {
    let (status, limits) = app.put_as(owner, "/api/v1/admin/spend-limits", body).await;
    assert_eq!(status, StatusCode::OK, "{limits}");
    limits
}

async fn my_usage(app: &TestApp, token: &str) -> Value {
    let (status, usage) = app.get_as(token, "/api/v1/users/me/usage").await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    usage
}

/// A chat of `token`'s user whose first turn no worker takes (the app runs none).
async fn chat_of(app: &TestApp, token: &str, title: &str) -> Uuid {
    let (status, chat) = app
        .post_as(
            token,
            "/api/v1/chats",
            json!({"message": title, "title": title}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    chat["id"].as_str().unwrap().parse().unwrap()
}

/// Stores an answer of `chat` that cost `micros`, written at `at` (an SQL expression).
async fn seed_answer(app: &TestApp, chat: Uuid, model: &str, micros: i64, at: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO chat_messages (id, chat_id, role, content, model, cost_micros, created_at)
         VALUES ($1, $2, 'assistant', '[]', $3, $4, {at})"
    )))
    .bind(Uuid::now_v7())
    .bind(chat)
    .bind(model)
    .bind(micros)
    .execute(app.services.store.pool())
    .await
    .unwrap();
}

fn assert_over_limit(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("usage limit exceeded: spent $") && message.contains(", resets at "),
        "{body}"
    );
}

#[sqlx::test]
async fn the_turn_that_crosses_the_limit_finishes_and_the_next_message_is_refused(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    priced_model(&app, &owner).await;
    // A micro-dollar: the first step of the first turn crosses it.
    set_limits(
        &app,
        &owner,
        json!({"period": "day", "default_limit_micros": 1}),
    )
    .await;

    app.fake.script([
        Reply::ToolCalls(vec![("call_1".into(), "current_time".into(), json!({}))]),
        Reply::Text("It is now.".into()),
    ]);
    let chat = app.create_chat("What time is it?").await;
    let messages = app.wait_until_answered(chat, 4, WAIT).await;
    assert_eq!(
        messages[3]["content"][0]["text"], "It is now.",
        "the second step runs though the first crossed the limit"
    );
    let spent: i64 = messages
        .iter()
        .filter_map(|m| m["cost_micros"].as_i64())
        .sum();
    assert!(spent > 1, "{messages:?}");

    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "And now?"}),
        )
        .await;
    assert_over_limit(status, &body);
    assert_eq!(
        body["message"],
        format!(
            "usage limit exceeded: spent {} of $0.000001, resets at {}",
            agentq_core::store::format_dollars(spent),
            (chrono::Utc::now().date_naive() + chrono::Days::new(1)).format("%Y-%m-%dT00:00:00Z")
        )
    );
    // Every other way to start a turn is refused too, and nothing was stored.
    let (status, body) = app.post("/api/v1/chats", json!({"message": "hi"})).await;
    assert_over_limit(status, &body);
    let (status, body) = app
        .post(&format!("/api/v1/chats/{chat}/regenerate"), Value::Null)
        .await;
    assert_over_limit(status, &body);
    let (status, body) = app
        .patch_as(
            &app.token,
            &format!(
                "/api/v1/chats/{chat}/messages/{}",
                messages[0]["id"].as_str().unwrap()
            ),
            json!({"message": "What day is it?"}),
        )
        .await;
    assert_over_limit(status, &body);
    assert_eq!(app.messages(chat).await.len(), 4, "no message was added");
    assert_eq!(
        app.fake.received().len(),
        2,
        "no model call after the limit"
    );

    let usage = my_usage(&app, &app.token).await;
    assert_eq!(usage["spent_micros"], spent, "{usage}");
    assert_eq!(usage["limit_micros"], 1, "{usage}");
    assert_eq!(usage["source"], "site", "{usage}");
    assert_eq!(usage["period"], "day", "{usage}");

    // Raising the limit lets the user go on.
    set_limits(
        &app,
        &owner,
        json!({"default_limit_micros": spent + 1_000_000}),
    )
    .await;
    app.fake.script([Reply::Text("Later.".into())]);
    let (status, body) = app
        .post(
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "And now?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.wait_until_answered(chat, 6, WAIT).await;
    app.stop().await;
}

#[sqlx::test]
async fn spend_of_the_previous_period_no_longer_counts(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let chat = chat_of(&app, &app.token, "seeded").await;
    seed_answer(&app, chat, "fake-gpt", 5_000, "now()").await;
    let pool = app.services.store.pool().clone();

    for (period, unit) in [("day", "day"), ("week", "week"), ("month", "month")] {
        set_limits(
            &app,
            &owner,
            json!({"period": period, "default_limit_micros": 1_000}),
        )
        .await;
        // The spend moved to the last second of the previous period: it no longer counts.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE chat_messages SET created_at = date_trunc('{unit}', now(), 'UTC') - interval '1 second'
             WHERE chat_id = $1 AND role = 'assistant'"
        )))
        .bind(chat)
        .execute(&pool)
        .await
        .unwrap();
        let usage = my_usage(&app, &app.token).await;
        assert_eq!(usage["spent_micros"], 0, "{period}: {usage}");
        assert_eq!(usage["period"], period);
        let start: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(sqlx::AssertSqlSafe(
            format!("SELECT date_trunc('{unit}', now(), 'UTC')"),
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            usage["period_start"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap(),
            start,
            "{period}: {usage}"
        );
        let (status, body) = app
            .post("/api/v1/chats", json!({"message": "fresh period"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{period}: {body}");

        // At the first instant of the period it counts again.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE chat_messages SET created_at = date_trunc('{unit}', now(), 'UTC')
             WHERE chat_id = $1 AND role = 'assistant'"
        )))
        .bind(chat)
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(
            my_usage(&app, &app.token).await["spent_micros"],
            5_000,
            "{period}"
        );
        let (status, body) = app
            .post("/api/v1/chats", json!({"message": "same period"}))
            .await;
        assert_over_limit(status, &body);
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_users_own_limit_beats_their_organizations_smallest_which_beats_the_default(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let store = &app.services.store;
    let alice = app.user_id("alice@example.com").await;
    let acme = store.ensure_organization("acme").await.unwrap();
    let beta = store.ensure_organization("beta").await.unwrap();
    // A member of beta without agents-access: membership alone makes beta one of her
    // groups.
    store.add_member(beta, alice, &[]).await.unwrap();
    let chat = chat_of(&app, &app.token, "seeded").await;
    seed_answer(&app, chat, "fake-gpt", 4_000, "now()").await;

    assert_eq!(my_usage(&app, &app.token).await["source"], "none");
    set_limits(&app, &owner, json!({"default_limit_micros": 10_000})).await;
    let usage = my_usage(&app, &app.token).await;
    assert_eq!(
        (&usage["limit_micros"], &usage["source"]),
        (&json!(10_000), &json!("site"))
    );

    for (org, limit) in [(acme, 5_000), (beta, 3_000)] {
        let (status, body) = app
            .put_as(
                &owner,
                &format!("/api/v1/admin/spend-limits/organizations/{org}"),
                json!({"limit_micros": limit}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let usage = my_usage(&app, &app.token).await;
    assert_eq!(usage["limit_micros"], 3_000, "the smallest group: {usage}");
    assert_eq!(usage["source"], "organization");
    assert_eq!(usage["organization_id"], beta.to_string());
    let (status, body) = app
        .post("/api/v1/chats", json!({"message": "over beta's"}))
        .await;
    assert_over_limit(status, &body);

    let (status, body) = app
        .put_as(
            &owner,
            &format!("/api/v1/admin/spend-limits/users/{alice}"),
            json!({"limit_micros": 7_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let usage = my_usage(&app, &app.token).await;
    assert_eq!(
        (&usage["limit_micros"], &usage["source"]),
        (&json!(7_000), &json!("user"))
    );
    let (status, body) = app
        .post("/api/v1/chats", json!({"message": "under my own"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (_, limits) = app.get_as(&owner, "/api/v1/admin/spend-limits").await;
    assert_eq!(limits["users"][0]["id"], alice.to_string(), "{limits}");
    assert_eq!(
        limits["organizations"].as_array().unwrap().len(),
        2,
        "{limits}"
    );

    // Removing overrides hands the decision back down the order.
    let user_path = format!("/api/v1/admin/spend-limits/users/{alice}");
    assert_eq!(
        app.delete_as(&owner, &user_path).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_as(&owner, &user_path).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(my_usage(&app, &app.token).await["limit_micros"], 3_000);
    for org in [acme, beta] {
        let path = format!("/api/v1/admin/spend-limits/organizations/{org}");
        assert_eq!(app.delete_as(&owner, &path).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(my_usage(&app, &app.token).await["source"], "site");
    set_limits(&app, &owner, json!({"default_limit_micros": null})).await;
    let usage = my_usage(&app, &app.token).await;
    assert_eq!(
        (&usage["limit_micros"], &usage["source"]),
        (&Value::Null, &json!("none"))
    );
    app.stop().await;
}

#[sqlx::test]
async fn spend_limit_settings_are_checked_and_for_site_owners_only(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    for (body, field) in [
        (json!({"period": "year"}), "period"),
        (json!({"default_limit_micros": -1}), "default_limit_micros"),
        (json!({"default_limit_micros": "5"}), "default_limit_micros"),
        (json!({"limit": 5}), "limit"),
    ] {
        let (status, err) = app.put_as(&owner, "/api/v1/admin/spend-limits", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["validations"][0]["field"], field, "{err}");
    }
    let unknown = Uuid::now_v7();
    let (status, _) = app
        .put_as(
            &owner,
            &format!("/api/v1/admin/spend-limits/users/{unknown}"),
            json!({"limit_micros": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = app
        .put_as(
            &owner,
            "/api/v1/admin/spend-limits/organizations/nope",
            json!({"limit_micros": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["validations"][0]["field"], "organization_id", "{err}");
    let (status, err) = app
        .put_as(
            &owner,
            &format!("/api/v1/admin/spend-limits/organizations/{unknown}"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["validations"][0]["field"], "limit_micros", "{err}");

    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/admin/spend-limits",
            json!({"period": "day"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get_as(&app.token, "/api/v1/admin/usage").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}

#[sqlx::test]
async fn the_admin_report_rolls_costs_up_by_user_model_and_chat(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let bob = support::app::create_user(&app.services, "bob@example.com", "acme").await;
    let a1 = chat_of(&app, &app.token, "alice one").await;
    let a2 = chat_of(&app, &app.token, "alice two").await;
    let b1 = chat_of(&app, &bob, "bob one").await;
    seed_answer(&app, a1, "gpt-a", 100, "'2026-03-01T00:00:00Z'").await;
    seed_answer(&app, a1, "gpt-b", 20, "'2026-03-15T12:00:00Z'").await;
    seed_answer(&app, a2, "gpt-a", 3, "'2026-03-31T23:59:59Z'").await;
    seed_answer(&app, b1, "gpt-b", 50, "'2026-03-10T00:00:00Z'").await;
    // Outside the range on both sides.
    seed_answer(&app, a1, "gpt-a", 9_000, "'2026-02-28T23:59:59Z'").await;
    seed_answer(&app, b1, "gpt-a", 9_000, "'2026-04-01T00:00:00Z'").await;

    let (status, report) = app
        .get_as(&owner, "/api/v1/admin/usage?from=2026-03-01&to=2026-03-31")
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["from"], "2026-03-01");
    assert_eq!(report["to"], "2026-03-31");
    assert_eq!(report["total_micros"], 173, "{report}");
    let alice = app.user_id("alice@example.com").await.to_string();
    assert_eq!(
        report["by_user"],
        json!([
            {"user_id": alice, "email": "alice@example.com", "cost_micros": 123, "messages": 3},
            {"user_id": app.user_id("bob@example.com").await.to_string(), "email": "bob@example.com", "cost_micros": 50, "messages": 1},
        ])
    );
    assert_eq!(
        report["by_model"],
        json!([
            {"model": "gpt-a", "cost_micros": 103, "messages": 2},
            {"model": "gpt-b", "cost_micros": 70, "messages": 2},
        ])
    );
    let chats: Vec<(String, i64)> = report["by_chat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["title"].as_str().unwrap().to_owned(),
                c["cost_micros"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chats,
        [
            ("alice one".into(), 120),
            ("bob one".into(), 50),
            ("alice two".into(), 3)
        ]
    );
    let (_, top) = app
        .get_as(
            &owner,
            "/api/v1/admin/usage?from=2026-03-01&to=2026-03-31&limit=1",
        )
        .await;
    assert_eq!(top["by_chat"].as_array().unwrap().len(), 1, "{top}");

    for (query, field) in [
        ("from=2026-13-01", "from"),
        ("from=yesterday", "from"),
        ("from=2026-03-02&to=2026-03-01", "to"),
        ("from=2025-01-01&to=2026-03-01", "to"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("user=me", "user"),
    ] {
        let (status, err) = app
            .get_as(&owner, &format!("/api/v1/admin/usage?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert_eq!(err["validations"][0]["field"], field, "{query}: {err}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn compaction_summaries_and_superseded_answers_count_as_spend(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = chat_of(&app, &app.token, "long").await;
    seed_answer(&app, chat, "fake-gpt", 100, "now()").await;
    let store_pool = app.services.store.pool();
    // A compaction summary standing for that answer, and the answer replaced by a
    // regenerate: both were paid for.
    sqlx::query(
        "INSERT INTO chat_messages (id, chat_id, role, content, model, cost_micros, kind, compacted_through)
         SELECT $1, chat_id, 'assistant', '[]', 'fake-gpt', 40, 'summary', id
         FROM chat_messages WHERE chat_id = $2 AND role = 'assistant'",
    )
    .bind(Uuid::now_v7())
    .bind(chat)
    .execute(store_pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE chat_messages SET superseded_at = now()
         WHERE chat_id = $1 AND role = 'assistant' AND kind = 'message'",
    )
    .bind(chat)
    .execute(store_pool)
    .await
    .unwrap();
    assert_eq!(my_usage(&app, &app.token).await["spent_micros"], 140);
    app.stop().await;
}
