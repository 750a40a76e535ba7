//! The federation's UI in a real browser: `tests/ui/live_topology.mjs` (playwright-core
//! driving Debian's chromium) against a dev mesh run here, step by step. A wrong token
//! is refused; a reader sees the mesh and can write nothing. Signed in as the dev
//! admin: the overview shows both clusters up; the topology shows the east → west edge
//! to `echo.demo` under a closed lock. Then, without a reload: (a) a gateway with a
//! certificate from a foreign root, claiming to be west's, dials east, and the west →
//! east hop shows a broken lock and `IsthmusHandshakeFailures` fires; (c) a shadow deny
//! rule is put and the policy page counts the connections it would have denied; (b)
//! west's gateway stops, it shows lost and `IsthmusGatewayLost` fires; west returns and
//! the alert resolves. Signing out ends the session. With `ISTHMUS_UI_SHOTS=<dir>` the
//! script saves a screenshot of each page there (docs/ui.md shows them). Needs
//! `tests/ui/node_modules` (`scripts/test` runs `npm ci`).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use isthmus_federation::alerts::config::AlertSettings;
use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A step of the browser script that has not passed in this long has failed (its own
/// waits are shorter: 30 s for a change to show, 60 s for a gateway to be lost).
const STEP: Duration = Duration::from_secs(120);

/// One request through east's import of echo: whether west's echo answered.
async fn call_echo() -> bool {
    let Ok(mut tcp) = tokio::net::TcpStream::connect("127.181.0.1:8080").await else {
        return false;
    };
    if tcp
        .write_all(b"GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_string(&mut reply)).await;
    reply.contains("hello from west")
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + STEP;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {STEP:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_the_mesh_live_to_a_signed_in_browser() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").exists(),
        "tests/ui/node_modules is missing: run `npm ci` in tests/ui (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let alerts = AlertSettings {
        evaluate_every: Duration::from_secs(1),
        keep_firing_for: Duration::from_secs(3),
        ..AlertSettings::default()
    };
    let mut mesh = DevMesh::start_with_alerts(dir.path(), 3, Duration::from_secs(3600), alerts)
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
    until("east imports echo", || east.imported_services.get() >= 1).await;
    assert!(call_echo().await, "east reaches west's echo");

    let rest = mesh.node(0).unwrap().listen.rest;
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let reader = std::fs::read_to_string(dir.path().join("reader.token")).unwrap();
    let mut browser = Command::new("node")
        .arg(ui.join("live_topology.mjs"))
        .current_dir(&ui)
        .env(
            "ISTHMUS_UI_URL",
            format!("https://127.0.0.1:{}", rest.port()),
        )
        .env("ISTHMUS_UI_TOKEN", token.trim())
        .env("ISTHMUS_UI_READER_TOKEN", reader.trim())
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
    let mut tell = |what: &str| writeln!(browser.stdin.as_mut().unwrap(), "{what}").unwrap();
    expect("wrong-token-refused");
    expect("reader-reads-only");
    expect("overview");
    expect("topology-mutual-tls");

    // (a) A gateway that claims to be west's, from a root east does not trust.
    let (impostor, tcp) = support::impostor(
        &mesh.root,
        "west",
        ("east", mesh.members["east"].quic_addr()),
    )
    .await;
    tell("impostor dialling");
    expect("impostor-broken-lock-and-alert");
    drop(tcp);
    impostor.drain(Duration::ZERO).await;

    // (c) A shadow deny rule on echo, and calls that it would deny (the allow lets
    // them through).
    mesh.put_policy(
        "audit",
        r#"{"rules":[{"name":"audit-echo","action":"deny","mode":"shadow",
            "from":[{"cluster":"east"}],"to":{"namespace":"demo","service":"echo"}}]}"#,
    )
    .await
    .unwrap();
    let west = mesh.members["west"].metrics();
    let shadow = isthmus_gateway::metrics::DecisionLabels {
        source_cluster: "east".into(),
        destination_service: "echo.demo".into(),
        decision: "shadow_deny".into(),
        rule: "audit/audit-echo".into(),
    };
    let deadline = Instant::now() + STEP;
    while west.decisions.get_or_create(&shadow).get() < 3 {
        assert!(Instant::now() < deadline, "the shadow rule never matched");
        assert!(call_echo().await, "the shadow rule denied a call");
    }
    tell("shadow traffic");
    expect("policy-would-deny");

    // (b) West's gateway stops, then comes back.
    mesh.stop_member("west").await;
    tell("west stopped");
    expect("west-lost-alert-fires");
    mesh.restart_member("west").await.unwrap();
    tell("west back");
    expect("west-back-alert-resolves");
    expect("signed-out");
    let status = browser.wait().unwrap();
    assert!(status.success(), "the browser script failed: {status:?}");
    mesh.shutdown().await;
}
