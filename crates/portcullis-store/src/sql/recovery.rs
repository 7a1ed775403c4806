//! One-time mail tokens and password changes: [`RecoveryStore`].
//!
//! Every method is one write transaction that takes the account's row first (the lock
//! order of `set_scope` and `revoke_user`), so that issuing, redeeming and changing
//! serialize per account on both backends: of ten reset requests at once, the last
//! to commit leaves the one live token; a reset racing a password change either sees
//! the changed hash or is voided by it.

use super::families::{end_user_grants, move_not_before};
use super::mail::insert_mail;
use super::users::insert_user;
use super::{Backend, SqlStore, lock_user};
use crate::{
    EmailTokenKind, Error, NewEmailToken, NewMail, NewUser, Purpose, RecoveryStore, Redeemed,
    TokenHash, User,
};

/// The account's row as issuing and redeeming read it, under its lock.
#[derive(sqlx::FromRow)]
struct Account {
    disabled: bool,
    email_key: Option<String>,
    email_verified: bool,
    password_hash: String,
}

/// A token's row.
#[derive(sqlx::FromRow)]
struct TokenRow {
    user_id: String,
    kind: String,
    email: String,
    email_key: String,
    expires_at: i64,
    used_at: Option<i64>,
}

#[async_trait::async_trait]
impl<DB> RecoveryStore for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> bool: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<String>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<i64>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn create_user_with_token(
        &self,
        user: NewUser,
        token: &NewEmailToken,
        mail: &NewMail,
    ) -> Result<User, Error> {
        let now = user.created_at;
        let (_turn, mut tx) = self.begin_write().await?;
        let user = insert_user(&mut tx, user).await?;
        insert_token(&mut tx, token, now).await?;
        insert_mail(&mut tx, mail, now).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn issue_email_token(
        &self,
        token: &NewEmailToken,
        mails: &[NewMail],
        now: i64,
    ) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(account) = lock_account(&mut tx, &token.user_id).await? else {
            return Ok(false);
        };
        let current = account.email_key.as_deref() == Some(token.email.key.as_str());
        let fits = !account.disabled
            && match token.kind {
                EmailTokenKind::Verify => current,
                EmailTokenKind::Change => true,
                EmailTokenKind::Reset => current && account.email_verified,
            };
        if !fits {
            return Ok(false);
        }
        void_tokens(&mut tx, &token.user_id, token.kind, now).await?;
        insert_token(&mut tx, token, now).await?;
        for mail in mails {
            insert_mail(&mut tx, mail, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn redeem_email_token(
        &self,
        hash: &TokenHash,
        purpose: Purpose<'_>,
        now: i64,
    ) -> Result<Redeemed, Error> {
        // Which account first, without a lock (a token's row never changes but for
        // `used_at`), so that the account's row is locked before the token's: the one
        // lock order of every writer here.
        let Some((user_id,)): Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM email_tokens WHERE hash = $1")
                .bind(&hash.0[..])
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(Redeemed::Invalid);
        };
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(account) = lock_account(&mut tx, &user_id).await? else {
            return Ok(Redeemed::Invalid);
        };
        let Some(token): Option<TokenRow> = sqlx::query_as(
            "SELECT user_id, kind, email, email_key, expires_at, used_at \
             FROM email_tokens WHERE hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Redeemed::Invalid);
        };
        let kind = EmailTokenKind::parse(&token.kind);
        let current = account.email_key.as_deref() == Some(token.email_key.as_str());
        let usable = token.user_id == user_id
            && token.used_at.is_none()
            && now < token.expires_at
            && !account.disabled;
        let redeemed = match (usable, kind, purpose) {
            (true, Some(EmailTokenKind::Verify), Purpose::Address) if current => {
                sqlx::query("UPDATE users SET email_verified = $1 WHERE id = $2")
                    .bind(true)
                    .bind(user_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                Redeemed::Verified {
                    user_id: user_id.clone(),
                    email: token.email,
                }
            }
            (true, Some(EmailTokenKind::Change), Purpose::Address) => {
                sqlx::query(
                    "UPDATE users SET email = $1, email_key = $2, email_verified = $3 \
                     WHERE id = $4",
                )
                .bind(token.email.as_str())
                .bind(token.email_key.as_str())
                .bind(true)
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?;
                // A link to verify the address the account had no longer applies.
                void_tokens(&mut tx, &user_id, EmailTokenKind::Verify, now).await?;
                // Nor does a reset link sent to it.
                void_tokens(&mut tx, &user_id, EmailTokenKind::Reset, now).await?;
                Redeemed::Verified {
                    user_id: user_id.clone(),
                    email: token.email,
                }
            }
            (true, Some(EmailTokenKind::Reset), Purpose::Password(new_hash))
                if current && account.email_verified =>
            {
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(new_hash)
                    .bind(user_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let ended = end_user_grants(&mut tx, &user_id, None, now).await?;
                sqlx::query("DELETE FROM devices WHERE user_id = $1")
                    .bind(user_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let not_before = move_not_before(&mut tx, &user_id, now).await?;
                Redeemed::PasswordReset {
                    user_id: user_id.clone(),
                    ended,
                    not_before,
                }
            }
            _ => return Ok(Redeemed::Invalid),
        };
        // Used, whatever else it voided above.
        sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE hash = $2")
            .bind(now)
            .bind(&hash.0[..])
            .execute(&mut *tx)
            .await?;
        if let Some(kind) = kind {
            void_tokens(&mut tx, &user_id, kind, now).await?;
        }
        tx.commit().await?;
        Ok(redeemed)
    }

    async fn change_password(
        &self,
        user_id: &str,
        expected_hash: &str,
        new_hash: &str,
        keep: Option<&str>,
        mails: &[NewMail],
        now: i64,
    ) -> Result<Option<Vec<String>>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(account) = lock_account(&mut tx, user_id).await? else {
            return Ok(None);
        };
        if account.disabled || account.password_hash != expected_hash {
            return Ok(None);
        }
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(new_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        void_tokens(&mut tx, user_id, EmailTokenKind::Reset, now).await?;
        // A sign-in waiting for its second factor checked the old password.
        sqlx::query("DELETE FROM mfa_challenges WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ended = end_user_grants(&mut tx, user_id, keep, now).await?;
        for mail in mails {
            insert_mail(&mut tx, mail, now).await?;
        }
        tx.commit().await?;
        Ok(Some(ended))
    }
}

/// Locks the account's row and reads it (`lock_user`).
async fn lock_account<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
) -> Result<Option<Account>, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Account: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    lock_user(
        tx,
        user_id,
        "SELECT disabled, email_key, email_verified, password_hash FROM users WHERE id = $1",
    )
    .await
}

/// Voids the account's live tokens of `kind`.
async fn void_tokens<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
    kind: EmailTokenKind,
    now: i64,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "UPDATE email_tokens SET used_at = $1 \
         WHERE user_id = $2 AND kind = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(kind.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_token<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    token: &NewEmailToken,
    now: i64,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO email_tokens (hash, user_id, kind, email, email_key, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&token.hash.0[..])
    .bind(token.user_id.as_str())
    .bind(token.kind.as_str())
    .bind(token.email.address.as_str())
    .bind(token.email.key.as_str())
    .bind(now)
    .bind(token.expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
