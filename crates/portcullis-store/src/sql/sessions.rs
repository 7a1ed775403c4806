//! Cookie sessions: the library's [`SessionStore`]. Revoking a session also logs a
//! `session_revoked` event, in the same transaction, so every instance refuses the
//! access tokens minted from it (their `sid` is the session id).

use portcullis::session::{
    self, NewSession, SessionHash, SessionRecord, SessionStore, StoreFuture,
};

use super::{Affected as _, Backend, SqlStore, insert_event};
use crate::{Error, EventKind};

/// A session row (the library's `SessionRecord` knows nothing of SQL).
#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    subject: String,
    scope: String,
    label: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    amr: String,
}

fn session_record(row: SessionRow) -> SessionRecord {
    SessionRecord::new(
        row.id,
        row.subject,
        row.scope,
        row.created_at,
        row.expires_at,
    )
    .with_label(row.label)
    .with_last_seen_at(row.last_seen_at)
    .with_amr(row.amr)
}

/// The library's session errors carry no sqlx type: the message is enough for a 503.
fn unavailable(e: impl Into<Error>) -> session::Error {
    session::Error::Unavailable(e.into().to_string())
}

/// The columns of a [`SessionRow`], as a literal so the queries are `concat!`ed at
/// compile time (the session lookup runs on every cookie request).
macro_rules! session_columns {
    () => {
        "s.id, s.user_id AS subject, s.scope, s.label, s.created_at, s.last_seen_at, s.expires_at, \
         s.amr"
    };
}

impl<DB> SessionStore for SqlStore<DB>
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
    fn create_session<'a>(&'a self, s: &'a NewSession) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO sessions (id, secret_hash, user_id, scope, label, \
                 created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
            )
            .bind(&s.id)
            .bind(&s.hash.0[..])
            .bind(&s.subject)
            .bind(&s.scope)
            .bind(&s.label)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn find_session<'a>(&'a self, hash: &'a SessionHash) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            // Sessions of disabled accounts are refused like revoked ones.
            let row: Option<SessionRow> = sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.secret_hash = $1 AND s.revoked_at IS NULL AND NOT u.disabled"
            ))
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(row.map(session_record))
        })
    }

    fn touch_session<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
            )
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn revoke_session<'a>(
        &'a self,
        id: &'a str,
        subject: Option<&'a str>,
        at: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let (_turn, mut tx) = self.begin_write().await.map_err(unavailable)?;
            let revoked = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 \
                 AND revoked_at IS NULL AND ($3 IS NULL OR user_id = $3)",
            )
            .bind(at)
            .bind(id)
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
                == 1;
            if revoked {
                insert_event(&mut tx, EventKind::SessionRevoked, id, at)
                    .await
                    .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            Ok(revoked)
        })
    }

    fn revoke_sessions_of<'a>(&'a self, subject: &'a str, at: i64) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let (_turn, mut tx) = self.begin_write().await.map_err(unavailable)?;
            let ids: Vec<(String,)> = sqlx::query_as(
                "UPDATE sessions SET revoked_at = $1 \
                 WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
            )
            .bind(at)
            .bind(subject)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            for (id,) in &ids {
                insert_event(&mut tx, EventKind::SessionRevoked, id, at)
                    .await
                    .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            Ok(ids.into_iter().map(|(id,)| id).collect())
        })
    }

    fn sessions_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        Box::pin(async move {
            let rows: Vec<SessionRow> = sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions s \
                 WHERE s.user_id = $1 AND s.revoked_at IS NULL \
                 ORDER BY s.created_at DESC, s.id"
            ))
            .bind(subject)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(rows.into_iter().map(session_record).collect())
        })
    }
}
