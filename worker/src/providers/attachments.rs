//! Files attached to user messages (`MessagePart::File`), in the form every wire format
//! starts from (ARCHITECTURE.md §7).
//!
//! The turn loads the content of the files a request refers to (newest messages first, up
//! to a total per request; `crate::turn::attachments`) into [`Attachments`]; each adapter
//! asks [`Attachments::render`] what a part becomes and writes it in its own shape:
//!
//! | media type | OpenAI Chat Completions | Anthropic Messages |
//! |---|---|---|
//! | `image/png`, `jpeg`, `gif`, `webp` | `image_url` part, a `data:` URI | `image` block, base64 source |
//! | `application/pdf` | `file` part, `file_data` a `data:` URI | `document` block, base64 source |
//! | `text/plain`, `markdown`, `csv`, `application/json` | `text` part | `text` block |
//!
//! Text goes as text wrapped in `<file name=... mimetype=...>`, so the model knows where it
//! starts and ends and what it is called. A file whose content is not in the request (over
//! the per-request total, over what the provider takes for one image, or gone) becomes a
//! short text note naming it and saying why: the model knows it exists, and the request
//! never fails on it.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use agentq_core::domain::{FileContent, MessagePart};
use base64::Engine;
use uuid::Uuid;

/// The content of the files one request carries, by id; cheap to clone.
#[derive(Clone, Default)]
pub struct Attachments {
    loaded: Arc<HashMap<Uuid, FileContent>>,
    /// Files left out because newer ones filled the request's total.
    over_budget: Arc<HashSet<Uuid>>,
    /// The total, for the note of a file left out.
    budget_bytes: i64,
}

impl std::fmt::Debug for Attachments {
    /// Counts only: the content is the user's, and may be megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachments")
            .field("files", &self.loaded.len())
            .field(
                "bytes",
                &self.loaded.values().map(|c| c.content.len()).sum::<usize>(),
            )
            .field("over_budget", &self.over_budget.len())
            .finish()
    }
}

/// What one `file` part becomes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attached<'a> {
    /// An image: its media type and the content in base64.
    Image {
        /// `image/png`, ...
        mimetype: &'a str,
        /// The content, base64.
        data: String,
    },
    /// A PDF document.
    Pdf {
        /// The file name.
        name: &'a str,
        /// The content, base64.
        data: String,
    },
    /// Text to send as a text block: a text file's content with its name, or a note that
    /// a file is not included.
    Text(String),
}

impl Attachments {
    /// `loaded` files; `over_budget` ones were left out to keep the request within
    /// `budget_bytes` of files.
    pub fn new(loaded: Vec<FileContent>, over_budget: HashSet<Uuid>, budget_bytes: i64) -> Self {
        Self {
            loaded: Arc::new(loaded.into_iter().map(|f| (f.id, f)).collect()),
            over_budget: Arc::new(over_budget),
            budget_bytes,
        }
    }

    /// What `part` becomes, `None` when it is not a `file` part. An image larger than
    /// `max_image_bytes` (what the provider takes for one) goes as a note.
    pub(crate) fn render<'a>(
        &'a self,
        part: &'a MessagePart,
        max_image_bytes: usize,
    ) -> Option<Attached<'a>> {
        let MessagePart::File {
            file_id,
            name,
            mimetype,
            size,
        } = part
        else {
            return None;
        };
        let note = |why: String| {
            Attached::Text(format!(
                "[Attached file `{name}` ({mimetype}, {size} bytes): its content is not \
                 included in this request: {why}.]"
            ))
        };
        let Some(file) = self.loaded.get(file_id) else {
            return Some(if self.over_budget.contains(file_id) {
                note(format!(
                    "files attached later fill the {} bytes of files one request carries",
                    self.budget_bytes
                ))
            } else {
                note("it is not available".into())
            });
        };
        let base64 = || base64::engine::general_purpose::STANDARD.encode(&file.content);
        Some(match file.mimetype.as_str() {
            "image/png" | "image/jpeg" | "image/gif" | "image/webp" => {
                if file.content.len() > max_image_bytes {
                    note(format!(
                        "the model's provider takes images of at most {max_image_bytes} bytes"
                    ))
                } else {
                    Attached::Image {
                        mimetype: &file.mimetype,
                        data: base64(),
                    }
                }
            }
            "application/pdf" => Attached::Pdf {
                name: &file.name,
                data: base64(),
            },
            _ => match std::str::from_utf8(&file.content) {
                Ok(text) => Attached::Text(format!(
                    "<file name=\"{}\" mimetype=\"{}\">\n{text}\n</file>",
                    file.name.replace('"', "'"),
                    file.mimetype
                )),
                Err(_) => note("it is not text".into()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: Uuid, name: &str, mimetype: &str, size: i64) -> MessagePart {
        MessagePart::File {
            file_id: id,
            name: name.into(),
            mimetype: mimetype.into(),
            size,
        }
    }

    fn content(id: Uuid, name: &str, mimetype: &str, bytes: &[u8]) -> FileContent {
        FileContent {
            id,
            name: name.into(),
            mimetype: mimetype.into(),
            content: bytes.to_vec(),
        }
    }

    #[test]
    fn each_kind_of_file_renders_as_itself_and_the_rest_as_notes() {
        let (png, md, pdf, far, gone) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let files = Attachments::new(
            vec![
                content(png, "a.png", "image/png", b"\x89PNG"),
                content(md, "n\"otes.md", "text/markdown", b"# Hi"),
                content(pdf, "r.pdf", "application/pdf", b"%PDF"),
            ],
            HashSet::from([far]),
            100,
        );
        let text = MessagePart::Text { text: "x".into() };
        assert_eq!(files.render(&text, 10), None);
        let png_part = part(png, "a.png", "image/png", 4);
        assert_eq!(
            files.render(&png_part, 10),
            Some(Attached::Image {
                mimetype: "image/png",
                data: "iVBORw==".into()
            })
        );
        let md_part = part(md, "n\"otes.md", "text/markdown", 4);
        assert_eq!(
            files.render(&md_part, 10),
            Some(Attached::Text(
                "<file name=\"n'otes.md\" mimetype=\"text/markdown\">\n# Hi\n</file>".into()
            ))
        );
        let pdf_part = part(pdf, "r.pdf", "application/pdf", 4);
        assert_eq!(
            files.render(&pdf_part, 10),
            Some(Attached::Pdf {
                name: "r.pdf",
                data: "JVBERg==".into()
            })
        );
        let too_big = files.render(&png_part, 3);
        assert!(
            matches!(&too_big, Some(Attached::Text(t)) if t.contains("at most 3 bytes")),
            "{too_big:?}"
        );
        let far_part = part(far, "old.csv", "text/csv", 500);
        let far = files.render(&far_part, 10);
        assert!(
            matches!(&far, Some(Attached::Text(t)) if t.contains("`old.csv`") && t.contains("100 bytes")),
            "{far:?}"
        );
        let gone_part = part(gone, "g.txt", "text/plain", 1);
        let gone = files.render(&gone_part, 10);
        assert!(
            matches!(&gone, Some(Attached::Text(t)) if t.contains("not available")),
            "{gone:?}"
        );
    }
}
