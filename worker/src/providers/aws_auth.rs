//! Who a Bedrock request is from: a stored bearer token (a Bedrock API key, sent as
//! `Authorization: Bearer`), or, for a provider stored without a key, the worker's own AWS
//! credentials signed onto the request with SigV4.
//!
//! The worker's credentials and region come from the standard AWS chain (`aws-config`,
//! loaded once per process): environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`), the shared profile files (`AWS_PROFILE`, SSO,
//! `credential_process`), web identity (EKS), ECS task roles and EC2 instance roles
//! (IMDSv2). Credentials are reused until five minutes before they expire (at most five
//! minutes when they have no expiry), so a turn does not ask the chain each step.
//!
//! Why `aws-config` rather than a chain of our own: it is the chain every AWS tool follows,
//! including SSO, web identity and credential processes, which a small chain would leave
//! out; it adds 17 crates over `aws-sigv4` alone (see `worker/Cargo.toml`), and signing
//! stays on the adapters' shared reqwest client and bounded read loop. The SDK client
//! (`aws-sdk-bedrockruntime`) is not used.

use std::time::{Duration, Instant, SystemTime};

use agentq_core::{ChatError, ChatErrorKind};
use aws_credential_types::{Credentials, provider::ProvideCredentials};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use tokio::sync::{Mutex, OnceCell};

use super::errors::{config_error, with_causes};

/// The service name Bedrock's runtime signs under.
const SIGNING_NAME: &str = "bedrock";

/// How long credentials without an expiry are reused.
const REUSE_WITHOUT_EXPIRY: Duration = Duration::from_secs(300);

/// How long before their expiry credentials are fetched anew.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// The worker's AWS configuration, loaded at the first Bedrock request that needs it.
static CHAIN: OnceCell<aws_config::SdkConfig> = OnceCell::const_new();

/// The last credentials the chain gave, and when.
static CACHED: Mutex<Option<(Credentials, Instant)>> = Mutex::const_new(None);

async fn chain() -> &'static aws_config::SdkConfig {
    CHAIN
        .get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load())
        .await
}

/// The region of the worker's AWS chain (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile,
/// the instance's), if any.
pub(super) async fn chain_region() -> Option<String> {
    chain().await.region().map(|r| r.as_ref().to_owned())
}

/// The worker's AWS credentials, from the cache or the chain.
pub(super) async fn chain_credentials(provider: &str) -> Result<Credentials, ChatError> {
    let mut cached = CACHED.lock().await;
    if let Some((credentials, fetched)) = cached.as_ref()
        && still_fresh(credentials, *fetched)
    {
        return Ok(credentials.clone());
    }
    let missing = |detail: String| {
        ChatError::new(
            ChatErrorKind::MissingKey,
            format!(
                "{provider} has no stored key and the worker found no AWS credentials \
                 (environment, profile, or a task or instance role)."
            ),
        )
        .with_provider(provider)
        .with_detail(detail)
    };
    let source = chain()
        .await
        .credentials_provider()
        .ok_or_else(|| missing("no credential source is configured".into()))?;
    let credentials = source
        .provide_credentials()
        .await
        .map_err(|e| missing(with_causes(&e)))?;
    *cached = Some((credentials.clone(), Instant::now()));
    Ok(credentials)
}

fn still_fresh(credentials: &Credentials, fetched: Instant) -> bool {
    match credentials.expiry() {
        Some(expiry) => expiry
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left > EXPIRY_MARGIN),
        None => fetched.elapsed() < REUSE_WITHOUT_EXPIRY,
    }
}

/// The headers that sign a `POST` of `body` to `url` carrying `headers` for `region`:
/// `authorization`, `x-amz-date` and, with temporary credentials, `x-amz-security-token`.
pub(super) fn sigv4_headers(
    provider: &str,
    credentials: Credentials,
    region: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, ChatError> {
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| config_error(provider, format!("cannot sign the request: {e}")))?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| config_error(provider, format!("cannot sign the request: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| config_error(provider, format!("cannot sign the request: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}
