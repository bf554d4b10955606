//! Encryption at rest for secrets agentq must use later (provider API keys, provider
//! headers): XChaCha20-Poly1305 with a random 192-bit nonce per value, under one key from
//! configuration (`AGENTQ_SECRET_KEY`, 64 hex characters). Stored form: nonce || ciphertext.
//! Secrets we only need to compare (API tokens) are hashed instead (see `auth`).

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit},
};
use rand::RngExt;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured key is not 64 hex characters.
    #[error(
        "AGENTQ_SECRET_KEY must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`"
    )]
    BadKey,
    /// No key is configured but a secret must be stored or read.
    #[error("no AGENTQ_SECRET_KEY is configured, so secrets cannot be stored or read")]
    NoKey,
    /// The stored value was not sealed with this key (or is corrupt).
    #[error("a stored secret cannot be decrypted with the configured AGENTQ_SECRET_KEY")]
    Undecryptable,
}

/// Seals and opens secrets under the configured key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// A box from a 64-character hex key.
    pub fn from_hex(key: &str) -> Result<Self, SecretError> {
        let bytes: [u8; 32] = hex::decode(key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SecretError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        Ok(Self { cipher })
    }

    /// A new random key, hex-encoded (for `agentq dev`, which keeps it under its data dir).
    pub fn generate_key_hex() -> String {
        let bytes: [u8; 32] = rand::rng().random();
        hex::encode(bytes)
    }

    /// Encrypts `plaintext`; every call uses a fresh nonce.
    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let nonce_bytes: [u8; 24] = rand::rng().random();
        let nonce = XNonce::from(nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("encrypting in memory cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend(ciphertext);
        out
    }

    /// Decrypts a value made by [`SecretBox::seal`].
    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretError> {
        if sealed.len() < 24 {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let nonce_bytes: [u8; 24] = nonce.try_into().map_err(|_| SecretError::Undecryptable)?;
        let plaintext = self
            .cipher
            .decrypt(&XNonce::from(nonce_bytes), ciphertext)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plaintext).map_err(|_| SecretError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let key = SecretBox::generate_key_hex();
        let sealed_box = SecretBox::from_hex(&key).unwrap();
        let a = sealed_box.seal("sk-live-123");
        let b = sealed_box.seal("sk-live-123");
        assert_ne!(a, b, "fresh nonce each time");
        assert!(!String::from_utf8_lossy(&a).contains("sk-live-123"));
        assert_eq!(sealed_box.open(&a).unwrap(), "sk-live-123");
        let other = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
        assert!(other.open(&a).is_err());
        assert!(SecretBox::from_hex("short").is_err());
    }
}
