//! Tests of loading: precedence of the sources, unknown keys, wrong types, the one-line errors,
//! Matomo config.ini.php import, and the registry being in sync with `Config` and the docs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use crate::registry::{self, SETTINGS};
use crate::*;

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, text).unwrap();
    path
}

fn toml_args(dir: &Path, text: &str) -> CommonArgs {
    CommonArgs {
        config: Some(write(dir, "tier.toml", text)),
        ..CommonArgs::default()
    }
}

fn err_line(result: Result<Config, ConfigError>) -> String {
    let line = result
        .expect_err("configuration should be refused")
        .to_string();
    assert!(!line.contains('\n'), "error must be one line: {line}");
    assert!(line.starts_with("config error: "), "{line}");
    line
}

#[test]
fn no_sources_gives_the_defaults() {
    assert_eq!(
        load_with_env(&CommonArgs::default(), env(&[])).unwrap(),
        Config::default()
    );
}

#[test]
fn toml_file_sets_values_and_integer_seconds_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let args = toml_args(
        dir.path(),
        "[queue]\nnum_queue_workers = 16\n[worker]\nlock_ttl = 30\nidle_sleep = 0.25\n[ingest.spool]\nfsync = \"never\"\n",
    );
    let config = load_with_env(&args, env(&[])).unwrap();
    assert_eq!(config.queue.num_queue_workers, 16);
    assert_eq!(config.worker.lock_ttl.as_secs(), 30);
    assert_eq!(config.worker.idle_sleep.as_millis(), 250);
    assert_eq!(config.ingest.spool.fsync, FsyncPolicy::Never);
}

#[test]
fn precedence_is_toml_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = toml_args(
        dir.path(),
        "[database]\nport = 3307\nhost = \"db\"\n[redis]\nport = 6380\n",
    );
    let vars = env(&[
        ("MATOMO_TIER__DATABASE__PORT", "3308"),
        ("MATOMO_TIER__REDIS__PORT", "6381"),
        ("OTHER", "x"),
    ]);
    args.set = vec!["database.port=3309".into()];
    let config = load_with_env(&args, vars).unwrap();
    assert_eq!(config.database.port, 3309, "flag wins");
    assert_eq!(config.redis.port, 6381, "environment wins over the file");
    assert_eq!(config.database.host, "db", "file wins over the default");
}

#[test]
fn out_of_range_value_names_the_setting_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let args = toml_args(dir.path(), "[queue]\nnum_queue_workers = 0\n");
    let line = err_line(load_with_env(&args, env(&[])));
    assert!(
        line.starts_with(
            "config error: queue.num_queue_workers = 0: must be between 1 and 4096 (from "
        ),
        "{line}"
    );
    assert!(line.contains("tier.toml"), "{line}");
    let line = err_line(load_with_env(
        &CommonArgs::default(),
        env(&[("MATOMO_TIER__QUEUE__NUM_QUEUE_WORKERS", "5000")]),
    ));
    assert_eq!(
        line,
        "config error: queue.num_queue_workers = 5000: must be between 1 and 4096 (from environment MATOMO_TIER__QUEUE__NUM_QUEUE_WORKERS)"
    );
}

#[test]
fn unknown_keys_are_refused_wherever_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let line = err_line(load_with_env(
        &toml_args(dir.path(), "[queue]\nnum_workers = 3\n"),
        env(&[]),
    ));
    assert!(
        line.starts_with("config error: unknown setting `queue.num_workers` (from "),
        "{line}"
    );
    let line = err_line(load_with_env(
        &toml_args(dir.path(), "[nope]\nx = 1\n"),
        env(&[]),
    ));
    assert!(line.contains("unknown setting `nope`"), "{line}");
    let line = err_line(load_with_env(
        &CommonArgs::default(),
        env(&[("MATOMO_TIER__REDIS__HOSTNAME", "x")]),
    ));
    assert_eq!(line, "config error: unknown setting `redis.hostname` (from environment MATOMO_TIER__REDIS__HOSTNAME)");
    let args = CommonArgs {
        set: vec!["worker.pool=3".into()],
        ..CommonArgs::default()
    };
    assert_eq!(
        err_line(load_with_env(&args, env(&[]))),
        "config error: unknown setting `worker.pool` (from flag --set worker.pool)"
    );
    let args = CommonArgs {
        set: vec!["worker.pool_size".into()],
        ..CommonArgs::default()
    };
    assert_eq!(
        err_line(load_with_env(&args, env(&[]))),
        "config error: --set worker.pool_size: expected SECTION.KEY=VALUE"
    );
}

