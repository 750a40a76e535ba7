//! The mesh's security status end to end: a dev mesh's gateways report to every
//! federation node; any node's `/v1/mesh` shows the east → west edge as mutual TLS with
//! east's verified SPIFFE ID; a gateway from an unknown root dialling east shows up as
//! `unknown_root` handshake failures on the west → east hop; when west's gateway stops,
//! the picture marks it lost within [`LOST_AFTER`] (plus a report round and a tick) and
//! the Server-Sent Events stream of `/v1/mesh/events` (read with curl) and the gRPC
//! `WatchMesh` stream deliver that. Plain bytes to a port declared TLS make an edge
//! partial.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isthmus_federation_api::mesh::{
    EdgeSecurity, GatewayState, HandshakeSide, LOST_AFTER, MeshPicture,
};
use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A change this bound after its cause has not come.
const WAIT: Duration = Duration::from_secs(40);

async fn picture_until(
    client: &isthmus_federation_api::client::FederationClient,
    what: &str,
    done: impl Fn(&MeshPicture) -> bool,
) -> MeshPicture {
    let deadline = Instant::now() + WAIT;
    loop {
        let picture = client.mesh().await.unwrap();
        if done(&picture) {
            return picture;
        }
        assert!(
            Instant::now() < deadline,
            "not within {WAIT:?}: {what}; last {picture:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request through east's import of echo; its answer.
async fn request(address: &str) -> String {
    request_on(address, 8080).await
}

async fn request_on(address: &str, port: u16) -> String {
    let mut tcp = tokio::net::TcpStream::connect(format!("{address}:{port}"))
        .await
        .unwrap();
    tcp.write_all(b"GET /status HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    reply
}

/// The `data:` lines of an SSE stream read by curl, as they come.
fn sse(mesh: &DevMesh, node: usize) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let rest = mesh.node(node).unwrap().listen.rest;
    let file = |f: &str| mesh.dir.join(f).to_string_lossy().into_owned();
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "120"])
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", rest.port())])
        .args(["--cacert", &file("bundle.pem")])
        .args(["--cert", &file("admin.pem"), "--key", &file("admin.key")])
        .arg(format!("https://localhost:{}/v1/mesh/events", rest.port()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // The stream opens with a comment: from then on every change reaches it.
            if line.starts_with(':') {
                let _ = ready_tx.send(());
            }
            if let Some(data) = line.strip_prefix("data:") {
                if tx.send(data.trim().to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    ready
        .recv_timeout(WAIT)
        .expect("the event stream opens with its comment");
    (child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picture_shows_mutual_tls_failures_and_a_lost_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let west_echo = echo_server("west").await.unwrap();
    mesh.add_cluster(&ClusterSpec {
        name: "west".into(),
        locality: "us-west".into(),
        import_range: "127.150.0.0/16".into(),
        dns: false,
        exports: vec![ExportSpec {
            namespace: "demo".into(),
            name: "echo".into(),
            port: 8080,
            endpoint: west_echo,
        }],
        // A service whose app speaks its own TLS (the echo behind it does not: a client
        // speaking plain HTTP to it is one that skipped its TLS).
        extra_config: format!(
            "[[exports]]\nnamespace = \"demo\"\nname = \"vault\"\n\
             ports = [{{ port = 8443, endpoints = [\"{west_echo}\"], app_protocol = \"tls\" }}]\n"
        ),
    })
    .await
    .unwrap();
    mesh.add_cluster(&ClusterSpec {
        name: "east".into(),
        locality: "us-east".into(),
        import_range: "127.151.0.0/16".into(),
        dns: true,
        exports: vec![],
        extra_config: String::new(),
    })
    .await
    .unwrap();
    let (mut curl, events) = sse(&mesh, 1);

    // A connection east → west.
    let east = mesh.members["east"].metrics();
    let deadline = Instant::now() + WAIT;
    while east.imported_services.get() < 2 {
        assert!(
            Instant::now() < deadline,
            "east never imported echo and vault"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dns = mesh.members["east"].addresses().dns.unwrap();
    let address = support::dig(dns, "echo.demo.svc.clusterset.local").await;
    let reply = request(&address).await;
    assert!(reply.contains("hello from west"), "{reply}");

    // Any node answers: the third one shows the edge, mutual TLS with east's identity.
    let third = mesh.node_client(2).unwrap();
    let east_id = "spiffe://dev.isthmus/cluster/east/gateway/ew";
    // Each gateway's reports reach each node on their own: wait for the edge and for
    // both gateways' reports since they applied the catalog and connected.
    let picture = picture_until(&third, "the east → west edge, mutual TLS", |p| {
        let edge = p.edges.iter().any(|e| {
            e.source_cluster == "east"
                && e.destination_cluster == "west"
                && e.service.as_deref() == Some("echo.demo")
                && e.security == EdgeSecurity::MutualTls
                && e.connections >= 1
                && e.peer_identities.iter().any(|id| id == east_id)
        });
        let gateways = ["east", "west"].iter().all(|cluster| {
            p.gateways.iter().any(|g| {
                g.cluster == *cluster
                    && g.catalog_revision > 0
                    && g.peers.iter().any(|peer| peer.connected)
            })
        });
        edge && gateways
    })
    .await;
    let edge = picture
        .edges
        .iter()
        .find(|e| e.service.as_deref() == Some("echo.demo"))
        .unwrap();
    assert_eq!(edge.mutual_tls, edge.connections, "{edge:?}");
    assert!(edge.bytes_received > 0 && edge.bytes_sent > 0, "{edge:?}");
    assert_eq!(
        edge.app_tls.none, edge.connections,
        "plain HTTP is no app TLS: {edge:?}"
    );
    assert!(
        edge.decisions
            .iter()
            .any(|d| d.decision == "allow" && d.rule == "allow-demo/every-cluster"),
        "{edge:?}"
    );
    assert_eq!(edge.reported_by, vec!["west/ew"]);

    // Plain bytes to the port declared TLS: the hop is mutual TLS, the app's leg is not,
    // and the edge shows as partial.
    let vault = support::dig(dns, "vault.demo.svc.clusterset.local").await;
    let reply = request_on(&vault, 8443).await;
    assert!(reply.contains("hello from west"), "{reply}");
    let picture = picture_until(&third, "east → vault.demo, partial", |p| {
        p.edges.iter().any(|e| {
            e.service.as_deref() == Some("vault.demo")
                && e.security == EdgeSecurity::Partial
                && e.plaintext_on_tls == 1
        })
    })
    .await;
    let vault = picture
        .edges
        .iter()
        .find(|e| e.service.as_deref() == Some("vault.demo"))
        .unwrap();
    assert_eq!(vault.mutual_tls, vault.connections, "{vault:?}");
    for cluster in ["east", "west"] {
        let g = picture
            .gateways
            .iter()
            .find(|g| g.cluster == cluster)
            .unwrap_or_else(|| panic!("{cluster} in {picture:#?}"));
        assert_eq!(g.state, GatewayState::Up, "{g:?}");
        assert_eq!(g.active_roots.len(), 1, "{g:?}");
        let kinds: Vec<&str> = g.certificates.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["leaf", "intermediate", "root"], "{g:?}");
        assert!(g.catalog_revision > 0, "{g:?}");
    }
    let west = picture
        .gateways
        .iter()
        .find(|g| g.cluster == "west")
        .unwrap();
    assert!(
        west.peers
            .iter()
            .any(|p| p.cluster == "east" && p.connected),
        "{west:?}"
    );

    // A gateway that claims to be west's, from a root east does not trust, dials east.
    let (impostor, mut tcp) = support::impostor(
        &mesh.root,
        "west",
        ("east", mesh.members["east"].quic_addr()),
    )
    .await;
    let mut nothing = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut nothing)).await;
    let first = mesh.node_client(0).unwrap();
    let picture = picture_until(
        &first,
        "unknown_root failures on the west → east hop",
        |p| {
            p.edges.iter().any(|e| {
                e.source_cluster == "west"
                    && e.destination_cluster == "east"
                    && e.service.is_none()
                    && e.security == EdgeSecurity::Failing
                    && e.handshake_failures
                        .iter()
                        .any(|f| f.side == HandshakeSide::Accept && f.reason == "unknown_root")
            })
        },
    )
    .await;
    // The real edge is not tainted by the impostor.
    let edge = picture
        .edges
        .iter()
        .find(|e| e.service.as_deref() == Some("echo.demo"))
        .unwrap();
    assert_eq!(edge.security, EdgeSecurity::MutualTls, "{edge:?}");
    impostor.abort().await;

    // West's gateway stops: within LOST_AFTER (and a report round and a tick) the
    // picture marks it lost, and the event stream says so.
    // The gRPC face's stream too (WatchMesh through the client), opened before.
    let mut grpc_events = mesh.node_client(0).unwrap().watch_mesh().await.unwrap();
    let stopped = Instant::now();
    mesh.stop_member("west").await;
    picture_until(&third, "west's gateway lost", |p| {
        p.gateways
            .iter()
            .any(|g| g.cluster == "west" && g.state == GatewayState::Lost)
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took >= LOST_AFTER / 2,
        "lost too soon ({took:?}): a missed report is not a lost gateway"
    );
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let data = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no lost event for west; saw {seen:#?}"));
        let event: serde_json::Value = serde_json::from_str(&data).unwrap();
        if event["kind"] == "gateway"
            && event["gateway"]["cluster"] == "west"
            && event["gateway"]["state"] == "lost"
        {
            assert_eq!(event["previous"], "stale", "{event}");
            break;
        }
        seen.push(event);
    }
    let lost_over_grpc = tokio::time::timeout(WAIT, async {
        while let Some(event) = grpc_events.next().await {
            if let isthmus_federation_api::mesh::MeshEvent::Gateway {
                previous, gateway, ..
            } = event.unwrap()
                && gateway.cluster == "west"
                && gateway.state == GatewayState::Lost
            {
                return previous;
            }
        }
        None
    })
    .await
    .expect("WatchMesh delivered west's loss");
    assert_eq!(lost_over_grpc, Some(GatewayState::Stale));
    // Earlier on the same stream: the east → west edge appeared as mutual TLS.
    assert!(
        seen.iter().any(|e| e["kind"] == "edge"
            && e["edge"]["service"] == "echo.demo"
            && e["edge"]["security"] == "mutual_tls"),
        "{seen:#?}"
    );
    let _ = curl.kill();
    let _ = curl.wait();
    mesh.shutdown().await;
}
