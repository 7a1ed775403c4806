-- What started a refresh family (the login's User-Agent, as sent), so that the account
-- page and GET /session/list can show API logins beside browser sessions.
ALTER TABLE refresh_families ADD COLUMN label TEXT NOT NULL DEFAULT '';