#[test]
fn wrong_types_are_refused_and_secrets_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let line = err_line(load_with_env(
        &toml_args(dir.path(), "[redis]\nport = \"six\"\n"),
        env(&[]),
    ));
    assert!(
        line.starts_with(
            "config error: redis.port = \"six\": expected a whole number from 0 to 65535"
        ),
        "{line}"
    );
    let line = err_line(load_with_env(
        &toml_args(dir.path(), "[database]\npassword = 12345\n"),
        env(&[]),
    ));
    assert!(
        line.starts_with("config error: database.password = <redacted>: expected a string"),
        "{line}"
    );
    assert!(!line.contains("12345"));
    let line = err_line(load_with_env(
        &toml_args(dir.path(), "[log]\nformat = \"xml\"\n"),
        env(&[]),
    ));
    assert!(
        line.contains("log.format = \"xml\": expected one of text, json"),
        "{line}"
    );
    let line = err_line(load_with_env(
        &CommonArgs::default(),
        env(&[("MATOMO_TIER__INGEST__LISTEN", "localhost")]),
    ));
    assert!(
        line.contains("ingest.listen = localhost: expected an address"),
        "{line}"
    );
    let line = err_line(load_with_env(&toml_args(dir.path(), "[queue\n"), env(&[])));
    assert!(line.contains("invalid TOML"), "{line}");
}

#[test]
fn missing_files_are_named() {
    let args = CommonArgs {
        config: Some("/nonexistent/tier.toml".into()),
        ..CommonArgs::default()
    };
    let line = err_line(load_with_env(&args, env(&[])));
    assert!(
        line.starts_with("config error: --config /nonexistent/tier.toml: cannot read: "),
        "{line}"
    );
    let args = CommonArgs {
        matomo_config: Some("/nonexistent/config.ini.php".into()),
        ..CommonArgs::default()
    };
    assert!(err_line(load_with_env(&args, env(&[])))
        .starts_with("config error: --matomo-config /nonexistent/config.ini.php"));
    let args = CommonArgs {
        geoip_db: Some("/nonexistent/city.mmdb".into()),
        ..CommonArgs::default()
    };
    assert_eq!(
        err_line(load_with_env(&args, env(&[]))),
        "config error: matomo.geoip_db = /nonexistent/city.mmdb: is not a readable file (from flag --geoip-db)"
    );
}

#[test]
fn matomo_install_provides_database_salt_queue_and_vendor_dir() {
    let dir = tempfile::tempdir().unwrap();
    let ini = "; <?php exit; ?> DO NOT REMOVE THIS LINE\n[database]\nhost = \"db\"\nport = 3307\npassword = \"s3cret\"\n\
               tables_prefix = \"piwik_\"\n[General]\nsalt = \"abc\"\nproxy_ips[] = \"10.0.0.0/8\"\n\
               [Tracker]\nvisit_standard_length = 900\n[QueuedTracking]\nnumQueueWorkers = 8\nredisDatabase = 2\n";
    write(dir.path(), "config/config.ini.php", ini);
    for sub in validate::VENDOR_SUBDIRS {
        fs::create_dir_all(dir.path().join("vendor/matomo").join(sub)).unwrap();
    }
    // The install folder itself is accepted, as is the file.
    let args = CommonArgs {
        matomo_config: Some(dir.path().to_path_buf()),
        ..CommonArgs::default()
    };
    let config = load_with_env(&args, env(&[])).unwrap();
    assert_eq!(config.database.host, "db");
    assert_eq!(config.database.port, 3307);
    assert_eq!(config.database.password, "s3cret");
    assert_eq!(config.database.tables_prefix, "piwik_");
    assert_eq!(config.matomo.salt, "abc");
    assert_eq!(
        config.matomo.tracker.proxy_ips,
        vec!["10.0.0.0/8".to_string()]
    );
    assert_eq!(config.matomo.tracker.visit_standard_length, 900);
    assert_eq!(config.queue.num_queue_workers, 8);
    assert_eq!(config.redis.database, 2);
    assert_eq!(
        config.matomo.vendor_dir,
        Some(dir.path().join("vendor/matomo"))
    );

    // A TOML file overrides the Matomo config.
    let mut args = toml_args(dir.path(), "[queue]\nnum_queue_workers = 2\n");
    args.matomo_config = Some(dir.path().join("config/config.ini.php"));
    assert_eq!(
        load_with_env(&args, env(&[]))
            .unwrap()
            .queue
            .num_queue_workers,
        2
    );
}

