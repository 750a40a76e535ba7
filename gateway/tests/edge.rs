//! The mesh's edges on member gateways of the in-process mesh (`DevMesh`), with `curl
//! --resolve` as the outside client and `openssl` making the hosts' certificates.
//!
//! Ingress: TLS terminated per host by SNI, HTTP/1.1 and HTTP/2 routed by path to a
//! service in this cluster or through the tunnel to another, SNI passthrough to a
//! service that speaks TLS itself, a plain TCP route, and the policy's HTTP method and
//! path conditions.
//!
//! Egress: the allow-list (exact and wildcard hosts, ports) over SNI passthrough and TLS
//! origination, to TLS servers on loopback standing in for the outside world, and the
//! egress serving another cluster through the tunnel.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(30);

/// A self-signed certificate for `host` made by `openssl`: (cert, key) file names.
fn openssl_cert(dir: &Path, host: &str) -> (String, String) {
    openssl_cert_for(dir, host, &[host])
}

/// A self-signed certificate named `stem` for the DNS names `sans`.
fn openssl_cert_for(dir: &Path, stem: &str, sans: &[&str]) -> (String, String) {
    let (cert, key) = (format!("{stem}.pem"), format!("{stem}.key"));
    let san: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "1", "-keyout", &key, "-out", &cert])
        .args(["-subj", &format!("/CN={}", sans[0])])
        .args(["-addext", &format!("subjectAltName={}", san.join(","))])
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A CA and a leaf it signs for `sans`, made by `openssl` (a verifier such as rustls
/// refuses a self-signed CA certificate as a server's own): (ca, cert, key) file names.
fn openssl_ca_and_leaf(dir: &Path, stem: &str, sans: &[&str]) -> (String, String, String) {
    let (ca, _) = openssl_cert_for(dir, &format!("{stem}-ca"), &[&format!("ca.{stem}.test")]);
    let ca_key = format!("{stem}-ca.key");
    let (cert, key, csr) = (
        format!("{stem}.pem"),
        format!("{stem}.key"),
        format!("{stem}.csr"),
    );
    let san: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
    let ext = format!("{stem}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\n",
            san.join(",")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ]
    .into_iter()
    .chain(["-keyout", &key, "-out", &csr, "-subj"])
    .chain([format!("/CN={}", sans[0]).as_str()])
    .collect::<Vec<_>>());
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
    ]
    .into_iter()
    .chain(["-days", "1", "-out", &cert, "-extfile", &ext])
    .collect::<Vec<_>>());
    (ca, cert, key)
}

/// An HTTP/1.1 server that keeps connections open and answers every request with its
/// request line; counts the connections it accepted.
async fn keep_alive_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Requests here have no body: each ends at the blank line.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        let body = format!("kept: {line}\n");
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tcp.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A TLS server that answers one HTTP request per connection with `label`, standing
/// for a service that terminates TLS itself (the passthrough target).
async fn tls_echo(dir: &Path, host: &str, label: &'static str) -> SocketAddr {
    tls_echo_with(dir, openssl_cert(dir, host), label).await
}

/// Like [`tls_echo`], with a given certificate.
async fn tls_echo_with(
    dir: &Path,
    (cert, key): (String, String),
    label: &'static str,
) -> SocketAddr {
    let chain =
        isthmus_ca::pem::certs_from_pem(&std::fs::read_to_string(dir.join(cert)).unwrap()).unwrap();
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join(key)).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(isthmus_ca::verify::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let body = format!("hello from {label} (TLS end to end)\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// `curl` through the ingress: (HTTP code, HTTP version, body).
async fn curl(args: Vec<String>) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .args(&args)
            .output()
            .expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
        let body = format!("{body}{}", String::from_utf8_lossy(&out.stderr));
        let (code, version) = status.split_once(' ').unwrap_or(("0", "0"));
        (
            code.parse().unwrap_or(0),
            version.to_owned(),
            body.to_owned(),
        )
    })
    .await
    .unwrap()
}

fn https(dir: &Path, host: &str, ingress: SocketAddr, ca: &str, path: &str) -> Vec<String> {
    vec![
        "--cacert".into(),
        dir.join(ca).display().to_string(),
        "--resolve".into(),
        format!("{host}:{}:127.0.0.1", ingress.port()),
        format!("https://{host}:{}{path}", ingress.port()),
    ]
}

