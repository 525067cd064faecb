//! Criterion bench of the per-hit hot path without I/O: parse a JavaScript-tracker hit (query
//! string), validate it against a site cache, build `env.server`, route and encode the
//! QueuedTracking entry (for each `queue.compression` mode); and the same for a bulk body of 50
//! hits.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use matomo_ingest::env::{ip_string, server_vars};
use matomo_ingest::http::bulk_encode::{encode_bulk, Checked};
use matomo_ingest::parse::{parse_bulk, single_hit};
use matomo_ingest::queue::{entries_for, Envelope, Routed, Routing};
use matomo_ingest::sites::Snapshot;
use matomo_ingest::validate::{validate, Context};
use tier_config::EntryCompression;

const MODES: [(&str, EntryCompression); 4] = [
    ("default", EntryCompression::Default),
    ("zlib", EntryCompression::Zlib),
    ("fast", EntryCompression::Fast),
    ("none", EntryCompression::None),
];

const HIT: &str = "action_name=Wanderlust%20Weekly%20%E2%80%93%20Start&idsite=1&rec=1&r=842445&h=19&m=15&s=59\
&url=http%3A%2F%2Fexample.com%2Fstories%2Fpacking%3Futm_source%3Dnews&urlref=https%3A%2F%2Fwww.google.com%2F\
&_id=7cb66ae00cf4c764&_idn=0&_refts=0&send_image=1&cookie=1&res=1920x1080&pv_id=TiRZws\
&pf_net=41&pf_srv=114&pf_tfr=349&pf_dm1=1673&pf_dm2=92&pf_onl=54&uadata=%7B%7D";

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("user-agent", HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"));
    h.insert(
        "accept-language",
        HeaderValue::from_static("en-US,en;q=0.9"),
    );
    h.insert(
        "referer",
        HeaderValue::from_static("http://example.com/stories/packing"),
    );
    h
}

fn one_hit(
    snapshot: &Snapshot,
    headers: &HeaderMap,
    query: &[u8],
    compression: EntryCompression,
) -> usize {
    let params = single_hit(query, None);
    let ctx = Context {
        snapshot,
        token_auth: None,
        via_post: false,
        now: 1_800_000_000,
        require_auth: true,
        cdt_auth_threshold: 86_400,
    };
    validate(&params, &ctx).expect("valid");
    let ip: IpAddr = "203.0.113.5".parse().expect("ip");
    let server = server_vars(&ip_string(ip), "GET", headers, 1_800_000_000, false);
    let envelope = Envelope {
        server,
        cookie: Default::default(),
        token_auth: None,
        time: 1_800_000_000,
    };
    let routing = Routing {
        num_queues: 16,
        uid_overwrites_visitor_id: true,
        compression,
    };
    let entries = entries_for(
        &[Routed {
            params: &params,
            ip: "203.0.113.5",
        }],
        &envelope,
        routing,
        || "0123456789abcdef".into(),
    );
    entries[0].bytes.len()
}

fn bench(c: &mut Criterion) {
    let snapshot = Snapshot::new("salt", [1, 2], [], [], []);
    let headers = headers();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in MODES {
        group.bench_function(format!("single_hit_parse_validate_encode/{name}"), |b| {
            b.iter(|| {
                one_hit(
                    black_box(&snapshot),
                    &headers,
                    black_box(HIT.as_bytes()),
                    mode,
                )
            })
        });
    }
    let urls: Vec<String> = (0..50).map(|i| format!("?{HIT}&n={i}")).collect();
    let body = serde_json::json!({"requests": urls}).to_string();
    group.throughput(Throughput::Elements(50));
    group.bench_function("bulk50_parse_validate_encode", |b| {
        b.iter(|| {
            let bulk = parse_bulk(black_box(body.as_bytes()), 1000).expect("bulk");
            let ctx = Context {
                snapshot: &snapshot,
                token_auth: None,
                via_post: true,
                now: 1_800_000_000,
                require_auth: true,
                cdt_auth_threshold: 86_400,
            };
            let ip: IpAddr = "203.0.113.5".parse().expect("ip");
            let server = server_vars(&ip_string(ip), "POST", &headers, 1_800_000_000, false);
            let envelope = Envelope {
                server,
                cookie: Default::default(),
                token_auth: None,
                time: 1,
            };
            let routing = Routing {
                num_queues: 16,
                ..Routing::default()
            };
            let check = |p: &_| {
                validate(p, &ctx).expect("valid");
                Checked::Accepted("203.0.113.5".into())
            };
            let id = || "0123456789abcdef".into();
            encode_bulk(&bulk.requests, &envelope, routing, check, id)
                .0
                .len()
        })
    });
    group.finish();
    for (name, mode) in MODES {
        println!(
            "encoded entry for one JS hit, compression {name}: {} bytes",
            one_hit(&snapshot, &headers, HIT.as_bytes(), mode)
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
