//! A peer gateway that floods a gateway with stream opens (a valid certificate of a
//! peer cluster, streams that never finish their header) is bounded: it gets at most
//! the connection's stream limit open at once, other traffic through the same gateway
//! goes on meanwhile, and the gateway gives up on every stalled header after its
//! stream-open timeout (refused and counted). The flooder's own halves of those
//! streams stay its to close, so its connection stays at the limit: QUIC gives the
//! credit back only when both sides are done.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::SpiffeVerifier;
use isthmus_ca::{SharedBundle, TrustBundle};
use isthmus_config::{Format, parse_str};
use isthmus_gateway::Gateway;
use isthmus_gateway::config::GatewayConfigFile;
use isthmus_testkit::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gateway's limit of concurrent streams per peer connection.
const STREAM_LIMIT: usize = 16_384;
/// How long an open that gets no credit counts as blocked.
const BLOCKED: Duration = Duration::from_secs(1);

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn gateway(dir: &Path, pki: &TestPki, cluster: &str, body: &str) -> Gateway {
    let id = format!("spiffe://mesh.example/cluster/{cluster}/gateway/gw");
    let leaf = isthmus_testkit::pki::issue(
        pki.intermediate(cluster).unwrap(),
        &id,
        &[],
        Duration::from_secs(3600),
    )
    .unwrap();
    let chain = write(dir, &format!("{cluster}-chain.pem"), &leaf.chain_pem());
    let key = write(dir, &format!("{cluster}-key.pem"), &leaf.key_pem());
    let root = write(dir, "root.pem", &pki.root.cert_chain_pem());
    let text = format!(
        r#"{{"cluster": "{cluster}",
 "tls": {{"bundle": "{root}", "cert": "{chain}", "key": "{key}"}},
 "listen": {{"quic": "127.0.0.1:0"}},
 {body}}}"#
    );
    let config = parse_str::<GatewayConfigFile>(&text, Format::Json, &dir.join("gw.json")).unwrap();
    Gateway::start(config, dir).await.unwrap()
}

async fn echo_once(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = vec![0u8; 256];
    let n = tcp.read(&mut answer).await.map_err(|e| e.to_string())?;
    if answer[..n].starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&answer[..n]).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_stream_opens_from_one_peer_is_bounded_and_its_stalled_headers_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("mesh.example", &["east", "west"]).unwrap();
    let echo = isthmus_testkit::echo_server("west").await.unwrap();
    let west = gateway(
        dir.path(),
        &pki,
        "west",
        &format!(
            r#""peers": [{{"cluster": "east", "address": "127.0.0.1:9"}}],
 "exports": [{{"namespace": "demo", "name": "echo", "ports": [{{"port": 80, "endpoints": ["{echo}"]}}]}}]"#
        ),
    )
    .await;
    let east = gateway(
        dir.path(),
        &pki,
        "east",
        &format!(
            r#""peers": [{{"cluster": "west", "address": "{}"}}],
 "imports": [{{"namespace": "demo", "name": "echo", "cluster": "west", "port": 80, "listen": "127.0.0.1:0"}}]"#,
            west.quic_addr()
        ),
    )
    .await;
    let import = east.addresses().imports[0].1;
    tokio::time::timeout(Duration::from_secs(10), echo_once(import))
        .await
        .expect("the tunnel answers")
        .unwrap();

    // The flooder: another gateway of east, its own connection, streams that send the
    // version byte of a header and nothing more.
    let leaf = isthmus_testkit::pki::issue(
        pki.intermediate("east").unwrap(),
        "spiffe://mesh.example/cluster/east/gateway/flood",
        &[],
        Duration::from_secs(600),
    )
    .unwrap();
    let cert =
        isthmus_gateway::live_cert::LiveCert::new(leaf.chain.clone(), &leaf.key_der()).unwrap();
    let bundle =
        TrustBundle::from_pem(pki.trust_domain.clone(), &pki.root.cert_chain_pem()).unwrap();
    let verifier = SpiffeVerifier::new(SharedBundle::new(bundle), ExpectedIdentity::AnyGateway);
    let config = isthmus_gateway::quic::quic_client_config(verifier, cert).unwrap();
    let mut endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint.set_default_client_config(config);
    let connection = endpoint
        .connect(west.quic_addr(), "gateway")
        .unwrap()
        .await
        .unwrap();

    let mut held = Vec::new();
    let blocked = loop {
        match tokio::time::timeout(BLOCKED, connection.open_bi()).await {
            Ok(Ok((mut send, recv))) => {
                send.write_all(&[1]).await.unwrap();
                held.push((send, recv));
                assert!(
                    held.len() <= STREAM_LIMIT,
                    "more than {STREAM_LIMIT} streams open at once"
                );
            }
            Ok(Err(e)) => panic!("the connection failed mid-flood: {e}"),
            Err(_) => break held.len(),
        }
    };
    assert_eq!(
        blocked, STREAM_LIMIT,
        "the flood is held at the stream limit"
    );
    println!("flood: {blocked} streams open, the next one blocked");

    // Other traffic through west goes on during the flood.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), echo_once(import))
        .await
        .expect("the tunnel still answers during the flood")
        .unwrap();
    println!(
        "a tunnelled request during the flood took {:?}",
        started.elapsed()
    );

    // West gives up on each unfinished header after its stream-open timeout (5 s).
    let timed_out = || {
        west.metrics()
            .encode()
            .lines()
            .find(|l| {
                l.starts_with("isthmus_gateway_stream_refusals_total{")
                    && l.contains("direction=\"inbound\"")
                    && l.contains("status=\"error\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let waited = Instant::now();
    while timed_out() < STREAM_LIMIT as f64 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "west refused {} of the {STREAM_LIMIT} stalled streams within 30 s",
            timed_out()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "every stalled stream refused {:?} after the flood",
        waited.elapsed()
    );
    drop(held);
    connection.close(0u32.into(), b"done");
    east.drain(Duration::ZERO).await;
    west.drain(Duration::ZERO).await;
}
