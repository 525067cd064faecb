//! Entry compression alone, on realistic entries (`corpus`): the mean compressed size of each
//! `queue.compression` mode next to zlib levels 1, 6 and 9 (printed), and criterion timings of
//! compressing one entry in each mode and at zlib level 1.
//!
//! `cargo bench -p matomo-ingest --bench compression` (sizes only: add `-- sizes`; with
//! `CPU_PER_ENTRY=1` in the environment: sizes skipped, CPU time per entry of each mode, side
//! by side, from the thread's own CPU clock).

mod corpus;

use std::hint::black_box;
use std::io::Write as _;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use matomo_ingest::queue::codec::compress;
use tier_config::EntryCompression;

const MODES: [(&str, EntryCompression); 4] = [
    ("default", EntryCompression::Default),
    ("zlib", EntryCompression::Zlib),
    ("fast", EntryCompression::Fast),
    ("none", EntryCompression::None),
];

fn zlib(input: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(input).expect("in memory");
    encoder.finish().expect("in memory")
}

fn mean(entries: &[Vec<u8>], f: impl Fn(&[u8]) -> usize) -> f64 {
    entries.iter().map(|e| f(e) as f64).sum::<f64>() / entries.len() as f64
}

fn print_sizes(name: &str, entries: &[Vec<u8>]) {
    let mut line = format!(
        "{name} ({} entries), mean bytes: json {:.1}",
        entries.len(),
        mean(entries, |e| e.len())
    );
    for (mode, compression) in MODES {
        line += &format!(
            ", {mode} {:.1}",
            mean(entries, |e| compress(e, compression).len())
        );
    }
    for level in [1, 6, 9] {
        line += &format!(
            ", zlib-{level} {:.1}",
            mean(entries, |e| zlib(e, level).len())
        );
    }
    println!("{line}");
}

/// CPU time of this thread so far (`/proc/thread-self/schedstat`), in nanoseconds: time on a
/// CPU only, so other load on the machine moves it little.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Compresses the entries in every mode in turn, 20 rounds, and prints the CPU time per entry
/// of each: side-by-side figures that a loaded machine disturbs alike.
fn cpu_per_entry(entries: &[Vec<u8>]) {
    const ROUNDS: u32 = 20;
    let mut sums = [0u64; MODES.len()];
    for _ in 0..ROUNDS {
        for ((_, mode), sum) in MODES.iter().zip(&mut sums) {
            let start = cpu_ns();
            let bytes: usize = entries
                .iter()
                .map(|e| compress(black_box(e), *mode).len())
                .sum();
            black_box(bytes);
            *sum += cpu_ns() - start;
        }
    }
    let mut line = String::from("CPU per entry:");
    for ((name, _), sum) in MODES.iter().zip(sums) {
        let micros = sum as f64 / f64::from(ROUNDS) / entries.len() as f64 / 1000.0;
        line += &format!(
            " {name} {micros:.2} us ({:.2} of zlib's)",
            sum as f64 / sums[1] as f64
        );
    }
    println!("{line}");
}

fn bench(c: &mut Criterion) {
    let load: Vec<Vec<u8>> = (1..=200)
        .map(|i| corpus::load_hit(i, "127.0.0.1:18081"))
        .collect();
    let varied = corpus::varied_hits(500);
    if std::env::var_os("CPU_PER_ENTRY").is_some() {
        cpu_per_entry(&varied);
        return;
    }
    print_sizes("load bench hits (hit.lua)", &load);
    print_sizes("varied JS-tracker hits", &varied);
    let mut group = c.benchmark_group("compress_entry");
    group.throughput(Throughput::Elements(varied.len() as u64));
    for (mode, compression) in MODES {
        group.bench_function(mode, |b| {
            b.iter(|| {
                varied
                    .iter()
                    .map(|e| compress(black_box(e), compression).len())
                    .sum::<usize>()
            })
        });
    }
    group.bench_function("zlib-1", |b| {
        b.iter(|| {
            varied
                .iter()
                .map(|e| zlib(black_box(e), 1).len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
