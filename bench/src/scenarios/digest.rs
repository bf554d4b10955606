//! `digest`: archive digest emails from the outbox to a real SMTP server. One maintenance
//! tick archives one idle chat of each of N owners and writes N digests to the outbox (and
//! their `mail` jobs); an `agentq worker --queues mail` process sends them to an SMTP sink
//! in this process ([`crate::smtp_sink`]); the rate counts from the end of the tick to the
//! last message accepted.

use std::time::{Duration, Instant};

use agentq_core::{services::Services, store::SiteConfigChanges};
use chrono::{TimeZone, Utc};

use crate::{
    common::{Ctx, Row, ms, n, wait_until},
    procs::Agentq,
    smtp_sink::SmtpSink,
};

pub const ABOUT: &str = "digest emails of 5,000 owners (quick) or 10,000 (full): one \
maintenance tick writes them to the outbox, an `agentq worker --queues mail` process (default \
concurrency) sends them over SMTP to a sink on 127.0.0.1; emails/s from the tick's end to the \
last message accepted. Target: >= 500 emails/s.";

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let owners: i64 = ctx.pick(5_000, 10_000);
    let limit = ctx.pick(Duration::from_secs(60), Duration::from_secs(120));
    let db = ctx.fresh_db("digest", 10).await?;
    let prefix = ctx.prefix("d");
    let services = Services::new(db.pool.clone(), ctx.redis_url(), &prefix, 0)?;
    let until = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    // One chat per owner, all idle for more than 30 days on 2026-06-01.
    services
        .store
        .seed_idle_chats(owners, owners, until)
        .await?;
    services
        .store
        .update_site_config(&SiteConfigChanges {
            auto_archive_days: Some(30),
            auto_archive_limit: Some(100_000),
            ..SiteConfigChanges::default()
        })
        .await?;
    let sink = SmtpSink::start(128)?;
    let smtp_url = sink.url();
    let _worker = Agentq::spawn(
        &ctx,
        "worker",
        &db,
        &prefix,
        &[
            "--queues",
            "mail",
            "--provider",
            "echo",
            "--smtp-url",
            &smtp_url,
        ],
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let tick_at = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let started = Instant::now();
    let outcome =
        agentq_scheduler::maintenance::maintain(&services.store, &services.producer, tick_at)
            .await?;
    let tick = started.elapsed();
    let queued = outcome.emails_queued;
    let sending = Instant::now();
    let sink_ref = &sink;
    let all = wait_until(limit, Duration::from_millis(10), || async move {
        sink_ref.received() >= queued
    })
    .await;
    let took = sending.elapsed();
    let received = sink.received();
    let rate = received as f64 / took.as_secs_f64();
    Ok(vec![Row::new(
        "digest",
        format!(
            "{} owners' digests: outbox -> SMTP server",
            n(owners as f64)
        ),
        format!(
            "{} emails/s ({received} of {queued} in {:.1} s{}); the tick that wrote them took {:.0} ms",
            n(rate),
            took.as_secs_f64(),
            if all {
                ""
            } else {
                ", stopped at the time bound"
            },
            ms(tick)
        ),
        ">= 500 emails/s",
        Some(all && queued as i64 >= owners && rate >= 500.0),
    )])
}
