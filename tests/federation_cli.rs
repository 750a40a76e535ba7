//! The federation through the binary: three `isthmus federation serve` processes with
//! certificates from `isthmus ca`, bootstrapped with `federation init` and
//! `member add`, written to by `curl` over REST while the leader is killed with SIGKILL
//! and restarted. Every acknowledged write must be on every node afterwards, and a
//! watch opened before the writes must deliver them all in order, without gaps.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isthmus_federation_api::client::{ClientTls, FederationClient};
use isthmus_federation_api::mirror::CatalogMirror;
use support::{BOUND, Dir, Proc, free_port};

const ALICE: &str = "spiffe://mesh.example/cluster/ops/ns/admin/sa/alice";

struct Node {
    id: u64,
    config: PathBuf,
    raft: String,
    admin: String,
    rest: u16,
}

fn setup(dir: &Dir) -> Vec<Node> {
    dir.isthmus("ca init --trust-domain mesh.example --out @root")
        .ok();
    dir.isthmus("ca intermediate --root-dir @root --cluster ops --out @ops")
        .ok();
    dir.isthmus(&format!(
        "ca issue --ca-dir @ops --spiffe-id {ALICE} --ttl 1h --out @alice"
    ))
    .ok();
    (1..=3)
        .map(|id| {
            dir.isthmus(&format!(
                "ca issue --ca-dir @root --spiffe-id spiffe://mesh.example/federation/node-{id} --dns localhost --ttl 24h --out @node-{id}"
            ))
            .ok();
            let (raft, admin, rest) = (free_port(), free_port(), free_port());
            let config = dir.path(&format!("fed-{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    r#"node_id = {id}
name = "node-{id}"
data_dir = "data-{id}"

[listen]
raft = "{raft}"
admin = "{admin}"
rest = "{rest}"

[tls]
bundle = "node-{id}/bundle.pem"
cert = "node-{id}/cert.pem"
key = "node-{id}/key.pem"

[admin]
clients = ["{ALICE}"]
"#
                ),
            )
            .unwrap();
            Node {
                id,
                config: config.into(),
                raft: raft.to_string(),
                admin: admin.to_string(),
                rest: rest.port(),
            }
        })
        .collect()
}

fn serve(node: &Node) -> Proc {
    let config = node.config.to_str().unwrap();
    let mut proc = Proc::spawn(
        env!("CARGO_BIN_EXE_isthmus"),
        &["federation", "serve", "--config", config],
    );
    proc.wait_for(" ready");
    proc
}

fn admin(dir: &Dir, node: &Node, args: &str) -> support::Run {
    dir.isthmus(&format!(
        "federation {args} --server {} --bundle @alice/bundle.pem --cert @alice/cert.pem --key @alice/key.pem",
        node.admin
    ))
}

