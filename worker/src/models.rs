//! Resolving a chat's model to something callable: the chat's `model_config_id`, else the
//! default model, else the provider configured by flags. Provider clients are built from
//! their database row (key and headers decrypted here, nowhere else) and cached until the
//! row changes. Pricing turns usage into cost.
//!
//! Whose key a step sends is decided at every step for the turn's owner
//! ([`agentq_core::domain::KeyPolicy::choose`], ARCHITECTURE.md §3): the owner's own key is
//! read from the database each time the provider takes user keys (deleting it takes effect
//! at the next step), and a client built with it is cached under that user alone, so no
//! other user's turn is ever sent with it. A step without a usable key fails with
//! `missing_key` before any request is made.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use agentq_core::{
    ChatError, ChatErrorKind, StoreError,
    domain::{KeySource, ProviderKind, ReasoningEffort, Usage},
    secrets::SecretBox,
    store::{ResolvedModel, Store},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::providers::{
    AnthropicProvider, BedrockProvider, CacheTtl, EchoProvider, OpenAiProvider, Provider,
    ProviderLimits,
};

/// Micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pricing {
    /// Uncached input.
    pub input: i64,
    /// Output.
    pub output: i64,
    /// Cached input read.
    pub cache_read: i64,
    /// Input written to the cache.
    pub cache_write: i64,
}

impl Pricing {
    /// Cost of `usage` in micro-dollars, rounded up. `input_tokens` includes cached ones,
    /// which are priced at their own rates. Saturates at `i64::MAX` (the counts come from
    /// the provider) and prices below zero count as zero.
    pub fn cost_micros(&self, usage: &Usage) -> i64 {
        let uncached = usage
            .input_tokens
            .saturating_sub(usage.cache_read_tokens)
            .saturating_sub(usage.cache_write_tokens);
        let part = |tokens: u64, price: i64| {
            u128::from(tokens).saturating_mul(u128::try_from(price).unwrap_or(0))
        };
        let total = part(uncached, self.input)
            .saturating_add(part(usage.output_tokens, self.output))
            .saturating_add(part(usage.cache_read_tokens, self.cache_read))
            .saturating_add(part(usage.cache_write_tokens, self.cache_write));
        i64::try_from(total.div_ceil(1_000_000)).unwrap_or(i64::MAX)
    }
}

/// What a turn step calls.
#[derive(Clone)]
pub struct ModelTarget {
    /// The client.
    pub provider: Provider,
    /// Provider name for errors and debug runs.
    pub provider_name: String,
    /// Model name sent.
    pub model: String,
    /// Output cap.
    pub max_output_tokens: Option<u32>,
    /// Context window in tokens; `None`: unknown, so the worker never compacts for it.
    pub context_limit: Option<u32>,
    /// Pricing, when the model is configured as data.
    pub pricing: Option<Pricing>,
    /// Prompt-cache breakpoints and their lifetime; `None`: the model's `prompt_caching` is
    /// off (ARCHITECTURE.md §7).
    pub cache: Option<CacheTtl>,
    /// The model's `reasoning_effort` option (a chat's own level overrides it).
    pub reasoning_effort: Option<ReasoningEffort>,
}

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The database failed (the job is retried).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model cannot be used (the turn fails with this error).
    #[error("{0}")]
    Unusable(ChatError),
}

/// Resolves and caches.
pub struct ModelResolver {
    store: Store,
    secrets: Option<SecretBox>,
    fallback: ModelTarget,
    limits: ProviderLimits,
    row_ttl: Duration,
    clients: Mutex<HashMap<ClientKey, (ClientStamp, Provider)>>,
    rows: Mutex<HashMap<Option<Uuid>, CachedRow>>,
}

/// A cached client: its provider and whose key it carries (`None`: the provider's own).
type ClientKey = (Uuid, Option<Uuid>);

/// When a cached client's provider row and key last changed: a client is rebuilt when
/// either moves.
type ClientStamp = (DateTime<Utc>, DateTime<Utc>);

/// Clients cached at most (one per provider, plus one per user with a key of their own);
/// past it one entry makes room ([`evict_one`]), which costs rebuilding a client, never a
/// wrong key.
const MAX_CACHED_CLIENTS: usize = 1024;

/// Removes one cached client to make room: the user-key client whose key (or provider row)
/// changed longest ago, so the providers' own clients, which every other user's turns
/// share, stay; a provider's own only when no user-key client is left.
fn evict_one<V>(clients: &mut HashMap<ClientKey, (ClientStamp, V)>) {
    let oldest = |user_keys: bool| {
        clients
            .iter()
            .filter(|((_, owner), _)| owner.is_some() == user_keys)
            .min_by_key(|(_, (stamp, _))| *stamp)
            .map(|(key, _)| *key)
    };
    if let Some(victim) = oldest(true).or_else(|| oldest(false)) {
        clients.remove(&victim);
    }
}

