//! The mesh in one process (`DevMesh`: a 3-node federation, clusters enrolled with join
//! tokens, member gateways), driven through outages; `dig` and `curl` are the outside
//! clients. Waits are bounded polls; nothing sleeps to let time pass.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use isthmus_federation_api::model::{
    EndpointHealth, Expect, ExportPort, PortProtocol, ServiceExport,
};
use isthmus_federation_api::request::{PutCluster, PutExport, RevokeCluster};
use isthmus_federation_api::status::Consistency;
use isthmus_testkit::peer::probe_gateway;
use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::dig;

const BOUND: Duration = Duration::from_secs(30);

async fn curl(url: &str) -> Result<String, String> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "8", &url])
            .output()
            .expect("curl is installed");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await
    .unwrap()
}

async fn until<F: FnMut() -> bool>(what: &str, mut done: F) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON lines of an access log so far.
fn access_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Whether the access log at `path` has a line with every `(key, value)` of `fields`.
fn logged(path: &std::path::Path, fields: &[(&str, &str)]) -> bool {
    access_lines(path)
        .iter()
        .any(|line| fields.iter().all(|(k, v)| line[*k] == *v))
}

/// [`until`] for a condition that must ask the federation.
async fn until_async<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + BOUND;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec(
    name: &str,
    locality: &str,
    range: &str,
    dns: bool,
    exports: Vec<ExportSpec>,
) -> ClusterSpec {
    ClusterSpec {
        name: name.into(),
        locality: locality.into(),
        import_range: range.into(),
        dns,
        exports,
        extra_config: String::new(),
    }
}

fn echo(endpoint: SocketAddr, name: &str) -> ExportSpec {
    ExportSpec {
        namespace: "demo".into(),
        name: name.into(),
        port: 8080,
        endpoint,
    }
}

