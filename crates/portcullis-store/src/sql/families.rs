//! Refresh-token families and logout everywhere: [`FamilyStore`].

use portcullis::refresh::{Decision, FamilyView, decide};

use super::{Backend, SqlStore, insert_event};
use crate::{
    Error, EventKind, FamilyInfo, FamilyStart, FamilyStore, RevokedState, Rotation, RotationPolicy,
    Started, TokenHash, not_before_after,
};

/// A family row as the rotation reads it.
#[derive(sqlx::FromRow)]
struct FamilyRow {
    id: String,
    user_id: String,
    scope: String,
    created_at: i64,
    last_used_at: i64,
    revoked_at: Option<i64>,
    current_hash: Option<Vec<u8>>,
    previous_hash: Option<Vec<u8>>,
    rotated_at: Option<i64>,
    disabled: bool,
    client_id: Option<String>,
    not_before: i64,
    amr: String,
}

fn hash32(bytes: Option<&[u8]>) -> Option<[u8; 32]> {
    bytes.and_then(|b| b.try_into().ok())
}

impl FamilyRow {
    fn view(&self) -> FamilyView {
        FamilyView {
            revoked: self.revoked_at.is_some(),
            user_disabled: self.disabled,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            // A family without a live token (impossible after migration 0003) has
            // nothing that matches: every token of it is reuse.
            current: hash32(self.current_hash.as_deref()).unwrap_or([0; 32]),
            previous: hash32(self.previous_hash.as_deref()).zip(self.rotated_at),
        }
    }
}

