//! The maintenance tick over a large table (ARCHITECTURE.md §13): how long one auto-archive tick
//! takes with a million chats, when nothing is due and when a full batch is archived and
//! its owners' digests are written to the outbox.

use std::time::{Duration, Instant};

use agentq_core::{config, db, services::Services, store::SiteConfigChanges};
use chrono::{DateTime, TimeZone, Utc};

/// What the archive benchmark measured.
pub struct ArchiveFigures {
    /// Chats in the table.
    pub chats: i64,
    /// Owners they belong to.
    pub owners: i64,
    /// A tick that finds nothing due.
    pub idle_tick: Duration,
    /// Ticks that each archived a full batch: (ticks, mean duration, chats archived,
    /// digests written).
    pub busy: (usize, Duration, usize, usize),
}

/// Fills a fresh database with `chats` root chats of `owners` owners, idle over 60 days
/// before 2026-03-01, and times maintenance ticks.
pub async fn archive_ticks(
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    chats: i64,
    owners: i64,
    ticks: usize,
) -> anyhow::Result<ArchiveFigures> {
    let mut database: config::DatabaseConfig = config::defaults();
    database.url = database_url
        .rsplit_once('/')
        .map(|(b, _)| format!("{b}/agentq_bench_archive"))
        .unwrap_or_default()
        .into();
    let _ = db::drop_database_if_exists(&database, "agentq_bench_archive").await;
    db::create_database_if_missing(&database).await?;
    let pool = db::connect(&database).await?;
    db::migrate(&pool).await?;
    let services = Services::new(pool.clone(), redis_url, prefix, 0)?;
    // Activity spread over the 60 days before 2026-03-01.
    services
        .store
        .seed_idle_chats(owners, chats, at(2026, 3, 1))
        .await?;
    services
        .store
        .update_site_config(&SiteConfigChanges {
            auto_archive_days: Some(30),
            auto_archive_limit: Some(1000),
            ..SiteConfigChanges::default()
        })
        .await?;

    // Activity spans 2025-12-31 .. 2026-03-01. With 30 days, a tick on 2026-01-01 is due
    // only what was active before 2025-12-02: nothing, but it still has to look.
    let idle_at = at(2026, 1, 1);
    let started = Instant::now();
    let idle =
        agentq_scheduler::maintenance::maintain(&services.store, &services.producer, idle_at)
            .await?;
    let idle_tick = started.elapsed();
    anyhow::ensure!(idle.archived == 0, "nothing should be due at {idle_at}");

    // On 2026-03-01 everything active before 2026-01-30 is due: about half the table.
    let busy_at = at(2026, 3, 1);
    let (mut archived, mut digests) = (0, 0);
    let started = Instant::now();
    for _ in 0..ticks {
        let outcome =
            agentq_scheduler::maintenance::maintain(&services.store, &services.producer, busy_at)
                .await?;
        archived += outcome.archived;
        digests += outcome.emails_queued;
    }
    let mean = started.elapsed() / ticks.max(1) as u32;
    Ok(ArchiveFigures {
        chats,
        owners,
        idle_tick,
        busy: (ticks, mean, archived, digests),
    })
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}
