-- A title request's claim (ARCHITECTURE.md §7.3): `title_claimed_at` is when a worker began
-- its title call, NULL when no call is in flight. While a claim is younger than the claim's
-- time to live (`store::titles::TITLE_CLAIM_TTL`, longer than the worker's whole title call),
-- no later answer, nudge or titles-off worker claims or closes the request; a failed call
-- clears the stamp, and a worker that died during its call loses the claim when it expires.
ALTER TABLE chats ADD COLUMN title_claimed_at timestamptz;
