//! The files of `deploy/` an operator installs, checked as the tools that read them would:
//! the systemd units (`systemd-analyze verify`, `security` for their sandbox, and the real
//! binaries run under `strace` through start-up, hits and SIGTERM against their system call
//! filter), the HAProxy drop-in (with Debian's unit, and `haproxy -c` of the configuration with
//! its environment), the Prometheus configuration and alert rules (`promtool check`, and the
//! rules' own unit tests), and every PromQL selector of the rules and of the Grafana dashboard
//! against the series the real `matomo-ingest` and `matomo-worker` export — so a renamed
//! metric, label or label value (in a matcher, each value of an `a|b` alternation, or a
//! `by (…)` grouping) fails here instead of leaving an alert that can never fire or a panel
//! that stays empty. What an alert means is tested by `deploy/monitoring/alerts.test.yml`
//! (promtool's rule tests).
//!
//! Needs `systemd-analyze`, `strace`, `haproxy` and `promtool` (which `deploy/local/test`
//! installs), and for the live checks the suite's private Redis and MariaDB
//! (`redis-server`, `mariadbd`, as the fault suite). A missing program fails with its name.

#[allow(dead_code)] // The fault suite's services: this file uses some of them.
#[path = "faults/services.rs"]
mod services;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, LabelModifier};
use promql_parser::util::{walk_expr, ExprVisitor};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs `program args` in `dir`; its exit status and everything it printed.
fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (deploy/local/test installs it): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn systemd_units_verify_cleanly_with_a_tight_sandbox() {
    let units = deploy_dir().join("systemd");
    let work = tempfile::tempdir().unwrap();
    // `verify` also checks that ExecStart's binary exists: point it at any executable.
    let binary = std::env::current_exe().unwrap();
    for unit in ["matomo-ingest.service", "matomo-worker.service"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/matomo-"), "{unit}");
        let name = unit.trim_end_matches(".service");
        let copy = text.replace(
            &format!("/usr/local/bin/{name}"),
            &binary.display().to_string(),
        );
        std::fs::write(work.path().join(unit), copy).unwrap();
        let (ok, out) = run(
            "systemd-analyze",
            &["verify", "--man=no", &format!("./{unit}")],
            work.path(),
        );
        // `verify` exits 0 on unknown keys and bad values; it only prints them.
        assert!(ok && out.trim().is_empty(), "{unit}: {out}");
        // Exposure 0–10 (shown as 1.5 for 15): "OK" ends at 2.0.
        let (ok, out) = run(
            "systemd-analyze",
            &[
                "security",
                "--offline=yes",
                "--threshold=20",
                &format!("./{unit}"),
            ],
            work.path(),
        );
        assert!(ok, "{unit}: sandbox weaker than expected\n{out}");
    }
}

#[test]
fn haproxy_drop_in_verifies_and_sets_every_variable_the_config_reads() {
    let drop_in_path = deploy_dir().join("systemd/haproxy.service.d/matomo-tier.conf");
    let drop_in = std::fs::read_to_string(&drop_in_path).unwrap();
    // Debian's own unit with the drop-in beside it, as systemd would combine them.
    let debian_unit = Path::new("/lib/systemd/system/haproxy.service");
    assert!(
        debian_unit.exists(),
        "haproxy must be installed (deploy/local/test installs it)"
    );
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("haproxy.service.d")).unwrap();
    std::fs::copy(debian_unit, work.path().join("haproxy.service")).unwrap();
    std::fs::write(
        work.path().join("haproxy.service.d/matomo-tier.conf"),
        &drop_in,
    )
    .unwrap();
    let (ok, out) = run(
        "systemd-analyze",
        &["verify", "--man=no", "./haproxy.service"],
        work.path(),
    );
    assert!(ok && out.trim().is_empty(), "{out}");

    // Environment="A=x" "B=y" lines → variables.
    let env: HashMap<String, String> = drop_in
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(|l| l.split('"').filter(|part| part.contains('=')))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let cfg = deploy_dir().join("haproxy/haproxy.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // Every `${NAME}` outside comments (HAProxy expands them inside double quotes).
    let read: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split("${").skip(1))
        .filter_map(|rest| rest.split_once('}').map(|(var, _)| var))
        .collect();
    assert!(read.len() >= 4, "{read:?}");
    for var in &read {
        assert!(env.contains_key(*var), "the drop-in does not set {var}");
    }
    assert_eq!(env["CONFIG"], "/etc/haproxy/matomo-tier.cfg");
    // Checked as Debian's unit starts it (master-worker, its own pid file and master socket):
    // a line that clashes with those is an [ALERT] that does not fail the check.
    let out = Command::new("haproxy")
        .args(["-Ws", "-c", "-f"])
        .arg(&cfg)
        .arg("-p")
        .arg(work.path().join("haproxy.pid"))
        .arg("-S")
        .arg(work.path().join("haproxy-master.sock"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env)
        .output()
        .expect("haproxy must be installed (deploy/local/test installs it)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !printed.contains("[ALERT]") && !printed.contains("[WARNING]"),
        "{printed}"
    );
}

