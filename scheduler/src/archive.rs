//! The auto-archive job (ARCHITECTURE.md §10): with `auto_archive_days` = N, a root chat whose
//! last activity fell on UTC day D is archived on the first tick at or after midnight UTC
//! starting day D + N + 1, and its owner hears of it in that tick's digest email. The tick's
//! time is a parameter so tests (and replays) choose "now".

use std::collections::HashMap;

use agentq_core::{
    StoreError,
    notifications::{ArchiveDigest, DigestChat},
    store::{ArchivedChat, DigestRecipient, NewNotification, Store},
};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// What one archive tick did.
#[derive(Debug, Default)]
pub struct ArchiveOutcome {
    /// The root chats archived, oldest activity first.
    pub archived: Vec<ArchivedChat>,
    /// Digest emails written to the outbox (one per owner who wants them); each needs a
    /// `SendMail` nudge.
    pub notifications: Vec<Uuid>,
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

/// Archives what is due at `tick_at` under the site's settings, and writes each owner's
/// digest to the outbox in the same transaction (keyed by owner and tick, so one tick
/// never mails an owner twice). Nothing when archiving is off.
pub async fn archive_idle_chats(
    store: &Store,
    tick_at: DateTime<Utc>,
) -> Result<ArchiveOutcome, StoreError> {
    let config = store.site_config().await?;
    if config.auto_archive_days <= 0 {
        return Ok(ArchiveOutcome::default());
    }
    let cutoff = archive_cutoff(tick_at, config.auto_archive_days);
    let compose = |roots: &[ArchivedChat], recipients: &[DigestRecipient]| {
        digests(
            roots,
            recipients,
            config.auto_archive_days,
            config.chat_retention_days,
            tick_at,
        )
    };
    let result = store
        .archive_idle_roots(cutoff, i64::from(config.auto_archive_limit), compose)
        .await?;
    if !result.archived.is_empty() {
        tracing::info!(
            archived = result.archived.len(),
            emails = result.notifications.len(),
            %cutoff,
            "auto-archived idle chats"
        );
    }
    Ok(ArchiveOutcome {
        archived: result.archived,
        notifications: result.notifications,
        cutoff: Some(cutoff),
    })
}

/// One digest per recipient, listing that owner's archived roots.
fn digests(
    roots: &[ArchivedChat],
    recipients: &[DigestRecipient],
    days: i32,
    retention_days: i32,
    tick_at: DateTime<Utc>,
) -> Vec<NewNotification> {
    let mut by_owner: HashMap<Uuid, Vec<DigestChat>> = HashMap::new();
    for root in roots {
        by_owner.entry(root.owner_id).or_default().push(DigestChat {
            id: root.id,
            title: root.title.clone(),
            last_activity_at: root.last_activity_at,
        });
    }
    recipients
        .iter()
        .filter_map(|recipient| {
            let chats = by_owner.remove(&recipient.user_id)?;
            let digest = ArchiveDigest::new(days, retention_days, tick_at, chats);
            Some(NewNotification {
                user_id: recipient.user_id,
                recipient: recipient.email.clone(),
                template: ArchiveDigest::TEMPLATE,
                payload: serde_json::to_value(&digest).expect("digests serialize"),
                dedupe_key: ArchiveDigest::dedupe_key(recipient.user_id, tick_at),
            })
        })
        .collect()
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
