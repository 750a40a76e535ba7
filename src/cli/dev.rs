//! `isthmus dev`: a whole mesh on this machine, in one process, on loopback: a root CA,
//! a 3-node federation, clusters east and west enrolled with join tokens, an east-west
//! gateway each (east with DNS), and an HTTP echo service that west exports. The files it
//! writes (configs, certificates, tokens) are the same an operator would write, so the
//! printed commands work against it. Ctrl-C drains and stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use isthmus_ca::{Authority, KeyAlgorithm, LeafRequest, SpiffeId, TrustDomain};
use isthmus_federation::command::{Command, Expect};
use isthmus_federation::config::{
    Enrollment, FederationConfig, FederationListen, FederationTls, RaftTiming,
};
use isthmus_federation::model::TrustBundleDoc;
use isthmus_federation::node::{NodeOptions, RunningNode};
use isthmus_gateway::config::GatewayConfigFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: Duration = Duration::from_secs(86_400);
const TRUST_DOMAIN: &str = "dev.isthmus";
const ADMIN_ID: &str = "spiffe://dev.isthmus/cluster/ops/ns/admin/sa/dev";

/// `isthmus dev` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Keep state here instead of a temporary directory (removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Lifetime of gateway certificates (renewed at about half of it).
    #[arg(long, default_value = "1h")]
    leaf_lifetime: isthmus_config::HumanDuration,
}

fn step(n: usize, what: &str) {
    eprintln!("[{n}/6] {what}");
}

pub(crate) fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(dev(args))
}

