//! The `matomo-ingest` binary's refusals before it starts anything: exit status 2 (a
//! configuration error, which the systemd unit does not restart) and the reason on stderr.

use std::process::Command;

#[test]
fn a_worker_thread_count_tokio_cannot_use_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    for bad in ["0", "many", "2000"] {
        let out = Command::new(env!("CARGO_BIN_EXE_matomo-ingest"))
            .arg("--config")
            .arg(&config)
            .env("TOKIO_WORKER_THREADS", bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Tokio itself would panic on these (exit status 101) when building the runtime.
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("TOKIO_WORKER_THREADS = \"{bad}\"")),
            "{bad}: {stderr}"
        );
    }
}
