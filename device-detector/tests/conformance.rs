//! Conformance against DeviceDetector's own fixtures (`Tests/fixtures/*.yml`, 35,041 cases, and
//! the per-parser fixtures under `Tests/Parser/**/fixtures`), compared field by field the way
//! DeviceDetector's PHPUnit tests compare them. Prints the pass rate per file, writes every
//! difference to a report file, and fails below the floors set here.
//!
//! Data: `<workspace>/../shared/matomo-data/device-detector` (override with `MATOMO_SHARED_DIR`);
//! skipped with a message when absent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use matomo_device_detector::{
    ClientHints, ClientInfo, ClientType, Detection, DeviceDetector, Options, VersionTruncation,
};
use serde_yaml::Value;

/// Measured 100% (35,041 and 2,396 cases) minus a small margin; the bar is 99.5%.
const MAIN_FLOOR_PERCENT: f64 = 99.9;
const PARSER_FLOOR_PERCENT: f64 = 99.9;

fn shared_dir() -> PathBuf {
    match std::env::var_os("MATOMO_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "1" } else { "" }.to_string(),
        _ => String::new(),
    }
}

fn field(v: &Value, key: &str) -> String {
    v.get(key).map(text).unwrap_or_default()
}

fn hints_of(case: &Value) -> ClientHints {
    // Headers may hold structured values (`fullVersionList: [...]`), as `uadata` does, so they
    // go through the JSON reader, which accepts header names too.
    match case.get("headers") {
        Some(headers) => {
            let json = serde_json::to_string(headers).expect("headers to JSON");
            ClientHints::from_uadata_json(&json).expect("fixture headers")
        }
        None => ClientHints::default(),
    }
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Sequence(s)) => s.is_empty(),
        Some(Value::Mapping(m)) => m.is_empty(),
        _ => false,
    }
}

