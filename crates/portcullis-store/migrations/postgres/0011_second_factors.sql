-- Second factors. `users.factors`: the account's confirmed methods, space separated
-- ('totp', 'webauthn'), kept with the rows below in the same transactions, so that a
-- password login learns from the row it already reads whether a second step follows.
ALTER TABLE users ADD COLUMN factors TEXT NOT NULL DEFAULT '';
-- Wrong authenticator codes since the last second step that succeeded: at the limit
-- (NIST SP 800-63B: at most 100 consecutive failures) codes are refused until a
-- recovery code signs in, the app is set up again, or an operator resets the factors.
ALTER TABLE users ADD COLUMN factor_failures BIGINT NOT NULL DEFAULT 0;

-- How each grant was authenticated (RFC 8176 values, space separated), minted into its
-- access tokens as `amr`. Everything before this migration was a password.
ALTER TABLE refresh_families ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE authorization_codes ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';

-- An authenticator app's secret (RFC 6238), sealed with the key-encryption key like
-- the signing keys. `confirmed_at` is NULL while enrolment awaits its first code; then
-- nothing changes for login. `last_step`: the highest time step a code was accepted
-- for; a code of that step or an earlier one is refused (a code works once, on every
-- instance: the update that raises it is the check).
CREATE TABLE totp_secrets (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT NOT NULL DEFAULT 0
);

-- Single-use recovery codes: the SHA-256 of the account's id and the code (80 random
-- bits each), so a copy of the database signs nobody in. A new set replaces the old.
CREATE TABLE recovery_codes (
    hash       BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- A password step awaiting its second factor: the SHA-256 of the `mfa_token`, the
-- account and its "not before" when the password was checked (a reset, a change, a
-- logout everywhere or a disabling since then voids it), the device lane the password
-- step was admitted in, how many codes were tried with it, and its use.
CREATE TABLE mfa_challenges (
    hash       BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    not_before BIGINT NOT NULL,
    device     TEXT,
    attempts   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);