#[test]
fn prometheus_config_and_alert_rules_pass_promtool_and_their_tests() {
    let dir = deploy_dir().join("monitoring");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let (ok, out) = run("promtool", args, &dir);
        assert!(ok, "promtool {}: {out}", args.join(" "));
    }
}

/// One exported series: metric name and labels.
#[derive(Debug)]
struct Series {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Queue entries the worker has committed, over all queues.
fn processed_entries(worker_metrics: &str) -> f64 {
    parse_exposition(worker_metrics)
        .iter()
        .filter(|s| s.name == "matomo_worker_queue_entries_total")
        .filter(|s| s.labels.get("outcome").is_some_and(|o| o == "Processed"))
        .map(|s| s.value)
        .sum()
}

/// The worker's `/metrics` once `done` holds for them, or the last ones after two minutes.
async fn worker_metrics_when(port: u16, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..600 {
        text = services::http_get(port, "/metrics")
            .await
            .unwrap_or_default();
        if done(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    text
}

/// The series of a text exposition (`name{a="x",b="y"} value`); comments skipped.
fn parse_exposition(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_owned();
        let mut labels = HashMap::new();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').expect("closing brace")];
            let mut rest = body;
            while let Some((key, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut close = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(if escaped == 'n' { '\n' } else { escaped });
                            }
                        }
                        '"' => {
                            close = i;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                labels.insert(key.trim_start_matches(',').to_owned(), value);
                rest = &after[(close + 1).min(after.len())..];
            }
        }
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    out
}

/// Every vector selector of an expression (metric name and label matchers), and every
/// `by (…)` grouping with the metrics it aggregates.
#[derive(Default)]
struct Selectors {
    selectors: Vec<promql_parser::parser::VectorSelector>,
    groupings: Vec<(Vec<String>, Vec<String>)>,
}

impl Selectors {
    fn of(expr: &Expr) -> Self {
        let mut found = Self::default();
        walk_expr(&mut found, expr).unwrap();
        found
    }
}

impl ExprVisitor for Selectors {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(vs) => self.selectors.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.selectors.push(ms.vs.clone()),
            Expr::Aggregate(agg) => {
                if let Some(LabelModifier::Include(labels)) = &agg.modifier {
                    let metrics = Selectors::of(&agg.expr)
                        .selectors
                        .into_iter()
                        .filter_map(|vs| vs.name)
                        .collect();
                    self.groupings.push((labels.labels.clone(), metrics));
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// The PromQL of the alert rules and of the dashboard's panels, each with where it comes from.
fn monitoring_expressions() -> Vec<(String, String)> {
    let dir = deploy_dir().join("monitoring");
    let mut out = Vec::new();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts.yml")).unwrap()).unwrap();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            out.push((format!("alert {name}"), expr.to_owned()));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("grafana/matomo-tier.json")).unwrap(),
    )
    .unwrap();
    let top = dashboard["panels"].as_array().expect("panels");
    // A collapsed row keeps its panels inside it.
    let nested = top.iter().filter_map(|p| p["panels"].as_array()).flatten();
    for panel in top.iter().chain(nested) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            let expr = target["expr"].as_str().expect("expr");
            // Grafana's interval variable; any duration parses the same way.
            out.push((
                format!("panel {title:?}"),
                expr.replace("$__rate_interval", "5m"),
            ));
        }
    }
    out
}

#[test]
fn grafana_dashboard_is_well_formed() {
    let path = deploy_dir().join("monitoring/grafana/matomo-tier.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let mut ids = std::collections::HashSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: id");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: gridPos"
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}

/// A private Redis and MariaDB (as the fault suite runs them) and the tier's configuration
/// for them, in a temporary folder.
struct Stack {
    dir: tempfile::TempDir,
    redis: services::Redis,
    /// Kept for its lifetime: the server stops when it drops.
    _mysql: services::Mysql,
    config: PathBuf,
}

impl Stack {
    async fn start(prefix: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let redis = services::Redis::start(dir.path()).await;
        let mysql = services::Mysql::start(dir.path()).await;
        let config = dir.path().join("tier.toml");
        std::fs::write(&config, services::tier_toml(redis.port, mysql.port)).unwrap();
        Self {
            dir,
            redis,
            _mysql: mysql,
            config,
        }
    }
}

/// Traffic that makes the per-queue series appear: `hits` good hits on distinct queues
/// (QueuedTracking shards by the first three hex digits of the visitor id, so hit `i` goes to
/// queue `i % queues`), a bad hit, a static file and a scrape.
async fn send_traffic(ingest_port: u16, hits: u16) {
    for i in 0..hits {
        let hit = format!(
            "/matomo.php?idsite=1&rec=1&url=https%3A%2F%2Fwww.example.com%2F{i}&_id=00{i:x}{:013}",
            0
        );
        assert!(
            services::http_get(ingest_port, &hit).await.is_some(),
            "{hit}"
        );
    }
    let _ = services::http_get(ingest_port, "/matomo.php?idsite=99&rec=1").await;
    let _ = services::http_get(ingest_port, "/matomo.js").await;
    let _ = services::http_get(ingest_port, "/metrics").await;
}

/// The system calls a `SystemCallFilter=` group allows, its nested groups expanded.
fn syscall_group(group: &str) -> std::collections::BTreeSet<String> {
    let (ok, out) = run(
        "systemd-analyze",
        &["syscall-filter", group],
        Path::new("."),
    );
    assert!(ok, "{out}");
    let mut names = std::collections::BTreeSet::new();
    for item in out.lines().skip(1).map(str::trim) {
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            names.extend(syscall_group(item));
        } else {
            names.insert(item.to_owned());
        }
    }
    names
}

/// What `SystemCallFilter=` lines of a unit of `deploy/systemd/` allow: `@default` (always
/// allowed), plus each allowed group or call, minus each `~` one, in order.
fn unit_syscall_filter(unit: &str) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit)).unwrap();
    let mut allowed = syscall_group("@default");
    let mut lines = 0;
    for value in text
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        lines += 1;
        let (deny, items) = match value.strip_prefix('~') {
            Some(items) => (true, items),
            None => (false, value),
        };
        for item in items.split_whitespace() {
            let names = if item.starts_with('@') {
                syscall_group(item)
            } else {
                std::collections::BTreeSet::from([item.to_owned()])
            };
            if deny {
                allowed.retain(|n| !names.contains(n));
            } else {
                allowed.extend(names);
            }
        }
    }
    assert!(lines > 0, "{unit} has no SystemCallFilter=");
    allowed
}