/// The key a step is sent with, still sealed, and whose it is.
struct Credential {
    /// `Some(user)`: that user's own key; `None`: the provider's.
    owner: Option<Uuid>,
    /// nonce || ciphertext; `None`: no key (a kind that needs none).
    sealed: Option<Vec<u8>>,
    /// When the key last changed.
    changed_at: DateTime<Utc>,
}

/// A resolved row (or "no model configured") and when it was read.
type CachedRow = (std::time::Instant, Option<ResolvedModel>);

impl ModelResolver {
    /// A resolver falling back to the flag-configured provider and model; clients it builds
    /// from stored providers are bounded by `limits`; a resolved row is reused for `row_ttl`
    /// (`--model-cache-ms`).
    pub fn new(
        store: Store,
        secrets: Option<SecretBox>,
        fallback: ModelTarget,
        limits: ProviderLimits,
        row_ttl: Duration,
    ) -> Self {
        Self {
            store,
            secrets,
            fallback,
            limits,
            row_ttl,
            clients: Mutex::default(),
            rows: Mutex::default(),
        }
    }

    /// The target of a step of `user`'s chat whose model is `model_config_id`, with the
    /// key the provider's key policy gives that user.
    pub async fn resolve(
        &self,
        model_config_id: Option<Uuid>,
        user: Uuid,
    ) -> Result<ModelTarget, ResolveError> {
        let cached = self
            .rows
            .lock()
            .expect("rows lock")
            .get(&model_config_id)
            .filter(|(at, _)| at.elapsed() < self.row_ttl)
            .map(|(_, row)| row.clone());
        let row = match cached {
            Some(row) => row,
            None => {
                let row = self.store.resolve_model(model_config_id).await?;
                self.rows
                    .lock()
                    .expect("rows lock")
                    .insert(model_config_id, (std::time::Instant::now(), row.clone()));
                row
            }
        };
        let Some(row) = row else {
            return Ok(self.fallback.clone());
        };
        let unusable = |kind, message: String| {
            ResolveError::Unusable(
                ChatError::new(kind, message).with_provider(row.provider_name.clone()),
            )
        };
        if !row.provider_enabled {
            return Err(unusable(
                ChatErrorKind::ProviderDisabled,
                format!(
                    "{} is disabled by the site's administrators.",
                    row.provider_name
                ),
            ));
        }
        if !row.model.enabled {
            return Err(unusable(
                ChatErrorKind::Config,
                format!("The model {} is disabled.", row.model.name),
            ));
        }
        let credential = self.credential(&row, user).await?;
        let provider = self.client(&row, credential)?;
        Ok(ModelTarget {
            provider,
            provider_name: row.provider_name.clone(),
            model: row.model.name.clone(),
            max_output_tokens: row.model.max_output_tokens.map(|v| v as u32),
            context_limit: row.model.context_limit.map(|v| v as u32),
            pricing: Some(Pricing {
                input: row.model.input_price_micros,
                output: row.model.output_price_micros,
                cache_read: row.model.cache_read_price_micros,
                cache_write: row.model.cache_write_price_micros,
            }),
            cache: row
                .model
                .prompt_caching
                .then(|| CacheTtl::from_setting(&row.model.cache_ttl)),
            reasoning_effort: row.model.reasoning_effort,
        })
    }

    /// The key `user`'s step on `row`'s provider is sent with, or the `missing_key` error
    /// the step fails with.
    async fn credential(
        &self,
        row: &ResolvedModel,
        user: Uuid,
    ) -> Result<Credential, ResolveError> {
        let policy = row.key_policy();
        let own = if policy.allow_user_api_key {
            self.store
                .user_provider_key(user, row.model.provider_id)
                .await?
        } else {
            None
        };
        let choice = policy.choose(
            own.is_some(),
            row.api_key_ciphertext.is_some(),
            row.provider_kind.needs_api_key(),
        );
        match (choice, own) {
            (Ok(KeySource::User), Some(own)) => Ok(Credential {
                owner: Some(user),
                sealed: Some(own.api_key_ciphertext),
                changed_at: own.updated_at,
            }),
            (Ok(_), _) => Ok(Credential {
                owner: None,
                sealed: row.api_key_ciphertext.clone(),
                changed_at: row.provider_updated_at,
            }),
            (Err(why), _) => Err(ResolveError::Unusable(
                ChatError::new(ChatErrorKind::MissingKey, why.message(&row.provider_name))
                    .with_provider(row.provider_name.clone()),
            )),
        }
    }

