//! The SPIFFE Workload API of a member gateway, with py-spiffe (PyPI `spiffe`, from the
//! hashed `tests/spiffe/requirements.lock`) as the outside client: a registered caller
//! (by uid) fetches its X.509-SVID and the bundle; an unregistered uid is refused with
//! `PermissionDenied`; the stream pushes a new SVID at half its life; a registration
//! put in the federation (admin API) gives the caller a second SVID, and deleting it
//! takes that away; a request over 64 KiB is refused for its size, a frame announced at
//! 16 MiB is refused at its header, and 300 idle connections keep no caller out. Needs
//! `target/spiffe-venv` (`scripts/test` makes it; or `ISTHMUS_SPIFFE_PYTHON`).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isthmus_testkit::{ClusterSpec, DevMesh};

fn python() -> PathBuf {
    std::env::var_os("ISTHMUS_SPIFFE_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/spiffe-venv/bin/python"),
        PathBuf::from,
    )
}

/// A federation of one node in a temporary directory (kept while the mesh runs), once
/// the spiffe venv is known to be there.
async fn one_node_mesh() -> (tempfile::TempDir, DevMesh) {
    assert!(
        python().exists(),
        "{} is missing: scripts/test makes target/spiffe-venv",
        python().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mesh = DevMesh::start(dir.path(), 1, Duration::from_secs(3600))
        .await
        .unwrap();
    (dir, mesh)
}

/// The workload script.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/spiffe/workload.py")
}

/// Runs the workload script in `mode`, as `uid` when given; its stdout, and whether it
/// succeeded.
fn workload(socket: &Path, mode: &str, uid: Option<u32>) -> (String, bool) {
    workload_with(socket, &[mode], uid)
}

