//! The golden's own judges, shared by the golden tests: `dump.py` writes the rows of a test
//! database in the golden's normalised form and `compare.py` compares them with
//! `golden-get.json` (or two dumps of ours with each other), leaving out (as the golden README
//! says) only the fingerprint salts PHP created for its own clock dates, which no corpus hit
//! uses.
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

/// The rows of the fingerprint salts PHP created for its own clock dates, which no corpus hit
/// uses (the golden README's `--ignore-row`).
const CLOCK_SALTS: &str = r"options.fingerprint_salt:_(?!2026-11-(?:09|1[0-3])$)\d{4}-\d\d-\d\d$";

/// Writes the rows of database `db` (tables `matomo_*` on 127.0.0.1:3306, user `matomo`) to
/// `out` with the golden folder `golden`'s `dump.py`; `corpus` names the corpus whose hits
/// label the random visitor ids (default: the golden's own).
pub fn dump(golden: &Path, db: &str, corpus: Option<&Path>, out: &Path) {
    let mut cmd = Command::new("python3");
    cmd.arg(golden.join("dump.py"))
        .args(["--host", "127.0.0.1", "--port", "3306", "--user", "matomo"])
        .args(["--password", "matomo", "--db", db, "--prefix", "matomo_"])
        .arg("--out")
        .arg(out);
    if let Some(corpus) = corpus {
        cmd.arg("--corpus").arg(corpus);
    }
    let dump = cmd.output().expect("python3 dump.py");
    assert!(
        dump.status.success(),
        "dump.py failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
}

/// Compares the dump `candidate` with the dump `expected` using `golden`'s `compare.py`;
/// prints the report under `label`.
pub fn compare(golden: &Path, expected: &Path, candidate: &Path, label: &str) -> Verdict {
    let compare = Command::new("python3")
        .arg(golden.join("compare.py"))
        .arg(expected)
        .arg(candidate)
        .args(["--ignore-row", CLOCK_SALTS])
        .output()
        .expect("python3 compare.py");
    let report = String::from_utf8_lossy(&compare.stdout).into_owned();
    println!("[{label}]\n{report}");
    Verdict {
        equal: compare.status.success(),
        report,
    }
}

/// Dumps database `db` and compares it with `golden-get.json`; prints the report under `label`.
pub fn dump_and_compare(golden: &Path, db: &str, label: &str) -> Verdict {
    let cand = std::env::temp_dir().join(format!("{db}-{label}.json"));
    dump(golden, db, None, &cand);
    let verdict = compare(golden, &golden.join("golden-get.json"), &cand, label);
    let _ = std::fs::remove_file(&cand);
    verdict
}
