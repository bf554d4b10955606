//! Cron schedules as operators write them: the standard 5-field crontab (`minute hour
//! day-of-month month day-of-week`), always in UTC. `0 9 * * 1` is Mondays at 09:00 UTC
//! (0 and 7 are Sunday); `*/10 * * * *` is every ten minutes. A sixth, leading seconds
//! field is accepted too (`*/5 * * * * *`: every five seconds), for short maintenance
//! cycles in tests and small deployments. Day-of-month and day-of-week OR together, as in
//! Vixie cron.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

/// Why an expression was refused; names the expression.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid cron expression `{expression}`: {reason} (expected 5 fields: minute hour day-of-month month day-of-week, in UTC, e.g. `*/10 * * * *`)"
)]
pub struct ScheduleError {
    expression: String,
    reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) && !expression.trim_start().starts_with('@') {
            return Err(fail(format!("it has {fields} fields")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            cron,
            text: expression.trim().to_owned(),
        })
    }
}

impl Schedule {
    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The expression as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, TimeZone, Weekday};

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn monday_nine_is_monday_nine_utc() {
        let schedule: Schedule = "0 9 * * 1".parse().unwrap();
        // 2026-12-06 is a Sunday.
        let next = schedule.next_after(at(2026, 12, 6, 12, 0, 0)).unwrap();
        assert_eq!(next, at(2026, 12, 7, 9, 0, 0));
        assert_eq!(next.weekday(), Weekday::Mon);
        // Exactly at a firing time, the next one is a week later.
        assert_eq!(
            schedule.next_after(next).unwrap(),
            at(2026, 12, 14, 9, 0, 0)
        );
    }

    #[test]
    fn every_ten_minutes_and_sunday_as_seven() {
        let schedule: Schedule = "*/10 * * * *".parse().unwrap();
        assert_eq!(
            schedule.next_after(at(2026, 1, 1, 23, 55, 1)).unwrap(),
            at(2026, 1, 2, 0, 0, 0)
        );
        let sunday: Schedule = "30 2 * * 7".parse().unwrap();
        assert_eq!(
            sunday.next_after(at(2026, 12, 2, 0, 0, 0)).unwrap(),
            at(2026, 12, 6, 2, 30, 0)
        );
    }

    #[test]
    fn a_leading_seconds_field_is_accepted() {
        let schedule: Schedule = "*/5 * * * * *".parse().unwrap();
        assert_eq!(
            schedule.next_after(at(2026, 1, 1, 0, 0, 1)).unwrap(),
            at(2026, 1, 1, 0, 0, 5)
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_their_text() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * *", "every day"] {
            let err = bad.parse::<Schedule>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
