//! OAuth and machine clients: [`ClientStore`].

use super::{Backend, SqlStore, insert_event};
use crate::{Client, ClientStore, Error, EventKind, not_before_after};

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
    for<'r> Option<bool>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
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

    async fn set_client_disabled(
        &self,
        name: &str,
        disabled: bool,
        now: i64,
    ) -> Result<Option<Client>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Disabling refuses the tokens already issued, as disabling a user does:
        // all of them, those of the current second included (a disabled client
        // gets no new ones), so "not before" is the next second.
        let not_before = not_before_after(now);
        let client: Option<Client> = sqlx::query_as(concat!(
            "UPDATE clients SET disabled = $1, \
             not_before = CASE WHEN $1 THEN $2 ELSE not_before END \
             WHERE name = $3 RETURNING ",
            client_columns!(),
        ))
        .bind(disabled)
        .bind(not_before)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(c) = &client
            && disabled
        {
            insert_event(&mut tx, EventKind::UserNotBefore, &c.id, not_before).await?;
            // The grants it holds for people: their access tokens carry the
            // person's `sub`, so the client's "not before" does not reach them;
            // their families' ids (`sid`) do.
            let families: Vec<(String,)> = sqlx::query_as(
                "UPDATE refresh_families SET revoked_at = $1 \
                 WHERE client_id = $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(&c.id)
            .fetch_all(&mut *tx)
            .await?;
            for (family_id,) in &families {
                insert_event(&mut tx, EventKind::FamilyRevoked, family_id, now).await?;
            }
        }
        tx.commit().await?;
        Ok(client)
    }

    async fn set_client_secret(
        &self,
        name: &str,
        secret_hash: &[u8],
    ) -> Result<Option<Client>, Error> {
        Ok(sqlx::query_as(concat!(
            "UPDATE clients SET secret_hash = $1 WHERE name = $2 AND NOT public RETURNING ",
            client_columns!(),
        ))
        .bind(secret_hash)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }
}
