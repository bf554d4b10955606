//! Whose API key a turn on a provider uses (issue #15 item 3; ARCHITECTURE.md §3). Each
//! stored provider has a key policy of three switches, and each user may store their own
//! key for a provider (`user_provider_keys`). [`KeyPolicy::choose`] is the one resolution
//! rule: the worker calls it for every step (with the turn's owner, never a cached answer
//! of another user), and `GET /api/v1/models` calls it to list a model as unavailable with
//! the same reason a turn would fail with.
//!
//! | central | user keys | fallback | user has a key | user has none |
//! |---|---|---|---|---|
//! | on  | off | off | central (their key is ignored) | central |
//! | on  | on  | off | user's | unavailable: `user_key_required` |
//! | on  | on  | on  | user's | central |
//! | off | on  | off | user's | unavailable: `user_key_required` |
//! | off | off | any | refused by `providers_key_policy_check`: nobody has a key |
//! | on  | off | on  | refused: nothing to fall back from |
//! | off | on  | on  | refused: nothing to fall back to |
//!
//! "Central" is the provider's stored key; a kind that needs a key
//! ([`super::ProviderKind::needs_api_key`]) without one stored is unavailable with
//! `no_central_key`. "On, on, off" keeps the central key stored but unused, so an
//! administrator can turn the fallback on and off without typing the key again.

use serde::{Deserialize, Serialize};

/// A provider's three key switches, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPolicy {
    /// The provider's own (central) key may be used.
    pub central_api_key_enabled: bool,
    /// Users may store and use their own key.
    pub allow_user_api_key: bool,
    /// A user without a key of their own uses the central key.
    pub allow_central_api_key_fallback: bool,
}

impl Default for KeyPolicy {
    /// The central key for everyone, no user keys (the columns' defaults).
    fn default() -> Self {
        Self {
            central_api_key_enabled: true,
            allow_user_api_key: false,
            allow_central_api_key_fallback: false,
        }
    }
}

/// Which key a turn is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeySource {
    /// The turn's owner's own key.
    User,
    /// The provider's stored key (or none, for a kind that needs none).
    Central,
}

/// Why a provider is unavailable to a user: a turn on it fails with `missing_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyUnavailable {
    /// The provider takes users' own keys only (no fallback) and the user stored none.
    UserKeyRequired,
    /// The central key would be used but none is stored, and the kind needs one.
    NoCentralKey,
}

impl KeyUnavailable {
    /// One sentence for the user, naming the provider and what to do.
    pub fn message(self, provider: &str) -> String {
        match self {
            KeyUnavailable::UserKeyRequired => format!(
                "{provider} needs your own API key: add one with \
                 PUT /api/v1/users/me/provider-keys/{{provider}}."
            ),
            KeyUnavailable::NoCentralKey => format!("{provider} has no API key configured."),
        }
    }

    /// The wire name (`user_key_required`, `no_central_key`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUnavailable::UserKeyRequired => "user_key_required",
            KeyUnavailable::NoCentralKey => "no_central_key",
        }
    }
}

/// Why a key policy cannot be stored: the field to blame and what is wrong (what the API
/// says before the database's `providers_key_policy_check` would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The request field.
    pub field: &'static str,
    /// What is wrong with it.
    pub detail: &'static str,
}

impl KeyPolicy {
    /// The same rule as the database's `providers_key_policy_check`.
    pub fn problem(self) -> Option<PolicyProblem> {
        if !self.central_api_key_enabled && !self.allow_user_api_key {
            return Some(PolicyProblem {
                field: "central_api_key_enabled",
                detail: "cannot be false while allow_user_api_key is false: nobody would have a \
                         key (disable the provider instead)",
            });
        }
        if self.allow_central_api_key_fallback && !self.allow_user_api_key {
            return Some(PolicyProblem {
                field: "allow_central_api_key_fallback",
                detail: "needs allow_user_api_key: without user keys there is nothing to fall \
                         back from",
            });
        }
        if self.allow_central_api_key_fallback && !self.central_api_key_enabled {
            return Some(PolicyProblem {
                field: "allow_central_api_key_fallback",
                detail: "needs central_api_key_enabled: there is no central key to fall back to",
            });
        }
        None
    }

    /// The key a user's turn uses: `has_user_key` is whether they stored one for this
    /// provider, `has_central_key` whether the provider has one, `needs_key` whether the
    /// provider's kind is unusable without a key.
    pub fn choose(
        self,
        has_user_key: bool,
        has_central_key: bool,
        needs_key: bool,
    ) -> Result<KeySource, KeyUnavailable> {
        let central = || {
            if needs_key && !has_central_key {
                Err(KeyUnavailable::NoCentralKey)
            } else {
                Ok(KeySource::Central)
            }
        };
        if !self.allow_user_api_key {
            return central();
        }
        if has_user_key {
            return Ok(KeySource::User);
        }
        if self.central_api_key_enabled && self.allow_central_api_key_fallback {
            return central();
        }
        Err(KeyUnavailable::UserKeyRequired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(c: bool, u: bool, f: bool) -> KeyPolicy {
        KeyPolicy {
            central_api_key_enabled: c,
            allow_user_api_key: u,
            allow_central_api_key_fallback: f,
        }
    }

    #[test]
    fn exactly_four_policies_are_refused() {
        let mut refused = Vec::new();
        for bits in 0..8u8 {
            let p = policy(bits & 4 != 0, bits & 2 != 0, bits & 1 != 0);
            if p.problem().is_some() {
                refused.push((
                    p.central_api_key_enabled,
                    p.allow_user_api_key,
                    p.allow_central_api_key_fallback,
                ));
            }
        }
        assert_eq!(
            refused,
            [
                (false, false, false),
                (false, false, true),
                (false, true, true),
                (true, false, true),
            ]
        );
        assert_eq!(KeyPolicy::default().problem(), None);
    }

    #[test]
    fn the_resolution_table_row_by_row() {
        use KeySource::{Central, User};
        use KeyUnavailable::{NoCentralKey, UserKeyRequired};
        // (central, user keys, fallback, user has key) -> result, central key stored.
        let rows = [
            ((true, false, false, true), Ok(Central)),
            ((true, false, false, false), Ok(Central)),
            ((true, true, false, true), Ok(User)),
            ((true, true, false, false), Err(UserKeyRequired)),
            ((true, true, true, true), Ok(User)),
            ((true, true, true, false), Ok(Central)),
            ((false, true, false, true), Ok(User)),
            ((false, true, false, false), Err(UserKeyRequired)),
        ];
        for ((c, u, f, has), want) in rows {
            assert_eq!(
                policy(c, u, f).choose(has, true, true),
                want,
                "central {c}, user keys {u}, fallback {f}, user key {has}"
            );
        }
        // Without a stored central key, the central rows are unavailable for kinds that
        // need a key, and fine for those that do not.
        assert_eq!(
            policy(true, false, false).choose(false, false, true),
            Err(NoCentralKey)
        );
        assert_eq!(
            policy(true, true, true).choose(false, false, true),
            Err(NoCentralKey)
        );
        assert_eq!(policy(true, true, true).choose(true, false, true), Ok(User));
        assert_eq!(
            policy(true, false, false).choose(false, false, false),
            Ok(Central)
        );
    }
}
