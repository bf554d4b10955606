//! Operators' view of the queues: a job that keeps failing lands in the dead letters, the
//! API shows it with its last error, and retrying it through the API runs it again.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use agentq_core::{queue::RunToolCall, shutdown::CancellationToken};
use reqwest::{Method, StatusCode};
use support::{
    app::{TestApp, create_owner},
    eventually,
    flaky_tools::flaky_tools_consumer,
};

#[sqlx::test]
async fn a_job_that_keeps_failing_is_dead_lettered_and_can_be_retried_through_the_api(
    pool: sqlx::PgPool,
) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "ops@example.com").await;
    // A tools consumer whose handler fails until `healthy` is set.
    let healthy = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let runner = flaky_tools_consumer(&app, healthy.clone(), runs.clone(), stop.clone());
    let job = RunToolCall {
        tool_call_id: uuid::Uuid::now_v7(),
    };
    app.services.producer.enqueue(&job).await.unwrap();

    let letters = eventually(
        Duration::from_secs(15),
        "the job in the dead letters",
        || async {
            let (status, body) = app
                .get_as(&owner, "/api/v1/admin/queues/tools/dead-letters")
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
            (!letters.is_empty()).then_some(letters)
        },
    )
    .await;
    assert_eq!(letters.len(), 1);
    // A cursor or id that is not a stream entry id is the caller's mistake: 400, not 500.
    for path in [
        "/api/v1/admin/queues/tools/dead-letters?after=garbage",
        "/api/v1/admin/queues/tools/dead-letters?after=99999999999999999999999-0",
    ] {
        let (status, body) = app.get_as(&owner, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["validations"][0]["field"], "after", "{body}");
    }
    assert_eq!(
        letters[0]["job"]["tool_call_id"],
        job.tool_call_id.to_string()
    );
    assert_eq!(letters[0]["attempt"], 2);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the tool backend is down")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let (_, queues) = app.get_as(&owner, "/api/v1/admin/queues").await;
    let tools = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "tools")
        .unwrap()
        .clone();
    assert_eq!(tools["dead_letters"], 1);
    assert_eq!(tools["length"], 0);
    assert!(
        tools["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "flaky"),
        "{tools}"
    );
    let (status, _) = app.get_as(&app.token, "/api/v1/admin/queues").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members may not");

    // The backend recovers; the operator retries the letter.
    healthy.store(true, Ordering::SeqCst);
    let id = letters[0]["id"].as_str().unwrap();
    let retry = format!("/api/v1/admin/queues/tools/dead-letters/{id}/retry");
    let (status, _) = app.send(Method::POST, &owner, &retry, None).await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        Duration::from_secs(10),
        "the retried job to run",
        || async { (runs.load(Ordering::SeqCst) == 3).then_some(()) },
    )
    .await;
    let (_, body) = app
        .get_as(&owner, "/api/v1/admin/queues/tools/dead-letters")
        .await;
    assert_eq!(body["dead_letters"].as_array().unwrap().len(), 0);
    let (status, _) = app.send(Method::POST, &owner, &retry, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already retried");
    let (status, body) = app
        .get_as(&owner, "/api/v1/admin/queues/nope/dead-letters")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].as_str().unwrap().contains("nope"));

    stop.cancel();
    runner.await.unwrap();
    app.stop().await;
}
