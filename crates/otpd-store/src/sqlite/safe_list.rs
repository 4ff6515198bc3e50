//! The safe list in SQLite: `safe_numbers` rows keyed by the E.164 number.

use async_trait::async_trait;
use otpd_core::store::{SafeListStore, SafeNumber, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqlResult, SqliteStore, ms, time};

fn load(c: &Connection, phone_number: &str) -> SqlResult<Option<SafeNumber>> {
    Ok(c.prepare_cached(
        "SELECT sid, phone_number, created_at FROM safe_numbers WHERE phone_number = ?",
    )?
    .query_row(params![phone_number], |r| {
        Ok(SafeNumber {
            sid: r.get(0)?,
            phone_number: r.get(1)?,
            created_at: time(r.get(2)?),
        })
    })
    .optional()?)
}

#[async_trait]
impl SafeListStore for SqliteStore {
    async fn add_safe_number(&self, number: &SafeNumber) -> StoreResult<SafeNumber> {
        let number = number.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO safe_numbers (phone_number, sid, created_at) VALUES (?, ?, ?) \
                 ON CONFLICT (phone_number) DO NOTHING",
            )?
            .execute(params![
                number.phone_number,
                number.sid,
                ms(number.created_at)
            ])?;
            Ok(load(tx, &number.phone_number)?.unwrap_or(number))
        })
        .await
    }

    async fn safe_number(&self, phone_number: &str) -> StoreResult<Option<SafeNumber>> {
        let phone_number = phone_number.to_string();
        self.read(move |c| load(c, &phone_number)).await
    }

    async fn remove_safe_number(&self, phone_number: &str) -> StoreResult<bool> {
        let phone_number = phone_number.to_string();
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM safe_numbers WHERE phone_number = ?")?
                .execute(params![phone_number])?;
            Ok(n > 0)
        })
        .await
    }
}
