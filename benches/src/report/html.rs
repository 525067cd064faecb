//! The self-contained HTML report: headline figures, thresholds, per-target table, step
//! verdicts, reconciliation, and the plots (offered vs accepted rate, latency percentiles over
//! time, HDR percentile curve, queue depth per shard, drain rate, lag). Inline CSS and SVG only.

use std::fmt::Write as _;

use super::svg::{line_chart, Series, XAxis};
use super::{RunResult, TargetSummary};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
    }
}

/// Renders the report.
pub fn render_html(r: &RunResult) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>matomo-loadgen {} — {}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}}\
         table{{border-collapse:collapse;margin:8px 0 18px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}.pass{{color:#187a18}}.fail{{color:#b00;font-weight:bold}}\
         .fig{{font-size:1.4em;font-weight:bold}}.cards div{{display:inline-block;margin:0 24px 12px 0}}code{{background:#f5f5f5}}</style></head><body>",
        esc(&r.command),
        esc(&r.run_id)
    );
    let verdict = if r.passed {
        "<span class=pass>PASSED</span>"
    } else {
        "<span class=fail>FAILED</span>"
    };
    let _ = write!(h, "<h1>matomo-loadgen: {} {verdict}</h1><p>{} · run <code>{}</code> (pv_id tag <code>{}</code>) · load {:.0} s, elapsed {:.1} s</p>", esc(&r.command), esc(&r.tool), esc(&r.run_id), esc(&r.run_tag), r.load_secs, r.elapsed_secs);
    headline(&mut h, r);
    if !r.thresholds.is_empty() {
        h.push_str("<h2>Thresholds</h2><table><tr><th>limit</th><th>value</th><th>measured</th><th>verdict</th></tr>");
        for t in &r.thresholds {
            let v = if t.passed {
                "<span class=pass>pass</span>"
            } else {
                "<span class=fail>fail</span>"
            };
            let a = t
                .actual
                .map_or_else(|| "not measured".to_owned(), |a| format!("{a:.4}"));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{a}</td><td>{v}</td></tr>",
                esc(&t.name),
                t.limit
            );
        }
        h.push_str("</table>");
    }
    targets_table(&mut h, r);
    if let Some(c) = &r.capacity {
        let _ = write!(h, "<h2>Steps (p99 limit {} ms)</h2><table><tr><th>rate</th><th>from s</th><th>accepted/s</th><th>errors</th><th>p99 ms</th><th>late</th><th>queue growth</th><th>ingest</th><th>end to end</th></tr>", c.p99_limit_ms);
        for s in &c.steps {
            let yes = |b: bool| {
                if b {
                    "<span class=pass>kept up</span>"
                } else {
                    "<span class=fail>fell behind</span>"
                }
            };
            let _ = write!(h, "<tr><td>{:.0}</td><td>{:.0}</td><td>{:.1}</td><td>{:.4}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", s.rate, s.start_secs, s.accepted_rate, s.error_ratio, s.p99_ms, s.late, s.queue_growth.map_or("–".into(), |g| g.to_string()), yes(s.ingest_sustained), s.end_to_end_sustained.map_or("–", yes));
        }
        h.push_str("</table>");
    }
    reconciliation(&mut h, r);
    plots(&mut h, r);
    let _ = write!(
        h,
        "<h2>Settings</h2><pre>{}</pre></body></html>",
        esc(&serde_json::to_string_pretty(&r.settings).unwrap_or_default())
    );
    h
}

fn headline(h: &mut String, r: &RunResult) {
    let t = &r.total;
    h.push_str("<div class=cards>");
    let mut card = |label: &str, value: String| {
        let _ = write!(
            h,
            "<div><div>{}</div><div class=fig>{}</div></div>",
            esc(label),
            esc(&value)
        );
    };
    card("accepted rate", format!("{:.1} hits/s", t.accepted_rate));
    card("p99 latency", format!("{:.2} ms", t.latency.p99_ms));
    card("errors", format!("{:.3}%", t.error_ratio * 100.0));
    if let Some(c) = &r.capacity {
        card(
            "max sustainable (ingest)",
            c.max_sustainable_ingest_rate
                .map_or("none".into(), |v| format!("{v:.0} hits/s")),
        );
        if c.steps.iter().any(|s| s.end_to_end_sustained.is_some()) {
            card(
                "max sustainable (end to end)",
                c.max_sustainable_end_to_end_rate
                    .map_or("none".into(), |v| format!("{v:.0} hits/s")),
            );
        }
    }
    if !r.stack.samples.is_empty() {
        card(
            "peak drain rate",
            format!("{:.0} rows/s", r.stack.peak_drain_rate),
        );
        card("max queue depth", r.stack.max_queue_depth.to_string());
    }
    if let Some(l) = &r.reconciliation.lag {
        card("lag p99", format!("{:.0} ms", l.p99_ms));
    }
    h.push_str("</div>");
}

fn target_row(h: &mut String, t: &TargetSummary) {
    let outcomes: Vec<String> = t
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
        esc(&t.url), t.offered_hits, t.accepted_hits, t.invalid_hits, t.failed_hits, t.dropped_hits, t.late_requests, t.requests,
        t.accepted_rate, t.latency.p50_ms, t.latency.p99_ms, t.latency.max_ms, esc(&outcomes.join(", "))
    );
}

fn targets_table(h: &mut String, r: &RunResult) {
    h.push_str("<h2>Targets (only 2xx counts as accepted)</h2><table><tr><th>target</th><th>offered</th><th>accepted</th><th>invalid</th><th>failed</th><th>dropped</th><th>late req.</th><th>requests</th><th>accepted/s</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>outcomes</th></tr>");
    for t in &r.targets {
        target_row(h, t);
    }
    target_row(h, &r.total);
    h.push_str("</table>");
    for t in r.targets.iter().filter(|t| !t.error_samples.is_empty()) {
        let _ = write!(
            h,
            "<p>errors from {}: {}</p>",
            esc(&t.url),
            esc(&t.error_samples.join(" | "))
        );
    }
}

fn reconciliation(h: &mut String, r: &RunResult) {
    let c = &r.reconciliation;
    let _ = write!(h, "<h2>Reconciliation ({})</h2><p>{}</p><table><tr><th>accepted</th><th>expected rows</th><th>stored</th><th>lost</th><th>duplicated</th><th>invalid</th><th>unexpected</th><th>not reconciled</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        esc(&c.status), esc(&c.note), c.accepted, opt(c.expected), opt(c.stored), opt(c.lost), opt(c.duplicated), c.invalid, opt(c.unexpected), c.not_reconciled);
    if !c.by_kind.is_empty() {
        h.push_str("<table><tr><th>kind</th><th>generated</th><th>accepted</th><th>expected</th><th>stored</th><th>lost</th><th>duplicated</th><th>unexpected</th></tr>");
        for (k, v) in &c.by_kind {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(k), v.generated, v.accepted, v.expected, v.stored, v.lost, v.duplicated, v.unexpected);
        }
        h.push_str("</table>");
    }
    if let Some(l) = &c.lag {
        let _ = write!(h, "<p>Accept-to-row lag over {} hits: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (resolution: the sample interval).</p>", l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms);
    }
}

fn plots(h: &mut String, r: &RunResult) {
    h.push_str("<h2>Plots</h2>");
    let tl = &r.timeline;
    let pts = |f: &dyn Fn(&super::TimelineRow) -> f64| {
        tl.iter().map(|x| (x.t as f64, f(x))).collect::<Vec<_>>()
    };
    h.push_str(&line_chart(
        "Offered vs accepted rate",
        "seconds",
        "hits/s",
        &[
            series("intended", pts(&|x| x.intended_rate)),
            series("offered", pts(&|x| x.offered as f64)),
            series("accepted (2xx)", pts(&|x| x.accepted as f64)),
            series("failed + dropped", pts(&|x| (x.failed + x.dropped) as f64)),
        ],
        XAxis::Linear,
    ));
    h.push_str(&line_chart(
        "Latency percentiles over time (from intended send time)",
        "seconds",
        "ms",
        &[
            series("p50", pts(&|x| x.p50_ms)),
            series("p90", pts(&|x| x.p90_ms)),
            series("p99", pts(&|x| x.p99_ms)),
            series("max", pts(&|x| x.max_ms)),
        ],
        XAxis::Linear,
    ));
    h.push_str(&line_chart(
        "HDR latency percentile curve",
        "percentile",
        "ms",
        &[series("all targets", r.latency_curve.clone())],
        XAxis::Percentile,
    ));
    let samples = &r.stack.samples;
    if samples.iter().any(|s| !s.depths.is_empty()) {
        let shards = samples.iter().map(|s| s.depths.len()).max().unwrap_or(0);
        let mut lines: Vec<Series> = Vec::new();
        lines.push(series(
            "total",
            samples
                .iter()
                .map(|s| (s.t, s.depths.iter().sum::<u64>() as f64))
                .collect(),
        ));
        for i in 0..shards.min(9) {
            lines.push(series(
                &format!("queue {i}"),
                samples
                    .iter()
                    .map(|s| (s.t, s.depths.get(i).copied().unwrap_or(0) as f64))
                    .collect(),
            ));
        }
        h.push_str(&line_chart(
            "Queue depth per shard (Redis LLEN)",
            "seconds",
            "entries",
            &lines,
            XAxis::Linear,
        ));
    }
    if samples.len() > 1 {
        let rate = |f: &dyn Fn(&crate::probe::Sample) -> u64| {
            samples
                .windows(2)
                .map(|w| (w[1].t, f(&w[1]) as f64 / (w[1].t - w[0].t).max(1e-3)))
                .collect::<Vec<_>>()
        };
        h.push_str(&line_chart(
            "Drain rate (rows reaching log_link_visit_action)",
            "seconds",
            "rows/s",
            &[
                series("this run's rows", rate(&|s| s.tagged_rows)),
                series("all rows", rate(&|s| s.rows)),
            ],
            XAxis::Linear,
        ));
    }
    if !r.reconciliation.lag_curve.is_empty() {
        h.push_str(&line_chart(
            "Accept-to-row lag percentile curve",
            "percentile",
            "ms",
            &[series("lag", r.reconciliation.lag_curve.clone())],
            XAxis::Percentile,
        ));
    }
}
