//! `archive`: the maintenance tick over a large table (ARCHITECTURE.md §13): how long one auto-archive tick
//! takes with a million chats, when nothing is due and when a full batch is archived and
//! its owners' digests are written to the outbox.

use std::time::{Duration, Instant};

use agentq_core::{services::Services, store::SiteConfigChanges};
use chrono::{DateTime, TimeZone, Utc};

use crate::common::{Ctx, Row, ms, n};

pub const ABOUT: &str = "one maintenance tick (auto-archive, limit 1,000, with its owners' \
digests written to the outbox) over 200,000 chats of 1,000 owners (quick) or 1,000,000 \
(full), vacuumed and checkpointed after seeding (a table at rest): a tick with nothing due, and \
ticks that each archive a full batch. Target: <= 100 ms a tick.";

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let chats: i64 = ctx.pick(200_000, 1_000_000);
    let owners: i64 = 1_000;
    let ticks = ctx.pick(5, 10);
    let db = ctx.fresh_db("archive", 10).await?;
    let prefix = ctx.prefix("a");
    let services = Services::new(db.pool.clone(), ctx.redis_url(), &prefix, 0)?;
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
    // The ticks measure a table at rest, as a nightly tick finds it, not the aftermath of
    // the bulk load: without this the first ticks set the hint bits of the rows they read
    // and write out the load's dirty buffers themselves (measured: 9,782 buffers written by
    // the archive UPDATE over 1,000,000 chats, its slowest call 130 ms against a mean of
    // 46 ms). CHECKPOINT needs superuser or pg_checkpoint; without it only VACUUM runs.
    sqlx::query("VACUUM (ANALYZE) chats")
        .execute(&db.pool)
        .await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&db.pool).await {
        eprintln!(
            "   archive: no CHECKPOINT after seeding ({e}); the first ticks may write the load's buffers"
        );
    }

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
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..ticks {
        let tick = Instant::now();
        let outcome =
            agentq_scheduler::maintenance::maintain(&services.store, &services.producer, busy_at)
                .await?;
        slowest = slowest.max(tick.elapsed());
        archived += outcome.archived;
        digests += outcome.emails_queued;
    }
    let mean = started.elapsed() / ticks.max(1) as u32;
    Ok(vec![
        Row::new(
            "archive",
            format!(
                "maintenance tick, nothing due, over {} chats",
                n(chats as f64)
            ),
            format!("{:.1} ms", ms(idle_tick)),
            "<= 100 ms",
            Some(idle_tick <= Duration::from_millis(100)),
        ),
        Row::new(
            "archive",
            format!(
                "maintenance tick archiving a full batch (limit 1,000) and writing its digests, over {} chats",
                n(chats as f64)
            ),
            format!(
                "{:.0} ms a tick (slowest {:.0} ms); {archived} chats archived, {digests} digests over {ticks} ticks",
                ms(mean),
                ms(slowest)
            ),
            "<= 100 ms",
            Some(mean <= Duration::from_millis(100)),
        ),
    ])
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}