/// `curl` with alice's certificate against `node`'s REST port: (status, body).
fn curl(
    dir: &Path,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .arg("--cacert")
    .arg(dir.join("alice/bundle.pem"))
    .arg("--cert")
    .arg(dir.join("alice/cert.pem"))
    .arg("--key")
    .arg(dir.join("alice/key.pem"))
    .arg("--resolve")
    .arg(format!("localhost:{port}:127.0.0.1"))
    .arg(format!("https://localhost:{port}{path}"))
    .stderr(Stdio::null());
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "--data", body]);
    }
    let output = cmd
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let Some((body, code)) = text.rsplit_once('\n') else {
        return (0, serde_json::Value::Null);
    };
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn leader(dir: &Dir, node: &Node) -> u64 {
    let deadline = Instant::now() + BOUND;
    loop {
        let status = admin(dir, node, "status --json");
        if status.success {
            let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
            if json["state"] == "leader"
                && json["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["voter"] == true)
                    .count()
                    == 3
            {
                return json["node_id"].as_u64().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader with 3 voters: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_processes_lose_no_acknowledged_write_when_the_leader_is_killed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = Dir::new();
    let nodes = setup(&dir);
    let mut procs: Vec<Option<Proc>> = nodes.iter().map(|n| Some(serve(n))).collect();

    let init = admin(&dir, &nodes[0], "init").ok();
    assert!(init.stdout.contains("leader"), "{init:?}");
    for node in &nodes[1..] {
        let added = admin(
            &dir,
            &nodes[0],
            &format!(
                "member add --id {} --name node-{} --raft-addr {} --admin-addr {} --rest-addr 127.0.0.1:{}",
                node.id, node.id, node.raft, node.admin, node.rest
            ),
        )
        .ok();
        assert!(
            added.stdout.contains(&format!("node-{}", node.id)),
            "{added:?}"
        );
    }
    let list = admin(&dir, &nodes[2], "member list").ok();
    assert_eq!(list.stdout.matches("voter").count(), 3, "{list:?}");
    let old_leader = leader(&dir, &nodes[1]);
    let watched = nodes.iter().find(|n| n.id != old_leader).unwrap();

    // A watch on a node that survives, opened before any write.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut watch = runtime.block_on(async {
        let tls = ClientTls::from_files(
            (Path::new(&dir.path("alice/bundle.pem")), "bundle"),
            (Path::new(&dir.path("alice/cert.pem")), "cert"),
            (Path::new(&dir.path("alice/key.pem")), "key"),
        )
        .unwrap();
        FederationClient::new([watched.admin.as_str()], tls)
            .unwrap()
            .watch(0)
            .await
            .unwrap()
    });

    // A writer that keeps writing through every node's REST port, in turn.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let ports: Vec<u16> = nodes.iter().map(|n| n.rest).collect();
        let root = PathBuf::from(dir.path(""));
        std::thread::spawn(move || {
            let mut attempts = 0u64;
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return attempts;
                }
                attempts += 1;
                let name = format!("w-{i}");
                let body = format!(
                    r#"{{"name":"{name}","gateways":[{{"name":"ew","address":"127.0.0.1:15443"}}]}}"#
                );
                let (code, _) = curl(
                    &root,
                    ports[i % ports.len()],
                    "PUT",
                    &format!("/v1/clusters/{name}"),
                    Some(&body),
                );
                if code == 200 {
                    acked.lock().unwrap().insert(name);
                }
            }
            attempts
        })
    };
    let wait_acked = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "writes stalled at {}",
                acked.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acked(20);
    let index = usize::try_from(old_leader - 1).unwrap();
    // SIGKILL: no chance to flush anything that was not already durable.
    let mut killed = procs[index].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let at_kill = acked.lock().unwrap().len();
    wait_acked(at_kill + 20);
    procs[index] = Some(serve(&nodes[index]));
    wait_acked(at_kill + 30);
    stop.store(true, Ordering::Relaxed);
    let attempts = writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(attempts >= acked.len() as u64);

    // Every node, the restarted one included, holds every acknowledged write.
    let mut final_revision = 0;
    for node in &nodes {
        let deadline = Instant::now() + BOUND;
        loop {
            let (code, list) = curl(
                Path::new(&dir.path("")),
                node.rest,
                "GET",
                "/v1/clusters",
                None,
            );
            let names: BTreeSet<String> = list["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|c| c["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if code == 200 && acked.is_subset(&names) {
                final_revision = final_revision.max(list["revision"].as_u64().unwrap());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} misses acknowledged writes (HTTP {code}): {:?}",
                node.id,
                acked.difference(&names).take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // The watch delivered them all, in order, with no gap or duplicate.
    let mut mirror = CatalogMirror::new();
    runtime.block_on(async {
        while mirror.revision() < final_revision {
            let message = tokio::time::timeout(BOUND, watch.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            mirror
                .apply_watched(message)
                .unwrap_or_else(|e| panic!("watch broke its guarantees: {e}"));
        }
    });
    let watched_names: BTreeSet<String> = mirror.state().clusters.keys().cloned().collect();
    assert!(acked.is_subset(&watched_names));
    eprintln!(
        "{} writes acknowledged of {attempts} attempted; leader {old_leader} killed after {at_kill}; watch saw {} messages up to revision {final_revision}",
        acked.len(),
        mirror.messages()
    );
    for proc in procs.iter_mut().flatten() {
        assert!(proc.terminate().success());
    }
}

#[test]
fn a_bad_federation_config_names_the_field() {
    let dir = Dir::new();
    std::fs::write(
        dir.path("bad.toml"),
        "node_id = 0\nname = \"Node_1\"\ndata_dir = \"d\"\n[listen]\nraft = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:1\"\nrest = \"127.0.0.1:2\"\n[tls]\nbundle = \"b\"\ncert = \"c\"\nkey = \"k\"\n[raft]\nheartbeat_ms = 100\nelection_timeout_min_ms = 200\n",
    )
    .unwrap();
    let run = dir.isthmus("config check federation @bad.toml");
    assert_eq!(run.code, Some(1), "{run:?}");
    for field in [
        "`node_id`",
        "`name`",
        "`listen.admin`",
        "`raft.election_timeout_min_ms`",
    ] {
        assert!(run.stderr.contains(field), "{field}: {}", run.stderr);
    }
    let run = dir.isthmus("federation serve --config @bad.toml");
    assert!(!run.success);
    assert!(run.stderr.contains("`node_id`"), "{}", run.stderr);
}

#[test]
fn tokens_roles_and_policies_through_the_cli() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = Dir::new();
    let nodes = setup(&dir);
    let node = &nodes[0];
    // A reader token: its entry goes into the node's config, only the hash is stored.
    let minted = dir.isthmus("federation token create ci --role reader").ok();
    let token = minted.stdout.trim().to_owned();
    assert!(token.starts_with("isthmus-admin-v1."), "{minted:?}");
    assert!(!minted.stderr.contains(&token), "the token is printed once");
    let mut config = std::fs::read_to_string(&node.config).unwrap();
    config.push_str(&minted.stderr);
    std::fs::write(&node.config, config).unwrap();
    let refused = dir.isthmus("federation token create x --role namespace-admin");
    assert!(
        !refused.success && refused.stderr.contains("at least one --namespace"),
        "{refused:?}"
    );

    let _proc = serve(node);
    admin(&dir, node, "init").ok();
    let with_token = |args: &str| {
        dir.isthmus(&format!(
            "federation {args} --server {} --bundle @alice/bundle.pem --token {token}",
            node.admin
        ))
    };
    let listed = with_token("cluster list").ok();
    assert!(listed.stdout.contains("NAME"), "{listed:?}");

    // Policies: the platform admin writes, the reader reads and may not write.
    let policy = dir.path("policy.json");
    std::fs::write(
        &policy,
        r#"{"rules":[{"name":"east-to-echo","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo","service":"echo"}}]}"#,
    )
    .unwrap();
    // Admission: the policy names cluster east, which does not exist yet.
    let early = admin(&dir, node, "policy put demo --file @policy.json");
    assert!(
        !early.success
            && early.stderr.contains("body.rules[0].from[0].cluster")
            && early.stderr.contains("unknown cluster \"east\""),
        "{early:?}"
    );
    let (code, body) = curl(
        Path::new(&dir.path("")),
        node.rest,
        "PUT",
        "/v1/clusters/east",
        Some(r#"{"name":"east","gateways":[{"name":"ew","address":"127.0.0.1:15443"}]}"#),
    );
    assert_eq!(code, 200, "{body}");
    let put = admin(&dir, node, "policy put demo --file @policy.json").ok();
    assert!(put.stdout.contains("policy demo written"), "{put:?}");
    let denied = with_token("policy put demo --file @policy.json");
    assert!(
        !denied.success
            && denied.stderr.contains("PermissionDenied")
            && denied
                .stderr
                .contains("token:ci (reader) may not change policies"),
        "{denied:?}"
    );
    let list = with_token("policy list").ok();
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("demo") && l.split_whitespace().nth(2) == Some("1")),
        "{list:?}"
    );
    let got = with_token("policy get demo").ok();
    assert!(got.stdout.contains("east-to-echo"), "{got:?}");

    // A bad document is refused naming the field; nothing changes.
    std::fs::write(
        &policy,
        r#"{"rules":[{"name":"x","action":"allow","from":[{"cluster":"*"}],"to":{"namespace":"demo","ports":[0]}}]}"#,
    )
    .unwrap();
    let bad = admin(&dir, node, "policy put demo --file @policy.json");
    assert!(
        !bad.success && bad.stderr.contains("body.rules[0].to.ports[0]"),
        "{bad:?}"
    );
    assert!(
        with_token("policy get demo")
            .ok()
            .stdout
            .contains("east-to-echo")
    );

    let deleted = admin(&dir, node, "policy delete demo").ok();
    assert!(deleted.stdout.contains("deleted"), "{deleted:?}");
    let gone = with_token("policy get demo");
    assert!(
        !gone.success && gone.stderr.contains("NotFound"),
        "{gone:?}"
    );

    // Workload registrations through the CLI: one for east, listed, a reader refused,
    // one without a selector refused naming the field, deleted.
    let put = admin(
        &dir,
        node,
        "registration put shop-frontend --cluster east --namespace shop --service-account frontend --uid 1000",
    )
    .ok();
    assert!(
        put.stdout.contains("registration shop-frontend written"),
        "{put:?}"
    );
    let listed = with_token("registration list").ok();
    assert!(
        listed.stdout.lines().any(|l| l.starts_with("shop-frontend")
            && l.contains("ns/shop/sa/frontend")
            && l.contains("uid=1000")),
        "{listed:?}"
    );
    let denied = with_token(
        "registration put x --cluster east --namespace shop --service-account a --uid 1",
    );
    assert!(
        !denied.success && denied.stderr.contains("may not register workloads"),
        "{denied:?}"
    );
    let bare = admin(
        &dir,
        node,
        "registration put bare --cluster east --namespace shop --service-account a",
    );
    assert!(
        !bare.success && bare.stderr.contains("field `registration.uid`"),
        "{bare:?}"
    );
    let deleted = admin(&dir, node, "registration delete shop-frontend").ok();
    assert!(deleted.stdout.contains("deleted"), "{deleted:?}");

    // An unknown token is refused by the API (the TLS handshake needs no certificate).
    let anonymous = dir.isthmus(&format!(
        "federation cluster list --server {} --bundle @alice/bundle.pem --token isthmus-admin-v1.wrong",
        node.admin
    ));
    assert!(
        !anonymous.success && anonymous.stderr.contains("Unauthenticated"),
        "{anonymous:?}"
    );
}
