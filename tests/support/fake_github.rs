//! A fake GitHub Enterprise REST API on 127.0.0.1: a real axum server under `/api/v3`
//! that answers `GET /repos/{owner}/{repo}/pulls/{number}` with the pull requests a test
//! sets (404 for others), records every request with its headers, and can be told to
//! answer the next requests with something else (a 403 rate limit, a 429, a 500).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct GithubRequest {
    /// The path, `/api/v3/repos/acme/api/pulls/12`.
    pub path: String,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
    /// The `accept` header, if any.
    pub accept: Option<String>,
}

/// An answer other than the pull request.
#[derive(Debug, Clone)]
pub struct Canned {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    pulls: HashMap<(String, String, i64), Value>,
    next: VecDeque<Canned>,
    requests: Vec<GithubRequest>,
    delay: Duration,
}

/// The running fake.
pub struct FakeGithub {
    /// `http://127.0.0.1:<port>/api/v3`: the API base URL to configure.
    pub api_url: String,
    /// `http://127.0.0.1:<port>`: where its pull requests' web URLs live.
    pub web_url: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakeGithub {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let app = Router::new()
            .route(
                "/api/v3/repos/{owner}/{repo}/pulls/{number}",
                get(pull_request),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            api_url: format!("http://{addr}/api/v3"),
            web_url: format!("http://{addr}"),
            shared,
        }
    }

    /// The web URL of a pull request on this host.
    pub fn pr_url(&self, owner: &str, repo: &str, number: i64) -> String {
        format!("{}/{owner}/{repo}/pull/{number}", self.web_url)
    }

    /// Makes `GET .../pulls/{number}` answer 200 with this pull request: `state` `open` or
    /// `closed`, `merged` for a merged one.
    #[allow(clippy::too_many_arguments)]
    pub fn set_pull(
        &self,
        owner: &str,
        repo: &str,
        number: i64,
        title: &str,
        state: &str,
        merged: bool,
        draft: bool,
        (additions, deletions, changed_files): (i64, i64, i64),
    ) {
        let body = json!({
            "number": number,
            "html_url": self.pr_url(owner, repo, number),
            "title": title,
            "state": state,
            "merged": merged,
            "merged_at": if merged { json!("2026-12-03T10:00:00Z") } else { Value::Null },
            "draft": draft,
            "additions": additions,
            "deletions": deletions,
            "changed_files": changed_files,
            "user": {"login": "octocat"},
        });
        self.shared
            .lock()
            .unwrap()
            .pulls
            .insert((owner.into(), repo.into(), number), body);
    }

    /// Answers the next request, whatever it asks for, with `status`, `headers` and `body`
    /// (queued behind earlier ones).
    pub fn answer_next(&self, status: u16, headers: &[(&str, &str)], body: Value) {
        self.shared.lock().unwrap().next.push_back(Canned {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        });
    }

    /// Waits this long before each answer.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().unwrap().delay = delay;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<GithubRequest> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The paths requested so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }
}

async fn pull_request(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path((owner, repo, number)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (delay, canned, pull) = {
        let mut shared = shared.lock().unwrap();
        shared.requests.push(GithubRequest {
            path: format!("/api/v3/repos/{owner}/{repo}/pulls/{number}"),
            authorization: header("authorization"),
            accept: header("accept"),
        });
        let canned = shared.next.pop_front();
        let pull = shared.pulls.get(&(owner, repo, number)).cloned();
        (shared.delay, canned, pull)
    };
    tokio::time::sleep(delay).await;
    if let Some(canned) = canned {
        let mut response = (
            StatusCode::from_u16(canned.status).unwrap(),
            Json(canned.body),
        )
            .into_response();
        for (name, value) in canned.headers {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        return response;
    }
    match pull {
        Some(pull) => (
            [("x-ratelimit-remaining", "4999"), ("x-ratelimit-limit", "5000")],
            Json(pull),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})),
        )
            .into_response(),
    }
}
