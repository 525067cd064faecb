//! A regex goal matched against a page URL: with the pattern compiled once per configuration
//! snapshot (what the tracker does) against compiled on every hit (what it did before session
//! 12, and what `goals::matches` still does for a goal built without its snapshot regex).
//! `cargo bench -p matomo-worker --bench goal_match`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use matomo_worker::tracker::goals;
use matomo_worker::tracker::settings::Goal;

fn regex_goal() -> Goal {
    Goal {
        idgoal: 1,
        match_attribute: "url".into(),
        pattern: r"^https?://(www\.)?example\.com/(checkout|thank-you)/.*order=\d+".into(),
        pattern_type: "regex".into(),
        case_sensitive: false,
        allow_multiple: false,
        revenue: 0.0,
        event_value_as_revenue: false,
        regex: None,
    }
}

fn bench(c: &mut Criterion) {
    let url = "https://www.example.com/thank-you/confirmation?order=48213&utm_source=newsletter";
    let miss = "https://www.example.com/destinations/lisboa/tram-28?ref=blogroll";
    let per_hit = regex_goal();
    let mut snapshot = regex_goal();
    snapshot.regex = goals::compile_regex(&snapshot);
    assert!(goals::matches(&snapshot, url) && !goals::matches(&snapshot, miss));

    let mut group = c.benchmark_group("goal_regex");
    group.bench_function("compiled once, match", |b| {
        b.iter(|| goals::matches(black_box(&snapshot), black_box(url)))
    });
    group.bench_function("compiled once, miss", |b| {
        b.iter(|| goals::matches(black_box(&snapshot), black_box(miss)))
    });
    group.bench_function("compiled per hit, match", |b| {
        b.iter(|| goals::matches(black_box(&per_hit), black_box(url)))
    });
    group.bench_function("compiled per hit, miss", |b| {
        b.iter(|| goals::matches(black_box(&per_hit), black_box(miss)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
