//! `dead-letter list|show|replay|purge`: inspect the entries set aside as unprocessable, put
//! them back at the tail of their queue after a fix, or delete them.

use std::io::Write;

use super::print_queued::entry_json;
use super::{queue_ids, CommandError};
use crate::engine::DeadLetters;

/// `list`: a line per dead letter (position, time, size, reason) of each queue that has some.
pub async fn list(
    dl: &DeadLetters,
    config: &tier_config::Config,
    queue_id: Option<u16>,
    limit: usize,
    out: &mut dyn Write,
) -> Result<u64, CommandError> {
    let mut total = 0;
    for q in queue_ids(config, queue_id)? {
        let n = dl.len(q).await?;
        if n == 0 {
            continue;
        }
        total += n;
        writeln!(out, "queue {q}: {n} dead letters")?;
        for (i, record) in dl.list(q, 0, limit).await?.into_iter().enumerate() {
            let when = chrono::DateTime::from_timestamp(record.time, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let size = record.entry().map(|b| b.len()).unwrap_or(0);
            writeln!(out, "  #{i}  {when}  {size} bytes  {}", record.reason)?;
        }
    }
    if total == 0 {
        writeln!(out, "No dead letters.")?;
    }
    Ok(total)
}

/// `show`: one dead letter with its decoded entry.
pub async fn show(
    dl: &DeadLetters,
    queue: u16,
    index: usize,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let Some(record) = dl.list(queue, index, 1).await?.into_iter().next() else {
        return Err(CommandError::Usage(format!(
            "queue {queue} has no dead letter #{index}"
        )));
    };
    let bytes = record.entry().unwrap_or_default();
    let shown = serde_json::json!({
        "queue": record.queue,
        "time": record.time,
        "reason": record.reason,
        "entry": entry_json(&bytes),
    });
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    )?;
    Ok(())
}

/// `replay`: moves up to `count` dead letters of each selected queue back to its queue's tail.
pub async fn replay(
    dl: &DeadLetters,
    config: &tier_config::Config,
    queue_id: Option<u16>,
    count: usize,
    out: &mut dyn Write,
) -> Result<usize, CommandError> {
    let mut total = 0;
    for q in queue_ids(config, queue_id)? {
        let n = dl.replay(q, count).await?;
        if n > 0 {
            writeln!(
                out,
                "queue {q}: replayed {n} dead letters to the queue tail"
            )?;
        }
        total += n;
    }
    writeln!(out, "Replayed {total} dead letters.")?;
    Ok(total)
}

/// `purge`: deletes the dead letters of each selected queue.
pub async fn purge(
    dl: &DeadLetters,
    config: &tier_config::Config,
    queue_id: Option<u16>,
    out: &mut dyn Write,
) -> Result<u64, CommandError> {
    let mut total = 0;
    for q in queue_ids(config, queue_id)? {
        total += dl.purge(q).await?;
    }
    writeln!(out, "Purged {total} dead letters.")?;
    Ok(total)
}
