//! The scenarios, one module each, in the order a run goes through them; and the ratios
//! between their figures (agentq against the ceiling and the peer).

mod archive;
mod ceiling;
mod digest;
mod first_event;
mod memory;
mod peer;
mod pickup;
mod queue;
mod recovery;
mod search;
mod tools;
mod turn_floor;
mod turns;

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::common::{Ctx, Row, n};

/// One scenario: its name for `--only`, what it measures (for `--help`), and its run.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(Ctx) -> BoxFuture<'static, anyhow::Result<Vec<Row>>>,
}

/// Every scenario, in run order.
pub static ALL: &[Scenario] = &[
    Scenario {
        name: "queue",
        about: queue::ABOUT,
        run: |ctx| Box::pin(queue::run(ctx)),
    },
    Scenario {
        name: "ceiling",
        about: ceiling::ABOUT,
        run: |ctx| Box::pin(ceiling::run(ctx)),
    },
    Scenario {
        name: "peer",
        about: peer::ABOUT,
        run: |ctx| Box::pin(peer::run(ctx)),
    },
    Scenario {
        name: "pickup",
        about: pickup::ABOUT,
        run: |ctx| Box::pin(pickup::run(ctx)),
    },
    Scenario {
        name: "turns",
        about: turns::ABOUT,
        run: |ctx| Box::pin(turns::run(ctx)),
    },
    Scenario {
        name: "turn_floor",
        about: turn_floor::ABOUT,
        run: |ctx| Box::pin(turn_floor::run(ctx)),
    },
    Scenario {
        name: "first_event",
        about: first_event::ABOUT,
        run: |ctx| Box::pin(first_event::run(ctx)),
    },
    Scenario {
        name: "tools",
        about: tools::ABOUT,
        run: |ctx| Box::pin(tools::run(ctx)),
    },
    Scenario {
        name: "recovery",
        about: recovery::ABOUT,
        run: |ctx| Box::pin(recovery::run(ctx)),
    },
    Scenario {
        name: "archive",
        about: archive::ABOUT,
        run: |ctx| Box::pin(archive::run(ctx)),
    },
    Scenario {
        name: "digest",
        about: digest::ABOUT,
        run: |ctx| Box::pin(digest::run(ctx)),
    },
    Scenario {
        name: "search",
        about: search::ABOUT,
        run: |ctx| Box::pin(search::run(ctx)),
    },
    Scenario {
        name: "memory",
        about: memory::ABOUT,
        run: |ctx| Box::pin(memory::run(ctx)),
    },
];

/// The scenario list for `--help`.
pub fn help() -> String {
    let mut out = String::from("Scenarios (all run unless --only names some):\n");
    for s in ALL {
        out.push_str(&format!("\n  {:<12} {}\n", s.name, s.about));
    }
    out.push_str(
        "\nRatios printed at the end: agentq / ceiling for the drain (the median over the \
         ceiling scenario's interleaved pairs: `ceiling` alone gives it); agentq / ceiling for \
         the enqueue and agentq / peer (defaults, tuned), from the queue, ceiling and peer \
         scenarios run together; agentq turns / turn floor, from the turns and turn_floor \
         scenarios.\n",
    );
    out
}

/// Figure keys the scenarios record.
pub mod keys {
    pub const QUEUE_DRAIN: &str = "queue.drain";
    pub const QUEUE_ENQUEUE: &str = "queue.enqueue";
    pub const QUEUE_DRAIN_SMALL: &str = "queue.drain_small";
    pub const CEILING_DRAIN: &str = "ceiling.drain";
    pub const CEILING_ENQUEUE: &str = "ceiling.enqueue";
    /// The median of agentq / ceiling over bursts run in interleaved pairs.
    pub const CEILING_PAIRED: &str = "ceiling.paired_ratio";
    pub const PEER_DEFAULT_SMALL: &str = "peer.default.drain_small";
    pub const PEER_TUNED_SMALL: &str = "peer.tuned.drain_small";
    pub const PEER_DEFAULT_BIG: &str = "peer.default.drain_big";
    pub const PEER_TUNED_BIG: &str = "peer.tuned.drain_big";
    pub const PEER_ENQUEUE: &str = "peer.tuned.enqueue";
    pub const TURNS_ONE: &str = "turns.one_process";
    pub const TURN_FLOOR: &str = "turn_floor";
}

/// The ratio rows that the recorded figures allow.
pub fn ratios(figures: &HashMap<&'static str, f64>) -> Vec<Row> {
    use keys::*;
    let mut rows = Vec::new();
    // Bursts run beside each other: the median of their ratios is the figure the target is
    // read on; the medians of the separate runs are shown beside it.
    if let Some(&paired) = figures.get(CEILING_PAIRED) {
        rows.push(Row::new(
            "ratio",
            "agentq / ceiling, drain 100,000 (median of the `ceiling` scenario's interleaved pairs)",
            match (figures.get(QUEUE_DRAIN), figures.get(CEILING_DRAIN)) {
                (Some(&a), Some(&b)) if b > 0.0 => format!(
                    "{paired:.2}× (the separate medians: {} / {} per s = {:.2}×)",
                    n(a),
                    n(b),
                    a / b
                ),
                _ => format!("{paired:.2}×"),
            },
            ">= 2/3 of the ceiling",
            Some(paired >= 2.0 / 3.0),
        ));
    }
    let mut ratio = |what: &str, top: &str, bottom: &str, target: &str, min: Option<f64>| {
        if let (Some(&a), Some(&b)) = (figures.get(top), figures.get(bottom)) {
            let (measured, met) = if b > 0.0 {
                let r = a / b;
                (
                    format!("{r:.2}× ({} / {} per s)", n(a), n(b)),
                    min.map(|m| r >= m),
                )
            } else {
                (
                    format!("peer drained nothing ({} vs 0 per s)", n(a)),
                    min.map(|_| true),
                )
            };
            rows.push(Row::new("ratio", what, measured, target, met));
        }
    };
    ratio(
        "agentq / ceiling, enqueue",
        QUEUE_ENQUEUE,
        CEILING_ENQUEUE,
        "-",
        None,
    );
    ratio(
        "agentq / apalis-redis defaults, drain 100,000",
        QUEUE_DRAIN,
        PEER_DEFAULT_BIG,
        ">= 1.2× every peer",
        Some(1.2),
    );
    ratio(
        "agentq / apalis-redis tuned, drain 100,000",
        QUEUE_DRAIN,
        PEER_TUNED_BIG,
        ">= 1.2× every peer",
        Some(1.2),
    );
    ratio(
        "agentq / apalis-redis defaults, drain of a burst it can drain",
        QUEUE_DRAIN_SMALL,
        PEER_DEFAULT_SMALL,
        ">= 1.2× every peer",
        Some(1.2),
    );
    ratio(
        "agentq / apalis-redis tuned, drain of a burst it can drain",
        QUEUE_DRAIN_SMALL,
        PEER_TUNED_SMALL,
        ">= 1.2× every peer",
        Some(1.2),
    );
    ratio(
        "agentq / apalis-redis tuned, enqueue",
        QUEUE_ENQUEUE,
        PEER_ENQUEUE,
        "-",
        None,
    );
    ratio(
        "agentq turns (1 worker process) / turn floor",
        TURNS_ONE,
        TURN_FLOOR,
        "-",
        None,
    );
    rows
}
