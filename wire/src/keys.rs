//! Redis key names and the shard function, as QueuedTracking 5.1 defines them.
//!
//! Queue `0` is the list `trackingQueueV1`, queue `n > 0` is `trackingQueueV1_n`; the lock of
//! queue `n` is `QueuedTrackingLock<n>`. A hit goes to queue `hexdec(first 3 hex of the visitor
//! id) % numQueueWorkers`, the visitor id being the one Matomo's `Request::getVisitorId()` finds
//! (user id hash, `cid`, `_id`) or, failing that, `md5` of the client IP.

use std::borrow::Cow;

use md5::{Digest as _, Md5};
use sha1::Sha1;

use crate::params::ParamLookup;
use crate::php::sanitized;

/// Name of queue 0; the others append `_<id>`.
pub const QUEUE_KEY_BASE: &str = "trackingQueueV1";
/// Prefix of the per-queue lock keys.
pub const LOCK_KEY_BASE: &str = "QueuedTrackingLock";

/// The Redis list of queue `queue_id`, behind `prefix` (empty in production).
pub fn queue_key(prefix: &str, queue_id: u16) -> String {
    if queue_id == 0 {
        format!("{prefix}{QUEUE_KEY_BASE}")
    } else {
        format!("{prefix}{QUEUE_KEY_BASE}_{queue_id}")
    }
}

/// The lock key of queue `queue_id`, behind `prefix` (empty in production).
pub fn lock_key(prefix: &str, queue_id: u16) -> String {
    format!("{prefix}{LOCK_KEY_BASE}{queue_id}")
}

/// The visitor id QueuedTracking routes a request by, as 16 (or, for the IP fallback, 32)
/// lowercase hex characters.
///
/// `uid_overwrites_visitor_id` is `[Tracker] enable_userid_overwrites_visitorid` (on by
/// default). `ip` is the client IP string Matomo would use for the request.
pub fn visitor_id_for_queue<P: ParamLookup + ?Sized>(
    params: &P,
    ip: &str,
    uid_overwrites_visitor_id: bool,
) -> String {
    if let Some(id) = forced_visitor_id(params, uid_overwrites_visitor_id) {
        return id;
    }
    hex::encode(Md5::digest(ip.as_bytes()))
}

/// `Request::getVisitorId()` without the IP fallback: `None` where PHP returns false or throws.
fn forced_visitor_id<P: ParamLookup + ?Sized>(
    params: &P,
    uid_overwrites_visitor_id: bool,
) -> Option<String> {
    if uid_overwrites_visitor_id {
        if let Some(uid) = sanitized_param(params, "uid") {
            let hash = hex::encode(Sha1::digest(uid.as_bytes()));
            return Some(hash[..16].to_owned());
        }
    }
    if let Some(cid) = sanitized_param(params, "cid") {
        // A cid of the wrong length makes PHP throw; the queue then falls back to the IP.
        return if cid.len() == 16 { hex_id(&cid) } else { None };
    }
    let id = sanitized_param(params, "_id")?;
    if id.len() >= 16 {
        hex_id(&id[..id.floor_char_boundary(16)])
    } else {
        None
    }
}

/// A non-empty parameter after Matomo's sanitising (PHP's `getParam` returns '' for absent).
fn sanitized_param<'p, P: ParamLookup + ?Sized>(params: &'p P, key: &str) -> Option<Cow<'p, str>> {
    let value = sanitized(params.param(key)?);
    (!value.is_empty()).then_some(value)
}

