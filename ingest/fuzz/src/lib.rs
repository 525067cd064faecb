//! What the fuzz targets share: the queue round trip every parsed request must survive.

use matomo_ingest::queue::{entries_for, Envelope, Routed, Routing};
use matomo_wire::Params;

/// Routes and encodes `requests` as the node does (client IP `ip`, `num_queues` queues), checks
/// every entry names a valid queue and decodes, and returns the decoded requests as PHP JSON
/// text, in entry order.
pub fn encode_and_decode(requests: &[Params], ip: &str, num_queues: u16) -> Vec<String> {
    let routed: Vec<Routed<'_>> = requests
        .iter()
        .map(|params| Routed { params, ip })
        .collect();
    let envelope = Envelope::default();
    let routing = Routing {
        num_queues,
        ..Routing::default()
    };
    let mut decoded = Vec::new();
    for entry in entries_for(&routed, &envelope, routing, || "0000000000000000".into()) {
        assert!(entry.queue_id < num_queues);
        let set = matomo_wire::decode(&entry.bytes).expect("our entries decode");
        decoded.extend(set.requests.iter().map(php_json));
    }
    decoded
}

/// A request as PHP's `json_encode` writes it: the form in which a request and its decoded copy
/// must agree (a map keyed `0..n` is a list there, as in PHP).
pub fn php_json(params: &Params) -> String {
    matomo_wire::phpjson::to_string(&serde_json::Value::Object(params.clone()))
}
