//! Detections per second on DeviceDetector's fixture user agents: cold (no cache, every pattern
//! scan runs) and warm (answered from the bounded cache). Needs `../shared/matomo-data` (or
//! `MATOMO_SHARED_DIR`); without it the benchmark prints a message and measures nothing.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use matomo_device_detector::{ClientHints, DeviceDetector, Options};

/// User agents per measured batch (spread evenly over all fixture files).
const SAMPLE: usize = 2_000;

fn shared_dir() -> PathBuf {
    match std::env::var_os("MATOMO_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

fn fixture_user_agents(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut uas = Vec::new();
    for file in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
    {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(serde_yaml::Value::Sequence(cases)) = serde_yaml::from_str(&text) else {
            continue;
        };
        uas.extend(cases.iter().filter_map(|c| {
            c.get("user_agent")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        }));
    }
    uas
}

fn bench(c: &mut Criterion) {
    let data = shared_dir().join("matomo-data/device-detector");
    let all = fixture_user_agents(&data.join("Tests/fixtures"));
    if all.is_empty() {
        eprintln!("SKIPPED: no fixtures under {data:?} (set MATOMO_SHARED_DIR)");
        return;
    }
    let step = (all.len() / SAMPLE).max(1);
    let sample: Vec<&str> = all
        .iter()
        .step_by(step)
        .take(SAMPLE)
        .map(String::as_str)
        .collect();
    let hints = ClientHints::default();
    let regexes = data.join("regexes");
    let dd = DeviceDetector::with_options(&regexes, Options::default()).expect("load regexes");
    dd.validate().expect("patterns compile");
    // Compile lazily created patterns and fill the cache before measuring.
    for ua in &sample {
        dd.detect(ua, &hints);
    }

    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(sample.len() as u64));
    group.sample_size(10);
    group.bench_with_input(BenchmarkId::new("cold", sample.len()), &sample, |b, uas| {
        b.iter(|| {
            for ua in uas {
                std::hint::black_box(dd.detect_uncached(ua, &hints));
            }
        })
    });
    group.bench_with_input(BenchmarkId::new("warm", sample.len()), &sample, |b, uas| {
        b.iter(|| {
            for ua in uas {
                std::hint::black_box(dd.detect(ua, &hints));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
