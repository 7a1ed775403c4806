//! Sealed signing keys: [`KeyStore`].

use super::{Backend, SqlStore, insert_event};
use crate::{Error, EventKind, KeyStore, StoredKey};

#[async_trait::async_trait]
impl<DB> KeyStore for SqlStore<DB>
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
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, Error> {
        Ok(sqlx::query_as(
            "SELECT kid, alg, private_jwk, created_at, activates_at, predecessor FROM signing_keys \
             ORDER BY activates_at, created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn add_signing_key(&self, key: &StoredKey, sealed_with: &str) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Every key row locked first, as `replace_key_material` locks them: a rewrap
        // in flight commits before this reads, or waits and then counts this key.
        sqlx::query("UPDATE signing_keys SET kid = kid")
            .execute(&mut *tx)
            .await?;
        let (others,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM signing_keys \
             WHERE substr(private_jwk, 1, CAST($1 AS INTEGER)) <> $2",
        )
        .bind(sealed_with.len() as i64)
        .bind(sealed_with)
        .fetch_one(&mut *tx)
        .await?;
        if others > 0 || !key.private_jwk.starts_with(sealed_with) {
            return Err(Error::Outdated(
                "the signing keys are sealed under another key-encryption key",
            ));
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, activates_at, predecessor) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_jwk)
        .bind(key.created_at)
        .bind(key.activates_at)
        .bind(key.predecessor.as_deref())
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, EventKind::KeysChanged, &key.kid, key.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replace_key_material(
        &self,
        keys: &[(String, String)],
        every: bool,
    ) -> Result<(), Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Locked as `add_signing_key` locks them, then counted afresh: a key added
        // since the caller read them would keep the old key-encryption key.
        sqlx::query("UPDATE signing_keys SET kid = kid")
            .execute(&mut *tx)
            .await?;
        let (stored,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM signing_keys")
            .fetch_one(&mut *tx)
            .await?;
        if every && stored != keys.len() as i64 {
            return Err(Error::Outdated("a signing key was added meanwhile"));
        }
        for (kid, material) in keys {
            sqlx::query("UPDATE signing_keys SET private_jwk = $1 WHERE kid = $2")
                .bind(material)
                .bind(kid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
