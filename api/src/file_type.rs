//! What an uploaded file is, decided from its bytes (issue #14, item 3).
//!
//! The media type a client declares (the `Content-Type` of a raw upload or of the multipart
//! part) and the file's name are hints at most: they never win over the content, so a PNG
//! named `notes.txt` and sent as `text/plain` is stored as `image/png`, and a model is
//! never sent an image as text (or text as an image).
//!
//! - **Binary formats** by their magic number (the `infer` crate): `image/png`,
//!   `image/jpeg`, `image/gif`, `image/webp`, `application/pdf`. Any other binary content
//!   (one `infer` knows, or bytes that are not UTF-8 text) is refused.
//! - **Text** is UTF-8 without NUL bytes. It is `application/json` when it parses as a
//!   JSON object or array; `text/csv` when the hints say CSV and every line has the same
//!   number of comma-separated fields (two or more); `text/markdown` when the hints say
//!   markdown or the text opens with a markdown heading; else `text/plain`. CSV and
//!   markdown are plain text to a byte sniffer, so for them the hints decide, and the bytes
//!   can only overrule them (a "CSV" whose lines do not line up is stored as text).

use std::fmt;

/// The media types an upload may have.
pub const ACCEPTED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "application/json",
    "text/csv",
    "text/markdown",
    "text/plain",
];

/// The content is not one of [`ACCEPTED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// What the bytes look like, when `infer` knows (`application/zip`).
    pub detected: Option<&'static str>,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detected {
            Some(kind) => write!(f, "the file is {kind}, which is not accepted")?,
            None => write!(f, "the file is binary content of an unknown type")?,
        }
        write!(f, "; accepted: {}", ACCEPTED.join(", "))
    }
}

/// The media type of `bytes`, with the client's `declared` media type and the file's
/// `name` as hints for the text formats only (see the module page).
pub fn sniff(
    bytes: &[u8],
    declared: Option<&str>,
    name: &str,
) -> Result<&'static str, Unsupported> {
    // Text is UTF-8 without NUL bytes; anything else is binary.
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'));
    if let Some(kind) = infer::get(bytes) {
        let binary = match kind.mime_type() {
            "image/png" => Some("image/png"),
            "image/jpeg" => Some("image/jpeg"),
            "image/gif" => Some("image/gif"),
            "image/webp" => Some("image/webp"),
            "application/pdf" => Some("application/pdf"),
            _ => None,
        };
        if let Some(mime) = binary {
            return Ok(mime);
        }
        // `infer` also matches a few text formats (HTML, XML, shell scripts): text is
        // judged below, as text.
        if text.is_none() {
            return Err(Unsupported {
                detected: Some(kind.mime_type()),
            });
        }
    }
    match text {
        Some(text) => Ok(text_type(text, &Hints::new(declared, name))),
        None => Err(Unsupported { detected: None }),
    }
}

/// What the client said the file is.
struct Hints {
    csv: bool,
    markdown: bool,
}

impl Hints {
    fn new(declared: Option<&str>, name: &str) -> Self {
        let declared = declared
            .and_then(|d| d.split(';').next())
            .map(|d| d.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let extension = name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .unwrap_or_default();
        Self {
            csv: declared == "text/csv" || extension == "csv",
            markdown: matches!(declared.as_str(), "text/markdown" | "text/x-markdown")
                || matches!(extension.as_str(), "md" | "markdown"),
        }
    }
}

fn text_type(text: &str, hints: &Hints) -> &'static str {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok()
    {
        return "application/json";
    }
    if hints.csv && is_rectangular_csv(text) {
        return "text/csv";
    }
    if hints.markdown || opens_with_heading(trimmed) {
        return "text/markdown";
    }
    "text/plain"
}

