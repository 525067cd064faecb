//! The visitor model: every visitor stays on one target under every distribution strategy
//! (returning visitors included), the same seed gives the same hits, and the hits look like
//! what Matomo's JavaScript tracker sends.

use std::collections::{HashMap, HashSet};

use matomo_loadgen::tag::RunTag;
use matomo_loadgen::target::Distribution;
use matomo_loadgen::visitor::{Hit, HitKind, Mix, ModelConfig, VisitorModel};

fn config(distribution: Distribution, weights: Vec<u32>) -> ModelConfig {
    ModelConfig {
        sites: vec![(1, 3), (2, 1)],
        mix: Mix::default(),
        mean_hits_per_visit: 6.0,
        returning_share: 0.5,
        concurrent_visits: 200,
        page_base: "https://www.example.com".into(),
        goal_ids: vec![1, 2],
        distribution,
        target_weights: weights,
        params_carry_headers: false,
        epoch: 1_790_000_000,
        run_tag: RunTag::new("Ab", "0123456789abcdef").unwrap(),
    }
}

fn hits(cfg: ModelConfig, seed: u64, n: usize) -> Vec<Hit> {
    let mut model = VisitorModel::new(cfg, seed);
    (0..n).map(|_| model.next_hit().unwrap()).collect()
}

fn params(hit: &Hit) -> HashMap<String, String> {
    hit.query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (
                k.to_owned(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap()
                    .into_owned(),
            )
        })
        .collect()
}

