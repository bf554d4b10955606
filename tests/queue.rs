//! The Redis Streams queue under the apalis runtime: bursts, takeover of a dead consumer's
//! entries, retries into dead letters, and a Redis restart.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agentq_core::{
    config::{self, QueueConfig},
    queue::{Consumer, ConsumerOptions, Producer, QueueKeys, QueueName, RunTurn, run_jobs},
    redis_conn,
    shutdown::CancellationToken,
};
use support::{delete_keys, eventually, redis_server::PrivateRedis, redis_url, unique_prefix};
use uuid::Uuid;

/// Counts how often each job ran.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<Uuid, u32>>>);

impl Runs {
    fn record(&self, id: Uuid) {
        *self.0.lock().unwrap().entry(id).or_default() += 1;
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
}

fn options(prefix: &str, consumer: &str, lease: Duration, max_attempts: u32) -> ConsumerOptions {
    let queue: QueueConfig = config::defaults();
    ConsumerOptions {
        keys: QueueKeys::new(prefix, QueueName::Turns),
        consumer: consumer.to_owned(),
        concurrency: 64,
        fetch_batch: queue.fetch_batch,
        lease,
        max_deliveries: 3,
        max_attempts,
        block: Duration::from_millis(500),
        max_len: 0,
    }
}

/// Starts a consumer of `turns` under `prefix` whose handler records runs (and fails when
/// `fail` is set). Returns its stop token and the runner task.
fn start_worker(
    url: &str,
    opts: ConsumerOptions,
    runs: Runs,
    fail: bool,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let client = redis_conn::RedisClient::open(url).unwrap();
    let stop = CancellationToken::new();
    let consumer = Consumer::start(
        client.shared().unwrap(),
        client.blocking().unwrap(),
        opts.clone(),
        stop.clone(),
    );
    let runner = run_jobs(&opts.consumer, consumer, move |job: RunTurn| {
        let runs = runs.clone();
        async move {
            runs.record(job.turn_id);
            if fail {
                Err("the handler always fails".into())
            } else {
                Ok(())
            }
        }
    });
    (stop, runner)
}

fn producer(url: &str, prefix: &str) -> Producer {
    let client = redis_conn::RedisClient::open(url).unwrap();
    Producer::new(client.shared().unwrap(), prefix, 0)
}

async fn stream_len_and_pending(url: &str, keys: &QueueKeys) -> (i64, i64) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: i64 = redis::cmd("XLEN")
        .arg(&keys.stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&keys.stream)
        .arg(&keys.group)
        .query_async(&mut conn)
        .await
        .unwrap();
    let pending = match pending {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    };
    (len, pending)
}

