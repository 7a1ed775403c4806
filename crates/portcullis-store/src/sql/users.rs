//! Accounts: [`UserStore`].

use portcullis::grant::{effective_scope, removes_scope};

use super::families::{end_user_grants, move_not_before};
use super::{Affected as _, Backend, SqlStore, insert_event, lock_user};
use crate::{
    AccountRecords, Deleted, Email, Error, EventKind, ImportOutcome, ImportedUser, MailLink,
    MailRecord, NewUser, ScopeChange, User, UserStore, not_before_after,
};

/// The columns of a [`User`], as a literal so queries are `concat!`ed at compile time.
macro_rules! user_columns {
    () => {
        "id, username, password_hash, scope, disabled, not_before, created_at, email, \
         email_verified, factors"
    };
}
pub(super) use user_columns;

#[async_trait::async_trait]
impl<DB> UserStore for SqlStore<DB>
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
    async fn create_user(&self, new: NewUser) -> Result<User, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let user = insert_user(&mut tx, new).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn user_by_verified_email(&self, key: &str) -> Result<Option<User>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email_key = $1 AND email_verified"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_users(&self) -> Result<Vec<User>, Error> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn users_page(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<User>, Error> {
        // The query's `%`, `_` and `\` match themselves.
        let pattern = query.map(|q| {
            let escaped = q
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE (CAST($1 AS TEXT) IS NULL OR username > $1) \
             AND (CAST($2 AS TEXT) IS NULL OR LOWER(username) LIKE $2 ESCAPE '\\' \
             OR LOWER(COALESCE(email, '')) LIKE $2 ESCAPE '\\') \
             ORDER BY username LIMIT $3"
        ))
        .bind(after)
        .bind(pattern.as_deref())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_user(
        &self,
        user_id: &str,
        keep_one_with: &str,
        now: i64,
    ) -> Result<Deleted, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // Every enabled holder of the scope first, in one order (PostgreSQL row locks;
        // SQLite's write lock is held already): two erasures of the last two holders
        // at once serialize here, and the second sees the first's result.
        let holders: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT id FROM users WHERE NOT disabled AND (' ' || scope || ' ') LIKE $1 \
             ORDER BY id{}",
            DB::LOCK_ROWS
        ))
        .bind(format!("% {keep_one_with} %"))
        .fetch_all(&mut *tx)
        .await?;
        let found: Option<(String, Option<String>)> = lock_user(
            &mut tx,
            user_id,
            "SELECT id, email FROM users WHERE id = $1",
        )
        .await?;
        let Some((_, email)) = found else {
            return Ok(Deleted::NotFound);
        };
        if holders.len() == 1 && holders[0].0 == user_id {
            return Ok(Deleted::LastWith);
        }
        let ended = end_user_grants(&mut tx, user_id, None, now).await?;
        move_not_before(&mut tx, user_id, now).await?;
        // The personal data kept beside the account: the mail to its address (sent or
        // waiting: the links in it die with the account anyway), and the addresses and
        // user agents of its audit rows. The trail keeps the rows under the account's
        // random id, which names nobody once the account is gone.
        // (Those of its links too: a new address it asked to change to.)
        let mut addresses: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT email FROM email_tokens WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
        addresses.extend(email.map(|e| (e,)));
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for (address,) in &addresses {
            sqlx::query("DELETE FROM outbox WHERE recipient = $1")
                .bind(address.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE audit SET address = NULL, user_agent = NULL WHERE subject = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Deleted::Done(ended))
    }

    async fn account_records(&self, user_id: &str) -> Result<AccountRecords, Error> {
        let devices: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT created_at, last_used_at FROM devices WHERE user_id = $1 \
             ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mail_links: Vec<MailLink> = sqlx::query_as(
            "SELECT kind, email, created_at, expires_at, used_at FROM email_tokens \
             WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mail: Vec<MailRecord> = sqlx::query_as(
            "SELECT recipient, subject, created_at, sent_at FROM outbox \
             WHERE recipient IN (SELECT email FROM users WHERE id = $1 AND email IS NOT NULL \
             UNION SELECT email FROM email_tokens WHERE user_id = $1) ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(AccountRecords {
            devices,
            mail_links,
            mail,
        })
    }

    async fn import_users(
        &self,
        users: &[ImportedUser],
        update: bool,
        dry_run: bool,
    ) -> Result<Vec<ImportOutcome>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(users.len());
        for imported in users {
            let new = &imported.user;
            let found: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, username FROM users WHERE username = $1 OR skeleton = $2",
            )
            .bind(new.username.as_str())
            .bind(new.skeleton.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let same = found.iter().find(|(_, name)| *name == new.username);
            if same.is_none()
                && let Some((_, other)) = found.first()
            {
                outcomes.push(ImportOutcome::Refused(format!(
                    "the username looks like the existing account {other:?} (UTS #39 confusables)"
                )));
                continue;
            }
            if same.is_some() && !update {
                outcomes.push(ImportOutcome::Skipped);
                continue;
            }
            let id = same.map_or(new.id.as_str(), |(id, _)| id.as_str());
            let verified = imported.email_verified && new.email.is_some();
            if verified
                && let Some(email) = &new.email
                && let Some((owner,)) = sqlx::query_as::<_, (String,)>(
                    "SELECT username FROM users WHERE email_key = $1 AND email_verified AND id <> $2",
                )
                .bind(email.key.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            {
                outcomes.push(ImportOutcome::Refused(format!(
                    "its verified email address is the account {owner:?}'s"
                )));
                continue;
            }
            let email = new.email.as_ref();
            if same.is_some() {
                sqlx::query(
                    "UPDATE users SET password_hash = $1, scope = $2, disabled = $3, email = $4, \
                     email_key = $5, email_verified = $6 WHERE id = $7",
                )
                .bind(new.password_hash.as_str())
                .bind(new.scope.as_str())
                .bind(imported.disabled)
                .bind(email.map(|e| e.address.as_str()))
                .bind(email.map(|e| e.key.as_str()))
                .bind(verified)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                outcomes.push(ImportOutcome::Updated);
            } else {
                insert_user(&mut tx, new.clone()).await?;
                sqlx::query("UPDATE users SET disabled = $1, email_verified = $2 WHERE id = $3")
                    .bind(imported.disabled)
                    .bind(verified)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                outcomes.push(ImportOutcome::Imported);
            }
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(outcomes)
    }

    async fn set_password_hash(
        &self,
        user_id: &str,
        expected: &str,
        hash: &str,
    ) -> Result<bool, Error> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(hash)
                .bind(user_id)
                .bind(expected)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, Error> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
            .bind(disabled)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_email(
        &self,
        username: &str,
        email: Option<&Email>,
        verified: bool,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, email_verified = $3 WHERE username = $4",
        )
        .bind(email.map(|e| e.address.as_str()))
        .bind(email.map(|e| e.key.as_str()))
        .bind(verified && email.is_some())
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_scope(
        &self,
        username: &str,
        scope: &str,
        now: i64,
    ) -> Result<Option<ScopeChange>, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The write first: it locks the row (or the database) before the read.
        sqlx::query("UPDATE users SET scope = scope WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let Some((user_id, old)): Option<(String, String)> =
            sqlx::query_as("SELECT id, scope FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let removed = removes_scope(&old, scope);
        // Tokens of this second too carry what was removed (`not_before_after`).
        let not_before = not_before_after(now);
        sqlx::query(
            "UPDATE users SET scope = $1, \
             not_before = CASE WHEN $2 AND not_before < $3 THEN $3 ELSE not_before END \
             WHERE id = $4",
        )
        .bind(scope)
        .bind(removed)
        .bind(not_before)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        let mut families = sqlx::query(
            "UPDATE refresh_families SET scope = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND client_id IS NULL",
        )
        .bind(scope)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A client's grant keeps what the person allowed it, less what the
        // account lost; it never gains what the account gained.
        let granted: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, scope FROM refresh_families \
             WHERE user_id = $1 AND revoked_at IS NULL AND client_id IS NOT NULL",
        )
        .bind(&user_id)
        .fetch_all(&mut *tx)
        .await?;
        for (family_id, family_scope) in granted {
            let kept = effective_scope(&family_scope, scope);
            if kept != family_scope {
                sqlx::query("UPDATE refresh_families SET scope = $1 WHERE id = $2")
                    .bind(&kept)
                    .bind(&family_id)
                    .execute(&mut *tx)
                    .await?;
                families += 1;
            }
        }
        let sessions =
            sqlx::query("UPDATE sessions SET scope = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(scope)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if removed {
            insert_event(&mut tx, EventKind::UserNotBefore, &user_id, not_before).await?;
        }
        tx.commit().await?;
        Ok(Some(ScopeChange {
            removed,
            families,
            sessions,
        }))
    }
}

/// Inserts an account inside a write transaction; [`Error::Conflict`] when the name or
/// its skeleton is taken.
pub(super) async fn insert_user<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    new: NewUser,
) -> Result<User, Error>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO users (id, username, skeleton, password_hash, scope, created_at, \
         email, email_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new.id.as_str())
    .bind(new.username.as_str())
    .bind(new.skeleton.as_str())
    .bind(new.password_hash.as_str())
    .bind(new.scope.as_str())
    .bind(new.created_at)
    .bind(new.email.as_ref().map(|e| e.address.as_str()))
    .bind(new.email.as_ref().map(|e| e.key.as_str()))
    .execute(&mut **tx)
    .await?;
    Ok(User {
        id: new.id,
        username: new.username,
        password_hash: new.password_hash,
        scope: new.scope,
        disabled: false,
        not_before: 0,
        created_at: new.created_at,
        email: new.email.map(|e| e.address),
        email_verified: false,
        factors: String::new(),
    })
}
