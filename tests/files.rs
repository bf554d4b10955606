//! Uploaded files (issue #14, item 3): `POST /api/v1/files` takes a raw body or a
//! multipart form up to 10 MiB (past the server's smaller body limit) and types the file by
//! its bytes; only its owner, or the owner of a chat linking it, reads it; messages attach
//! files to their chat (at most 50 uploads per chat, then a warning); both provider
//! adapters send images as images and text files as text; deleting a chat deletes the files
//! only it links.

mod support;

use std::{sync::Arc, time::Duration};

use agentq_core::config::ProviderKind;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use support::{
    app::{TestApp, create_user},
    fake_anthropic::FakeAnthropic,
};
use uuid::Uuid;

/// A real 1x1 PNG.
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0d\x49\x44\x41\x54\x78\x9c\x63\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99\x3d\x1d\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";
/// [`PNG`] in base64.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";
/// A PDF as far as any sniffer can tell, and its base64.
const PDF: &[u8] = b"%PDF-1.4\n%fake\n";
const PDF_BASE64: &str = "JVBERi0xLjQKJWZha2UK";
const MIB: usize = 1024 * 1024;

/// Uploads `bytes` as the raw body with `content_type`, `query` appended to the path.
async fn upload_raw(
    app: &TestApp,
    token: &str,
    query: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/api/v1/files{query}", app.base))
        .bearer_auth(token)
        .header(header::CONTENT_TYPE, content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads `bytes` as the part `file` (named `filename`, declared `content_type`) of a
/// multipart form, with the text `fields` before it.
async fn upload_multipart(
    app: &TestApp,
    token: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let boundary = "agentq-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    upload_raw(
        app,
        token,
        "",
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await
}

/// Uploads a text file of alice's and returns its id.
async fn upload_text(app: &TestApp, name: &str, text: &str) -> String {
    let (status, file) = upload_raw(
        app,
        &app.token,
        &format!("?name={name}"),
        "text/plain",
        text.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    file["id"].as_str().unwrap().to_owned()
}

/// `GET /api/v1/files/{id}` as `token`: the status, the headers and the bytes.
async fn download(
    app: &TestApp,
    token: &str,
    id: &str,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let response = app
        .client
        .get(format!("{}/api/v1/files/{id}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[sqlx::test]
async fn an_upload_is_typed_by_its_bytes_whatever_its_name_or_declared_type(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;

    // A PNG named `.txt` and sent as text is a PNG.
    let (status, png) = upload_raw(
        &app,
        &app.token,
        "?name=notes.txt",
        "text/plain",
        PNG.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{png}");
    assert_eq!(png["name"], "notes.txt");
    assert_eq!(png["mimetype"], "image/png");
    assert_eq!(png["size"], PNG.len());
    let id = png["id"].as_str().unwrap();
    let (status, headers, bytes) = download(&app, &app.token, id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, PNG);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment;") && disposition.contains("notes.txt"),
        "{disposition}"
    );
    let (status, meta) = app.get(&format!("/api/v1/files/{id}/metadata")).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["mimetype"], "image/png");
    assert_eq!(meta["kind"], "file");

    // Multipart: the part's filename and declared type are hints for text formats only.
    let cases: [(&str, &str, &[u8], &str); 6] = [
        (
            "table.csv",
            "text/csv",
            b"name,qty\napples,3\npears,5\n",
            "text/csv",
        ),
        (
            "notes.md",
            "application/octet-stream",
            b"Some *notes*.",
            "text/markdown",
        ),
        (
            "data.txt",
            "text/plain",
            br#"{"a": [1, 2, 3]}"#,
            "application/json",
        ),
        (
            "readme",
            "text/plain",
            b"# Heading\n\nbody",
            "text/markdown",
        ),
        (
            "plain.txt",
            "image/png",
            b"just words, not an image",
            "text/plain",
        ),
        (
            "report.bin",
            "application/octet-stream",
            PDF,
            "application/pdf",
        ),
    ];
    for (filename, declared, bytes, expected) in cases {
        let (status, file) =
            upload_multipart(&app, &app.token, filename, declared, bytes, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{filename}: {file}");
        assert_eq!(file["mimetype"], expected, "{filename}");
        assert_eq!(file["name"], filename);
        assert_eq!(file["size"], bytes.len());
    }
    // A CSV whose lines do not line up is stored as text, whatever its name.
    let (_, ragged) = upload_multipart(
        &app,
        &app.token,
        "ragged.csv",
        "text/csv",
        b"a,b\n1,2,3\n",
        &[],
    )
    .await;
    assert_eq!(ragged["mimetype"], "text/plain");
    // A `name` field names the file; the raw form takes it from Content-Disposition.
    let (_, named) = upload_multipart(
        &app,
        &app.token,
        "x.txt",
        "text/plain",
        b"hi",
        &[("name", "chosen.txt")],
    )
    .await;
    assert_eq!(named["name"], "chosen.txt");
    let response = app
        .client
        .post(format!("{}/api/v1/files", app.base))
        .bearer_auth(&app.token)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"from-header.txt\"",
        )
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "from-header.txt");

    // Other binaries are refused, naming what is accepted.
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip".to_vec();
    let (status, refused) =
        upload_raw(&app, &app.token, "?name=a.zip", "application/zip", zip).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("application/zip") && message.contains("image/png"),
        "{message}"
    );
    let (status, refused) = upload_raw(
        &app,
        &app.token,
        "",
        "application/octet-stream",
        vec![0, 159, 146, 150, 255, 1],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    // A multipart form without a `file` part names it.
    let (status, missing) = upload_raw(
        &app,
        &app.token,
        "",
        "multipart/form-data; boundary=x",
        b"--x--\r\n".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{missing}");
    assert_eq!(missing["validations"][0]["field"], "file");
}

#[sqlx::test]
async fn an_upload_may_take_10_mib_and_not_a_byte_more(pool: sqlx::PgPool) {
    // The server's body limit is 64 KiB here: the upload route has its own.
    let app = TestApp::start_api_only(pool).await;

    let (status, file) = upload_raw(
        &app,
        &app.token,
        "?name=big.txt",
        "text/plain",
        vec![b'a'; 10 * MIB],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["size"], 10 * MIB);

    let (status, refused) = upload_raw(
        &app,
        &app.token,
        "?name=big.txt",
        "text/plain",
        vec![b'a'; 10 * MIB + 1],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&(10 * MIB).to_string()),
        "{refused}"
    );

    let (status, file) = upload_multipart(
        &app,
        &app.token,
        "big.txt",
        "text/plain",
        &vec![b'b'; 10 * MIB],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let (status, refused) = upload_multipart(
        &app,
        &app.token,
        "big.txt",
        "text/plain",
        &vec![b'b'; 10 * MIB + 1],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{refused}");
}

#[sqlx::test]
async fn nobody_else_can_read_a_file_or_attach_it(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let bob = create_user(&app.services, "bob@example.com", "acme").await;
    let file = upload_text(&app, "secret.txt", "alice's secret").await;
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "read this", "file_ids": [file]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");

    let (status, _, bytes) = download(&app, &app.token, &file).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"alice's secret"[..])
    );

    // To bob the file does not exist: the same 404 as an id nobody uses.
    let (status, headers, body) = download(&app, &bob, &file).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let (missing_status, _, missing_body) = download(&app, &bob, &Uuid::now_v7().to_string()).await;
    assert_eq!(
        (missing_status, &missing_body),
        (StatusCode::NOT_FOUND, &body)
    );
    let (status, _) = app
        .get_as(&bob, &format!("/api/v1/files/{file}/metadata"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));

    // Nor can bob attach it, to a new chat or to one of his.
    let (status, refused) = app
        .post_as(
            &bob,
            "/api/v1/chats",
            json!({"message": "steal", "file_ids": [file]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["validations"][0]["field"], "file_ids[0]");
    let (_, bobs) = app
        .post_as(&bob, "/api/v1/chats", json!({"message": "mine"}))
        .await;
    let (status, refused) = app
        .post_as(
            &bob,
            &format!("/api/v1/chats/{}/messages", bobs["id"].as_str().unwrap()),
            json!({"message": "steal", "file_ids": [file]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["validations"][0]["field"], "file_ids[0]");
    let (_, headers, _) = download(&app, &bob, &file).await;
    assert!(headers.get(header::CONTENT_DISPOSITION).is_none());
    // Alice's chat is hers: bob cannot list its files either.
    let (status, _) = app
        .get_as(
            &bob,
            &format!("/api/v1/chats/{}", chat["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn a_file_for_an_organization_goes_only_to_its_chats(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    // Alice is in acme (the default) and in globex.
    let alice = create_user(&app.services, "alice@example.com", "globex").await;
    let acme = app
        .services
        .store
        .ensure_organization("acme")
        .await
        .unwrap();
    let globex = app
        .services
        .store
        .ensure_organization("globex")
        .await
        .unwrap();
    let initech = app
        .services
        .store
        .ensure_organization("initech")
        .await
        .unwrap();

    let (status, refused) = upload_raw(
        &app,
        &alice,
        &format!("?name=a.txt&organization_id={initech}"),
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["validations"][0]["field"], "organization_id");

    let (status, file) = upload_multipart(
        &app,
        &alice,
        "g.txt",
        "text/plain",
        b"globex only",
        &[("organization_id", &globex.to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["organization_id"], globex.to_string());
    let (status, refused) = app
        .post_as(
            &alice,
            "/api/v1/chats",
            json!({"message": "m", "organization_id": acme, "file_ids": [file["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["validations"][0]["field"], "file_ids[0]");
    let (status, chat) = app
        .post_as(
            &alice,
            "/api/v1/chats",
            json!({"message": "m", "organization_id": globex, "file_ids": [file["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
}

#[sqlx::test]
async fn the_51st_file_of_a_chat_is_not_attached_and_the_message_still_posts(pool: sqlx::PgPool) {
    // No worker: after the first message, the others wait in the chat's queue.
    let app = TestApp::start_api_only(pool).await;
    app.lift_rate_limits().await;
    let mut files = Vec::new();
    for i in 0..51 {
        files.push(upload_text(&app, &format!("f{i}.txt"), &format!("file {i}")).await);
    }
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "ten files", "file_ids": files[..10]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    let chat_id = chat["id"].as_str().unwrap().to_owned();
    let first = &app.messages(chat_id.parse().unwrap()).await[0];
    let attached: Vec<&Value> = first["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "file")
        .collect();
    assert_eq!(attached.len(), 10, "{first}");
    assert_eq!(attached[0]["file_id"], files[0].as_str());
    assert_eq!(attached[0]["name"], "f0.txt");
    assert_eq!(attached[0]["mimetype"], "text/plain");

    // More than ten in one message is refused, naming the field.
    let (status, refused) = app
        .post(
            &format!("/api/v1/chats/{chat_id}/messages"),
            json!({"message": "too many", "file_ids": files[..11]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["validations"][0]["field"], "file_ids");

    for batch in files[10..50].chunks(10) {
        let (status, sent) = app
            .post(
                &format!("/api/v1/chats/{chat_id}/messages"),
                json!({"message": "ten more", "file_ids": batch}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        assert!(sent.get("warnings").is_none(), "{sent}");
    }
    // The 51st, with one already attached (which takes no second link).
    let (status, sent) = app
        .post(
            &format!("/api/v1/chats/{chat_id}/messages"),
            json!({"message": "one too many", "file_ids": [files[50], files[3]]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["status"], "queued");
    let warnings = sent["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{sent}");
    assert_eq!(warnings[0]["code"], "file_link_limit");
    assert_eq!(warnings[0]["file_id"], files[50].as_str());
    assert!(
        warnings[0]["message"].as_str().unwrap().contains("50"),
        "{sent}"
    );

    let (status, detail) = app.get(&format!("/api/v1/chats/{chat_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let linked: Vec<&str> = detail["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(linked.len(), 50);
    assert!(!linked.contains(&files[50].as_str()));
    assert_eq!(detail["files"][0]["size"], "file 49".len());
    assert_eq!(detail["files"][0]["kind"], "file");
}

/// Uploads a PNG, a markdown file and a PDF, and starts a chat that attaches them.
async fn chat_with_attachments(app: &TestApp) -> Uuid {
    let (_, png) = upload_raw(
        app,
        &app.token,
        "?name=pixel.png",
        "image/png",
        PNG.to_vec(),
    )
    .await;
    let md = upload_text(app, "notes.md", "# Plan\n\nShip on Friday.").await;
    let (_, pdf) = upload_raw(
        app,
        &app.token,
        "?name=r.pdf",
        "application/pdf",
        PDF.to_vec(),
    )
    .await;
    let (status, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "What do these say?", "file_ids": [png["id"], md, pdf["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{chat}");
    chat["id"].as_str().unwrap().parse().unwrap()
}

#[sqlx::test]
async fn openai_gets_images_as_image_urls_and_text_files_as_text(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let chat = chat_with_attachments(&app).await;
    app.wait_until_answered(chat, 2, Duration::from_secs(30))
        .await;

    let received = app.fake.received();
    let user = received[0].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    let parts = user["content"].as_array().expect("a list of parts");
    assert_eq!(parts.len(), 4, "{user}");
    assert_eq!(
        parts[0],
        json!({"type": "text", "text": "What do these say?"})
    );
    assert_eq!(
        parts[1],
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_BASE64}")}})
    );
    assert_eq!(parts[2]["type"], "text");
    let text = parts[2]["text"].as_str().unwrap();
    assert!(
        text.contains("notes.md") && text.contains("# Plan\n\nShip on Friday."),
        "{text}"
    );
    assert_eq!(
        parts[3],
        json!({"type": "file", "file": {"filename": "r.pdf", "file_data": format!("data:application/pdf;base64,{PDF_BASE64}")}})
    );
}

#[sqlx::test]
async fn anthropic_gets_images_as_image_blocks_and_text_files_as_text(pool: sqlx::PgPool) {
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
    let chat = chat_with_attachments(&app).await;
    app.wait_until_answered(chat, 2, Duration::from_secs(30))
        .await;

    let received = anthropic.received();
    let blocks = received[0]["messages"][0]["content"]
        .as_array()
        .expect("blocks")
        .clone();
    assert_eq!(received[0]["messages"][0]["role"], "user");
    assert_eq!(blocks.len(), 4, "{blocks:?}");
    assert_eq!(blocks[0]["type"], "text");
    assert_eq!(blocks[0]["text"], "What do these say?");
    assert_eq!(
        blocks[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}})
    );
    assert_eq!(blocks[2]["type"], "text");
    let text = blocks[2]["text"].as_str().unwrap();
    assert!(
        text.contains("notes.md") && text.contains("Ship on Friday."),
        "{text}"
    );
    // The last block may carry the cache breakpoint.
    assert_eq!(blocks[3]["type"], "document");
    assert_eq!(
        blocks[3]["source"],
        json!({"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64})
    );
    assert_eq!(blocks[3]["title"], "r.pdf");
}

#[sqlx::test]
async fn deleting_a_chat_deletes_the_files_only_it_links(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let only_here = upload_text(&app, "only.txt", "only in one chat").await;
    let shared = upload_text(&app, "shared.txt", "in two chats").await;
    let loose = upload_text(&app, "loose.txt", "in no chat").await;
    let (_, doomed) = app
        .post(
            "/api/v1/chats",
            json!({"message": "a", "file_ids": [only_here, shared]}),
        )
        .await;
    let (_, kept) = app
        .post(
            "/api/v1/chats",
            json!({"message": "b", "file_ids": [shared]}),
        )
        .await;
    let (_, detail) = app
        .get(&format!("/api/v1/chats/{}", doomed["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["files"].as_array().unwrap().len(), 2, "{detail}");

    // No worker runs here: stop the chat's first turn, or the delete is a 409.
    let (status, _) = app
        .post(
            &format!("/api/v1/chats/{}/interrupt", doomed["id"].as_str().unwrap()),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let status = app
        .delete_as(
            &app.token,
            &format!("/api/v1/chats/{}", doomed["id"].as_str().unwrap()),
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        download(&app, &app.token, &only_here).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(download(&app, &app.token, &shared).await.0, StatusCode::OK);
    assert_eq!(download(&app, &app.token, &loose).await.0, StatusCode::OK);
    let (_, detail) = app
        .get(&format!("/api/v1/chats/{}", kept["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["files"][0]["id"], shared.as_str());
}

#[sqlx::test]
async fn an_edit_keeps_the_message_files_unless_it_names_others(pool: sqlx::PgPool) {
    let app = TestApp::start(pool).await;
    let first = upload_text(&app, "first.txt", "one").await;
    let second = upload_text(&app, "second.txt", "two").await;
    let (_, chat) = app
        .post(
            "/api/v1/chats",
            json!({"message": "a", "file_ids": [first]}),
        )
        .await;
    let chat_id: Uuid = chat["id"].as_str().unwrap().parse().unwrap();
    let messages = app
        .wait_until_answered(chat_id, 2, Duration::from_secs(30))
        .await;
    let files_of = |message: &Value| -> Vec<String> {
        message["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "file")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!(
        "/api/v1/chats/{chat_id}/messages/{}",
        messages[0]["id"].as_str().unwrap()
    );
    let (status, edited) = app
        .patch_as(&app.token, &path, json!({"message": "b"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(files_of(&edited["message"]), ["first.txt"]);
    let messages = app
        .wait_until_answered(chat_id, 2, Duration::from_secs(30))
        .await;
    let path = format!(
        "/api/v1/chats/{chat_id}/messages/{}",
        messages[0]["id"].as_str().unwrap()
    );
    let (status, edited) = app
        .patch_as(
            &app.token,
            &path,
            json!({"message": "c", "file_ids": [second]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(files_of(&edited["message"]), ["second.txt"]);
}
