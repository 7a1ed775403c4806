-- Machine clients (OAuth 2.0 client credentials, RFC 6749 §4.4): a program that gets
-- access tokens as itself, with the scopes it was registered with. Only the SHA-256 of
-- its 256-bit secret is kept. `not_before` works as a user's: disabling a client moves
-- it, and access tokens issued to the client before it are refused.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    scope       TEXT NOT NULL,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    not_before  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
