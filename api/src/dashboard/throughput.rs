//! Jobs per second over the last minutes, for the overview's chart.
//!
//! Redis keeps no history, so the API process keeps one: every `--dashboard-sample-ms`
//! (5 s by default) it reads each queue's lifetime counters (`queue::queue_counters`: the
//! stream's `entries-added` from `XINFO STREAM`, and its length) into a ring of
//! [`SAMPLES`] samples (ten minutes at the default).
//! Jobs that left a stream between two samples (done: acked and deleted, or dead-lettered,
//! or put back for a retry) are the entries added minus the growth of its length, so the
//! rate is right whichever worker ran them. Each API replica keeps its own ring from when
//! it started; a restarted one shows an empty chart until two samples are in.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use agentq_core::{
    queue::{self, QueueCounters, QueueName},
    shutdown::CancellationToken,
};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::layout;
use crate::ApiState;

/// Samples kept: ten minutes at the default interval.
pub const SAMPLES: usize = 120;

/// One reading of every queue's counters.
#[derive(Debug, Clone)]
struct Sample {
    at: DateTime<Utc>,
    counters: Vec<QueueCounters>,
}

/// The ring of recent samples.
#[derive(Debug, Default)]
pub struct Throughput {
    samples: Mutex<VecDeque<Sample>>,
}

/// Jobs/s of one queue between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// The end of the interval.
    pub at: DateTime<Utc>,
    /// Jobs that left the stream per second over it.
    pub per_sec: f64,
}

impl Throughput {
    /// Adds a sample, forgetting the oldest past [`SAMPLES`].
    fn record(&self, at: DateTime<Utc>, counters: Vec<QueueCounters>) {
        let mut samples = self
            .samples
            .lock()
            .expect("never poisoned: no panics inside");
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample { at, counters });
    }

    /// Per-interval rates of `queue`, oldest first.
    pub fn rates(&self, queue: QueueName) -> Vec<Rate> {
        let samples = self
            .samples
            .lock()
            .expect("never poisoned: no panics inside");
        let of = |s: &Sample| s.counters.iter().find(|c| c.queue == queue).copied();
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .filter_map(|(a, b)| {
                let (ca, cb) = (of(a)?, of(b)?);
                let secs = (b.at - a.at).num_milliseconds() as f64 / 1000.0;
                // A stream that was deleted and recreated restarts its counter.
                let added = cb.added.checked_sub(ca.added)?;
                let left = added as i64 - (cb.length as i64 - ca.length as i64);
                (secs > 0.0).then(|| Rate {
                    at: b.at,
                    per_sec: left.max(0) as f64 / secs,
                })
            })
            .collect()
    }
}

/// Samples every `--dashboard-sample-ms` until `shutdown`; a failed read is skipped (the
/// chart shows a gap, the next sample resumes).
pub async fn sample_loop(state: ApiState, shutdown: CancellationToken) {
    let every = Duration::from_millis(state.config.dashboard_sample_ms.max(100));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let mut conn = state.redis_conn.clone();
        match queue::queue_counters(&mut conn, &state.prefix).await {
            Ok(counters) => state.dashboard.throughput.record(Utc::now(), counters),
            Err(e) => tracing::debug!(error = %e, "dashboard: sampling queue counters failed"),
        }
    }
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;

/// A line chart of every queue's jobs/s over the ring's span, as inline SVG (no script).
pub fn chart(throughput: &Throughput, every: Duration) -> Markup {
    let series: Vec<(QueueName, Vec<Rate>)> = QueueName::ALL
        .into_iter()
        .map(|q| (q, throughput.rates(q)))
        .collect();
    let Some(first) = series
        .iter()
        .filter_map(|(_, r)| r.first())
        .map(|r| r.at)
        .min()
    else {
        return html! {
            p.empty { "Collecting samples: the chart starts after two readings, "
                (layout::millis(every.as_millis() as u64)) " apart." }
        };
    };
    let last = series
        .iter()
        .filter_map(|(_, r)| r.last())
        .map(|r| r.at)
        .max()
        .unwrap_or(first);
    let span = ((last - first).num_milliseconds() as f64 / 1000.0).max(1.0);
    let peak = series
        .iter()
        .flat_map(|(_, r)| r.iter().map(|r| r.per_sec))
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(peak);
    let x = |at: DateTime<Utc>| (at - first).num_milliseconds() as f64 / 1000.0 / span * WIDTH;
    let y = |v: f64| HEIGHT - v / top * HEIGHT;
    html! {
        figure.chart {
            svg viewBox=(format!("-40 -10 {} {}", WIDTH + 50.0, HEIGHT + 30.0)) role="img"
                aria-label="Jobs finished per second, per queue" {
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                line.axis x1="0" y1="0" x2="0" y2=(HEIGHT) {}
                line.grid x1="0" y1="0" x2=(WIDTH) y2="0" {}
                text.label x="-6" y="4" text-anchor="end" { (format_rate(top)) }
                text.label x="-6" y=(HEIGHT + 4.0) text-anchor="end" { "0" }
                text.label x="0" y=(HEIGHT + 18.0) { (layout::ago(first)) }
                text.label x=(WIDTH) y=(HEIGHT + 18.0) text-anchor="end" { "now" }
                @for (queue, rates) in &series {
                    @if rates.len() > 1 {
                        polyline class=(format!("series {}", queue.as_str())) fill="none"
                            points=(rates.iter().map(|r| format!("{:.1},{:.1}", x(r.at), y(r.per_sec))).collect::<Vec<_>>().join(" ")) {}
                    }
                }
            }
            figcaption {
                "Jobs finished per second, sampled every " (layout::millis(every.as_millis() as u64)) ": "
                @for (queue, rates) in &series {
                    span class=(format!("key {}", queue.as_str())) {
                        (queue.as_str()) " "
                        (rates.last().map_or("0".to_owned(), |r| format_rate(r.per_sec))) "/s"
                    }
                    " "
                }
            }
        }
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if v <= m * step {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

fn format_rate(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(turns_added: u64, turns_len: u64) -> Vec<QueueCounters> {
        vec![QueueCounters {
            queue: QueueName::Turns,
            added: turns_added,
            length: turns_len,
        }]
    }

    #[test]
    fn jobs_that_left_the_stream_per_second_are_added_minus_growth() {
        let t = Throughput::default();
        let t0 = Utc::now();
        t.record(t0, counters(0, 0));
        // 10 enqueued, none run.
        t.record(t0 + chrono::Duration::seconds(5), counters(10, 10));
        // 10 more enqueued, the stream is empty: 20 ran in 5 s.
        t.record(t0 + chrono::Duration::seconds(10), counters(20, 0));
        let rates: Vec<f64> = t
            .rates(QueueName::Turns)
            .iter()
            .map(|r| r.per_sec)
            .collect();
        assert_eq!(rates, vec![0.0, 4.0]);
        assert!(t.rates(QueueName::Mail).is_empty());
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let t = Throughput::default();
        let t0 = Utc::now();
        for i in 0..(SAMPLES as i64 + 10) {
            t.record(t0 + chrono::Duration::seconds(i), counters(i as u64, 0));
        }
        assert_eq!(t.rates(QueueName::Turns).len(), SAMPLES - 1);
    }

    #[test]
    fn the_chart_scale_rounds_up() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
    }
}