#[test]
fn every_visitor_stays_on_one_target_under_every_strategy() {
    for strategy in [
        Distribution::RoundRobin,
        Distribution::Weighted,
        Distribution::Random,
    ] {
        let all = hits(config(strategy, vec![3, 1, 2]), 7, 30_000);
        let mut target_of: HashMap<&str, usize> = HashMap::new();
        let mut site_of: HashMap<&str, u32> = HashMap::new();
        let mut visits_of: HashMap<&str, HashSet<String>> = HashMap::new();
        for h in &all {
            let t = *target_of.entry(&h.visitor_id).or_insert(h.target);
            assert_eq!(
                t, h.target,
                "{strategy}: visitor {} moved from target {t} to {}",
                h.visitor_id, h.target
            );
            let s = *site_of.entry(&h.visitor_id).or_insert(h.site);
            assert_eq!(
                s, h.site,
                "{strategy}: visitor {} changed site",
                h.visitor_id
            );
            visits_of
                .entry(&h.visitor_id)
                .or_default()
                .insert(params(h)["_idvc"].clone());
        }
        // returning visitors exist, so continuity was tested across visits too
        let returning = visits_of.values().filter(|v| v.len() > 1).count();
        assert!(
            returning > 100,
            "{strategy}: only {returning} returning visitors"
        );
        let mut per_target = [0usize; 3];
        for t in target_of.values() {
            per_target[*t] += 1;
        }
        assert!(
            per_target.iter().all(|n| *n > 0),
            "{strategy}: {per_target:?}"
        );
        if strategy != Distribution::RoundRobin {
            let share0 = per_target[0] as f64 / target_of.len() as f64;
            assert!(
                (0.4..0.6).contains(&share0),
                "{strategy}: weight 3 of 6 got {share0}"
            );
        } else {
            let (min, max) = (
                per_target.iter().min().unwrap(),
                per_target.iter().max().unwrap(),
            );
            // visitors whose visit is open but has not sent its first hit yet are not counted
            assert!(
                (max - min) as f64 / *max as f64 <= 0.02,
                "round robin is even: {per_target:?}"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_hits() {
    let a = hits(config(Distribution::Random, vec![1, 1]), 42, 5_000);
    let b = hits(config(Distribution::Random, vec![1, 1]), 42, 5_000);
    assert_eq!(a, b);
    let c = hits(config(Distribution::Random, vec![1, 1]), 43, 5_000);
    assert_ne!(a, c);
    let differing = a.iter().zip(&c).filter(|(x, y)| x.query != y.query).count();
    assert!(
        differing > 4_900,
        "different seeds give different hits ({differing})"
    );
}

#[test]
fn hits_look_like_the_javascript_tracker() {
    let all = hits(config(Distribution::RoundRobin, vec![1]), 3, 20_000);
    let tag = RunTag::new("Ab", "0123456789abcdef").unwrap();
    let mut kinds: HashMap<HitKind, usize> = HashMap::new();
    let mut referrers = HashSet::new();
    let mut agents = HashSet::new();
    let mut languages = HashSet::new();
    let mut campaigns = 0;
    for (i, h) in all.iter().enumerate() {
        assert_eq!(h.seq, i as u64);
        let p = params(h);
        assert_eq!(p["rec"], "1");
        assert_eq!(p["idsite"], h.site.to_string());
        assert_eq!(p["_id"].len(), 16);
        assert!(p["_id"].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            tag.seq_of_pv_id(&p["pv_id"]),
            Some(h.seq),
            "pv_id tags the hit"
        );
        assert!(p["url"].starts_with("https://www.example.com/"));
        *kinds.entry(h.kind).or_default() += 1;
        match h.kind {
            HitKind::Pageview => assert!(p.contains_key("action_name")),
            HitKind::Search => assert!(p.contains_key("search") && p.contains_key("search_count")),
            HitKind::Event => assert!(p.contains_key("e_c") && p.contains_key("e_a")),
            HitKind::Download => assert!(p["download"].starts_with("https://")),
            HitKind::Outlink => assert!(p["link"].starts_with("https://")),
            HitKind::Content => assert!(p.contains_key("c_n") && p.contains_key("c_p")),
            HitKind::Goal => assert!(["1", "2"].contains(&p["idgoal"].as_str())),
            HitKind::Order => {
                assert_eq!(p["idgoal"], "0");
                assert_eq!(tag.seq_of_order_id(&p["ec_id"]), Some(h.seq));
                assert!(serde_json::from_str::<serde_json::Value>(&p["ec_items"])
                    .unwrap()
                    .is_array());
            }
            HitKind::Ping => assert_eq!(p["ping"], "1"),
        }
        if let Some(r) = p.get("urlref") {
            referrers.insert(r.split('/').nth(2).unwrap_or("").to_owned());
        }
        if p["url"].contains("campaign=") {
            campaigns += 1;
        }
        agents.insert(h.user_agent);
        languages.insert(h.language);
        assert!(
            !p.contains_key("ua"),
            "GET hits carry the user agent as a header"
        );
    }
    for kind in HitKind::ALL {
        assert!(kinds.get(&kind).copied().unwrap_or(0) > 0, "no {kind} hits");
    }
    assert!(kinds[&HitKind::Pageview] > kinds[&HitKind::Event]);
    assert!(referrers.len() >= 10, "referrers: {referrers:?}");
    assert!(campaigns > 50, "campaign landings: {campaigns}");
    assert!(agents.len() >= 15 && languages.len() >= 12);
}

#[test]
fn bulk_hits_carry_user_agent_and_language_as_parameters() {
    let mut cfg = config(Distribution::RoundRobin, vec![1]);
    cfg.params_carry_headers = true;
    for h in hits(cfg, 1, 200) {
        let p = params(&h);
        assert_eq!(p["ua"], h.user_agent);
        assert_eq!(p["lang"], h.language);
    }
}

#[test]
fn a_mix_without_goal_ids_sends_no_goals() {
    let mut cfg = config(Distribution::RoundRobin, vec![1]);
    cfg.goal_ids.clear();
    cfg.mix = "goal=5,ping=1".parse().unwrap();
    let all = hits(cfg, 1, 2_000);
    assert!(all.iter().all(|h| h.kind != HitKind::Goal));
    assert!(all.iter().any(|h| h.kind == HitKind::Ping));
}