#[test]
fn matomo_configs_with_queued_trackings_redis_forms_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A Unix socket: a redisHost that is a path, and port 0.
        (
            "redisHost = \"/var/run/redis/redis.sock\"\nredisPort = 0\nredisDatabase = 4\n",
            "redis+unix:///var/run/redis/redis.sock?db=4",
        ),
        // Sentinels as two parallel lists.
        (
            "useWhatRedisBackendType = 2\nredisHost = \"s1,s2\"\nredisPort = \"26379,26380\"\n",
            "redis-sentinel://s1:26379/0?sentinelServiceName=mymaster&node=s2:26380",
        ),
        // Sentinel without a port: QueuedTracking's default for it.
        (
            "useWhatRedisBackendType = 2\nredisHost = \"s1\"\n",
            "redis-sentinel://s1:26379/0?sentinelServiceName=mymaster",
        ),
        // Before QueuedTracking 5.1, Sentinel was a flag; the newer setting wins.
        (
            "useSentinelBackend = 1\nredisHost = \"s1\"\n",
            "redis-sentinel://s1:26379/0?sentinelServiceName=mymaster",
        ),
        (
            "useSentinelBackend = 1\nuseWhatRedisBackendType = 1\nredisHost = \"r1\"\n",
            "redis://r1:6379/0",
        ),
    ];
    for (section, url) in cases {
        let text = format!("[General]\nsalt = \"x\"\n[QueuedTracking]\n{section}");
        let args = CommonArgs {
            matomo_config: Some(write(dir.path(), "config.ini.php", &text)),
            ..CommonArgs::default()
        };
        let config = load_with_env(&args, env(&[])).expect("loads");
        assert_eq!(config.redis_url(), url, "{section}");
    }
    // Sentinel's default port is the default of the merged settings, whichever layer chose
    // the backend, and never overrides a port some layer set.
    let ini = write(
        dir.path(),
        "config.ini.php",
        "[General]\nsalt = \"x\"\n[QueuedTracking]\nuseWhatRedisBackendType = 2\n",
    );
    let port = |toml: &str, vars: &[(&str, &str)]| {
        let args = CommonArgs {
            matomo_config: Some(ini.clone()),
            ..toml_args(dir.path(), toml)
        };
        load_with_env(&args, env(vars)).expect("loads").redis.port
    };
    assert_eq!(port("", &[]), 26379);
    assert_eq!(port("[redis]\nbackend = \"standalone\"\n", &[]), 6379);
    assert_eq!(port("[redis]\nport = 26400\n", &[]), 26400);
    assert_eq!(port("", &[("MATOMO_TIER__REDIS__PORT", "6379")]), 6379);
    let args = toml_args(dir.path(), "[redis]\nbackend = \"sentinel\"\n");
    assert_eq!(load_with_env(&args, env(&[])).unwrap().redis.port, 26379);
}

#[test]
fn stored_settings_sit_under_config_ini_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let ini = |section: &str| {
        let text = format!("[General]\nsalt = \"x\"\n[QueuedTracking]\n{section}");
        CommonArgs {
            matomo_config: Some(write(dir.path(), "config.ini.php", &text)),
            ..CommonArgs::default()
        }
    };
    let stored = |values: &[(&str, &str)]| crate::StoredSettings {
        table: "matomo_plugin_setting".into(),
        values: values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let in_db = stored(&[
        ("useWhatRedisBackendType", "2"),
        ("redisHost", "s1,s2"),
        ("redisPort", "26379,26380"),
        ("redisPassword", "stored-secret"),
        ("numQueueWorkers", "8"),
    ]);
    // The file hides the stored password with an empty one, and names its own hosts, which
    // pair with the stored ports as they would in Matomo.
    let args = ini("redisPassword = \"\"\nredisHost = \"a,b\"\n");
    let config = crate::load_with_stored(&args, env(&[]), Some(&in_db)).expect("loads");
    assert_eq!(config.redis.backend, crate::RedisBackend::Sentinel);
    assert_eq!(config.redis.host, "a:26379,b:26380");
    assert_eq!(config.redis.password, None);
    assert_eq!(config.queue.num_queue_workers, 8);
    // The stored rows alone.
    let config = crate::load_with_stored(&ini(""), env(&[]), Some(&in_db)).expect("loads");
    assert_eq!(config.redis.host, "s1:26379,s2:26380");
    assert_eq!(config.redis.password.as_deref(), Some("stored-secret"));
    // A port Matomo stored is a port set: Sentinel's default does not replace it.
    let port_stored = stored(&[("useWhatRedisBackendType", "2"), ("redisPort", "6379")]);
    let config = crate::load_with_stored(&ini(""), env(&[]), Some(&port_stored)).expect("loads");
    assert_eq!(config.redis.port, 6379);
    // A stored value refused is named with its row.
    let bad = stored(&[("numQueueWorkers", "0")]);
    let line = err_line(crate::load_with_stored(&ini(""), env(&[]), Some(&bad)));
    assert!(
        line.ends_with(
            "(from QueuedTracking's stored setting numQueueWorkers in table matomo_plugin_setting)"
        ),
        "{line}"
    );
}

