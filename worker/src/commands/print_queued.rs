//! `print-queued-requests`: the entries each queue will process next (one batch), decoded
//! (QueuedTracking's `queuedtracking:print-queued-requests`).

use std::io::Write;

use base64::Engine as _;
use bytes::Bytes;
use fred::prelude::*;
use serde_json::{json, Value as Json};

use super::{queue_ids, CommandError};

/// A decoded entry as JSON (the PHP state plus our entry id), or an error record.
pub fn entry_json(bytes: &[u8]) -> Json {
    match matomo_wire::decode(bytes) {
        Ok(set) => json!({
            "requests": set.requests,
            "env": {"server": set.server, "cookie": set.cookie},
            "tokenAuth": set.token_auth.as_ref().map_or(Json::Bool(false), |_| Json::String("<redacted>".into())),
            "time": set.time,
            "entryId": set.entry_id,
            "bytes": bytes.len(),
        }),
        Err(e) => json!({
            "error": e.to_string(),
            "entry_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        }),
    }
}

/// Prints up to `limit` head entries of each queue (or of `queue_id`).
pub async fn print_queued_requests(
    redis: &Pool,
    config: &tier_config::Config,
    queue_id: Option<u16>,
    limit: usize,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let prefix = &config.queue.key_prefix;
    for q in queue_ids(config, queue_id)? {
        writeln!(out, "Showing requests of queue {q}. Use --queue-id={q} to print only information for this queue.")?;
        let stop = i64::try_from(limit).unwrap_or(i64::MAX) - 1;
        let entries: Vec<Bytes> = if limit == 0 {
            Vec::new()
        } else {
            redis
                .lrange(matomo_wire::queue_key(prefix, q), 0, stop)
                .await?
        };
        let items: Vec<Json> = entries.iter().map(|e| entry_json(e)).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        )?;
        writeln!(out, "These were the requests of queue {q}. Use --queue-id={q} to print only information for this queue.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_and_garbage_is_shown_as_base64() {
        let set = matomo_wire::RequestSet {
            token_auth: Some("secret".into()),
            time: 5,
            ..Default::default()
        };
        let v = entry_json(&matomo_wire::encode(&set));
        assert_eq!(v["tokenAuth"], "<redacted>");
        assert_eq!(v["time"], 5);
        let v = entry_json(b"junk");
        assert!(v["error"].as_str().is_some());
        assert_eq!(v["entry_base64"], "anVuaw==");
    }
}
