//! `bench ingress`: HTTPS requests per second through the ingress (TLS terminated by SNI,
//! routed by path to a service of the gateway's own cluster) against nginx doing the
//! same job (TLS termination, `proxy_pass`) in front of the same backend, each driven by
//! `h2load` (Debian's nghttp2-client) over HTTP/1.1 and HTTP/2, in interleaved rounds.
//!
//! The backend is an nginx of its own answering a small body. The Isthmus gateway is this
//! binary (`isthmus gateway run`) with a static config (it keeps idle upstream
//! connections); nginx is measured twice: as configured by default (a new upstream
//! connection per request) and with upstream keep-alive (`keepalive 64`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::systems::{Proc, free_port, wait_until};

/// Options of `isthmus bench ingress`.
#[derive(Debug, Args)]
pub(crate) struct IngressArgs {
    /// Requests per measurement.
    #[arg(long, default_value_t = 30_000)]
    requests: u64,
    /// Interleaved rounds (the report shows medians).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// HTTP/1.1 client connections.
    #[arg(long, default_value_t = 32)]
    h1_clients: usize,
    /// HTTP/2 client connections (each with 16 concurrent streams).
    #[arg(long, default_value_t = 8)]
    h2_clients: usize,
    /// The gateway's tokio worker threads (`[runtime] worker_threads`; default: one per
    /// core).
    #[arg(long)]
    gateway_workers: Option<usize>,
}

const HOST: &str = "bench.example.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Isthmus,
    Nginx,
    NginxKeepalive,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Isthmus => "isthmus",
            Self::Nginx => "nginx",
            Self::NginxKeepalive => "nginx+keepalive",
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn nginx(dir: &Path, name: &str, body: &str) -> anyhow::Result<Proc> {
    let conf = dir.join(format!("{name}.conf"));
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log crit;\ndaemon off;\nevents {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n keepalive_requests 1000000;\n {body}\n}}\n",
            p = prefix.display()
        ),
    )?;
    Proc::spawn(
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf),
    )
    .context("starting nginx (apt-get install nginx)")
}