#[test]
fn matomo_config_without_salt_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config.ini.php", "[database]\nhost = \"db\"\n");
    let args = CommonArgs {
        matomo_config: Some(path),
        ..CommonArgs::default()
    };
    let line = err_line(load_with_env(&args, env(&[])));
    assert!(
        line.starts_with("config error: matomo.salt = \"\": is empty"),
        "{line}"
    );
}

#[test]
fn matomo_config_with_bad_values_names_the_ini_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config.ini.php",
        "[General]\nsalt = \"x\"\n[QueuedTracking]\nnumQueueWorkers = 0\n",
    );
    let args = CommonArgs {
        matomo_config: Some(path),
        ..CommonArgs::default()
    };
    let line = err_line(load_with_env(&args, env(&[])));
    assert!(line.contains("queue.num_queue_workers = 0: must be between 1 and 4096 (from [QueuedTracking] numQueueWorkers in "), "{line}");
    let path = write(dir.path(), "bad.ini.php", "[General]\nsalt = \"x\n");
    let args = CommonArgs {
        matomo_config: Some(path),
        ..CommonArgs::default()
    };
    assert!(err_line(load_with_env(&args, env(&[])))
        .contains("bad.ini.php:2: unterminated quoted value"));
}

#[test]
fn golden_matomo_config_loads_when_available() {
    let Some(shared) = shared_dir() else {
        println!("skipped: shared folder not found (set MATOMO_SHARED_DIR)");
        return;
    };
    let args = CommonArgs {
        matomo_config: Some(shared.join("golden-php/matomo-state/config.ini.php")),
        matomo_vendor: Some(shared.join("matomo-data/for-matomo-5.1")),
        ..CommonArgs::default()
    };
    let config = load_with_env(&args, env(&[])).unwrap();
    assert_eq!(config.database.port, 3307);
    assert_eq!(config.database.tables_prefix, "matomo_");
    assert_eq!(config.matomo.salt, "4c846f1419772b8c066efe9b957ee372");
    assert_eq!(config.queue.num_queue_workers, 1);
    assert_eq!(config.queue.num_requests_to_process, 25);
    assert_eq!(config.redis.password, None);
}

#[test]
fn vendor_dir_without_the_expected_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("device-detector/regexes")).unwrap();
    let args = CommonArgs {
        matomo_vendor: Some(dir.path().to_path_buf()),
        ..CommonArgs::default()
    };
    let line = err_line(load_with_env(&args, env(&[])));
    assert!(
        line.contains("matomo.vendor_dir = ")
            && line.contains("has no searchengine-and-social-list/"),
        "{line}"
    );
    assert!(line.ends_with("(from flag --matomo-vendor)"), "{line}");
}

#[test]
fn relations_between_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[worker]\nmin_backoff = 20\nmax_backoff = 10\n",
            "worker.min_backoff = 20: must not exceed worker.max_backoff",
        ),
        (
            "[redis]\nbackend = \"sentinel\"\nsentinel_master = \"\"\n",
            "redis.sentinel_master",
        ),
        (
            "[database]\ntables_prefix = \"x; DROP\"\n",
            "database.tables_prefix = \"x; DROP\": may only contain",
        ),
        (
            "[matomo.tracker]\nproxy_ips = [\"10.0.0.0/8\", \"nope\"]\n",
            "matomo.tracker.proxy_ips = [1] \"nope\"",
        ),
        (
            "[ingest]\npath_prefix = \"ma\"\n",
            "ingest.path_prefix = \"ma\": must start and end with /",
        ),
        ("[log]\nlevel = \"info,=[\"\n", "log.level"),
        (
            "[redis]\nhost = \"tls://redis.example:6380\"\n",
            "redis.host = \"tls://redis.example:6380\": takes a host name or address",
        ),
        (
            "[redis]\nhost = \"r1,r2\"\n",
            "redis.host = \"r1,r2\": lists several hosts, which only redis.backend",
        ),
        (
            "[redis]\nhost = \"r1:port\"\n",
            "redis.host = \"r1:port\": \"r1:port\": \"port\" is not a TCP port",
        ),
        (
            "[redis]\nport = 0\n",
            "redis.port = 0: must be a TCP port from 1 to 65535 (0 only with a Unix socket",
        ),
        (
            "[redis]\nhost = \"/run/redis.sock\"\nbackend = \"cluster\"\n",
            "redis.host = \"/run/redis.sock\": is a Unix socket path, which only redis.backend = \"standalone\" can use",
        ),
    ];
    for (text, expected) in cases {
        let line = err_line(load_with_env(&toml_args(dir.path(), text), env(&[])));
        assert!(line.contains(expected), "{text:?} gave {line}");
    }
}

