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
        let drain = config.timeouts.drain;
        let cluster = config.cluster.clone();
        let ingress = config.ingress.clone();
        let egress = config.egress.clone();
        let running = match &config.tls {
            Some(tls) => {
                let identity = GatewayIdentity::load(tls, &base, &config.cluster)?;
                Running::Alone(isthmus_gateway::start(config, identity).await?)
            }
            None => Running::Member(
                isthmus_gateway::membership::start(config, &base)
                    .await
                    .with_context(|| path.display().to_string())?,
            ),
        };
        let gateway = match &running {
            Running::Alone(g) => g,
            Running::Member(m) => {
                if let Some(addr) = m.dns_addr {
                    println!("  dns      {addr} (udp and tcp)");
                }
                &m.gateway
            }
        };
        println!("  quic     {}", gateway.quic_addr);
        if let Some(ingress) = &ingress {
            let addrs = gateway
                .start_ingress(ingress, &base)
                .await
                .with_context(|| path.display().to_string())?;
            if let Some(addr) = addrs.tls {
                println!("  ingress  {addr} (tls: {} hosts)", ingress.hosts.len());
            }
            for (addr, (_, service)) in addrs.tcp.iter().zip(&ingress.tcp) {
                println!("  ingress  {addr} (tcp to {service})");
            }
        }
        if let Some(egress) = &egress {
            let addrs = gateway
                .start_egress(egress, &base)
                .await
                .with_context(|| path.display().to_string())?;
            for (addr, listener) in addrs.iter().zip(&egress.listeners) {
                println!(
                    "  egress   {addr} ({:?} to port {}; {} allowed hosts)",
                    listener.mode,
                    listener.port,
                    egress.hosts.len()
                );
            }
        }
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
        println!("isthmus gateway {cluster} ({}) ready", gateway.id());
        shutdown_signal().await?;
        eprintln!("draining (up to {drain:?})");
        let report = match running {
            Running::Alone(g) => g.drain(drain).await,
            Running::Member(m) => m.drain(drain).await,
        };
        if report.completed {
            eprintln!("drained: every connection finished");
        } else {
            eprintln!("drain deadline passed: cut {} connection(s)", report.cut);
        }
        Ok(ExitCode::SUCCESS)
    })
}

enum Running {
    Alone(isthmus_gateway::RunningGateway),
    Member(isthmus_gateway::membership::Member),
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