fn spec(name: &str, range: &str, exports: Vec<ExportSpec>) -> ClusterSpec {
    ClusterSpec {
        name: name.into(),
        locality: format!("us-{name}"),
        import_range: range.into(),
        dns: false,
        exports,
        extra_config: String::new(),
    }
}

fn export(name: &str, port: u16, endpoint: SocketAddr) -> ExportSpec {
    ExportSpec {
        namespace: "demo".into(),
        name: name.into(),
        port,
        endpoint,
    }
}

/// A W3C trace id a client sends.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_terminates_passes_through_and_routes_to_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut mesh = DevMesh::start(d, 3, Duration::from_secs(3600))
        .await
        .unwrap();
    // Ingress traffic enters from east: east may reach demo, except POST under /echo/admin.
    let policy = r#"{"rules":[
        {"name":"from-edge","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo"}},
        {"name":"no-admin-writes","action":"deny","from":[{"cluster":"*"}],
         "to":{"namespace":"demo","service":"echo","http":{"methods":["POST"],"path_prefixes":["/echo/admin"]}}}]}"#;
    // The hosts belong to namespace demo (traffic claims); unclaimed.example.test is
    // configured below but claimed by nobody.
    for host in ["shop.example.test", "secure.example.test"] {
        mesh.put_claim(host, "demo").await.unwrap();
    }
    let west_echo = echo_server("west").await.unwrap();
    let east_web = echo_server("east").await.unwrap();
    let (kept, kept_accepts) = keep_alive_server().await;
    let secure = tls_echo(d, "secure.example.test", "west's secure service").await;
    mesh.add_cluster(&spec(
        "west",
        "127.138.0.0/16",
        vec![
            export("echo", 8080, west_echo),
            export("secure", 8443, secure),
        ],
    ))
    .await
    .unwrap();
    // East runs the ingress (started with east's gateway, from its config).
    let (cert, key) = openssl_cert(d, "shop.example.test");
    let (cert_path, key_path) = (d.join(&cert), d.join(&key));
    let ingress = format!(
        r#"
[ingress]
listen = "127.0.0.1:0"
[[ingress.hosts]]
host = "shop.example.test"
namespace = "demo"
cert = "{}"
key = "{}"
routes = [
  {{ path_prefix = "/", service = "web.demo:8080" }},
  {{ path_prefix = "/echo", service = "echo.demo:8080" }},
  {{ path_prefix = "/kept", service = "kept.demo:8080" }},
]
[[ingress.hosts]]
host = "secure.example.test"
namespace = "demo"
passthrough = "secure.demo:8443"
[[ingress.hosts]]
host = "unclaimed.example.test"
namespace = "demo"
passthrough = "secure.demo:8443"
[[ingress.tcp]]
listen = "127.0.0.1:0"
service = "echo.demo:8080"

[timeouts]
idle = "{IDLE_SECONDS}s"
"#,
        cert_path.display(),
        key_path.display()
    );
    mesh.add_cluster(&ClusterSpec {
        extra_config: ingress,
        ..spec(
            "east",
            "127.137.0.0/16",
            vec![export("web", 8080, east_web), export("kept", 8080, kept)],
        )
    })
    .await
    .unwrap();
    // The policy names cluster east, so it can be written once east exists (admission
    // refuses a policy for an unknown cluster).
    mesh.put_policy("edge", policy).await.unwrap();
    let east = &mesh.members["east"];
    let metrics = east.metrics();
    let deadline = Instant::now() + BOUND;
    while metrics.imported_services.get() < 2 {
        assert!(
            Instant::now() < deadline,
            "east never imported west's services"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addrs = east.addresses().ingress.clone().unwrap();
    let tls = addrs.tls.unwrap();
    let shop = |path: &str| https(d, "shop.example.test", tls, &cert, path);

    // HTTP/1.1, terminated here, "/" to east's own web service.
    let mut h1 = vec!["--http1.1".to_owned()];
    h1.extend(shop("/"));
    // East applies the policy when its watch delivers it.
    let deadline = Instant::now() + BOUND;
    let (code, version, body) = loop {
        let answer = curl(h1.clone()).await;
        if answer.0 != 403 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((code, version.as_str()), (200, "1.1"), "{body}");
    assert!(body.contains("hello from east"), "{body}");
    // HTTP/2 to the client, "/echo/..." through the tunnel to west, in the client's
    // trace (passed on as it came: neither gateway records traces here).
    let mut h2 = vec![
        "--http2".to_owned(),
        "-H".into(),
        format!("traceparent: 00-{TRACE}-00f067aa0ba902b7-01"),
    ];
    h2.extend(shop("/echo/items?id=7"));
    let (code, version, body) = curl(h2).await;
    assert_eq!((code, version.as_str()), (200, "2"), "{body}");
    assert!(
        body.contains("hello from west") && body.contains("GET /echo/items?id=7 HTTP/1.1"),
        "{body}"
    );
    // A prefix only matches at a segment boundary.
    let (_, _, body) = curl(shop("/echoes")).await;
    assert!(body.contains("hello from east"), "{body}");

    // Upstream keep-alive: sequential requests (each from a new client connection) to a
    // local service that keeps connections open reuse one upstream connection.
    for i in 0..5 {
        let (code, _, body) = curl(shop(&format!("/kept/{i}"))).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&format!("kept: GET /kept/{i}")), "{body}");
    }
    assert_eq!(
        kept_accepts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one upstream connection for five requests"
    );

    // The policy's HTTP conditions: POST under /echo/admin is denied at the ingress,
    // GET there and POST elsewhere are not.
    let mut post = vec!["-X".to_owned(), "POST".into(), "--data".into(), "x".into()];
    post.extend(shop("/echo/admin/reset"));
    let (code, _, body) = curl(post).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("edge/no-admin-writes"), "{body}");
    let (code, _, _) = curl(shop("/echo/admin/reset")).await;
    assert_eq!(code, 200);
    let mut post = vec!["-X".to_owned(), "POST".into(), "--data".into(), "x".into()];
    post.extend(shop("/echo/orders"));
    assert_eq!(curl(post).await.0, 200);

    // SNI passthrough: the client talks TLS with west's service itself (the ingress has
    // no certificate for it), through the tunnel.
    let (code, _, body) = curl(https(
        d,
        "secure.example.test",
        tls,
        "secure.example.test.pem",
        "/",
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from west's secure service"), "{body}");

    // A host its namespace has not claimed is refused, though configured.
    let (code, _, _) = curl(https(d, "unclaimed.example.test", tls, &cert, "/")).await;
    assert_eq!(code, 0, "an unclaimed host is not served");
    // A second namespace cannot claim a host the first holds (nor a wildcard over it);
    // the first keeps working.
    for host in ["shop.example.test", "*.example.test"] {
        let refused = mesh.put_claim(host, "bank").await.unwrap_err().to_string();
        assert!(
            refused.contains("claimed by namespace \"demo\""),
            "{refused}"
        );
    }
    let (code, _, body) = curl(shop("/")).await;
    assert_eq!(code, 200, "{body}");

    // An unknown host is refused before any TLS is spoken.
    let (code, _, _) = curl(https(d, "other.example.test", tls, &cert, "/")).await;
    assert_eq!(code, 0, "no answer for an unknown host");

    // A plain TCP route by port, to west through the tunnel.
    let (code, _, body) = curl(vec![format!("http://{}/tcp", addrs.tcp[0])]).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from west"), "{body}");

    // Every answer is counted by host, service and code.
    let count = |service: &str, code: &str| {
        metrics
            .ingress_requests
            .get_or_create(&isthmus_gateway::metrics::IngressLabels {
                host: "shop.example.test".into(),
                destination_service: service.into(),
                code: code.into(),
            })
            .get()
    };
    assert_eq!(count("echo.demo", "403"), 1);
    assert_eq!(count("web.demo", "200"), 3);

    // Each request has its access-log line at east: method, path, code, and for the
    // denied one the rule that denied it.
    let log = mesh.access_log("east");
    let line_of = |method: &str, path: &str, code: u64| {
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        lines
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["method"] == method && l["path"] == path && l["response_code"] == code)
    };
    let deadline = Instant::now() + BOUND;
    let denied = loop {
        if let Some(line) = line_of("POST", "/echo/admin/reset", 403) {
            break line;
        }
        assert!(Instant::now() < deadline, "no line for the denied POST");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(denied["direction"], "ingress", "{denied}");
    assert_eq!(denied["policy_decision"], "deny", "{denied}");
    assert_eq!(denied["policy_rule"], "edge/no-admin-writes", "{denied}");
    assert_eq!(denied["response_flags"], "PD", "{denied}");
    assert_eq!(
        denied["requested_server_name"], "shop.example.test",
        "{denied}"
    );
    let h2 = line_of("GET", "/echo/items", 200).expect("the HTTP/2 request's line");
    assert_eq!(h2["protocol"], "HTTP/2", "{h2}");
    assert_eq!(h2["destination_service"], "echo.demo", "{h2}");
    assert_eq!(h2["app_tls"], "terminated", "{h2}");
    assert_eq!(h2["policy_rule"], "edge/from-edge", "{h2}");
    assert!(
        h2["user_agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("curl/")),
        "{h2}"
    );
    assert!(h2["bytes_sent"].as_u64().is_some_and(|n| n > 0), "{h2}");
    assert!(h2["request_id"].as_str().is_some(), "{h2}");
    // The client's trace went in at the ingress and on through the tunnel to west.
    assert_eq!(h2["trace_id"], TRACE, "{h2}");
    let west_log = mesh.access_log("west");
    let deadline = Instant::now() + BOUND;
    loop {
        let text = std::fs::read_to_string(&west_log).unwrap_or_default();
        if text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|l| l["direction"] == "inbound" && l["trace_id"] == TRACE)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "west never logged the client's trace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client past the TLS handshake that sends its request head a header line every
    // half second is cut off at the head-read bound (`timeouts.stream_open`, 5 s).
    let (after, answer) = slow_head(tls, &d.join(&cert), "shop.example.test").await;
    eprintln!("a slow request head to the ingress was cut off after {after:?}: {answer:?}");
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(12)).contains(&after),
        "a slow request head was cut off after {after:?} (bound: 5 s): {answer:?}"
    );
    // A client past the TLS handshake that sends only the HTTP/2 preface and its
    // SETTINGS, then nothing, is closed once idle for `timeouts.idle` (a GOAWAY, then
    // the close).
    let (after, answer) = silent_h2(tls, &d.join(&cert), "shop.example.test").await;
    eprintln!("a silent HTTP/2 client of the ingress was closed after {after:?}: {answer:?}");
    let idle = Duration::from_secs(IDLE_SECONDS);
    assert!(
        (idle - Duration::from_secs(1)..idle + Duration::from_secs(10)).contains(&after),
        "a silent HTTP/2 connection was closed after {after:?} (bound: {idle:?}): {answer:?}"
    );
    assert!(answer.contains("goaway"), "{answer}");
    let (code, _, body) = curl(h1.clone()).await;
    assert_eq!(code, 200, "the ingress serves on: {body}");
    mesh.shutdown().await;
}

