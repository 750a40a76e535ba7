//! How the datagram size limit changes one QUIC connection's bulk transfer: the gateway's
//! own QUIC configs (mutual TLS 1.3, its transport settings, its socket buffers), both
//! endpoints in this process on loopback, 256 MiB one way on one stream, once per
//! `EndpointConfig::max_udp_payload_size`. Prints MiB/s, CPU seconds per GiB (the whole
//! process: both ends), the path MTU the sender ended at, and its lost packets.
//! `cargo bench -p isthmus-gateway --bench quic_datagram [-- SIZE...]`; findings in
//! `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::SpiffeVerifier;
use isthmus_gateway::live_cert::LiveCert;
use isthmus_gateway::quic::{bind_udp, quic_client_config, quic_server_config, transport_config};

const BYTES: u64 = 256 << 20;

/// CPU time (user + system) of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn endpoint(payload: u16, server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    let key = Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]));
    let mut config = quinn::EndpointConfig::new(key);
    config.max_udp_payload_size(payload).unwrap();
    let socket = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
    if std::env::var_os("QUIC_UNBOUNDED_GSO").is_some() {
        return quinn::Endpoint::new(config, server, socket, Arc::new(quinn::TokioRuntime))
            .unwrap();
    }
    isthmus_gateway::quic::endpoint(config, server, socket).unwrap()
}

async fn transfer(payload: u16) -> String {
    let pki = isthmus_testkit::TestPki::new("mesh.example", &["east", "west"]).unwrap();
    let bundle = isthmus_ca::SharedBundle::new(pki.bundle().unwrap());
    let cert = |cluster: &str| {
        let leaf = pki
            .leaf(cluster, &format!("cluster/{cluster}/gateway/gw"))
            .unwrap();
        LiveCert::new(leaf.chain.clone(), &leaf.key_der()).unwrap()
    };
    let verifier = || SpiffeVerifier::new(bundle.clone(), ExpectedIdentity::AnyGateway);
    let server = endpoint(
        payload,
        Some(quic_server_config(verifier(), cert("west")).unwrap()),
    );
    let mut client = endpoint(payload, None);
    let mut client_config = quic_client_config(verifier(), cert("east")).unwrap();
    let mut transport = Arc::try_unwrap(transport_config()).unwrap();
    if let Some(mtu) = std::env::var("QUIC_INITIAL_MTU")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        transport.initial_mtu(mtu).mtu_discovery_config(None);
    }
    client_config.transport_config(Arc::new(transport));
    client.set_default_client_config(client_config);
    let addr = server.local_addr().unwrap();
    let receiver = tokio::spawn(async move {
        let connection = server.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let mut chunks: [Bytes; 32] = Default::default();
        let mut received = 0u64;
        while let Some(n) = recv.read_chunks(&mut chunks).await.unwrap() {
            received += chunks[..n].iter().map(|c| c.len() as u64).sum::<u64>();
        }
        send.write_all(b"K").await.unwrap();
        send.finish().unwrap();
        let _ = send.stopped().await;
        received
    });
    let connection = client.connect(addr, "gateway").unwrap().await.unwrap();
    // Let MTU discovery run before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let chunk = Bytes::from(vec![0x5au8; 64 * 1024]);
    let mut sent = 0;
    while sent < BYTES {
        send.write_chunk(chunk.clone()).await.unwrap();
        sent += chunk.len() as u64;
    }
    send.finish().unwrap();
    let mut ack = [0u8; 1];
    recv.read_exact(&mut ack).await.unwrap();
    let (elapsed, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let received = receiver.await.unwrap();
    let stats = connection.stats();
    format!(
        "{payload:>6} {:>9.0} {:>8.2} {:>8} {:>8}",
        received as f64 / f64::from(1u32 << 20) / elapsed,
        cpu / (received as f64 / f64::from(1u32 << 30)),
        stats.path.current_mtu,
        stats.path.lost_packets,
    )
}

fn main() {
    let sizes: Vec<u16> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1472, 9000, 16_000, 65_527]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("limit    MiB/s  CPU s/GiB  end MTU    lost");
    for size in sizes {
        println!("{}", runtime.block_on(transfer(size)));
    }
}
