//! The real agentq API and worker, in this test process, on a random port, over the test's
//! database and a unique Redis prefix.

use std::time::Duration;

use agentq_core::{
    auth::generate_token,
    config::{
        self, ApiConfig, MailConfig, ProviderConfig, ProviderKind, QueueConfig, WorkerConfig,
    },
    domain::OrganizationRole,
    services::Services,
    shutdown::CancellationToken,
};
use agentq_worker::WorkerHandle;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{delete_keys, eventually, fake_openai::FakeOpenAi, redis_url, unique_prefix};

/// A running app.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A token of a user with agents-access in one organization.
    pub token: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The app's shared services (store, producer, ...).
    pub services: Services,
    /// The fake model endpoint.
    pub fake: FakeOpenAi,
    /// Redis key prefix of this test.
    pub prefix: String,
    /// The hex `AGENTQ_SECRET_KEY` the app's services seal secrets with.
    pub secret_key: String,
    /// Queue settings used by workers started with [`TestApp::start_worker`].
    pub queue: QueueConfig,
    /// Worker settings used by workers started with [`TestApp::start_worker`].
    pub worker: WorkerConfig,
    /// Seconds the provider gets to send its first byte.
    pub provider_startup_timeout_secs: u64,
    /// Last changes to the provider settings of workers started from now on (limits,
    /// headers, base URL).
    pub tune_provider: std::sync::Arc<dyn Fn(&mut ProviderConfig) + Send + Sync>,
    redis_url: String,
    /// The database's URL when it is not the shared server's (a private PostgreSQL).
    own_database_url: Option<String>,
    shutdown: CancellationToken,
    workers: Vec<(CancellationToken, WorkerHandle)>,
    /// The API's cache of access (ARCHITECTURE.md §11.3), for [`TestApp::access_change`].
    access: agentq_api::access_cache::AccessCache,
}

impl TestApp {
    /// Starts the API and one worker.
    pub async fn start(pool: PgPool) -> Self {
        let mut app = Self::start_api_only(pool).await;
        app.start_worker().await;
        app
    }

    /// Starts the API without a worker (jobs wait in the queue).
    pub async fn start_api_only(pool: PgPool) -> Self {
        Self::start_api_only_with(pool, |_| {}).await
    }

    /// [`TestApp::start_api_only`] with API settings changed by `configure` (after the test
    /// defaults: a 64 KiB body limit, 1 s keep-alives).
    pub async fn start_api_only_with(pool: PgPool, configure: impl FnOnce(&mut ApiConfig)) -> Self {
        Self::start_api_on(pool, redis_url(), configure).await
    }

    /// [`TestApp::start_api_only_with`] over the Redis at `redis_url` (a private server of
    /// the test's, when it counts or breaks connections).
    pub async fn start_api_on(
        pool: PgPool,
        redis_url: String,
        configure: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let fake = FakeOpenAi::start(Duration::from_millis(5)).await;
        let prefix = unique_prefix();
        let mut queue: QueueConfig = config::defaults();
        queue.lease_secs = 2;
        let secret_key = agentq_core::secrets::SecretBox::generate_key_hex();
        let secrets = agentq_core::secrets::SecretBox::from_hex(&secret_key).unwrap();
        let services = Services::new(pool, &redis_url, &prefix, 0)
            .unwrap()
            .with_secrets(Some(secrets));
        let mut worker: WorkerConfig = config::defaults();
        worker.queues = vec!["turns".into(), "tools".into()];
        worker.concurrency = 16;
        worker.turn_lease_secs = 3;
        worker.interrupt_poll_ms = 100;
        // Admin changes to providers and models reach the next step at once.
        worker.model_cache_ms = 0;
        // Most tests count the provider's requests: a title call would be one more. The
        // title tests turn it on.
        worker.generate_titles = false;
        let token = create_user(&services, "alice@example.com", "acme").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut api: ApiConfig = config::defaults();
        api.max_body_bytes = 64 * 1024;
        api.sse_keepalive_secs = 1;
        configure(&mut api);
        let shutdown = CancellationToken::new();
        let state = agentq_api::ApiState::new(&services, api);
        let access = state.access.clone();
        tokio::spawn(agentq_api::serve(state, listener, shutdown.clone()));
        Self {
            access,
            base,
            token,
            client: reqwest::Client::new(),
            services,
            fake,
            prefix,
            secret_key,
            queue,
            worker,
            provider_startup_timeout_secs: 60,
            tune_provider: std::sync::Arc::new(|_| {}),
            redis_url,
            own_database_url: None,
            shutdown,
            workers: Vec::new(),
        }
    }

