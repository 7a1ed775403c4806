-- Rules that must hold under concurrency and across instances. Never edit once landed.

-- One live refresh token per family: the family row names it (current_hash), with the
-- token it replaced (previous_hash, rotated at rotated_at) for the grace-window retry.
-- Every rotation locks the family row, so concurrent redemptions serialize on it.
ALTER TABLE refresh_families ADD COLUMN current_hash BLOB;
ALTER TABLE refresh_families ADD COLUMN previous_hash BLOB;
ALTER TABLE refresh_families ADD COLUMN rotated_at INTEGER;
-- Families that forked under the old rule keep only their newest unrotated token.
UPDATE refresh_families SET current_hash = (
    SELECT t.hash FROM refresh_tokens t
    WHERE t.family_id = refresh_families.id AND t.rotated_at IS NULL
    ORDER BY t.created_at DESC, t.hash LIMIT 1);
UPDATE refresh_families SET
    previous_hash = (
        SELECT t.hash FROM refresh_tokens t
        WHERE t.family_id = refresh_families.id AND t.rotated_at IS NOT NULL
        ORDER BY t.rotated_at DESC, t.hash LIMIT 1),
    rotated_at = (
        SELECT MAX(t.rotated_at) FROM refresh_tokens t
        WHERE t.family_id = refresh_families.id);

-- Login and signup throttle counters, shared by every instance (see the library's
-- throttle module for the rule). One row per account, device, or client address;
-- rows with no attempt for a while are pruned with the rest of retention.
CREATE TABLE throttle (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL
);
CREATE INDEX throttle_last_at ON throttle (last_at);

-- Devices that signed in successfully before (OWASP device cookies): the SHA-256 of a
-- 256-bit credential the device keeps. Attempts that carry one are throttled apart from
-- anonymous attempts, so an attacker's guesses never lock out the owner's device.
CREATE TABLE devices (
    hash         BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);
CREATE INDEX devices_last_used ON devices (last_used_at);

-- The UTS #39 confusable skeleton of the username: two accounts never share one.
-- Filled for older accounts by the store when it opens the database.
ALTER TABLE users ADD COLUMN skeleton TEXT;
CREATE UNIQUE INDEX users_skeleton ON users (skeleton);
