//! The writes that finish a sign-in, in one transaction: [`LoginStore`].
//!
//! A password login used to write in five transactions (the throttle's settlement,
//! the device row, the refresh family, the audit record, and a re-read of the account
//! to see whether a reset overtook it), each a round trip of its own to the database
//! and, on SQLite, a commit of its own to the write-ahead log. Here they are one, in
//! the lock order every other writer of these rows keeps: the account's row, then
//! the family, the device rows, the audit trail, and the throttle's counters last
//! (no transaction takes a counter and then an account).

use super::admission::{add_device_in, settle_in};
use super::audit::append_audit_in;
use super::families::{NewFamily, start_family_in};
use super::{Backend, SqlStore};
use crate::{Error, FamilyLogin, FamilyStart, LoginStore, Settlement};

#[async_trait::async_trait]
impl<DB> LoginStore for SqlStore<DB>
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
    async fn finish_family_login(&self, login: &FamilyLogin<'_>) -> Result<FamilyStart, Error> {
        let (_turn, mut tx) = self.begin_write().await?;
        let family = NewFamily {
            id: login.family_id,
            user_id: login.user_id,
            token: login.token,
            label: login.label,
            amr: login.amr,
        };
        let checked = Some((login.checked_hash, login.checked_not_before));
        let start = start_family_in(&mut tx, &family, checked, login.now).await?;
        if matches!(start, FamilyStart::Started(_)) {
            if let Some(device) = login.device {
                add_device_in(&mut tx, device, login.user_id, login.now).await?;
            }
            if let Some(record) = login.audit {
                append_audit_in(&mut tx, record, login.now).await?;
            }
        }
        settle_in(&mut tx, login.settle, Settlement::Success).await?;
        tx.commit().await?;
        Ok(start)
    }
}
