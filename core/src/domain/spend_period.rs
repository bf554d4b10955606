//! The calendar periods a spend limit counts over (issue #15, item 4): a UTC `day`, a
//! `week` starting Monday 00:00 UTC (ISO weeks), or a `month` starting on its first day.
//! Spend is counted from the period's start, and the limit resets at its end.
//!
//! [`SpendPeriod::bounds`] is a pure function of the period and an instant, so the
//! boundaries (midnight, Monday, the first of the month, leap days, the year's end) are
//! unit tested here; the store asks it for the window and sums costs inside it.
//!
//! ```
//! use agentq_core::domain::SpendPeriod;
//! use chrono::{TimeZone, Utc};
//! let now = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap();
//! let (start, end) = SpendPeriod::Month.bounds(now);
//! assert_eq!(start, Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap());
//! assert_eq!(end, Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap());
//! ```

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A spend limit's period. Stored as text; the `site_config.spend_period` CHECK lists the
/// same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SpendPeriod {
    /// A UTC calendar day.
    Day,
    /// Monday 00:00 UTC to the next Monday.
    Week,
    /// The first of the month 00:00 UTC to the first of the next.
    #[default]
    Month,
}

impl SpendPeriod {
    /// The period holding `now`: its start (inclusive) and end (exclusive, when the limit
    /// resets).
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let today = now.date_naive();
        let (start, end) = match self {
            SpendPeriod::Day => (today, today + Days::new(1)),
            SpendPeriod::Week => {
                let start = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
                (start, start + Days::new(7))
            }
            SpendPeriod::Month => {
                let start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
                    .expect("the first of a month exists");
                (start, start + Months::new(1))
            }
        };
        (midnight(start), midnight(end))
    }

    /// The name the API and the column use.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendPeriod::Day => "day",
            SpendPeriod::Week => "week",
            SpendPeriod::Month => "month",
        }
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        at(y, m, d, 0, 0, 0)
    }

    #[test]
    fn a_day_runs_from_utc_midnight_to_the_next() {
        assert_eq!(
            SpendPeriod::Day.bounds(at(2026, 12, 3, 23, 59, 59)),
            (day(2026, 12, 3), day(2026, 12, 4))
        );
        assert_eq!(
            SpendPeriod::Day.bounds(day(2026, 12, 4)),
            (day(2026, 12, 4), day(2026, 12, 5)),
            "midnight belongs to the day it starts"
        );
        assert_eq!(
            SpendPeriod::Day.bounds(at(2026, 12, 31, 12, 0, 0)),
            (day(2026, 12, 31), day(2027, 1, 1)),
            "the year's last day ends in the next year"
        );
        assert_eq!(
            SpendPeriod::Day.bounds(at(2024, 2, 28, 18, 0, 0)).1,
            day(2024, 2, 29),
            "a leap year has 29 February"
        );
        assert_eq!(
            SpendPeriod::Day.bounds(at(2026, 2, 28, 18, 0, 0)).1,
            day(2026, 3, 1),
            "and a common year does not"
        );
    }

    #[test]
    fn a_week_runs_from_monday_to_monday() {
        // 2026-11-30 is a Monday.
        assert_eq!(
            SpendPeriod::Week.bounds(day(2026, 11, 30)),
            (day(2026, 11, 30), day(2026, 12, 7))
        );
        for d in 1..=6 {
            assert_eq!(
                SpendPeriod::Week.bounds(at(2026, 12, d, 23, 59, 59)),
                (day(2026, 11, 30), day(2026, 12, 7)),
                "December {d}"
            );
        }
        assert_eq!(
            SpendPeriod::Week.bounds(day(2026, 12, 7)).0,
            day(2026, 12, 7),
            "Monday midnight starts the next week"
        );
        // A week across the year's end: Monday 2026-12-28 to Monday 2027-01-04.
        assert_eq!(
            SpendPeriod::Week.bounds(at(2027, 1, 3, 8, 0, 0)),
            (day(2026, 12, 28), day(2027, 1, 4))
        );
        // Across a leap day: Monday 2024-02-26 to Monday 2024-03-04.
        assert_eq!(
            SpendPeriod::Week.bounds(at(2024, 2, 29, 8, 0, 0)),
            (day(2024, 2, 26), day(2024, 3, 4))
        );
    }

    #[test]
    fn a_month_runs_from_the_first_to_the_next_first() {
        assert_eq!(
            SpendPeriod::Month.bounds(at(2024, 2, 29, 23, 59, 59)),
            (day(2024, 2, 1), day(2024, 3, 1)),
            "a leap February"
        );
        assert_eq!(
            SpendPeriod::Month.bounds(at(2100, 2, 28, 12, 0, 0)),
            (day(2100, 2, 1), day(2100, 3, 1)),
            "2100 is not a leap year"
        );
        assert_eq!(
            SpendPeriod::Month.bounds(at(2026, 12, 31, 23, 59, 59)),
            (day(2026, 12, 1), day(2027, 1, 1)),
            "December ends in the next year"
        );
        assert_eq!(
            SpendPeriod::Month.bounds(day(2027, 1, 1)),
            (day(2027, 1, 1), day(2027, 2, 1)),
            "midnight of the first starts the new month"
        );
        assert_eq!(
            SpendPeriod::Month.bounds(at(2026, 1, 31, 5, 0, 0)).1,
            day(2026, 2, 1),
            "a 31-day month"
        );
    }

    #[test]
    fn every_instant_lies_in_its_period() {
        let mut t = at(2023, 12, 25, 0, 0, 0);
        while t < at(2025, 1, 10, 0, 0, 0) {
            for p in [SpendPeriod::Day, SpendPeriod::Week, SpendPeriod::Month] {
                let (start, end) = p.bounds(t);
                assert!(start <= t && t < end, "{p:?} {t}");
                assert_eq!(p.bounds(end - chrono::Duration::seconds(1)).0, start);
                assert_eq!(p.bounds(end).0, end, "{p:?} {t}");
            }
            t += chrono::Duration::hours(7);
        }
    }
}
