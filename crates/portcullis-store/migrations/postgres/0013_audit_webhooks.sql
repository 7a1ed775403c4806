-- The audit trail: one row per security event, appended and never changed, except
-- that erasing an account blanks the address and user agent of its rows (the id
-- stays: a random one, pseudonymous once the account is gone) and rows older than
-- the retention setting are deleted. Nothing secret is ever written here.
-- `actor`: who did it ('user:<id>', 'client:<id>', 'operator' for the CLI, NULL
-- when nobody was signed in); `subject`: the account it was done to, when one;
-- `detail`: a JSON object (a reason, a factor, a client id, the fields changed).
CREATE TABLE audit (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT,
    subject    TEXT,
    address    TEXT,
    user_agent TEXT,
    detail     TEXT NOT NULL
);
CREATE INDEX audit_subject ON audit (subject, id);
CREATE INDEX audit_kind ON audit (kind, id);
CREATE INDEX audit_at ON audit (at);

-- Webhook endpoints. `secret`: the signing key (the bytes of the `whsec_` secret),
-- sealed with the key-encryption key like the signing keys, the webhook's id as
-- associated data. `events`: the event types it gets, space separated.
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Webhook deliveries waiting to be made: the transactional outbox of webhooks, written
-- in the same transaction as the audit record of the event. `message_id` is the
-- `webhook-id` header, the same on every attempt and for every endpoint (receivers
-- de-duplicate by it). Claimed, retried and given up on as the mail outbox's messages.
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    message_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    delivered_at    BIGINT,
    failed_at       BIGINT,
    last_error      TEXT,
    UNIQUE (webhook_id, message_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
