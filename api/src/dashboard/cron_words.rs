//! Cron expressions in words, for the scheduler page: `*/10 * * * *` reads "every 10
//! minutes, UTC". The shapes operators actually write are spelled out; anything else is
//! shown as the expression itself, still marked UTC (the scheduler's only time zone).

/// `expression` (5 fields, or 6 with seconds first, or an `@` macro) in words.
pub fn describe(expression: &str) -> String {
    let expression = expression.trim();
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let said = match fields.as_slice() {
        ["@yearly" | "@annually"] => Some("every year on 1 January at 00:00".to_owned()),
        ["@monthly"] => Some("on the 1st of every month at 00:00".to_owned()),
        ["@weekly"] => Some("every Sunday at 00:00".to_owned()),
        ["@daily" | "@midnight"] => Some("every day at 00:00".to_owned()),
        ["@hourly"] => Some("every hour, on the hour".to_owned()),
        ["0", rest @ ..] if rest.len() == 5 => five(rest),
        [seconds, "*", "*", "*", "*", "*"] => every(seconds, "second"),
        [_, _, _, _, _] => five(&fields),
        _ => None,
    };
    match said {
        Some(words) => format!("{words}, UTC"),
        None => format!("on cron `{expression}`, UTC"),
    }
}

/// `minute hour day-of-month month day-of-week`.
fn five(fields: &[&str]) -> Option<String> {
    let [minute, hour, day, month, day_of_week] = fields else {
        return None;
    };
    match (*minute, *hour, *day, *month, *day_of_week) {
        (m, "*", "*", "*", "*") => {
            if let Some(words) = every(m, "minute") {
                Some(words)
            } else {
                let m: u32 = m.parse().ok().filter(|m| *m < 60)?;
                Some(if m == 0 {
                    "every hour, on the hour".to_owned()
                } else {
                    format!("every hour at {m} minutes past")
                })
            }
        }
        (m, h, "*", "*", "*") if h.starts_with("*/") => {
            let m: u32 = m.parse().ok().filter(|m| *m < 60)?;
            let hours = every(h, "hour")?;
            Some(format!("{hours}, at minute {m}"))
        }
        (m, h, "*", "*", "*") => Some(format!("every day at {}", clock(h, m)?)),
        (m, h, "*", "*", d) => Some(format!("every {} at {}", weekday_words(d)?, clock(h, m)?)),
        (m, h, d, "*", "*") => {
            let d: u32 = d.parse().ok().filter(|d| (1..=31).contains(d))?;
            Some(format!("on day {d} of every month at {}", clock(h, m)?))
        }
        _ => None,
    }
}

/// `*` or `*/N` as "every unit" / "every N units".
fn every(field: &str, unit: &str) -> Option<String> {
    if field == "*" {
        return Some(format!("every {unit}"));
    }
    let n: u32 = field.strip_prefix("*/")?.parse().ok()?;
    Some(match n {
        1 => format!("every {unit}"),
        n => format!("every {n} {unit}s"),
    })
}

/// `HH:MM` from numeric hour and minute fields.
fn clock(hour: &str, minute: &str) -> Option<String> {
    let h: u32 = hour.parse().ok().filter(|h| *h < 24)?;
    let m: u32 = minute.parse().ok().filter(|m| *m < 60)?;
    Some(format!("{h:02}:{m:02}"))
}

/// A day-of-week field (0 and 7 are Sunday, as in crontab; names too), or a list of them.
fn weekday_words(field: &str) -> Option<String> {
    const NAMES: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    if field == "1-5" || field.eq_ignore_ascii_case("mon-fri") {
        return Some("weekday (Monday to Friday)".to_owned());
    }
    let days: Option<Vec<&str>> = field
        .split(',')
        .map(|d| {
            let d = d.trim();
            let index = match d.parse::<usize>() {
                Ok(n) if n <= 7 => n % 7,
                Ok(_) => return None,
                Err(_) => NAMES
                    .iter()
                    .position(|name| name[..3].eq_ignore_ascii_case(d))?,
            };
            Some(NAMES[index])
        })
        .collect();
    let days = days?;
    Some(match days.as_slice() {
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn the_shapes_operators_write_read_as_words() {
        for (cron, words) in [
            ("*/10 * * * *", "every 10 minutes, UTC"),
            ("* * * * *", "every minute, UTC"),
            ("0 * * * *", "every hour, on the hour, UTC"),
            ("15 * * * *", "every hour at 15 minutes past, UTC"),
            ("0 */6 * * *", "every 6 hours, at minute 0, UTC"),
            ("0 3 * * *", "every day at 03:00, UTC"),
            ("0 9 * * 1", "every Monday at 09:00, UTC"),
            (
                "30 8 * * 1-5",
                "every weekday (Monday to Friday) at 08:30, UTC",
            ),
            ("0 9 * * 0,6", "every Sunday and Saturday at 09:00, UTC"),
            ("0 9 * * 7", "every Sunday at 09:00, UTC"),
            ("0 0 1 * *", "on day 1 of every month at 00:00, UTC"),
            ("*/5 * * * * *", "every 5 seconds, UTC"),
            ("0 */10 * * * *", "every 10 minutes, UTC"),
            ("@daily", "every day at 00:00, UTC"),
        ] {
            assert_eq!(describe(cron), words, "{cron}");
        }
    }

    #[test]
    fn other_expressions_are_shown_as_written() {
        assert_eq!(describe("0 9 1-7 * 1"), "on cron `0 9 1-7 * 1`, UTC");
        assert_eq!(describe("5,35 * * 2 *"), "on cron `5,35 * * 2 *`, UTC");
    }
}
