//! Abuse of a node's listeners by clients that hold no credential or misbehave with
//! one: idle sockets that never start their TLS handshake must not lock real clients
//! (or peers) out of any port, and a request body over the limit is refused with 413
//! before it is read whole, the node still serving.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use isthmus_federation_api::proto;
use rustls_pki_types::ServerName;
use support::*;
use tokio::net::TcpStream;

/// More idle sockets than a listener has handshake slots (256).
const IDLE: usize = 300;
/// How long a real client may take with the idle sockets open (it took the 10 s
/// handshake timeout, over and over, when new connections waited for a free slot).
const BOUND: Duration = Duration::from_secs(3);

async fn idle_sockets(addr: SocketAddr) -> Vec<TcpStream> {
    let mut sockets = Vec::new();
    for _ in 0..IDLE {
        sockets.push(TcpStream::connect(addr).await.unwrap());
    }
    sockets
}

/// `curl` with the admin certificate: the HTTP status (0 with curl's complaint printed
/// when there was none).
fn curl(h: &Harness, args: &[&str], path: &str) -> u16 {
    let port = h.node(1).listen.rest.port();
    let dir = &h.pki.dir;
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
        .arg(BOUND.as_secs().to_string())
        .arg("--cacert")
        .arg(dir.join("bundle.pem"))
        .arg("--cert")
        .arg(dir.join("admin.cert.pem"))
        .arg("--key")
        .arg(dir.join("admin.key.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args(args)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    if !output.status.success() {
        println!("curl: {}", String::from_utf8_lossy(&output.stderr));
    }
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_lock_clients_or_peers_out() {
    init_crypto();
    let h = Harness::new(1).await;
    h.pki.admin_files();
    let listen = h.node(1).listen;

    // The admin API over gRPC.
    let _idle = idle_sockets(listen.admin).await;
    let started = Instant::now();
    let status = tokio::time::timeout(
        BOUND,
        h.client(1).get_status(proto::StatusRequest::default()),
    )
    .await
    .expect("the admin API answers with 300 idle sockets open")
    .unwrap();
    assert_eq!(status.into_inner().node_id, 1);
    println!(
        "gRPC status with {IDLE} idle sockets: {:?}",
        started.elapsed()
    );

    // The REST API.
    let _idle = idle_sockets(listen.rest).await;
    let started = Instant::now();
    let code = tokio::task::block_in_place(|| curl(&h, &[], "/v1/status"));
    assert_eq!(code, 200, "REST answers with 300 idle sockets open");
    println!(
        "REST status with {IDLE} idle sockets: {:?}",
        started.elapsed()
    );

    // The Raft port: a peer's handshake completes.
    let _idle = idle_sockets(listen.raft).await;
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(h.node_client_tls("node-2"));
    let handshake = tokio::time::timeout(BOUND, async {
        let tcp = TcpStream::connect(listen.raft).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    })
    .await
    .expect("a peer's handshake completes with 300 idle sockets open");
    handshake.unwrap();
    println!(
        "Raft handshake with {IDLE} idle sockets: {:?}",
        started.elapsed()
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_and_the_node_serves_on() {
    init_crypto();
    let h = Harness::new(1).await;
    h.pki.admin_files();
    let body = h.pki.dir.join("big.json");
    // Valid JSON, two MiB of it: the limit is 1 MiB.
    let big = format!(
        "{{\"gateways\":[],\"locality\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    std::fs::write(&body, big).unwrap();
    let data = format!("@{}", body.display());
    // curl sends `Expect: 100-continue` for a body this size: the 413 must come before
    // any of it is asked for. And without the header, a client sending right away.
    for expect in ["Expect: 100-continue", "Expect:"] {
        let code = tokio::task::block_in_place(|| {
            curl(
                &h,
                &[
                    "-X",
                    "PUT",
                    "-H",
                    "content-type: application/json",
                    "-H",
                    expect,
                    "--data-binary",
                    &data,
                ],
                "/v1/clusters/big",
            )
        });
        assert_eq!(code, 413, "with {expect:?}");
    }
    let code = tokio::task::block_in_place(|| curl(&h, &[], "/v1/clusters/big"));
    assert_eq!(code, 404, "nothing was written");
    let code = tokio::task::block_in_place(|| curl(&h, &[], "/v1/status"));
    assert_eq!(code, 200);
    h.shutdown().await;
}
