//! Every client mistake gets a clear 4xx with a JSON body naming the problem.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{TestApp, create_owner, create_user};

fn field(body: &Value) -> &str {
    body["validations"][0]["field"].as_str().unwrap_or_default()
}

#[sqlx::test]
async fn bad_bodies_are_400s_naming_the_field(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;

    let (status, body) = app.post("/api/v1/chats", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "message", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("message"),
        "{body}"
    );

    let (status, body) = app.post("/api/v1/chats", json!({"message": "   "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "message");
    assert_eq!(body["validations"][0]["detail"], "must not be empty");

    let (status, body) = app.post("/api/v1/chats", json!({"message": 42})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "message", "{body}");

    let (status, body) = app
        .post(
            "/api/v1/chats",
            json!({"message": "hi", "client_type": "robot"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "client_type", "{body}");

    let (status, body) = app
        .post("/api/v1/chats", json!({"message": "hi", "colour": "red"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "colour", "{body}");

    let malformed = app
        .client
        .post(format!("{}/api/v1/chats", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"message\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let not_json = app
        .client
        .post(format!("{}/api/v1/chats", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = not_json.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );

    let huge = "x".repeat(100 * 1024);
    let (status, body) = app.post("/api/v1/chats", json!({"message": huge})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("65536 bytes"),
        "{body}"
    );

    let (status, body) = app.get("/api/v1/chats?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "limit");
    app.stop().await;
}

#[sqlx::test]
async fn missing_or_bad_tokens_are_401s(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let url = format!("{}/api/v1/chats", app.base);

    let response = app.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("Authorization"),
        "{body}"
    );

    let response = app
        .client
        .get(&url)
        .bearer_auth("aq_not-a-real-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("invalid or expired"),
        "{body}"
    );

    let response = app
        .client
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[sqlx::test]
async fn unknown_and_other_peoples_chats_are_404s(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let chat = app.create_chat("mine").await;
    let mallory = create_user(&app.services, "mallory@example.com", "evil").await;

    for path in [
        format!("/api/v1/chats/{chat}"),
        format!("/api/v1/chats/{chat}/messages"),
        format!("/api/v1/chats/{chat}/stream"),
    ] {
        let (status, body) = app.get_as(&mallory, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["message"], "chat not found");
    }
    let (status, _) = app
        .post_as(
            &mallory,
            &format!("/api/v1/chats/{chat}/messages"),
            json!({"message": "hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = app
        .get(&format!("/api/v1/chats/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get("/api/v1/chats/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(field(&body), "chat_id");
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );

    // The owner still sees it, and the list shows only the caller's chats.
    let (status, list) = app.get("/api/v1/chats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["chats"].as_array().unwrap().len(), 1);
    let theirs = app
        .client
        .get(format!("{}/api/v1/chats", app.base))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(theirs["chats"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[sqlx::test]
async fn chat_list_pages_with_a_cursor(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_chat(&format!("chat {i}")).await);
    }
    let (_, first) = app.get("/api/v1/chats?limit=2").await;
    let (_, second) = app
        .get(&format!(
            "/api/v1/chats?limit=2&after_id={}",
            first["next_after_id"].as_str().unwrap()
        ))
        .await;
    let (_, third) = app
        .get(&format!(
            "/api/v1/chats?limit=2&after_id={}",
            second["next_after_id"].as_str().unwrap()
        ))
        .await;
    assert!(third["next_after_id"].is_null());
    let ids: Vec<String> = [first, second, third]
        .iter()
        .flat_map(|page| {
            page["chats"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
        })
        .collect();
    // Most recently updated first; every chat exactly once.
    let expected: Vec<String> = created.iter().rev().map(|id| id.to_string()).collect();
    assert_eq!(ids, expected);
    app.stop().await;
}

/// A client's request id is echoed back and logged with every line of its request, so one
/// too long (or not printable) is replaced by a fresh one, not carried along.
#[sqlx::test]
async fn an_oversized_request_id_is_replaced_not_echoed(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let echoed = |id: String| {
        let request = app
            .client
            .get(format!("{}/api/v1/chats", app.base))
            .bearer_auth(&app.token)
            .header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(echoed("trace-me-7f3a".into()).await, "trace-me-7f3a");
    let fresh = echoed("x".repeat(60_000)).await;
    assert!(fresh.len() <= 128, "{} bytes echoed", fresh.len());
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
    app.stop().await;
}

#[sqlx::test]
async fn an_error_quoting_a_huge_value_stays_small(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    // Under the test app's 64 KiB body limit, far over what an error should echo.
    let huge = "x".repeat(60 * 1024);
    for body in [
        json!({"message": "hi", "plan_mode": huge}),
        json!({"message": "hi", huge.clone(): 1}),
    ] {
        let (status, answer) = app.post("/api/v1/chats", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let size = answer.to_string().len();
        assert!(size < 4 * 1024, "a {size}-byte error body");
        assert!(
            answer["message"].as_str().unwrap().ends_with('…'),
            "{answer}"
        );
    }
    app.stop().await;
}

/// schemathesis (`.ci/schemathesis`) found these: serde read a struct from a JSON array, so
/// `[null, null]` was taken as an empty settings body; and `5.0`, an integer by JSON Schema,
/// was refused by an integer field.
#[sqlx::test]
async fn an_array_body_is_a_400_and_an_integral_float_is_an_integer(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;

    let (status, body) = app
        .put_as(&owner, "/api/v1/admin/model-contexts", json!([null, null]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "body", "{body}");

    let (status, body) = app
        .put_as(
            &owner,
            "/api/v1/admin/spend-limits",
            json!({"default_limit_micros": 5000000.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["default_limit_micros"], 5000000, "{body}");

    let (status, body) = app
        .put_as(
            &owner,
            "/api/v1/admin/spend-limits",
            json!({"default_limit_micros": 5.5}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "default_limit_micros", "{body}");
}

/// The document says `site_role` and `status` are not nullable: `null` is a 400 naming the
/// field, not a silent "unchanged" (which schemathesis saw as an invalid request accepted).
#[sqlx::test]
async fn null_for_a_users_role_or_status_is_a_400_naming_it(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let user = app.user_id("alice@example.com").await;
    let path = format!("/api/v1/admin/users/{user}");

    for field_name in ["status", "site_role"] {
        let (status, body) = app
            .patch_as(&owner, &path, json!({ field_name: null }))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(field(&body), field_name, "{body}");
    }
    let (status, body) = app
        .patch_as(&owner, &path, json!({"status": "suspended"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "suspended", "{body}");
}

/// `email` is at most 320 characters as sent (the document's `maxLength`), surrounding
/// spaces included, though they are trimmed before it is stored.
#[sqlx::test]
async fn an_email_over_320_characters_is_refused_even_when_spaces_pad_it(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;

    let padded = format!("{}bob@example.com", " ".repeat(320));
    let (status, body) = app
        .post_as(&owner, "/api/v1/admin/users", json!({"email": padded}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(field(&body), "email", "{body}");

    let (status, body) = app
        .post_as(
            &owner,
            "/api/v1/admin/users",
            json!({"email": "  bob@example.com "}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "bob@example.com", "{body}");
}
