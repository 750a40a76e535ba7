//! The gateway through the binary: two `isthmus gateway run` processes with certificates
//! from `isthmus ca`, reached by `curl` and by `openssl s_client` (through the SNI
//! listener, to an `openssl s_server` that requires a client certificate).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use support::{BOUND, Dir, Proc, eventually, free_port, json_lines};

/// A tiny HTTP server that answers every request with `body`.
fn http_server(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    addr
}

fn pki(dir: &Dir) {
    dir.isthmus("ca init --trust-domain mesh.example --out @root")
        .ok();
    for cluster in ["east", "west"] {
        dir.isthmus(&format!(
            "ca intermediate --root-dir @root --cluster {cluster} --out @{cluster}"
        ))
        .ok();
        dir.isthmus(&format!(
            "ca issue --ca-dir @{cluster} --spiffe-id spiffe://mesh.example/cluster/{cluster}/gateway/ew --out @{cluster}-gw"
        ))
        .ok();
    }
    dir.isthmus("ca issue --ca-dir @west --spiffe-id spiffe://mesh.example/cluster/west/ns/demo/sa/echo --out @west-wl").ok();
    dir.isthmus("ca issue --ca-dir @east --spiffe-id spiffe://mesh.example/cluster/east/ns/demo/sa/client --out @east-wl").ok();
}

