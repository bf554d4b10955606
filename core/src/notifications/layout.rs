//! One description of an email's content, two renderings: a [`Document`] of blocks becomes
//! the `text/plain` part and the `text/html` part, so the two can never say different
//! things. HTML is escaped here, in one place.

use std::fmt::Write as _;

/// A piece of an email body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A paragraph of plain words.
    Paragraph(String),
    /// A bulleted list; each item is a linked label followed by plain text.
    LinkList(Vec<LinkItem>),
}

/// One list item: `label` links to `href`, then `after` follows in plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkItem {
    /// The linked words.
    pub label: String,
    /// Where they link.
    pub href: String,
    /// Plain text after the link.
    pub after: String,
}

/// An email body: a sequence of blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// The blocks, in order.
    pub blocks: Vec<Block>,
}

impl Document {
    /// Appends a paragraph.
    pub fn paragraph(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }

    /// Plain text: paragraphs separated by blank lines, list items as `- label (url)after`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for block in &self.blocks {
            if !out.is_empty() {
                out.push('\n');
            }
            match block {
                Block::Paragraph(text) => {
                    out.push_str(text);
                    out.push('\n');
                }
                Block::LinkList(items) => {
                    for item in items {
                        let _ = writeln!(out, "- {} <{}>{}", item.label, item.href, item.after);
                    }
                }
            }
        }
        out
    }

    /// A minimal, mail-client-safe HTML page.
    pub fn to_html(&self) -> String {
        let mut out = String::from(
            "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif; line-height: 1.4\">\n",
        );
        for block in &self.blocks {
            match block {
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "<p>{}</p>", escape(text));
                }
                Block::LinkList(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        let _ = writeln!(
                            out,
                            "<li><a href=\"{}\">{}</a>{}</li>",
                            escape(&item.href),
                            escape(&item.label),
                            escape(&item.after)
                        );
                    }
                    out.push_str("</ul>\n");
                }
            }
        }
        out.push_str("</body></html>\n");
        out
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let mut doc = Document::default();
        doc.paragraph("a <b> & \"c\"");
        doc.blocks.push(Block::LinkList(vec![LinkItem {
            label: "<script>".into(),
            href: "https://x/chats/1?a=1&b=2".into(),
            after: " — 3 days ago".into(),
        }]));
        let html = doc.to_html();
        assert!(html.contains("<p>a &lt;b&gt; &amp; &quot;c&quot;</p>"));
        assert!(html.contains("<a href=\"https://x/chats/1?a=1&amp;b=2\">&lt;script&gt;</a>"));
        assert!(!html.contains("<script>"));
        let text = doc.to_text();
        assert!(
            text.starts_with(
                "a <b> & \"c\"\n\n- <script> <https://x/chats/1?a=1&b=2> — 3 days ago\n"
            )
        );
    }
}