/// A 3-node federation, west exporting demo/echo (served by an echo server that says
/// "west") and east with DNS. East imports into `127.<octet>.0.0/16`, west into the next:
/// tests in this binary run at once and must not share listener addresses.
async fn west_and_east(dir: &std::path::Path, octet: u8) -> DevMesh {
    let mut mesh = DevMesh::start(dir, 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let west_echo = echo_server("west").await.unwrap();
    let west_range = format!("127.{}.0.0/16", octet + 1);
    let east_range = format!("127.{octet}.0.0/16");
    mesh.add_cluster(&spec(
        "west",
        "us-west",
        &west_range,
        false,
        vec![echo(west_echo, "echo")],
    ))
    .await
    .unwrap();
    mesh.add_cluster(&spec("east", "us-east", &east_range, true, vec![]))
        .await
        .unwrap();
    mesh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_outage_keeps_known_services_and_the_watch_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = west_and_east(dir.path(), 77).await;
    let metrics = mesh.members["east"].metrics();
    until("east imports echo", || metrics.imported_services.get() == 1).await;
    let dns = mesh.members["east"].addresses().dns.unwrap();
    let address = dig(dns, "echo.demo.svc.clusterset.local").await;
    let url = format!("http://{address}:8080/");
    assert!(curl(&url).await.unwrap().contains("hello from west"));

    // A connection opened before the outage, used during it.
    let mut held = tokio::net::TcpStream::connect(format!("{address}:8080"))
        .await
        .unwrap();
    for i in 0..3 {
        mesh.stop_node(i).await;
    }
    until("east notices the outage", || {
        metrics.federation_connected.get() == 0
    })
    .await;
    held.write_all(b"GET /held HTTP/1.1\r\nhost: echo\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    held.read_to_string(&mut reply).await.unwrap();
    assert!(
        reply.contains("hello from west") && reply.contains("/held"),
        "{reply}"
    );
    // New connections, and names, keep working from the last known catalog.
    for _ in 0..5 {
        assert!(curl(&url).await.unwrap().contains("hello from west"));
    }
    assert_eq!(dig(dns, "echo.demo.svc.clusterset.local").await, address);
    until("the catalog age grows past 2 s", || {
        metrics.catalog_age_seconds.get() >= 2.0
    })
    .await;

    // The federation returns: the watch resumes and a change made now reaches east.
    for i in 0..3 {
        mesh.start_node(i).await.unwrap();
    }
    until("east reconnects", || {
        metrics.federation_connected.get() == 1
    })
    .await;
    let before = metrics.catalog_revision.get();
    // A change made now, by a cluster with no gateway (so that no gateway's own
    // publishing touches it): a new member and its export.
    let south = isthmus_testkit::mesh::cluster_without_gateway("south");
    let added = ServiceExport {
        cluster: "south".into(),
        namespace: "demo".into(),
        name: "later".into(),
        ports: vec![ExportPort {
            name: "http".into(),
            port: 8080,
            protocol: PortProtocol::Http,
        }],
        health: EndpointHealth {
            healthy: 1,
            total: 1,
        },
        revision: 0,
    };
    let client = mesh.client().unwrap();
    let cluster = PutCluster {
        cluster: south,
        expect: Expect::Any,
    };
    let export = PutExport {
        export: added,
        expect: Expect::Any,
    };
    for step in 0..2 {
        let deadline = Instant::now() + BOUND;
        loop {
            // The first write after the restart may meet an election in progress.
            let written = match step {
                0 => client.put_cluster(cluster.clone()).await,
                _ => client.put_export(export.clone()).await,
            };
            match written {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no write after the restart: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    until("east imports the export made after the outage", || {
        metrics.imported_services.get() == 2
    })
    .await;
    assert!(metrics.catalog_revision.get() > before);
    assert!(metrics.catalog_age_seconds.get() < 2.0);
    assert!(!dig(dns, "later.demo.svc.clusterset.local").await.is_empty());
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_fail_over_to_the_other_exporting_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let (west_echo, south_echo) = (
        echo_server("west").await.unwrap(),
        echo_server("south").await.unwrap(),
    );
    // West shares east's region, so it is preferred while healthy.
    mesh.add_cluster(&spec(
        "west",
        "us-east/b",
        "127.88.0.0/16",
        false,
        vec![echo(west_echo, "echo")],
    ))
    .await
    .unwrap();
    mesh.add_cluster(&spec(
        "south",
        "sa-east",
        "127.89.0.0/16",
        false,
        vec![echo(south_echo, "echo")],
    ))
    .await
    .unwrap();
    // North is near east too, but its only endpoint is dead: its gateway answers that it
    // has no healthy endpoint, and the connection moves on.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    mesh.add_cluster(&spec(
        "north",
        "us-east/c",
        "127.86.0.0/16",
        false,
        vec![echo(dead, "echo")],
    ))
    .await
    .unwrap();
    mesh.add_cluster(&spec("east", "us-east/a", "127.87.0.0/16", true, vec![]))
        .await
        .unwrap();
    // Wait until east has applied all three exports.
    let client = mesh.client().unwrap();
    until_async("the three exports are in the catalog", || async {
        client
            .exports(Consistency::Linearizable)
            .await
            .is_ok_and(|l| l.items.len() == 3)
    })
    .await;
    let target = client
        .exports(Consistency::Linearizable)
        .await
        .unwrap()
        .revision;
    let mut east_revision = mesh.members["east"].revision();
    tokio::time::timeout(BOUND, east_revision.wait_for(|r| *r >= target))
        .await
        .unwrap()
        .unwrap();
    let dns = mesh.members["east"].addresses().dns.unwrap();
    let deadline = Instant::now() + BOUND;
    let url = loop {
        let address = dig(dns, "echo.demo.svc.clusterset.local").await;
        // Both exporters known: wait until east has seen both clusters' exports.
        if !address.is_empty()
            && mesh.members["east"]
                .catalog()
                .current()
                .peer("south")
                .is_some()
        {
            break format!("http://{address}:8080/");
        }
        assert!(
            Instant::now() < deadline,
            "east never imported echo from both"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for _ in 0..5 {
        let body = curl(&url).await.unwrap();
        assert!(
            body.contains("hello from west"),
            "the nearer region first: {body}"
        );
    }

    mesh.stop_member("west").await;
    // Every new connection succeeds, through south; the first may wait for west's dial
    // to fail (half of timeouts.stream_open), the next go straight to south.
    let mut waits = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let body = curl(&url)
            .await
            .unwrap_or_else(|e| panic!("connection {i} after west went down failed: {e}"));
        assert!(body.contains("hello from south"), "{body}");
        waits.push(started.elapsed());
    }
    eprintln!("connection times after west went down: {waits:?}");
    // With south gone too, only north is left; its dead endpoint is ejected after its
    // consecutive failures, and north tells the federation it has no healthy endpoint.
    mesh.stop_member("south").await;
    let north_health = || async {
        client
            .exports(Consistency::Stale)
            .await
            .ok()?
            .items
            .iter()
            .find(|e| e.cluster == "north")
            .map(|e| e.health.healthy)
    };
    // North published 1 healthy endpoint at start (its config lists one); 0 can only
    // come from its live count. Its earlier refusals may have ejected it already.
    let deadline = Instant::now() + BOUND;
    while north_health().await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "north never reported its endpoint down"
        );
        assert!(curl(&url).await.is_err(), "no cluster can serve now");
    }
    let north = mesh.members["north"].metrics().encode();
    assert!(
        north
            .lines()
            .any(|l| l.starts_with("isthmus_gateway_stream_refusals_total{")
                && l.contains("inbound")),
        "north never refused a stream, so its dead endpoint was never tried: {north}"
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_root_rotation_drops_no_connection_and_retires_the_old_root() {
    use isthmus_ca::{Authority, KeyAlgorithm, TrustBundle};
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = west_and_east(dir.path(), 97).await;
    let east = mesh.members["east"].metrics();
    until("east imports echo", || east.imported_services.get() == 1).await;
    let dns = mesh.members["east"].addresses().dns.unwrap();
    let url = format!(
        "http://{}:8080/",
        dig(dns, "echo.demo.svc.clusterset.local").await
    );
    let west_quic = mesh.members["west"].quic_addr();

    // Traffic for the whole rotation: every request must succeed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match curl(&url).await {
                    Ok(body) if body.contains("hello from west") => ok += 1,
                    Ok(body) => failed.push(body),
                    Err(e) => failed.push(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };

    let root_b = Authority::new_root(
        &mesh.trust_domain,
        KeyAlgorithm::EcdsaP256,
        Duration::from_secs(86_400 * 365),
        std::time::SystemTime::now(),
    )
    .unwrap();
    // The staged rotation, each stage waited for (the testkit's procedure, also the
    // soak's): A+B everywhere, nodes on B one at a time, intermediates re-signed by B,
    // A removed.
    let root_a = mesh.rotate_root(root_b).await.unwrap();
    let td = mesh.trust_domain.clone();
    let b = mesh.root.cert_chain_pem();
    // Let the peers' old connections pass their grace period while traffic goes on.
    tokio::time::sleep(isthmus_gateway::recheck::GRACE + Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rotation: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 20, "only {ok} requests ran");
    eprintln!("{ok} requests during the rotation, none failed");
    assert!(curl(&url).await.unwrap().contains("hello from west"));

    // A certificate chained to the removed root is refused; one from B is accepted.
    let b_only = TrustBundle::from_pem(td.clone(), &b).unwrap();
    let old = root_a
        .new_cluster_intermediate(
            "east",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86_400),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let new = mesh
        .root
        .new_cluster_intermediate(
            "east",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86_400),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let refused = probe_gateway(west_quic, &old, "east", b_only.clone()).await;
    assert!(
        refused.is_err(),
        "a leaf from the removed root was accepted"
    );
    probe_gateway(west_quic, &new, "east", b_only)
        .await
        .unwrap();
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_cluster_is_refused_by_its_peers() {
    use isthmus_ca::KeyAlgorithm;
    let dir = tempfile::tempdir().unwrap();
    let mesh = west_and_east(dir.path(), 107).await;
    let east = mesh.members["east"].metrics();
    until("east imports echo", || east.imported_services.get() == 1).await;
    let east_quic = mesh.members["east"].quic_addr();
    let bundle =
        isthmus_ca::TrustBundle::from_pem(mesh.trust_domain.clone(), &mesh.root.cert_chain_pem())
            .unwrap();
    // Any valid chain for a gateway of west (here from a fresh intermediate of the same
    // root) is accepted while west is a member...
    let west_ca = mesh
        .root
        .new_cluster_intermediate(
            "west",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86_400),
            std::time::SystemTime::now(),
        )
        .unwrap();
    probe_gateway(east_quic, &west_ca, "west", bundle.clone())
        .await
        .unwrap();
    // ...and, once west is revoked, refused, though the chain is as valid as before.
    mesh.client()
        .unwrap()
        .revoke_cluster(RevokeCluster {
            name: "west".into(),
        })
        .await
        .unwrap();
    let catalog = mesh.members["east"].catalog();
    until("east drops west as a peer", || {
        catalog.current().peer("west").is_none()
    })
    .await;
    // The peer goes first, then its imports (the same catalog change, applied in order).
    until("east drops west's imports", || {
        east.imported_services.get() == 0
    })
    .await;
    let refused = probe_gateway(east_quic, &west_ca, "west", bundle).await;
    assert!(
        refused.is_err(),
        "a gateway of the revoked cluster was accepted"
    );
    // East names the revoked cluster that still dials (its alert needs the name).
    let revoked = east
        .handshake_failures
        .get_or_create(&isthmus_gateway::metrics::HandshakeLabels {
            side: isthmus_gateway::metrics::Side::Accept,
            peer_cluster: "west".into(),
            reason: "revoked".into(),
        })
        .get();
    assert_eq!(revoked, 1, "the refusal is counted as a revoked cluster's");
    mesh.shutdown().await;
}

/// One raw request through east's import of demo/echo: the echo's answer, or `None`
/// when the connection was refused (closed with nothing sent back, or reset so fast
/// that the connect itself reports it).
async fn request(address: &str) -> Option<String> {
    let mut tcp = tokio::net::TcpStream::connect(format!("{address}:8080"))
        .await
        .ok()?;
    let _ = tcp
        .write_all(b"GET /p HTTP/1.1\r\nhost: echo\r\n\r\n")
        .await;
    let mut reply = String::new();
    let _ = tokio::time::timeout(BOUND, tcp.read_to_string(&mut reply)).await;
    reply.contains("hello from west").then_some(reply)
}

fn decisions(
    m: &isthmus_gateway::metrics::Metrics,
    decision: &str,
    service: &str,
    rule: &str,
) -> u64 {
    m.decisions
        .get_or_create(&isthmus_gateway::metrics::DecisionLabels {
            source_cluster: "east".into(),
            destination_service: service.into(),
            decision: decision.into(),
            rule: rule.into(),
        })
        .get()
}

/// Waits until east's requests to echo get `allowed` answers (the receiving gateway
/// applies policy changes when its watch delivers them).
async fn until_requests(address: &str, allowed: bool, what: &str) {
    let deadline = Instant::now() + BOUND;
    while request(address).await.is_some() != allowed {
        assert!(Instant::now() < deadline, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_cluster_traffic_is_denied_unless_allowed_and_shadow_rules_only_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    let west_echo = echo_server("west").await.unwrap();
    mesh.add_cluster(&spec(
        "west",
        "us-west",
        "127.118.0.0/16",
        false,
        vec![echo(west_echo, "echo")],
    ))
    .await
    .unwrap();
    mesh.add_cluster(&spec("east", "us-east", "127.117.0.0/16", true, vec![]))
        .await
        .unwrap();
    let east = mesh.members["east"].metrics();
    let west = mesh.members["west"].metrics();
    until("east imports echo", || east.imported_services.get() == 1).await;
    let address = dig(
        mesh.members["east"].addresses().dns.unwrap(),
        "echo.demo.svc.clusterset.local",
    )
    .await;

    // No policy: the name resolves, the connection is refused by west's default deny.
    assert!(request(&address).await.is_none(), "denied without a policy");
    let svc = "echo.demo";
    until("west counts the default deny", || {
        decisions(&west, "deny", svc, "default-deny") >= 1
    })
    .await;

    // An allow rule for east lets it through, named by the rule.
    let allow = r#"{"rules":[{"name":"east-reads-echo","action":"allow",
        "from":[{"cluster":"east"}],"to":{"namespace":"demo","service":"echo","ports":[8080]}}]}"#;
    mesh.put_policy("echo-access", allow).await.unwrap();
    until_requests(&address, true, "the allow rule admits east").await;
    assert!(decisions(&west, "allow", svc, "echo-access/east-reads-echo") >= 1);
    let curled = curl(&format!("http://{address}:8080/")).await.unwrap();
    assert!(curled.contains("hello from west"), "{curled}");

    // An enforced deny wins over the allow.
    let deny = r#"{"rules":[{"name":"freeze","action":"deny",
        "from":[{"cluster":"*"}],"to":{"namespace":"demo","service":"echo"}}]}"#;
    mesh.put_policy("freeze", deny).await.unwrap();
    until_requests(&address, false, "the deny rule wins").await;
    let denied = decisions(&west, "deny", svc, "freeze/freeze");
    assert!(denied >= 1);
    let refused = |m: &isthmus_gateway::metrics::Metrics, direction| {
        m.refusals
            .get_or_create(&isthmus_gateway::metrics::RefusalLabels {
                direction,
                status: "denied".into(),
                destination_service: svc.into(),
            })
            .get()
    };
    assert!(
        refused(&east, isthmus_gateway::metrics::Direction::Outbound) >= 1,
        "east sees the status"
    );
    // Both access logs say so: west names the rule, east the refusal.
    let (west_log, east_log) = (mesh.access_log("west"), mesh.access_log("east"));
    let west_denial = [
        ("direction", "inbound"),
        ("destination_service", svc),
        ("policy_decision", "deny"),
        ("policy_rule", "freeze/freeze"),
        ("response_flags", "PD"),
        ("source_cluster", "east"),
    ];
    until("west logs the denial with its rule", || {
        logged(&west_log, &west_denial)
    })
    .await;
    let east_denial = [
        ("direction", "outbound"),
        ("destination_service", svc),
        ("policy_decision", "deny"),
        ("response_flags", "PD"),
    ];
    until("east logs the refusal", || logged(&east_log, &east_denial)).await;
    let default_deny = [("policy_rule", "default-deny"), ("policy_decision", "deny")];
    assert!(logged(&west_log, &default_deny), "the first, default deny");

    // The same deny in shadow mode lets traffic through and counts what it would deny.
    let shadow = r#"{"rules":[{"name":"freeze","action":"deny","mode":"shadow",
        "from":[{"cluster":"*"}],"to":{"namespace":"demo","service":"echo"}}]}"#;
    mesh.put_policy("freeze", shadow).await.unwrap();
    until_requests(&address, true, "the shadow deny lets traffic through").await;
    // Requests made while waiting were denied by the enforced version: count from here.
    let denied = decisions(&west, "deny", svc, "freeze/freeze");
    let before = decisions(&west, "shadow_deny", svc, "freeze/freeze");
    for _ in 0..3 {
        assert!(request(&address).await.is_some(), "shadow never denies");
    }
    assert_eq!(
        decisions(&west, "shadow_deny", svc, "freeze/freeze"),
        before + 3
    );
    assert_eq!(
        decisions(&west, "deny", svc, "freeze/freeze"),
        denied,
        "no enforced deny since"
    );
    let finding = [
        ("policy_decision", "shadow_deny"),
        ("policy_rule", "freeze/freeze"),
        ("response_flags", "-"),
    ];
    until("west logs the shadow finding", || {
        logged(&west_log, &finding)
    })
    .await;

    // A shadow allow on a denied connection is counted and still denied.
    let trial = r#"{"rules":[{"name":"east-reads-echo","action":"allow","mode":"shadow",
        "from":[{"cluster":"east"}],"to":{"namespace":"demo","service":"echo"}}]}"#;
    mesh.put_policy("echo-access", trial).await.unwrap();
    until_requests(&address, false, "only a shadow allow is left").await;
    assert!(decisions(&west, "shadow_allow", svc, "echo-access/east-reads-echo") >= 1);
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_refuse_the_excess_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    // At most 2 connections open at once from any one cluster.
    let policy = r#"{"rules":[{"name":"all","action":"allow","from":[{"cluster":"*"}],"to":{"namespace":"demo"}}],
        "rate_limits":[{"name":"echo-open","to":{"namespace":"demo","service":"echo"},
                        "connections_per_second":1000,"max_concurrent":2}]}"#;
    mesh.put_policy("demo", policy).await.unwrap();
    let west_echo = echo_server("west").await.unwrap();
    mesh.add_cluster(&spec(
        "west",
        "us-west",
        "127.128.0.0/16",
        false,
        vec![echo(west_echo, "echo")],
    ))
    .await
    .unwrap();
    mesh.add_cluster(&spec("east", "us-east", "127.127.0.0/16", true, vec![]))
        .await
        .unwrap();
    let east = mesh.members["east"].metrics();
    let west = mesh.members["west"].metrics();
    until("east imports echo", || east.imported_services.get() == 1).await;
    let address = dig(
        mesh.members["east"].addresses().dns.unwrap(),
        "echo.demo.svc.clusterset.local",
    )
    .await;
    until_requests(&address, true, "the policy admits east").await;

    // Two idle connections hold both places (east opens the tunnel on accept).
    let active = || {
        west.connections_active
            .get_or_create(&isthmus_gateway::metrics::ConnLabels {
                direction: isthmus_gateway::metrics::Direction::Inbound,
                source_cluster: "east".into(),
                destination_service: "echo.demo".into(),
                security: isthmus_gateway::metrics::Security::MutualTls,
            })
            .get()
    };
    // The requests made while waiting for the policy may still be closing at west; they
    // count against the limit until they have.
    until("earlier connections closed at west", || active() == 0).await;
    let held: Vec<_> = {
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(
                tokio::net::TcpStream::connect(format!("{address}:8080"))
                    .await
                    .unwrap(),
            );
        }
        held
    };
    until("west holds both connections", || active() == 2).await;
    assert!(
        request(&address).await.is_none(),
        "a third is over the limit"
    );
    assert_eq!(
        decisions(&west, "rate_limited", "echo.demo", "demo/echo-open"),
        1
    );
    let over = west
        .refusals
        .get_or_create(&isthmus_gateway::metrics::RefusalLabels {
            direction: isthmus_gateway::metrics::Direction::Inbound,
            status: "rate_limited".into(),
            destination_service: "echo.demo".into(),
        })
        .get();
    assert_eq!(over, 1);

    // Closing one frees a place.
    drop(held);
    until("west sees them closed", || active() == 0).await;
    assert!(request(&address).await.is_some(), "recovered");

    // A rate limit: a burst of 3, then 1 a second. Quick requests use up the burst and
    // are refused; after a quiet moment the bucket has refilled and one passes again.
    let rate = r#"{"rules":[{"name":"all","action":"allow","from":[{"cluster":"*"}],"to":{"namespace":"demo"}}],
        "rate_limits":[{"name":"echo-rate","from_cluster":"east","to":{"namespace":"demo","service":"echo"},
                        "connections_per_second":1,"burst":3}]}"#;
    mesh.put_policy("demo", rate).await.unwrap();
    until_requests(&address, false, "the rate limit refuses the excess").await;
    assert!(decisions(&west, "rate_limited", "echo.demo", "demo/echo-rate") >= 1);
    until_requests(&address, true, "the bucket refills").await;
    mesh.shutdown().await;
}

