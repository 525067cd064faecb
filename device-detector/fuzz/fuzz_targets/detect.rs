//! Fuzzes detection over arbitrary user agents and client hints: the input is split at the first
//! NUL byte into a user agent and a hints part, which is fed both as Matomo's `uadata` JSON and as
//! `Name: value` header lines. Detection must never panic, whatever the bytes.
//!
//! Regexes come from `MATOMO_DD_REGEXES`, else `../../../shared/matomo-data/device-detector/regexes`
//! relative to this crate.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use matomo_device_detector::{ClientHints, DeviceDetector, Options};

fn detector() -> &'static DeviceDetector {
    static DD: OnceLock<DeviceDetector> = OnceLock::new();
    DD.get_or_init(|| {
        let dir = std::env::var_os("MATOMO_DD_REGEXES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/matomo-data/device-detector/regexes")
            });
        let options = Options {
            cache_capacity: 1_000,
            ..Options::default()
        };
        DeviceDetector::with_options(&dir, options)
            .unwrap_or_else(|e| panic!("fuzz setup: cannot load regexes from {dir:?}: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (ua, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let ua = String::from_utf8_lossy(ua);
    let rest = String::from_utf8_lossy(rest);
    let dd = detector();

    let _ = dd.detect(&ua, &ClientHints::default()).matomo_columns();
    if let Ok(hints) = ClientHints::from_uadata_json(&rest) {
        let _ = dd.detect_for_matomo(&ua, &hints).matomo_columns();
    }
    let headers = rest.lines().filter_map(|l| l.split_once(':'));
    let hints = ClientHints::from_headers(headers.map(|(n, v)| (n.trim(), v.trim())));
    let _ = dd.detect_uncached(&ua, &hints).matomo_columns();
});
