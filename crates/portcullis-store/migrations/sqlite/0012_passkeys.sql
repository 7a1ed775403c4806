-- Passkeys (WebAuthn credentials). `id`: the credential id, base64url, unique across
-- accounts. `credential`: what the WebAuthn library keeps of it (JSON: the public key,
-- its algorithm, the signature counter, the flags); a public key signs nobody in.
CREATE TABLE passkeys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    credential   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- WebAuthn ceremonies between their start and their finish, on any instance: the
-- SHA-256 of the token the browser holds, what it is for ('register', 'sign_in',
-- 'second_step'), the account and password challenge when known, the library's state
-- (its challenge, the credentials allowed), five minutes, one use.
CREATE TABLE webauthn_ceremonies (
    hash       BLOB PRIMARY KEY,
    kind       TEXT NOT NULL,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    challenge  BLOB,
    state      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies (expires_at);
