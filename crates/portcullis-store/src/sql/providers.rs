//! Upstream providers and linked identities: [`ProviderStore`].
//!
//! Linking and unlinking take the account's row first (the lock order of every writer
//! that changes what an account may do), so an unlink racing another unlink, or a
//! password removal, is decided on what the other left.

use super::users::{insert_user, user_columns};
use super::{Affected as _, Backend, SqlStore, lock_user};
use crate::providers::{Linked, LinkedIdentity, Provider, ProviderStore, Unlinked};
use crate::{Error, NewUser, User};

macro_rules! provider_columns {
    () => {
        "name, kind, issuer, client_id, sealed_secret, scope, display_name, created_at"
    };
}

macro_rules! identity_columns {
    () => {
        "provider, subject, user_id, label, created_at, last_used_at"
    };
}

/// The account's row as linking reads it, under its lock.
#[derive(sqlx::FromRow)]
struct Account {
    disabled: bool,
    password_hash: String,
}

#[async_trait::async_trait]
impl<DB> ProviderStore for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> bool: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<String>: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Option<i64>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn add_provider(&self, p: &Provider) -> Result<(), Error> {
        sqlx::query(concat!(
            "INSERT INTO providers (",
            provider_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(p.name.as_str())
        .bind(p.kind.as_str())
        .bind(p.issuer.as_str())
        .bind(p.client_id.as_str())
        .bind(p.sealed_secret.as_deref())
        .bind(p.scope.as_str())
        .bind(p.display_name.as_str())
        .bind(p.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn providers(&self) -> Result<Vec<Provider>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            provider_columns!(),
            " FROM providers ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn remove_provider(&self, name: &str) -> Result<bool, Error> {
        let removed = sqlx::query("DELETE FROM providers WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed == 1)
    }

    async fn set_provider_secret(&self, name: &str, sealed: &str) -> Result<bool, Error> {
        let changed = sqlx::query("UPDATE providers SET sealed_secret = $1 WHERE name = $2")
            .bind(sealed)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed == 1)
    }

    async fn identity_owner(
        &self,
        provider: &str,
        subject: &str,
        now: i64,
    ) -> Result<Option<User>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let owner: Option<(String,)> = sqlx::query_as(
            "UPDATE identities SET last_used_at = $1 WHERE provider = $2 AND subject = $3 \
             RETURNING user_id",
        )
        .bind(now)
        .bind(provider)
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
        let user = match owner {
            Some((user_id,)) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE id = $1"
                ))
                .bind(user_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        tx.commit().await?;
        Ok(user)
    }

    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<Linked, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let account: Option<Account> = lock_user(
            &mut tx,
            &identity.user_id,
            "SELECT disabled, password_hash FROM users WHERE id = $1",
        )
        .await?;
        if account.is_none_or(|a| a.disabled) {
            return Ok(Linked::NoAccount);
        }
        let owner: Option<(String,)> =
            sqlx::query_as("SELECT user_id FROM identities WHERE provider = $1 AND subject = $2")
                .bind(identity.provider.as_str())
                .bind(identity.subject.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        match owner {
            Some((owner,)) if owner == identity.user_id => return Ok(Linked::Already),
            Some((owner,)) => return Ok(Linked::Taken(owner)),
            None => {}
        }
        // Another identity at the same provider on this account: a unique violation
        // (`Error::Conflict`), nothing written.
        insert_identity(&mut tx, identity).await?;
        tx.commit().await?;
        Ok(Linked::Done)
    }

    async fn create_user_with_identity(
        &self,
        user: NewUser,
        email_verified: bool,
        identity: &LinkedIdentity,
    ) -> Result<User, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let mut user = insert_user(&mut tx, user).await?;
        if email_verified && user.email.is_some() {
            // Another account's proven address: a unique violation, and the whole
            // transaction goes.
            sqlx::query("UPDATE users SET email_verified = TRUE WHERE id = $1")
                .bind(user.id.as_str())
                .execute(&mut *tx)
                .await?;
            user.email_verified = true;
        }
        let identity = LinkedIdentity {
            user_id: user.id.clone(),
            ..identity.clone()
        };
        insert_identity(&mut tx, &identity).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            identity_columns!(),
            " FROM identities WHERE user_id = $1 ORDER BY created_at, provider"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<Unlinked, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let Some(account): Option<Account> = lock_user(
            &mut tx,
            user_id,
            "SELECT disabled, password_hash FROM users WHERE id = $1",
        )
        .await?
        else {
            return Ok(Unlinked::NotFound);
        };
        let (links, passkeys): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM identities WHERE user_id = $1), \
                    (SELECT COUNT(*) FROM passkeys WHERE user_id = $1)",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        let mine: Option<(String,)> =
            sqlx::query_as("SELECT subject FROM identities WHERE user_id = $1 AND provider = $2")
                .bind(user_id)
                .bind(provider)
                .fetch_optional(&mut *tx)
                .await?;
        if mine.is_none() {
            return Ok(Unlinked::NotFound);
        }
        if account.password_hash.is_empty() && passkeys == 0 && links <= 1 {
            return Ok(Unlinked::LastWayIn);
        }
        sqlx::query("DELETE FROM identities WHERE user_id = $1 AND provider = $2")
            .bind(user_id)
            .bind(provider)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Unlinked::Done)
    }
}

async fn insert_identity<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    identity: &LinkedIdentity,
) -> Result<(), Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(concat!(
        "INSERT INTO identities (",
        identity_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(identity.provider.as_str())
    .bind(identity.subject.as_str())
    .bind(identity.user_id.as_str())
    .bind(identity.label.as_str())
    .bind(identity.created_at)
    .bind(identity.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
