//! In-process harness for gateway tests: a CA, gateways on port 0, and real TCP servers.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use isthmus_gateway::Gateway;
use isthmus_gateway::balancer::{OutlierPolicy, Policy};
use isthmus_gateway::config::{
    Export, ExportPort, GatewayConfig, ImportEntry, ListenSection, PeerEntry, Timeouts,
};
use isthmus_testkit::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const DAY: Duration = Duration::from_secs(86_400);
pub const BOUND: Duration = Duration::from_secs(30);

/// The tests' trust domain, `mesh.example`, with intermediates for `clusters`.
pub fn pki(clusters: &[&str]) -> TestPki {
    TestPki::new("mesh.example", clusters).unwrap()
}

/// A gateway config on loopback port 0 with short timeouts.
pub fn config(cluster: &str) -> GatewayConfig {
    GatewayConfig {
        cluster: cluster.into(),
        tls: None,
        listen: ListenSection {
            quic: loopback(),
            metrics: Some(loopback()),
            sni: None,
        },
        peers: vec![],
        exports: vec![],
        imports: vec![],
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            stream_open: Duration::from_secs(3),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(5),
        },
        outlier: OutlierPolicy {
            consecutive_failures: 2,
            ejection: Duration::from_secs(30),
        },
        worker_threads: None,
        federation: None,
        dns: None,
        ingress: None,
        egress: None,
        access_log: None,
        tracing: None,
        workload_api: None,
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn export(namespace: &str, name: &str, port: u16, endpoints: Vec<SocketAddr>) -> Export {
    Export {
        namespace: namespace.into(),
        name: name.into(),
        policy: Policy::RoundRobin,
        identity: Default::default(),
        ports: vec![ExportPort {
            port,
            endpoints,
            app_protocol: Default::default(),
        }],
    }
}

pub fn import(namespace: &str, name: &str, cluster: &str, port: u16) -> ImportEntry {
    ImportEntry {
        namespace: namespace.into(),
        name: name.into(),
        cluster: cluster.into(),
        port,
        listen: loopback(),
    }
}

pub fn peer(cluster: &str, address: SocketAddr) -> PeerEntry {
    PeerEntry {
        cluster: cluster.into(),
        address,
    }
}

/// East imports `demo/echo:8080` from west, which exports it on `endpoints`.
pub struct Pair {
    pub pki: TestPki,
    pub east: Gateway,
    pub west: Gateway,
}

/// West exports `demo/echo:8080` on `endpoints`; east is its peer (west never dials it,
/// so its address is a placeholder).
pub fn west_config(endpoints: Vec<SocketAddr>) -> GatewayConfig {
    let mut config = config("west");
    config.exports = vec![export("demo", "echo", 8080, endpoints)];
    config.peers = vec![peer("east", "127.0.0.1:9".parse().unwrap())];
    config
}

/// East imports `demo/echo:8080` (and the unexported `demo/nothing:8080`) from west.
pub fn east_config(west: SocketAddr) -> GatewayConfig {
    let mut config = config("east");
    config.peers = vec![peer("west", west)];
    config.imports = vec![
        import("demo", "echo", "west", 8080),
        import("demo", "nothing", "west", 8080),
    ];
    config
}

impl Pair {
    pub async fn start(endpoints: Vec<SocketAddr>) -> Self {
        Self::start_with(endpoints, |_| {}).await
    }

    /// Like [`Pair::start`], with `tweak` applied to east's config.
    pub async fn start_with(
        endpoints: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        Self::start_tweaked(endpoints, |_| {}, tweak).await
    }

    /// Like [`Pair::start`], with `west_tweak` and `east_tweak` applied to the configs.
    pub async fn start_tweaked(
        endpoints: Vec<SocketAddr>,
        west_tweak: impl FnOnce(&mut GatewayConfig),
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let pki = pki(&["east", "west"]);
        let mut west_config = west_config(endpoints);
        west_tweak(&mut west_config);
        let west = isthmus_gateway::Gateway::start_with_identity(
            west_config,
            pki.gateway_identity("west").unwrap(),
            std::path::Path::new("."),
        )
        .await
        .unwrap();
        let mut east_config = east_config(west.quic_addr());
        tweak(&mut east_config);
        let east = isthmus_gateway::Gateway::start_with_identity(
            east_config,
            pki.gateway_identity("east").unwrap(),
            std::path::Path::new("."),
        )
        .await
        .unwrap();
        Self { pki, east, west }
    }

    /// The local address of east's import of `name`.
    pub fn import_addr(&self, name: &str) -> SocketAddr {
        self.east
            .addresses()
            .imports
            .iter()
            .find(|(i, _)| i.name == name)
            .unwrap()
            .1
    }
}

/// A TCP echo server: echoes until the client half-closes, then half-closes too.
pub async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// An address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    listener.local_addr().unwrap()
}

/// Sends `payload`, half-closes, and reads the reply to the end.
pub async fn round_trip(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(payload).await?;
    tcp.shutdown().await?;
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await?;
    Ok(reply)
}

/// Fetches `/metrics` of a gateway as text.
pub async fn scrape(gateway: &Gateway) -> String {
    let addr = gateway.addresses().metrics.unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

/// The value of the first metric line that starts with `prefix` and contains every one
/// of `labels`.
pub fn metric(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits, with a bound, until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut pause = Duration::from_millis(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A gateway claiming to be `claims`'s gateway, with a certificate from a root of its
/// own (trusting `mesh_root` too, so that only the other side refuses), that has dialled
/// `peer` (cluster, QUIC address) through its import of `demo/echo`: it and the
/// connection that made it dial (keep it open while the dial should go on).
pub async fn impostor(
    mesh_root: &isthmus_ca::Authority,
    claims: &str,
    peer: (&str, SocketAddr),
) -> (Gateway, TcpStream) {
    let pki = TestPki::new("dev.isthmus", &[claims]).unwrap();
    let mut trusting = pki.bundle().unwrap();
    trusting.add_root(mesh_root.cert().clone()).unwrap();
    let leaf = pki
        .leaf(claims, &format!("cluster/{claims}/gateway/ew"))
        .unwrap();
    let identity = isthmus_gateway::identity::GatewayIdentity::new(
        trusting,
        leaf.chain.clone(),
        leaf.key_der(),
        claims,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let mut config = config(claims);
    config.peers = vec![self::peer(peer.0, peer.1)];
    config.imports = vec![import("demo", "echo", peer.0, 8080)];
    let gateway = Gateway::start_with_identity(config, identity, std::path::Path::new("."))
        .await
        .unwrap();
    let mut tcp = TcpStream::connect(gateway.addresses().imports[0].1)
        .await
        .unwrap();
    let _ = tcp.write_all(b"x").await;
    (gateway, tcp)
}

/// The addresses `dig` gets for `name` from the DNS server at `dns` (`+short`).
pub async fn dig(dns: SocketAddr, name: &str) -> String {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("dig")
            .args([&format!("@{}", dns.ip()), "-p", &dns.port().to_string()])
            .args(["+tries=1", "+time=2", "+short", &name])
            .output()
            .expect("dig (dnsutils) is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .await
    .unwrap()
}
