//! OAuth and machine clients: [`ClientStore`].

use super::{Backend, SqlStore, insert_event};
use crate::{Client, ClientChange, ClientChanged, ClientStore, Error, EventKind, not_before_after};

/// The columns of a [`Client`], likewise.
macro_rules! client_columns {
    () => {
        "id, name, secret_hash, scope, disabled, not_before, created_at, \
         redirect_uris, post_logout_redirect_uris, public, first_party"
    };
}

#[async_trait::async_trait]
impl<DB> ClientStore for SqlStore<DB>
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
    for<'r> Option<bool>: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> &'r str: sqlx::ColumnIndex<DB::Row>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    async fn add_client(&self, client: &Client) -> Result<(), Error> {
        // A taken name is a unique violation: `Error::Conflict`.
        sqlx::query(concat!(
            "INSERT INTO clients (",
            client_columns!(),
            ") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        ))
        .bind(&client.id)
        .bind(&client.name)
        .bind(&client.secret_hash)
        .bind(&client.scope)
        .bind(client.disabled)
        .bind(client.not_before)
        .bind(client.created_at)
        .bind(&client.redirect_uris)
        .bind(&client.post_logout_redirect_uris)
        .bind(client.public)
        .bind(client.first_party)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn client_by_id(&self, id: &str) -> Result<Option<Client>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn clients(&self) -> Result<Vec<Client>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn update_client(
        &self,
        id: &str,
        change: &ClientChange<'_>,
        now: i64,
    ) -> Result<Option<ClientChanged>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let was: Option<(bool, String)> =
            sqlx::query_as("SELECT disabled, scope FROM clients WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((was_disabled, old_scope)) = was else {
            return Ok(None);
        };
        let client: Client = sqlx::query_as(concat!(
            "UPDATE clients SET name = COALESCE($1, name), scope = COALESCE($2, scope), \
             redirect_uris = COALESCE($3, redirect_uris), \
             post_logout_redirect_uris = COALESCE($4, post_logout_redirect_uris), \
             first_party = COALESCE($5, first_party), disabled = COALESCE($6, disabled) \
             WHERE id = $7 RETURNING ",
            client_columns!(),
        ))
        .bind(change.name)
        .bind(change.scope)
        .bind(change.redirect_uris)
        .bind(change.post_logout_redirect_uris)
        .bind(change.first_party)
        .bind(change.disabled)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let disabled_now = client.disabled && !was_disabled;
        let narrowed = old_scope
            .split_whitespace()
            .any(|w| !client.scope.split_whitespace().any(|n| n == w));
        let tokens_refused = disabled_now || narrowed;
        let client = if tokens_refused {
            // Disabling, or taking a scope away, refuses the tokens already issued to
            // it, as it does for a user: all of them, those of the current second
            // included, so "not before" is the next second.
            let not_before = not_before_after(now);
            let client: Client = sqlx::query_as(concat!(
                "UPDATE clients SET not_before = $1 WHERE id = $2 RETURNING ",
                client_columns!(),
            ))
            .bind(not_before)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            insert_event(&mut tx, EventKind::UserNotBefore, id, not_before).await?;
            client
        } else {
            client
        };
        let ended = if disabled_now {
            end_grants(&mut tx, id, now).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(Some(ClientChanged {
            client,
            disabled_now,
            tokens_refused,
            ended,
        }))
    }

    async fn set_client_secret(
        &self,
        id: &str,
        secret_hash: &[u8],
    ) -> Result<Option<Client>, Error> {
        Ok(sqlx::query_as(concat!(
            "UPDATE clients SET secret_hash = $1 WHERE id = $2 AND NOT public RETURNING ",
            client_columns!(),
        ))
        .bind(secret_hash)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn delete_client(&self, id: &str, now: i64) -> Result<Option<Vec<String>>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Its codes and the consents given to it go by ON DELETE CASCADE; its grants
        // for people carry its id without a reference, so that the revoked rows stay
        // for reuse detection until they are pruned.
        let gone: Option<(String,)> =
            sqlx::query_as("DELETE FROM clients WHERE id = $1 RETURNING id")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if gone.is_none() {
            return Ok(None);
        }
        insert_event(&mut tx, EventKind::UserNotBefore, id, not_before_after(now)).await?;
        let ended = end_grants(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(Some(ended))
    }
}

/// Revokes the grants (refresh families) a client holds for people, with their
/// events: their access tokens carry the person's `sub`, so the client's "not before"
/// does not reach them; their families' ids (`sid`) do.
async fn end_grants<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    client_id: &str,
    now: i64,
) -> Result<Vec<String>, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Encode<'r, DB> + sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let families: Vec<(String,)> = sqlx::query_as(
        "UPDATE refresh_families SET revoked_at = $1 \
         WHERE client_id = $2 AND revoked_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(client_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut ended = Vec::with_capacity(families.len());
    for (family_id,) in families {
        insert_event(tx, EventKind::FamilyRevoked, &family_id, now).await?;
        ended.push(family_id);
    }
    Ok(ended)
}
