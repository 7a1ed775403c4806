-- Email addresses on accounts. `email` is the address as given, its domain in
-- lower-case ASCII (IDNA); `email_key` is the same with the local part lower-cased
-- too, for uniqueness: one mailbox, whatever the case of its local part, is verified by
-- one account at most, and an address nobody has verified never blocks another account.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN email_key TEXT;
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX users_verified_email ON users (email_key) WHERE email_verified;
