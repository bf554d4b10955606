//! The archive digest (ARCHITECTURE.md §10): one email per owner per maintenance tick, listing the
//! root chats that tick auto-archived. The payload is fixed when the tick writes the outbox
//! row (including the tick's own time, from which "3 days ago" is counted), so a retry a day
//! later says exactly what the first attempt would have said.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Block, Document, RenderedEmail, layout::LinkItem};

/// Titles an email lists; the rest are counted ("...and K more.").
pub const DIGEST_LISTED: usize = 25;

/// One archived chat as the digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestChat {
    /// The chat (its link is `<base_url>/chats/<id>`).
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Its last activity.
    pub last_activity_at: DateTime<Utc>,
}

/// The payload of an `archive_digest` outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveDigest {
    /// `auto_archive_days` when the tick ran.
    pub days: i32,
    /// `chat_retention_days` when the tick ran; 0 = archived chats are kept forever.
    pub retention_days: i32,
    /// The tick's time: "N days ago" is counted from here.
    pub tick_at: DateTime<Utc>,
    /// How many chats the tick archived for this owner.
    pub total: usize,
    /// The oldest [`DIGEST_LISTED`] of them, oldest first.
    pub chats: Vec<DigestChat>,
}

impl ArchiveDigest {
    /// The template name stored in the outbox.
    pub const TEMPLATE: &'static str = "archive_digest";

    /// The digest of `chats` (all that one tick archived for one owner, in any order).
    pub fn new(
        days: i32,
        retention_days: i32,
        tick_at: DateTime<Utc>,
        mut chats: Vec<DigestChat>,
    ) -> Self {
        chats.sort_by_key(|c| (c.last_activity_at, c.id));
        let total = chats.len();
        chats.truncate(DIGEST_LISTED);
        Self {
            days,
            retention_days,
            tick_at,
            total,
            chats,
        }
    }

    /// The outbox dedupe key: one digest per owner per tick, however often the tick's
    /// transaction is replayed or how many schedulers race for it.
    pub fn dedupe_key(owner: Uuid, tick_at: DateTime<Utc>) -> String {
        format!("{}:{owner}:{}", Self::TEMPLATE, tick_at.timestamp_millis())
    }

    /// The email; links point under `base_url` (e.g. `https://agents.example.com`).
    pub fn render(&self, base_url: &str) -> RenderedEmail {
        let base = base_url.trim_end_matches('/');
        let subject = format!(
            "Chats auto-archived after {} of inactivity",
            plural(i64::from(self.days), "day")
        );
        let mut doc = Document::default();
        doc.paragraph(format!(
            "{} of yours had no activity for {} and {} archived:",
            if self.total == 1 {
                "One chat".to_owned()
            } else {
                format!("{} chats", self.total)
            },
            plural(i64::from(self.days), "day"),
            if self.total == 1 { "was" } else { "were" },
        ));
        doc.blocks.push(Block::LinkList(
            self.chats
                .iter()
                .map(|chat| LinkItem {
                    label: if chat.title.trim().is_empty() {
                        "Untitled chat".to_owned()
                    } else {
                        chat.title.clone()
                    },
                    href: format!("{base}/chats/{}", chat.id),
                    after: format!(
                        ", last active {}",
                        time_ago(self.tick_at, chat.last_activity_at)
                    ),
                })
                .collect(),
        ));
        if self.total > self.chats.len() {
            doc.paragraph(format!("...and {} more.", self.total - self.chats.len()));
        }
        doc.paragraph(if self.retention_days > 0 {
            format!(
                "You can restore them within {}, after which they will be permanently deleted.",
                plural(i64::from(self.retention_days), "day")
            )
        } else {
            "Archived chats are kept indefinitely.".to_owned()
        });
        doc.paragraph(
            "You get this email because archive digests are on for your account; \
             turn them off with PUT /api/v1/users/me/notification-preferences \
             {\"archive_digest\": false}.",
        );
        RenderedEmail {
            subject,
            text: doc.to_text(),
            html: doc.to_html(),
        }
    }
}

/// "1 day", "3 days".
fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// How long before `now` `then` was, in the largest whole unit: "just now", "5 minutes
/// ago", "3 hours ago", "3 days ago", "2 months ago", "1 year ago".
pub fn time_ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    let (n, unit) = match secs {
        s if s < 60 => return "just now".to_owned(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 60 * 86_400 => (s / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    format!("{} ago", plural(n, unit))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn chats(n: usize, tick: DateTime<Utc>) -> Vec<DigestChat> {
        (0..n)
            .map(|i| DigestChat {
                id: Uuid::now_v7(),
                title: format!("chat {i:02}"),
                last_activity_at: tick - Duration::days(40) + Duration::hours(i as i64),
            })
            .collect()
    }

    #[test]
    fn time_is_told_in_the_largest_whole_unit() {
        let now = Utc.with_ymd_and_hms(2026, 6, 5, 0, 0, 0).unwrap();
        let cases = [
            (Duration::seconds(5), "just now"),
            (Duration::minutes(1), "1 minute ago"),
            (Duration::minutes(59), "59 minutes ago"),
            (Duration::hours(3), "3 hours ago"),
            (Duration::days(1), "1 day ago"),
            (Duration::days(3) + Duration::hours(23), "3 days ago"),
            (Duration::days(75), "2 months ago"),
            (Duration::days(800), "2 years ago"),
        ];
        for (ago, words) in cases {
            assert_eq!(time_ago(now, now - ago), words, "{ago:?}");
        }
    }

    #[test]
    fn thirty_chats_list_the_oldest_twenty_five_and_count_the_rest() {
        let tick = Utc.with_ymd_and_hms(2026, 6, 5, 0, 0, 0).unwrap();
        let mut all = chats(30, tick);
        all.reverse();
        let digest = ArchiveDigest::new(7, 30, tick, all);
        assert_eq!(digest.total, 30);
        assert_eq!(digest.chats.len(), 25);
        assert_eq!(digest.chats[0].title, "chat 00", "oldest first");
        let email = digest.render("https://agents.example.com/");
        assert_eq!(
            email.subject,
            "Chats auto-archived after 7 days of inactivity"
        );
        assert!(email.text.contains("30 chats of yours had no activity"));
        assert!(email.text.contains("chat 24"));
        assert!(!email.text.contains("chat 25"), "26th oldest is not listed");
        assert!(email.text.contains("...and 5 more."));
        assert!(email.text.contains(&format!(
            "<https://agents.example.com/chats/{}>",
            digest.chats[0].id
        )));
        assert!(email.text.contains(
            "You can restore them within 30 days, after which they will be permanently deleted."
        ));
        assert!(email.html.contains("...and 5 more."));
    }

    #[test]
    fn retention_zero_says_kept_indefinitely_and_few_chats_have_no_remainder() {
        let tick = Utc.with_ymd_and_hms(2026, 6, 5, 0, 0, 0).unwrap();
        let email = ArchiveDigest::new(1, 0, tick, chats(1, tick)).render("http://x");
        assert_eq!(
            email.subject,
            "Chats auto-archived after 1 day of inactivity"
        );
        assert!(
            email
                .text
                .contains("One chat of yours had no activity for 1 day and was")
        );
        assert!(email.text.contains("Archived chats are kept indefinitely."));
        assert!(!email.text.contains("more."));
        assert!(!email.text.contains("restore"));
    }
}