#[async_trait::async_trait]
impl<DB> FamilyStore for SqlStore<DB>
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
    async fn create_family_with(
        &self,
        family_id: &str,
        user_id: &str,
        token: &TokenHash,
        label: &str,
        amr: &str,
        now: i64,
    ) -> Result<Option<Started>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let family = NewFamily {
            id: family_id,
            user_id,
            token,
            label,
            amr,
        };
        let FamilyStart::Started(started) = start_family_in(&mut tx, &family, None, now).await?
        else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(started))
    }

    async fn rotate_for(
        &self,
        client: Option<&str>,
        presented: &TokenHash,
        next: &TokenHash,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Rotation, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Lock the family first (a write: the row lock in PostgreSQL, the write
        // lock in SQLite), then read it: concurrent redemptions of any token of
        // one family serialize here, and each decides on what the last one wrote.
        sqlx::query(
            "UPDATE refresh_families SET last_used_at = last_used_at \
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1)",
        )
        .bind(&presented.0[..])
        .execute(&mut *tx)
        .await?;
        let family: Option<FamilyRow> = sqlx::query_as(
            "SELECT f.id, f.user_id, f.scope, f.created_at, f.last_used_at, f.revoked_at, \
             f.current_hash, f.previous_hash, f.rotated_at, u.disabled, f.client_id, \
             u.not_before, f.amr \
             FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id \
             JOIN users u ON u.id = f.user_id \
             WHERE t.hash = $1",
        )
        .bind(&presented.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(family) = family else {
            return Ok(Rotation::Refused);
        };
        // Another owner's token: not this caller's to redeem, nor to burn (a
        // client presenting a stolen token must not revoke its owner's grant).
        if family.client_id.as_deref() != client {
            return Ok(Rotation::Refused);
        }
        let decision = decide(&presented.0, &family.view(), now, policy);
        let retry = match decision {
            // Dropping the transaction changes nothing.
            Decision::Refuse => return Ok(Rotation::Refused),
            Decision::Reuse => {
                sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(&family.id)
                    .execute(&mut *tx)
                    .await?;
                insert_event(&mut tx, EventKind::FamilyRevoked, &family.id, now).await?;
                tx.commit().await?;
                return Ok(Rotation::ReuseDetected {
                    family_id: family.id,
                    user_id: family.user_id,
                });
            }
            Decision::Rotate => false,
            Decision::RetryWithinGrace => true,
        };
        sqlx::query("INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)")
            .bind(&next.0[..])
            .bind(&family.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // The token that stops being live: the presented one on a rotation, the
        // successor a retry replaces.
        sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1 WHERE hash = $2 AND rotated_at IS NULL",
        )
        .bind(now)
        .bind(family.current_hash.as_deref())
        .execute(&mut *tx)
        .await?;
        if retry {
            sqlx::query(
                "UPDATE refresh_families SET current_hash = $1, last_used_at = $2 WHERE id = $3",
            )
            .bind(&next.0[..])
            .bind(now)
            .bind(&family.id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE refresh_families SET current_hash = $1, previous_hash = $2, \
                 rotated_at = $3, last_used_at = $3 WHERE id = $4",
            )
            .bind(&next.0[..])
            .bind(&presented.0[..])
            .bind(now)
            .bind(&family.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Rotation::Rotated {
            retry,
            family_id: family.id,
            user_id: family.user_id,
            scope: family.scope,
            not_before: family.not_before,
            amr: family.amr,
        })
    }

    async fn families_of(
        &self,
        user_id: &str,
        now: i64,
        policy: RotationPolicy,
    ) -> Result<Vec<FamilyInfo>, Error> {
        // The same bounds as `refresh::decide`: a family past either is over.
        Ok(sqlx::query_as(
            "SELECT id, label, created_at, last_used_at FROM refresh_families \
             WHERE user_id = $1 AND revoked_at IS NULL \
             AND last_used_at >= $2 AND created_at >= $3 \
             ORDER BY last_used_at DESC, id",
        )
        .bind(user_id)
        .bind(now.saturating_sub(policy.idle))
        .bind(now.saturating_sub(policy.absolute))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_family(&self, user_id: &str, family_id: &str, now: i64) -> Result<bool, Error> {
        self.revoke_owned_family(
            "UPDATE refresh_families SET revoked_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING id",
            user_id,
            family_id,
            now,
        )
        .await
    }

    async fn revoke_family_of(&self, token: &TokenHash, now: i64) -> Result<Option<String>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The write first (it takes the lock before anything is read, so SQLite
        // never has to upgrade a read snapshot), then what it found.
        sqlx::query(
            "UPDATE refresh_families SET last_used_at = last_used_at \
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1)",
        )
        .bind(&token.0[..])
        .execute(&mut *tx)
        .await?;
        let family: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT f.id, f.revoked_at FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1",
        )
        .bind(&token.0[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some((family_id, revoked_at)) = family else {
            return Ok(None);
        };
        if revoked_at.is_none() {
            sqlx::query("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&family_id)
                .execute(&mut *tx)
                .await?;
            insert_event(&mut tx, EventKind::FamilyRevoked, &family_id, now).await?;
        }
        tx.commit().await?;
        Ok(Some(family_id))
    }

    async fn revoke_user(&self, user_id: &str, now: i64) -> Result<Vec<String>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The user's row first, as `set_scope` does: one lock order, no deadlock.
        sqlx::query("UPDATE users SET not_before = not_before WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ended = end_user_grants(&mut tx, user_id, None, now).await?;
        // Every token of the person's issued up to now, those of this second
        // included: "not before" is the next second (`not_before_after`).
        move_not_before(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn family_of(
        &self,
        token: &TokenHash,
    ) -> Result<Option<(String, Option<String>)>, Error> {
        Ok(sqlx::query_as(
            "SELECT f.id, f.client_id FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = $1",
        )
        .bind(&token.0[..])
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn revoked_since(&self, since: i64) -> Result<RevokedState, Error> {
        let families: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM refresh_families WHERE revoked_at >= $1 \
             UNION ALL SELECT id FROM sessions WHERE revoked_at >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let not_before: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, not_before FROM users WHERE not_before >= $1 \
                 UNION ALL SELECT id, not_before FROM clients WHERE not_before >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(RevokedState {
            families: families.into_iter().map(|(id,)| id).collect(),
            not_before,
        })
    }
}

impl<DB> SqlStore<DB>
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
    /// Revokes a family by id if `sql` (which binds now, the family id and its
    /// owner, and returns the id) finds it live and owned, with its event.
    pub(super) async fn revoke_owned_family(
        &self,
        sql: &'static str,
        owner: &str,
        family_id: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let revoked: Option<(String,)> = sqlx::query_as(sql)
            .bind(now)
            .bind(family_id)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
        if revoked.is_some() {
            insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now).await?;
        }
        tx.commit().await?;
        Ok(revoked.is_some())
    }
}

/// Inside a write transaction that holds the user's row: revokes every refresh family
/// and cookie session of the user but `keep` (with their events) and uses up the
/// authorization codes not exchanged yet; the ids revoked, families first.
pub(super) async fn end_user_grants<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
    keep: Option<&str>,
    now: i64,
) -> Result<Vec<String>, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let keep = keep.unwrap_or("");
    let revoked: Vec<(String,)> = sqlx::query_as(
        "UPDATE refresh_families SET revoked_at = $1 \
         WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3 RETURNING id",
    )
    .bind(now)
    .bind(user_id)
    .bind(keep)
    .fetch_all(&mut **tx)
    .await?;
    let sessions: Vec<(String,)> = sqlx::query_as(
        "UPDATE sessions SET revoked_at = $1 \
         WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3 RETURNING id",
    )
    .bind(now)
    .bind(user_id)
    .bind(keep)
    .fetch_all(&mut **tx)
    .await?;
    // Codes not exchanged yet would start grants after this.
    sqlx::query(
        "UPDATE authorization_codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    for (family_id,) in &revoked {
        insert_event(tx, EventKind::FamilyRevoked, family_id, now).await?;
    }
    for (session_id,) in &sessions {
        insert_event(tx, EventKind::SessionRevoked, session_id, now).await?;
    }
    Ok(revoked
        .into_iter()
        .chain(sessions)
        .map(|(id,)| id)
        .collect())
}

/// Inside a write transaction that holds the user's row: refuses every token of the
/// user's issued up to `now`, this second included, with its event; the new "not
/// before".
pub(super) async fn move_not_before<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    user_id: &str,
    now: i64,
) -> Result<i64, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let not_before = not_before_after(now);
    sqlx::query("UPDATE users SET not_before = $1 WHERE id = $2")
        .bind(not_before)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    insert_event(tx, EventKind::UserNotBefore, user_id, not_before).await?;
    Ok(not_before)
}

/// A refresh family to start: its id, account, first token, label and `amr`.
pub(super) struct NewFamily<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub token: &'a TokenHash,
    pub label: &'a str,
    pub amr: &'a str,
}

/// The account's row as a family start reads it, under its lock.
#[derive(sqlx::FromRow)]
pub(super) struct Holder {
    scope: String,
    not_before: i64,
    password_hash: String,
    disabled: bool,
}

/// Inside a write transaction: locks the account's row first (as `set_scope`,
/// `revoke_user`, a password change and a reset do: one lock order, and a change in
/// flight either committed before and is read here, or waits and then reaches the new
/// family), then starts `family` with the account's scope as it is now. `checked`:
/// the password hash and "not before" the sign-in read before it checked the
/// password; when either moved since, the sign-in was overtaken and nothing is
/// written.
pub(super) async fn start_family_in<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    family: &NewFamily<'_>,
    checked: Option<(&str, i64)>,
    now: i64,
) -> Result<FamilyStart, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Holder: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let holder: Option<Holder> = sqlx::query_as(
        "UPDATE users SET scope = scope WHERE id = $1 \
         RETURNING scope, not_before, password_hash, disabled",
    )
    .bind(family.user_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(holder) = holder else {
        return Ok(FamilyStart::Refused);
    };
    if holder.disabled {
        return Ok(FamilyStart::Refused);
    }
    if let Some((password_hash, not_before)) = checked
        && (holder.password_hash != password_hash || holder.not_before != not_before)
    {
        return Ok(FamilyStart::Overtaken);
    }
    sqlx::query(
        "INSERT INTO refresh_families (id, user_id, scope, created_at, last_used_at, \
         current_hash, label, amr) VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
    )
    .bind(family.id)
    .bind(family.user_id)
    .bind(holder.scope.as_str())
    .bind(now)
    .bind(&family.token.0[..])
    .bind(family.label)
    .bind(family.amr)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO refresh_tokens (hash, family_id, created_at) VALUES ($1, $2, $3)")
        .bind(&family.token.0[..])
        .bind(family.id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(FamilyStart::Started(Started {
        scope: holder.scope,
        not_before: holder.not_before,
    }))
}
