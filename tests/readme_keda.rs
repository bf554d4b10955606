//! The README's scaling advice cannot drift from the code (issue #16 item 5): the KEDA
//! examples name the streams and the consumer group the queue really uses, and every
//! metric the "Scaling workers" section tells an autoscaler to read is in the metrics
//! table and exported by a running API.

mod support;

use std::collections::BTreeSet;

use agentq_core::queue::{QueueKeys, QueueName};
use support::app::TestApp;

/// The README's "Scaling workers" section.
fn scaling_section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let start = readme
        .find("## Scaling workers")
        .expect("README has a Scaling workers section");
    let end = start + readme[start..].find("\n## Metrics").expect("then Metrics");
    readme[start..end].to_owned()
}

/// The values of every YAML `key: value` line of `text` (quotes removed).
fn yaml_values(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(&format!("{key}:")))
        .map(|value| {
            value
                .split('#')
                .next()
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

#[test]
fn the_keda_examples_name_the_streams_and_group_the_queue_uses() {
    let section = scaling_section();
    let turns = QueueKeys::new("agentq", QueueName::Turns);
    let tools = QueueKeys::new("agentq", QueueName::Tools);
    assert_eq!(
        yaml_values(&section, "stream"),
        BTreeSet::from([turns.stream.clone(), tools.stream.clone()]),
        "the KEDA triggers' streams"
    );
    assert_eq!(
        yaml_values(&section, "consumerGroup"),
        BTreeSet::from([turns.group.clone()]),
        "the KEDA triggers' consumer group"
    );
    assert_eq!(turns.group, tools.group, "one group name for every queue");
    // The prose names them too, and the cluster form uses the same.
    for name in [&turns.stream, &tools.stream, &turns.group] {
        assert!(
            section.contains(&format!("`{name}`")),
            "the text names {name}"
        );
    }
    assert!(section.contains("type: redis-cluster-streams"));
    assert!(section.contains("type: redis-streams"));
}

#[sqlx::test]
async fn the_metrics_an_autoscaler_reads_are_documented_and_exported(pool: sqlx::PgPool) {
    let section = scaling_section();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // Every metric name in code spans, without its labels (`agentq_x{queue="turns"}`).
    let named: BTreeSet<&str> = section
        .split('`')
        .filter(|span| span.starts_with("agentq_"))
        .map(|span| {
            let end = span
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(span.len());
            &span[..end]
        })
        .collect();
    for metric in [
        "agentq_queue_pending",
        "agentq_queue_lag",
        "agentq_queue_oldest_pending_seconds",
    ] {
        assert!(named.contains(metric), "the section names {metric}");
    }
    let app = TestApp::start_api_only(pool).await;
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    let exported = response.text().await.unwrap();
    for metric in named {
        assert!(
            readme.contains(&format!("| `{metric}` |")),
            "{metric} is in the README's metrics table"
        );
        if metric.starts_with("agentq_queue_") {
            assert!(
                exported.contains(&format!("{metric}{{queue=\"turns\"}}")),
                "{metric} is exported for turns:\n{exported}"
            );
        }
    }
    app.stop().await;
}
