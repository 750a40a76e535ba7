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

/// A TLS connection to node 1's REST port with the admin certificate.
async fn rest_connection(h: &Harness) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (cert, key) = h.pki.admin_files();
    let mut tls = (*client_tls(&h.pki.dir.join("bundle.pem"), &cert, &key)).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(h.node(1).listen.rest).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends `start`, then one byte of `dribble` every 500 ms, until the node answers or
/// closes; returns how long after `start` that was and what it answered. Gives up at
/// `give_up` (the node never cut it off).
async fn dribble(
    h: &Harness,
    start: &[u8],
    dribble: &[u8],
    give_up: Duration,
) -> (Duration, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = tokio::io::split(rest_connection(h).await);
    write.write_all(start).await.unwrap();
    let started = Instant::now();
    let writer = async move {
        for byte in dribble.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let reader = async {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::select! {
        answer = reader => (started.elapsed(), answer),
        () = writer => unreachable!(),
        () = tokio::time::sleep(give_up) => panic!("not cut off within {give_up:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_and_bodies_are_cut_off_and_the_node_serves_on() {
    use isthmus_federation::rest::BODY_DEADLINE;
    use isthmus_federation::rest::serve::HEAD_TIMEOUT;
    init_crypto();
    let h = Harness::new(1).await;
    let slack = Duration::from_secs(5);
    // A head that never ends: a header line every few seconds.
    let head = dribble(
        &h,
        b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\n",
        b"x-slow: 1\r\n",
        HEAD_TIMEOUT + slack,
    );
    // A whole head, then a body of 100 declared bytes sent one a half second.
    let body = dribble(
        &h,
        b"PUT /v1/policies/slow HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
        b" ",
        BODY_DEADLINE + slack,
    );
    let ((head_after, head_answer), (body_after, body_answer)) = tokio::join!(head, body);
    println!("slow head cut off after {head_after:?}; slow body answered after {body_after:?}");
    assert!(
        head_after >= HEAD_TIMEOUT - Duration::from_secs(1),
        "cut off before the head timeout: {head_after:?} {head_answer:?}"
    );
    assert!(
        body_after >= BODY_DEADLINE - Duration::from_secs(1),
        "answered before the body deadline: {body_after:?} {body_answer:?}"
    );
    assert!(
        body_answer.starts_with("HTTP/1.1 400") && body_answer.contains("\"field\":\"body\""),
        "a slow body is refused, naming the body: {body_answer:?}"
    );
    let code = tokio::task::block_in_place(|| curl(&h, &[], "/v1/status"));
    assert_eq!(code, 200, "the node serves on");
    h.shutdown().await;
}
