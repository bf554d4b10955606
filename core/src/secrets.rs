//! Encryption at rest for secrets agentq must use later (provider API keys, provider
//! headers): XChaCha20-Poly1305 with a random 192-bit nonce per value, under one key from
//! configuration (`AGENTQ_SECRET_KEY`, 64 hex characters). Stored form: nonce || ciphertext.
//! Secrets we only need to compare (API tokens) are hashed instead (see `auth`).
//!
//! Rotating the key (ARCHITECTURE.md §11, README "Rotating the secret key"): a box seals
//! under `AGENTQ_SECRET_KEY` and opens values sealed under it or `AGENTQ_PREVIOUS_SECRET_KEY`.
//! A rolling restart goes in two phases so no process meets a value it cannot open: first
//! every process with the old key current and the new one previous, then every process
//! with the new key current and the old one previous; `agentq admin rotate-key` then
//! re-seals every stored value under the new key ([`SecretBox::reseal`]) and, run again,
//! must find them all current before the previous key is dropped.
//!
//! Settings that hold secrets are [`SecretString`]s or [`SecretUrl`]s, so formatting a
//! config with `{:?}` (a panic message, a `tracing` field, `agentq admin config`) shows no
//! plaintext; code that needs the value calls `expose_secret()` where it uses it.

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit},
};
use rand::RngExt;
pub use secrecy::{ExposeSecret, SecretString};

/// A URL that may carry a password (in its user info or its query string): `Debug` shows it
/// through [`crate::db::redact_url`], so logs keep the host and database but not the password.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The URL with its password, for the driver that connects with it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL fit for logs and messages.
    pub fn redacted(&self) -> String {
        crate::db::redact_url(self.expose())
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url.into())
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.into())
    }
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured key is not 64 hex characters.
    #[error(
        "AGENTQ_SECRET_KEY must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`"
    )]
    BadKey,
    /// The configured previous key is not 64 hex characters.
    #[error(
        "AGENTQ_PREVIOUS_SECRET_KEY must be 64 hex characters (32 bytes), like AGENTQ_SECRET_KEY"
    )]
    BadPreviousKey,
    /// A previous key is configured without a current one (it would be ignored).
    #[error(
        "AGENTQ_PREVIOUS_SECRET_KEY is set but AGENTQ_SECRET_KEY is not: the previous key only \
         opens values alongside a current key that seals new ones"
    )]
    PreviousWithoutKey,
    /// No key is configured but a secret must be stored or read.
    #[error("no AGENTQ_SECRET_KEY is configured, so secrets cannot be stored or read")]
    NoKey,
    /// The stored value was not sealed with this key (or is corrupt).
    #[error("a stored secret cannot be decrypted with the configured AGENTQ_SECRET_KEY")]
    Undecryptable,
}

/// Seals and opens secrets under the configured key (and opens values sealed under the
/// previous key while a rotation is under way).
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    previous: Option<XChaCha20Poly1305>,
}

