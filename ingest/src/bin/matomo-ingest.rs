//! `matomo-ingest`: loads the configuration, sets up logging, binds the listener and runs
//! [`matomo_ingest::serve`] until SIGTERM or Ctrl-C.

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The Matomo ingest node: a drop-in matomo.php that enqueues hits for the workers.
#[derive(Debug, Parser)]
#[command(name = "matomo-ingest", version)]
struct Args {
    #[command(flatten)]
    common: tier_config::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("startup error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = tier_config::load(&args.common)?;
    tier_config::init_tracing(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.ingest.listen)
            .await
            .map_err(|e| anyhow::anyhow!("ingest.listen {}: {e}", config.ingest.listen))?;
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
