-- Upstream identity providers (`portcullis providers add`): OpenID Connect providers
-- found by discovery, or GitHub's OAuth 2.0. The client secret is sealed with the
-- key-encryption key, as the signing keys and authenticator secrets are.
CREATE TABLE providers (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    sealed_secret TEXT,
    scope         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- One person at one provider (its `sub`, never an address), linked to one account.
-- No foreign key to `providers`: a provider removed and added again under the same
-- name signs the same people in to the same accounts.
CREATE TABLE identities (
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user ON identities (user_id);
-- An account has at most one identity per provider.
CREATE UNIQUE INDEX identities_user_provider ON identities (user_id, provider);

-- How the first step of a sign-in awaiting its second factor was done: `pwd`, or
-- `fed idp:NAME` for a sign-in through an upstream provider. The second step's `amr`
-- begins with it.
ALTER TABLE mfa_challenges ADD COLUMN first_step TEXT NOT NULL DEFAULT 'pwd';