async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("--data-dir {}", d.display()))?;
            std::fs::canonicalize(d)?
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    if dir
        .join("east")
        .join("state")
        .join("enrollment.json")
        .exists()
    {
        anyhow::bail!(
            "--data-dir {} holds a previous dev mesh; use an empty directory",
            dir.display()
        );
    }

    step(1, "root CA and certificates");
    let td = TrustDomain::new(TRUST_DOMAIN)?;
    let now = SystemTime::now();
    let root = Authority::new_root(&td, KeyAlgorithm::EcdsaP256, 365 * DAY, now)?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| path.display().to_string())?;
        Ok(path)
    };
    let bundle = write("bundle.pem", &root.cert_chain_pem())?;
    let root_key = write("root.key", &root.key_pem())?;
    let ops = root.new_cluster_intermediate("ops", KeyAlgorithm::EcdsaP256, 30 * DAY, now)?;
    let leaf = |ca: &Authority, id: &str, dns: bool| -> anyhow::Result<(String, String)> {
        let issued = ca.issue_leaf(
            &LeafRequest {
                id: SpiffeId::parse(id)?,
                lifetime: 7 * DAY,
                dns_names: if dns {
                    vec!["localhost".into()]
                } else {
                    vec![]
                },
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            now,
        )?;
        let chain =
            isthmus_ca::pem::certs_to_pem(std::iter::once(&issued.cert).chain(&issued.chain));
        Ok((chain, issued.key.serialize_pem()))
    };
    let (admin_cert, admin_key) = leaf(&ops, ADMIN_ID, false)?;
    let admin_cert = write("admin.pem", &admin_cert)?;
    let admin_key = write("admin.key", &admin_key)?;

    step(2, "federation: 3 nodes");
    let mut nodes: Vec<RunningNode> = Vec::new();
    for id in 1..=3u64 {
        let name = format!("node-{id}");
        let (cert, key) = leaf(&root, &format!("spiffe://{td}/federation/{name}"), true)?;
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        let config = FederationConfig {
            node_id: id,
            name: name.clone(),
            data_dir: dir.join(&name),
            listen: FederationListen {
                raft: loopback,
                admin: loopback,
                rest: loopback,
                metrics: Some(loopback),
                enroll: Some(loopback),
            },
            advertise: None,
            tls: FederationTls {
                bundle: bundle.clone(),
                cert: write(&format!("{name}.pem"), &cert)?,
                key: write(&format!("{name}.key"), &key)?,
            },
            admin_clients: vec![SpiffeId::parse(ADMIN_ID)?],
            raft: RaftTiming::default(),
            enrollment: Enrollment {
                root: Some((bundle.clone(), root_key.clone())),
                intermediate_lifetime: 30 * DAY,
                token_lifetime: Duration::from_secs(600),
            },
        };
        let node = isthmus_federation::node::start(&config, Path::new("/"), NodeOptions::default())
            .await
            .with_context(|| format!("starting {name}"))?;
        nodes.push(node);
    }
    nodes[0]
        .federation
        .init()
        .await
        .map_err(anyhow::Error::msg)?;
    for node in &nodes[1..] {
        nodes[0]
            .federation
            .add_member(node.id, node.info.clone())
            .await
            .map_err(anyhow::Error::msg)?;
    }
    nodes[0]
        .federation
        .write(Command::SetTrustBundle {
            trust_bundle: TrustBundleDoc {
                trust_domain: td.to_string(),
                roots_pem: root.cert_chain_pem(),
                retired_pem: String::new(),
                revision: 0,
            },
            expect: Expect::Any,
        })
        .await
        .map_err(anyhow::Error::msg)?;

    step(3, "sample service: HTTP echo in west");
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(serve_echo(echo, "west"));

    step(4, "clusters east and west: join tokens and gateways");
    let mut members = Vec::new();
    for (cluster, locality, range) in [
        ("west", "us-west", "127.78.0.0/16"),
        ("east", "us-east", "127.77.0.0/16"),
    ] {
        let token = nodes[0]
            .enroller
            .create_cluster(cluster, Some(locality.into()), None, SystemTime::now())
            .await
            .map_err(anyhow::Error::msg)?;
        let cdir = dir.join(cluster);
        std::fs::create_dir_all(&cdir)?;
        std::fs::write(cdir.join("join.token"), &token.token)?;
        let exports = if cluster == "west" {
            format!(
                "\n[[exports]]\nnamespace = \"demo\"\nname = \"echo\"\nports = [{{ port = 8080, endpoints = [\"{echo_addr}\"] }}]\n"
            )
        } else {
            String::new()
        };
        let dns = if cluster == "east" {
            "\n[dns]\nlisten = \"127.0.0.1:0\"\n"
        } else {
            ""
        };
        let text = format!(
            "cluster = \"{cluster}\"\n\n[listen]\nquic = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n\n[federation]\nstate_dir = \"state\"\njoin_token_file = \"join.token\"\nleaf_lifetime = \"{}\"\nimport_range = \"{range}\"\n{dns}{exports}",
            args.leaf_lifetime
        );
        let path = cdir.join("gateway.toml");
        std::fs::write(&path, text)?;
        let config = isthmus_config::load::<GatewayConfigFile>(&path)?;
        let member = isthmus_gateway::membership::start(config, &cdir)
            .await
            .with_context(|| format!("starting the gateway of {cluster}"))?;
        members.push((cluster, member));
    }

    step(5, "waiting for east to import demo/echo from west");
    let east = &members[1].1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while east.gateway.metrics().imported_services.get() < 1 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "east did not import demo/echo within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    step(6, "ready");
    let dns = east.dns_addr.context("east has no DNS")?;
    println!();
    println!("  state     {}", dir.display());
    for node in &nodes {
        println!(
            "  {}    admin {}  rest https://{}/v1/status  metrics http://{}/metrics",
            node.info.name,
            node.listen.admin,
            node.listen.rest,
            node.listen.metrics.map_or("-".into(), |m| m.to_string())
        );
    }
    for (cluster, member) in &members {
        println!(
            "  {cluster:<8}  gateway quic {}  metrics http://{}/metrics",
            member.gateway.quic_addr,
            member
                .gateway
                .metrics_addr
                .map_or("-".into(), |m| m.to_string())
        );
    }
    println!("  east dns  {dns}");
    println!();
    println!("try it:");
    println!(
        "  dig @{} -p {} +short echo.demo.svc.clusterset.local",
        dns.ip(),
        dns.port()
    );
    println!(
        "  curl http://$(dig @{} -p {} +short echo.demo.svc.clusterset.local):8080/",
        dns.ip(),
        dns.port()
    );
    println!(
        "  isthmus federation cluster list --server {} --bundle {} --cert {} --key {}",
        nodes[0].listen.admin,
        bundle.display(),
        admin_cert.display(),
        admin_key.display()
    );
    println!("isthmus dev mesh ready (Ctrl-C to stop)");

    super::gateway::shutdown_signal().await?;
    eprintln!("stopping");
    for (_, member) in members {
        member.drain(Duration::from_secs(2)).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// A tiny HTTP/1.1 server that says who answered and what was asked.
async fn serve_echo(listener: tokio::net::TcpListener, cluster: &'static str) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                match tcp.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let line = request.lines().next().unwrap_or_default().to_owned();
            let body = format!("hello from {cluster}: echo.demo answered \"{line}\"\n");
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(response.as_bytes()).await;
            let _ = tcp.shutdown().await;
        });
    }
}
