//! The page shell every dashboard page shares (navigation, sign-out form, the live region)
//! and the few formatters of times and durations they use. maud escapes every value it
//! interpolates, so nothing a chat title or an error message holds can become markup.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::AdminSession;

/// The dashboard's pages, for the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/admin`.
    Overview,
    /// `/admin/dead-letters`.
    DeadLetters,
    /// `/admin/scheduler`.
    Scheduler,
    /// `/admin/attention`.
    Attention,
}

const PAGES: [(Nav, &str, &str); 4] = [
    (Nav::Overview, "/admin", "Overview"),
    (Nav::DeadLetters, "/admin/dead-letters", "Dead letters"),
    (Nav::Scheduler, "/admin/scheduler", "Scheduler"),
    (
        Nav::Attention,
        "/admin/attention",
        "Chats needing attention",
    ),
];

/// A signed-in page: `body` goes in a `<main>` that the script refreshes every two seconds.
pub fn page(title: &str, active: Nav, session: &AdminSession, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    span.brand { "agentq" }
                    nav {
                        @for (nav, href, label) in PAGES {
                            @if nav == active {
                                a.active href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    form.logout method="post" action="/admin/logout" {
                        span.who { (session.user.email) }
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main #live data-refresh="2000" {
                    h1 { (title) }
                    (body)
                    p.footnote {
                        "As of " time datetime=(Utc::now().to_rfc3339()) { (Utc::now().format("%H:%M:%S UTC")) }
                        " · " a href="" { "Reload" }
                    }
                }
                script src="/admin/assets/dashboard.js" defer {}
            }
        }
    }
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { (body) }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · agentq" }
            link rel="stylesheet" href="/admin/assets/dashboard.css";
        }
    }
}

/// `now - at` in words: `4 s ago`, `3 min ago`, `2 h ago`, `5 d ago`.
pub fn ago(at: DateTime<Utc>) -> String {
    let secs = (Utc::now() - at).num_seconds();
    if secs < 0 {
        return format!("in {}", span_secs(-secs));
    }
    format!("{} ago", span_secs(secs))
}

/// `at - now` in words, for times ahead: `in 4 min`.
pub fn until(at: DateTime<Utc>) -> String {
    let secs = (at - Utc::now()).num_seconds();
    if secs < 0 {
        return format!("{} ago", span_secs(-secs));
    }
    format!("in {}", span_secs(secs))
}

fn span_secs(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// Milliseconds in words: `850 ms`, `12.4 s`, `3 min 5 s`.
pub fn millis(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A time as `2026-12-03 05:10:00 UTC`.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(millis(850), "850 ms");
        assert_eq!(millis(12_400), "12.4 s");
        assert_eq!(millis(185_000), "3 min 5 s");
        assert_eq!(span_secs(30), "30 s");
        assert_eq!(span_secs(600), "10 min");
        assert_eq!(span_secs(3 * 86_400), "3 d");
    }
}