fn diff(out: &mut Vec<String>, what: &str, expected: &str, actual: &str) {
    if expected != actual {
        out.push(format!("{what}: expected {expected:?}, got {actual:?}"));
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn compare_client(out: &mut Vec<String>, expected: &Value, client: Option<&ClientInfo>) {
    let Some(c) = client else {
        out.push(format!(
            "client: expected {}, got none",
            field(expected, "name")
        ));
        return;
    };
    diff(
        out,
        "client.type",
        &field(expected, "type"),
        c.client_type.as_str(),
    );
    diff(out, "client.name", &field(expected, "name"), &c.name);
    diff(
        out,
        "client.version",
        &field(expected, "version"),
        &c.version,
    );
    if expected.get("engine").is_some() || c.client_type == ClientType::Browser {
        diff(out, "client.engine", &field(expected, "engine"), &c.engine);
        diff(
            out,
            "client.engine_version",
            &field(expected, "engine_version"),
            &c.engine_version,
        );
    }
    if expected.get("family").is_some() {
        diff(
            out,
            "client.family",
            &field(expected, "family"),
            &opt(&c.family),
        );
    }
}

/// Differences between one `Tests/fixtures` case and a detection (empty = pass).
fn compare_main(case: &Value, d: &Detection) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(bot) = case.get("bot") {
        let Some(b) = &d.bot else {
            out.push("bot: expected a bot, got none".into());
            return out;
        };
        diff(&mut out, "bot.name", &field(bot, "name"), &b.name);
        diff(
            &mut out,
            "bot.category",
            &field(bot, "category"),
            &opt(&b.category),
        );
        diff(&mut out, "bot.url", &field(bot, "url"), &opt(&b.url));
        if let Some(p) = bot.get("producer") {
            let (n, u) = b
                .producer
                .as_ref()
                .map_or((String::new(), String::new()), |p| {
                    (opt(&p.name), opt(&p.url))
                });
            diff(&mut out, "bot.producer.name", &field(p, "name"), &n);
            diff(&mut out, "bot.producer.url", &field(p, "url"), &u);
        }
        return out;
    }
    if let Some(b) = &d.bot {
        out.push(format!("bot: expected none, got {}", b.name));
        return out;
    }
    let os = case.get("os");
    match (&d.os, is_empty_value(os)) {
        (None, true) => {}
        (Some(o), true) => out.push(format!("os: expected none, got {}", o.name)),
        (None, false) => out.push("os: expected one, got none".into()),
        (Some(o), false) => {
            let os = os.unwrap_or(&Value::Null);
            diff(&mut out, "os.name", &field(os, "name"), &o.name);
            diff(&mut out, "os.version", &field(os, "version"), &o.version);
            diff(&mut out, "os.platform", &field(os, "platform"), &o.platform);
        }
    }
    let client = case.get("client");
    if is_empty_value(client) {
        if let Some(c) = &d.client {
            out.push(format!("client: expected none, got {}", c.name));
        }
    } else {
        compare_client(&mut out, client.unwrap_or(&Value::Null), d.client.as_ref());
    }
    let device = case.get("device").cloned().unwrap_or(Value::Null);
    diff(
        &mut out,
        "device.type",
        &field(&device, "type"),
        d.device_type.map_or("", |t| t.name()),
    );
    diff(
        &mut out,
        "device.brand",
        &field(&device, "brand"),
        &opt(&d.brand),
    );
    diff(
        &mut out,
        "device.model",
        &field(&device, "model"),
        &opt(&d.model),
    );
    let os_family =
        d.os.as_ref()
            .and_then(|o| o.family.clone())
            .unwrap_or("Unknown".into());
    diff(&mut out, "os_family", &field(case, "os_family"), &os_family);
    let browser_family = d
        .client
        .as_ref()
        .filter(|c| c.client_type == ClientType::Browser)
        .and_then(|c| c.family.clone())
        .unwrap_or("Unknown".into());
    diff(
        &mut out,
        "browser_family",
        &field(case, "browser_family"),
        &browser_family,
    );
    out
}

/// Differences for a per-parser fixture case; `file` tells which parser it exercises.
fn compare_parser(dd: &DeviceDetector, file: &str, case: &Value) -> Vec<String> {
    let ua = field(case, "user_agent");
    let hints = hints_of(case);
    let mut out = Vec::new();
    let name = file.rsplit('/').next().unwrap_or(file);
    let client_type = match name {
        "browser.yml" => Some(ClientType::Browser),
        "feed_reader.yml" => Some(ClientType::FeedReader),
        "library.yml" => Some(ClientType::Library),
        "mediaplayer.yml" => Some(ClientType::MediaPlayer),
        "mobile_app.yml" => Some(ClientType::MobileApp),
        "pim.yml" => Some(ClientType::Pim),
        _ => None,
    };
    if let Some(t) = client_type {
        let c = dd.parse_client_only(t, &ua, &hints);
        compare_client(
            &mut out,
            case.get("client").unwrap_or(&Value::Null),
            c.as_ref(),
        );
        return out;
    }
    match name {
        "oss.yml" => {
            let expected = case.get("os").cloned().unwrap_or(Value::Null);
            match dd.parse_os_only(&ua, &hints) {
                None => out.push("os: got none".into()),
                Some(o) => {
                    diff(&mut out, "os.name", &field(&expected, "name"), &o.name);
                    diff(
                        &mut out,
                        "os.short_name",
                        &field(&expected, "short_name"),
                        &o.short_name,
                    );
                    diff(
                        &mut out,
                        "os.version",
                        &field(&expected, "version"),
                        &o.version,
                    );
                    diff(
                        &mut out,
                        "os.platform",
                        &field(&expected, "platform"),
                        &o.platform,
                    );
                    diff(
                        &mut out,
                        "os.family",
                        &field(&expected, "family"),
                        &opt(&o.family),
                    );
                }
            }
        }
        "vendorfragments.yml" => {
            let got = dd.vendor_fragment_only(&field(case, "useragent"));
            diff(
                &mut out,
                "vendor",
                &field(case, "vendor"),
                &got.unwrap_or_default(),
            );
        }
        "type-methods.yml" => {
            let d = dd.detect_uncached(&ua, &ClientHints::default());
            let t = d.device_type;
            use matomo_device_detector::DeviceType as T;
            let got = [
                d.is_bot(),
                d.is_mobile,
                d.is_desktop(),
                t == Some(T::Tablet),
                t == Some(T::Tv),
                t == Some(T::Wearable),
            ];
            let expected: Vec<bool> = case
                .get("check")
                .and_then(Value::as_sequence)
                .map(|s| s.iter().map(|v| v.as_bool().unwrap_or(false)).collect())
                .unwrap_or_default();
            if expected != got {
                out.push(format!("type methods: expected {expected:?}, got {got:?}"));
            }
        }
        device_file => {
            let regex_file = match device_file {
                "camera.yml" => "device/cameras.yml",
                "car_browser.yml" => "device/car_browsers.yml",
                "console.yml" => "device/consoles.yml",
                "notebook.yml" => "device/notebooks.yml",
                other => {
                    out.push(format!("unknown per-parser fixture {other}"));
                    return out;
                }
            };
            let expected = case.get("device").cloned().unwrap_or(Value::Null);
            match dd.parse_device_only(regex_file, &ua) {
                None => out.push("device: parser returned nothing".into()),
                Some((t, brand, model)) => {
                    diff(
                        &mut out,
                        "device.type",
                        &field(&expected, "type"),
                        t.map_or("", |t| t.name()),
                    );
                    diff(&mut out, "device.brand", &field(&expected, "brand"), &brand);
                    diff(&mut out, "device.model", &field(&expected, "model"), &model);
                }
            }
        }
    }
    out
}

struct FileResult {
    name: String,
    total: usize,
    failures: Vec<String>,
}

fn load_cases(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    let value: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {path:?}: {e}"));
    value.as_sequence().cloned().unwrap_or_default()
}

/// Runs `check` over every case of every file, on all cores.
fn run_files(
    files: &[(String, PathBuf)],
    check: &(dyn Fn(&str, &Value) -> Vec<String> + Sync),
) -> Vec<FileResult> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let mut results = Vec::new();
    for (name, path) in files {
        let cases = load_cases(path);
        let chunk = cases.len().div_ceil(threads).max(1);
        let failures: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut fails = Vec::new();
                        for case in part {
                            let diffs = check(name, case);
                            if !diffs.is_empty() {
                                let ua = case.get("user_agent").or(case.get("useragent"));
                                fails.push(format!(
                                    "{name}: {}\n    {}",
                                    ua.map(text).unwrap_or_default(),
                                    diffs.join("\n    ")
                                ));
                            }
                        }
                        fails
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("worker thread"))
                .collect()
        });
        results.push(FileResult {
            name: name.clone(),
            total: cases.len(),
            failures,
        });
    }
    results
}