/// `bin2hex(hex2bin(s))`: lowercase when `s` is 16 hex digits, else `None`.
fn hex_id(s: &str) -> Option<String> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// `Manager::getQueueIdForVisitor`: `hexdec` of the first three characters when they are hex,
/// else the sum of their byte values, modulo the number of queues.
pub fn queue_id_for_visitor(visitor_id: &str, num_queues: u16) -> u16 {
    let n = u32::from(num_queues.max(1));
    let head: Vec<u8> = visitor_id
        .bytes()
        .take(3)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let id = if !head.is_empty() && head.iter().all(u8::is_ascii_hexdigit) {
        head.iter().fold(0u32, |acc, b| {
            acc * 16 + (*b as char).to_digit(16).unwrap_or(0)
        })
    } else {
        let p1 = u32::from(head.first().copied().unwrap_or(0));
        let p2 = head.get(1).map_or(p1, |b| u32::from(*b));
        let p3 = head.get(2).map_or(p2, |b| u32::from(*b));
        p1 + p2 + p3
    };
    // Lossless: the result is below `n`, which fits in u16.
    (id % n) as u16
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Params;

    fn params(v: serde_json::Value) -> Params {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn key_names_match_queued_tracking() {
        assert_eq!(queue_key("", 0), "trackingQueueV1");
        assert_eq!(queue_key("", 3), "trackingQueueV1_3");
        assert_eq!(queue_key("t1:", 2), "t1:trackingQueueV1_2");
        assert_eq!(lock_key("", 0), "QueuedTrackingLock0");
        assert_eq!(lock_key("", 15), "QueuedTrackingLock15");
    }

    #[test]
    fn shard_is_hexdec_of_first_three_mod_n() {
        assert_eq!(queue_id_for_visitor("7cb66ae00cf4c764", 1), 0);
        assert_eq!(queue_id_for_visitor("7cb66ae00cf4c764", 16), 0x7cb % 16);
        assert_eq!(queue_id_for_visitor("FFF0000000000000", 4096), 0xfff);
        assert_eq!(queue_id_for_visitor("abc", 7), (0xabc % 7) as u16);
        // Non-hex: the sum of the three byte values.
        assert_eq!(
            queue_id_for_visitor("xyz", 1000),
            (b'x' as u16 + b'y' as u16 + b'z' as u16)
        );
        assert_eq!(queue_id_for_visitor("x", 1000), 3 * u16::from(b'x'));
        assert_eq!(queue_id_for_visitor("", 5), 0);
    }

    #[test]
    fn visitor_id_prefers_uid_then_cid_then_id_then_ip() {
        let p =
            params(json!({"uid": "alice", "cid": "0123456789abcdef", "_id": "fedcba9876543210"}));
        let sha = hex::encode(Sha1::digest(b"alice"));
        assert_eq!(visitor_id_for_queue(&p, "1.2.3.4", true), &sha[..16]);
        assert_eq!(
            visitor_id_for_queue(&p, "1.2.3.4", false),
            "0123456789abcdef"
        );
        let p = params(json!({"_id": "FEDCBA9876543210ffff"}));
        assert_eq!(
            visitor_id_for_queue(&p, "1.2.3.4", true),
            "fedcba9876543210"
        );
        let p = params(json!({"_id": "short"}));
        assert_eq!(
            visitor_id_for_queue(&p, "1.2.3.4", true),
            hex::encode(Md5::digest(b"1.2.3.4"))
        );
    }

    #[test]
    fn uid_is_hashed_after_sanitising_like_php() {
        let p = params(json!({"uid": "a&b"}));
        let sha = hex::encode(Sha1::digest(b"a&amp;b"));
        assert_eq!(visitor_id_for_queue(&p, "", true), &sha[..16]);
    }

    #[test]
    fn invalid_cid_falls_back_to_the_ip() {
        let ip_hash = hex::encode(Md5::digest(b"10.0.0.1"));
        for cid in ["abc", "zzzzzzzzzzzzzzzz", "0123456789abcdef0"] {
            let p = params(json!({"cid": cid, "_id": "0123456789abcdef"}));
            assert_eq!(
                visitor_id_for_queue(&p, "10.0.0.1", true),
                ip_hash,
                "cid {cid}"
            );
        }
    }
}
