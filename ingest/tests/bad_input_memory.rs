//! The parsers' memory bound: while a request at the body limit (`ingest.max_body_bytes`,
//! 8 MiB by default) is parsed and encoded, the process's resident memory grows by at most a
//! small multiple of the body, whatever the body's shape.
//!
//! Each shape runs in a child process (this test binary re-run with `MEMORY_SHAPE` set), so
//! freed memory of one shape cannot hide the next one's. The child builds the body, resets the
//! kernel's peak-RSS mark (`/proc/self/clear_refs`), parses and encodes, and reports
//! `VmHWM - VmRSS before`: real pages, allocator overhead included. Linux only. Run with
//! `--nocapture` for the table.

use std::fmt::Write as _;
use std::process::Command;

use matomo_ingest::http::bulk_encode::{encode_bulk, Checked};
use matomo_ingest::parse::{parse_bulk, single_request};
use matomo_ingest::queue::{entries_for, Envelope, Routed, Routing};
use matomo_wire::Params;

/// The default `ingest.max_body_bytes`.
const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// The default `ingest.max_bulk_requests`.
const MAX_BULK: usize = 10_000;
/// The bound asserted: resident growth per body byte.
const MAX_RATIO: f64 = 6.0;
const THIS_TEST: &str = "parsing_a_body_at_the_limit_grows_memory_by_a_small_multiple_of_it";

/// The shapes: name, and whether anything is queued.
const SHAPES: &[(&str, bool)] = &[
    ("bulk: 10k long URL entries", true),
    ("bulk: 10k URL entries of 100 short pairs", true),
    ("bulk: 10k object entries of 70 short keys", true),
    ("bulk: one object entry of 700k keys (invalid)", false),
    ("bulk: 4M tiny entries (over the entry limit)", false),
    ("single hit: form of 1000 %XX latin1 values", true),
];

/// Builds the body of `shape` straight into one buffer (no garbage for the parser to reuse).
fn body(shape: &str) -> String {
    let mut b = String::with_capacity(BODY_LIMIT);
    let entries = |b: &mut String, count: usize, entry: &dyn Fn(&mut String, usize)| {
        b.push_str("{\"requests\":[");
        for i in 0..count {
            if i > 0 {
                b.push(',');
            }
            entry(b, i);
        }
        b.push_str("]}");
    };
    match shape {
        "bulk: 10k long URL entries" => entries(&mut b, MAX_BULK, &|b, i| {
            let pad = BODY_LIMIT / MAX_BULK - 110;
            let _ = write!(
                b,
                "\"?idsite=1&rec=1&_id={i:016x}&url=https%3A%2F%2Fa.example%2F"
            );
            b.extend(std::iter::repeat_n('p', pad));
            b.push('"');
        }),
        "bulk: 10k URL entries of 100 short pairs" => entries(&mut b, MAX_BULK, &|b, _| {
            b.push_str("\"?idsite=1&rec=1");
            for k in 0..100 {
                let _ = write!(b, "&k{k}=v");
            }
            b.push('"');
        }),
        "bulk: 10k object entries of 70 short keys" => entries(&mut b, MAX_BULK, &|b, i| {
            b.push('{');
            for k in 0..70 {
                let _ = write!(b, "{}\"k{k}\":{i}", if k > 0 { "," } else { "" });
            }
            b.push('}');
        }),
        "bulk: one object entry of 700k keys (invalid)" => entries(&mut b, 1, &|b, _| {
            b.push('{');
            for k in 0..700_000 {
                let _ = write!(b, "{}\"{k}\":1", if k > 0 { "," } else { "" });
            }
            b.push('}');
        }),
        "bulk: 4M tiny entries (over the entry limit)" => {
            entries(&mut b, BODY_LIMIT / 2 - 8, &|b, _| b.push('0'))
        }
        "single hit: form of 1000 %XX latin1 values" => {
            b.push_str("idsite=1&rec=1");
            let repeat = BODY_LIMIT / 1000 / 3 - 10;
            for k in 0..1000 {
                let _ = write!(b, "&k{k}=");
                for _ in 0..repeat {
                    b.push_str("%E9");
                }
            }
        }
        other => panic!("unknown shape {other}"),
    }
    assert!(b.len() <= BODY_LIMIT, "{shape}: {} bytes", b.len());
    b
}

/// The envelope and routing of every measurement.
fn envelope() -> (Envelope<'static>, Routing) {
    let envelope = Envelope::default();
    let routing = Routing {
        num_queues: 16,
        ..Routing::default()
    };
    (envelope, routing)
}

/// `Vm<field>` of this process, in bytes.
fn vm(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("Vm{field}:")))
        .unwrap_or_else(|| panic!("no Vm{field}"));
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// The child: parses one shape and prints `MEMORY <body bytes> <growth bytes> <queued>`.
fn measure(shape: &str) {
    let body = body(shape);
    let before = vm("RSS");
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS mark");
    let (envelope, routing) = envelope();
    let id = || "0000000000000000".to_owned();
    let queued = if shape.starts_with("single hit") {
        let params = single_request(b"idsite=1&rec=1", Some(body.as_bytes()));
        let routed = [Routed {
            params: &params,
            ip: "192.0.2.1",
        }];
        entries_for(&routed, &envelope, routing, id).len() == 1
    } else {
        // The handler's path, every request accepted.
        match parse_bulk(body.as_bytes(), MAX_BULK) {
            Ok(bulk) => {
                let accept = |_: &Params| Checked::Accepted("192.0.2.1".into());
                let (entries, _) = encode_bulk(&bulk.requests, &envelope, routing, accept, id);
                !entries.is_empty()
            }
            Err(_) => false,
        }
    };
    let growth = vm("HWM").saturating_sub(before);
    println!("MEMORY {} {growth} {queued}", body.len());
}

#[test]
fn parsing_a_body_at_the_limit_grows_memory_by_a_small_multiple_of_it() {
    if let Ok(shape) = std::env::var("MEMORY_SHAPE") {
        measure(&shape);
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    println!("| input | body bytes | resident growth | ratio |");
    println!("| --- | --- | --- | --- |");
    for (shape, queued) in SHAPES {
        let out = Command::new(&exe)
            .args(["--exact", THIS_TEST, "--nocapture", "--test-threads=1"])
            .env("MEMORY_SHAPE", shape)
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = stdout
            .lines()
            .find_map(|l| l.split("MEMORY ").nth(1))
            .unwrap_or_else(|| {
                panic!(
                    "{shape}: no report\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let fields: Vec<&str> = report.split(' ').collect();
        let body: usize = fields[0].parse().expect("body bytes");
        let growth: usize = fields[1].parse().expect("growth bytes");
        assert_eq!(fields[2], queued.to_string(), "{shape}: queued");
        let ratio = growth as f64 / body as f64;
        println!("| {shape} | {body} | {growth} | {ratio:.2} |");
        assert!(ratio <= MAX_RATIO, "{shape}: {ratio:.2}× the body");
    }
}
