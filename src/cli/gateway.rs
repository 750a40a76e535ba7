//! `isthmus gateway run`: load and check the config and certificates, start the gateway,
//! print where it listens, and drain on SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use isthmus_gateway::config::GatewayConfigFile;
use isthmus_gateway::identity::GatewayIdentity;

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayCommand {
    /// Run a gateway from a config file (.toml or .json); see `isthmus config schema gateway`.
    Run {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
}

pub(crate) fn run(command: GatewayCommand) -> anyhow::Result<ExitCode> {
    let GatewayCommand::Run { config: path } = command;
    let config = isthmus_config::load::<GatewayConfigFile>(&path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let identity = GatewayIdentity::load(&config.tls, base, &config.cluster)?;
    let runtime = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    }
    .context("starting the async runtime")?;
    runtime.block_on(async move {
        let drain = config.timeouts.drain;
        let cluster = config.cluster.clone();
        let id = identity.id.clone();
        let gateway = isthmus_gateway::start(config, identity).await?;
        println!("  quic     {}", gateway.quic_addr);
        if let Some(addr) = gateway.metrics_addr {
            println!("  metrics  http://{addr}/metrics");
        }
        if let Some(addr) = gateway.sni_addr {
            println!("  sni      {addr}");
        }
        for (import, addr) in &gateway.imports {
            println!(
                "  import   {}/{}:{} from {} on {addr}",
                import.namespace, import.name, import.port, import.cluster
            );
        }
        println!("isthmus gateway {cluster} ({id}) ready");
        shutdown_signal().await?;
        eprintln!("draining (up to {drain:?})");
        let report = gateway.drain(drain).await;
        if report.completed {
            eprintln!("drained: every connection finished");
        } else {
            eprintln!("drain deadline passed: cut {} connection(s)", report.cut);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C")?,
    }
    Ok(())
}