fn write(dir: &Dir, name: &str, text: &str) -> String {
    let path = dir.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn curl_and_openssl_reach_west_through_two_gateway_processes() {
    let dir = Dir::new();
    pki(&dir);
    let web = http_server("hello from west");
    let tls_backend = free_port();
    let mut s_server = Proc::spawn(
        "openssl",
        &[
            "s_server",
            "-accept",
            &tls_backend.to_string(),
            "-cert",
            &dir.path("west-wl/cert.pem"),
            "-key",
            &dir.path("west-wl/key.pem"),
            "-cert_chain",
            &dir.path("west/intermediate.pem"),
            "-CAfile",
            &dir.path("root/root.pem"),
            "-Verify",
            "3",
            "-verify_return_error",
            "-www",
        ],
    );
    s_server.wait_for("ACCEPT");

    let west_config = write(
        &dir,
        "west.toml",
        &format!(
            r#"
cluster = "west"
[tls]
bundle = "west-gw/bundle.pem"
cert = "west-gw/cert.pem"
key = "west-gw/key.pem"
[listen]
quic = "127.0.0.1:0"
metrics = "127.0.0.1:0"
[runtime]
worker_threads = 1   # west on one thread, east on the default: both modes run
[access_log]
output = "file"
path = "west-access.log"
[[peers]]
cluster = "east"
address = "127.0.0.1:9"
[[exports]]
namespace = "demo"
name = "web"
[[exports.ports]]
port = 80
endpoints = ["{web}"]
[[exports]]
namespace = "demo"
name = "echo"
[[exports.ports]]
port = 8443
endpoints = ["{tls_backend}"]
"#
        ),
    );
    let mut west = Proc::spawn(
        env!("CARGO_BIN_EXE_isthmus"),
        &["gateway", "run", "--config", &west_config],
    );
    west.wait_for(" ready");
    let west_quic = west.addr("quic");

    let east_config = write(
        &dir,
        "east.json",
        &format!(
            r#"{{
  "cluster": "east",
  "tls": {{"bundle": "east-gw/bundle.pem", "cert": "east-gw/cert.pem", "key": "east-gw/key.pem"}},
  "listen": {{"quic": "127.0.0.1:0", "metrics": "127.0.0.1:0", "sni": "127.0.0.1:0"}},
  "access_log": {{"output": "file", "path": "east-access.log"}},
  "peers": [{{"cluster": "west", "address": "{west_quic}"}}],
  "imports": [
    {{"namespace": "demo", "name": "web", "cluster": "west", "port": 80, "listen": "127.0.0.1:0"}},
    {{"namespace": "demo", "name": "echo", "cluster": "west", "port": 8443, "listen": "127.0.0.1:0"}}
  ]
}}"#
        ),
    );
    let mut east = Proc::spawn(
        env!("CARGO_BIN_EXE_isthmus"),
        &["gateway", "run", "--config", &east_config],
    );
    east.wait_for(" ready");
    let web_import = east.addr("import   demo/web");
    let sni = east.addr("sni");

    // curl, plain HTTP through the tunnel.
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            &format!("http://{web_import}/hello"),
        ])
        .output()
        .expect("curl");
    assert!(curl.status.success(), "{curl:?}");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "hello from west");

    // openssl s_client -> east's SNI listener -> QUIC -> west -> openssl s_server, with
    // both workloads' certificates checked end to end; the gateways never decrypt.
    let mut s_client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &sni.to_string(),
            "-servername",
            "echo.demo.svc.clusterset.local",
            "-cert",
            &dir.path("east-wl/cert.pem"),
            "-key",
            &dir.path("east-wl/key.pem"),
            "-cert_chain",
            &dir.path("east/intermediate.pem"),
            "-CAfile",
            &dir.path("root/root.pem"),
            "-verify_return_error",
            "-verify",
            "3",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    s_client
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    let out = wait_output(s_client);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Verify return code: 0 (ok)"),
        "client did not verify the server: {stdout}"
    );
    assert!(
        stdout.contains("spiffe://mesh.example/cluster/west/ns/demo/sa/echo")
            || stdout.contains("Server certificate"),
        "{stdout}"
    );
    // s_server's -www page is only served after it verified the client certificate.
    assert!(stdout.contains("HTTP/1.0 200 ok"), "{stdout}");
    assert!(
        stdout.contains("Client certificate"),
        "the server saw no client certificate: {stdout}"
    );

    // Metrics on both sides, security mutual_tls.
    let east_metrics = get(east.addr("metrics"));
    assert!(east_metrics.contains("isthmus_gateway_connections_opened_total{direction=\"outbound\",source_cluster=\"east\",destination_service=\"web.demo\",security=\"mutual_tls\"} 1"), "{east_metrics}");
    assert!(
        east_metrics.contains("destination_service=\"echo.demo\""),
        "{east_metrics}"
    );

    // Each connection wrote one JSON line on each gateway, and the two agree.
    let (east_log, west_log) = (dir.path("east-access.log"), dir.path("west-access.log"));
    let web_lines = |path: &str| -> Option<serde_json::Value> {
        json_lines(path)
            .into_iter()
            .find(|l| l["destination_service"] == "web.demo")
    };
    let sent = eventually("the web connection's line on east", || web_lines(&east_log));
    let received = eventually("the web connection's line on west", || web_lines(&west_log));
    assert_eq!(sent["direction"], "outbound", "{sent}");
    assert_eq!(received["direction"], "inbound", "{received}");
    assert_eq!(sent["request_id"], received["request_id"]);
    assert!(
        sent["request_id"].as_str().is_some_and(|id| id.len() == 16),
        "{sent}"
    );
    for key in ["bytes_received", "bytes_sent"] {
        assert_eq!(sent[key], received[key], "{key}: {sent} vs {received}");
        assert!(sent[key].as_u64().is_some_and(|n| n > 0), "{key}: {sent}");
    }
    for line in [&sent, &received] {
        assert_eq!(line["connection_security_policy"], "mutual_tls", "{line}");
        assert_eq!(line["source_cluster"], "east", "{line}");
        assert_eq!(line["destination_cluster"], "west", "{line}");
        assert_eq!(line["app_tls"], "none", "{line}");
        assert_eq!(line["response_flags"], "-", "{line}");
    }
    assert_eq!(received["policy_decision"], "allow", "{received}");
    assert_eq!(received["policy_rule"], "configured-peers", "{received}");
    assert_eq!(received["upstream_host"], web.to_string(), "{received}");
    assert_eq!(sent["upstream_host"], west_quic.to_string(), "{sent}");
    // The openssl connection was TLS end to end: passthrough on both sides.
    let echo = |path: &str| {
        json_lines(path)
            .into_iter()
            .find(|l| l["destination_service"] == "echo.demo")
    };
    let echo_sent = eventually("the echo line on east", || echo(&east_log));
    let echo_received = eventually("the echo line on west", || echo(&west_log));
    assert_eq!(echo_sent["app_tls"], "passthrough", "{echo_sent}");
    assert_eq!(
        echo_sent["requested_server_name"],
        "echo.demo.svc.clusterset.local"
    );
    assert_eq!(echo_received["app_tls"], "passthrough", "{echo_received}");

    // Log rotation: move the file away, SIGHUP, and the next line goes to a new file.
    let rotated = format!("{east_log}.1");
    std::fs::rename(&east_log, &rotated).unwrap();
    east.signal("HUP");
    eventually("east reopens its access log", || {
        std::path::Path::new(&east_log).exists().then_some(())
    });
    let again = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            &format!("http://{web_import}/again"),
        ])
        .output()
        .expect("curl");
    assert!(again.status.success(), "{again:?}");
    eventually("the next line in the reopened file", || {
        (json_lines(&east_log).len() == 1).then_some(())
    });
    assert_eq!(
        json_lines(&rotated).len(),
        2,
        "the rotated file keeps its lines"
    );

    // SIGTERM drains and exits cleanly.
    assert!(east.terminate().success());
    assert!(west.terminate().success());
}

