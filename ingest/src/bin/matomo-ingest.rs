//! `matomo-ingest`: loads the configuration, sets up logging, binds the listener and runs
//! [`matomo_ingest::serve`] until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// mimalloc: every hit allocates its parameters, environment and entry; glibc's allocator spent
/// about a sixth of the node's CPU under load on that (see `docs/ingest.md`, "Performance").
#[global_allocator]
static GLOBAL: tier_alloc::MiMalloc = tier_alloc::MiMalloc;

/// Sets mimalloc's options before the first allocation (an ELF initialiser runs before Rust's
/// runtime, which allocates before `main`); see [`matomo_ingest::allocator`].
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = matomo_ingest::allocator::tune_before_main;

/// The Matomo ingest node: a drop-in matomo.php that enqueues hits for the workers.
#[derive(Debug, Parser)]
#[command(name = "matomo-ingest", version)]
struct Args {
    #[command(flatten)]
    common: tier_config::CommonArgs,
}

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    matomo_ingest::allocator::tune_before_main();
    let args = Args::parse();
    let config = match tier_config::load_matomo(&args.common) {
        Ok(config) => config,
        Err(tier_config::LoadError::Refused(error)) => return config_error(error),
        // MySQL unreachable: a restart may find it back.
        Err(tier_config::LoadError::Unavailable(error)) => {
            eprintln!("matomo-ingest: {error}");
            return ExitCode::FAILURE;
        }
    };
    let threads = match tier_config::worker_threads_from_env() {
        Ok(threads) => threads,
        Err(error) => return config_error(error),
    };
    if let Err(error) = tier_config::init_tracing(&config.log) {
        return config_error(error);
    }
    match run(config, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("matomo-ingest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A refused configuration: its one-line reason, and exit status 2 (which the systemd unit
/// does not restart).
fn config_error(error: tier_config::ConfigError) -> ExitCode {
    eprintln!("matomo-ingest: {error}");
    ExitCode::from(2)
}

/// Runs the node. Its connections and Redis writes run on `ingest.threads` lanes (or
/// `threads`, from `TOKIO_WORKER_THREADS`, when that is 0); start-up, the accept loop and the
/// background tasks run on this thread's own runtime.
fn run(mut config: tier_config::Config, threads: Option<usize>) -> anyhow::Result<()> {
    if config.ingest.threads == 0 {
        config.ingest.threads = threads.unwrap_or(0);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.ingest.listen)
            .await
            .map_err(|e| anyhow::anyhow!("ingest.listen = {}: {e}", config.ingest.listen))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        matomo_ingest::serve(config, listener, shutdown).await?;
        Ok(())
    })
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
