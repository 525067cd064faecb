//! Load under faults and the exactly-once check. Each hit is a pageview tagged with a unique
//! `pv_id` (6 characters: the scenario's letter and the hit number in base 36, lowercase so the
//! case-insensitive column cannot merge two tags), which Matomo stores as
//! `log_link_visit_action.idpageview`: one hit, one row. The sender remembers how each request
//! ended; the reconciliation counts rows per tag once the queues have drained.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use matomo_loadgen::client::{http_client, HttpClient};
use mysql_async::prelude::Queryable;

use super::services::{Redis, PREFIX};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not sent yet (or still in flight).
    Pending,
    /// 2xx: the node acknowledged the hit, so it must be stored exactly once.
    Accepted,
    /// Any other status: not acknowledged.
    Refused(u16),
    /// No answer (connection reset, timeout): not acknowledged.
    Failed,
}

/// The answers of one load run, by hit number.
#[derive(Clone)]
pub struct Ledger {
    letter: char,
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Ledger {
    /// A ledger for `hits` hits of the scenario `letter`.
    pub fn new(letter: char, hits: usize) -> Self {
        Self {
            letter,
            answers: Arc::new(Mutex::new(vec![Answer::Pending; hits])),
        }
    }

    /// The tag of hit `n`.
    pub fn tag(&self, n: usize) -> String {
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut tag = String::with_capacity(6);
        tag.push(self.letter);
        let mut rest = n;
        let mut digits = [b'0'; 5];
        for d in digits.iter_mut().rev() {
            *d = DIGITS[rest % 36];
            rest /= 36;
        }
        tag.push_str(std::str::from_utf8(&digits).unwrap());
        tag
    }

    fn set(&self, n: usize, answer: Answer) {
        self.answers.lock().unwrap()[n] = answer;
    }

    /// A copy of every answer.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Hits answered 2xx so far.
    pub fn accepted(&self) -> usize {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| **a == Answer::Accepted)
            .count()
    }
}

/// Sends `hits` pageviews at `rate` per second to `http://127.0.0.1:<port>/matomo.php`, spread
/// over 16 visitors and every queue; each request gets 10 s to answer. Returns when every
/// request has ended.
/// `port` is read before each hit, so a scenario can move the load to another node.
pub async fn send(ledger: Ledger, port: Arc<std::sync::atomic::AtomicU16>, hits: usize, rate: f64) {
    let client = http_client(64);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..hits {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let p = port.load(std::sync::atomic::Ordering::Relaxed);
        let (client, ledger) = (client.clone(), ledger.clone());
        tasks.spawn(async move {
            let answer = send_one(&client, p, &ledger.tag(n), n).await;
            ledger.set(n, answer);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn send_one(client: &HttpClient, port: u16, tag: &str, n: usize) -> Answer {
    // The visitor's first three hex digits are n % 16, so the 16 visitors spread evenly over
    // the queues (QueuedTracking picks one by those digits modulo the number of queues).
    let visitor = ((n % 16) as u64) << 52 | 0x5eed;
    let uri = format!(
        "http://127.0.0.1:{port}/matomo.php?idsite=1&rec=1&_id={visitor:016x}\
         &url=https%3A%2F%2Fwww.example.com%2Fpage%2F{n}&action_name=Page%20{n}&pv_id={tag}"
    );
    let Ok(request) = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(
            http::header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64) fault-suite",
        )
        .body(Full::new(Bytes::new()))
    else {
        return Answer::Failed;
    };
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let status = response.status();
        response.into_body().collect().await.ok()?;
        Some(status)
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Some(status)) if status.is_success() => Answer::Accepted,
        Ok(Some(status)) => Answer::Refused(status.as_u16()),
        _ => Answer::Failed,
    }
}

/// The figures of one scenario.
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// Hits answered 2xx.
    pub accepted: usize,
    /// Accepted hits with at least one row.
    pub stored: usize,
    /// Accepted hits without a row.
    pub lost: usize,
    /// Rows beyond the first of an accepted hit.
    pub duplicated: usize,
    /// Rows beyond the first of a hit that was not acknowledged (refused or failed).
    pub unacknowledged_duplicated: usize,
    /// Tag, answer and row count of every hit stored more than once.
    pub duplicates: Vec<(String, Answer, usize)>,
    /// Hits answered with another status.
    pub refused: usize,
    /// Hits without an answer.
    pub failed: usize,
    /// Not-acknowledged hits that were stored anyway (allowed: the client saw a failure).
    pub unacknowledged_stored: usize,
}

