//! `search`: latency of the chat list's search (`GET /api/v1/chats?q=`) per filter over a
//! large table: N idle chats of 10 owners (so the searching owner has N/10 of them), the
//! API in this process, requests one after another.

use std::time::{Duration, Instant};

use agentq_core::{
    auth::generate_token,
    config::{self, ApiConfig},
    domain::OrganizationRole,
    services::Services,
};
use chrono::{TimeZone, Utc};

use crate::common::{Ctx, Row, Stack, http, ms, n, p50_p99};

pub const ABOUT: &str = "GET /chats?q= p50/p99 per filter (none, a rare title and a common one, \
status, archived, repo, pr_status, client_type, label) over 100,000 chats (quick, 50 requests a filter) or \
1,000,000 (full, 200), of 10 owners, API in the bench process; first 16 concurrent unmeasured \
requests (a warm database pool, as in a running API) and one unmeasured request per filter. \
Target: p99 <= 20 ms.";

/// Concurrent unmeasured requests before the first measured one (the pool's connections).
const WARM_UP: usize = 16;

const FILTERS: &[&str] = &[
    "",
    // Rare: 11 of the owner's chats, each title sharing `chat ` with every other.
    "title:\"chat 4242\"",
    // Common: about one in nine of the owner's chats (`chat 1`, `chat 11`, `chat 1xx1`...).
    "title:\"chat 1\"",
    "status:waiting",
    "status:error,requires_action",
    "archived:any",
    "archived:true",
    "repo:acme/api",
    "pr_status:none",
    "client_type:api",
    "label:team=infra",
];

pub async fn run(ctx: Ctx) -> anyhow::Result<Vec<Row>> {
    let chats: i64 = ctx.pick(100_000, 1_000_000);
    let samples = ctx.pick(50, 200);
    let db = ctx.fresh_db("search", 20).await?;
    let prefix = ctx.prefix("s");
    // Seeded first: the seed inserts the `bench` organization the stack then finds.
    Services::new(db.pool.clone(), ctx.redis_url(), &prefix, 0)?
        .store
        .seed_idle_chats(
            10,
            chats,
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
        )
        .await?;
    let stack = Stack::new(&ctx, &db, &prefix, Some(config::defaults::<ApiConfig>())).await?;
    let store = &stack.services.store;
    let owner = store.ensure_user("owner1@bench.test", false).await?;
    let org = store.ensure_organization("bench").await?;
    store
        .add_member(org, owner, &[OrganizationRole::AgentsAccess])
        .await?;
    let token = generate_token();
    store
        .create_api_token(owner, "bench-search", &token.sha256, None)
        .await?;
    let client = http();
    let url = format!("{}/api/v1/chats", stack.base());
    // The API's database pool opens connections as requests need them; a new connection's
    // first statements cost about 100 ms here (measured: one sample of that size per run,
    // at a random place in the first filter, with no statement over 40 ms in PostgreSQL's
    // log). A running API's pool is warm: a burst of unmeasured requests opens it first.
    let warm = (0..WARM_UP).map(|_| {
        client
            .get(&url)
            .bearer_auth(&token.secret)
            .timeout(Duration::from_secs(10))
            .send()
    });
    for response in futures::future::join_all(warm).await {
        anyhow::ensure!(
            response?.status() == 200,
            "GET /chats failed while warming up"
        );
    }
    let mut rows = Vec::new();
    for filter in FILTERS {
        let mut took = Vec::with_capacity(samples);
        let mut listed = 0;
        // One request more than measured: the first of a filter plans its statement.
        for sample in 0..=samples {
            let started = Instant::now();
            let response = client
                .get(reqwest::Url::parse_with_params(&url, &[("q", filter)])?)
                .bearer_auth(&token.secret)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == 200,
                "GET /chats?q={filter} answered {}",
                response.status()
            );
            let page: serde_json::Value = response.json().await?;
            if sample > 0 {
                took.push(started.elapsed());
            }
            listed = page["chats"]
                .as_array()
                .or_else(|| page["items"].as_array())
                .or_else(|| page.as_array())
                .map_or(0, |c| c.len());
        }
        let (_, p99, text) = p50_p99(&mut took);
        rows.push(Row::new(
            "search",
            format!(
                "GET /chats?q={} over {} chats",
                if filter.is_empty() { "(none)" } else { filter },
                n(chats as f64)
            ),
            format!("{text}; {listed} listed"),
            "p99 <= 20 ms",
            Some(ms(p99) <= 20.0),
        ));
    }
    Ok(rows)
}