fn wait_output(child: Child) -> std::process::Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(BOUND)
        .expect("child hung")
        .expect("child output")
}

fn get(addr: SocketAddr) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_bad_gateway_config_names_file_and_field() {
    let dir = Dir::new();
    pki(&dir);
    let cases = [
        (
            "bad1.toml",
            "cluster = \"east\"\n[tls]\nbundle = \"east-gw/bundle.pem\"\ncert = \"east-gw/cert.pem\"\nkey = \"east-gw/key.pem\"\n[listen]\nquic = \"127.0.0.1:0\"\n[[imports]]\nnamespace = \"demo\"\nname = \"web\"\ncluster = \"west\"\nport = 80\nlisten = \"127.0.0.1:0\"\n",
            vec![
                "bad1.toml",
                "field `imports[0].cluster`",
                "one of the peers' clusters",
            ],
        ),
        (
            "bad2.toml",
            "cluster = \"east\"\n[tls]\nbundle = \"east-gw/bundle.pem\"\ncert = \"west-gw/cert.pem\"\nkey = \"west-gw/key.pem\"\n[listen]\nquic = \"127.0.0.1:0\"\n",
            vec![
                "west-gw/cert.pem",
                "field `tls.cert`",
                "expected a gateway of cluster east",
            ],
        ),
        (
            "bad3.toml",
            "cluster = \"east\"\n[tls]\nbundle = \"east-gw/bundle.pem\"\ncert = \"east-gw/cert.pem\"\nkey = \"east-gw/key.pem\"\n[listen]\nquic = \"127.0.0.1:0\"\nmetrics = 9090\n",
            vec!["bad3.toml", "field `listen.metrics`"],
        ),
        (
            "bad4.toml",
            "cluster = \"east\"\n[tls]\nbundle = \"nope.pem\"\ncert = \"east-gw/cert.pem\"\nkey = \"east-gw/key.pem\"\n[listen]\nquic = \"127.0.0.1:0\"\n",
            vec!["nope.pem", "field `tls.bundle`", "cannot read"],
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(&dir, name, text);
        let run = support::isthmus(&["gateway", "run", "--config", &path]);
        assert_eq!(run.code, Some(1), "{name}: {run:?}");
        for needle in expected {
            assert!(
                run.stderr.contains(needle),
                "{name}: missing {needle:?} in {}",
                run.stderr
            );
        }
    }
}