/// East's `timeouts.idle` in the ingress test: short, so that an idle connection's
/// close is seen, and longer than any pause of the test's own connections.
const IDLE_SECONDS: u64 = 8;

/// Over TLS to `addr` (trusting `ca`, SNI `host`, ALPN h2), sends the HTTP/2 preface and
/// an empty SETTINGS frame, then only reads (Python's `ssl`) until the server closes:
/// how long that took, and the frame types it sent (`goaway` among them when it said
/// goodbye). Gives up after 40 s.
async fn silent_h2(addr: SocketAddr, ca: &Path, host: &str) -> (Duration, String) {
    const CLIENT: &str = r#"
assert tls.selected_alpn_protocol() == "h2", tls.selected_alpn_protocol()
tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
started = time.monotonic()
tls.settimeout(40)
got = b""
try:
    while time.monotonic() - started < 40:
        chunk = tls.recv(4096)
        if not chunk:
            break
        got += chunk
except (socket.timeout, OSError):
    pass
names = {0: "data", 1: "headers", 3: "rst_stream", 4: "settings", 6: "ping", 7: "goaway", 8: "window_update"}
kinds, at = [], 0
while at + 9 <= len(got):
    length = int.from_bytes(got[at:at + 3], "big")
    kinds.append(names.get(got[at + 3], str(got[at + 3])))
    at += 9 + length
print(f"{time.monotonic() - started:.3f}")
print(" ".join(kinds))
"#;
    let (after, answer) = python_client(CLIENT, "h2", addr, ca, host).await;
    (after, answer.trim().to_owned())
}