/// [`workload`] with the mode's arguments after it.
fn workload_with(socket: &Path, args: &[&str], uid: Option<u32>) -> (String, bool) {
    let mut command = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .arg(python());
            c
        }
        None => Command::new(python()),
    };
    let out = command
        .arg(script())
        .arg(socket)
        .args(args)
        .output()
        .expect("the spiffe venv's python runs (scripts/test makes target/spiffe-venv)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    (stdout, out.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spiffe_fetches_an_svid_that_rotates_and_an_unregistered_caller_is_refused() {
    let (dir, mut mesh) = one_node_mesh().await;
    let uid = current_uid();
    mesh.add_cluster(&ClusterSpec {
        name: "east".into(),
        locality: "us".into(),
        import_range: "127.121.0.0/16".into(),
        dns: false,
        exports: vec![],
        extra_config: format!(
            "[workload_api]\nsocket = \"workload/agent.sock\"\nsvid_lifetime = \"20s\"\n\n\
             [[workload_api.registrations]]\nnamespace = \"shop\"\nservice_account = \"frontend\"\nuid = {uid}\n"
        ),
    })
    .await
    .unwrap();
    let socket = dir.path().join("east/workload/agent.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no Workload API socket at {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let s = socket.clone();
    let (fetched, ok) = tokio::task::spawn_blocking(move || workload(&s, "fetch", None))
        .await
        .unwrap();
    assert!(ok, "{fetched}");
    assert!(
        fetched.contains("svid spiffe://dev.isthmus/cluster/east/ns/shop/sa/frontend "),
        "{fetched}"
    );
    assert!(fetched.contains("bundle dev.isthmus 1"), "{fetched}");

    // A request over the API's 64 KiB is refused for its size (tonic answers a message
    // over the limit with OUT_OF_RANGE); a small field no message has is skipped, and the
    // call answered.
    for (size, expected) in [
        (
            "1048576",
            "refused OUT_OF_RANGE Error, decoded message length too large",
        ),
        ("1024", "answered"),
    ] {
        let s = socket.clone();
        let (said, ok) =
            tokio::task::spawn_blocking(move || workload_with(&s, &["oversized", size], None))
                .await
                .unwrap();
        assert!(ok && said.contains(expected), "{size} bytes: {said}");
    }
    // Connections that never speak keep no caller out.
    let idle: Vec<_> = (0..300)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    let s = socket.clone();
    let (fetched, ok) = tokio::task::spawn_blocking(move || workload(&s, "fetch", None))
        .await
        .unwrap();
    assert!(ok, "with 300 idle connections open: {fetched}");
    drop(idle);

    // A client announcing a 16 MiB frame is refused at its 9-byte header (h2's
    // FRAME_SIZE_ERROR), not after the gateway has buffered what it announced.
    let s = socket.clone();
    let refused = tokio::task::spawn_blocking(move || goaway_for_an_oversized_frame(&s))
        .await
        .unwrap();
    assert_eq!(refused, Ok(FRAME_SIZE_ERROR), "the GOAWAY's error code");

    // Another user is no one here.
    let s = socket.clone();
    let (refused, ok) = tokio::task::spawn_blocking(move || workload(&s, "refused", Some(65534)))
        .await
        .unwrap();
    assert!(ok, "an unregistered uid was issued an SVID: {refused}");
    assert!(refused.contains("refused"), "{refused}");

    // The stream pushes a fresh SVID at half its 20 s life.
    let s = socket.clone();
    let (rotated, ok) = tokio::task::spawn_blocking(move || workload(&s, "rotates", None))
        .await
        .unwrap();
    assert!(ok, "{rotated}");
    assert!(
        rotated.contains("rotated spiffe://dev.isthmus/cluster/east/ns/shop/sa/frontend"),
        "{rotated}"
    );

    // A registration held in the federation reaches east's gateway through its catalog.
    let client = mesh.client().unwrap();
    register(&client, "billing", uid).await;
    let billing = "svid spiffe://dev.isthmus/cluster/east/ns/shop/sa/billing ";
    let fetch_until = |wanted: bool| {
        let socket = socket.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let s = socket.clone();
                let (out, _) = tokio::task::spawn_blocking(move || workload(&s, "fetch", None))
                    .await
                    .unwrap();
                if out.contains(billing) == wanted {
                    return out;
                }
                assert!(
                    Instant::now() < deadline,
                    "billing's SVID present should be {wanted}: {out}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let both = fetch_until(true).await;
    assert!(
        both.contains("/sa/frontend "),
        "the config's entry stays: {both}"
    );
    client
        .delete_registration(isthmus_federation_api::request::DeleteRegistration {
            name: "billing".into(),
            expect: isthmus_federation_api::model::Expect::Any,
        })
        .await
        .unwrap();
    fetch_until(false).await;
    mesh.shutdown().await;
}

/// HTTP/2's error code for a frame over the peer's `SETTINGS_MAX_FRAME_SIZE`.
const FRAME_SIZE_ERROR: u32 = 0x6;

/// Speaks raw HTTP/2 to the socket: the preface, empty SETTINGS, then the header of a
/// DATA frame announcing 16 MiB - 1 bytes, and nothing more. Returns the error code of
/// the GOAWAY the server answers with, or what came instead (within 10 s).
fn goaway_for_an_oversized_frame(socket: &Path) -> Result<u32, String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
    stream.write_all(&hello).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Whole frames so far: look for a GOAWAY (type 7: last stream, error code).
        let mut at = 0;
        while got.len() >= at + 9 {
            let len = usize::from(got[at]) << 16
                | usize::from(got[at + 1]) << 8
                | usize::from(got[at + 2]);
            if got.len() < at + 9 + len {
                break;
            }
            if got[at + 3] == 7 && len >= 8 {
                let code = &got[at + 13..at + 17];
                return Ok(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
            }
            at += 9 + len;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed without a GOAWAY after {got:02x?}")),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("no GOAWAY within 10 s ({e}) after {got:02x?}")),
        }
    }
}

/// Registers, in the federation, east's `shop/<service_account>` for `uid` (the entry
/// named after the service account).
async fn register(
    client: &isthmus_federation_api::client::FederationClient,
    service_account: &str,
    uid: u32,
) {
    let registration = isthmus_federation_api::registration::Registration {
        name: service_account.into(),
        cluster: "east".into(),
        namespace: "shop".into(),
        service_account: service_account.into(),
        uid: Some(uid),
        gid: None,
        path: None,
        revision: 0,
    };
    client
        .put_registration(isthmus_federation_api::request::PutRegistration {
            registration,
            expect: isthmus_federation_api::model::Expect::Absent,
        })
        .await
        .unwrap();
}

/// The uid this test runs as (the registered one).
fn current_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The access log's lines (JSON) of `path` that `matches`, waiting up to 20 s for one.
async fn logged(
    path: &Path,
    what: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| matches(l))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line for {what} in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The held connection of `hold` mode: its output lines as they come.
struct Held {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Held {
    fn start(socket: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(script())
            .arg(socket)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits up to `within` for a line starting with `prefix`; the line.
    async fn until(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the workload ended before printing {prefix:?}"),
                Err(_) => panic!("no {prefix:?} from the workload within {within:?}"),
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_reach_another_cluster_with_their_identity_and_lose_it_with_their_registration() {
    let (dir, mut mesh) = one_node_mesh().await;
    // East's gateway may reach namespace demo, except a caller with service account
    // `other`; the policy names service accounts, so only carried identities match it.
    let policy = r#"{"rules":[
        {"name":"east","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo"}},
        {"name":"no-other","action":"deny","from":[{"cluster":"east","namespace":"shop","service_account":"other"}],"to":{"namespace":"demo"}}]}"#;
    let (echo, vault) = (
        isthmus_testkit::byte_echo_server().await.unwrap(),
        isthmus_testkit::byte_echo_server().await.unwrap(),
    );
    mesh.add_cluster(&ClusterSpec {
        name: "west".into(),
        locality: "us".into(),
        import_range: "127.123.0.0/16".into(),
        dns: false,
        exports: vec![isthmus_testkit::ExportSpec {
            namespace: "demo".into(),
            name: "echo".into(),
            port: 8080,
            endpoint: echo,
        }],
        extra_config: format!(
            "[[exports]]\nnamespace = \"demo\"\nname = \"vault\"\nidentity = \"required\"\nports = [{{ port = 9090, endpoints = [\"{vault}\"] }}]\n"
        ),
    })
    .await
    .unwrap();
    mesh.add_cluster(&ClusterSpec {
        name: "east".into(),
        locality: "us".into(),
        import_range: "127.122.0.0/16".into(),
        dns: true,
        exports: vec![],
        extra_config:
            "[workload_api]\nsocket = \"workload/agent.sock\"\nmtls_listen = \"127.0.0.1:0\"\n"
                .into(),
    })
    .await
    .unwrap();
    mesh.put_policy("ids", policy).await.unwrap();
    let client = mesh.client().unwrap();
    let uid = current_uid();
    for sa in ["frontend", "other", "web"] {
        register(&client, sa, uid).await;
    }
    let east = &mesh.members["east"];
    let mtls = east.addresses().workload_mtls.unwrap().to_string();
    let dns = east.addresses().dns.unwrap();
    let east_metrics = east.metrics();
    let socket = dir.path().join("east/workload/agent.sock");
    let id = |sa: &str| format!("spiffe://dev.isthmus/cluster/east/ns/shop/sa/{sa}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = socket.clone();
        let (out, _) = tokio::task::spawn_blocking(move || workload(&s, "fetch", None))
            .await
            .unwrap();
        if east_metrics.imported_services.get() == 2
            && ["frontend", "other", "web"]
                .iter()
                .all(|sa| out.contains(&format!("{} ", id(sa))))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "east imports 2 services and serves 3 SVIDs: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = |who: String, name: &'static str| {
        let (socket, mtls) = (socket.clone(), mtls.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                workload_with(&socket, &["call", &who, &mtls, name], None)
            })
            .await
            .unwrap()
        }
    };
    let echo_name = "echo.demo.svc.clusterset.local";

    // frontend's identity travels to west, which lets it through; the gateway's
    // certificate is east's gateway SVID.
    let (out, ok) = call(id("frontend"), echo_name).await;
    assert!(ok && out.contains("echoed"), "{out}");
    assert!(
        out.contains("server spiffe://dev.isthmus/cluster/east/gateway/"),
        "{out}"
    );
    let west_log = mesh.access_log("west");
    let east_log = mesh.access_log("east");
    let line = logged(&west_log, "frontend admitted", |l| {
        l["direction"] == "inbound" && l["source_principal"] == id("frontend").as_str()
    })
    .await;
    assert_eq!(line["policy_rule"], "ids/east", "{line}");

    // other's identity is denied by the rule naming its service account: the rule is
    // in west's decision and in the refusal east logs.
    let (out, ok) = call(id("other"), echo_name).await;
    assert!(ok && out.contains("refused"), "{out}");
    let line = logged(&west_log, "other denied", |l| {
        l["direction"] == "inbound" && l["source_principal"] == id("other").as_str()
    })
    .await;
    assert_eq!(
        (&line["policy_decision"], &line["policy_rule"]),
        (&"deny".into(), &"ids/no-other".into()),
        "{line}"
    );
    let line = logged(&east_log, "other refused", |l| {
        l["direction"] == "outbound" && l["source_principal"] == id("other").as_str()
    })
    .await;
    assert_eq!(line["policy_decision"], "deny", "{line}");
    assert!(
        line["refusal_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("ids/no-other"),
        "{line}"
    );

    // No SVID, no way in: the handshake fails.
    let (out, ok) = call("-".into(), echo_name).await;
    assert!(ok && out.contains("refused"), "{out}");
    assert!(out.contains("CERTIFICATE_REQUIRED"), "{out}");

    // Plain TCP callers still work where no identity is required, and are refused where
    // one is; a workload with an SVID gets through there.
    let plain = |target: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A refusal's RST may come before the write does, or even before the connect
        // is seen to complete (the kernel finished the handshake, then the RST came).
        let Ok(mut tcp) = tokio::net::TcpStream::connect(&target).await else {
            return false;
        };
        if tcp.write_all(b"plain\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 6];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut buf)).await,
            Ok(Ok(_))
        )
    };
    let echo_addr = format!("{}:8080", support::dig(dns, echo_name).await);
    let vault_addr = format!(
        "{}:9090",
        support::dig(dns, "vault.demo.svc.clusterset.local").await
    );
    assert!(plain(echo_addr).await, "a plain caller reaches echo");
    assert!(
        !plain(vault_addr).await,
        "a plain caller is refused by vault"
    );
    let line = logged(&west_log, "plain caller refused by vault", |l| {
        l["direction"] == "inbound"
            && l["destination_service"] == "vault.demo"
            && l["policy_rule"] == "identity_required"
    })
    .await;
    assert!(
        line["refusal_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("requires a workload identity"),
        "{line}"
    );
    let (out, ok) = call(id("frontend"), "vault.demo.svc.clusterset.local").await;
    assert!(ok && out.contains("echoed"), "{out}");

    // Live: frontend and web each hold a connection carrying bytes; frontend's
    // registration is deleted, and only its connection is cut.
    let mut frontend = Held::start(&socket, &["hold", &id("frontend"), &mtls, echo_name]);
    let mut web = Held::start(&socket, &["hold", &id("web"), &mtls, echo_name]);
    frontend.until("echo 3", Duration::from_secs(30)).await;
    web.until("echo 3", Duration::from_secs(30)).await;
    client
        .delete_registration(isthmus_federation_api::request::DeleteRegistration {
            name: "frontend".into(),
            expect: isthmus_federation_api::model::Expect::Any,
        })
        .await
        .unwrap();
    // The bound: the catalog watch delivers the change within a second or two here.
    let asked = Instant::now();
    frontend.until("cut", Duration::from_secs(10)).await;
    eprintln!(
        "frontend's connection cut {:?} after its registration was deleted",
        asked.elapsed()
    );
    let after = web.until("echo", Duration::from_secs(5)).await;
    let n: u32 = after.trim_start_matches("echo ").parse().unwrap();
    web.until(&format!("echo {}", n + 5), Duration::from_secs(10))
        .await;
    let line = logged(&east_log, "frontend's connection cut", |l| {
        l["source_principal"] == id("frontend").as_str() && l["policy_decision"] == "policy_revoked"
    })
    .await;
    assert_eq!(line["policy_rule"], "registration", "{line}");
    let revoked = east_metrics
        .connections_revoked
        .get_or_create(&isthmus_gateway::metrics::RevokedLabels {
            source_cluster: "east".into(),
            destination_service: "echo.demo".into(),
            rule: "registration".into(),
        })
        .get();
    assert_eq!(revoked, 1);

    // A gateway of east asserting a west workload is refused by west: a carried identity
    // counts only inside the sending gateway's own cluster.
    let east_ca = mesh
        .root
        .new_cluster_intermediate(
            "east",
            isthmus_ca::KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86_400),
            std::time::SystemTime::now(),
        )
        .unwrap();
    let forged = isthmus_gateway::header::StreamHeader {
        request_id: 7,
        namespace: "demo".into(),
        service: "echo".into(),
        port: 8080,
        source: isthmus_ca::SpiffeId::parse(
            "spiffe://dev.isthmus/cluster/west/ns/shop/sa/frontend",
        )
        .unwrap(),
        trace: None,
    };
    let bundle =
        isthmus_ca::TrustBundle::from_pem(mesh.trust_domain.clone(), &mesh.root.cert_chain_pem())
            .unwrap();
    let answer = isthmus_testkit::peer::open_stream_as(
        mesh.members["west"].quic_addr(),
        &east_ca,
        "spiffe://dev.isthmus/cluster/east/gateway/forger",
        bundle,
        &forged,
    )
    .await
    .unwrap();
    assert_eq!(
        answer.status,
        isthmus_gateway::header::Status::Denied,
        "{answer:?}"
    );
    assert!(
        answer
            .message
            .contains("is not an identity of cluster east"),
        "{answer:?}"
    );
    drop((frontend, web));
    mesh.shutdown().await;
}
