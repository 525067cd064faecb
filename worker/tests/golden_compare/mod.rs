//! The golden's own judges, shared by the golden tests: `dump.py` writes the rows of a test
//! database in the golden's normalised form and `compare.py` compares them with
//! `golden-get.json`, leaving out (as the golden README says) only the fingerprint salts PHP
//! created for its own clock dates, which no corpus hit uses.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// What `compare.py` said.
pub struct Verdict {
    /// `compare.py` exited 0: every compared cell equal.
    pub equal: bool,
    /// Its report (differences, and the `fidelity:` line last).
    pub report: String,
}

impl Verdict {
    /// The percentage of the `fidelity: P% of N cells equal` line.
    pub fn fidelity(&self) -> f64 {
        let line = self
            .report
            .lines()
            .rev()
            .find(|l| l.starts_with("fidelity:"))
            .expect("compare.py prints a fidelity line");
        line.trim_start_matches("fidelity:")
            .trim()
            .split('%')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .expect("fidelity percentage")
    }
}

/// Dumps database `db` (tables `matomo_*` on 127.0.0.1:3306, user `matomo`) with the golden
/// folder `golden`'s `dump.py` and compares it with `compare.py`; prints the report under
/// `label`.
pub fn dump_and_compare(golden: &Path, db: &str, label: &str) -> Verdict {
    let cand = std::env::temp_dir().join(format!("{db}-{label}.json"));
    let dump = Command::new("python3")
        .arg(golden.join("dump.py"))
        .args(["--host", "127.0.0.1", "--port", "3306", "--user", "matomo"])
        .args(["--password", "matomo", "--db", db, "--prefix", "matomo_"])
        .arg("--out")
        .arg(&cand)
        .output()
        .expect("python3 dump.py");
    assert!(
        dump.status.success(),
        "dump.py failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let compare = Command::new("python3")
        .arg(golden.join("compare.py"))
        .arg(golden.join("golden-get.json"))
        .arg(&cand)
        .args([
            "--ignore-row",
            r"options.fingerprint_salt:_(?!2026-11-(?:09|1[0-3])$)\d{4}-\d\d-\d\d$",
        ])
        .output()
        .expect("python3 compare.py");
    let _ = std::fs::remove_file(&cand);
    let report = String::from_utf8_lossy(&compare.stdout).into_owned();
    println!("[{label}]\n{report}");
    Verdict {
        equal: compare.status.success(),
        report,
    }
}