/// What every Python client script starts with: `tls`, a TLS connection to the port,
/// trusting the CA file, with the SNI host and the one ALPN protocol of the arguments.
const PYTHON_TLS: &str = r#"
import socket, ssl, sys, time
host, port, ca, alpn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
context.set_alpn_protocols([alpn])
tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
"#;

/// Runs the Python client `script` after [`PYTHON_TLS`] (connected to `addr` with
/// `alpn`); it prints the seconds it measured on its first line, then what it saw.
async fn python_client(
    script: &'static str,
    alpn: &'static str,
    addr: SocketAddr,
    ca: &Path,
    host: &str,
) -> (Duration, String) {
    let (ca, host) = (ca.to_owned(), host.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                "-c",
                &format!("{PYTHON_TLS}{script}"),
                &host,
                &addr.port().to_string(),
            ])
            .arg(ca)
            .arg(alpn)
            .output()
            .expect("python3 is installed")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (seconds, answer) = text.split_once('\n').unwrap_or((&text, ""));
    (
        Duration::from_secs_f64(seconds.trim().parse().unwrap()),
        answer.to_owned(),
    )
}

/// Over TLS to `addr` (trusting `ca`, SNI `host`, HTTP/1.1), sends a request head a
/// header line every 500 ms (Python's `ssl`, an outside client) until the server answers
/// or closes: how long that took and what it answered. Gives up after 30 s.
async fn slow_head(addr: SocketAddr, ca: &Path, host: &str) -> (Duration, String) {
    const CLIENT: &str = r#"
tls.sendall(f"GET / HTTP/1.1\r\nhost: {host}\r\n".encode())
started = time.monotonic()
tls.settimeout(0.5)
answer = b""
while time.monotonic() - started < 30:
    try:
        chunk = tls.recv(4096)
        if not chunk:
            break
        answer += chunk
    except socket.timeout:
        try:
            tls.sendall(b"x-slow: 1\r\n")
        except OSError:
            break
    except OSError:
        break
print(f"{time.monotonic() - started:.3f}")
print(answer.decode(errors="replace"))
"#;
    python_client(CLIENT, "http/1.1", addr, ca, host).await
}

