//! Personal skills and instructions as a user, a site owner and each provider see them
//! (issue #12, items 2 and 7): skills are created, imported from `SKILL.md` files, changed
//! and deleted; bad files get a 400 naming what is wrong; instructions are bounded; and the
//! system message a step sends holds the site prompt, the user's and the chat's
//! instructions and the skills list, in that order, in each wire format.

mod support;

use std::{sync::Arc, time::Duration};

use agentq_core::config::ProviderKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_owner, create_user},
    fake_anthropic::{self, FakeAnthropic},
};

const SKILLS: &str = "/api/v1/users/me/skills";

/// Imports `text` as a `SKILL.md` with `content_type`: the status and the JSON reply.
async fn import_as(
    app: &TestApp,
    token: &str,
    content_type: &str,
    text: &str,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}{SKILLS}/import", app.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn import(app: &TestApp, text: &str) -> (StatusCode, Value) {
    import_as(app, &app.token, "text/markdown", text).await
}

/// Asserts a 400 whose one validation names `field` and whose detail holds `words`.
fn assert_refused(reply: &(StatusCode, Value), field: &str, words: &str) {
    let (status, body) = reply;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["validations"][0]["field"], field, "{body}");
    let detail = body["validations"][0]["detail"].as_str().unwrap();
    assert!(detail.contains(words), "{detail:?} should say {words:?}");
    assert!(body["message"].as_str().unwrap().contains(field), "{body}");
}

