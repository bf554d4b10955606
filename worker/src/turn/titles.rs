//! Generated titles (issue #13 item 5; ARCHITECTURE.md §7): after the job that completed
//! a root chat's first answer (or a later answer's job while the request is still
//! pending, or a recovery nudge), the worker asks the `title` model for a short title and
//! stores it unless the user set one meanwhile (`store::titles` holds the request and
//! decides).
//!
//! The request is small and bounded: the first message and the first answer, each cut to
//! [`MAX_INPUT_CHARS`], no tools, no reasoning, at most [`MAX_TITLE_TOKENS`] of output, and
//! [`TITLE_TIMEOUT`] for the whole call. Whatever the model writes is cleaned
//! ([`clean_title`]): the first line, without quotes, a `Title:` label, markdown marks or
//! trailing punctuation, at most 80 characters on a word boundary. A failure (the model
//! unusable, an error, an empty answer) leaves the first message's text as the title and
//! releases the request's claim; the next answer or nudge tries again, at most
//! `MAX_TITLE_ATTEMPTS` times in all. While the call runs, its claim keeps any other job
//! from starting a second call ([`TITLE_CLAIM_TTL`]).

use std::time::Duration;

use agentq_core::{
    ChatError, ChatErrorKind,
    outcome::ChatOutcome,
    store::{TITLE_CLAIM_TTL, TitleWork, WorkContext},
};
use futures::StreamExt;
use uuid::Uuid;

use super::{TurnEngine, TurnJobError, history::unsaved_user_message};
use crate::{
    models::{ModelTarget, ResolveError},
    providers::{ProviderEvent, ProviderRequest},
};

/// Characters of the first message and of the first answer the title model reads.
pub const MAX_INPUT_CHARS: usize = 2_000;

/// Output cap of the title request.
pub const MAX_TITLE_TOKENS: u32 = 60;

/// The whole title call, first byte to last.
pub const TITLE_TIMEOUT: Duration = Duration::from_secs(30);

// The call runs under the request's claim: it must end well before the claim expires, or a
// second call could start beside it.
const _: () = assert!(TITLE_TIMEOUT.as_secs() * 3 / 2 <= TITLE_CLAIM_TTL.as_secs());

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 80;

/// What the title model is told.
pub const TITLE_INSTRUCTIONS: &str = "You name conversations between a user and an AI \
coding agent. Reply with a title for the conversation below: at most 8 words, in the \
language of the user's message, naming the task or topic. Reply with the title only: no \
quotes, no label, no punctuation at the end.";

impl TurnEngine {
    /// Generates the title of the chat of `turn_id` if one is pending; never fails the job
    /// it follows (a failure is logged, and the next nudge tries again).
    pub(super) async fn title_if_pending(&self, turn_id: Uuid) {
        if let Err(e) = self.generate_title(turn_id).await {
            tracing::warn!(turn.id = %turn_id, error = %e, "could not generate the chat's title");
        }
    }

    async fn generate_title(&self, turn_id: Uuid) -> Result<(), TurnJobError> {
        if !self.limits.generate_titles {
            self.store.close_title_request(turn_id).await?;
            return Ok(());
        }
        let Some(work) = self.store.claim_title(turn_id).await? else {
            return Ok(());
        };
        let stored = self.title_claimed(&work).await;
        if !matches!(stored, Ok(true)) {
            if let Err(e) = &stored {
                tracing::warn!(chat.id = %work.chat_id, error = %e, "could not generate the chat's title");
            }
            // Nothing stored: the next answer or nudge may try again without waiting for
            // the claim to expire (at worst it expires: store::titles::TITLE_CLAIM_TTL).
            self.store.release_title_claim(&work).await?;
        }
        Ok(())
    }

    /// The title call of a claimed request: `Ok(true)` when the request is settled (the
    /// title stored, or the request closed or named by the user meanwhile), `Ok(false)`
    /// when the call gave nothing usable (logged).
    async fn title_claimed(&self, work: &TitleWork) -> Result<bool, TurnJobError> {
        let model = self
            .store
            .chat_context_model(work.chat_id, WorkContext::Title)
            .await?;
        let target = match self.models.resolve(model, work.owner_id).await {
            Ok(target) => target,
            Err(ResolveError::Unusable(error)) => {
                tracing::warn!(chat.id = %work.chat_id, error = %error, "no usable title model");
                return Ok(false);
            }
            Err(ResolveError::Store(e)) => return Err(e.into()),
        };
        let written = match tokio::time::timeout(TITLE_TIMEOUT, ask(&target, work)).await {
            Ok(Ok(text)) => text,
            Ok(Err(error)) => {
                tracing::warn!(chat.id = %work.chat_id, error = %error, "the title model failed");
                return Ok(false);
            }
            Err(_) => {
                tracing::warn!(chat.id = %work.chat_id, "the title model took too long");
                return Ok(false);
            }
        };
        let Some(title) = clean_title(&written) else {
            tracing::warn!(chat.id = %work.chat_id, "the title model wrote no usable title");
            return Ok(false);
        };
        if let Some(title) = self
            .store
            .save_generated_title(work.chat_id, &title)
            .await?
        {
            agentq_core::metrics::title_generated();
            ChatOutcome::Titled {
                chat_id: work.chat_id,
                title,
            }
            .publish(&self.events);
        }
        Ok(true)
    }
}