/// Runs h2load against `addr` (the URL names the host, for SNI): requests per second,
/// or an error when any request failed.
fn h2load(addr: SocketAddr, http2: bool, clients: usize, requests: u64) -> anyhow::Result<f64> {
    let mut cmd = Command::new("h2load");
    // A fixed number of requests (h2load's timed mode with warm-up stalled some
    // HTTP/2 runs); a connection idle for 5 s fails the run instead of hanging it.
    cmd.arg(format!("--connect-to={addr}"))
        .args(["-n", &requests.to_string(), "-N", "5s"])
        .args(["-c", &clients.to_string()]);
    if http2 {
        cmd.args(["-m", "16"]);
    } else {
        cmd.arg("--h1");
    }
    let out = cmd
        .arg(format!("https://{HOST}:{}/", addr.port()))
        .output()
        .context("running h2load (apt-get install nghttp2-client)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let failed = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| l.split(',').find(|p| p.trim().ends_with("failed")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no request counts from h2load: {text}"))?;
    let codes: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .map(|l| {
            l.trim_start_matches("status codes:")
                .split(',')
                .filter_map(|p| p.split_whitespace().next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        failed == 0 && codes.first() == Some(&requests),
        "{failed} failed, status codes {codes:?} of {requests} requests: {text}"
    );
    text.lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no rate from h2load: {text}"))
}

pub(crate) fn ingress(args: &IngressArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "host.key",
            "-out",
            "host.pem",
            "-subj",
            &format!("/CN={HOST}"),
            "-addext",
            &format!("subjectAltName=DNS:{HOST}"),
        ],
    )?;
    let backend = free_port()?;
    let _backend = nginx(
        d,
        "backend",
        &format!(
            "server {{ listen {backend}; location / {{ return 200 \"hello from the backend\\n\"; }} }}"
        ),
    )?;
    let (plain, keepalive, ours) = (free_port()?, free_port()?, free_port()?);
    let tls = format!(
        "ssl_certificate {d}/host.pem; ssl_certificate_key {d}/host.key; ssl_protocols TLSv1.3;",
        d = d.display()
    );
    let _proxies = nginx(
        d,
        "proxy",
        &format!(
            "upstream backend {{ server {backend}; keepalive 64; }}\n\
             server {{ listen {plain} ssl http2; server_name {HOST}; {tls} location / {{ proxy_pass http://{backend}; }} }}\n\
             server {{ listen {keepalive} ssl http2; server_name {HOST}; {tls} location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
    )?;
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"cluster = "edge"
[tls]
bundle = "ca/bundle.pem"
cert = "ca/gw/cert.pem"
key = "ca/gw/key.pem"
[listen]
quic = "127.0.0.1:0"
[[exports]]
namespace = "demo"
name = "web"
ports = [{{ port = 8080, endpoints = ["{backend}"] }}]
[ingress]
listen = "{ours}"
[[ingress.hosts]]
host = "{HOST}"
namespace = "demo"
cert = "host.pem"
key = "host.key"
routes = [{{ path_prefix = "/", service = "web.demo:8080" }}]
{runtime}"#,
            runtime = args
                .gateway_workers
                .map(|n| format!("[runtime]\nworker_threads = {n}\n"))
                .unwrap_or_default(),
        ),
    )?;
    let exe = std::env::current_exe()?;
    let isthmus = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(&exe).current_dir(d).args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "isthmus {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "bench.isthmus",
        "--out",
        "ca/root",
    ])?;
    isthmus(&[
        "ca",
        "intermediate",
        "--root-dir",
        "ca/root",
        "--cluster",
        "edge",
        "--out",
        "ca/edge",
    ])?;
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        "ca/edge",
        "--spiffe-id",
        "spiffe://bench.isthmus/cluster/edge/gateway/gw",
        "--dns",
        "localhost",
        "--ttl",
        "24h",
        "--out",
        "ca/gw",
    ])?;
    std::fs::copy(d.join("ca/gw/bundle.pem"), d.join("ca/bundle.pem"))?;
    let _gateway = Proc::spawn(
        Command::new(&exe)
            .args(["gateway", "run", "--config"])
            .arg(&config),
    )?;

    let runtime = tokio::runtime::Runtime::new()?;
    for addr in [backend, plain, keepalive, ours] {
        runtime.block_on(wait_until(
            "a listener",
            Duration::from_secs(30),
            || async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from)
            },
        ))?;
    }
    let systems = [
        (System::Isthmus, ours),
        (System::Nginx, plain),
        (System::NginxKeepalive, keepalive),
    ];
    let mut results: Vec<(System, bool, Vec<f64>)> = Vec::new();
    for http2 in [false, true] {
        for (s, _) in systems {
            results.push((s, http2, Vec::new()));
        }
    }
    let clients = |http2: bool| {
        if http2 {
            args.h2_clients
        } else {
            args.h1_clients
        }
    };
    for round in 0..args.rounds {
        for http2 in [false, true] {
            for k in 0..systems.len() {
                // Rotate the order each round, so that no system always runs first.
                let (system, addr) = systems[(k + round) % systems.len()];
                let rate =
                    h2load(addr, http2, clients(http2), args.requests).with_context(|| {
                        format!(
                            "{} over {}",
                            system.name(),
                            if http2 { "HTTP/2" } else { "HTTP/1.1" }
                        )
                    })?;
                eprintln!(
                    "round {} {:<16} {:<8} {rate:>10.0} req/s",
                    round + 1,
                    system.name(),
                    if http2 { "HTTP/2" } else { "HTTP/1.1" }
                );
                if let Some((_, _, list)) = results
                    .iter_mut()
                    .find(|(s, h, _)| *s == system && *h == http2)
                {
                    list.push(rate);
                }
            }
        }
    }
    let median = |system: System, http2: bool| {
        let mut v = results
            .iter()
            .find(|(s, h, _)| *s == system && *h == http2)
            .map(|(_, _, l)| l.clone())
            .unwrap_or_default();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "HTTPS requests per second through a TLS-terminating ingress to one backend, h2load, {} requests × {} rounds (medians)",
        args.requests, args.rounds
    );
    for http2 in [false, true] {
        let label = if http2 {
            format!("HTTP/2, {} connections × 16 streams", args.h2_clients)
        } else {
            format!("HTTP/1.1, {} connections", args.h1_clients)
        };
        let ours = median(System::Isthmus, http2);
        let plain = median(System::Nginx, http2);
        let pooled = median(System::NginxKeepalive, http2);
        println!("  {label}");
        println!("    isthmus          {ours:>10.0}");
        println!(
            "    nginx            {plain:>10.0}   isthmus/nginx           {:.2}x",
            ours / plain
        );
        println!(
            "    nginx+keepalive  {pooled:>10.0}   isthmus/nginx+keepalive {:.2}x",
            ours / pooled
        );
    }
    Ok(ExitCode::SUCCESS)
}
