//! Alerts on the mesh's security status, delivered: a dev mesh whose federation sends
//! alerts to a real Alertmanager (Debian's `prometheus-alertmanager`, on loopback) and
//! to a webhook receiver. West's gateway stops: `IsthmusGatewayLost` fires, the webhook
//! gets Alertmanager's version 4 body, and Alertmanager lists the alert through its own
//! API. The leader stops while the alert fires: the new leader already holds it (every
//! node evaluates) and fires nothing again. West comes back: the alert resolves, told
//! once, by the new leader.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use isthmus_federation::alerts::config::{AlertSettings, Target};
use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};

/// Bound on each awaited change: LOST_AFTER (20 s) plus rounds of evaluation.
const WAIT: Duration = Duration::from_secs(60);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Alertmanager on loopback, with a config that routes everything nowhere (the test
/// reads its API) and no cluster gossip.
fn alertmanager(dir: &std::path::Path) -> (Killed, SocketAddr) {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n",
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager is installed (scripts/test installs it)");
    let child = Killed(child);
    let deadline = Instant::now() + WAIT;
    while get(addr, "/-/ready").is_err() {
        assert!(Instant::now() < deadline, "Alertmanager never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, addr)
}

/// A GET with curl: the body, or why not.
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://{addr}{path}"),
        ])
        .output()
        .expect("curl is installed");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A webhook receiver: every JSON body POSTed to it, as it comes.
fn webhook() -> (SocketAddr, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                if let Ok(value) = serde_json::from_slice(&body) {
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (addr, rx)
}

fn target(addr: SocketAddr, path: &str) -> Target {
    Target {
        authority: addr.to_string(),
        path: path.into(),
    }
}

/// Waits for a webhook body with an alert `alertname` about west in `status`.
fn until_hook(hooks: &mpsc::Receiver<serde_json::Value>, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let body = hooks
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {status} IsthmusGatewayLost webhook"));
        let found = body["alerts"].as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == "IsthmusGatewayLost"
                && a["labels"]["cluster"] == "west"
                && a["status"] == status
        });
        if found {
            return body;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_gateway_fires_at_alertmanager_and_the_webhook_then_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let (_am, am) = alertmanager(dir.path());
    let (hook, hooks) = webhook();
    let alerts = AlertSettings {
        evaluate_every: Duration::from_secs(1),
        keep_firing_for: Duration::from_secs(2),
        resend_every: Duration::from_secs(2),
        alertmanagers: vec![target(am, "/")],
        webhooks: vec![target(hook, "/alerts")],
        ..AlertSettings::default()
    };
    let mesh_dir = dir.path().join("mesh");
    std::fs::create_dir_all(&mesh_dir).unwrap();
    let mut mesh = DevMesh::start_with_alerts(&mesh_dir, 3, Duration::from_secs(3600), alerts)
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let (echo, ..) = (echo_server("west").await.unwrap(), ());
    for (name, range, exports) in [
        (
            "west",
            "127.170.0.0/16",
            vec![ExportSpec {
                namespace: "demo".into(),
                name: "echo".into(),
                port: 8080,
                endpoint: echo,
            }],
        ),
        ("east", "127.171.0.0/16", vec![]),
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

    mesh.stop_member("west").await;
    let fired = tokio::task::spawn_blocking(move || {
        let body = until_hook(&hooks, "firing");
        (body, hooks)
    })
    .await
    .unwrap();
    let (body, hooks) = fired;
    assert_eq!(body["version"], "4", "{body}");
    assert_eq!(body["receiver"], "isthmus", "{body}");
    let alert = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "IsthmusGatewayLost")
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(
        alert["startsAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{alert}"
    );

    // Alertmanager lists it through its own API.
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = tokio::task::spawn_blocking(move || get(am, "/api/v2/alerts"))
            .await
            .unwrap()
            .unwrap_or_default();
        let alerts: serde_json::Value = serde_json::from_str(&listed).unwrap_or_default();
        let lost = alerts.as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == "IsthmusGatewayLost"
                && a["labels"]["cluster"] == "west"
                && a["status"]["state"] == "active"
        });
        if lost {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager never listed the alert: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The leader stops while the alert fires. Another node takes over delivering; it
    // held the alert already, with the same start, and fires nothing again.
    let status = mesh
        .client()
        .unwrap()
        .status(isthmus_federation_api::status::Consistency::Stale)
        .await
        .unwrap();
    let leader = status.leader_id.expect("a leader");
    let leader_index = usize::try_from(leader - 1).unwrap();
    let before = mesh
        .node_client(leader_index)
        .unwrap()
        .alerts()
        .await
        .unwrap();
    let started = before
        .firing
        .iter()
        .find(|a| a.alertname == "IsthmusGatewayLost")
        .map(|a| a.starts_at)
        .expect("the leader lists the alert");
    mesh.stop_node(leader_index).await;
    let other = (leader_index + 1) % 3;
    let deadline = Instant::now() + WAIT;
    let taken_over = loop {
        let list = mesh.node_client(other).unwrap().alerts().await;
        if let Ok(list) = list {
            let new_leader = mesh
                .node_client(other)
                .unwrap()
                .status(isthmus_federation_api::status::Consistency::Stale)
                .await
                .ok()
                .and_then(|s| s.leader_id);
            if new_leader.is_some_and(|l| l != leader) {
                break list;
            }
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let held = taken_over
        .firing
        .iter()
        .find(|a| a.alertname == "IsthmusGatewayLost")
        .expect("the other node holds the alert firing");
    // Started within an evaluation of the old leader's start (each node saw the same
    // silence on its own clock).
    assert!(
        (held.starts_at - started).abs() <= 2,
        "{held:?} vs {started}"
    );
    // Five evaluations of the new leader: no webhook says the alert fires again.
    let new_leader_delivers = {
        let mut rounds = 0;
        let mut last = None;
        let deadline = Instant::now() + WAIT;
        loop {
            let list = mesh.node_client(other).unwrap().alerts().await.unwrap();
            let new_leader = mesh
                .node_client(other)
                .unwrap()
                .status(isthmus_federation_api::status::Consistency::Stale)
                .await
                .unwrap()
                .leader_id
                .unwrap();
            let delivering_node = usize::try_from(new_leader - 1).unwrap();
            let delivering = mesh
                .node_client(delivering_node)
                .unwrap()
                .alerts()
                .await
                .unwrap();
            if delivering.delivering && delivering.evaluated_at != last {
                rounds += 1;
                last = delivering.evaluated_at;
            }
            if rounds >= 5 {
                break list;
            }
            assert!(
                Instant::now() < deadline,
                "the new leader does not evaluate"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    assert!(
        new_leader_delivers
            .firing
            .iter()
            .any(|a| a.alertname == "IsthmusGatewayLost"),
        "{new_leader_delivers:?}"
    );
    let refired: Vec<serde_json::Value> = hooks
        .try_iter()
        .filter(|body| {
            body["alerts"].as_array().into_iter().flatten().any(|a| {
                a["labels"]["alertname"] == "IsthmusGatewayLost" && a["status"] == "firing"
            })
        })
        .collect();
    assert!(
        refired.is_empty(),
        "the new leader fired the alert again: {refired:?}"
    );

    // West comes back: the alert resolves, with its end.
    mesh.restart_member("west").await.unwrap();
    let body = tokio::task::spawn_blocking(move || until_hook(&hooks, "resolved"))
        .await
        .unwrap();
    let alert = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "IsthmusGatewayLost")
        .unwrap();
    assert!(
        !alert["endsAt"]
            .as_str()
            .unwrap_or("0001")
            .starts_with("0001"),
        "{alert}"
    );
    mesh.shutdown().await;
}
