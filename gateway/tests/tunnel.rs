//! The east-west tunnel end to end in one process: two gateways on loopback port 0 and
//! real TCP servers behind them.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_cross_both_ways_and_half_close_works() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let addr = pair.import_addr("echo");
    // round_trip half-closes its write side and still reads the whole reply.
    let reply = tokio::time::timeout(BOUND, round_trip(addr, b"hello from east"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"hello from east");

    // Interleaved: reply bytes arrive while the client keeps its write side open.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for i in 0..20u8 {
        tcp.write_all(&[i; 100]).await.unwrap();
        let mut back = [0u8; 100];
        tcp.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [i; 100]);
    }
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    let east = scrape(&pair.east).await;
    let west = scrape(&pair.west).await;
    for text in [&east, &west] {
        assert!(text.contains("security=\"mutual_tls\""), "{text}");
    }
    let labels = [
        "direction=\"outbound\"",
        "destination_service=\"echo.demo\"",
    ];
    assert!(
        metric(&east, "isthmus_gateway_connections_opened_total", &labels) >= 2.0,
        "{east}"
    );
    let inbound = ["direction=\"inbound\"", "source_cluster=\"east\""];
    assert!(
        metric(&west, "isthmus_gateway_connections_opened_total", &inbound) >= 2.0,
        "{west}"
    );
    let request = ["direction=\"outbound\"", "flow=\"request\""];
    assert!(
        metric(&east, "isthmus_gateway_bytes_total", &request) >= 2015.0,
        "{east}"
    );
    assert!(
        metric(
            &east,
            "isthmus_gateway_stream_open_seconds_count",
            &["peer_cluster=\"west\""]
        ) >= 2.0,
        "{east}"
    );

    // The gauges of live state: each side sees the other connected; every kind of
    // certificate in use expires in the future, the leaf first; one active root.
    let connected = |text: &str, peer: &str| {
        metric(
            text,
            "isthmus_gateway_peer_connected",
            &[&format!("peer_cluster=\"{peer}\"")],
        )
    };
    assert_eq!(connected(&east, "west"), 1.0, "{east}");
    assert_eq!(connected(&west, "east"), 1.0, "{west}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = |kind: &str| {
        metric(
            &east,
            "isthmus_gateway_certificate_not_after_seconds",
            &[&format!("kind=\"{kind}\"")],
        )
    };
    let (leaf, intermediate, root) = (expiry("leaf"), expiry("intermediate"), expiry("root"));
    assert!(
        now < leaf && leaf <= intermediate && intermediate <= root,
        "{east}"
    );
    let roots = |state: &str| {
        metric(
            &east,
            "isthmus_gateway_trust_bundle_roots",
            &[&format!("state=\"{state}\"")],
        )
    };
    assert_eq!((roots("active"), roots("retired")), (1.0, 0.0), "{east}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections_each_get_their_own_bytes() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let addr = pair.import_addr("echo");
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        tasks.push(tokio::spawn(async move {
            let payload: Vec<u8> = (0..10_000u32)
                .map(|j| (i.wrapping_mul(31) ^ j) as u8)
                .collect();
            let reply = round_trip(addr, &payload).await.unwrap();
            assert_eq!(reply, payload, "connection {i}");
        }));
    }
    for task in tasks {
        tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    }
    // One QUIC connection carries them all.
    let east = scrape(&pair.east).await;
    assert_eq!(
        metric(
            &east,
            "isthmus_gateway_connections_opened_total",
            &["outbound"]
        ),
        200.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transfer_arrives_intact() {
    // 1 GiB of seeded pseudo-random bytes, echoed back, hashed on both sides.
    let total: u64 = 1 << 30;
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let tcp = TcpStream::connect(pair.import_addr("echo")).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut chunk = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            for word in chunk.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            digest.update(&chunk);
            wr.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        wr.shutdown().await.unwrap();
        digest.finish()
    });
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut received = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = Duration::from_secs(600);
    tokio::time::timeout(deadline, async {
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            received += n as u64;
        }
    })
    .await
    .expect("transfer stalled");
    let sent = writer.await.unwrap();
    assert_eq!(received, total);
    assert_eq!(digest.finish().as_ref(), sent.as_ref(), "checksum differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_service_closes_the_client_promptly_and_is_counted() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let started = Instant::now();
    let result = tokio::time::timeout(BOUND, round_trip(pair.import_addr("nothing"), b"hi"))
        .await
        .unwrap();
    match result {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(reply) => assert!(reply.is_empty(), "got {reply:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let east = scrape(&pair.east).await;
    assert_eq!(
        metric(
            &east,
            "isthmus_gateway_stream_refusals_total",
            &["outbound", "status=\"unknown_service\""]
        ),
        1.0,
        "{east}"
    );
    let west = scrape(&pair.west).await;
    assert_eq!(
        metric(
            &west,
            "isthmus_gateway_stream_refusals_total",
            &[
                "inbound",
                "status=\"unknown_service\"",
                "destination_service=\"unknown\""
            ]
        ),
        1.0,
        "{west}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_is_skipped_and_ejected() {
    let (echo, _server) = echo_server().await;
    let down = closed_port().await;
    let pair = Pair::start(vec![down, echo]).await;
    let addr = pair.import_addr("echo");
    for i in 0..6u8 {
        let reply = tokio::time::timeout(BOUND, round_trip(addr, &[i; 10]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, [i; 10], "attempt {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_endpoints_down_means_no_healthy_endpoint() {
    let pair = Pair::start(vec![closed_port().await, closed_port().await]).await;
    let addr = pair.import_addr("echo");
    for _ in 0..3 {
        let result = tokio::time::timeout(BOUND, round_trip(addr, b"x"))
            .await
            .unwrap();
        assert!(result.is_err() || result.unwrap().is_empty());
    }
    let west = scrape(&pair.west).await;
    assert_eq!(
        metric(
            &west,
            "isthmus_gateway_stream_refusals_total",
            &["status=\"no_healthy_endpoint\""]
        ),
        3.0,
        "{west}"
    );
    let east = scrape(&pair.east).await;
    assert_eq!(
        metric(
            &east,
            "isthmus_gateway_stream_refusals_total",
            &["outbound", "status=\"no_healthy_endpoint\""]
        ),
        3.0,
        "{east}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_from_another_root_is_refused() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    // The impostor has its own root but also trusts the real one, so that the handshake
    // gets as far as west checking the impostor's certificate.
    let impostor = pki(&["east"]);
    let mut trusting = impostor.bundle().unwrap();
    trusting.add_root(pair.pki.root.cert().clone()).unwrap();
    let leaf = impostor.leaf("east", "cluster/east/gateway/gw").unwrap();
    let identity = isthmus_gateway::identity::GatewayIdentity::new(
        trusting,
        leaf.chain.clone(),
        leaf.key_der(),
        "east",
        std::time::SystemTime::now(),
    )
    .unwrap();
    let mut cfg = config("east");
    cfg.peers = vec![peer("west", pair.west.quic_addr())];
    cfg.imports = vec![import("demo", "echo", "west", 8080)];
    let fake =
        isthmus_gateway::Gateway::start_with_identity(cfg, identity, std::path::Path::new("."))
            .await
            .unwrap();
    let result = tokio::time::timeout(BOUND, round_trip(fake.addresses().imports[0].1, b"x"))
        .await
        .unwrap();
    assert!(result.is_err() || result.unwrap().is_empty());
    let west = &pair.west;
    eventually("west to count the refusal", || async {
        let text = scrape(west).await;
        // Attributed to the cluster the certificate claims, a peer of west's.
        metric(
            &text,
            "isthmus_gateway_handshake_failures_total",
            &[
                "side=\"accept\"",
                "peer_cluster=\"east\"",
                "reason=\"unknown_root\"",
            ],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            &scrape(west).await,
            "isthmus_gateway_connections_opened_total",
            &[]
        ),
        0.0
    );

    // A gateway of the other root that does not trust ours is refused by its own side.
    let plain = pki(&["east"]);
    let mut cfg = config("east");
    cfg.peers = vec![peer("west", pair.west.quic_addr())];
    cfg.imports = vec![import("demo", "echo", "west", 8080)];
    let lone = isthmus_gateway::Gateway::start_with_identity(
        cfg,
        plain.gateway_identity("east").unwrap(),
        std::path::Path::new("."),
    )
    .await
    .unwrap();
    let result = tokio::time::timeout(BOUND, round_trip(lone.addresses().imports[0].1, b"x"))
        .await
        .unwrap();
    assert!(result.is_err() || result.unwrap().is_empty());
    let text = scrape(&lone).await;
    assert!(
        metric(
            &text,
            "isthmus_gateway_handshake_failures_total",
            &[
                "side=\"dial\"",
                "peer_cluster=\"west\"",
                "reason=\"unknown_root\""
            ]
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_succeed_after_the_peer_restarts() {
    let (echo, _server) = echo_server().await;
    let pki = pki(&["east", "west"]);
    let mut west_config = west_config(vec![echo]);
    let west = isthmus_gateway::Gateway::start_with_identity(
        west_config.clone(),
        pki.gateway_identity("west").unwrap(),
        std::path::Path::new("."),
    )
    .await
    .unwrap();
    let west_addr = west.quic_addr();
    let east = isthmus_gateway::Gateway::start_with_identity(
        east_config(west_addr),
        pki.gateway_identity("east").unwrap(),
        std::path::Path::new("."),
    )
    .await
    .unwrap();
    let addr = east.addresses().imports[0].1;
    assert_eq!(round_trip(addr, b"before").await.unwrap(), b"before");

    west.abort().await;
    west_config.listen.quic = west_addr;
    // The old endpoint's socket is released as its driver task ends; a new process
    // would not wait, an in-process restart waits for the port (bounded).
    let deadline = Instant::now() + BOUND;
    let west = loop {
        match isthmus_gateway::Gateway::start_with_identity(
            west_config.clone(),
            pki.gateway_identity("west").unwrap(),
            std::path::Path::new("."),
        )
        .await
        {
            Ok(gateway) => break gateway,
            Err(e) => {
                assert!(Instant::now() < deadline, "the QUIC port stayed busy: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(west.quic_addr(), west_addr);
    // The first connection may meet the stale QUIC connection; the gateway retries on a
    // fresh one, so every connection succeeds.
    for i in 0..5u8 {
        let reply = tokio::time::timeout(BOUND, round_trip(addr, &[i; 3]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, [i; 3], "connection {i} after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_live_connections_finish_and_refuses_new_ones() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let addr = pair.import_addr("echo");
    let mut live = TcpStream::connect(addr).await.unwrap();
    live.write_all(b"before drain").await.unwrap();
    let mut buf = [0u8; 12];
    live.read_exact(&mut buf).await.unwrap();
    eventually("the live connection is tracked", || async {
        pair.east.live_connections() == 1
    })
    .await;

    let Pair { east, west, .. } = pair;
    let drain = tokio::spawn(east.drain(Duration::from_secs(20)));
    // New connections are refused once the listener is gone.
    eventually("the listener to close", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    // The live one still works, then ends on its own.
    live.write_all(b"during drain").await.unwrap();
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during drain");
    live.shutdown().await.unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).await.unwrap();
    let report = tokio::time::timeout(BOUND, drain).await.unwrap().unwrap();
    assert!(report.completed, "{report:?}");
    assert_eq!(report.cut, 0);
    west.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_cuts_what_is_still_open_at_the_deadline() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let mut live = TcpStream::connect(pair.import_addr("echo")).await.unwrap();
    live.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    live.read_exact(&mut one).await.unwrap();
    let report = pair.east.drain(Duration::from_millis(200)).await;
    assert!(!report.completed);
    assert_eq!(report.cut, 1);
    // The cut connection is reset, not left hanging.
    let outcome = tokio::time::timeout(BOUND, live.read(&mut one))
        .await
        .expect("cut connection hangs");
    assert!(matches!(outcome, Err(_) | Ok(0)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_receiver_refuses_new_streams_fast_and_keeps_live_ones() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start(vec![echo]).await;
    let addr = pair.import_addr("echo");
    let mut live = TcpStream::connect(addr).await.unwrap();
    live.write_all(b"live").await.unwrap();
    let mut four = [0u8; 4];
    live.read_exact(&mut four).await.unwrap();

    let Pair { east, west, .. } = pair;
    let drain = tokio::spawn(west.drain(Duration::from_secs(20)));
    let started = Instant::now();
    eventually("east's new connections to be refused", || async {
        round_trip(addr, b"new").await.is_err()
            || matches!(round_trip(addr, b"new").await, Ok(r) if r.is_empty())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refusal took {:?}",
        started.elapsed()
    );
    let text = scrape(&east).await;
    assert!(
        metric(
            &text,
            "isthmus_gateway_stream_refusals_total",
            &["outbound", "status=\"error\""]
        ) >= 1.0,
        "{text}"
    );
    // The live tunnel still carries bytes, then ends cleanly.
    live.write_all(b"more").await.unwrap();
    live.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"more");
    live.shutdown().await.unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).await.unwrap();
    let report = tokio::time::timeout(BOUND, drain).await.unwrap().unwrap();
    assert!(report.completed, "{report:?}");
    east.abort().await;
}

/// A server that accepts, reads what arrives, then resets the connection.
async fn resetting_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 5];
                let _ = tcp.read_exact(&mut buf).await;
                let _ = tcp.set_zero_linger();
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_crosses_the_tunnel_as_a_reset() {
    // Service side resets: the client sees a reset, not a clean end.
    let pair = Pair::start(vec![resetting_server().await]).await;
    let mut tcp = TcpStream::connect(pair.import_addr("echo")).await.unwrap();
    tcp.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let outcome = tokio::time::timeout(BOUND, tcp.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        outcome.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_reaches_the_service_as_a_reset() {
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let backend = listener.local_addr().unwrap();
    let pair = Pair::start(vec![backend]).await;
    let mut client = TcpStream::connect(pair.import_addr("echo")).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    let (mut service, _) = tokio::time::timeout(BOUND, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 4];
    service.read_exact(&mut buf).await.unwrap();
    client.set_zero_linger().unwrap();
    drop(client);
    let outcome = tokio::time::timeout(BOUND, service.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        outcome.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (echo, _server) = echo_server().await;
    let pair = Pair::start_with(vec![echo], |east| {
        east.timeouts.idle = Duration::from_secs(1)
    })
    .await;
    let east = &pair.east;
    let mut tcp = TcpStream::connect(east.addresses().imports[0].1)
        .await
        .unwrap();
    tcp.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    tcp.read_exact(&mut one).await.unwrap();
    // Then silence: the gateway closes it (with a reset) once the idle timeout passes.
    let outcome = tokio::time::timeout(BOUND, tcp.read(&mut one))
        .await
        .expect("idle connection kept open");
    assert!(matches!(outcome, Err(_) | Ok(0)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_stops_reading_slows_the_client_down() {
    // The service accepts but never reads: what the client can write is bounded by
    // socket buffers and QUIC flow-control windows, not by gateway memory.
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let backend = listener.local_addr().unwrap();
    let pair = Pair::start(vec![backend]).await;
    let mut client = TcpStream::connect(pair.import_addr("echo")).await.unwrap();
    let (_service, _) = tokio::time::timeout(BOUND, async {
        client.write_all(b"open").await.unwrap();
        listener.accept().await
    })
    .await
    .unwrap()
    .unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0usize;
    let stalled = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            client.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    })
    .await;
    assert!(stalled.is_err(), "the writes never blocked");
    assert!(
        written < 64 << 20,
        "{written} bytes were taken in with nobody reading"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_bind_names_the_listener_and_lets_go_of_the_rest() {
    // The import binds first, on an address no other test uses; the SNI listener's
    // address is taken, so the start fails after the import is already listening.
    let taken = tokio::net::TcpListener::bind("127.201.7.2:0")
        .await
        .unwrap();
    let import_addr: std::net::SocketAddr = "127.201.7.1:18080".parse().unwrap();
    let mut cfg = config("east");
    cfg.peers = vec![peer("west", "127.0.0.1:9".parse().unwrap())];
    cfg.imports = vec![isthmus_gateway::config::ImportEntry {
        listen: import_addr,
        ..import("demo", "echo", "west", 8080)
    }];
    cfg.listen.sni = Some(taken.local_addr().unwrap());
    let pki = pki(&["east"]);
    let err = isthmus_gateway::Gateway::start_with_identity(
        cfg,
        pki.gateway_identity("east").unwrap(),
        std::path::Path::new("."),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, isthmus_gateway::StartError::Bind { what, .. } if what == "listen.sni"),
        "{text}"
    );
    assert!(
        text.contains(&taken.local_addr().unwrap().to_string()),
        "{text}"
    );
    // The import's listener is released: its address can be bound again.
    eventually("the import's port to be released", || async {
        tokio::net::TcpListener::bind(import_addr).await.is_ok()
    })
    .await;
}
