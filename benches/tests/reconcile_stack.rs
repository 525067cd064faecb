//! Reconciliation and probes against the real MariaDB and Redis: rows written the way the
//! worker writes them are matched to hits by their tags; lost, duplicated, unexpected and
//! foreign rows are told apart; late-committed lower ids are still seen; queue depth per shard
//! is read from the QueuedTracking lists.

mod common;

use std::time::Duration;

use fred::prelude::ListInterface;
use matomo_loadgen::ledger::Ledger;
use matomo_loadgen::probe::{QueueProbe, RowProbe};
use matomo_loadgen::reconcile::{find_rows, reconcile};
use matomo_loadgen::tag::RunTag;
use matomo_loadgen::visitor::HitKind;

#[tokio::test]
async fn accepted_hits_are_reconciled_against_rows() {
    let db = common::TestDb::create().await;
    db.add_site(1, true).await;
    let tag = RunTag::new("Ab", "feedc0de").unwrap();
    let foreign = RunTag::new("aB", "other").unwrap();
    // a row of this run's tag written before the run started must not count
    db.insert_action(1, &tag.pv_id(0).unwrap(), None).await;
    let mut probe = RowProbe::start(db.pool.clone(), "matomo_").await.unwrap();

    use HitKind::*;
    let kinds = [
        Pageview, Pageview, Pageview, Pageview, Event, Download, Outlink, Content, Search, Order,
        Goal, Ping,
    ];
    let ledger = Ledger::new(64);
    for (seq, kind) in kinds.iter().enumerate() {
        assert!(ledger.record_generated(seq as u64, *kind, 1));
        if seq != 3 {
            ledger.record_accepted(seq as u64, Duration::from_millis(100));
        }
    }
    db.insert_action(1, &tag.pv_id(0).unwrap(), None).await; // stored
    db.insert_action(1, &tag.pv_id(1).unwrap(), None).await; // stored twice
    db.insert_action(1, &tag.pv_id(1).unwrap(), None).await;
    // seq 2 lost; seq 3 was not acknowledged but stored
    db.insert_action(1, &tag.pv_id(3).unwrap(), None).await;
    db.insert_action(1, &foreign.pv_id(4).unwrap(), None).await; // same letters, other case: not ours
    db.insert_action(1, "zz", None).await;
    for seq in [4u64, 7, 8] {
        db.insert_action(1, &tag.pv_id(seq).unwrap(), None).await;
    }
    db.insert_order(1, 77, &tag.order_id(9)).await;
    db.insert_order(1, 78, &foreign.order_id(9)).await;

    // a worker commits a higher id first; the lower one arrives after the probe has looked
    let high = probe.start_watermark + 1_000;
    db.insert_action(1, &tag.pv_id(5).unwrap(), Some(high))
        .await;
    let first = probe
        .poll(&tag, &ledger, Duration::from_millis(600))
        .await
        .unwrap();
    assert_eq!(first.rows, 10);
    assert_eq!(
        first.tagged, 8,
        "ours: one row each of 0, 3, 4, 5, 7, 8 and two of 1"
    );
    db.insert_action(1, &tag.pv_id(6).unwrap(), Some(high - 500))
        .await;
    let second = probe
        .poll(&tag, &ledger, Duration::from_millis(900))
        .await
        .unwrap();
    assert_eq!(
        (second.rows, second.tagged),
        (1, 1),
        "the late lower id is seen"
    );
    assert_eq!(ledger.seen_at(6), Some(Duration::from_millis(900)));
    assert_eq!(ledger.seen_at(0), Some(Duration::from_millis(600)));
    assert_eq!(ledger.seen_at(2), None);

    let found = find_rows(&db.pool, "matomo_", &tag, probe.start_watermark)
        .await
        .unwrap();
    let r = reconcile(&ledger, &found, 11, 0);
    assert_eq!(r.status, "complete");
    assert_eq!(r.accepted, 11);
    assert_eq!(r.expected, Some(9), "8 action hits acknowledged + 1 order");
    assert_eq!(r.stored, Some(8));
    assert_eq!(r.lost, Some(1));
    assert_eq!(r.duplicated, Some(1));
    assert_eq!(r.unexpected, Some(1));
    assert_eq!(r.not_reconciled, 2, "goal and ping");
    assert_eq!(r.by_kind["pageview"].lost, 1);
    assert_eq!(r.by_kind["order"].stored, 1);
    let lag = r.lag.expect("lag measured");
    assert_eq!(lag.count, 7);
    assert!((499.0..=801.0).contains(&lag.p50_ms), "lag {lag:?}");
    db.drop_db().await;
}

#[tokio::test]
async fn orders_on_a_site_without_ecommerce_are_not_expected() {
    let db = common::TestDb::create().await;
    db.add_site(1, false).await;
    let tag = RunTag::new("Xy", "c0ffee").unwrap();
    let probe = RowProbe::start(db.pool.clone(), "matomo_").await.unwrap();
    let ledger = Ledger::new(4);
    ledger.record_generated(0, HitKind::Order, 1);
    ledger.record_accepted(0, Duration::from_millis(5));
    let found = find_rows(&db.pool, "matomo_", &tag, probe.start_watermark)
        .await
        .unwrap();
    let r = reconcile(&ledger, &found, 1, 0);
    assert_eq!(
        (r.expected, r.lost, r.not_reconciled),
        (Some(0), Some(0), 1)
    );
    db.drop_db().await;
}

#[tokio::test]
async fn queue_depth_is_read_per_shard() {
    let prefix = format!("lgtest{:08x}:", rand::random::<u32>());
    let probe = QueueProbe::connect(common::redis_config(), &prefix, 4)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis must be reachable at {} for this test: {e}",
                common::redis_url()
            )
        });
    assert_eq!(probe.keys()[0], format!("{prefix}trackingQueueV1"));
    assert_eq!(probe.keys()[3], format!("{prefix}trackingQueueV1_3"));
    let entry = matomo_wire::encode(&matomo_wire::RequestSet {
        requests: vec![serde_json::from_str(r#"{"idsite":"1","rec":"1"}"#).unwrap()],
        server: Default::default(),
        cookie: Default::default(),
        token_auth: None,
        time: 1_790_000_000,
        entry_id: None,
    });
    for (key, n) in [(0usize, 3usize), (2, 5)] {
        for _ in 0..n {
            let _: i64 = probe
                .client()
                .rpush(probe.keys()[key].as_str(), entry.clone())
                .await
                .unwrap();
        }
    }
    let depths = probe.depths().await.unwrap();
    probe.delete_all().await.unwrap();
    assert_eq!(depths, vec![3, 0, 5, 0]);
    assert_eq!(probe.depths().await.unwrap(), vec![0, 0, 0, 0]);
}