/// West's inbound connections from east open now, to `service`.
fn inbound_open(m: &isthmus_gateway::metrics::Metrics, service: &str) -> i64 {
    m.connections_active
        .get_or_create(&isthmus_gateway::metrics::ConnLabels {
            direction: isthmus_gateway::metrics::Direction::Inbound,
            source_cluster: "east".into(),
            destination_service: service.into(),
            security: isthmus_gateway::metrics::Security::MutualTls,
        })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_cuts_the_open_connections_it_denies_and_spares_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    mesh.allow_namespace("demo").await.unwrap();
    let west_echo = echo_server("west").await.unwrap();
    mesh.add_cluster(&spec(
        "west",
        "us-west",
        "127.111.0.0/16",
        false,
        vec![echo(west_echo, "echo"), echo(west_echo, "other")],
    ))
    .await
    .unwrap();
    mesh.add_cluster(&spec("east", "us-east", "127.110.0.0/16", true, vec![]))
        .await
        .unwrap();
    let east = mesh.members["east"].metrics();
    until("east imports echo and other", || {
        east.imported_services.get() == 2
    })
    .await;
    let dns = mesh.members["east"].addresses().dns.unwrap();
    let echo_addr = dig(dns, "echo.demo.svc.clusterset.local").await;
    let other_addr = dig(dns, "other.demo.svc.clusterset.local").await;
    // Two connections open and half-way through a request: both tunnels are carrying.
    let mut to_echo = tokio::net::TcpStream::connect(format!("{echo_addr}:8080"))
        .await
        .unwrap();
    let mut to_other = tokio::net::TcpStream::connect(format!("{other_addr}:8080"))
        .await
        .unwrap();
    to_echo.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    to_other.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let west = mesh.members["west"].metrics();
    until("both tunnels open at west", || {
        inbound_open(&west, "echo.demo") == 1 && inbound_open(&west, "other.demo") == 1
    })
    .await;

    // A deny of echo: its open tunnel is cut, other's is not.
    let put = Instant::now();
    mesh.put_policy(
        "no-echo",
        r#"{"rules":[{"name":"no-echo","action":"deny","from":[{"cluster":"*"}],"to":{"namespace":"demo","service":"echo"}}]}"#,
    )
    .await
    .unwrap();
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(BOUND, to_echo.read_to_end(&mut rest)).await;
    assert!(
        cut.is_ok(),
        "the denied tunnel is still open after {BOUND:?}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("hello from west"),
        "the denied connection was answered"
    );
    let took = put.elapsed();
    let revoked = west
        .connections_revoked
        .get_or_create(&isthmus_gateway::metrics::RevokedLabels {
            source_cluster: "east".into(),
            destination_service: "echo.demo".into(),
            rule: "no-echo/no-echo".into(),
        })
        .get();
    assert_eq!(revoked, 1, "counted with the rule");
    // The one still allowed carries on: the rest of its request gets the answer.
    to_other.write_all(b"host: other\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(BOUND, to_other.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.contains("hello from west"), "{answer}");
    // West's access log says why, with the rule.
    let log = mesh.access_log("west");
    let deadline = Instant::now() + BOUND;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text.lines().find(|l| l.contains("policy_revoked"));
        if let Some(line) = line {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(entry["policy_rule"], "no-echo/no-echo", "{entry}");
            assert_eq!(entry["destination_service"], "echo.demo", "{entry}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no policy_revoked line in {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("the denied tunnel closed {took:?} after the policy was put");
    mesh.shutdown().await;
}

/// The soak's rotation, short (`isthmus bench soak rotation` runs it for minutes): held
/// connections opened under A are closed within the grace of A's removal, those opened
/// once the gateways issue from B survive it (they did not before gateways retired
/// their own connections on adopting the new intermediate), and no new connection
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_under_the_new_root_survive_the_removal_of_the_old() {
    use isthmus_testkit::soak::traffic::TrafficOptions;
    use isthmus_testkit::soak::{Options, Scenario, run};
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(Scenario::Rotation, dir.path().to_owned());
    options.duration = Duration::from_secs(2);
    options.sample_every = Duration::from_secs(2);
    options.traffic = TrafficOptions {
        held: 20,
        ping_every: Duration::from_millis(500),
        new_per_second: 20,
    };
    let report = run(&options, |_| {}).await.unwrap();
    for check in &report.checks {
        eprintln!("[{}] {}: {}", check.passed, check.what, check.detail);
    }
    assert!(
        report.passed(),
        "{} failed exchanges ({:?}); checks: {:#?}",
        report.failed,
        report.failures.first(),
        report.checks
    );
    assert!(report.new_ok > 0, "no new connection ran");
}
