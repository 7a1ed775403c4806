//! Second factors: [`FactorStore`].
//!
//! Every change is one write transaction that takes the account's row first (the lock
//! order of `set_scope`, `revoke_user` and the recovery store), so enrolments, removals,
//! completions and resets serialize per account on both backends. What is spent (a
//! TOTP time step, a recovery code, a challenge) is spent by a conditional update whose
//! row count is the answer: two instances completing with one code cannot both win.

use super::families::{end_user_grants, move_not_before};
use super::{Affected as _, Backend, SqlStore, insert_event, lock_user};
use crate::{
    Ceremony, CeremonyKind, Challenge, Completion, Error, EventKind, FactorStore, NewCeremony,
    NewChallenge, NewPasskey, SecondFactor, StoredPasskey, TokenHash, TotpSecret, User,
};

#[async_trait::async_trait]
impl<DB> FactorStore for SqlStore<DB>
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
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> bool: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<String>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<i64>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn begin_totp(&self, user_id: &str, sealed: &str, now: i64) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        if lock_account(&mut tx, user_id).await?.is_none() {
            return Ok(false);
        }
        // Replaces an unconfirmed secret only: a confirmed one stays until removed.
        let written = sqlx::query(
            "INSERT INTO totp_secrets (user_id, sealed_secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             created_at = excluded.created_at, last_step = 0 \
             WHERE totp_secrets.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(written == 1)
    }

    async fn totp_of(&self, user_id: &str) -> Result<Option<TotpSecret>, Error> {
        Ok(sqlx::query_as(
            "SELECT sealed_secret, confirmed_at, last_step FROM totp_secrets WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        step: i64,
        codes: &[TokenHash],
        now: i64,
    ) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        if lock_account(&mut tx, user_id).await?.is_none() {
            return Ok(false);
        }
        let confirmed = sqlx::query(
            "UPDATE totp_secrets SET confirmed_at = $1, last_step = $2 \
             WHERE user_id = $3 AND confirmed_at IS NULL AND last_step < $2",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if confirmed != 1 {
            return Ok(false);
        }
        put_recovery_codes(&mut tx, user_id, codes, now).await?;
        sync_factors(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_totp(&self, user_id: &str) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        if lock_account(&mut tx, user_id).await?.is_none() {
            return Ok(false);
        }
        let removed = sqlx::query("DELETE FROM totp_secrets WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        after_removal(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        codes: &[TokenHash],
        now: i64,
    ) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        match lock_account(&mut tx, user_id).await? {
            Some(account) if !account.factors.trim().is_empty() => {}
            _ => return Ok(false),
        }
        put_recovery_codes(&mut tx, user_id, codes, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<(u32, Option<i64>), Error> {
        let (left, last_used): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*) - COUNT(used_at), MAX(used_at) FROM recovery_codes \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((u32::try_from(left).unwrap_or(0), last_used))
    }

    async fn create_challenge(&self, c: &NewChallenge) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO mfa_challenges (hash, user_id, not_before, device, created_at, \
             expires_at, first_step) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.hash.0[..])
        .bind(c.user_id.as_str())
        .bind(c.not_before)
        .bind(c.device.as_deref())
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.first_step.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn try_challenge(
        &self,
        hash: &TokenHash,
        max_attempts: i64,
        now: i64,
    ) -> Result<Option<Challenge>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The update is the check: concurrent attempts serialize on the row, and each
        // sees the count the one before it left.
        let taken: Option<Challenge> = sqlx::query_as(
            "UPDATE mfa_challenges SET attempts = attempts + 1 \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3 \
             RETURNING user_id, device, attempts, first_step",
        )
        .bind(&hash.0[..])
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn complete_challenge(
        &self,
        hash: &TokenHash,
        factor: SecondFactor<'_>,
        now: i64,
    ) -> Result<Completion, Error> {
        // Whose challenge first, without a lock (its row never changes but for its
        // counters), so that the account's row is locked before the challenge's.
        let Some((user_id,)): Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM mfa_challenges WHERE hash = $1")
                .bind(&hash.0[..])
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(Completion::Invalid);
        };
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(account) = lock_account(&mut tx, &user_id).await? else {
            return Ok(Completion::Invalid);
        };
        let live: Option<(i64,)> = sqlx::query_as(
            "SELECT not_before FROM mfa_challenges \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(&hash.0[..])
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((not_before,)) = live else {
            return Ok(Completion::Invalid);
        };
        if account.disabled || account.not_before != not_before {
            return Ok(Completion::Invalid);
        }
        let spent = match factor {
            SecondFactor::Totp { failure_limit, .. }
                if account.factor_failures >= failure_limit =>
            {
                return Ok(Completion::Locked);
            }
            SecondFactor::Totp { step, .. } => raise_step(&mut tx, &user_id, step).await?,
            SecondFactor::RecoveryCode(code) => {
                sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1 \
                     WHERE hash = $2 AND user_id = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(&code.0[..])
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            SecondFactor::Passkey => true,
        };
        if !spent {
            return Ok(Completion::Refused);
        }
        let used = sqlx::query(
            "UPDATE mfa_challenges SET used_at = $1 WHERE hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&hash.0[..])
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(Completion::Invalid);
        }
        sqlx::query("UPDATE users SET factor_failures = 0 WHERE id = $1")
            .bind(user_id.as_str())
            .execute(&mut *tx)
            .await?;
        let user: User = sqlx::query_as(
            "SELECT id, username, password_hash, scope, disabled, not_before, created_at, \
             email, email_verified, factors FROM users WHERE id = $1",
        )
        .bind(user_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Completion::Done(user))
    }

    async fn sealed_totp_secrets(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(
            sqlx::query_as("SELECT user_id, sealed_secret FROM totp_secrets ORDER BY user_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn reseal_totp_secret(&self, user_id: &str, old: &str, new: &str) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let replaced = sqlx::query(
            "UPDATE totp_secrets SET sealed_secret = $1 WHERE user_id = $2 AND sealed_secret = $3",
        )
        .bind(new)
        .bind(user_id)
        .bind(old)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(replaced == 1)
    }

    async fn add_passkey(&self, p: &NewPasskey, max: usize, now: i64) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        if lock_account(&mut tx, &p.user_id).await?.is_none() {
            return Ok(false);
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
            .bind(p.user_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max {
            return Ok(false);
        }
        let added = sqlx::query(
            "INSERT INTO passkeys (id, user_id, label, credential, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(p.id.as_str())
        .bind(p.user_id.as_str())
        .bind(p.label.as_str())
        .bind(p.credential.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added != 1 {
            return Ok(false);
        }
        sync_factors(&mut tx, &p.user_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn passkeys_of(&self, user_id: &str) -> Result<Vec<StoredPasskey>, Error> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, label, credential, created_at, last_used_at FROM passkeys \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn passkey(&self, id: &str) -> Result<Option<StoredPasskey>, Error> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, label, credential, created_at, last_used_at FROM passkeys \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn touch_passkey(&self, id: &str, credential: &str, now: i64) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query("UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3")
            .bind(credential)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_passkey(&self, user_id: &str, id: &str) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        if lock_account(&mut tx, user_id).await?.is_none() {
            return Ok(false);
        }
        let removed = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        after_removal(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(removed == 1)
    }

    async fn create_ceremony(&self, c: &NewCeremony) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (hash, kind, user_id, challenge, state, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.hash.0[..])
        .bind(c.kind.as_str())
        .bind(c.user_id.as_deref())
        .bind(c.challenge.as_ref().map(|h| &h.0[..]))
        .bind(c.state.as_str())
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_ceremony(&self, hash: &TokenHash, now: i64) -> Result<Option<Ceremony>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The update is the check: of two finishes of one ceremony, one takes it.
        let row: Option<(String, Option<String>, Option<Vec<u8>>, String)> = sqlx::query_as(
            "UPDATE webauthn_ceremonies SET used_at = $1 \
             WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING kind, user_id, challenge, state",
        )
        .bind(now)
        .bind(&hash.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.and_then(|(kind, user_id, challenge, state)| {
            Some(Ceremony {
                kind: CeremonyKind::parse(&kind)?,
                user_id,
                challenge: match challenge {
                    Some(bytes) => Some(TokenHash(bytes.try_into().ok()?)),
                    None => None,
                },
                state,
            })
        }))
    }

    async fn challenge_user(&self, hash: &TokenHash, now: i64) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT user_id FROM mfa_challenges \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(&hash.0[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(u,)| u))
    }

    async fn count_factor_failure(&self, user_id: &str) -> Result<i64, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let count: Option<(i64,)> = sqlx::query_as(
            "UPDATE users SET factor_failures = factor_failures + 1 WHERE id = $1 \
             RETURNING factor_failures",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(count.map_or(0, |(n,)| n))
    }

    async fn set_session_amr(&self, session_id: &str, amr: &str) -> Result<(), Error> {
        sqlx::query("UPDATE sessions SET amr = $1 WHERE id = $2")
            .bind(amr)
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reset_factors(&self, user_id: &str, now: i64) -> Result<Option<Vec<String>>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        if lock_account(&mut tx, user_id).await?.is_none() {
            return Ok(None);
        }
        for table in [
            "totp_secrets",
            "recovery_codes",
            "mfa_challenges",
            "passkeys",
            "webauthn_ceremonies",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        sync_factors(&mut tx, user_id).await?;
        let ended = end_user_grants(&mut tx, user_id, None, now).await?;
        move_not_before(&mut tx, user_id, now).await?;
        insert_event(&mut tx, EventKind::FactorsReset, user_id, now).await?;
        tx.commit().await?;
        Ok(Some(ended))
    }
}

/// The account's row as the factor writers read it, under its lock.
#[derive(sqlx::FromRow)]
struct Account {
    disabled: bool,
    not_before: i64,
    factors: String,
    factor_failures: i64,
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
        "SELECT disabled, not_before, factors, factor_failures FROM users WHERE id = $1",
    )
    .await
}

/// Accepts a confirmed secret's code of time step `step` if no code of that step or a
/// later one was accepted: the one check that refuses a replay, on every instance.
async fn raise_step<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
    step: i64,
) -> Result<bool, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    Ok(sqlx::query(
        "UPDATE totp_secrets SET last_step = $1 \
         WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1",
    )
    .bind(step)
    .bind(user_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// Replaces the account's recovery codes.
async fn put_recovery_codes<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
    codes: &[TokenHash],
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
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for code in codes {
        sqlx::query("INSERT INTO recovery_codes (hash, user_id, created_at) VALUES ($1, $2, $3)")
            .bind(&code.0[..])
            .bind(user_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// After a factor's removal: `users.factors` again, and, with no factor left, the
/// recovery codes go (they stand in for a factor; alone they would mean nothing).
async fn after_removal<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    if sync_factors(tx, user_id).await?.is_empty() {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Recomputes `users.factors` from the factor tables (the one place that decides
/// what the column says); the new value.
async fn sync_factors<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
) -> Result<String, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    // A new, removed or reset factor starts the count of wrong codes over.
    let (factors,): (String,) = sqlx::query_as(
        "UPDATE users SET factors = TRIM(\
         CASE WHEN EXISTS (SELECT 1 FROM totp_secrets \
         WHERE user_id = $1 AND confirmed_at IS NOT NULL) THEN 'totp' ELSE '' END || ' ' || \
         CASE WHEN EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1) \
         THEN 'webauthn' ELSE '' END), \
         factor_failures = 0 WHERE id = $1 RETURNING factors",
    )
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(factors)
}
