//! The per-queue progress marker that makes processing exactly-once.
//!
//! Table `<tables_prefix>tier_queue_progress` (the engine's own; Matomo's tables are never
//! changed) holds, per queue list, the id, length and digest of the last batch whose rows were
//! committed, and the dead letters decided for it. The marker is written in the same MySQL
//! transaction as the batch's rows, after the row of the marker was locked (`SELECT … FOR
//! UPDATE`) and found unchanged — so two workers that both believe they own a queue cannot
//! both commit the same batch: the second one finds the marker moved and rolls back.

use mysql_async::prelude::*;
use mysql_async::{Pool, Transaction};
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};

/// A dead letter decided while processing a batch: the entry at `index` of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterNote {
    /// Position of the entry in its batch.
    pub index: u32,
    /// Why it can never be processed.
    pub reason: String,
}

/// The last committed batch of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marker {
    /// Random id of the batch (empty: nothing committed yet).
    pub batch_id: String,
    /// Entries at the head of the queue that the batch covered.
    pub batch_len: u32,
    /// [`batch_digest`] of those entries.
    pub batch_digest: String,
    /// The batch's dead letters (pushed to the dead-letter list when the batch is trimmed).
    pub dead_letters: Vec<DeadLetterNote>,
    /// Entries committed through this marker so far (informative).
    pub entries_total: u64,
}

/// The digest of a batch: SHA-1 over the SHA-1 of each entry's bytes, in order. Identical
/// entries at different positions still give a digest that depends on the batch length.
pub fn batch_digest<B: AsRef<[u8]>>(entries: &[B]) -> String {
    let mut outer = Sha1::new();
    for entry in entries {
        outer.update(Sha1::digest(entry.as_ref()));
    }
    hex::encode(outer.finalize())
}

/// Reads and writes markers in one table.
#[derive(Debug, Clone)]
pub struct ProgressStore {
    table: String,
}

type MarkerRow = (String, u32, String, Option<String>, u64);

impl ProgressStore {
    /// The store for Matomo tables prefixed with `tables_prefix`.
    pub fn new(tables_prefix: &str) -> Self {
        Self {
            table: format!("{tables_prefix}tier_queue_progress"),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table when missing (idempotent, run at start-up).
    pub async fn ensure_table(&self, pool: &Pool) -> Result<(), mysql_async::Error> {
        let mut conn = pool.get_conn().await?;
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS `{}` (
                queue_key VARCHAR(191) NOT NULL,
                batch_id CHAR(32) NOT NULL DEFAULT '',
                batch_len INT UNSIGNED NOT NULL DEFAULT 0,
                batch_digest CHAR(40) NOT NULL DEFAULT '',
                dead_letters MEDIUMTEXT NULL,
                entries_total BIGINT UNSIGNED NOT NULL DEFAULT 0,
                updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
                PRIMARY KEY (queue_key)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='matomo-worker: last committed batch per queue (exactly-once)'",
            self.table
        ))
        .await
    }

    /// The marker of `queue_key`, read after waiting for any transaction that holds its row
    /// (a previous owner still committing) — so what we read is final. Creates an empty marker
    /// row the first time.
    pub async fn load_settled(
        &self,
        pool: &Pool,
        queue_key: &str,
    ) -> Result<Marker, mysql_async::Error> {
        let mut conn = pool.get_conn().await?;
        conn.exec_drop(
            format!("INSERT IGNORE INTO `{}` (queue_key) VALUES (?)", self.table),
            (queue_key,),
        )
        .await?;
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await?;
        let row: Option<MarkerRow> = tx
            .exec_first(
                format!(
                    "SELECT batch_id, batch_len, batch_digest, dead_letters, entries_total FROM `{}` WHERE queue_key = ? FOR UPDATE",
                    self.table
                ),
                (queue_key,),
            )
            .await?;
        tx.commit().await?;
        Ok(row.map(marker_from_row).unwrap_or_default())
    }

    /// Inside a batch transaction: locks the marker row and tells whether it still carries
    /// `expected_batch_id` (the last batch we know was committed).
    pub async fn check_in_tx(
        &self,
        tx: &mut Transaction<'static>,
        queue_key: &str,
        expected_batch_id: &str,
    ) -> Result<bool, mysql_async::Error> {
        let current: Option<String> = tx
            .exec_first(
                format!(
                    "SELECT batch_id FROM `{}` WHERE queue_key = ? FOR UPDATE",
                    self.table
                ),
                (queue_key,),
            )
            .await?;
        Ok(current.as_deref() == Some(expected_batch_id))
    }

    /// Inside a batch transaction: records `marker` as the queue's last committed batch.
    pub async fn write_in_tx(
        &self,
        tx: &mut Transaction<'static>,
        queue_key: &str,
        marker: &Marker,
    ) -> Result<(), mysql_async::Error> {
        let dead = if marker.dead_letters.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&marker.dead_letters).unwrap_or_else(|_| "[]".into()))
        };
        tx.exec_drop(
            format!(
                "UPDATE `{}` SET batch_id = ?, batch_len = ?, batch_digest = ?, dead_letters = ?, entries_total = ? WHERE queue_key = ?",
                self.table
            ),
            (
                marker.batch_id.as_str(),
                marker.batch_len,
                marker.batch_digest.as_str(),
                dead,
                marker.entries_total,
                queue_key,
            ),
        )
        .await
    }
}

fn marker_from_row((batch_id, batch_len, batch_digest, dead, entries_total): MarkerRow) -> Marker {
    let dead_letters = dead
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    Marker {
        batch_id,
        batch_len,
        batch_digest,
        dead_letters,
        entries_total,
    }
}

/// A new random batch id (32 hex characters).
pub fn new_batch_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_order_length_and_bytes() {
        let a = batch_digest(&[b"x".as_slice(), b"y"]);
        assert_eq!(a, batch_digest(&[b"x".as_slice(), b"y"]));
        assert_ne!(a, batch_digest(&[b"y".as_slice(), b"x"]));
        assert_ne!(
            batch_digest(&[b"x".as_slice()]),
            batch_digest(&[b"x".as_slice(), b"x"])
        );
        assert_ne!(batch_digest(&[b"xy".as_slice()]), a);
    }

    #[test]
    fn dead_letters_survive_the_row_round_trip() {
        let notes = vec![DeadLetterNote {
            index: 3,
            reason: "bad \"json\"".into(),
        }];
        let text = serde_json::to_string(&notes).expect("serialises");
        let m = marker_from_row(("id".into(), 5, "d".into(), Some(text), 9));
        assert_eq!(m.dead_letters, notes);
        assert_eq!(m.batch_len, 5);
    }
}
