//! The ingress on a member gateway of the in-process mesh (`DevMesh`), with `curl
//! --resolve` as the outside client and `openssl` making the hosts' certificates: TLS
//! terminated per host by SNI, HTTP/1.1 and HTTP/2 routed by path to a service in this
//! cluster or through the tunnel to another, SNI passthrough to a service that speaks
//! TLS itself, a plain TCP route, and the policy's HTTP method and path conditions.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isthmus_gateway::dev_mesh::{ClusterSpec, DevMesh, ExportSpec, echo_server};
use isthmus_gateway::ingress::config::IngressSection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(30);

/// A self-signed certificate for `host` made by `openssl`: (cert, key) file names.
fn openssl_cert(dir: &Path, host: &str) -> (String, String) {
    let (cert, key) = (format!("{host}.pem"), format!("{host}.key"));
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-keyout", &key, "-out", &cert])
        .args(["-subj", &format!("/CN={host}")])
        .args(["-addext", &format!("subjectAltName=DNS:{host}")])
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A TLS server that answers one HTTP request per connection with `label`, standing
/// for a service that terminates TLS itself (the passthrough target).
async fn tls_echo(dir: &Path, host: &str, label: &'static str) -> SocketAddr {
    let (cert, key) = openssl_cert(dir, host);
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
    mesh.put_policy("edge", policy).await.unwrap();
    let west_echo = echo_server("west").await.unwrap();
    let east_web = echo_server("east").await.unwrap();
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
    mesh.add_cluster(&spec(
        "east",
        "127.137.0.0/16",
        vec![export("web", 8080, east_web)],
    ))
    .await
    .unwrap();
    let east = &mesh.members["east"];
    let metrics = east.gateway.metrics();
    let deadline = Instant::now() + BOUND;
    while metrics.imported_services.get() < 2 {
        assert!(
            Instant::now() < deadline,
            "east never imported west's services"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (cert, key) = openssl_cert(d, "shop.example.test");
    let section: IngressSection = toml::from_str(&format!(
        r#"
listen = "127.0.0.1:0"
[[hosts]]
host = "shop.example.test"
namespace = "demo"
cert = "{cert}"
key = "{key}"
routes = [
  {{ path_prefix = "/", service = "web.demo:8080" }},
  {{ path_prefix = "/echo", service = "echo.demo:8080" }},
]
[[hosts]]
host = "secure.example.test"
namespace = "demo"
passthrough = "secure.demo:8443"
[[tcp]]
listen = "127.0.0.1:0"
service = "echo.demo:8080"
"#
    ))
    .unwrap();
    let mut problems = Vec::new();
    let settings = section.validate(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let addrs = east.gateway.start_ingress(&settings, d).await.unwrap();
    let tls = addrs.tls.unwrap();
    let shop = |path: &str| https(d, "shop.example.test", tls, &cert, path);

    // HTTP/1.1, terminated here, "/" to east's own web service.
    let mut h1 = vec!["--http1.1".to_owned()];
    h1.extend(shop("/"));
    let (code, version, body) = curl(h1).await;
    assert_eq!((code, version.as_str()), (200, "1.1"), "{body}");
    assert!(body.contains("hello from east"), "{body}");
    // HTTP/2 to the client, "/echo/..." through the tunnel to west.
    let mut h2 = vec!["--http2".to_owned()];
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
    assert_eq!(count("web.demo", "200"), 2);
    mesh.shutdown().await;
}
