//! Providers and models as data: site owners manage them, keys stay secret, chats use
//! them, and answers carry their cost.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner},
    eventually,
};

#[sqlx::test]
async fn site_owners_manage_providers_and_keys_never_come_back(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let post = reqwest::Method::POST;

    let (status, body) = app
        .send(
            reqwest::Method::GET,
            &app.token,
            "/api/v1/admin/providers",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members may not: {body}");

    let (status, provider) = app.send(post.clone(),
        &owner,
        "/api/v1/admin/providers",
        Some(json!({"name": "Gateway", "kind": "openai-compat", "base_url": app.fake.base_url, "api_key": "sk-from-db-123", "headers": {"X-Gateway-Key": "gw-secret"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    assert_eq!(provider["has_api_key"], true);
    assert_eq!(provider["has_headers"], true);
    let (_, list) = app
        .send(
            reqwest::Method::GET,
            &owner,
            "/api/v1/admin/providers",
            None,
        )
        .await;
    let text = list.to_string();
    assert!(text.contains("Gateway"));
    assert!(
        !text.contains("sk-from-db-123") && !text.contains("gw-secret"),
        "{text}"
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT api_key_ciphertext FROM providers")
        .fetch_one(app.services.store.pool())
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains("sk-from-db-123"),
        "encrypted at rest"
    );

    for (body, field) in [
        (json!({"name": "X", "kind": "gpt"}), "kind"),
        (json!({"name": "X", "kind": "echo"}), "kind"),
        (json!({"name": "X", "kind": "openai-compat"}), "base_url"),
        (
            json!({"name": "X", "kind": "openai", "base_url": "ftp://example", "api_key": "sk-x"}),
            "base_url",
        ),
        (
            json!({"name": "Gateway", "kind": "openai", "api_key": "sk-other"}),
            "name",
        ),
        (
            json!({"name": "X", "kind": "openai", "api_key": "  "}),
            "api_key",
        ),
        (json!({"kind": "openai"}), "name"),
    ] {
        let (status, error) = app
            .send(
                post.clone(),
                &owner,
                "/api/v1/admin/providers",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        assert_eq!(error["validations"][0]["field"], field, "{body} -> {error}");
    }

    let provider_id = provider["id"].as_str().unwrap();
    let (status, first) = app
        .send(
            post.clone(),
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": provider_id, "name": "db-model", "is_default": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (_, second) = app
        .send(
            post.clone(),
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": provider_id, "name": "db-model-2", "is_default": true})),
        )
        .await;
    assert_eq!(second["is_default"], true);
    let (_, models) = app
        .send(reqwest::Method::GET, &owner, "/api/v1/admin/models", None)
        .await;
    let defaults: Vec<&Value> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["is_default"] == true)
        .collect();
    assert_eq!(defaults.len(), 1, "one default at a time");
    assert_eq!(defaults[0]["name"], "db-model-2");
    let (status, error) = app
        .send(
            post.clone(),
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": provider_id, "name": "x", "output_price_micros": -1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["validations"][0]["field"], "output_price_micros");
    let (status, error) = app
        .send(
            post.clone(),
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": uuid::Uuid::now_v7(), "name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["validations"][0]["field"], "provider_id");
    // A name its provider already has: the store names the field, not the constraint.
    let (status, error) = app
        .send(
            post,
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": provider_id, "name": "db-model-2"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["validations"][0]["field"], "name");
    assert!(!error.to_string().contains("_key"), "{error}");

    let (status, patched) = app
        .send(
            reqwest::Method::PATCH,
            &owner,
            &format!("/api/v1/admin/providers/{provider_id}"),
            Some(json!({"api_key": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["has_api_key"], false);
    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &owner,
            &format!("/api/v1/admin/providers/{provider_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, models) = app
        .send(reqwest::Method::GET, &owner, "/api/v1/admin/models", None)
        .await;
    assert_eq!(
        models["models"].as_array().unwrap().len(),
        0,
        "models go with their provider"
    );
    app.stop().await;
}

#[sqlx::test]
async fn chats_use_the_configured_model_key_and_headers_and_record_cost(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let post = reqwest::Method::POST;
    let (_, provider) = app.send(post.clone(),
        &owner,
        "/api/v1/admin/providers",
        Some(json!({"name": "Gateway", "kind": "openai-compat", "base_url": app.fake.base_url, "api_key": "sk-from-db-123", "headers": {"X-Gateway-Key": "gw-secret"}})),
    )
    .await;
    let provider_id = provider["id"].as_str().unwrap().to_owned();
    // $2.50 per million input tokens, $10 per million output tokens.
    let (_, _default) = app.send(post.clone(),
        &owner,
        "/api/v1/admin/models",
        Some(json!({"provider_id": provider_id, "name": "db-model", "is_default": true, "input_price_micros": 2_500_000, "output_price_micros": 10_000_000, "max_output_tokens": 777})),
    )
    .await;
    let (_, other) = app
        .send(
            post.clone(),
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": provider_id, "name": "other-model"})),
        )
        .await;

    let chat = app.create_chat("price this answer please").await;
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    let received = app.fake.received();
    let request = &received[0];
    assert_eq!(
        request.authorization.as_deref(),
        Some("Bearer sk-from-db-123"),
        "the stored key, decrypted"
    );
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k == "x-gateway-key" && v == "gw-secret")
    );
    assert_eq!(request.body["model"], "db-model");
    assert_eq!(request.body["max_tokens"], 777);
    let answer = &messages[1];
    let input = answer["usage"]["input_tokens"].as_i64().unwrap();
    let output = answer["usage"]["output_tokens"].as_i64().unwrap();
    let expected = (input * 2_500_000 + output * 10_000_000 + 999_999) / 1_000_000;
    assert!(expected > 0);
    assert_eq!(answer["cost_micros"], expected, "usage {input}/{output}");

    // A chat may name another model.
    let (status, created) = app
        .post(
            "/api/v1/chats",
            json!({"message": "use the other one", "model_config_id": other["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["model_config_id"], other["id"]);
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    app.wait_until_answered(id, 2, Duration::from_secs(10))
        .await;
    assert_eq!(app.fake.received()[1].body["model"], "other-model");
    let (status, error) = app
        .post(
            "/api/v1/chats",
            json!({"message": "x", "model_config_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["validations"][0]["field"], "model_config_id");

    // A disabled provider fails turns with a clear error.
    app.send(
        reqwest::Method::PATCH,
        &owner,
        &format!("/api/v1/admin/providers/{provider_id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    // The test app's workers read the model row every step (`--model-cache-ms 0`).
    let chat = app.create_chat("anyone?").await;
    let failed = eventually(Duration::from_secs(10), "the turn to fail", || async {
        let (_, c) = app.get(&format!("/api/v1/chats/{chat}")).await;
        (c["status"] == "error").then_some(c)
    })
    .await;
    assert_eq!(failed["last_error"]["kind"], "provider_disabled");
    assert_eq!(failed["last_error"]["provider"], "Gateway");
    app.stop().await;
}

/// What no request could carry is refused when it is saved, naming the field, instead of a
/// 500 from PostgreSQL (U+0000) or a turn that fails at every call (a header value with a
/// line break, a header agentq sets itself).
#[sqlx::test]
async fn provider_fields_no_request_could_carry_are_400s_naming_the_field(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let url = "http://127.0.0.1:9/v1";
    let cases = [
        (
            json!({"name": "a\u{0}b", "kind": "openai-compat", "base_url": url}),
            "name",
        ),
        (
            json!({"name": "p1", "kind": "openai-compat", "base_url": "http://127.0.0.1/\u{0}"}),
            "base_url",
        ),
        (
            json!({"name": "p2", "kind": "openai-compat", "base_url": url, "api_key": "sk-1\r\nX-Evil: 1"}),
            "api_key",
        ),
        (
            json!({"name": "p3", "kind": "openai-compat", "base_url": url, "headers": {"X-Gateway": "a\r\nb"}}),
            "headers.X-Gateway",
        ),
        (
            json!({"name": "p4", "kind": "openai-compat", "base_url": url, "headers": {"Host": "elsewhere"}}),
            "headers",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app
            .send(
                reqwest::Method::POST,
                &owner,
                "/api/v1/admin/providers",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["validations"][0]["field"], field, "{answer}");
    }
    let (status, provider) = app
        .send(
            reqwest::Method::POST,
            &owner,
            "/api/v1/admin/providers",
            Some(json!({"name": "fine", "kind": "openai-compat", "base_url": url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{provider}");
    let (status, answer) = app
        .send(
            reqwest::Method::POST,
            &owner,
            "/api/v1/admin/models",
            Some(json!({"provider_id": provider["id"], "name": "m\u{0}"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["validations"][0]["field"], "name");
    app.stop().await;
}
