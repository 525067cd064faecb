//! `matomo-worker`: the queue worker pool and QueuedTracking's operator commands.
//! Parses flags, loads the configuration, sets up logging and calls the library.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use matomo_worker::{app, commands, engine};
use tokio_util::sync::CancellationToken;

/// mimalloc: the tracker allocates per request (parameters, strings, rows); glibc's allocator
/// was about a quarter of the worker's CPU in `tracker_throughput` (see `docs/compatibility.md`,
/// "Performance shape").
#[global_allocator]
static GLOBAL: tier_alloc::MiMalloc = tier_alloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "matomo-worker",
    version,
    about = "Drains QueuedTracking queues from Redis into Matomo's MySQL log tables, exactly once."
)]
struct Cli {
    #[command(flatten)]
    common: tier_config::CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the worker pool (worker.pool_size tasks) with /healthz, /readyz, /metrics on worker.listen.
    Run,
    /// Process the queues in cycles and exit (QueuedTracking's queuedtracking:process).
    Process {
        /// Only work on this queue.
        #[arg(long)]
        queue_id: Option<u16>,
        /// One pass that also takes remainders smaller than a batch without waiting, then exit.
        #[arg(long)]
        once: bool,
        /// Number of cycles; 0 loops until interrupted.
        #[arg(long, short = 'c', default_value_t = 1)]
        cycle: u64,
        /// Seconds to sleep between cycles.
        #[arg(long, short = 's', default_value_t = 1.0)]
        sleep: f64,
    },
    /// Show the queues (entries, lag, dead letters, locks), Redis memory and the drain rate, live.
    Monitor {
        /// Only show this queue.
        #[arg(long)]
        queue_id: Option<u16>,
        /// Stop after this many refreshes.
        #[arg(long)]
        iterations: Option<u64>,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// List held queue locks with their TTL; --unlock KEY removes one.
    LockStatus {
        /// The lock key to remove, e.g. QueuedTrackingLock3.
        #[arg(long)]
        unlock: Option<String>,
    },
    /// Print the next batch of each queue, decoded.
    PrintQueuedRequests {
        /// Only this queue.
        #[arg(long)]
        queue_id: Option<u16>,
        /// Entries per queue (default: queue.num_requests_to_process).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Check Redis (version, memory, eviction policy, Lua, locks, lists) and MySQL.
    Test {
        /// Do not check maxmemory settings.
        #[arg(long)]
        skip_max_memory_config_check: bool,
    },
    /// Inspect, replay or purge dead letters.
    DeadLetter {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// One line per dead letter.
    List {
        /// Only this queue.
        #[arg(long)]
        queue_id: Option<u16>,
        /// Records shown per queue.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One dead letter with its decoded entry.
    Show {
        /// The queue.
        #[arg(long)]
        queue_id: u16,
        /// Position in the dead-letter list (as `list` shows it).
        #[arg(long, default_value_t = 0)]
        index: usize,
    },
    /// Move dead letters back to the tail of their queue (after fixing their cause).
    Replay {
        /// Only this queue.
        #[arg(long)]
        queue_id: Option<u16>,
        /// At most this many per queue (default: all).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Delete dead letters.
    Purge {
        /// Only this queue.
        #[arg(long)]
        queue_id: Option<u16>,
        /// Required to purge every queue.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    matomo_worker::allocator::tune();
    // The common flags (--config, --matomo-config, --set, …) are accepted before or after the
    // subcommand: `matomo-worker run --config tier.toml` and `matomo-worker --config tier.toml run`.
    let matches = Cli::command()
        .mut_args(|arg| {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                arg
            } else {
                arg.global(true)
            }
        })
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = match tier_config::load_matomo(&cli.common) {
        Ok(config) => config,
        Err(tier_config::LoadError::Refused(e)) => {
            eprintln!("matomo-worker: {e}");
            return ExitCode::from(2);
        }
        // Operator commands that work on Redis alone (and `test`, which reports on MySQL) go
        // on without the stored settings, saying so.
        Err(tier_config::LoadError::Unavailable(e))
            if !matches!(cli.command, Command::Run | Command::Process { .. }) =>
        {
            eprintln!(
                "matomo-worker: warning: {e}; going on without QueuedTracking's stored settings"
            );
            match tier_config::load(&cli.common) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("matomo-worker: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        // MySQL unreachable: a restart may find it back.
        Err(tier_config::LoadError::Unavailable(e)) => {
            eprintln!("matomo-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let threads = match tier_config::worker_threads_from_env() {
        Ok(threads) => threads,
        Err(e) => {
            eprintln!("matomo-worker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = tier_config::init_tracing(&config.log) {
        eprintln!("matomo-worker: {e}");
        return ExitCode::from(2);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("matomo-worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("matomo-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels the token on SIGINT/SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested: finishing the batches in hand");
        t.cancel();
    });
    token
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !value.is_finite() || value < 0.0 {
        anyhow::bail!("{flag} must be a non-negative number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

async fn dispatch(command: Command, config: tier_config::Config) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Run => {
            let backends = app::connect(&config).await?;
            let summary = app::run(backends, shutdown_on_signals()).await?;
            tracing::info!(
                processed = summary.processed,
                dead_lettered = summary.dead_lettered,
                "stopped"
            );
        }
        Command::Process {
            queue_id,
            once,
            cycle,
            sleep,
        } => {
            let sleep = secs(sleep, "--sleep")?;
            commands::queue_ids(&config, queue_id)?;
            let backends = app::connect(&config).await?;
            let summary = app::process(
                backends,
                queue_id,
                once,
                cycle,
                sleep,
                shutdown_on_signals(),
            )
            .await?;
            writeln!(
                stdout,
                "processed {} entries in {} batches ({} dead-lettered, {} dropped, {} already committed)",
                summary.processed, summary.batches, summary.dead_lettered, summary.dropped, summary.already_committed
            )?;
        }
        Command::Monitor {
            queue_id,
            iterations,
            interval,
        } => {
            let interval = secs(interval, "--interval")?;
            let redis = app::connect_redis(&config).await?;
            let stop = shutdown_on_signals();
            commands::monitor::monitor(
                &redis,
                &config,
                queue_id,
                iterations,
                interval,
                stop,
                &mut stdout,
            )
            .await?;
        }
        Command::LockStatus { unlock } => {
            let redis = app::connect_redis(&config).await?;
            commands::lock_status::lock_status(
                &redis,
                &config.queue.key_prefix,
                unlock.as_deref(),
                &mut stdout,
            )
            .await?;
        }
        Command::PrintQueuedRequests { queue_id, limit } => {
            let redis = app::connect_redis(&config).await?;
            let limit = limit.unwrap_or(config.queue.num_requests_to_process);
            commands::print_queued::print_queued_requests(
                &redis,
                &config,
                queue_id,
                limit,
                &mut stdout,
            )
            .await?;
        }
        Command::Test {
            skip_max_memory_config_check,
        } => {
            let redis = app::connect_redis(&config).await?;
            let mysql = app::connect_mysql(&config).await?;
            let ok = commands::check::run_checks(
                &redis,
                Some(&mysql),
                &config,
                skip_max_memory_config_check,
                &mut stdout,
            )
            .await?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::DeadLetter { action } => {
            let redis = app::connect_redis(&config).await?;
            let dl = engine::DeadLetters::new(
                redis,
                engine::redis::Scripts::default(),
                config.queue.key_prefix.clone(),
            );
            match action {
                DeadLetterAction::List { queue_id, limit } => {
                    commands::dead_letter::list(&dl, &config, queue_id, limit, &mut stdout).await?;
                }
                DeadLetterAction::Show { queue_id, index } => {
                    commands::queue_ids(&config, Some(queue_id))?;
                    commands::dead_letter::show(&dl, queue_id, index, &mut stdout).await?;
                }
                DeadLetterAction::Replay { queue_id, count } => {
                    commands::dead_letter::replay(
                        &dl,
                        &config,
                        queue_id,
                        count.unwrap_or(usize::MAX),
                        &mut stdout,
                    )
                    .await?;
                }
                DeadLetterAction::Purge { queue_id, all } => {
                    if queue_id.is_none() && !all {
                        anyhow::bail!("dead-letter purge needs --queue-id N or --all");
                    }
                    commands::dead_letter::purge(&dl, &config, queue_id, &mut stdout).await?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
