-- Prompt caching per model (issue #19; ARCHITECTURE.md §7). `prompt_caching` says whether
-- requests mark cache breakpoints (Anthropic `cache_control`); on by default, off for a proxy
-- that rejects the field. `cache_ttl` is how long cached prompts live: Anthropic's default
-- five minutes or its one hour (cache writes then cost more).
ALTER TABLE models
    ADD COLUMN prompt_caching boolean NOT NULL DEFAULT true,
    ADD COLUMN cache_ttl text NOT NULL DEFAULT '5m' CHECK (cache_ttl IN ('5m', '1h'));