/// Every non-empty line has the same number (at least two) of comma-separated fields,
/// commas inside double quotes not counted. A quoted field spanning lines ends the check
/// in its favour: RFC 4180 allows it, and the count would mislead.
fn is_rectangular_csv(text: &str) -> bool {
    let mut fields = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut quoted = false;
        let mut count = 1;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => count += 1,
                _ => {}
            }
        }
        if quoted {
            return fields.is_some_and(|n| n >= 2);
        }
        match fields {
            None if count < 2 => return false,
            None => fields = Some(count),
            Some(n) if n != count => return false,
            Some(_) => {}
        }
    }
    fields.is_some()
}

/// The first line is an ATX heading: one to six `#`, then a space.
fn opens_with_heading(text: &str) -> bool {
    let first = text.lines().next().unwrap_or_default();
    let hashes = first.chars().take_while(|c| *c == '#').count();
    (1..=6).contains(&hashes) && first[hashes..].starts_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

    #[test]
    fn the_bytes_win_over_the_declared_type_and_the_name() {
        assert_eq!(sniff(PNG, Some("text/plain"), "notes.txt"), Ok("image/png"));
        assert_eq!(
            sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", Some("image/png"), "a.png"),
            Ok("application/pdf")
        );
        assert_eq!(
            sniff(b"just words", Some("image/png"), "a.png"),
            Ok("text/plain")
        );
    }

    #[test]
    fn binary_formats_are_known_by_their_magic_number() {
        assert_eq!(
            sniff(b"\xff\xd8\xff\xe0\0\x10JFIF\0", None, "x"),
            Ok("image/jpeg")
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0", None, "x"), Ok("image/gif"));
        assert_eq!(
            sniff(b"RIFF\x24\0\0\0WEBPVP8 ", None, "x"),
            Ok("image/webp")
        );
    }

    #[test]
    fn other_binaries_are_refused_naming_what_they_are() {
        let zip = sniff(b"PK\x03\x04\x14\0\0\0\x08\0", None, "a.zip").unwrap_err();
        assert_eq!(zip.detected, Some("application/zip"));
        assert!(zip.to_string().contains("image/png"), "{zip}");
        assert_eq!(
            sniff(b"\x00\x01\x02\xff\xfe", None, "x")
                .unwrap_err()
                .detected,
            None
        );
        assert!(sniff(b"text\0with a nul", None, "x").is_err());
    }

    #[test]
    fn text_is_json_csv_markdown_or_plain() {
        assert_eq!(
            sniff(br#" {"a": [1, 2]} "#, None, "x.txt"),
            Ok("application/json")
        );
        assert_eq!(
            sniff(b"[1,2]", Some("text/plain"), "x"),
            Ok("application/json")
        );
        // Valid JSON, but a scalar: a number in a text file is text.
        assert_eq!(sniff(b"42", None, "x"), Ok("text/plain"));
        assert_eq!(sniff(b"{not json", None, "x"), Ok("text/plain"));
        assert_eq!(sniff(b"a,b\n1,2\n3,4\n", None, "t.csv"), Ok("text/csv"));
        assert_eq!(
            sniff(b"a,\"b, c\"\n1,2\n", Some("text/csv"), "t"),
            Ok("text/csv")
        );
        // Lines that do not line up are not CSV, whatever the name says.
        assert_eq!(sniff(b"a,b\n1,2,3\n", None, "t.csv"), Ok("text/plain"));
        // Commas in prose are not CSV without a hint.
        assert_eq!(sniff(b"a,b\n1,2\n", None, "t.txt"), Ok("text/plain"));
        assert_eq!(sniff(b"some *notes*", None, "n.md"), Ok("text/markdown"));
        assert_eq!(
            sniff(b"some notes", Some("text/markdown; charset=utf-8"), "n"),
            Ok("text/markdown")
        );
        assert_eq!(
            sniff(b"# Title\n\ntext", None, "n.txt"),
            Ok("text/markdown")
        );
        assert_eq!(sniff(b"#hashtag", None, "n.txt"), Ok("text/plain"));
        assert_eq!(sniff("héllo".as_bytes(), None, "n"), Ok("text/plain"));
    }
}
