//! The admin API's answers to good and bad input, over gRPC (tonic client) and REST
//! (`curl` as the outside client), on a real node with mutual TLS. Every refusal names
//! the field and leaves the catalog unchanged.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use isthmus_federation_api::proto;
use serde_json::Value;
use support::*;
use tonic::Code;

fn revision(h: &Harness) -> u64 {
    h.node(1).federation.view().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_bad_input_naming_the_field_and_writes_nothing() {
    let h = Harness::new(1).await;
    let mut client = h.client(1);
    client.put_cluster(put_cluster("east")).await.unwrap();
    let put = |export: proto::ServiceExport, expect_revision| proto::PutExportRequest {
        export: Some(export),
        expect_revision,
    };
    client
        .put_export(put(export("east", "echo"), Some(0)))
        .await
        .unwrap();
    let before = revision(&h);

    let mut upper = cluster("East");
    upper.name = "East".into();
    let mut bad_address = cluster("west");
    bad_address.gateways[0].address = "no-port".into();
    let mut bad_pem = cluster("west");
    bad_pem.intermediate_pem = Some("-----BEGIN CERTIFICATE-----\nnope\n".into());
    let clusters = [
        (upper, "cluster.name"),
        (bad_address, "cluster.gateways[0].address"),
        (bad_pem, "cluster.intermediate_pem"),
    ];
    for (cluster, field) in clusters {
        let request = proto::PutClusterRequest {
            cluster: Some(cluster),
            expect_revision: None,
        };
        let err = client.put_cluster(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(&format!("`{field}`")),
            "{field}: {}",
            err.message()
        );
    }

    let mut no_ports = export("east", "empty");
    no_ports.ports.clear();
    let mut twice = export("east", "twice");
    twice.ports.push(twice.ports[0].clone());
    twice.ports[1].name = "other".into();
    let mut huge_port = export("east", "huge");
    huge_port.ports[0].port = 70_000;
    let mut bad_ns = export("east", "echo");
    bad_ns.namespace = "Demo".into();
    let exports = [
        // Naming a cluster that does not exist is refused by the catalog as it stands
        // (an admission check), not as malformed input.
        (
            export("nowhere", "echo"),
            Code::FailedPrecondition,
            "field `export.cluster`: unknown cluster \"nowhere\"",
        ),
        (no_ports, Code::InvalidArgument, "`export.ports`"),
        (twice, Code::InvalidArgument, "`export.ports[1].port`"),
        (huge_port, Code::InvalidArgument, "`export.ports[0].port`"),
        (bad_ns, Code::InvalidArgument, "`export.namespace`"),
        (
            export("east", "echo"),
            Code::AlreadyExists,
            "already exists",
        ),
    ];
    for (export, code, message) in exports {
        let err = client.put_export(put(export, Some(0))).await.unwrap_err();
        assert_eq!(err.code(), code, "{message}: {err:?}");
        assert!(
            err.message().contains(message),
            "{message}: {}",
            err.message()
        );
    }

    // Compare-and-set with a stale revision loses.
    let stale = proto::PutClusterRequest {
        cluster: Some(cluster("east")),
        expect_revision: Some(1_000),
    };
    let err = client.put_cluster(stale).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // A cluster that still exports cannot go.
    let delete = proto::DeleteClusterRequest {
        name: "east".into(),
        expect_revision: None,
    };
    let err = client.delete_cluster(delete).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("delete its exports first"),
        "{}",
        err.message()
    );
    // A request over the size limit is refused before it is decoded.
    let mut oversized = cluster("big");
    oversized.intermediate_pem = Some("x".repeat(2 * 1024 * 1024));
    let request = proto::PutClusterRequest {
        cluster: Some(oversized),
        expect_revision: None,
    };
    let err = client.put_cluster(request).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert!(
        err.message().contains("too large") || err.message().contains("length"),
        "{err:?}"
    );
    // An unknown enum value names its field.
    let request = proto::ListRequest { consistency: 7 };
    let err = client.list_clusters(request).await.unwrap_err();
    assert!(err.message().contains("`consistency`"), "{}", err.message());
    // A bundle for another trust domain.
    let other = isthmus_ca::Authority::new_root(
        &isthmus_ca::TrustDomain::new("other.example").unwrap(),
        isthmus_ca::KeyAlgorithm::EcdsaP256,
        DAY,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let bundle = proto::TrustBundle {
        trust_domain: "other.example".into(),
        roots: vec![other.cert().to_vec()],
        retired_roots: vec![],
    };
    let request = proto::SetTrustBundleRequest {
        bundle: Some(bundle),
        expect_revision: None,
    };
    let err = client.set_trust_bundle(request).await.unwrap_err();
    assert!(
        err.message().contains("`bundle.trust_domain`"),
        "{}",
        err.message()
    );

    assert_eq!(
        revision(&h),
        before,
        "a refused request changed the catalog"
    );
    h.shutdown().await;
}

#[derive(Clone)]
struct Curl {
    dir: PathBuf,
    port: u16,
}

impl Curl {
    /// Runs curl with the admin client certificate; returns (status, body).
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(self.dir.join("bundle.pem"))
            .arg("--cert")
            .arg(self.dir.join("admin.cert.pem"))
            .arg("--key")
            .arg(self.dir.join("admin.key.pem"))
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", self.port))
            .arg(format!("https://localhost:{}{path}", self.port));
        if body.is_some() {
            cmd.args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                "@-",
            ]);
            cmd.stdin(std::process::Stdio::piped());
        }
        cmd.stdout(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("curl is installed (.ci/run installs it)");
        if let Some(body) = body {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap();
        let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
        (code.parse().unwrap(), json)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_serves_the_same_api_to_curl_and_names_bad_fields() {
    let h = Harness::new(1).await;
    let curl = Curl {
        dir: h.dir.path().to_owned(),
        port: h.node(1).listen.rest.port(),
    };
    let run = |method: &'static str, path: String, body: Option<String>| {
        let curl = curl.clone();
        tokio::task::spawn_blocking(move || curl.call(method, &path, body.as_deref()))
    };

    let (code, openapi) = run("GET", "/openapi.json".into(), None).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/exports/{cluster}/{namespace}/{name}"]["put"].is_object());
    assert!(openapi["components"]["schemas"]["ServiceExport"].is_object());

    let east = r#"{"name":"east","gateways":[{"name":"ew","address":"127.0.0.1:15443"}]}"#;
    let (code, written) = run(
        "PUT",
        "/v1/clusters/east?expect_revision=0".into(),
        Some(east.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{written}");
    let first = written["revision"].as_u64().unwrap();
    let (code, again) = run(
        "PUT",
        "/v1/clusters/east?expect_revision=0".into(),
        Some(east.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 409, "{again}");
    assert_eq!(again["error"]["kind"], "already_exists");

    let export = r#"{"cluster":"east","namespace":"demo","name":"echo","ports":[{"name":"http","port":8080,"protocol":"http"}],"health":{"healthy":2,"total":3}}"#;
    let (code, body) = run(
        "PUT",
        "/v1/exports/east/demo/echo".into(),
        Some(export.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, got) = run("GET", "/v1/exports/east/demo/echo".into(), None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(got["health"]["healthy"], 2);
    assert_eq!(got["revision"].as_u64().unwrap(), first + 1);
    let (code, list) = run("GET", "/v1/clusters?consistency=stale".into(), None)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(list["items"][0]["name"], "east");

    let before = revision(&h);
    // Malformed input is 400; a well-formed write naming a cluster that does not exist
    // is refused by the catalog as it stands (409, kind admission). Both name the field.
    let bad = [
        (
            "/v1/exports/east/demo/echo2",
            r#"{"cluster":"east","namespace":"demo","name":"echo2","ports":[{"name":"http","port":"eighty"}]}"#,
            "ports[0].port",
            400,
        ),
        (
            "/v1/exports/east/demo/echo2",
            r#"{"cluster":"east","namespace":"demo","name":"echo2","ports":[],"colour":"red"}"#,
            "colour",
            400,
        ),
        (
            "/v1/exports/east/demo/echo2",
            r#"{"cluster":"east","namespace":"demo","name":"other","ports":[{"name":"http","port":80}]}"#,
            "name",
            400,
        ),
        (
            "/v1/exports/west/demo/echo2",
            r#"{"cluster":"west","namespace":"demo","name":"echo2","ports":[{"name":"http","port":80}]}"#,
            "cluster",
            409,
        ),
        (
            "/v1/clusters/Bad_Name",
            r#"{"name":"Bad_Name"}"#,
            "name",
            400,
        ),
        (
            "/v1/clusters/east?expect_revision=soon",
            east,
            "expect_revision",
            400,
        ),
        ("/v1/clusters/east?colour=red", east, "colour", 400),
    ];
    for (path, body, field, want) in bad {
        let (code, answer) = run("PUT", path.into(), Some(body.into())).await.unwrap();
        assert_eq!(code, want, "{path}: {answer}");
        let named = answer["error"]["field"].as_str().unwrap_or_default();
        assert!(
            named.contains(field),
            "{path}: expected field {field}, got {answer}"
        );
    }
    let big = format!(
        r#"{{"name":"big","intermediate_pem":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (code, too_large) = run("PUT", "/v1/clusters/big".into(), Some(big))
        .await
        .unwrap();
    assert_eq!(code, 413);
    assert_eq!(too_large["error"]["kind"], "too_large", "{too_large}");
    let (code, _) = run("GET", "/v1/nothing".into(), None).await.unwrap();
    assert_eq!(code, 404);
    assert_eq!(
        revision(&h),
        before,
        "a refused request changed the catalog"
    );
    h.shutdown().await;
}

/// The server refused the client's certificate: depending on timing the client sees
/// the TLS alert, the connection closing or a broken pipe, always as a transport error
/// (never an answer from the service); the admin certificate, used the same way in the
/// other tests, gets answers.
fn assert_refused_handshake(err: &tonic::Status) {
    let text = format!("{err:?}");
    let refused = text.contains("tonic::transport::Error(Transport");
    assert!(
        refused
            && matches!(
                err.code(),
                Code::Unknown | Code::Cancelled | Code::Unavailable
            ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_an_admin_identity_is_refused() {
    let h = Harness::new(1).await;
    // A workload of the same trust domain that is not on the admin list.
    let (cert, key) = h.pki.write_leaf(
        &h.pki.ops,
        "stranger",
        "spiffe://mesh.example/cluster/ops/ns/web/sa/frontend",
    );
    let tls = client_tls(&h.dir.path().join("bundle.pem"), &cert, &key);
    let addr = h.node(1).listen.admin.to_string();
    let mut stranger =
        isthmus_federation_api::proto::federation_admin_client::FederationAdminClient::new(
            isthmus_federation_api::channel::channel(&addr, tls, None).unwrap(),
        );
    let err = stranger.list_clusters(linearizable()).await.unwrap_err();
    assert_refused_handshake(&err);
    // The Raft port refuses even the admin identity: only federation nodes talk Raft.
    let (cert, key) = (
        h.dir.path().join("admin.cert.pem"),
        h.dir.path().join("admin.key.pem"),
    );
    let tls = client_tls(&h.dir.path().join("bundle.pem"), &cert, &key);
    let raft_addr = h.node(1).listen.raft.to_string();
    let mut raft = isthmus_federation::proto::raft_client::RaftClient::new(
        isthmus_federation_api::channel::channel(&raft_addr, tls, None).unwrap(),
    );
    let err = raft
        .vote(isthmus_federation::proto::RaftPayload {
            json: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_refused_handshake(&err);
    // A federation-node identity that is not a member may not speak Raft either.
    let tls = h.node_client_tls("intruder");
    let mut intruder = isthmus_federation::proto::raft_client::RaftClient::new(
        isthmus_federation_api::channel::channel(&raft_addr, tls, None).unwrap(),
    );
    let err = intruder
        .vote(isthmus_federation::proto::RaftPayload {
            json: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not a member"), "{err:?}");
    let err = intruder
        .forward(isthmus_federation::proto::RaftPayload {
            json: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    h.shutdown().await;
}

/// Every gRPC method of the admin service has a REST route, by the table that makes the
/// router and the document (the watch polls on REST; `GET /v1/members` is the status's
/// member list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_on_both_faces() {
    let proto = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("api/proto/isthmus/federation/v1/admin.proto"),
    )
    .unwrap();
    let methods: Vec<&str> = proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .filter_map(|l| l.split('(').next())
        .collect();
    assert_eq!(methods.len(), 33, "{methods:?}");
    let doc = isthmus_federation::rest::openapi::document(
        &isthmus_ca::TrustDomain::new("mesh.example").unwrap(),
    );
    let ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    for method in methods {
        // gRPC `GetStatus` is REST `getStatus`, and so on.
        let mut id = method.to_owned();
        id[..1].make_ascii_lowercase();
        assert!(
            ids.contains(&id),
            "gRPC {method} has no REST route ({id}); routes: {ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_mints_tokens_registers_gateways_revokes_and_polls_the_watch() {
    let h = Harness::new(1).await;
    let curl = Curl {
        dir: h.dir.path().to_owned(),
        port: h.node(1).listen.rest.port(),
    };
    let run = |method: &'static str, path: String, body: Option<String>| {
        let curl = curl.clone();
        tokio::task::spawn_blocking(move || curl.call(method, &path, body.as_deref()))
    };
    let (code, token) = run(
        "POST",
        "/v1/clusters/north/join-token".into(),
        Some(r#"{"locality":"eu/a","ttl_seconds":60}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{token}");
    assert!(
        token["token"]
            .as_str()
            .unwrap()
            .starts_with("isthmus-join-v1.")
    );
    let (code, north) = run("GET", "/v1/clusters/north".into(), None).await.unwrap();
    assert_eq!((code, north["state"].as_str()), (200, Some("pending")));
    let (code, bad) = run(
        "POST",
        "/v1/clusters/north/join-token".into(),
        Some(r#"{"ttl_seconds":0}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, bad["error"]["field"].as_str()),
        (400, Some("ttl_seconds"))
    );

    let (code, _) = run("PUT", "/v1/clusters/east".into(), Some("{}".into()))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (code, registered) = run(
        "PUT",
        "/v1/clusters/east/gateways/ew".into(),
        Some(r#"{"address":"127.0.0.1:15443"}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{registered}");
    let (_, east) = run("GET", "/v1/clusters/east".into(), None).await.unwrap();
    assert_eq!(east["gateways"][0]["address"], "127.0.0.1:15443");
    let (code, bad) = run(
        "PUT",
        "/v1/clusters/east/gateways/ew".into(),
        Some(r#"{"address":"no-port"}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, bad["error"]["field"].as_str()),
        (400, Some("address"))
    );

    // The watch, polled: everything from the start, then nothing new within the wait,
    // then the change a write makes while a poll waits.
    let (code, all) = run("GET", "/v1/watch?after_revision=0".into(), None)
        .await
        .unwrap();
    assert_eq!(code, 200, "{all}");
    let messages = all["messages"].as_array().unwrap();
    let last = messages.last().unwrap()["revision"].as_u64().unwrap();
    assert_eq!(last, revision(&h));
    let kinds: Vec<&str> = messages
        .iter()
        .flat_map(|m| m["events"].as_array().unwrap())
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"cluster_put"), "{kinds:?}");
    let (code, quiet) = run(
        "GET",
        format!("/v1/watch?after_revision={last}&wait_seconds=1"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (code, quiet["messages"].as_array().unwrap().len()),
        (200, 0)
    );
    let waiting = run(
        "GET",
        format!("/v1/watch?after_revision={last}&wait_seconds=10"),
        None,
    );
    let (code, revoked) = run("POST", "/v1/clusters/east/revoke".into(), None)
        .await
        .unwrap();
    assert_eq!(code, 200, "{revoked}");
    let (code, seen) = waiting.await.unwrap();
    assert_eq!(code, 200);
    let event = &seen["messages"][0]["events"][0];
    assert_eq!(event["kind"], "cluster_put", "{seen}");
    assert_eq!(event["cluster"]["state"], "revoked", "{seen}");
    let (code, too_long) = run("GET", "/v1/watch?wait_seconds=11".into(), None)
        .await
        .unwrap();
    assert_eq!(
        (code, too_long["error"]["field"].as_str()),
        (400, Some("wait_seconds"))
    );
    h.shutdown().await;
}