#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    common: CommonArgs,
}

#[test]
fn common_args_parse_and_help_lists_every_setting() {
    let cli = TestCli::try_parse_from([
        "bin",
        "--config",
        "a.toml",
        "--set",
        "queue.num_queue_workers=3",
        "--set",
        "log.format=json",
        "--geoip-db",
        "g.mmdb",
    ])
    .unwrap();
    assert_eq!(cli.common.config, Some(PathBuf::from("a.toml")));
    assert_eq!(cli.common.set.len(), 2);
    let help = TestCli::command().render_long_help().to_string();
    for setting in SETTINGS {
        assert!(
            help.contains(setting.key),
            "--help does not mention {}",
            setting.key
        );
    }
}

#[derive(Debug, Parser)]
struct TestCliWithSubcommands {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: TestCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TestCommand {
    Run,
}

/// `matomo-worker run --config FILE` and `matomo-worker --config FILE run` both work.
#[test]
fn common_args_are_accepted_after_a_subcommand() {
    for argv in [
        [
            "bin",
            "run",
            "--config",
            "a.toml",
            "--set",
            "log.level=debug",
        ],
        [
            "bin",
            "--config",
            "a.toml",
            "run",
            "--set",
            "log.level=debug",
        ],
    ] {
        let cli = TestCliWithSubcommands::try_parse_from(argv).unwrap();
        assert!(matches!(cli.command, TestCommand::Run));
        assert_eq!(cli.common.config, Some(PathBuf::from("a.toml")), "{argv:?}");
        assert_eq!(
            cli.common.set,
            vec!["log.level=debug".to_string()],
            "{argv:?}"
        );
    }
}

/// Every field of `Config` (found by serialising one with every optional field set) is in the
/// registry, and every registry key is a field.
#[test]
fn registry_names_exactly_the_fields_of_config() {
    let mut config = Config::default();
    config.redis.password = Some("x".into());
    config.matomo.vendor_dir = Some("v".into());
    config.matomo.geoip_db = Some("g".into());
    config.ingest.static_dir = Some("s".into());
    config.ingest.spool.dir = Some("d".into());
    let mut keys = Vec::new();
    fn walk(prefix: &str, table: &toml::Table, keys: &mut Vec<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&path, t, keys),
                _ => keys.push(path),
            }
        }
    }
    match toml::Value::try_from(&config).unwrap() {
        toml::Value::Table(t) => walk("", &t, &mut keys),
        other => panic!("not a table: {other}"),
    }
    let mut registered: Vec<String> = SETTINGS.iter().map(|s| s.key.to_string()).collect();
    keys.sort();
    registered.sort();
    assert_eq!(keys, registered);
    for s in SETTINGS {
        assert_eq!(registry::key_for_env(&s.env_var()).as_deref(), Some(s.key));
    }
}

/// `docs/configuration.md` holds the current settings table (regenerate with
/// `UPDATE_DOCS=1 cargo test -p tier-config docs_table`).
#[test]
fn docs_table_is_current() {
    let path = workspace_root().join("docs/configuration.md");
    let text = fs::read_to_string(&path).expect("docs/configuration.md exists");
    let (begin, end) = (
        "<!-- settings-table:begin -->\n",
        "<!-- settings-table:end -->",
    );
    let start = text.find(begin).expect("begin marker") + begin.len();
    let stop = text.find(end).expect("end marker");
    let table = registry::markdown_table();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        fs::write(
            &path,
            format!("{}{}{}", &text[..start], table, &text[stop..]),
        )
        .unwrap();
        return;
    }
    assert_eq!(
        &text[start..stop],
        table,
        "docs/configuration.md is stale: run UPDATE_DOCS=1 cargo test -p tier-config docs_table"
    );
}
