//! The authorization-code flow: codes, consents and the grants clients hold: [`GrantStore`].

use portcullis::grant::{CodeView, Exchange, Presented, decide_exchange, effective_scope};

use super::{Affected as _, Backend, SqlStore, insert_event};
use crate::{
    AuthCode, CodeExchange, Consent, Error, EventKind, Exchanged, GrantStore, RefreshInfo,
    RotationPolicy, TokenHash,
};

/// An authorization code row, with what its use left behind.
#[derive(sqlx::FromRow)]
struct CodeRow {
    hash: Vec<u8>,
    client_id: String,
    user_id: String,
    redirect_uri: String,
    scope: String,
    code_challenge: String,
    nonce: Option<String>,
    auth_time: i64,
    session_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    family_id: Option<String>,
    amr: String,
}

impl CodeRow {
    fn code(self) -> AuthCode {
        AuthCode {
            hash: self.hash,
            client_id: self.client_id,
            user_id: self.user_id,
            redirect_uri: self.redirect_uri,
            scope: self.scope,
            code_challenge: self.code_challenge,
            nonce: self.nonce,
            auth_time: self.auth_time,
            session_id: self.session_id,
            amr: self.amr,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// The person's username, scope and `disabled`, the client's `disabled`, the
/// session's owner and `revoked_at`, the person's "not before", email address and
/// whether it is verified, as the exchange reads them (`None` where a row is missing).
type AccountRow = (
    String,
    String,
    bool,
    Option<bool>,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    bool,
);

/// Uses a code up.
async fn mark_used<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    x: &CodeExchange<'_>,
    now: i64,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("UPDATE authorization_codes SET used_at = $1 WHERE hash = $2")
        .bind(now)
        .bind(&x.code.0[..])
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl<DB> GrantStore for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q [u8]>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Vec<u8>: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> bool: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<String>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<i64>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<bool>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn add_code(&self, code: &AuthCode) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, scope, \
             code_challenge, nonce, auth_time, session_id, created_at, expires_at, amr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&code.hash)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(&code.code_challenge)
        .bind(code.nonce.as_deref())
        .bind(code.auth_time)
        .bind(&code.session_id)
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(&code.amr)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn exchange_code(&self, x: &CodeExchange<'_>, now: i64) -> Result<Exchanged, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Locks in the order the other writers take them: the person's row first (as
        // `set_scope` and `revoke_user` do), so that a scope removal, a disable or a
        // logout everywhere either commits before this exchange reads the account or
        // waits and sees the family it starts; then the client's row (a disable
        // likewise); then the code, where concurrent exchanges of one code serialize
        // and the second sees the first's `used_at`; then the session the person
        // signed in with, so a sign-out racing this exchange is ordered with it:
        // before, and the code is refused; after, and the exchange came first (its
        // grant, like every grant, outlives the sign-out: docs/oauth.md).
        sqlx::query(
            "UPDATE users SET scope = scope \
             WHERE id = (SELECT user_id FROM authorization_codes WHERE hash = $1)",
        )
        .bind(&x.code.0[..])
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE clients SET disabled = disabled \
             WHERE id = (SELECT client_id FROM authorization_codes WHERE hash = $1)",
        )
        .bind(&x.code.0[..])
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE authorization_codes SET used_at = used_at WHERE hash = $1")
            .bind(&x.code.0[..])
            .execute(&mut *tx)
            .await?;
        let row: Option<CodeRow> = sqlx::query_as(
            "SELECT hash, client_id, user_id, redirect_uri, scope, code_challenge, nonce, \
             auth_time, session_id, created_at, expires_at, used_at, family_id, amr \
             FROM authorization_codes WHERE hash = $1",
        )
        .bind(&x.code.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Exchanged::Refused);
        };
        sqlx::query("UPDATE sessions SET revoked_at = revoked_at WHERE id = $1")
            .bind(&row.session_id)
            .execute(&mut *tx)
            .await?;
        let account: Option<AccountRow> = sqlx::query_as(
            "SELECT u.username, u.scope, u.disabled, c.disabled, s.user_id, s.revoked_at, \
             u.not_before, u.email, u.email_verified \
             FROM users u \
             LEFT JOIN clients c ON c.id = $2 \
             LEFT JOIN sessions s ON s.id = $3 \
             WHERE u.id = $1",
        )
        .bind(&row.user_id)
        .bind(&row.client_id)
        .bind(&row.session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let view = CodeView {
            used: row.used_at.is_some(),
            expires_at: row.expires_at,
            client_id: &row.client_id,
            redirect_uri: &row.redirect_uri,
            challenge: &row.code_challenge,
            person_enabled: account.as_ref().is_some_and(|a| !a.2),
            client_enabled: account.as_ref().is_some_and(|a| a.3 == Some(false)),
            session_live: account
                .as_ref()
                .is_some_and(|a| a.4.as_deref() == Some(row.user_id.as_str()) && a.5.is_none()),
        };
        let presented = Presented {
            client_id: x.client_id,
            redirect_uri: x.redirect_uri,
            challenge: x.challenge,
        };
        match decide_exchange(&view, &presented, now) {
            Exchange::Replay => {
                if let Some(family_id) = &row.family_id {
                    let revoked: Option<(String,)> = sqlx::query_as(
                        "UPDATE refresh_families SET revoked_at = $1 \
                         WHERE id = $2 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(now)
                    .bind(family_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if revoked.is_some() {
                        insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now).await?;
                    }
                }
                tx.commit().await?;
                Ok(Exchanged::Replayed {
                    family_id: row.family_id,
                })
            }
            Exchange::Refuse => {
                // Used up all the same: a code is tried once.
                mark_used(&mut tx, x, now).await?;
                tx.commit().await?;
                Ok(Exchanged::Refused)
            }
            Exchange::Grant => {
                mark_used(&mut tx, x, now).await?;
                let Some((username, account_scope, .., not_before, email, email_verified)) =
                    account
                else {
                    // `decide_exchange` grants only with the account read; should that
                    // change, the code is still used up.
                    tx.commit().await?;
                    return Ok(Exchanged::Refused);
                };
                let scope = effective_scope(&row.scope, &account_scope);
                sqlx::query(
                    "INSERT INTO refresh_families (id, user_id, scope, created_at, last_used_at, \
                     current_hash, label, client_id, auth_time, amr) \
                     VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)",
                )
                .bind(x.family_id)
                .bind(&row.user_id)
                .bind(&scope)
                .bind(now)
                .bind(&x.refresh.0[..])
                .bind(x.label)
                .bind(x.client_id)
                .bind(row.auth_time)
                .bind(&row.amr)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)",
                )
                .bind(&x.refresh.0[..])
                .bind(x.family_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE authorization_codes SET family_id = $1 WHERE hash = $2")
                    .bind(x.family_id)
                    .bind(&x.code.0[..])
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Exchanged::Granted {
                    code: Box::new(row.code()),
                    scope,
                    username,
                    not_before,
                    email,
                    email_verified,
                })
            }
        }
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<String>, Error> {
        let scope: Option<(String,)> =
            sqlx::query_as("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(scope.map(|(s,)| s))
    }

    async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Lock the row (if any) before reading it.
        sqlx::query("UPDATE consents SET scope = scope WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        let before: Option<(String,)> =
            sqlx::query_as("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
        let mut all: Vec<&str> = before
            .as_ref()
            .map(|(s,)| s.split_whitespace().collect())
            .unwrap_or_default();
        for s in scope.split_whitespace() {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = $3, created_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(all.join(" "))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consents_of(&self, user_id: &str) -> Result<Vec<Consent>, Error> {
        Ok(sqlx::query_as(
            "SELECT c.client_id, k.name AS client_name, c.scope, c.created_at \
             FROM consents c JOIN clients k ON k.id = c.client_id \
             WHERE c.user_id = $1 ORDER BY k.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The codes first: an exchange in flight holds its code's lock, so this
        // waits for it to commit, and the families update below then sees the
        // family it started. An unused code is used up: it would start a grant
        // the person just removed.
        sqlx::query(
            "UPDATE authorization_codes SET used_at = $1 \
             WHERE user_id = $2 AND client_id = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        let withdrawn = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let families: Vec<(String,)> = sqlx::query_as(
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&mut *tx)
        .await?;
        for (family_id,) in &families {
            insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now).await?;
        }
        tx.commit().await?;
        Ok((withdrawn > 0 || !families.is_empty())
            .then(|| families.into_iter().map(|(id,)| id).collect()))
    }

    async fn refresh_info(
        &self,
        token: &TokenHash,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Option<RefreshInfo>, Error> {
        let row: Option<(String, String, Option<String>, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT f.id, f.user_id, f.client_id, f.scope, t.created_at, f.created_at, f.last_used_at \
             FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id \
             JOIN users u ON u.id = f.user_id \
             WHERE t.hash = $1 AND f.current_hash = t.hash \
             AND f.revoked_at IS NULL AND NOT u.disabled",
        )
        .bind(&token.0[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(
            |(family_id, user_id, client_id, scope, issued, started, used)| {
                // The same bounds as `refresh::decide`.
                let expires_at = (started + policy.absolute).min(used + policy.idle);
                (now <= expires_at).then_some(RefreshInfo {
                    family_id,
                    user_id,
                    client_id,
                    scope,
                    created_at: issued,
                    expires_at,
                })
            },
        ))
    }

    async fn revoke_client_family(
        &self,
        client_id: &str,
        family_id: &str,
        now: i64,
    ) -> Result<bool, Error> {
        self.revoke_owned_family(
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE id = $2 AND client_id = $3 AND revoked_at IS NULL RETURNING id",
            client_id,
            family_id,
            now,
        )
        .await
    }
}