    fn client(
        &self,
        row: &ResolvedModel,
        credential: Credential,
    ) -> Result<Provider, ResolveError> {
        let cache_key = (row.model.provider_id, credential.owner);
        let stamp = (row.provider_updated_at, credential.changed_at);
        if let Some((at, client)) = self.clients.lock().expect("clients lock").get(&cache_key)
            && *at == stamp
        {
            return Ok(client.clone());
        }
        let config_error = |message: String| {
            ResolveError::Unusable(
                ChatError::new(ChatErrorKind::Config, message)
                    .with_provider(row.provider_name.clone()),
            )
        };
        let open = |sealed: &Option<Vec<u8>>| -> Result<Option<String>, ResolveError> {
            let Some(sealed) = sealed else {
                return Ok(None);
            };
            let secrets = self.secrets.as_ref().ok_or_else(|| {
                config_error(
                    "agentq has no AGENTQ_SECRET_KEY, so the provider's stored key cannot be read."
                        .into(),
                )
            })?;
            secrets
                .open(sealed)
                .map(Some)
                .map_err(|e| config_error(e.to_string()))
        };
        let key = open(&credential.sealed)?;
        let headers: Vec<(String, String)> = match open(&row.headers_ciphertext)? {
            Some(json) => serde_json::from_str::<BTreeMap<String, String>>(&json)
                .map_err(|e| config_error(format!("stored headers are unreadable: {e}")))?
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        if row.provider_kind.needs_api_key() && key.is_none() {
            return Err(ResolveError::Unusable(
                ChatError::new(
                    ChatErrorKind::MissingKey,
                    format!("{} has no API key configured.", row.provider_name),
                )
                .with_provider(row.provider_name.clone()),
            ));
        }
        let client = match row.provider_kind {
            ProviderKind::Anthropic => Provider::Anthropic(Arc::new(
                AnthropicProvider::new(
                    &row.provider_base_url,
                    key.as_deref().unwrap_or_default(),
                    self.limits,
                )
                .map_err(ResolveError::Unusable)?
                .with_name(row.provider_name.clone())
                .with_headers(headers),
            )),
            ProviderKind::Bedrock => Provider::Bedrock(Arc::new(
                BedrockProvider::new(
                    &row.provider_base_url,
                    row.provider_region.clone(),
                    key.as_deref(),
                    self.limits,
                )
                .map_err(ResolveError::Unusable)?
                .with_name(row.provider_name.clone())
                .with_headers(headers),
            )),
            ProviderKind::Echo => Provider::Echo(EchoProvider),
            ProviderKind::Openai | ProviderKind::OpenaiCompat | ProviderKind::Openrouter => {
                Provider::OpenAi(Arc::new(
                    OpenAiProvider::new(&row.provider_base_url, key, self.limits)
                        .map_err(ResolveError::Unusable)?
                        .with_name(row.provider_name.clone())
                        .with_headers(headers)
                        .with_prompt_cache_key(row.provider_kind.accepts_prompt_cache_key())
                        .with_max_completion_tokens(
                            row.provider_kind
                                .caps_reasoning_with_max_completion_tokens(),
                        ),
                ))
            }
        };
        let mut clients = self.clients.lock().expect("clients lock");
        if clients.len() >= MAX_CACHED_CLIENTS && !clients.contains_key(&cache_key) {
            evict_one(&mut clients);
        }
        clients.insert(cache_key, (stamp, client.clone()));
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_evicts_the_oldest_user_key_client_not_everything() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let provider = Uuid::now_v7();
        let (old_user, new_user) = (Uuid::now_v7(), Uuid::now_v7());
        let mut clients = HashMap::new();
        clients.insert((provider, None), ((at(1), at(1)), "central"));
        clients.insert((provider, Some(old_user)), ((at(1), at(2)), "old"));
        clients.insert((provider, Some(new_user)), ((at(1), at(3)), "new"));
        evict_one(&mut clients);
        assert_eq!(clients.len(), 2);
        assert!(clients.contains_key(&(provider, None)));
        assert!(clients.contains_key(&(provider, Some(new_user))));
        evict_one(&mut clients);
        evict_one(&mut clients);
        assert!(
            clients.is_empty(),
            "then the providers' own, when nothing else is left"
        );
    }

    #[test]
    fn cost_prices_cached_tokens_at_their_own_rate_and_rounds_up() {
        // $2.50 / $10 / $1.25 / $3.75 per million tokens.
        let pricing = Pricing {
            input: 2_500_000,
            output: 10_000_000,
            cache_read: 1_250_000,
            cache_write: 3_750_000,
        };
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
            cache_read_tokens: 400,
            cache_write_tokens: 100,
        };
        // 500 * 2.5 + 500 * 10 + 400 * 1.25 + 100 * 3.75 = 1250 + 5000 + 500 + 375 = 7125
        assert_eq!(pricing.cost_micros(&usage), 7_125);
        let tiny = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(pricing.cost_micros(&tiny), 3, "2.5 micro-dollars round up");
        assert_eq!(Pricing::default().cost_micros(&usage), 0);
    }

    #[test]
    fn cost_of_absurd_counts_and_prices_saturates() {
        let pricing = Pricing {
            input: i64::MAX,
            output: i64::MAX,
            cache_read: i64::MAX,
            cache_write: -5,
        };
        let usage = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            cache_read_tokens: 1,
            cache_write_tokens: u64::MAX,
        };
        assert_eq!(pricing.cost_micros(&usage), i64::MAX);
    }
}