    /// [`TestApp::start_api_on`] over the (migrated here) database at `database_url`: a
    /// private PostgreSQL of the test's, which worker and API processes reach at the same
    /// URL.
    pub async fn start_api_on_database(database_url: String, redis_url: String) -> Self {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&database_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {database_url}: {e}"));
        agentq_core::db::migrate(&pool).await.unwrap();
        let mut app = Self::start_api_on(pool, redis_url, |_| {}).await;
        app.own_database_url = Some(database_url);
        app
    }

    /// Runs `change`, a write to tokens, users, memberships or spend limits made beside the
    /// API (through the store, as the CLI or another API process would), and waits until
    /// the API was told of it (its cache emptied since), at most 5 s: a change made there
    /// reaches the API through PostgreSQL's notification, in milliseconds, not at once.
    /// Notifications of earlier changes are let arrive first (no emptying for 50 ms), so
    /// the one awaited is this change's or a later one.
    pub async fn access_change<T>(&self, change: impl std::future::Future<Output = T>) -> T {
        let mut before = self.access.emptied();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.access.emptied();
            if now == before {
                break;
            }
            before = now;
        }
        let out = change.await;
        eventually(
            Duration::from_secs(5),
            "the API told of the change",
            || async { (self.access.emptied() > before).then_some(()) },
        )
        .await;
        out
    }

    /// Waits (at most 5 s) until the API keeps what it reads of access: it listens for
    /// changes (ARCHITECTURE.md §11.3).
    pub async fn access_cache_listening(&self) {
        eventually(
            Duration::from_secs(5),
            "the API listening for access changes",
            || async { self.access.is_listening().then_some(()) },
        )
        .await;
    }

    /// The Redis the app runs on (the shared server, a private one, or a cluster).
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The URL of this test's database (for worker processes).
    pub fn database_url(&self) -> String {
        if let Some(own) = &self.own_database_url {
            return own.clone();
        }
        let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
        let name = self
            .services
            .store
            .pool()
            .connect_options()
            .get_database()
            .unwrap()
            .to_owned();
        let base = server
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(server);
        format!("{base}/{name}")
    }

    /// The provider settings pointing at the fake.
    pub fn provider_config(&self) -> ProviderConfig {
        let mut provider: ProviderConfig = config::defaults();
        provider.kind = ProviderKind::Openai;
        provider.openai_base_url = self.fake.base_url.clone();
        provider.openai_api_key = Some("sk-test-secret".into());
        provider.model = "fake-gpt".into();
        provider.startup_timeout_secs = self.provider_startup_timeout_secs;
        (self.tune_provider)(&mut provider);
        provider
    }

    /// Starts the scheduler's loops (recovery, and maintenance on its cron) in this process.
    pub fn start_recovery(&self, mut config: agentq_scheduler::SchedulerConfig) {
        config.interval_secs = config.interval_secs.max(1);
        tokio::spawn(agentq_scheduler::run(
            self.services.store.clone(),
            self.services.producer.clone(),
            self.services.events.clone(),
            config,
            std::sync::Arc::new(agentq_scheduler::SystemClock),
            self.shutdown.child_token(),
        ));
    }

    /// Starts one more in-process worker consuming `turns` and `tools` (its own consumer name).
    pub async fn start_worker(&mut self) {
        let engines =
            agentq_worker::engine(&self.services, &self.provider_config(), &self.worker).unwrap();
        let stop = self.shutdown.child_token();
        let handle = agentq_worker::start(
            &engines,
            &self.services.redis,
            &self.prefix,
            &self.worker,
            &self.queue,
            stop.clone(),
        )
        .unwrap();
        self.workers.push((stop, handle));
    }

    /// Starts an in-process worker that consumes only the `mail` queue with `mail`.
    pub async fn start_mail_worker(&mut self, mail: &MailConfig) {
        let sender = agentq_worker::MailSender::from_config(self.services.store.clone(), mail)
            .unwrap()
            .expect("a mail transport is configured");
        let engines = agentq_worker::engine(&self.services, &self.provider_config(), &self.worker)
            .unwrap()
            .with_mail(Some(sender));
        let mut worker = self.worker.clone();
        worker.queues = vec!["mail".into()];
        let stop = self.shutdown.child_token();
        let handle = agentq_worker::start(
            &engines,
            &self.services.redis,
            &self.prefix,
            &worker,
            &self.queue,
            stop.clone(),
        )
        .unwrap();
        self.workers.push((stop, handle));
    }

    /// Turns every per-user rate limit off, for tests whose one user does more than a
    /// person would (hundreds of chats or streams); the limits have tests of their own.
    pub async fn lift_rate_limits(&self) {
        let owner = create_owner(&self.services, "limits-owner@example.com").await;
        self.configure_site(
            &owner,
            serde_json::json!({"chats_per_minute": 0, "messages_per_minute": 0, "stream_connects_per_minute": 0}),
        )
        .await;
    }

    /// `POST` JSON with the default token.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post_as(&self.token, path, body).await
    }

    /// `POST` JSON with `token`.
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    /// `PUT` JSON with `token`.
    pub async fn put_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, token, path, Some(body))
            .await
    }

    /// `PATCH` JSON with `token`.
    pub async fn patch_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, token, path, Some(body))
            .await
    }

    /// `GET` with `token`.
    pub async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, token, path, None).await
    }

    /// The id of the user with `email` (who must exist).
    pub async fn user_id(&self, email: &str) -> Uuid {
        self.services
            .store
            .find_user_by_email(email)
            .await
            .unwrap()
            .unwrap()
    }

    /// DELETE `path` as the holder of `token`; the status.
    pub async fn delete_as(&self, token: &str, path: &str) -> StatusCode {
        self.send(reqwest::Method::DELETE, token, path, None)
            .await
            .0
    }

    /// Sends `method` with `token` and, if given, `body` as JSON; the status and the JSON
    /// reply (`null` if none). Every request helper of the test kit ends here.
    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Changes site settings as the site owner `owner_token` (asserts it worked).
    pub async fn configure_site(&self, owner_token: &str, settings: Value) {
        let (status, body) = self
            .put_as(owner_token, "/api/v1/admin/config", settings)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Creates a chat as `token`'s user, titled `title`, `waiting` and last active at `at`:
    /// its first turn is interrupted before any worker takes it (through the API, so the
    /// app must run no turn worker), then its activity is backdated.
    pub async fn create_idle_chat(
        &self,
        token: &str,
        title: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Uuid {
        let (status, body) = self
            .post_as(
                token,
                "/api/v1/chats",
                serde_json::json!({ "message": title, "title": title }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        let (status, body) = self
            .post_as(token, &format!("/api/v1/chats/{id}/interrupt"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "interrupted", "no worker may take the turn");
        self.services
            .store
            .backdate_chat_activity(id, at)
            .await
            .unwrap();
        id
    }

    /// Runs the scheduler's maintenance tick `tick_at` (`None`: another runner had it).
    pub async fn maintenance_tick(
        &self,
        tick_at: chrono::DateTime<chrono::Utc>,
    ) -> Option<agentq_scheduler::maintenance::MaintenanceOutcome> {
        agentq_scheduler::maintenance::run_tick(
            &self.services.store,
            &self.services.producer,
            tick_at,
            "test",
        )
        .await
        .unwrap()
    }

    /// A provider of kind `openai-compat` on this test's fake, named `name`, and one model
    /// `model` on it with the extra `fields` (`context_limit`, prices, ...), created by the
    /// site owner `owner`; returns the model's id.
    pub async fn model_on_fake(&self, owner: &str, model: &str, fields: Value) -> String {
        let (status, provider) = self
            .post_as(
                owner,
                "/api/v1/admin/providers",
                serde_json::json!({"name": format!("Fake for {model}"), "kind": "openai-compat",
                                   "base_url": self.fake.base_url, "api_key": "sk-fake"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{provider}");
        let mut body = serde_json::json!({"provider_id": provider["id"], "name": model});
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        let (status, created) = self.post_as(owner, "/api/v1/admin/models", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// Turns debug runs on for the site (as `owner`) and for the default user.
    pub async fn enable_debug_runs(&self, owner: &str) {
        self.configure_site(owner, serde_json::json!({"debug_logging_enabled": true}))
            .await;
        let (status, body) = self
            .put_as(
                &self.token,
                "/api/v1/users/me/preferences",
                serde_json::json!({"debug_logging_enabled": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Starts recovery every second (it re-sends due emails), maintenance never.
    pub fn start_recovery_every_second(&self) {
        let mut scheduler: agentq_scheduler::SchedulerConfig = config::defaults();
        scheduler.interval_secs = 1;
        scheduler.maintenance_cron = "0 0 1 1 *".parse().unwrap();
        self.start_recovery(scheduler);
    }

    /// `GET` with the default token.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_as(&self.token, path).await
    }

    /// Creates a chat and returns its id.
    pub async fn create_chat(&self, message: &str) -> Uuid {
        let (status, body) = self
            .post("/api/v1/chats", serde_json::json!({ "message": message }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }
    /// Adds to the chat's conversation a user message this build cannot read (a kind of part
    /// a newer version would write), answering the chat's latest turn.
    pub async fn add_unreadable_message(&self, chat_id: Uuid) {
        sqlx::query(
            "INSERT INTO chat_messages (id, chat_id, turn_id, role, content)
             VALUES ($1, $2, $3, 'user', '[{\"type\": \"from_a_newer_version\"}]')",
        )
        .bind(Uuid::now_v7())
        .bind(chat_id)
        .bind(self.latest_turn(chat_id).await)
        .execute(self.services.store.pool())
        .await
        .unwrap();
    }

    /// The chat's latest turn (by `seq`): a new chat's first, queued.
    pub async fn latest_turn(&self, chat_id: Uuid) -> Uuid {
        sqlx::query_scalar("SELECT id FROM chat_turns WHERE chat_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(chat_id)
            .fetch_one(self.services.store.pool())
            .await
            .unwrap()
    }

    /// The chat's messages, oldest first, every page of them (pages are bounded in bytes
    /// as well as count, so a large message can end a page early).
    pub async fn messages(&self, chat_id: Uuid) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let (status, body) = self
                .get(&format!(
                    "/api/v1/chats/{chat_id}/messages?limit=1000{after}"
                ))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            all.extend(body["messages"].as_array().unwrap().iter().cloned());
            match body["next_after_id"].as_str() {
                Some(next) => after = format!("&after_id={next}"),
                None => return all,
            }
        }
    }

    /// Waits until the chat has `count` messages and is `waiting`.
    pub async fn wait_until_answered(
        &self,
        chat_id: Uuid,
        count: usize,
        limit: Duration,
    ) -> Vec<Value> {
        eventually(limit, "the chat to be answered", || async {
            let (_, chat) = self.get(&format!("/api/v1/chats/{chat_id}")).await;
            if chat["status"] != "waiting" {
                return None;
            }
            let messages = self.messages(chat_id).await;
            (messages.len() >= count).then_some(messages)
        })
        .await
    }

    /// The chat's events, from the start of its stream, until `stop` returns true for one
    /// (included) or `limit` passes.
    pub async fn events_until(
        &self,
        chat_id: Uuid,
        limit: std::time::Duration,
        stop: impl Fn(&super::sse::Received) -> bool,
    ) -> Vec<super::sse::Received> {
        super::sse::read_until(
            &self.client,
            &self.stream_url(chat_id),
            &self.token,
            None,
            limit,
            stop,
        )
        .await
    }

    /// The chat's SSE URL.
    pub fn stream_url(&self, chat_id: Uuid) -> String {
        format!("{}/api/v1/chats/{chat_id}/stream", self.base)
    }

    /// Starts shutting down (API and workers) without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops workers and the API, and deletes this test's Redis keys.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for (_, handle) in self.workers.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), handle.join())
                .await
                .expect("workers drain within 10 s of shutdown");
        }
        delete_keys(&self.redis_url, &self.prefix).await;
    }
}

/// Creates a site owner and returns a token.
pub async fn create_owner(services: &Services, email: &str) -> String {
    let store = &services.store;
    let user = store.ensure_user(email, true).await.unwrap();
    let token = generate_token();
    store
        .create_api_token(user, "test", &token.sha256, None)
        .await
        .unwrap();
    token.secret
}

/// Creates a user with agents-access in `org` and returns a token.
pub async fn create_user(services: &Services, email: &str, org: &str) -> String {
    let store = &services.store;
    let org_id = store.ensure_organization(org).await.unwrap();
    let user = store.ensure_user(email, false).await.unwrap();
    store
        .add_member(org_id, user, &[OrganizationRole::AgentsAccess])
        .await
        .unwrap();
    let token = generate_token();
    store
        .create_api_token(user, "test", &token.sha256, None)
        .await
        .unwrap();
    token.secret
}

/// What a store-level create of a chat with one text message needs, every option at its
/// default (no title given, no key, the spend limit read by the store).
pub fn new_chat(owner_id: Uuid, organization_id: Uuid, text: &str) -> agentq_core::domain::NewChat {
    agentq_core::domain::NewChat {
        owner_id,
        organization_id,
        title: String::new(),
        client_type: agentq_core::domain::ClientType::Api,
        first_message: vec![agentq_core::domain::MessagePart::Text { text: text.into() }],
        file_ids: vec![],
        dynamic_tools: vec![],
        model_config_id: None,
        labels: Default::default(),
        instructions: None,
        mcp_server_ids: None,
        plan_mode: None,
        reasoning_effort: None,
        spend_checked: false,
        idempotency: None,
    }
}

/// Mail settings that send to the SMTP server at `smtp_url`, retrying after about a second.
pub fn mail_config(smtp_url: &str) -> MailConfig {
    let mut mail: MailConfig = config::defaults();
    mail.smtp_url = Some(smtp_url.into());
    mail.base_url = "https://agents.example.com".into();
    mail.from = "agentq <noreply@agents.example.com>".into();
    mail.retry_base_secs = 1;
    mail.timeout_secs = 5;
    mail
}

/// Serves one more API over `services` with `api` settings on a random port, as another
/// replica would (same database, same Redis prefix); returns its base URL. It stops when
/// `shutdown` is cancelled.
pub async fn serve_api(services: &Services, api: ApiConfig, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = agentq_api::ApiState::new(services, api);
    tokio::spawn(agentq_api::serve(state, listener, shutdown));
    base
}
