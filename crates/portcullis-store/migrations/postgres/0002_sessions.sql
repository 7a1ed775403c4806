-- Cookie sessions. A row is found by the SHA-256 of the cookie's secret (never the
-- secret itself); `id` is a public handle for the user's device list and for the `sid`
-- of access tokens minted from the session. Revoked rows are kept (revoked_at set) so
-- that instances starting later still refuse those tokens.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    secret_hash  BYTEA NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    label        TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_revoked ON sessions (revoked_at);