#[tokio::test]
async fn twenty_thousand_jobs_in_one_burst_are_all_processed_once() {
    let url = redis_url();
    let prefix = unique_prefix();
    let jobs: Vec<RunTurn> = (0..20_000)
        .map(|_| RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .collect();
    let producer = producer(&url, &prefix);
    for chunk in jobs.chunks(5_000) {
        producer.enqueue_many(chunk).await.unwrap();
    }
    let runs = Runs::default();
    let started = Instant::now();
    let (stop, runner) = start_worker(
        &url,
        options(&prefix, "burst", Duration::from_secs(30), 3),
        runs.clone(),
        false,
    );
    eventually(
        Duration::from_secs(60),
        "all 20,000 jobs to run",
        || async { (runs.distinct() == 20_000).then_some(()) },
    )
    .await;
    let elapsed = started.elapsed();
    println!(
        "drained 20,000 jobs in {elapsed:?} ({:.0} jobs/s)",
        20_000.0 / elapsed.as_secs_f64()
    );
    stop.cancel();
    runner.await.unwrap();
    assert_eq!(runs.total(), 20_000, "no job ran twice");
    let keys = QueueKeys::new(&prefix, QueueName::Turns);
    assert_eq!(
        stream_len_and_pending(&url, &keys).await,
        (0, 0),
        "acked entries are deleted"
    );
    delete_keys(&url, &prefix).await;
}

#[tokio::test]
async fn a_dead_consumers_entries_are_taken_over_after_the_lease() {
    let url = redis_url();
    let prefix = unique_prefix();
    let lease = Duration::from_secs(1);
    let jobs: Vec<RunTurn> = (0..10)
        .map(|_| RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .collect();
    producer(&url, &prefix).enqueue_many(&jobs).await.unwrap();

    // A consumer takes the entries and dies holding them: it never acks or heartbeats.
    let client = redis_conn::RedisClient::open(url.as_str()).unwrap();
    let dying = CancellationToken::new();
    let mut doomed = Consumer::start(
        client.shared().unwrap(),
        client.blocking().unwrap(),
        options(&prefix, "doomed", lease, 3),
        dying.clone(),
    );
    let mut held = Vec::new();
    while held.len() < 10 {
        held.extend(
            tokio::time::timeout(Duration::from_secs(5), doomed.deliveries.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let (intake, upkeep) = doomed.take_tasks();
    for task in intake.into_iter().chain(upkeep) {
        task.abort();
    }
    let died_at = Instant::now();

    let runs = Runs::default();
    let (stop, runner) = start_worker(
        &url,
        options(&prefix, "survivor", lease, 3),
        runs.clone(),
        false,
    );
    eventually(
        Duration::from_secs(10),
        "the survivor to run every held job",
        || async { (runs.distinct() == 10).then_some(()) },
    )
    .await;
    let took = died_at.elapsed();
    assert!(
        took >= lease,
        "not taken over before the lease ended ({took:?})"
    );
    println!("taken over {took:?} after the holder died (lease {lease:?})");
    stop.cancel();
    runner.await.unwrap();
    let keys = QueueKeys::new(&prefix, QueueName::Turns);
    assert_eq!(stream_len_and_pending(&url, &keys).await, (0, 0));
    drop(held);
    delete_keys(&url, &prefix).await;
}

#[tokio::test]
async fn a_long_job_keeps_its_entry_while_it_runs() {
    let url = redis_url();
    let prefix = unique_prefix();
    let lease = Duration::from_secs(1);
    let turn_id = Uuid::new_v4();
    producer(&url, &prefix)
        .enqueue(&RunTurn { turn_id })
        .await
        .unwrap();
    let runs = Runs::default();
    let client = redis_conn::RedisClient::open(url.as_str()).unwrap();
    let spawn = |name: &str, runs: Runs| {
        let stop = CancellationToken::new();
        let consumer = Consumer::start(
            client.shared().unwrap(),
            client.blocking().unwrap(),
            options(&prefix, name, lease, 3),
            stop.clone(),
        );
        let runner = run_jobs(name, consumer, move |job: RunTurn| {
            let runs = runs.clone();
            async move {
                runs.record(job.turn_id);
                // Three leases long: heartbeats must keep other consumers off it.
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(())
            }
        });
        (stop, runner)
    };
    let (stop_a, runner_a) = spawn("a", runs.clone());
    let (stop_b, runner_b) = spawn("b", runs.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        runs.total(),
        1,
        "a running job is not taken over while its holder heartbeats"
    );
    stop_a.cancel();
    stop_b.cancel();
    runner_a.await.unwrap();
    runner_b.await.unwrap();
    delete_keys(&url, &prefix).await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_retried_then_dead_lettered() {
    let url = redis_url();
    let prefix = unique_prefix();
    let turn_id = Uuid::new_v4();
    producer(&url, &prefix)
        .enqueue(&RunTurn { turn_id })
        .await
        .unwrap();
    let runs = Runs::default();
    // Two attempts: the first fails and is retried after its backoff (2 s), the second
    // fails and goes to the dead-letter stream.
    let (stop, runner) = start_worker(
        &url,
        options(&prefix, "failing", Duration::from_secs(30), 2),
        runs.clone(),
        true,
    );
    let keys = QueueKeys::new(&prefix, QueueName::Turns);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let dead: redis::Value = eventually(
        Duration::from_secs(10),
        "the job to reach the dead letters",
        || {
            let mut conn = conn.clone();
            let key = keys.dead.clone();
            async move {
                let entries: redis::Value = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                match &entries {
                    redis::Value::Array(v) if !v.is_empty() => Some(entries),
                    _ => None,
                }
            }
        },
    )
    .await;
    assert_eq!(runs.total(), 2, "ran once, retried once");
    let text = format!("{dead:?}");
    assert!(text.contains(&turn_id.to_string()), "{text}");
    assert!(text.contains("the handler always fails"), "{text}");
    stop.cancel();
    runner.await.unwrap();
    let len: i64 = redis::cmd("XLEN")
        .arg(&keys.stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 0);
    delete_keys(&url, &prefix).await;
}

#[tokio::test]
async fn workers_reconnect_and_continue_after_redis_restarts() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let prefix = unique_prefix();
    let runs = Runs::default();
    let (stop, runner) = start_worker(
        &url,
        options(&prefix, "survivor", Duration::from_secs(5), 3),
        runs.clone(),
        false,
    );
    let producer = producer(&url, &prefix);
    let before: Vec<RunTurn> = (0..10)
        .map(|_| RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .collect();
    producer.enqueue_many(&before).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "jobs before the restart",
        || async { (runs.distinct() == 10).then_some(()) },
    )
    .await;

    redis.restart().await;

    // Producers and consumers reconnect by themselves; the first enqueue may hit the old
    // connection, so it is retried as a client would.
    let after: Vec<RunTurn> = (0..10)
        .map(|_| RunTurn {
            turn_id: Uuid::new_v4(),
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "an enqueue after the restart",
        || async { producer.enqueue_many(&after).await.ok() },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "jobs after the restart",
        || async { (runs.distinct() == 20).then_some(()) },
    )
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
}