#[sqlx::test]
async fn a_user_creates_reads_changes_and_deletes_skills(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let (status, skill) = app
        .post(
            SKILLS,
            json!({"name": "release-notes", "description": "Write release\nnotes.", "body": "# Notes\n\u{0}done\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{skill}");
    assert_eq!(skill["name"], "release-notes");
    assert_eq!(skill["description"], "Write release notes.", "one line");
    assert_eq!(
        skill["body"], "# Notes\n\u{FFFD}done\n",
        "U+0000 is stored as U+FFFD"
    );

    let (status, conflict) = app
        .post(SKILLS, json!({"name": "release-notes", "body": "again"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_refused(
        &app.post(SKILLS, json!({"name": "Release Notes", "body": "x"}))
            .await,
        "name",
        "kebab-case",
    );
    assert_refused(
        &app.post(
            SKILLS,
            json!({"name": "a", "description": "red \u{1b}[31m", "body": "x"}),
        )
        .await,
        "description",
        "U+001B",
    );
    assert_refused(
        &app.post(SKILLS, json!({"name": "a", "body": "  "})).await,
        "body",
        "empty",
    );
    assert_refused(
        &app.post(SKILLS, json!({"name": "a"})).await,
        "body",
        "required",
    );

    let (status, list) = app.get(SKILLS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["max_skills"], 100);
    assert_eq!(list["skills"].as_array().unwrap().len(), 1);
    assert_eq!(list["skills"][0]["name"], "release-notes");
    assert!(
        list["skills"][0].get("body").is_none(),
        "lists leave bodies out"
    );

    let (status, renamed) = app
        .patch_as(
            &app.token,
            &format!("{SKILLS}/release-notes"),
            json!({"name": "changelog", "description": "From the changelog."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "changelog");
    assert_eq!(renamed["body"], skill["body"], "the body is kept");
    assert_eq!(
        app.get(&format!("{SKILLS}/release-notes")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, got) = app.get(&format!("{SKILLS}/changelog")).await;
    assert_eq!(
        (status, &got["description"]),
        (StatusCode::OK, &json!("From the changelog."))
    );

    // Another user neither sees nor reaches it, and may use the same name.
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    assert_eq!(
        app.get_as(&bob, &format!("{SKILLS}/changelog")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get_as(&bob, SKILLS).await.1["skills"], json!([]));
    let (status, _) = app
        .post_as(&bob, SKILLS, json!({"name": "changelog", "body": "Bob's"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    assert_eq!(
        app.delete_as(&app.token, &format!("{SKILLS}/changelog"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_as(&app.token, &format!("{SKILLS}/changelog"))
            .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get_as(&bob, &format!("{SKILLS}/changelog")).await.0,
        StatusCode::OK
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_skill_md_imports_and_a_bad_one_is_told_what_is_wrong(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let good = "---\nname: pdf-forms\ndescription: >\n  Fill in PDF\n  forms.\nlicense: MIT\n---\n# PDF forms\n\nUse the form tool.\n";
    let (status, skill) = import(&app, good).await;
    assert_eq!(status, StatusCode::CREATED, "{skill}");
    assert_eq!(skill["name"], "pdf-forms");
    assert_eq!(skill["description"], "Fill in PDF forms.");
    assert_eq!(skill["body"], "# PDF forms\n\nUse the form tool.\n");
    let (status, _) = import_as(
        &app,
        &app.token,
        "text/plain; charset=utf-8",
        "---\nname: plain\n---\nbody\n",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "text/plain is accepted");
    assert_eq!(
        import(&app, good).await.0,
        StatusCode::CONFLICT,
        "the name is taken"
    );

    let missing = import(&app, "# PDF forms\n\nno frontmatter\n").await;
    assert_refused(&missing, "frontmatter", "line 1: ");
    assert_refused(&missing, "frontmatter", "is missing");
    assert_refused(
        &import(&app, "---\nname: x\nbody, never closed\n").await,
        "frontmatter",
        "not closed",
    );
    assert_refused(
        &import(&app, "---\ndescription: no name\n---\nbody\n").await,
        "name",
        "required",
    );
    let bad_name = import(&app, "---\ndescription: d\nname: PDF_Forms\n---\nbody\n").await;
    assert_refused(&bad_name, "name", "line 3: ");
    assert_refused(&bad_name, "name", "kebab-case");
    assert_refused(
        &import(&app, "---\nname: ok\ndescription: [oops\n---\nbody\n").await,
        "frontmatter",
        "not valid YAML",
    );
    assert_refused(
        &import(&app, "---\nname: empty\n---\n\n").await,
        "body",
        "line 4: ",
    );
    let too_large = format!("---\nname: big\n---\n{}", "x".repeat(64 * 1024));
    assert_refused(&import(&app, &too_large).await, "SKILL.md", "65536");
    let (status, body) = import_as(&app, &app.token, "application/json", good).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    let (_, list) = app.get(SKILLS).await;
    let names: Vec<&str> = list["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pdf-forms", "plain"], "nothing bad was stored");
    app.stop().await;
}

#[sqlx::test]
async fn the_101st_skill_is_refused(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    for i in 0..100 {
        let (status, body) = app
            .post(
                SKILLS,
                json!({"name": format!("skill-{i}"), "body": "do it"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let refused = import(&app, "---\nname: one-more\n---\nbody\n").await;
    assert_refused(&refused, "skills", "100 skills");
    assert_refused(
        &app.post(SKILLS, json!({"name": "another", "body": "x"}))
            .await,
        "skills",
        "delete one first",
    );
    assert_eq!(
        app.delete_as(&app.token, &format!("{SKILLS}/skill-0"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        import(&app, "---\nname: one-more\n---\nbody\n").await.0,
        StatusCode::CREATED
    );
    app.stop().await;
}

#[sqlx::test]
async fn instructions_are_set_read_and_bounded(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let mine = "/api/v1/users/me/instructions";
    assert_eq!(
        app.get(mine).await,
        (StatusCode::OK, json!({"instructions": ""}))
    );
    let (status, stored) = app
        .put_as(&app.token, mine, json!({"instructions": "Be brief."}))
        .await;
    assert_eq!(
        (status, stored),
        (StatusCode::OK, json!({"instructions": "Be brief."}))
    );
    assert_eq!(app.get(mine).await.1["instructions"], "Be brief.");
    let over = "x".repeat(32 * 1024 + 1);
    assert_refused(
        &app.put_as(&app.token, mine, json!({"instructions": over}))
            .await,
        "instructions",
        "32768",
    );
    assert_refused(
        &app.put_as(&app.token, mine, json!({})).await,
        "instructions",
        "required",
    );
    assert_eq!(
        app.get(mine).await.1["instructions"],
        "Be brief.",
        "a refused change changes nothing"
    );

    let site = "/api/v1/admin/system-prompt";
    assert_eq!(
        app.get(site).await.0,
        StatusCode::FORBIDDEN,
        "members do not read it"
    );
    let (status, _) = app
        .put_as(&app.token, site, json!({"system_prompt": "x"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let owner = create_owner(&app.services, "owner@example.com").await;
    let (status, stored) = app
        .put_as(&owner, site, json!({"system_prompt": "You work for Acme."}))
        .await;
    assert_eq!(
        (status, stored),
        (
            StatusCode::OK,
            json!({"system_prompt": "You work for Acme."})
        )
    );
    assert_eq!(
        app.get_as(&owner, site).await.1["system_prompt"],
        "You work for Acme."
    );
    assert_refused(
        &app.put_as(&owner, site, json!({"system_prompt": over}))
            .await,
        "system_prompt",
        "32768",
    );

    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "hi", "instructions": "Answer in French."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    assert_eq!(chat["instructions"], "Answer in French.");
    let (_, read) = app
        .get(&format!("/api/v1/chats/{}", chat["id"].as_str().unwrap()))
        .await;
    assert_eq!(read["instructions"], "Answer in French.");
    let (_, plain) = app.post("/api/v1/chats", json!({"message": "hi"})).await;
    assert_eq!(plain["instructions"], Value::Null);
    assert_refused(
        &app.post(
            "/api/v1/chats",
            json!({"message": "hi", "instructions": over}),
        )
        .await,
        "instructions",
        "32768",
    );
    app.stop().await;
}

/// Sets the site prompt, the default user's instructions and two skills, then creates a chat
/// with instructions of its own: returns the chat's id.
async fn chat_with_every_kind_of_instruction(app: &TestApp) -> uuid::Uuid {
    let owner = create_owner(&app.services, "owner@example.com").await;
    let (status, _) = app
        .put_as(
            &owner,
            "/api/v1/admin/system-prompt",
            json!({"system_prompt": "You work for Acme."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/instructions",
            json!({"instructions": "Be brief."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for skill in [
        "---\nname: pdf-forms\ndescription: Fill in PDF forms.\n---\nUse the form tool.\n",
        "---\nname: changelog\n---\nRead CHANGES.md first.\n",
    ] {
        assert_eq!(import(app, skill).await.0, StatusCode::CREATED);
    }
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "hello", "instructions": "Answer in French."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    chat["id"].as_str().unwrap().parse().unwrap()
}

/// The system message both wire formats must carry, whole.
fn expected_system() -> String {
    "You work for Acme.\n\nBe brief.\n\nAnswer in French.\n\n# Skills\n\nThe user has written \
     these skills: instructions for particular tasks. When a task matches a skill's \
     description, read the skill first with the `read_skill` tool (argument `name`) and \
     follow it.\n\n- changelog\n- pdf-forms: Fill in PDF forms.\n\n# Tools\n\n- \
     `read_skill`: call it before a task that a skill covers, and follow the skill it returns \
     over your own habits."
        .to_owned()
}

#[sqlx::test]
async fn the_openai_format_gets_the_system_message_first(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let owner = create_owner(&app.services, "debug-owner@example.com").await;
    app.configure_site(&owner, json!({"debug_logging_enabled": true}))
        .await;
    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/users/me/preferences",
            json!({"debug_logging_enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let chat = chat_with_every_kind_of_instruction(&app).await;
    app.wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;

    let received = app.fake.received();
    assert_eq!(received.len(), 1);
    let messages = received[0].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": expected_system()})
    );
    assert_eq!(messages[1], json!({"role": "user", "content": "hello"}));

    // The debug run records the request with its system message.
    let (_, runs) = app.get(&format!("/api/v1/chats/{chat}/debug/runs")).await;
    let run_id = runs["runs"][0]["id"].as_str().unwrap();
    let (_, run) = app
        .get(&format!("/api/v1/chats/{chat}/debug/runs/{run_id}"))
        .await;
    assert_eq!(run["steps"][0]["request"]["system"], expected_system());
    app.stop().await;
}

#[sqlx::test]
async fn the_anthropic_format_gets_the_system_field(pool: sqlx::PgPool) {
    let mut app = TestApp::start_api_only(pool).await;
    let anthropic = FakeAnthropic::start().await;
    let base_url = anthropic.base_url.clone();
    app.tune_provider = Arc::new(move |provider| {
        provider.kind = ProviderKind::Anthropic;
        provider.anthropic_base_url = base_url.clone();
        provider.anthropic_api_key = Some("sk-ant-test".into());
        provider.model = "claude-fake".into();
    });
    app.start_worker().await;
    let chat = chat_with_every_kind_of_instruction(&app).await;
    let messages = app
        .wait_until_answered(chat, 2, Duration::from_secs(10))
        .await;
    assert_eq!(messages[1]["content"][0]["text"], fake_anthropic::ANSWER);

    let received = anthropic.received();
    assert_eq!(received.len(), 1);
    // A content-block array, so the prompt cache can mark it (ARCHITECTURE.md §7).
    assert_eq!(
        received[0]["system"],
        json!([{"type": "text", "text": expected_system(), "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        received[0]["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}]),
        "the system message is not one of the messages"
    );
    app.stop().await;
}

/// A path name no skill can have (U+0000 included, which PostgreSQL would refuse) is the
/// documented 404 on every route behind a name, and a description's line breaks and tabs
/// fold into spaces while other control characters are refused (schemathesis holds the
/// document's patterns to both).
#[sqlx::test]
async fn an_impossible_skill_name_is_a_404_and_a_description_folds_only_whitespace(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    for name in ["%00", "a%00b", "Bad%20Name", "x%0A"] {
        let path = format!("{SKILLS}/{name}");
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
        let (status, body) = app
            .patch_as(&app.token, &path, json!({"body": "new"}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "PATCH {path}: {body}");
        let status = app.delete_as(&app.token, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "DELETE {path}");
    }

    let (status, skill) = app
        .post(
            SKILLS,
            json!({"name": "folds", "description": "\tTabs\u{b}and\u{c}feeds\u{85}fold\u{2028}too ", "body": "b"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{skill}");
    assert_eq!(skill["description"], "Tabs and feeds fold too");
    let reply = app
        .post(
            SKILLS,
            json!({"name": "bell", "description": "ring\u{7}", "body": "b"}),
        )
        .await;
    assert_refused(&reply, "description", "control");
    app.stop().await;
}
