//! The gateway's DNS server answering `dig` (Debian's dnsutils) over UDP and TCP on
//! loopback: A and SRV records for known services, NXDOMAIN for unknown names in
//! `clusterset.local`, REFUSED outside it, and changes to the table visible at once.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::process::Command;

use isthmus_gateway::dns::{DnsServer, DnsTable, ServiceRecord};
use tokio::net::{TcpListener, UdpSocket};

/// UDP and TCP on the same loopback port (retrying if TCP's is taken).
async fn sockets() -> (UdpSocket, TcpListener, u16) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp, port);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

async fn dig(port: u16, args: &[&str]) -> String {
    let mut command = Command::new("dig");
    command
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=3", "+tries=2"])
        .args(args);
    let output = tokio::task::spawn_blocking(move || {
        command
            .output()
            .expect("dig is installed (.ci/run installs dnsutils)")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "dig failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_gets_service_addresses_and_ports_and_sees_changes_live() {
    let table = DnsTable::new();
    let record = ServiceRecord {
        address: Ipv4Addr::new(127, 77, 0, 1),
        ports: vec![("http".into(), 8080), ("metrics".into(), 9090)],
    };
    table.put("demo", "echo", record);
    let (udp, tcp, port) = sockets().await;
    let server = DnsServer::start(table.clone(), udp, tcp, None);

    let name = "echo.demo.svc.clusterset.local";
    assert_eq!(dig(port, &["+short", name, "A"]).await.trim(), "127.77.0.1");
    assert_eq!(
        dig(port, &["+short", "+tcp", name, "A"]).await.trim(),
        "127.77.0.1"
    );
    let full = dig(port, &[name, "A"]).await;
    assert!(
        full.contains("flags: qr aa"),
        "authoritative answer expected: {full}"
    );
    let srv = dig(
        port,
        &[
            "+short",
            "_metrics._tcp.echo.demo.svc.clusterset.local",
            "SRV",
        ],
    )
    .await;
    assert_eq!(srv.trim(), "0 100 9090 echo.demo.svc.clusterset.local.");
    let aaaa = dig(port, &[name, "AAAA"]).await;
    assert!(
        aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );

    for unknown in [
        "nope.demo.svc.clusterset.local",
        "_grpc._tcp.echo.demo.svc.clusterset.local",
        "demo.svc.clusterset.local",
    ] {
        let out = dig(port, &[unknown, "A"]).await;
        assert!(out.contains("status: NXDOMAIN"), "{unknown}: {out}");
    }
    let outside = dig(port, &["example.com", "A"]).await;
    assert!(outside.contains("status: REFUSED"), "{outside}");

    // A service that leaves is gone from the next answer; a new one appears.
    table.remove("demo", "echo");
    assert!(dig(port, &[name, "A"]).await.contains("status: NXDOMAIN"));
    let record = ServiceRecord {
        address: Ipv4Addr::new(127, 77, 0, 2),
        ports: vec![("http".into(), 80)],
    };
    table.put("shop", "reviews", record);
    assert_eq!(
        dig(port, &["+short", "reviews.shop.svc.clusterset.local", "A"])
            .await
            .trim(),
        "127.77.0.2"
    );
    server.stop().await;
}

/// A dnsmasq child serving one name, killed when dropped.
struct Dnsmasq(std::process::Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_zone_are_forwarded_when_configured() {
    // dnsmasq (Debian's dnsmasq-base) as the upstream resolver, on its own loopback port.
    let (probe, _, upstream_port) = sockets().await;
    drop(probe);
    let dnsmasq = Dnsmasq(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={upstream_port}"),
                "--address=/upstream.example/127.1.2.3",
                "--pid-file=",
                "--user=",
            ])
            .spawn()
            .expect("dnsmasq is installed (.ci/run installs dnsmasq-base)"),
    );
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], upstream_port));
    let table = DnsTable::new();
    table.put(
        "demo",
        "echo",
        ServiceRecord {
            address: Ipv4Addr::new(127, 77, 0, 9),
            ports: vec![],
        },
    );
    let (udp, tcp, port) = sockets().await;
    let server = DnsServer::start(table, udp, tcp, Some(upstream));
    // dnsmasq may still be starting: ask until it answers (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let forwarded = dig(port, &["upstream.example", "A"]).await;
        if forwarded.contains("127.1.2.3") {
            assert!(forwarded.contains("status: NOERROR"), "{forwarded}");
            assert!(
                !forwarded.contains(" aa"),
                "a forwarded answer is not authoritative: {forwarded}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never forwarded: {forwarded}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The zone is still answered here, never forwarded.
    assert_eq!(
        dig(port, &["+short", "echo.demo.svc.clusterset.local"])
            .await
            .trim(),
        "127.77.0.9"
    );
    let unknown = dig(port, &["nope.demo.svc.clusterset.local"]).await;
    assert!(unknown.contains("status: NXDOMAIN"), "{unknown}");
    // An upstream that is gone: SERVFAIL, not a hang.
    drop(dnsmasq);
    let failed = dig(port, &["gone.example", "A"]).await;
    assert!(failed.contains("status: SERVFAIL"), "{failed}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_queries_get_their_proper_refusals() {
    let table = DnsTable::new();
    let (udp, tcp, port) = sockets().await;
    let server = DnsServer::start(table, udp, tcp, None);
    // An opcode other than QUERY: NOTIMP.
    let status = dig(port, &["+opcode=status", "echo.demo.svc.clusterset.local"]).await;
    assert!(status.contains("status: NOTIMP"), "{status}");
    // EDNS is answered with our payload size.
    let edns = dig(
        port,
        &["+edns=0", "+bufsize=4096", "nope.demo.svc.clusterset.local"],
    )
    .await;
    assert!(
        edns.contains("EDNS: version: 0") && edns.contains("udp: 1232"),
        "{edns}"
    );
    // A datagram with a query header and a broken body: FORMERR with its id.
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(("127.0.0.1", port)).await.unwrap();
    let mut broken = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    broken.extend_from_slice(&[0x3f, b'x']); // a label that runs past the end
    client.send(&broken).await.unwrap();
    let mut reply = [0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut reply))
        .await
        .expect("an answer to a broken query")
        .unwrap();
    assert_eq!(&reply[..2], &[0xab, 0xcd], "same id");
    assert_eq!(reply[2] & 0x80, 0x80, "a response");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
    assert_eq!(n, 12);
    // A response datagram gets no answer at all (no reflection loops).
    let mut response = broken.clone();
    response[2] |= 0x80;
    client.send(&response).await.unwrap();
    let silent = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        client.recv(&mut reply),
    )
    .await;
    assert!(silent.is_err(), "answered a response datagram");
    server.stop().await;
}