/// Kills a process group when dropped: a traced binary outlives a SIGKILL of its `strace`.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0);
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The names of the system calls in an `strace -f` log (`PID name(…`).
fn traced_syscalls(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split_once(' ')?.1.trim_start();
            let rest = rest.strip_prefix("<... ").unwrap_or(rest);
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            (end > 0 && (rest[end..].starts_with('(') || rest[end..].starts_with(" resumed")))
                .then(|| rest[..end].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_binaries_stay_inside_the_units_system_call_filter() {
    let mut stack = Stack::start("matomo-syscalls-").await;
    let (dir, config) = (stack.dir.path().to_owned(), stack.config.clone());
    let (ingest_port, worker_port) = (services::free_port(), services::free_port());
    let spool = dir.join("spool");
    let traced = |name: &str, args: Vec<String>, env: &[(&str, &str)]| {
        let mut cmd = Command::new("strace");
        // Its own process group, which `KillGroup` kills with the traced binary in it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(["-f", "-qq", "-o"])
            .arg(dir.join(format!("{name}.strace")))
            .arg(services::bin_dir().join(name))
            .args(args);
        services::without_tier_env(&mut cmd);
        cmd.envs(env.iter().copied());
        services::Proc::spawn(name, cmd, &dir.join(format!("{name}.log")))
    };
    let config_arg = config.display().to_string();
    let ingest = traced(
        "matomo-ingest",
        vec![
            "--config".into(),
            config_arg.clone(),
            "--set".into(),
            format!("ingest.listen=127.0.0.1:{ingest_port}"),
            "--set".into(),
            format!("ingest.spool.dir={}", spool.display()),
        ],
        // Likely more lanes than the machine's CPUs: their threads trace like any others.
        &[("TOKIO_WORKER_THREADS", "5")],
    );
    let worker = traced(
        "matomo-worker",
        vec![
            "run".into(),
            "--config".into(),
            config_arg,
            "--set".into(),
            format!("worker.listen=127.0.0.1:{worker_port}"),
        ],
        &[],
    );
    let _groups = [KillGroup(ingest.pid()), KillGroup(worker.pid())];
    for (proc, port, path) in [
        (&ingest, ingest_port, "/readyz"),
        (&worker, worker_port, "/readyz"),
    ] {
        let ready = services::wait_for(&proc.name, Duration::from_secs(60), || async move {
            services::http_ok(port, path).await
        })
        .await;
        assert!(ready.is_ok(), "{ready:?}\n{}", proc.log_tail());
    }
    send_traffic(ingest_port, 8).await;
    // TOKIO_WORKER_THREADS set the number of lanes (ingest.threads is 0).
    let ingest_text = services::http_get(ingest_port, "/metrics")
        .await
        .unwrap_or_default();
    let mut lanes: Vec<_> = parse_exposition(&ingest_text)
        .into_iter()
        .filter(|s| s.name == "ingest_lane_connections")
        .filter_map(|s| s.labels.get("lane").cloned())
        .collect();
    lanes.sort();
    assert_eq!(lanes, ["0", "1", "2", "3", "4"], "{ingest_text}");
    // The worker's whole path is traced only once it has committed the hits.
    let text = worker_metrics_when(worker_port, |t| processed_entries(t) >= 8.0).await;
    let processed = processed_entries(&text);
    assert!(processed >= 8.0, "{processed} of 8\n{}", worker.log_tail());
    // SIGTERM to the traced binaries (strace's children): their graceful stop is traced too.
    for mut proc in [ingest, worker] {
        let pid = proc.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let child = children
            .split_whitespace()
            .next()
            .expect("the traced binary");
        let status = Command::new("kill")
            .args(["-TERM", child])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            proc.wait_exit(Duration::from_secs(60)).await,
            "{} did not stop",
            proc.name
        );
    }

    for name in ["matomo-ingest", "matomo-worker"] {
        let allowed = unit_syscall_filter(&format!("{name}.service"));
        let log = std::fs::read_to_string(dir.join(format!("{name}.strace"))).unwrap();
        let used = traced_syscalls(&log);
        assert!(
            used.iter().any(|n| n.starts_with("epoll_")) && used.contains("exit_group"),
            "{name}: {used:?}"
        );
        let outside: Vec<_> = used.difference(&allowed).collect();
        assert!(
            outside.is_empty(),
            "{name} makes system calls deploy/systemd's SystemCallFilter refuses: {outside:?}"
        );
    }
    stack.redis.stop().await;
}

/// Labels Prometheus adds itself when it scrapes a target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_select_series_the_binaries_export() {
    let mut stack = Stack::start("matomo-deploy-files-").await;
    let (dir, config) = (stack.dir.path().to_owned(), stack.config.clone());
    const _: () = assert!(services::QUEUES <= 16, "the hits below reach 16 queues");
    let ingest_port = services::free_port();
    let _ingest = services::start_ingest(&dir, &config, "ingest", ingest_port).await;
    let worker_port = services::free_port();
    let _worker = services::start_worker_on(&dir, &config, "worker", worker_port).await;

    send_traffic(ingest_port, 16).await;
    let worker_text = worker_metrics_when(worker_port, |t| {
        processed_entries(t) > 0.0 && t.contains("matomo_worker_queue_lag_seconds{")
    })
    .await;
    let ingest_text = services::http_get(ingest_port, "/metrics").await.unwrap();
    let mut series = parse_exposition(&ingest_text);
    series.extend(parse_exposition(&worker_text));
    assert!(
        processed_entries(&worker_text) > 0.0,
        "nothing processed:\n{worker_text}"
    );

    let mut checked = 0;
    let mut failures = Vec::new();
    for (origin, expr) in monitoring_expressions() {
        let parsed = match promql_parser::parser::parse(&expr) {
            Ok(parsed) => parsed,
            Err(e) => {
                failures.push(format!("{origin}: does not parse: {e}"));
                continue;
            }
        };
        let found = Selectors::of(&parsed);
        for (labels, metrics) in &found.groupings {
            for label in labels
                .iter()
                .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
            {
                let carried = series
                    .iter()
                    .any(|s| metrics.contains(&s.name) && s.labels.contains_key(label));
                if !carried {
                    failures.push(format!(
                        "{origin}: by ({label}): no series of {metrics:?} has it"
                    ));
                }
            }
        }
        for vs in found.selectors {
            let name = vs.name.clone().expect("selectors name their metric");
            if name == "up" {
                continue; // Prometheus' own series of every target.
            }
            checked += 1;
            if !vs.matchers.or_matchers.is_empty() {
                failures.push(format!(
                    "{origin}: `or` matchers are not checked here: {vs}"
                ));
            }
            let matchers: Vec<_> = vs
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name != "__name__" && !TARGET_LABELS.contains(&m.name.as_str()))
                .collect();
            let label = |s: &Series, key: &str| s.labels.get(key).cloned().unwrap_or_default();
            let found = series
                .iter()
                .any(|s| s.name == name && matchers.iter().all(|m| m.is_match(&label(s, &m.name))));
            if !found {
                failures.push(format!("{origin}: no exported series matches {vs}"));
            }
            // `a|b|c` must name values that all exist: one existing value would match alone.
            for m in matchers.iter().filter(|m| matches!(m.op, MatchOp::Re(_))) {
                let plain = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !m.value.split('|').all(plain) {
                    failures.push(format!("{origin}: only `a|b` regexes are checked: {vs}"));
                    continue;
                }
                for value in m.value.split('|') {
                    let exists = series.iter().any(|s| {
                        s.name == name
                            && label(s, &m.name) == value
                            && matchers
                                .iter()
                                .filter(|other| other.name != m.name)
                                .all(|other| other.is_match(&label(s, &other.name)))
                    });
                    if !exists {
                        failures.push(format!("{origin}: {name} has no {}={value:?}", m.name));
                    }
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} selectors found");
    assert!(
        failures.is_empty(),
        "{}\n\nexported:\n{ingest_text}{worker_text}",
        failures.join("\n")
    );
    stack.redis.stop().await;
}
