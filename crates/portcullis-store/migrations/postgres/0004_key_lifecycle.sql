-- Signing keys move through states on time: next (published, not signing), current
-- (signing), retired (published and verifying until its last token has expired),
-- gone. A key signs from activates_at until the next key's activates_at; the states
-- follow from those times and the clock, so every instance moves keys on time with no
-- event and no restart. Never edit once landed.
ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT;
UPDATE signing_keys SET activates_at = created_at;
-- An automatic rotation names the key it succeeds; one successor per key, so several
-- instances deciding at once add one key, not several.
ALTER TABLE signing_keys ADD COLUMN predecessor TEXT;
CREATE UNIQUE INDEX signing_keys_predecessor ON signing_keys (predecessor);
