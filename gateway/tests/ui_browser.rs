//! The federation's UI in a real browser: `tests/ui/live_topology.mjs` (playwright-core
//! driving Debian's chromium) against a dev mesh run here. A wrong token is refused;
//! signed in, the topology shows east, west and the east → west edge to `echo.demo` as
//! mutual TLS; west's gateway stops and the page shows it lost without a reload; signing
//! out ends the session. Needs `tests/ui/node_modules` (`scripts/test` runs `npm ci`).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A step of the browser script that has not passed in this long has failed.
const STEP: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_the_mesh_live_to_a_signed_in_browser() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").exists(),
        "tests/ui/node_modules is missing: run `npm ci` in tests/ui (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let echo = echo_server("west").await.unwrap();
    for (name, range, exports) in [
        (
            "west",
            "127.180.0.0/16",
            vec![ExportSpec {
                namespace: "demo".into(),
                name: "echo".into(),
                port: 8080,
                endpoint: echo,
            }],
        ),
        ("east", "127.181.0.0/16", vec![]),
    ] {
        mesh.add_cluster(&ClusterSpec {
            name: name.into(),
            locality: "us".into(),
            import_range: range.into(),
            dns: false,
            exports,
            extra_config: String::new(),
        })
        .await
        .unwrap();
    }
    let east = mesh.members["east"].metrics();
    let deadline = std::time::Instant::now() + STEP;
    while east.imported_services.get() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "east never imported echo"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut tcp = tokio::net::TcpStream::connect("127.181.0.1:8080")
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.contains("hello from west"), "{reply}");

    let rest = mesh.node(0).unwrap().listen.rest;
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let mut browser = Command::new("node")
        .arg(ui.join("live_topology.mjs"))
        .current_dir(&ui)
        .env(
            "ISTHMUS_UI_URL",
            format!("https://127.0.0.1:{}", rest.port()),
        )
        .env("ISTHMUS_UI_TOKEN", token.trim())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let stdout = browser.stdout.take().unwrap();
    let (tx, steps) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let expect = |step: &str| {
        let line = steps
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("the browser never got to {step:?}"));
        assert_eq!(line, format!("ok {step}"));
    };
    expect("wrong-token-refused");
    expect("signed-in-and-mutual-tls");
    mesh.stop_member("west").await;
    writeln!(browser.stdin.as_mut().unwrap(), "west stopped").unwrap();
    expect("west-lost-live");
    expect("signed-out");
    let status = browser.wait().unwrap();
    assert!(status.success(), "the browser script failed: {status:?}");
    mesh.shutdown().await;
}
