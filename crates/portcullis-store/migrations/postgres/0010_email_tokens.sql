-- One-time tokens sent by mail: address verification ('verify': the account's own
-- address; 'change': a new address, which becomes the account's when confirmed) and
-- password reset ('reset'). Only the SHA-256 of each 256-bit token is kept, so a
-- copy of the database resets no password. One live token per account and kind: a
-- new one, a use, or a password change voids the others (used_at set).
-- `email`/`email_key`: the address the token proves, or the verified address a
-- reset link went to (a reset is refused once the account's address is another).
CREATE TABLE email_tokens (
    hash       BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    email      TEXT NOT NULL,
    email_key  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, kind);
CREATE INDEX email_tokens_expires ON email_tokens (expires_at);