/// What [`SecretBox::reseal`] made of one stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resealed {
    /// Already sealed under the current key: left as it is (a rerun after a crash).
    Current,
    /// Was sealed under the previous key: here it is under the current one.
    Replaced(Vec<u8>),
    /// Neither key opens it (corrupt, or sealed under a third key): left as it is.
    Unreadable,
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
        Ok(Self {
            cipher,
            previous: None,
        })
    }

    /// This box, also opening values sealed under `previous` (the key being rotated away
    /// from); it still seals under its own key only.
    pub fn with_previous(mut self, previous: &SecretBox) -> Self {
        self.previous = Some(previous.cipher.clone());
        self
    }

    /// `sealed` under this box's own key: [`Resealed::Current`] when it already opens with
    /// it, [`Resealed::Replaced`] when only the previous key opens it. Trying the current
    /// key first makes a rotation safe to run again after it stopped halfway.
    pub fn reseal(&self, sealed: &[u8]) -> Resealed {
        if open_with(&self.cipher, sealed).is_ok() {
            return Resealed::Current;
        }
        match self.previous.as_ref().map(|old| open_with(old, sealed)) {
            Some(Ok(plain)) => Resealed::Replaced(self.seal(&plain)),
            _ => Resealed::Unreadable,
        }
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

    /// Decrypts a value made by [`SecretBox::seal`] (under this box's key or, during a
    /// rotation, the previous one).
    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretError> {
        open_with(&self.cipher, sealed).or_else(|e| match &self.previous {
            Some(old) => open_with(old, sealed),
            None => Err(e),
        })
    }
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8]) -> Result<String, SecretError> {
    if sealed.len() < 24 {
        return Err(SecretError::Undecryptable);
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    let nonce_bytes: [u8; 24] = nonce.try_into().map_err(|_| SecretError::Undecryptable)?;
    let plaintext = cipher
        .decrypt(&XNonce::from(nonce_bytes), ciphertext)
        .map_err(|_| SecretError::Undecryptable)?;
    String::from_utf8(plaintext).map_err(|_| SecretError::Undecryptable)
}

/// Writes `contents` to `path` so that no other user can ever read it: the data goes to a
/// fresh temporary file created with mode 0600 in the same directory (so no window exists
/// where the secret sits in a world-readable file, as `write` then `chmod` would leave),
/// is synced, and is renamed over `path` in one step (a reader sees the old file or the new
/// one, never half of one). Used for `agentq dev`'s token and key files.
pub fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::rng().random();
    let temp = dir.join(format!(".{name}.{suffix:016x}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's two-phase rotation: phase 1 processes (old key, new accepted) and
    /// phase 2 processes (new key, old accepted) read each other's values, so during
    /// either rolling restart no process meets a value it cannot open.
    #[test]
    fn both_phases_of_a_rolling_rotation_read_each_other() {
        let (old_hex, new_hex) = (SecretBox::generate_key_hex(), SecretBox::generate_key_hex());
        let old = SecretBox::from_hex(&old_hex).unwrap();
        let new = SecretBox::from_hex(&new_hex).unwrap();
        let unrestarted = old.clone();
        let phase1 = old.clone().with_previous(&new);
        let phase2 = new.clone().with_previous(&old);
        let by_unrestarted = unrestarted.seal("a");
        let by_phase1 = phase1.seal("b");
        let by_phase2 = phase2.seal("c");
        // Phase 1 still seals under the old key: processes not yet restarted read it.
        assert_eq!(unrestarted.open(&by_phase1).unwrap(), "b");
        for reader in [&phase1, &phase2] {
            assert_eq!(reader.open(&by_unrestarted).unwrap(), "a");
            assert_eq!(reader.open(&by_phase1).unwrap(), "b");
            assert_eq!(reader.open(&by_phase2).unwrap(), "c");
        }
        // Only once no phase-1 process is left may rotate-key move everything to the new key.
        assert!(matches!(phase2.reseal(&by_phase1), Resealed::Replaced(_)));
        assert_eq!(phase2.reseal(&by_phase2), Resealed::Current);
        assert!(unrestarted.open(&by_phase2).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_even_over_a_readable_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("agentq-private-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dev-token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, "aq_secret\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "aq_secret\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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

    #[test]
    fn resealing_moves_values_to_the_new_key_once() {
        let old = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
        let new = SecretBox::from_hex(&SecretBox::generate_key_hex())
            .unwrap()
            .with_previous(&old);
        let under_old = old.seal("sk-rotate-me");
        assert_eq!(new.open(&under_old).unwrap(), "sk-rotate-me", "reads both");
        let Resealed::Replaced(under_new) = new.reseal(&under_old) else {
            panic!("the old value is resealed");
        };
        assert!(
            old.open(&under_new).is_err(),
            "sealed under the new key only"
        );
        assert_eq!(
            new.reseal(&under_new),
            Resealed::Current,
            "a rerun skips it"
        );
        let stranger = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
        assert_eq!(new.reseal(&stranger.seal("x")), Resealed::Unreadable);
        assert_eq!(new.reseal(b"short"), Resealed::Unreadable);
    }
}
