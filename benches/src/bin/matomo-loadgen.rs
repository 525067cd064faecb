//! `matomo-loadgen`: parses the command line and hands over to the library. Exit code 0 when
//! every threshold is met, 1 when one is not, 2 when the run could not be done.

use std::process::ExitCode;

use clap::Parser;
use matomo_loadgen::cli::{Cli, Command};
use matomo_loadgen::report::RunResult;
use matomo_loadgen::{pace, presets, session, validate};

fn summary(r: &RunResult) {
    let t = &r.total;
    let warmup = r.settings["load"]["warmup_secs"]
        .as_f64()
        .filter(|&w| w > 0.0)
        .map_or(String::new(), |w| format!(" after the first {w} s"));
    eprintln!(
        "accepted {} of {} offered hits ({:.1}/s), failed {}, dropped {}, late requests {}; latency{warmup} p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        t.accepted_hits, t.offered_hits, t.accepted_rate, t.failed_hits, t.dropped_hits, t.late_requests, t.latency.p50_ms, t.latency.p99_ms, t.latency.max_ms
    );
    let c = &r.reconciliation;
    let show = |v: Option<u64>| v.map_or("–".to_owned(), |v| v.to_string());
    eprintln!(
        "reconciliation ({}): accepted {}, expected rows {}, stored {}, lost {}, duplicated {}, invalid {}, unexpected {}",
        c.status, c.accepted, show(c.expected), show(c.stored), show(c.lost), show(c.duplicated), c.invalid, show(c.unexpected)
    );
    if let Some(l) = &c.lag {
        eprintln!(
            "accept-to-row lag: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; peak drain {:.0} rows/s",
            l.p50_ms, l.p99_ms, l.max_ms, r.stack.peak_drain_rate
        );
    }
    for th in r.thresholds.iter().filter(|t| !t.passed) {
        eprintln!(
            "threshold {} = {} not met (measured {:?})",
            th.name, th.limit, th.actual
        );
    }
}

async fn main_async(cli: Cli) -> anyhow::Result<bool> {
    let result = match cli.command {
        Command::Run(args) => presets::run(&args).await?,
        Command::Capacity(args) => presets::capacity(&args).await?,
        Command::BuildThenDrain(args) => presets::build_then_drain(&args).await?,
        Command::Pace(_) => unreachable!("pace runs before the multi-threaded runtime starts"),
        Command::Validate(args) => {
            let weights = if args.load.weights.is_empty() {
                vec![1; args.load.targets.len()]
            } else {
                args.load.weights.clone()
            };
            let targets = matomo_loadgen::target::parse_targets(&args.load.targets, &weights)?;
            let site = matomo_loadgen::cli::parse_sites(&args.load.visitors.sites)?[0].0;
            let mut ok = true;
            for check in validate::check_targets(&targets, args.load.mode, site).await {
                for line in &check.lines {
                    println!("{}: {line}", check.url);
                }
                ok &= check.ok;
            }
            let st = session::stack_settings(&args.stack)?;
            let (probes, pool) = session::connect_probes(&st, false).await?;
            if let Some(q) = &probes.queue {
                println!("redis: queue depths {:?}", q.depths().await?);
            }
            ok &= st.redis.is_none() || probes.queue.is_some();
            ok &= st.mysql_url.is_none() || probes.rows.is_some();
            if let Some(p) = pool {
                let _ = p.disconnect().await;
            }
            println!(
                "{}",
                if ok {
                    "validate: all checks passed"
                } else {
                    "validate: FAILED"
                }
            );
            return Ok(ok);
        }
    };
    summary(&result);
    Ok(result.passed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber_init();
    // `pace` runs on a single-threaded runtime of its own.
    if let Command::Pace(args) = &cli.command {
        return match pace::command::execute(args) {
            Ok(outcome) => {
                eprintln!("{}", pace::command::summary(&outcome, args.warmup_secs));
                // The latency covers the accepted hits only: say so in the exit code too.
                if outcome.accepted == outcome.offered {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("matomo-loadgen: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("matomo-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("matomo-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn tracing_subscriber_init() -> Result<(), tier_config::ConfigError> {
    tier_config::init_tracing(&tier_config::LogConfig {
        level: "warn".into(),
        ..Default::default()
    })
}
