//! `isthmus gateway run`: load and check the config, start the gateway (its identity,
//! every listener), print where it listens, and drain on SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use isthmus_gateway::Gateway;
use isthmus_gateway::config::GatewayConfigFile;

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
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
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
        let shutdown = shutdown_signal()?;
        let drain = config.timeouts.drain;
        let cluster = config.cluster.clone();
        let (ingress, egress) = (config.ingress.clone(), config.egress.clone());
        let gateway = Gateway::start(config, &base)
            .await
            .with_context(|| path.display().to_string())?;
        let at = gateway.addresses();
        if let Some(addr) = at.dns {
            println!("  dns      {addr} (udp and tcp)");
        }
        println!("  quic     {}", gateway.quic_addr());
        if let (Some(ingress), Some(addrs)) = (&ingress, &at.ingress) {
            if let Some(addr) = addrs.tls {
                println!("  ingress  {addr} (tls: {} hosts)", ingress.hosts.len());
            }
            for (addr, (_, service)) in addrs.tcp.iter().zip(&ingress.tcp) {
                println!("  ingress  {addr} (tcp to {service})");
            }
        }
        if let Some(egress) = &egress {
            for (addr, listener) in at.egress.iter().zip(&egress.listeners) {
                println!(
                    "  egress   {addr} ({:?} to port {}; {} allowed hosts)",
                    listener.mode,
                    listener.port,
                    egress.hosts.len()
                );
            }
        }
        if let Some(addr) = at.metrics {
            println!("  metrics  http://{addr}/metrics");
        }
        if let Some(addr) = at.sni {
            println!("  sni      {addr}");
        }
        for (import, addr) in &at.imports {
            println!(
                "  import   {}/{}:{} from {} on {addr}",
                import.namespace, import.name, import.port, import.cluster
            );
        }
        // SIGHUP reopens the access log, after a log rotation moved the file away.
        let log = gateway.access_log();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                log.reopen();
            }
        });
        println!("isthmus gateway {cluster} ({}) ready", gateway.id());
        let report = gateway
            .run(async {
                shutdown.await;
                eprintln!("draining (up to {drain:?})");
            })
            .await;
        if report.completed {
            eprintln!("drained: every connection finished");
        } else {
            eprintln!("drain deadline passed: cut {} connection(s)", report.cut);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM or Ctrl-C. Listening starts here, so that a signal that comes
/// while the process is still starting is not lost.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            result = tokio::signal::ctrl_c() => {
                if let Err(e) = result {
                    eprintln!("error: listening for Ctrl-C: {e}");
                }
            }
        }
    })
}
