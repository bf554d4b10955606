-- AWS Bedrock providers (issue #15 item 5): the `bedrock` kind, the AWS region a Bedrock
-- provider calls (NULL: the worker's own, from AWS_REGION or its profile), and a stored key
-- required of every kind that cannot call without one. `openai-compat` servers may need no
-- key; Bedrock without a stored bearer token signs with the worker's AWS credential chain.
-- The key check is NOT VALID so that rows stored before it (a keyless `openai` provider,
-- whose turns fail with `missing_key`) survive the upgrade; any change to such a row must
-- give it a key. A provider whose users bring their own keys (`allow_user_api_key`, migration
-- 20261204000200) needs no stored key either.

ALTER TABLE providers DROP CONSTRAINT providers_kind_check;
ALTER TABLE providers ADD CONSTRAINT providers_kind_check
    CHECK (kind IN ('openai', 'openai-compat', 'anthropic', 'openrouter', 'bedrock'));

ALTER TABLE providers ADD COLUMN region text
    CHECK (region ~ '^[a-z0-9-]{1,50}$');

ALTER TABLE providers ADD CONSTRAINT providers_api_key_required
    CHECK (api_key_ciphertext IS NOT NULL OR kind IN ('openai-compat', 'bedrock')
           OR allow_user_api_key) NOT VALID;