/// Asks `target` for a title; the text it wrote (at most a few hundred bytes are kept).
async fn ask(target: &ModelTarget, work: &TitleWork) -> Result<String, ChatError> {
    let conversation = format!(
        "<user>\n{}\n</user>\n<assistant>\n{}\n</assistant>",
        cut(&work.first_message),
        cut(&work.first_answer)
    );
    let request = ProviderRequest {
        model: target.model.clone(),
        system: Some(TITLE_INSTRUCTIONS.to_owned()),
        messages: vec![unsaved_user_message(work.chat_id, conversation)],
        tools: Vec::new(),
        max_output_tokens: Some(
            target
                .max_output_tokens
                .map_or(MAX_TITLE_TOKENS, |m| m.min(MAX_TITLE_TOKENS)),
        ),
        cache: None,
        cache_key: None,
        reasoning_effort: None,
        // The transcript is text: attached files are not sent for a title.
        files: Default::default(),
    };
    let mut stream = target.provider.stream(request).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        if let ProviderEvent::Text(delta) = event? {
            text.push_str(&delta);
            if text.len() > 4 * MAX_TITLE_CHARS {
                break;
            }
        }
    }
    if text.trim().is_empty() {
        return Err(ChatError::new(ChatErrorKind::Generic, "empty answer"));
    }
    Ok(text)
}

/// `text` cut to [`MAX_INPUT_CHARS`] characters.
fn cut(text: &str) -> &str {
    match text.char_indices().nth(MAX_INPUT_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The title in what a model wrote: its first non-empty line, without a `Title:` label,
/// quotes, markdown marks or trailing punctuation, whitespace collapsed, control
/// characters dropped, at most [`MAX_TITLE_CHARS`] characters (cut at a word boundary).
/// `None` when nothing is left.
pub fn clean_title(written: &str) -> Option<String> {
    const QUOTES: &[char] = &['"', '\'', '`', '“', '”', '‘', '’', '«', '»', '*', '#', '_'];
    let line = written.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line);
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let mut title = words.join(" ");
    title = title
        .trim_matches(|c: char| QUOTES.contains(&c) || c.is_whitespace())
        .to_owned();
    if title.chars().count() > MAX_TITLE_CHARS {
        let end = title
            .char_indices()
            .nth(MAX_TITLE_CHARS)
            .map_or(title.len(), |(i, _)| i);
        let head = &title[..end];
        // Cut at the last space when there is one in the second half.
        let at = head
            .rfind(' ')
            .filter(|&i| i > end / 2)
            .unwrap_or(head.len());
        title = head[..at].to_owned();
    }
    let title = title
        .trim_end_matches(|c: char| {
            QUOTES.contains(&c) || c.is_whitespace() || ".,;:!?…-–—".contains(c)
        })
        .to_owned();
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cleaned_of_quotes_labels_and_trailing_punctuation() {
        assert_eq!(
            clean_title("\"Fix the flaky login test.\"").as_deref(),
            Some("Fix the flaky login test")
        );
        assert_eq!(
            clean_title("\n\nTitle: **Refactor  the\tparser**!\nmore").as_deref(),
            Some("Refactor the parser")
        );
        assert_eq!(
            clean_title("“Déployer l’API”…").as_deref(),
            Some("Déployer l’API")
        );
        assert_eq!(clean_title("  \n\"\" ...\n"), None);
        assert_eq!(clean_title(""), None);
    }

    #[test]
    fn long_titles_are_cut_at_a_word_within_80_characters() {
        let long = "word ".repeat(40);
        let title = clean_title(&long).unwrap();
        assert!(title.chars().count() <= MAX_TITLE_CHARS, "{title}");
        assert!(title.ends_with("word"), "{title}");
        let one = "x".repeat(200);
        assert_eq!(clean_title(&one).unwrap().chars().count(), MAX_TITLE_CHARS);
        let wide = "語".repeat(100);
        assert_eq!(clean_title(&wide).unwrap().chars().count(), MAX_TITLE_CHARS);
    }
}