impl Reconciliation {
    /// The line the suite prints per scenario.
    pub fn line(&self, name: &str) -> String {
        format!(
            "fault {name}: accepted {} stored {} lost {} duplicated {} (not acknowledged: refused {}, failed {}, of which stored anyway {}, stored twice or more {}; duplicates {:?})",
            self.accepted, self.stored, self.lost, self.duplicated, self.refused, self.failed,
            self.unacknowledged_stored, self.unacknowledged_duplicated, self.duplicates
        )
    }
}

/// Rows per tag in `log_link_visit_action`.
pub async fn rows_per_tag(pool: &mysql_async::Pool) -> Result<HashMap<String, usize>, String> {
    let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
    let rows: Vec<(String, u64)> = conn
        .query(format!(
            "SELECT CAST(idpageview AS BINARY), COUNT(*) FROM {PREFIX}log_link_visit_action \
             GROUP BY CAST(idpageview AS BINARY)"
        ))
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(|(t, c)| (t, c as usize)).collect())
}

/// Waits (at most `limit`) until the queues are empty and every accepted hit has a row, or
/// nothing changed for 5 s, then reconciles.
pub async fn drain_and_reconcile(
    ledger: &Ledger,
    redis: &Redis,
    pool: &mysql_async::Pool,
    limit: Duration,
) -> Reconciliation {
    let deadline = Instant::now() + limit;
    let mut last = (usize::MAX, u64::MAX);
    let mut last_change = Instant::now();
    loop {
        let queued = redis.queued();
        let rows = match rows_per_tag(pool).await {
            Ok(rows) => rows,
            Err(e) => {
                // Shown, not hidden: an unreadable database must not look like lost hits.
                eprintln!("reading stored rows failed: {e}");
                Default::default()
            }
        };
        let stored_accepted = count(ledger, &rows).stored;
        let now = (rows.values().sum::<usize>(), queued.unwrap_or(u64::MAX));
        if now != last {
            last = now;
            last_change = Instant::now();
        }
        let empty = queued == Some(0);
        let settled =
            stored_accepted >= ledger.accepted() || last_change.elapsed() > Duration::from_secs(5);
        if (empty && settled) || Instant::now() > deadline {
            if !empty {
                eprintln!("queues not empty after {limit:?}: {queued:?} entries left");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A last look after a pause, so a late duplicate would be seen.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rows = rows_per_tag(pool)
        .await
        .expect("count rows after the drain");
    count(ledger, &rows)
}

fn count(ledger: &Ledger, rows: &HashMap<String, usize>) -> Reconciliation {
    let mut r = Reconciliation::default();
    for (n, answer) in ledger.answers().into_iter().enumerate() {
        let found = rows.get(&ledger.tag(n)).copied().unwrap_or(0);
        if found > 1 {
            r.duplicates.push((ledger.tag(n), answer, found));
            if answer == Answer::Accepted {
                r.duplicated += found - 1;
            } else {
                r.unacknowledged_duplicated += found - 1;
            }
        }
        match answer {
            Answer::Accepted => {
                r.accepted += 1;
                if found > 0 {
                    r.stored += 1;
                } else {
                    r.lost += 1;
                }
            }
            Answer::Refused(_) => r.refused += 1,
            Answer::Failed | Answer::Pending => r.failed += 1,
        }
        if found > 0 && answer != Answer::Accepted {
            r.unacknowledged_stored += 1;
        }
    }
    r
}
