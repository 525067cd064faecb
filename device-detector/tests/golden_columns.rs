//! Matomo's stored device columns, checked against the rows PHP Matomo 5.1.2 wrote
//! (`../shared/golden-php`, DeviceDetector 6.3.2 regexes in `matomo-data/for-matomo-5.1`).
//!
//! For each `log_visit` row the user agent (and `uadata`) of its visitor's hits is run through
//! `detect_for_matomo` (Matomo's input sanitising, DeviceDetector 6.3 algorithm, default version
//! truncation) and `matomo_columns`, and all nine `config_*` device columns must equal what PHP
//! stored. Also checks that the 6.3.2 regexes all compile. Skipped with
//! a message when the shared data is absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use matomo_device_detector::{AlgorithmVersion, ClientHints, DeviceDetector, Options};
use serde_json::Value;

fn shared_dir() -> PathBuf {
    match std::env::var_os("MATOMO_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // A repeated key keeps its last value, as in PHP.
        params.insert(form_decode(k), form_decode(v));
    }
    params
}

fn column(row: &Value, name: &str) -> String {
    match row.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => "NULL".to_string(),
        Some(other) => other.to_string(),
    }
}

fn opt_num(v: Option<u8>) -> String {
    v.map_or("NULL".to_string(), |n| n.to_string())
}

#[test]
fn golden_rows_device_columns_match_matomo_5_1() {
    let shared = shared_dir();
    let regexes = shared.join("matomo-data/for-matomo-5.1/device-detector/regexes");
    let golden = shared.join("golden-php");
    if !regexes.is_dir() || !golden.join("golden-get.json").is_file() {
        println!("SKIPPED: golden data not found under {shared:?} (set MATOMO_SHARED_DIR)");
        return;
    }
    let options = Options {
        algorithm: AlgorithmVersion::V6_3,
        ..Options::default()
    };
    let dd = DeviceDetector::with_options(&regexes, options).expect("load 6.3.2 regexes");
    dd.validate().expect("all 6.3.2 patterns compile");

    // visitor id → (user agent, uadata) of its hits.
    let corpus = std::fs::read_to_string(golden.join("corpus.jsonl")).expect("corpus");
    let mut by_visitor: HashMap<String, (String, Option<String>)> = HashMap::new();
    for line in corpus.lines() {
        let hit: Value = serde_json::from_str(line).expect("corpus line");
        let params = query_params(hit["query"].as_str().unwrap_or(""));
        let Some(visitor) = params.get("cid").or(params.get("_id")) else {
            continue;
        };
        if params.contains_key("uid") {
            continue; // the visitor id is then derived from the user id
        }
        let ua = params
            .get("ua")
            .cloned()
            .or_else(|| hit["headers"]["User-Agent"].as_str().map(str::to_string))
            .unwrap_or_default();
        by_visitor
            .entry(visitor[..16.min(visitor.len())].to_lowercase())
            .or_insert((ua, params.get("uadata").cloned()));
    }

    let rows: Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("golden-get.json")).unwrap())
            .expect("golden json");
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in rows["tables"]["log_visit"]
        .as_array()
        .expect("log_visit rows")
    {
        let Some((ua, uadata)) = by_visitor.get(&column(row, "idvisitor")) else {
            continue;
        };
        let hints = uadata
            .as_deref()
            .and_then(|u| ClientHints::from_uadata_json(u).ok())
            .unwrap_or_default();
        let c = dd.detect_for_matomo(ua, &hints).matomo_columns();
        let got = [
            ("config_os", c.config_os),
            ("config_os_version", c.config_os_version),
            ("config_browser_name", c.config_browser_name),
            ("config_browser_version", c.config_browser_version),
            ("config_browser_engine", c.config_browser_engine),
            ("config_client_type", opt_num(c.config_client_type)),
            ("config_device_type", opt_num(c.config_device_type)),
            ("config_device_brand", c.config_device_brand),
            ("config_device_model", c.config_device_model),
        ];
        checked += 1;
        for (name, value) in got {
            let expected = column(row, name);
            if expected != value {
                failures.push(format!(
                    "{ua}\n    {name}: golden {expected:?}, ours {value:?}"
                ));
            }
        }
    }
    println!(
        "golden log_visit rows checked: {checked}, column differences: {}",
        failures.len()
    );
    for f in &failures {
        println!("{f}");
    }
    assert!(
        checked >= 300,
        "only {checked} golden rows could be matched to their hits"
    );
    assert!(
        failures.is_empty(),
        "{} device column differences",
        failures.len()
    );
}