/// A free loopback port, for a listener that must be named before it can be bound here
/// (the egress listener that west exports at enrollment).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_allows_only_listed_hosts_and_ports_and_serves_other_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The outside world: the partner's TLS API, and an imposter with a certificate of
    // its own for the same names.
    let (partner_ca, cert, key) =
        openssl_ca_and_leaf(d, "partner", &["api.partner.test", "*.partner.test"]);
    let outside = tls_echo_with(d, (cert, key), "the partner API").await;
    let (_, cert, key) = openssl_ca_and_leaf(d, "imposter", &["mirror.example.test"]);
    let imposter = tls_echo_with(d, (cert, key), "an imposter").await;

    let mut mesh = DevMesh::start(d, 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    for host in ["api.partner.test", "*.partner.test", "mirror.example.test"] {
        mesh.put_claim(host, "demo").await.unwrap();
    }
    // West runs the egress and exports its passthrough listener as egress.demo:15443.
    let egress_port = free_port();
    let egress_addr: SocketAddr = format!("127.0.0.1:{egress_port}").parse().unwrap();
    let partner_ca = d.join(&partner_ca).display().to_string();
    let egress = format!(
        r#"
[egress]
listeners = [
  {{ listen = "{egress_addr}", mode = "passthrough" }},
  {{ listen = "127.0.0.1:0", mode = "originate" }},
  {{ listen = "127.0.0.1:0", mode = "passthrough", port = 8443 }},
]
[[egress.hosts]]
host = "api.partner.test"
ports = [443]
namespace = "demo"
address = "{outside}"
ca = "{partner_ca}"
[[egress.hosts]]
host = "*.partner.test"
ports = [443]
namespace = "demo"
address = "{outside}"
ca = "{partner_ca}"
[[egress.hosts]]
host = "mirror.example.test"
ports = [443]
namespace = "demo"
address = "{imposter}"
ca = "{partner_ca}"
"#
    );
    mesh.add_cluster(&ClusterSpec {
        extra_config: egress,
        ..spec(
            "west",
            "127.148.0.0/16",
            vec![export("egress", 15443, egress_addr)],
        )
    })
    .await
    .unwrap();
    mesh.add_cluster(&ClusterSpec {
        dns: true,
        ..spec("east", "127.147.0.0/16", vec![])
    })
    .await
    .unwrap();
    let west = &mesh.members["west"];
    let listeners = west.addresses().egress.clone();
    let (passthrough, originate, wrong_port) = (listeners[0], listeners[1], listeners[2]);
    let metrics = west.metrics();
    let decisions = |host: &str, port: &str, decision: &str| {
        metrics
            .egress_decisions
            .get_or_create(&isthmus_gateway::metrics::EgressLabels {
                host: host.into(),
                port: port.into(),
                decision: decision.into(),
            })
            .get()
    };

    // SNI passthrough: the app's TLS reaches the partner, verified by the app itself
    // (once west has the claims from its first catalog sync).
    let deadline = Instant::now() + BOUND;
    let (code, _, body) = loop {
        let answer = curl(https(
            d,
            "api.partner.test",
            passthrough,
            &partner_ca,
            "/v1",
        ))
        .await;
        if answer.0 == 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from the partner API"), "{body}");
    let (code, _, body) = curl(https(
        d,
        "files.partner.test",
        passthrough,
        &partner_ca,
        "/",
    ))
    .await;
    assert_eq!(code, 200, "the wildcard entry: {body}");
    let api_allowed = decisions("api.partner.test", "443", "allow");
    assert!(api_allowed >= 1);
    assert_eq!(decisions("*.partner.test", "443", "allow"), 1);

    // Not listed: denied and counted (the name is logged, not made a label).
    let (code, _, _) = curl(https(d, "evil.test", passthrough, &partner_ca, "/")).await;
    assert_eq!(code, 0);
    assert_eq!(decisions("unlisted", "443", "deny"), 1);
    // Listed, but not for this port.
    let (code, _, _) = curl(https(d, "api.partner.test", wrong_port, &partner_ca, "/")).await;
    assert_eq!(code, 0);
    assert_eq!(decisions("api.partner.test", "8443", "deny"), 1);

    // TLS origination: the app speaks plain HTTP, the gateway speaks TLS to the host and
    // verifies it with the entry's CA.
    let (code, _, body) = curl(vec![
        "-H".into(),
        "Host: api.partner.test".into(),
        format!("http://{originate}/orders"),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from the partner API"), "{body}");
    // A server that cannot prove the name is refused.
    let (code, _, body) = curl(vec![
        "-H".into(),
        "Host: mirror.example.test".into(),
        format!("http://{originate}/"),
    ])
    .await;
    assert_eq!(code, 0, "the imposter must not be reached: {body}");

    // East has no egress of its own: its apps use west's through the tunnel.
    let east = &mesh.members["east"];
    let deadline = Instant::now() + BOUND;
    let address = loop {
        let out = Command::new("dig")
            .args([&format!("@{}", east.addresses().dns.unwrap().ip()), "-p"])
            .arg(east.addresses().dns.unwrap().port().to_string())
            .args([
                "+short",
                "+tries=1",
                "+time=2",
                "egress.demo.svc.clusterset.local",
            ])
            .output()
            .expect("dig is installed");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !answer.is_empty() {
            break answer;
        }
        assert!(Instant::now() < deadline, "east never imported egress.demo");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let through: SocketAddr = format!("{address}:15443").parse().unwrap();
    let mut args = https(d, "api.partner.test", through, &partner_ca, "/from-east");
    args[3] = format!("api.partner.test:15443:{address}");
    let (code, _, body) = curl(args).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("hello from the partner API"), "{body}");
    // Origination, and this one, since the first passthrough.
    assert_eq!(
        decisions("api.partner.test", "443", "allow"),
        api_allowed + 2
    );
    mesh.shutdown().await;
}
