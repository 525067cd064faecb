//! `matomo-loadgen pace`: its arguments turned into settings and requests, and its summary.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};

use crate::cli::{millis, secs, ArgError, PaceArgs};
use crate::tag::{RunTag, TagError};
use crate::target::{Distribution, Target};
use crate::visitor::VisitorModel;

use super::{http1, run, PaceError, PaceOutcome, PaceSettings};

/// Why `pace` could not run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A bad argument.
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// The target URL.
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
    /// Drawing the hits.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// The run itself.
    #[error(transparent)]
    Pace(#[from] PaceError),
    /// The slow hits could not be written.
    #[error("pace: cannot write the slow hits to {0}: {1}")]
    SlowLog(PathBuf, std::io::Error),
}

/// Runs `pace` as its arguments say.
pub fn execute(args: &PaceArgs) -> Result<PaceOutcome, CommandError> {
    let target = Target::parse(&args.target, 1)?;
    let uri = target.uri();
    let addr = socket_addr(uri)?;
    let authority = uri.authority().map_or("", |a| a.as_str());
    let settings = PaceSettings {
        addr,
        rate: args.rate,
        duration: secs("duration", args.duration)?,
        warmup: secs("warmup-secs", args.warmup_secs)?,
        connections: args.connections,
        timeout: secs("timeout", args.timeout)?,
        max_queued: args.max_queued,
        slow: match &args.slow_log {
            Some(_) => Some(millis("slow-ms", args.slow_ms)?),
            None => None,
        },
    };
    let epoch = crate::session::now_unix();
    let run_tag = RunTag::from_random(rand::random());
    let model =
        args.visitors
            .model_config(Distribution::RoundRobin, vec![1], false, epoch, run_tag)?;
    let mut model = VisitorModel::new(model, args.visitors.seed);
    let requests = (0..args.distinct_hits.max(1))
        .map(|_| Ok(http1::request(authority, uri.path(), &model.next_hit()?)))
        .collect::<Result<Vec<_>, TagError>>()?;
    let outcome = run(&settings, requests)?;
    if let Some(path) = &args.slow_log {
        write_slow_log(path, &outcome, args.slow_ms)
            .map_err(|e| CommandError::SlowLog(path.clone(), e))?;
    }
    Ok(outcome)
}

/// The slow hits (in the order of their due times), one `due sent answered` line each
/// (microseconds from the run's start), under a header saying what they are and when the run
/// started on `CLOCK_MONOTONIC` (to lay them beside a kernel trace).
fn write_slow_log(path: &Path, o: &PaceOutcome, slow_ms: f64) -> std::io::Result<()> {
    let hits = &o.slow;
    let mut text = format!(
        "# hits answered more than {slow_ms} ms after their due time ({} kept, {} left out): \
         due, sent and answered, in microseconds from the run's start\n",
        hits.len(),
        o.slow_left_out
    );
    let _ = writeln!(
        text,
        "# the run's start: CLOCK_MONOTONIC {}.{:06} s",
        o.start_monotonic.as_secs(),
        o.start_monotonic.subsec_micros()
    );
    for h in hits {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{} {} {}", h.due, h.sent, h.answered);
    }
    std::fs::write(path, text)
}

/// Where the target's host is (an IPv6 literal without its brackets), port 80 unless given:
/// the first of its addresses that accepts a connection within a second, else the first (whose
/// failures the run then shows), as `localhost` may resolve to `::1` for a server on
/// 127.0.0.1 only.
fn socket_addr(uri: &http::Uri) -> Result<SocketAddr, ArgError> {
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ArgError::Invalid("target", format!("{host} port {port}: {e}")))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| ArgError::Invalid("target", format!("{host} port {port}: no address")))?;
    if addrs.len() == 1 {
        return Ok(first);
    }
    Ok(addrs
        .into_iter()
        .find(|a| {
            std::net::TcpStream::connect_timeout(a, std::time::Duration::from_secs(1)).is_ok()
        })
        .unwrap_or(first))
}

/// The one-line summary, in the words of `run`'s (scripts read its `p50 … ms p99 … ms`).
pub fn summary(o: &PaceOutcome, warmup_secs: f64) -> String {
    let ms = |q: f64| o.latency.value_at_quantile(q) as f64 / 1000.0;
    let warmup = if warmup_secs > 0.0 {
        format!(" after the first {warmup_secs} s")
    } else {
        String::new()
    };
    let secs = o.elapsed.as_secs_f64();
    // No figures rather than zeros when no hit due after the warm-up was accepted.
    let latency = if o.latency.is_empty() {
        format!("latency{warmup}: no hit accepted")
    } else {
        // Worded apart from the due-time figures, which scripts read as `p50 … ms p99 … ms`.
        let sent = |q: f64| o.service.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "latency{warmup} p50 {:.2} ms p99 {:.2} ms max {:.2} ms (from the send instead of the due time: median {:.2} ms, 99th percentile {:.2} ms)",
            ms(0.5),
            ms(0.99),
            o.latency.max() as f64 / 1000.0,
            sent(0.5),
            sent(0.99),
        )
    };
    let mut line = format!(
        "accepted {} of {} offered hits ({:.1}/s), failed {}, dropped {}, late sends {} ({} waited for a free connection); {latency}; generator CPU {:.0} % of one core",
        o.accepted,
        o.offered,
        o.accepted as f64 / secs.max(f64::EPSILON),
        o.failed,
        o.dropped,
        o.late,
        o.waited,
        o.cpu.as_secs_f64() * 100.0 / secs.max(f64::EPSILON),
    );
    if let Some(why) = &o.first_failure {
        line.push_str(&format!("; first failure: {why}"));
    }
    if o.unaccounted() > 0 {
        line.push_str(&format!(
            "; {} hits unaccounted for (a connection task failed)",
            o.unaccounted()
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_to_socket_addresses() {
        let addr = |url: &str| socket_addr(Target::parse(url, 1).unwrap().uri());
        assert_eq!(
            addr("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            addr("http://[::1]:8081/matomo.php").unwrap(),
            "[::1]:8081".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(addr("http://127.0.0.1/").unwrap().port(), 80);
    }
}
