-- Mail waiting to be sent: the transactional outbox. A message is written in the
-- transaction of the change that causes it, so the change and its mail commit or
-- roll back together; a background sender delivers it and writes down the outcome.
-- `message_id` is the Message-ID header, the same on every attempt, so that a message
-- delivered twice (the sender died between the SMTP server's acceptance and writing it
-- down) is recognisably one. `claimed_until`: a sender holds the message until then
-- (another may take it after, if the first died). `attempts` counts claims.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    failed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
