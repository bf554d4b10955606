//! Email notifications: what an email says, rendered from one description into a plain-text
//! and an HTML part. The outbox (`store::notifications`) keeps a template name and its
//! payload; the mail worker renders at send time, so a retried email is rendered the same
//! way every time (the payload fixes "now" to the tick that produced it).

pub mod digest;
mod layout;

pub use digest::{ArchiveDigest, DIGEST_LISTED, DigestChat};
pub use layout::{Block, Document};

use serde_json::Value;

/// An email ready for a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// The `Subject:` line.
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part.
    pub html: String,
}

/// Why an outbox row cannot be rendered (a bug or a hand-edited row; never retried).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template name is not one this version knows.
    #[error("unknown email template `{0}`")]
    UnknownTemplate(String),
    /// The payload does not fit the template.
    #[error("bad payload for template `{template}`: {source}")]
    BadPayload {
        /// The template.
        template: String,
        /// What did not fit.
        source: serde_json::Error,
    },
}

/// Renders an outbox row's template with its payload; links point under `base_url`.
pub fn render(
    template: &str,
    payload: &Value,
    base_url: &str,
) -> Result<RenderedEmail, RenderError> {
    match template {
        ArchiveDigest::TEMPLATE => {
            let digest: ArchiveDigest =
                serde_json::from_value(payload.clone()).map_err(|source| {
                    RenderError::BadPayload {
                        template: template.to_owned(),
                        source,
                    }
                })?;
            Ok(digest.render(base_url))
        }
        other => Err(RenderError::UnknownTemplate(other.to_owned())),
    }
}
