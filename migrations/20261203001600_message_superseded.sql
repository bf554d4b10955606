-- Edit and regenerate (issue #13, item 6) replace the end of a conversation. The replaced
-- messages are kept (an assistant message's cost still counts, and the history stays
-- auditable) but marked: `superseded_at` is when an edit or a regenerate replaced the
-- message, and from then on no prompt includes it and the message list hides it unless
-- asked (`?include_superseded=true`). A message is never un-superseded.
ALTER TABLE chat_messages ADD COLUMN superseded_at timestamptz;
