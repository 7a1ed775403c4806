-- OAuth 2.1 and OpenID Connect (the authorization-code flow).
--
-- Clients gain what the code flow needs: the redirect URIs they registered (matched
-- exactly), the URIs they may send a person to after signing out, whether they are
-- public (no secret: single-page and native apps, PKCE only) and whether they are
-- first-party (no consent page). Lists are space-separated: a URI has no spaces.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN public BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN first_party BOOLEAN NOT NULL DEFAULT FALSE;

-- A refresh family the code flow started belongs to its client: only that client can
-- refresh it (NULL: a password login's family, refreshed at /auth/refresh). The time
-- the person signed in is kept for the ID tokens of the grant.
ALTER TABLE refresh_families ADD COLUMN client_id TEXT;
ALTER TABLE refresh_families ADD COLUMN auth_time BIGINT;
CREATE INDEX refresh_families_client ON refresh_families (client_id);

-- Authorization codes, by their SHA-256 only. Single use: `used_at` is set by the
-- first exchange, whatever its outcome; `family_id` is what a successful exchange
-- issued, revoked if the code is presented again.
CREATE TABLE authorization_codes (
    hash           BYTEA PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    auth_time      BIGINT NOT NULL,
    session_id     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    family_id      TEXT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

-- What a person allowed a client (not first-party) to have, so the consent page is
-- not shown again for the same scopes. Revoked from the account page.
CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
