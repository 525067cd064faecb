//! Dead letters: queue entries that can never be processed, kept with the reason and their
//! original bytes in a Redis list per queue (`tierDeadLetter_<id>`), so an operator can inspect,
//! replay or purge them. A queue is never blocked by one entry.
//!
//! Records are JSON `{"reason", "queue", "time", "entry_base64"}`; `time` is when the entry was
//! dead-lettered (Unix seconds).

use base64::Engine as _;
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use super::redis::{dead_letter_key, Scripts};

/// One dead-lettered entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it was set aside.
    pub reason: String,
    /// The queue it came from.
    pub queue: u16,
    /// When it was set aside (Unix seconds).
    pub time: i64,
    /// The entry's original bytes, base64 (standard alphabet).
    pub entry_base64: String,
}

/// Why a dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] Error),
    /// A record in the list is not one of ours.
    #[error("dead-letter record {index} of queue {queue} is not valid: {problem}")]
    BadRecord {
        /// Queue.
        queue: u16,
        /// Position in the list.
        index: usize,
        /// What is wrong.
        problem: String,
    },
}

impl DeadLetter {
    /// A record for `entry` of `queue`, set aside now for `reason`.
    pub fn new(queue: u16, reason: impl Into<String>, entry: &[u8]) -> Self {
        Self {
            reason: reason.into(),
            queue,
            time: chrono::Utc::now().timestamp(),
            entry_base64: base64::engine::general_purpose::STANDARD.encode(entry),
        }
    }

    /// The record as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The original entry bytes.
    pub fn entry(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.entry_base64)
    }
}

/// Reads and changes the dead-letter lists.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    redis: Pool,
    scripts: Scripts,
    key_prefix: String,
}

impl DeadLetters {
    /// Dead letters behind `key_prefix`.
    pub fn new(redis: Pool, scripts: Scripts, key_prefix: impl Into<String>) -> Self {
        Self {
            redis,
            scripts,
            key_prefix: key_prefix.into(),
        }
    }

    /// Number of dead letters of `queue`.
    pub async fn len(&self, queue: u16) -> Result<u64, DeadLetterError> {
        Ok(self
            .redis
            .llen(dead_letter_key(&self.key_prefix, queue))
            .await?)
    }

    /// Up to `count` records of `queue` from position `start`.
    pub async fn list(
        &self,
        queue: u16,
        start: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let key = dead_letter_key(&self.key_prefix, queue);
        let stop = i64::try_from(start + count - 1).unwrap_or(i64::MAX);
        let raw: Vec<String> = self
            .redis
            .lrange(key, i64::try_from(start).unwrap_or(i64::MAX), stop)
            .await?;
        raw.iter()
            .enumerate()
            .map(|(i, text)| parse_record(queue, start + i, text))
            .collect()
    }

    /// Moves up to `count` dead letters of `queue`, oldest first, back to the tail of their
    /// queue (each move is atomic and happens only if the record is still the list's head).
    /// Returns how many were replayed.
    pub async fn replay(&self, queue: u16, count: usize) -> Result<usize, DeadLetterError> {
        let key = dead_letter_key(&self.key_prefix, queue);
        let mut moved = 0;
        while moved < count {
            let head: Option<String> = self.redis.lindex(&key, 0).await?;
            let Some(text) = head else { break };
            let record = parse_record(queue, 0, &text)?;
            let bytes = record.entry().map_err(|e| DeadLetterError::BadRecord {
                queue,
                index: 0,
                problem: format!("entry_base64: {e}"),
            })?;
            let target = matomo_wire::queue_key(&self.key_prefix, record.queue);
            let done: i64 = self
                .scripts
                .replay
                .run(
                    &self.redis,
                    vec![key.clone(), target],
                    vec![Value::from(text.as_str()), Value::Bytes(bytes.into())],
                )
                .await?;
            if done == 0 {
                // The head changed under us (another replay); look again.
                continue;
            }
            moved += 1;
        }
        Ok(moved)
    }

    /// Deletes the dead letters of `queue`; returns how many there were.
    pub async fn purge(&self, queue: u16) -> Result<u64, DeadLetterError> {
        let key = dead_letter_key(&self.key_prefix, queue);
        let n: u64 = self.redis.llen(&key).await?;
        let _: i64 = self.redis.del(&key).await?;
        Ok(n)
    }
}

fn parse_record(queue: u16, index: usize, text: &str) -> Result<DeadLetter, DeadLetterError> {
    serde_json::from_str(text).map_err(|e| DeadLetterError::BadRecord {
        queue,
        index,
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_original_bytes() {
        let bytes = [0x78u8, 0x9c, 0, 255, 10];
        let dl = DeadLetter::new(7, "undecodable", &bytes);
        let back: DeadLetter = serde_json::from_str(&dl.to_json()).expect("parses");
        assert_eq!(back, dl);
        assert_eq!(back.entry().expect("base64"), bytes);
        assert_eq!(back.queue, 7);
        let v: serde_json::Value = serde_json::from_str(&dl.to_json()).expect("json");
        for field in ["reason", "queue", "time", "entry_base64"] {
            assert!(v.get(field).is_some(), "{field}");
        }
    }
}
