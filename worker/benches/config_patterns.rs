//! Patterns from the configuration tables, checked on every hit: prepared once per
//! configuration snapshot (what the tracker does) against prepared on every hit (what it did
//! before session 12). A regex goal against a page URL (`goals::matches` still compiles on the
//! spot for a goal built without its snapshot regex), and a site's excluded user agents with a
//! regex entry against a browser's user agent. And the page-URL parameter exclusions and the
//! site URL index of an installation of 1,000 sites, built for every batch (before session 13)
//! against once per snapshot.
//! `cargo bench -p matomo-worker --bench config_patterns`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use matomo_worker::tracker::campaign::CampaignParams;
use matomo_worker::tracker::exclusion::{is_user_agent_excluded, UserAgentExclusions};
use matomo_worker::tracker::goals;
use matomo_worker::tracker::prepare::{build_url_matchers, url_matchers};
use matomo_worker::tracker::referrers::SiteUrlIndex;
use matomo_worker::tracker::settings::{Goal, Site, Snapshot};

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

    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
              Chrome/120.0.0.0 Safari/537.36";
    let entries = [
        "curl".to_owned(),
        "HeadlessChrome".to_owned(),
        r"/(bot|crawler|spider)[\/ ]?\d/i".to_owned(),
    ];
    let prepared = UserAgentExclusions::new(&entries);
    assert!(!is_user_agent_excluded(ua, &prepared));
    let mut group = c.benchmark_group("excluded_user_agents");
    group.bench_function("prepared once", |b| {
        b.iter(|| is_user_agent_excluded(black_box(ua), black_box(&prepared)))
    });
    group.bench_function("prepared per hit", |b| {
        b.iter(|| is_user_agent_excluded(black_box(ua), &UserAgentExclusions::new(&entries)))
    });
    group.finish();
}

/// What a batch of hits of a few sites spends on the URL parameter exclusions of an
/// installation of 1,000 sites (a global list with a regex entry, as operators write them).
fn url_exclusions(c: &mut Criterion) {
    let mut snap = Snapshot {
        global_excluded_parameters: vec!["sessionid".into(), "/^ref_[a-z]+$/".into()],
        ..Snapshot::default()
    };
    for idsite in 1..=1_000 {
        let site = Site {
            idsite,
            excluded_parameters: vec!["sid".into()],
            urls: vec![
                format!("https://site{idsite}.example.com"),
                format!("https://www.site{idsite}.example.org/shop/"),
            ],
            ..Site::default()
        };
        snap.sites.insert(idsite, site);
    }
    let campaign = CampaignParams::default();
    let mut group = c.benchmark_group("url_exclusions_1000_sites");
    group.bench_function("built per batch", |b| {
        b.iter(|| build_url_matchers(black_box(&snap), &campaign).len())
    });
    group.bench_function("once per snapshot", |b| {
        b.iter(|| url_matchers(black_box(&snap), &campaign).len())
    });
    group.finish();

    // The sites' URLs by host, for direct entries and referrers (two URLs per site).
    let mut group = c.benchmark_group("site_url_index_1000_sites");
    group.bench_function("built per batch", |b| {
        b.iter(|| {
            SiteUrlIndex::from_site_urls(
                black_box(&snap)
                    .sites
                    .values()
                    .flat_map(|s| s.urls.iter().map(move |u| (s.idsite, u.as_str()))),
            )
        })
    });
    group.bench_function("once per snapshot", |b| {
        b.iter(|| black_box(&snap).site_url_index() as *const SiteUrlIndex)
    });
    group.finish();
}

criterion_group!(benches, bench, url_exclusions);
criterion_main!(benches);
