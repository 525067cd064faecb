//! The services the fault suite breaks on purpose, each private to one scenario: its own
//! `redis-server` and `mariadbd` (fresh data folders, random free ports), the tier's binaries
//! (`matomo-ingest`, `matomo-worker run`) and HAProxy as child processes with their logs in the
//! scenario's temporary folder. Nothing here touches the shared Redis/MariaDB other tests use.
//!
//! Every process is killed when its handle drops, so a failing scenario leaves nothing behind.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// Table prefix of the scenario databases.
pub const PREFIX: &str = "matomo_";
/// Database name inside each private MariaDB.
pub const DB_NAME: &str = "matomo";
/// Number of queues (shards) the tier uses in the suite.
pub const QUEUES: u16 = 4;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A child process that is killed (SIGKILL) when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open process log");
        let err = out.try_clone().expect("clone log handle");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`, …) with the `kill` program.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit; true when it did.
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `limit`.
    pub async fn stop(mut self, limit: Duration) {
        self.signal("TERM");
        if !self.wait_exit(limit).await {
            eprintln!("{} ignored SIGTERM for {limit:?}; killing it", self.name);
            self.kill9();
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 30 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(30);
    format!("--- {} ---\n{}", path.display(), lines[start..].join("\n"))
}

/// Polls `probe` every 100 ms until it is true or `limit` passes.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if probe().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{what} not ready within {limit:?}"))
}

/// A private `redis-server` with an fsync-always append-only file, so an acknowledged RPUSH
/// survives a stop or a kill of the server. It listens on loopback TCP and on a Unix socket
/// ([`Redis::socket`]).
pub struct Redis {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Redis {
    /// Starts it in `dir/redis` on a free port.
    pub async fn start(dir: &Path) -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: dir.join("redis"),
            proc: None,
        };
        std::fs::create_dir_all(&redis.dir).unwrap();
        redis.restart().await;
        redis
    }

    /// The path of its Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// (Re)starts the server on the same port, socket and data folder.
    pub async fn restart(&mut self) {
        assert!(self.proc.is_none(), "redis is already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--unixsocket")
            .arg(self.socket())
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(&self.dir);
        let proc = Proc::spawn("redis-server", cmd, &self.dir.join("redis.log"));
        let port = self.port;
        if let Err(e) = wait_for("redis", Duration::from_secs(20), || async move {
            redis_cli(port, &["PING"]).is_some_and(|r| r == "PONG")
        })
        .await
        {
            panic!("{e}\n{}", proc.log_tail());
        }
        self.proc = Some(proc);
    }

    /// Stops the server (SIGTERM: Redis flushes its AOF and exits).
    pub async fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop(Duration::from_secs(10)).await;
        }
    }

    /// Kills the server with SIGKILL (the fsync-always AOF keeps every acknowledged write).
    pub fn kill9(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.kill9();
        }
    }

    /// Sum of the lengths of the tier's queues (`None` when Redis does not answer).
    pub fn queued(&self) -> Option<u64> {
        let mut total = 0;
        for q in 0..QUEUES {
            let key = matomo_wire::keys::queue_key("", q);
            total += redis_cli(self.port, &["LLEN", &key])?.parse::<u64>().ok()?;
        }
        Some(total)
    }
}

/// Runs one `redis-cli` command; its trimmed output, or `None` when it failed.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.starts_with("Could not connect") && !text.is_empty())
        .then_some(text)
}

/// Runs `mariadb-install-db` into `dir/data` (emptied first); on failure, its output and the
/// end of every error log the bootstrap server left in the data folder.
fn install_db(dir: &Path) -> Result<(), String> {
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let install_log = dir.join("install-db.log");
    let out = File::create(&install_log).unwrap();
    let status = Command::new("mariadb-install-db")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--user=root",
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        ])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .status()
        .expect("mariadb-install-db must be installed (apt-get install mariadb-server)");
    if status.success() {
        return Ok(());
    }
    let mut report = format!("{status}\n{}", log_tail(&install_log));
    for entry in std::fs::read_dir(&data).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "err") {
            report.push('\n');
            report.push_str(&log_tail(&entry.path()));
        }
    }
    Err(report)
}

/// A private MariaDB (`mariadb-install-db` into a fresh folder, `--skip-grant-tables`, TCP on a
/// free port) holding Matomo's schema and one site.
pub struct Mysql {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Mysql {
    /// Initialises the data folder, starts the server, creates the schema and site 1.
    pub async fn start(dir: &Path) -> Self {
        let dir = dir.join("mysql");
        std::fs::create_dir_all(&dir).unwrap();
        // In one CI run (session 18) the bootstrap server failed with nothing said but
        // "Installation of system tables failed" (its own error log was gone with the folder).
        // Such a failure is the machine's, not the tier's: it is shown, and tried once more.
        let mut failures = Vec::new();
        while let Err(failure) = install_db(&dir) {
            failures.push(failure);
            assert!(
                failures.len() < 2,
                "mariadb-install-db failed twice\n{}",
                failures.join("\n")
            );
            eprintln!(
                "mariadb-install-db failed, trying once more:\n{}",
                failures[0]
            );
        }
        let mut mysql = Self {
            port: free_port(),
            dir,
            proc: None,
        };
        mysql.restart().await;
        let pool = mysql.pool(None);
        let mut conn = pool
            .get_conn()
            .await
            .expect("connect to the private MariaDB");
        conn.query_drop(format!(
            "CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap();
        conn.query_drop(format!("USE {DB_NAME}")).await.unwrap();
        for statement in
            tier_config::schema::split_statements(&tier_config::schema::matomo_schema_sql(PREFIX))
        {
            conn.query_drop(statement).await.unwrap();
        }
        conn.query_drop(format!(
            "INSERT INTO {PREFIX}site (idsite, name, main_url, ts_created, ecommerce, \
             sitesearch_keyword_parameters, sitesearch_category_parameters, timezone, currency, \
             excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, `group`, \
             `type`) VALUES (1, 'Faults', 'https://www.example.com', NOW(), 0, '', '', 'UTC', \
             'USD', '', '', '', '', '', 'website')"
        ))
        .await
        .unwrap();
        drop(conn);
        pool.disconnect().await.unwrap();
        mysql
    }

    /// A connection pool (on the Matomo database unless `db` says otherwise).
    pub fn pool(&self, db: Option<&str>) -> mysql_async::Pool {
        let url = format!(
            "mysql://matomo:matomo@127.0.0.1:{}/{}",
            self.port,
            db.unwrap_or("")
        );
        mysql_async::Pool::new(mysql_async::Opts::from_url(&url).unwrap())
    }

    /// (Re)starts the server on the same port and data folder.
    pub async fn restart(&mut self) {
        assert!(self.proc.is_none(), "mariadbd is already running");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("s.sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("m.pid").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
            ])
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=64M"])
            .arg("--innodb-flush-log-at-trx-commit=1");
        let proc = Proc::spawn("mariadbd", cmd, &self.dir.join("mariadbd.log"));
        let port = self.port;
        if let Err(e) = wait_for("mariadbd", Duration::from_secs(60), || async move {
            mysql_greets(port).await
        })
        .await
        {
            panic!("{e}\n{}", proc.log_tail());
        }
        self.proc = Some(proc);
    }

    /// Kills the server with SIGKILL (InnoDB recovers committed transactions on restart).
    pub fn kill9(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.kill9();
        }
    }
}

/// True when the port sends a MySQL greeting.
async fn mysql_greets(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await,
        Ok(Ok(_))
    )
}

/// Where the tier's binaries are: `MATOMO_FAULTS_BIN_DIR`, else the profile folder of the target
/// dir this test runs from (`<target>/debug`, built there by `cargo test --workspace` or
/// `cargo build --bins`); built on demand into `<target>/faults-bins` when missing there.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MATOMO_FAULTS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/faults-<hash>
    let profile = exe.parent().and_then(Path::parent).expect("profile dir");
    if profile.join("matomo-ingest").exists() && profile.join("matomo-worker").exists() {
        return profile.to_owned();
    }
    // A nested cargo on the same target dir would wait for the lock the running `cargo test`
    // holds, so build into a folder of its own.
    let target = profile.parent().expect("target dir").join("faults-bins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    eprintln!(
        "building matomo-ingest and matomo-worker into {}",
        target.display()
    );
    let status = Command::new(cargo)
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "-p",
            "matomo-ingest",
            "-p",
            "matomo-worker",
            "--bins",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the tier's binaries failed");
    target.join("debug")
}

/// The TOML configuration shared by the tier's processes of one scenario.
pub fn tier_toml(redis_port: u16, mysql_port: u16) -> String {
    format!(
        r#"[redis]
host = "127.0.0.1"
port = {redis_port}
command_timeout = 1.0

[database]
host = "127.0.0.1"
port = {mysql_port}
username = "matomo"
password = "matomo"
dbname = "{DB_NAME}"
tables_prefix = "{PREFIX}"

[queue]
num_queue_workers = {QUEUES}
num_requests_to_process = 40

[matomo]
salt = "fault-suite-salt"

[ingest]
shutdown_grace = 2.0
site_cache_refresh = 5.0

[worker]
pool_size = 2
lock_ttl = 3.0
max_batch_wait = 0.2
min_backoff = 0.1
max_backoff = 1.0
"#
    )
}

/// A tier binary that reads only the suite's own configuration: the environment's
/// `MATOMO_TIER__*` overrides (which `deploy/local/test` sets for the shared services) would
/// otherwise win over the suite's TOML and point it at the shared Redis and MariaDB.
fn tier_command(binary: &str) -> Command {
    let mut cmd = Command::new(bin_dir().join(binary));
    without_tier_env(&mut cmd);
    cmd
}

/// Removes the environment's `MATOMO_TIER__*` overrides from `cmd` (see [`tier_command`]).
pub fn without_tier_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MATOMO_TIER") {
            cmd.env_remove(&key);
        }
    }
}

/// Starts `matomo-ingest` on `port`; returns once `/readyz` answers 200.
pub async fn start_ingest(dir: &Path, config: &Path, name: &str, port: u16) -> Proc {
    start_ingest_with(dir, config, name, port, &[]).await
}

/// [`start_ingest`] with extra settings (`key=value`, passed as `--set`).
pub async fn start_ingest_with(
    dir: &Path,
    config: &Path,
    name: &str,
    port: u16,
    settings: &[String],
) -> Proc {
    let mut cmd = tier_command("matomo-ingest");
    cmd.arg("--config")
        .arg(config)
        .args(["--set", &format!("ingest.listen=127.0.0.1:{port}")]);
    for setting in settings {
        cmd.args(["--set", setting]);
    }
    let proc = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
    if let Err(e) = wait_for(name, Duration::from_secs(30), || async move {
        http_ok(port, "/readyz").await
    })
    .await
    {
        panic!("{e}\n{}", proc.log_tail());
    }
    proc
}

/// Starts `matomo-worker run` on a free metrics port; returns once `/healthz` answers.
pub async fn start_worker(dir: &Path, config: &Path, name: &str) -> Proc {
    start_worker_on(dir, config, name, free_port()).await
}

/// [`start_worker`] with its `/metrics` on `port`.
pub async fn start_worker_on(dir: &Path, config: &Path, name: &str, port: u16) -> Proc {
    let mut cmd = tier_command("matomo-worker");
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .args(["--set", &format!("worker.listen=127.0.0.1:{port}")]);
    let proc = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
    if let Err(e) = wait_for(name, Duration::from_secs(30), || async move {
        http_ok(port, "/healthz").await
    })
    .await
    {
        panic!("{e}\n{}", proc.log_tail());
    }
    proc
}

/// Starts HAProxy with `deploy/haproxy/haproxy.cfg` in front of two ingest ports.
pub async fn start_haproxy(dir: &Path, ingest1: u16, ingest2: u16) -> (Proc, u16) {
    let port = free_port();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg");
    let run = dir.join("haproxy");
    std::fs::create_dir_all(&run).unwrap();
    // The deployed file asks for 20,000 connections (40k file descriptors); test machines often
    // cap descriptors lower, so the copy the suite runs asks for fewer. Nothing else changes.
    let text = std::fs::read_to_string(&cfg).expect("read deploy/haproxy/haproxy.cfg");
    assert!(
        text.contains("maxconn 20000"),
        "haproxy.cfg: global maxconn line changed"
    );
    let copy = run.join("haproxy.cfg");
    std::fs::write(&copy, text.replace("maxconn 20000", "maxconn 2000")).unwrap();
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db")
        .arg("-f")
        .arg(&copy)
        .env("HAPROXY_RUN_DIR", &run)
        .env("HAPROXY_BIND", format!("127.0.0.1:{port}"))
        .env("INGEST1", format!("127.0.0.1:{ingest1}"))
        .env("INGEST2", format!("127.0.0.1:{ingest2}"));
    let proc = Proc::spawn("haproxy", cmd, &dir.join("haproxy.log"));
    if let Err(e) = wait_for("haproxy", Duration::from_secs(20), || async move {
        http_ok(port, "/haproxy-health").await
    })
    .await
    {
        panic!("{e}\n{}", proc.log_tail());
    }
    (proc, port)
}

/// True when `GET path` on 127.0.0.1:`port` answers 200.
pub async fn http_ok(port: u16, path: &str) -> bool {
    http_get(port, path).await.is_some()
}

/// The body of `GET path` on 127.0.0.1:`port` when it answers 200 within 2 s.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        s.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// The value of metric `name` (first sample) on the ingest node at `port`.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = http_get(port, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
