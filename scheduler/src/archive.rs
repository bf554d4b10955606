//! The auto-archive job (DESIGN.md §5): with `auto_archive_days` = N, a root chat whose
//! last activity fell on UTC day D is archived on the first tick at or after midnight UTC
//! starting day D + N + 1. The clock is a parameter so tests (and replays) choose "now".

use agentq_core::{
    StoreError,
    store::{ArchivedChat, Store},
};
use chrono::{DateTime, Duration, Utc};

/// What one archive tick did.
#[derive(Debug, Default)]
pub struct ArchiveOutcome {
    /// The root chats archived, oldest activity first.
    pub archived: Vec<ArchivedChat>,
    /// The cutoff used: chats last active before it were due.
    pub cutoff: Option<DateTime<Utc>>,
}

/// The instant before which activity makes a chat due at `now`: midnight UTC of
/// `today - days`. Every chat of one UTC day therefore falls due at the same midnight.
pub fn archive_cutoff(now: DateTime<Utc>, days: i32) -> DateTime<Utc> {
    let today = now.date_naive();
    let day = today - Duration::days(i64::from(days));
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Archives what is due at `now` under the site's settings; nothing when archiving is off.
pub async fn archive_idle_chats(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<ArchiveOutcome, StoreError> {
    let config = store.site_config().await?;
    if config.auto_archive_days <= 0 {
        return Ok(ArchiveOutcome::default());
    }
    let cutoff = archive_cutoff(now, config.auto_archive_days);
    let archived = store
        .archive_idle_roots(cutoff, i64::from(config.auto_archive_limit))
        .await?;
    if !archived.is_empty() {
        tracing::info!(archived = archived.len(), %cutoff, "auto-archived idle chats");
    }
    Ok(ArchiveOutcome {
        archived,
        cutoff: Some(cutoff),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_whole_utc_day_falls_due_at_one_midnight() {
        // Activity on 2026-03-10 with 7 days: due from 2026-03-18 00:00 UTC.
        let just_before = Utc.with_ymd_and_hms(2026, 3, 17, 23, 59, 59).unwrap();
        let at_midnight = Utc.with_ymd_and_hms(2026, 3, 18, 0, 0, 0).unwrap();
        let first = Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 1).unwrap();
        let last = Utc.with_ymd_and_hms(2026, 3, 10, 23, 59, 59).unwrap();
        assert!(
            first >= archive_cutoff(just_before, 7) && last >= archive_cutoff(just_before, 7),
            "not one tick earlier"
        );
        assert!(first < archive_cutoff(at_midnight, 7) && last < archive_cutoff(at_midnight, 7));
    }
}