fn yml_files(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml"))
                .map(|p| {
                    (
                        format!(
                            "{prefix}{}",
                            p.file_name().unwrap_or_default().to_string_lossy()
                        ),
                        p,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn summarize(results: &[FileResult], report: &mut String) -> (usize, usize) {
    let (mut passed, mut total) = (0, 0);
    for r in results {
        let ok = r.total - r.failures.len();
        println!(
            "{}: passed {ok} of {} ({:.2}%)",
            r.name,
            r.total,
            pct(ok, r.total)
        );
        passed += ok;
        total += r.total;
        for f in &r.failures {
            let _ = writeln!(report, "{f}");
        }
    }
    (passed, total)
}

fn pct(n: usize, m: usize) -> f64 {
    if m == 0 {
        100.0
    } else {
        n as f64 * 100.0 / m as f64
    }
}

#[test]
fn conformance_device_detector_fixtures() {
    let data = shared_dir().join("matomo-data/device-detector");
    if !data.join("regexes").is_dir() {
        println!("SKIPPED: device-detector data not found at {data:?} (set MATOMO_SHARED_DIR)");
        return;
    }
    let options = Options {
        version_truncation: VersionTruncation::None,
        cache_capacity: 0,
        ..Options::default()
    };
    let dd = DeviceDetector::with_options(&data.join("regexes"), options).expect("load regexes");
    let mut report = String::new();

    let parser_dir = data.join("Tests/Parser");
    let mut parser_files = yml_files(&parser_dir.join("fixtures"), "Parser/fixtures/");
    parser_files.extend(yml_files(
        &parser_dir.join("Client/fixtures"),
        "Parser/Client/fixtures/",
    ));
    parser_files.extend(yml_files(
        &parser_dir.join("Device/fixtures"),
        "Parser/Device/fixtures/",
    ));
    let parser_results = run_files(&parser_files, &|name, case| compare_parser(&dd, name, case));
    let (pp, pt) = summarize(&parser_results, &mut report);
    println!(
        "per-parser fixtures: passed {pp} of {pt} ({:.2}%)",
        pct(pp, pt)
    );

    let main_files = yml_files(&data.join("Tests/fixtures"), "fixtures/");
    let main_results = run_files(&main_files, &|_, case| {
        let ua = field(case, "user_agent");
        compare_main(case, &dd.detect_uncached(&ua, &hints_of(case)))
    });
    let (passed, total) = summarize(&main_results, &mut report);

    let report_path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("device-detector-differences.txt");
    let _ = std::fs::write(&report_path, &report);
    println!("every difference: {}", report_path.display());
    let rate = pct(passed, total);
    println!("device-detector fixtures: passed {passed} of {total} ({rate:.2}%)");
    assert!(
        total >= 35_000,
        "expected the 35,041 fixture cases, found {total}"
    );
    assert!(
        rate >= MAIN_FLOOR_PERCENT,
        "pass rate {rate:.2}% below floor {MAIN_FLOOR_PERCENT}%"
    );
    assert!(
        pct(pp, pt) >= PARSER_FLOOR_PERCENT,
        "per-parser pass rate {:.2}% below floor {PARSER_FLOOR_PERCENT}%",
        pct(pp, pt)
    );
}
