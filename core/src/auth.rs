//! API token secrets: generated once, shown once, stored only as a SHA-256 digest.
//!
//! A token reads `aq_<64 hex chars>` (256 random bits). The prefix makes leaked tokens easy
//! to spot in logs and secret scanners; the digest means a database dump grants nothing.

use rand::RngExt;
use sha2::{Digest, Sha256};

/// The prefix every agentq API token starts with.
pub const TOKEN_PREFIX: &str = "aq_";

/// A freshly generated token: the secret to hand to the user and the digest to store.
pub struct NewToken {
    /// Shown to the user exactly once.
    pub secret: String,
    /// What `api_tokens.secret_sha256` holds.
    pub sha256: String,
}

/// Generates a new 256-bit token.
pub fn generate_token() -> NewToken {
    let bytes: [u8; 32] = rand::rng().random();
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let sha256 = hash_token(&secret);
    NewToken { secret, sha256 }
}

/// The stored form of a presented token.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_to_their_digest() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(a.secret.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a.secret), a.sha256);
        assert_eq!(a.sha256.len(), 64);
        assert_ne!(a.sha256, b.sha256);
    }
}
