//! What a chat's owner may see of a provider failure.
//!
//! A [`ChatError`] is stored as the chat's `last_error` and sent in `retry` and `error`
//! events, so anyone who can read the chat reads it. Its text comes partly from outside
//! agentq: the provider's error body, and transport errors that name the URL agentq called.
//! Before an error leaves the provider layer, its message and detail lose every URL, IP
//! address and the provider's own host name (the provider is named by its configured name
//! instead), and are cut to [`MAX_SHOWN_BYTES`]. Providers also echo what they were sent
//! ("Incorrect API key provided: sk-..."): the credentials the provider is called with
//! (its API key, the values of its configured headers, the user and password of its URL,
//! and that pair as HTTP Basic sends it) are replaced wherever they appear.

use std::net::{IpAddr, SocketAddr};

use agentq_core::ChatError;

/// Longest message or detail shown, in bytes (a `…` marks a cut).
pub const MAX_SHOWN_BYTES: usize = 2048;

/// Stands in for a removed URL.
const URL: &str = "<url>";
/// Stands in for a removed IP address (with its port, if any).
const ADDRESS: &str = "<address>";
/// Stands in for the provider's host name.
const HOST: &str = "<provider host>";
/// Stands in for a credential the provider was called with.
const SECRET: &str = "<secret>";
/// Shorter values are not searched for (they would blank ordinary words).
const MIN_SECRET_LEN: usize = 6;

/// Redacts the errors of one provider.
#[derive(Debug, Clone, Default)]
pub(super) struct Redactor {
    /// The host name of the provider's URL, when it is a name rather than an IP address.
    host: Option<String>,
    /// Credentials the provider is called with, longest first.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for a provider reached at `url`.
    pub(super) fn for_url(url: &str) -> Self {
        let parsed = reqwest::Url::parse(url).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned))
            .filter(|h| h.len() >= 3 && h.trim_matches(['[', ']']).parse::<IpAddr>().is_err());
        let mut redactor = Self {
            host,
            secrets: Vec::new(),
        };
        if let Some(u) = parsed.filter(|u| !u.username().is_empty() || u.password().is_some()) {
            use base64::Engine;
            let password = u.password().unwrap_or_default();
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", u.username()));
            redactor = redactor.with_secret(password).with_secret(&basic);
        }
        redactor
    }

    /// Also hides `secret` (an API key, a header value) wherever it appears.
    pub(super) fn with_secret(mut self, secret: &str) -> Self {
        let secret = secret.trim();
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        self
    }

    /// `error` as its chat's owner may see it.
    pub(super) fn error(&self, mut error: ChatError) -> ChatError {
        error.message = self.text(&error.message);
        error.detail = error.detail.map(|d| self.text(&d));
        error
    }

    /// `text` without URLs, addresses or the provider's host, at most [`MAX_SHOWN_BYTES`].
    fn text(&self, text: &str) -> String {
        // Scanning a few times what is shown is enough: what lies beyond is cut anyway.
        let mut head = truncate(text, 4 * MAX_SHOWN_BYTES).to_owned();
        for secret in &self.secrets {
            head = head.replace(secret.as_str(), SECRET);
        }
        let mut out = without_addresses(&without_urls(&head));
        if let Some(host) = &self.host {
            out = out.replace(host.as_str(), HOST);
        }
        let shown = truncate(&out, MAX_SHOWN_BYTES);
        if shown.len() < out.len() {
            format!("{shown}…")
        } else {
            out
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// Replaces every `scheme://...` up to whitespace, a quote or a bracket.
fn without_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at + 3..]
            .find(|c: char| c.is_whitespace() || "\"'<>()[]{}`".contains(c))
            .map_or(rest.len(), |i| at + 3 + i);
        out.push_str(&rest[..scheme_start]);
        out.push_str(URL);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces IPv4 and IPv6 addresses (with a port, if one follows).
fn without_addresses(text: &str) -> String {
    let is_part = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_part) {
        let len = rest[start..]
            .find(|c| !is_part(c))
            .unwrap_or(rest.len() - start);
        let run = &rest[start..start + len];
        // `10.0.0.1.` at the end of a sentence: the trailing dot or colon is not the address's.
        let candidate = run.trim_end_matches(['.', ':']);
        let inside_a_word = rest[..start].chars().next_back().is_some_and(is_word)
            || rest[start + len..].chars().next().is_some_and(is_word);
        let is_address = !inside_a_word
            && candidate.contains([':', '.'])
            && (candidate.parse::<IpAddr>().is_ok() || candidate.parse::<SocketAddr>().is_ok());
        out.push_str(&rest[..start]);
        if is_address {
            out.push_str(ADDRESS);
            out.push_str(&run[candidate.len()..]);
        } else {
            out.push_str(run);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use agentq_core::ChatErrorKind;

    use super::*;

    fn shown(text: &str) -> String {
        Redactor::for_url("https://llm-gateway.corp.internal:8443/v1").text(text)
    }

    #[test]
    fn urls_addresses_and_the_host_are_removed() {
        assert_eq!(
            shown("error sending request for url (http://127.0.0.1:4000/v1/chat/completions)"),
            "error sending request for url (<url>)"
        );
        assert_eq!(
            shown("upstream 10.1.2.3:8080 refused; retry via 192.168.0.9."),
            "upstream <address> refused; retry via <address>."
        );
        assert_eq!(
            shown("bind [::1]:80 or fe80::1 failed"),
            "bind [<address>]:80 or <address> failed"
        );
        assert_eq!(
            shown("dns error for llm-gateway.corp.internal"),
            "dns error for <provider host>"
        );
    }

    #[test]
    fn credentials_the_provider_echoes_are_hidden() {
        let r = Redactor::for_url("http://user:hunter2pw@gateway.example/v1")
            .with_secret("sk-x-SECRETKEY")
            .with_secret("gateway-secret");
        let shown = r.text(
            "Incorrect API key provided: Bearer sk-x-SECRETKEY; header gateway-secret; \
             basic dXNlcjpodW50ZXIycHc= pw hunter2pw",
        );
        for secret in [
            "sk-x-SECRETKEY",
            "gateway-secret",
            "dXNlcjpodW50ZXIycHc=",
            "hunter2pw",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("Incorrect API key provided"), "{shown}");
    }

    #[test]
    fn ordinary_text_is_kept() {
        for text in [
            "prompt is too long: 208310 tokens > 200000 maximum",
            "Rate limit reached at 10:30:00 for gpt-4o in org-abc on tokens per min (TPM): Limit 30000",
            "model v1.2 is deprecated; see std::io::Error, cafe, deadbeef and 3.14",
            "Connection refused (os error 111)",
        ] {
            assert_eq!(shown(text), text);
        }
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let text = "é".repeat(5_000);
        let cut = shown(&text);
        assert!(
            cut.len() <= MAX_SHOWN_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
        let error = Redactor::default().error(
            ChatError::new(ChatErrorKind::Generic, "x".repeat(10_000))
                .with_detail("http://10.0.0.1/".repeat(1_000)),
        );
        assert!(error.message.len() <= MAX_SHOWN_BYTES + 3);
        assert!(error.detail.unwrap().starts_with("<url>"));
    }
}
