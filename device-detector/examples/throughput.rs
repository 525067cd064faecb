//! CPU cost of cold detections, per parser and in total, on user agents read from stdin (one per
//! line). CPU time (from `/proc/self/stat`, Linux) rather than wall time, so the figures stay
//! meaningful on a shared, loaded machine; the criterion bench (`benches/detect.rs`) gives wall
//! time. `cargo run -p matomo-device-detector --example throughput -- REGEXES_DIR < uas.txt`

use std::io::BufRead;

use matomo_device_detector::{ClientHints, ClientType, DeviceDetector, Options};

/// Seconds of CPU used by this process so far (user + system), or 0 where unavailable.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: throughput REGEXES_DIR < user-agents.txt");
        std::process::exit(2);
    };
    let uas: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .collect();
    if uas.is_empty() {
        eprintln!("no user agents on stdin");
        std::process::exit(2);
    }
    let start = cpu_seconds();
    let options = Options {
        cache_capacity: 0,
        ..Options::default()
    };
    let dd = match DeviceDetector::with_options(dir.as_ref(), options) {
        Ok(dd) => dd,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!("load: {:.2} s CPU", cpu_seconds() - start);
    let hints = ClientHints::default();
    for ua in &uas {
        dd.detect_uncached(ua, &hints); // compile what the sample needs
    }
    const ROUNDS: usize = 5;
    let n = (uas.len() * ROUNDS) as f64;
    let measure = |name: &str, f: &dyn Fn(&str)| {
        let start = cpu_seconds();
        for _ in 0..ROUNDS {
            for ua in &uas {
                f(ua);
            }
        }
        let per = (cpu_seconds() - start) / n;
        println!("{name:>12}: {:>6.0} µs CPU per user agent", per * 1e6);
        per
    };
    measure("os", &|ua| drop(dd.parse_os_only(ua, &hints)));
    measure("browser", &|ua| {
        drop(dd.parse_client_only(ClientType::Browser, ua, &hints))
    });
    measure("mobile app", &|ua| {
        drop(dd.parse_client_only(ClientType::MobileApp, ua, &hints))
    });
    measure("mobiles", &|ua| {
        drop(dd.parse_device_only("device/mobiles.yml", ua))
    });
    let total = measure("full detect", &|ua| drop(dd.detect_uncached(ua, &hints)));
    if total > 0.0 {
        println!("cold: {:.0} detections per CPU-second", 1.0 / total);
    }
}
