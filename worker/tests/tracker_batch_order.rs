//! Row order in a large batch: the tracker inserts a batch's actions as multi-row INSERTs of up
//! to 500 rows, naming every column any row sets and giving `DEFAULT` where a row sets none. A
//! batch of more than two such statements, with page views, events and page views with timings
//! interleaved (three column sets), must store every row in request order (`idlink_va` follows
//! the requests, as PHP's one INSERT per request gives) with `NULL` where a row set nothing.
//!
//! Needs MariaDB on 127.0.0.1:3306 (user/password `matomo`); fails clearly without it.

mod tracker_support;

use tracker_support::*;

/// More than two 500-row statements.
const HITS: usize = 1_100;

#[tokio::test]
async fn a_large_batch_of_mixed_actions_is_stored_in_request_order() {
    let db = setup(false).await;
    let sets: Vec<_> = (0..HITS)
        .map(|n| {
            // Visitor ids as a tracker sends them (the shared IP and user agent make them one
            // visit, as in PHP: the configuration id matches).
            let visitor = format!("{:016x}", 0xa000 + n % 97);
            let extra = match n % 3 {
                0 => "",
                1 => "&e_c=Video&e_a=Play",
                _ => "&pf_net=12&pf_srv=34",
            };
            let query =
                format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fp{n}&_id={visitor}{extra}");
            hit(&query, T0 + n as i64)
        })
        .collect();
    db.track_in_one_batch(&sets).await;

    let rows = db
        .rows(
            "SELECT a.name, v.idaction_event_category, v.time_network, v.time_server \
             FROM matomo_log_link_visit_action v \
             JOIN matomo_log_action a ON a.idaction = v.idaction_url ORDER BY v.idlink_va",
        )
        .await;
    assert_eq!(rows.len(), HITS);
    for (n, row) in rows.iter().enumerate() {
        let url: String = get(row, "name");
        assert!(
            url.ends_with(&format!("/p{n}")),
            "row {n} in idlink_va order is {url}: not in request order"
        );
        let category: Option<u64> = get(row, "idaction_event_category");
        let network: Option<u32> = get(row, "time_network");
        let server: Option<u32> = get(row, "time_server");
        match n % 3 {
            0 => assert_eq!((category, network, server), (None, None, None), "row {n}"),
            1 => {
                assert!(category.is_some(), "row {n}: the event's category");
                assert_eq!((network, server), (None, None), "row {n}");
            }
            _ => assert_eq!(
                (category, network, server),
                (None, Some(12), Some(34)),
                "row {n}"
            ),
        }
    }
}
