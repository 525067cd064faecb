//! Property tests: every entry we encode decodes to the same RequestSet, whatever the strings
//! hold, and the shard function always lands inside the queue range.

use matomo_wire::{decode, encode, queue_id_for_visitor, Params, RequestSet};
use proptest::prelude::*;
use serde_json::Value;

fn params() -> impl Strategy<Value = Params> {
    prop::collection::vec(("[a-z_]{1,12}", any::<String>()), 0..12)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(
        requests in prop::collection::vec(params(), 1..5),
        server in params(),
        token in proptest::option::of("[0-9a-f]{32}"),
        time in 0i64..4_000_000_000,
        id in proptest::option::of("[0-9a-f]{16}"),
    ) {
        // PHP lists: a map whose keys are "0".."n" in order reads back as a list and so
        // decodes to the same map; our generated keys are letters, so nothing changes shape.
        let set = RequestSet { requests, server, cookie: Params::new(), token_auth: token, time, entry_id: id };
        prop_assert_eq!(decode(&encode(&set)).expect("decodes"), set);
    }

    #[test]
    fn shard_is_in_range(visitor in "\\PC{0,20}", n in 1u16..=4096) {
        prop_assert!(queue_id_for_visitor(&visitor, n) < n);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }
}
