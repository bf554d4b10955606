//! Which attached files a step's request carries (issue #14, item 3; ARCHITECTURE.md §7).
//!
//! Every request of a chat carries the files of every user message still in its history,
//! so the model can look at an image again three turns later. That is bounded: at most
//! [`MAX_FILE_BYTES_PER_REQUEST`] of file content per request, the files of the newest
//! messages first (the ones the conversation is most likely about); an older file that does
//! not fit goes as a note naming it (`providers::attachments`). Sizes are read first and
//! only the chosen files' content is loaded, so a chat of fifty 10 MiB files does not read
//! half a gigabyte per step. A file the chat no longer links is not loaded.

use std::collections::HashSet;

use agentq_core::{
    StoreError,
    domain::{Message, MessagePart, Role},
    store::Store,
};
use uuid::Uuid;

use crate::providers::Attachments;

/// The most bytes of file content one request carries (before base64, which adds a
/// third): below Anthropic's 32 MB request limit with room for the conversation.
pub const MAX_FILE_BYTES_PER_REQUEST: i64 = 16 * 1024 * 1024;

/// The content of the files `history`'s user messages attach, within the budget.
pub async fn load(
    store: &Store,
    chat_id: Uuid,
    history: &[Message],
) -> Result<Attachments, StoreError> {
    let wanted = newest_first(history);
    if wanted.is_empty() {
        return Ok(Attachments::default());
    }
    let sizes = store.linked_file_sizes(chat_id, &wanted).await?;
    let (chosen, over_budget) = choose(&wanted, &sizes, MAX_FILE_BYTES_PER_REQUEST);
    let loaded = if chosen.is_empty() {
        Vec::new()
    } else {
        store.linked_file_contents(chat_id, &chosen).await?
    };
    Ok(Attachments::new(
        loaded,
        over_budget,
        MAX_FILE_BYTES_PER_REQUEST,
    ))
}

/// The ids of the files user messages attach, newest message first, each once.
fn newest_first(history: &[Message]) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    history
        .iter()
        .rev()
        .filter(|m| m.role == Role::User)
        .flat_map(|m| m.content.iter())
        .filter_map(|part| match part {
            MessagePart::File { file_id, .. } => Some(*file_id),
            _ => None,
        })
        .filter(|id| seen.insert(*id))
        .collect()
}

/// The files of `wanted` (in order) that fit `budget` together, and those that did not.
/// A file without a size is not linked any more: neither.
fn choose(wanted: &[Uuid], sizes: &[(Uuid, i64)], budget: i64) -> (Vec<Uuid>, HashSet<Uuid>) {
    let mut total = 0;
    let mut chosen = Vec::new();
    let mut over = HashSet::new();
    for id in wanted {
        let Some((_, size)) = sizes.iter().find(|(f, _)| f == id) else {
            continue;
        };
        if total + size <= budget {
            total += size;
            chosen.push(*id);
        } else {
            over.insert(*id);
        }
    }
    (chosen, over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_files_fill_the_budget_and_a_smaller_older_one_may_still_fit() {
        let [a, b, c, d] = [(); 4].map(|_| Uuid::now_v7());
        let sizes = [(a, 60), (b, 50), (c, 30)];
        // Newest first: a (60) fits, b (50) does not, c (30) still does; d is unlinked.
        let (chosen, over) = choose(&[a, b, c, d], &sizes, 100);
        assert_eq!(chosen, vec![a, c]);
        assert_eq!(over, HashSet::from([b]));
    }
}
