//! Leases name one acquisition, not one process: after a worker's lease on a turn expired
//! and the same process acquired the turn again, the stale run can neither renew, nor
//! commit, nor hand the turn back.

mod support;

use std::time::Duration;

use agentq_core::store::RecoveryLimits;
use support::app::TestApp;

#[sqlx::test]
async fn a_stale_acquisition_in_the_same_process_writes_nothing(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let store = app.services.store.clone();
    let chat = app.create_chat("who owns me").await;
    let turn: uuid::Uuid = sqlx::query_scalar("SELECT id FROM chat_turns WHERE chat_id = $1")
        .bind(chat)
        .fetch_one(store.pool())
        .await
        .unwrap();
    let (stale, fresh) = ("worker-1/aaaa", "worker-1/bbbb");
    let first = store
        .acquire_turn(turn, stale, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("queued turn");
    assert_eq!(first.lease_owner, stale);
    // The first run's lease runs out; recovery puts the turn back, and the same process
    // acquires it again under a new acquisition.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    store
        .recover(RecoveryLimits {
            stale_after: Duration::from_secs(30),
            batch: 10,
            max_attempts: 3,
        })
        .await
        .unwrap()
        .expect("the recovery lock is free");
    let second = store
        .acquire_turn(turn, fresh, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("requeued turn");
    assert_eq!(second.attempt, 2);

    let held = store
        .renew_leases(
            &[(turn, stale.to_owned()), (turn, fresh.to_owned())],
            &[],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![turn],
        "only the current acquisition holds the lease"
    );
    let stale_only = store
        .renew_leases(&[(turn, stale.to_owned())], &[], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(stale_only.is_empty(), "the stale run is told it lost");

    let answer = support::text_completion("m", "stale answer");
    let committed = store
        .complete_turn(
            turn,
            chat,
            0,
            stale,
            &answer,
            agentq_core::store::AnswerTitle::Keep,
        )
        .await
        .unwrap();
    assert!(committed.is_none(), "the stale run cannot commit");
    assert!(
        !store.release_turn(turn, stale).await.unwrap(),
        "nor hand the live turn back"
    );
    let committed = store
        .complete_turn(
            turn,
            chat,
            0,
            fresh,
            &answer,
            agentq_core::store::AnswerTitle::Keep,
        )
        .await
        .unwrap();
    assert!(committed.is_some(), "the current run commits");
    app.stop().await;
}
