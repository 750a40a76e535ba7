//! Admin API access control on a real node. The role matrix — every operation called by
//! every kind of caller (client certificates and bearer tokens, each role, anonymous, an
//! unknown token) — is checked once, against the admin layer that both faces call, and
//! each answer against the role table in `federation/src/access.rs`. Then a smoke test
//! per face calls every gRPC method and every REST route, over real mutual TLS (`curl` is
//! the REST client), as a platform admin, a reader and an anonymous caller, to show each
//! is wired to that decision. "Allowed" means the call got past access control: it may
//! still fail for its own reasons (a node that is already initialised, a cluster that does
//! not exist), which is never `PermissionDenied` or `Unauthenticated`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{SpiffeVerifier, client_config_without_cert};
use isthmus_ca::{KeyAlgorithm, SharedBundle, SpiffeId, TrustBundle};
use isthmus_federation::access::{AccessControl, Principal, Role, TokenGrant, token_sha256};
use isthmus_federation::admin::{Admin, Credentials as Presented};
use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::model::{Expect, ExportKey, GatewayEndpoint, Policy, TrustBundleDoc};
use isthmus_federation_api::proto::federation_admin_client::FederationAdminClient;
use isthmus_federation_api::request::*;
use isthmus_federation_api::status::{Consistency, NodeInfo};
use isthmus_federation_api::{ApiError, proto};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

const BOB: &str = "spiffe://mesh.example/cluster/ops/ns/shop/sa/bob";
const CAROL: &str = "spiffe://mesh.example/cluster/ops/ns/audit/sa/carol";
const GATEWAY: &str = "spiffe://mesh.example/cluster/west/gateway/gw";
const READER_TOKEN: &str = "isthmus-admin-v1.reader-secret";
const SHOP_TOKEN: &str = "isthmus-admin-v1.shop-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Past access control.
    Allow,
    /// `PermissionDenied` / 403.
    Deny,
    /// `Unauthenticated` / 401.
    Anon,
}
use Want::{Allow as A, Anon as U, Deny as D};

/// The callers, in the order of the table's columns.
const CALLERS: [&str; 8] = [
    "platform-admin (cert)",
    "namespace-admin of shop (cert)",
    "reader (cert)",
    "gateway of west (cert)",
    "reader (token)",
    "namespace-admin of shop (token)",
    "anonymous",
    "unknown token",
];

const READ: [Want; 8] = [A, A, A, A, A, A, U, U];
const PLATFORM: [Want; 8] = [A, D, D, D, D, D, U, U];
const SHOP_EXPORT: [Want; 8] = [A, A, D, A, D, A, U, U];
const SHOP_POLICY: [Want; 8] = [A, A, D, D, D, A, U, U];
const REGISTER: [Want; 8] = [A, D, D, A, D, D, U, U];

/// (operation, expected per caller). Operations run in this order for each caller, so a
/// policy one caller creates is deleted by the same caller before the next one starts.
const TABLE: &[(&str, [Want; 8])] = &[
    ("GetStatus", READ),
    ("Init", PLATFORM),
    ("AddMember", PLATFORM),
    ("RemoveMember", PLATFORM),
    ("ListClusters", READ),
    ("GetCluster", READ),
    ("PutCluster", PLATFORM),
    ("DeleteCluster", PLATFORM),
    ("ListExports", READ),
    ("GetExport", READ),
    ("PutExport shop in west", SHOP_EXPORT),
    ("PutExport bank in east", PLATFORM),
    ("DeleteExport shop in west", SHOP_EXPORT),
    ("ListPolicies", READ),
    ("GetPolicy", READ),
    ("PutPolicy governing shop", SHOP_POLICY),
    ("PutPolicy governing bank", PLATFORM),
    ("DeletePolicy governing shop", SHOP_POLICY),
    ("ListClaims", READ),
    ("PutClaim for shop", SHOP_POLICY),
    ("DeleteClaim of shop", SHOP_POLICY),
    ("ListRegistrations", READ),
    ("PutRegistration for shop", SHOP_POLICY),
    ("PutRegistration for bank", PLATFORM),
    ("DeleteRegistration of shop", SHOP_POLICY),
    ("GetTrustBundle", READ),
    ("SetTrustBundle", PLATFORM),
    ("Watch", READ),
    ("CreateCluster", PLATFORM),
    ("RevokeCluster", PLATFORM),
    ("RegisterGateway of west", REGISTER),
];

fn access() -> AccessControl {
    let shop = || Role::NamespaceAdmin(["shop".to_owned()].into());
    AccessControl::new(
        [
            (SpiffeId::parse(ADMIN_ID).unwrap(), Role::PlatformAdmin),
            (SpiffeId::parse(BOB).unwrap(), shop()),
            (SpiffeId::parse(CAROL).unwrap(), Role::Reader),
        ],
        vec![
            TokenGrant {
                name: "ci-reader".into(),
                sha256: token_sha256(READER_TOKEN),
                role: Role::Reader,
            },
            TokenGrant {
                name: "shop-deployer".into(),
                sha256: token_sha256(SHOP_TOKEN),
                role: shop(),
            },
        ],
    )
}

/// How each caller authenticates: certificate files, or a bearer token (or neither).
struct Credentials {
    cert: Option<(PathBuf, PathBuf)>,
    token: Option<&'static str>,
}

fn credentials(h: &Harness) -> Vec<Credentials> {
    let west = h
        .pki
        .root
        .new_cluster_intermediate(
            "west",
            KeyAlgorithm::EcdsaP256,
            30 * DAY,
            std::time::SystemTime::now(),
        )
        .unwrap();
    let cert = |c: (PathBuf, PathBuf)| Credentials {
        cert: Some(c),
        token: None,
    };
    let token = |t| Credentials {
        cert: None,
        token: Some(t),
    };
    vec![
        cert(h.pki.admin_files()),
        cert(h.pki.write_leaf(&h.pki.ops, "bob", BOB)),
        cert(h.pki.write_leaf(&h.pki.ops, "carol", CAROL)),
        cert(h.pki.write_leaf(&west, "gw", GATEWAY)),
        token(READER_TOKEN),
        token(SHOP_TOKEN),
        Credentials {
            cert: None,
            token: None,
        },
        token("isthmus-admin-v1.guessed"),
    ]
}

fn grpc_client(h: &Harness, creds: &Credentials) -> FederationAdminClient<Channel> {
    let bundle = h.dir.path().join("bundle.pem");
    let tls = match &creds.cert {
        Some((cert, key)) => client_tls(&bundle, cert, key),
        None => {
            let pem = std::fs::read_to_string(&bundle).unwrap();
            let roots = TrustBundle::from_pem(h.pki.td.clone(), &pem).unwrap();
            let verifier = SpiffeVerifier::new(
                SharedBundle::new(roots),
                ExpectedIdentity::AnyFederationNode,
            );
            Arc::new(client_config_without_cert(verifier, &[b"h2"]).unwrap())
        }
    };
    let addr = h.node(1).listen.admin.to_string();
    FederationAdminClient::new(isthmus_federation_api::channel::channel(&addr, tls, None).unwrap())
}

fn request<T>(creds: &Credentials, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = creds.token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn policy(name: &str, namespace: &str) -> proto::Policy {
    proto::Policy {
        name: name.into(),
        body: format!(
            r#"{{"rules":[{{"name":"r","action":"allow","from":[{{"cluster":"*"}}],"to":{{"namespace":"{namespace}"}}}}]}}"#
        ),
        revision: 0,
    }
}

fn export_in(cluster: &str, namespace: &str) -> proto::ServiceExport {
    proto::ServiceExport {
        namespace: namespace.into(),
        ..export(cluster, "api")
    }
}

/// Calls gRPC method `op` as `creds`; the status, or `None` for an answer.
async fn grpc_call(
    c: &mut FederationAdminClient<Channel>,
    creds: &Credentials,
    op: &str,
    bundle: &proto::TrustBundle,
) -> Option<tonic::Status> {
    let stale = || proto::ListRequest { consistency: 1 };
    let result: Result<(), tonic::Status> = match op {
        "GetStatus" => c
            .get_status(request(creds, proto::StatusRequest { consistency: 1 }))
            .await
            .map(drop),
        "Init" => c
            .init(request(creds, proto::InitRequest {}))
            .await
            .map(drop),
        "AddMember" => c
            .add_member(request(
                creds,
                proto::AddMemberRequest {
                    node_id: 99,
                    member: Some(proto::Member {
                        node_id: 99,
                        name: "n99".into(),
                        raft_addr: "not an address".into(),
                        admin_addr: "not an address".into(),
                        rest_addr: "not an address".into(),
                        enroll_addr: None,
                        voter: true,
                        lag: None,
                    }),
                },
            ))
            .await
            .map(drop),
        "RemoveMember" => c
            .remove_member(request(creds, proto::RemoveMemberRequest { node_id: 99 }))
            .await
            .map(drop),
        "ListClusters" => c.list_clusters(request(creds, stale())).await.map(drop),
        "GetCluster" => c
            .get_cluster(request(
                creds,
                proto::GetClusterRequest {
                    name: "west".into(),
                    consistency: 1,
                },
            ))
            .await
            .map(drop),
        "PutCluster" => c
            .put_cluster(request(creds, put_cluster("scratch")))
            .await
            .map(drop),
        "DeleteCluster" => c
            .delete_cluster(request(
                creds,
                proto::DeleteClusterRequest {
                    name: "ghost".into(),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "ListExports" => c.list_exports(request(creds, stale())).await.map(drop),
        "GetExport" => c
            .get_export(request(
                creds,
                proto::GetExportRequest {
                    cluster: "west".into(),
                    namespace: "shop".into(),
                    name: "api".into(),
                    consistency: 1,
                },
            ))
            .await
            .map(drop),
        "PutExport shop in west" | "PutExport bank in east" => {
            let (cluster, ns) = if op.contains("shop") {
                ("west", "shop")
            } else {
                ("east", "bank")
            };
            c.put_export(request(
                creds,
                proto::PutExportRequest {
                    export: Some(export_in(cluster, ns)),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop)
        }
        "DeleteExport shop in west" => c
            .delete_export(request(
                creds,
                proto::DeleteExportRequest {
                    cluster: "west".into(),
                    namespace: "shop".into(),
                    name: "api".into(),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "ListPolicies" => c.list_policies(request(creds, stale())).await.map(drop),
        "GetPolicy" => c
            .get_policy(request(
                creds,
                proto::GetPolicyRequest {
                    name: "shop-rules".into(),
                    consistency: 1,
                },
            ))
            .await
            .map(drop),
        "PutPolicy governing shop" | "PutPolicy governing bank" => {
            let p = if op.contains("shop") {
                policy("shop-rules", "shop")
            } else {
                policy("bank-rules", "bank")
            };
            c.put_policy(request(
                creds,
                proto::PutPolicyRequest {
                    policy: Some(p),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop)
        }
        "DeletePolicy governing shop" => c
            .delete_policy(request(
                creds,
                proto::DeletePolicyRequest {
                    name: "shop-rules".into(),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "ListClaims" => c.list_claims(request(creds, stale())).await.map(drop),
        "PutClaim for shop" => c
            .put_claim(request(
                creds,
                proto::PutClaimRequest {
                    claim: Some(proto::Claim {
                        host: "shop.example.test".into(),
                        namespace: "shop".into(),
                        revision: 0,
                    }),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "DeleteClaim of shop" => c
            .delete_claim(request(
                creds,
                proto::DeleteClaimRequest {
                    host: "shop.example.test".into(),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "ListRegistrations" => c
            .list_registrations(request(creds, stale()))
            .await
            .map(drop),
        "PutRegistration for shop" | "PutRegistration for bank" => {
            let (name, namespace) = if op.ends_with("shop") {
                ("shop-frontend", "shop")
            } else {
                ("bank-teller", "bank")
            };
            c.put_registration(request(
                creds,
                proto::PutRegistrationRequest {
                    registration: Some(proto::Registration {
                        name: name.into(),
                        cluster: "west".into(),
                        namespace: namespace.into(),
                        service_account: "app".into(),
                        uid: Some(1000),
                        gid: None,
                        path: None,
                        revision: 0,
                    }),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop)
        }
        "DeleteRegistration of shop" => c
            .delete_registration(request(
                creds,
                proto::DeleteRegistrationRequest {
                    name: "shop-frontend".into(),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "GetTrustBundle" => c
            .get_trust_bundle(request(
                creds,
                proto::GetTrustBundleRequest { consistency: 1 },
            ))
            .await
            .map(drop),
        "SetTrustBundle" => c
            .set_trust_bundle(request(
                creds,
                proto::SetTrustBundleRequest {
                    bundle: Some(bundle.clone()),
                    expect_revision: None,
                },
            ))
            .await
            .map(drop),
        "Watch" => c
            .watch(request(creds, proto::WatchRequest { after_revision: 0 }))
            .await
            .map(drop),
        "CreateCluster" => c
            .create_cluster(request(
                creds,
                proto::CreateClusterRequest {
                    name: "newcomer".into(),
                    locality: None,
                    ttl_seconds: None,
                },
            ))
            .await
            .map(drop),
        "RevokeCluster" => c
            .revoke_cluster(request(
                creds,
                proto::RevokeClusterRequest {
                    name: "ghost".into(),
                },
            ))
            .await
            .map(drop),
        "RegisterGateway of west" => c
            .register_gateway(request(
                creds,
                proto::RegisterGatewayRequest {
                    cluster: "west".into(),
                    gateway: Some(proto::GatewayEndpoint {
                        name: "ew".into(),
                        address: "127.0.0.1:15443".into(),
                    }),
                },
            ))
            .await
            .map(drop),
        other => panic!("no such operation in the table: {other}"),
    };
    result.err()
}

fn grpc_outcome(status: Option<&tonic::Status>) -> Want {
    match status.map(tonic::Status::code) {
        Some(Code::PermissionDenied) => D,
        Some(Code::Unauthenticated) => U,
        _ => A,
    }
}

/// Sets up west (active) and east, as the platform admin.
async fn setup(h: &Harness) -> proto::TrustBundle {
    let mut admin = h.client(1);
    for name in ["west", "east"] {
        admin.put_cluster(put_cluster(name)).await.unwrap();
    }
    let roots = std::fs::read_to_string(h.dir.path().join("bundle.pem")).unwrap();
    let bundle = TrustBundle::from_pem(h.pki.td.clone(), &roots).unwrap();
    let bundle = proto::TrustBundle {
        trust_domain: h.pki.td.to_string(),
        roots: bundle.roots().iter().map(|c| c.der.to_vec()).collect(),
        retired_roots: vec![],
    };
    admin
        .set_trust_bundle(proto::SetTrustBundleRequest {
            bundle: Some(bundle.clone()),
            expect_revision: None,
        })
        .await
        .unwrap();
    bundle
}

/// What each caller presents to the layer: the SPIFFE ID its certificate carries (the
/// TLS layer has verified it) or the `authorization` header it sends.
fn presented() -> Vec<Presented> {
    let cert = |id: &str| Presented {
        peer: Some(SpiffeId::parse(id).unwrap()),
        authorization: None,
    };
    let token = |t: &str| Presented {
        peer: None,
        authorization: Some(Ok(format!("Bearer {t}"))),
    };
    vec![
        cert(ADMIN_ID),
        cert(BOB),
        cert(CAROL),
        cert(GATEWAY),
        token(READER_TOKEN),
        token(SHOP_TOKEN),
        Presented::default(),
        token("isthmus-admin-v1.guessed"),
    ]
}

fn policy_of(name: &str, namespace: &str) -> Policy {
    Policy::try_from(policy(name, namespace)).unwrap()
}

/// Runs operation `op` of the table on the admin layer as `who`.
async fn layer_call(
    a: &Admin,
    who: &Principal,
    op: &str,
    bundle: &TrustBundleDoc,
) -> Result<(), ApiError> {
    let any = Consistency::Stale;
    let export = |cluster: &str, ns: &str| PutExport {
        export: isthmus_federation_api::model::ServiceExport::try_from(export_in(cluster, ns))
            .unwrap(),
        expect: Expect::Any,
    };
    let key = ExportKey {
        cluster: "west".into(),
        namespace: "shop".into(),
        name: "api".into(),
    };
    match op {
        "GetStatus" => a.status(who, any).await.map(drop),
        "Init" => a.init(who).await.map(drop),
        "AddMember" => {
            let info = NodeInfo {
                name: "n99".into(),
                raft_addr: "not an address".into(),
                admin_addr: "not an address".into(),
                rest_addr: "not an address".into(),
                enroll_addr: None,
            };
            let add = AddMember { node_id: 99, info };
            a.add_member(who, add).await.map(drop)
        }
        "RemoveMember" => a.remove_member(who, 99).await.map(drop),
        "ListClusters" => a.list_clusters(who, any).await.map(drop),
        "GetCluster" => a.get_cluster(who, "west", any).await.map(drop),
        "PutCluster" => {
            let cluster =
                isthmus_federation_api::model::Cluster::try_from(cluster("scratch")).unwrap();
            let put = PutCluster {
                cluster,
                expect: Expect::Any,
            };
            a.put_cluster(who, put).await.map(drop)
        }
        "DeleteCluster" => {
            let delete = DeleteCluster {
                name: "ghost".into(),
                expect: Expect::Any,
            };
            a.delete_cluster(who, delete).await.map(drop)
        }
        "ListExports" => a.list_exports(who, any).await.map(drop),
        "GetExport" => a.get_export(who, &key, any).await.map(drop),
        "PutExport shop in west" => a.put_export(who, export("west", "shop")).await.map(drop),
        "PutExport bank in east" => a.put_export(who, export("east", "bank")).await.map(drop),
        "DeleteExport shop in west" => {
            let delete = DeleteExport {
                key,
                expect: Expect::Any,
            };
            a.delete_export(who, delete).await.map(drop)
        }
        "ListPolicies" => a.list_policies(who, any).await.map(drop),
        "GetPolicy" => a.get_policy(who, "shop-rules", any).await.map(drop),
        "PutPolicy governing shop" | "PutPolicy governing bank" => {
            let policy = if op.contains("shop") {
                policy_of("shop-rules", "shop")
            } else {
                policy_of("bank-rules", "bank")
            };
            let put = PutPolicy {
                policy,
                expect: Expect::Any,
            };
            a.put_policy(who, put).await.map(drop)
        }
        "DeletePolicy governing shop" => {
            let delete = DeletePolicy {
                name: "shop-rules".into(),
                expect: Expect::Any,
            };
            a.delete_policy(who, delete).await.map(drop)
        }
        "ListClaims" => a.list_claims(who, any).await.map(drop),
        "PutClaim for shop" => {
            let put = PutClaim {
                claim: Claim {
                    host: "shop.example.test".into(),
                    namespace: "shop".into(),
                    revision: 0,
                },
                expect: Expect::Any,
            };
            a.put_claim(who, put).await.map(drop)
        }
        "DeleteClaim of shop" => {
            let delete = DeleteClaim {
                host: "shop.example.test".into(),
                expect: Expect::Any,
            };
            a.delete_claim(who, delete).await.map(drop)
        }
        "ListRegistrations" => a.list_registrations(who, any).await.map(drop),
        "PutRegistration for shop" | "PutRegistration for bank" => {
            let (name, namespace) = if op.ends_with("shop") {
                ("shop-frontend", "shop")
            } else {
                ("bank-teller", "bank")
            };
            let put = isthmus_federation_api::request::PutRegistration {
                registration: isthmus_federation_api::registration::Registration {
                    name: name.into(),
                    cluster: "west".into(),
                    namespace: namespace.into(),
                    service_account: "app".into(),
                    uid: Some(1000),
                    gid: None,
                    path: None,
                    revision: 0,
                },
                expect: Expect::Any,
            };
            a.put_registration(who, put).await.map(drop)
        }
        "DeleteRegistration of shop" => {
            let delete = isthmus_federation_api::request::DeleteRegistration {
                name: "shop-frontend".into(),
                expect: Expect::Any,
            };
            a.delete_registration(who, delete).await.map(drop)
        }
        "GetTrustBundle" => a.get_trust_bundle(who, any).await.map(drop),
        "SetTrustBundle" => {
            let set = SetTrustBundle {
                bundle: bundle.clone(),
                expect: Expect::Any,
            };
            a.set_trust_bundle(who, set).await.map(drop)
        }
        "Watch" => a.watch(who, 0).await.map(drop),
        "CreateCluster" => {
            let create = CreateCluster {
                name: "newcomer".into(),
                locality: None,
                ttl: None,
            };
            a.create_cluster(who, create).await.map(drop)
        }
        "RevokeCluster" => {
            let revoke = RevokeCluster {
                name: "ghost".into(),
            };
            a.revoke_cluster(who, revoke).await.map(drop)
        }
        "RegisterGateway of west" => {
            let register = RegisterGateway {
                cluster: "west".into(),
                gateway: GatewayEndpoint {
                    name: "ew".into(),
                    address: "127.0.0.1:15443".into(),
                },
            };
            a.register_gateway(who, register).await.map(drop)
        }
        other => panic!("no such operation in the table: {other}"),
    }
}

fn layer_outcome(result: &Result<(), ApiError>) -> Want {
    match result {
        Err(ApiError::PermissionDenied(_)) => D,
        Err(ApiError::Unauthenticated(_)) => U,
        _ => A,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_matrix_holds_for_every_operation() {
    let h = Harness::build(1, relaxed(), access()).await;
    setup(&h).await;
    let admin = h.node(1).admin.clone();
    let bundle = admin
        .get_trust_bundle(
            &admin.authenticate(&presented()[0]).await.unwrap(),
            Consistency::Linearizable,
        )
        .await
        .unwrap();
    let mut failures = Vec::new();
    for (column, (caller, presented)) in CALLERS.iter().zip(presented()).enumerate() {
        let who = admin.authenticate(&presented).await;
        for (op, wants) in TABLE {
            let result = match &who {
                Ok(who) => layer_call(&admin, who, op, &bundle).await,
                Err(e) => Err(e.clone()),
            };
            let got = layer_outcome(&result);
            if got != wants[column] {
                failures.push(format!(
                    "{caller} / {op}: expected {:?}, got {got:?} ({result:?})",
                    wants[column]
                ));
            }
            if let Err(ApiError::PermissionDenied(message)) = &result {
                assert!(message.contains("may not"), "{caller} / {op}: {message}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    h.shutdown().await;
}

/// The callers of the face smoke tests: a platform admin (certificate), a reader
/// (token) and an anonymous caller, by their columns in the table.
const SMOKE: [usize; 3] = [0, 4, 6];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_method_is_wired_to_the_access_decision() {
    let h = Harness::build(1, relaxed(), access()).await;
    let bundle = setup(&h).await;
    let creds = credentials(&h);
    let mut failures = Vec::new();
    for column in SMOKE {
        let (caller, creds) = (CALLERS[column], &creds[column]);
        let mut client = grpc_client(&h, creds);
        for (op, wants) in TABLE {
            let status = grpc_call(&mut client, creds, op, &bundle).await;
            let got = grpc_outcome(status.as_ref());
            if got != wants[column] {
                failures.push(format!(
                    "{caller} / {op}: expected {:?}, got {got:?} ({status:?})",
                    wants[column]
                ));
            }
            if got == D {
                let message = status
                    .as_ref()
                    .map(tonic::Status::message)
                    .unwrap_or_default();
                assert!(message.contains("may not"), "{caller} / {op}: {message}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    h.shutdown().await;
}

/// REST: (method, path, body) for each operation of the table.
fn rest_call(op: &str) -> (&'static str, String, Option<String>) {
    let policy_body = |ns: &str| {
        format!(
            r#"{{"rules":[{{"name":"r","action":"allow","from":[{{"cluster":"*"}}],"to":{{"namespace":"{ns}"}}}}]}}"#
        )
    };
    let export_body = |cluster: &str, ns: &str| {
        format!(
            r#"{{"cluster":"{cluster}","namespace":"{ns}","name":"api","ports":[{{"name":"http","port":8080}}]}}"#
        )
    };
    let s = |t: &str| t.to_owned();
    match op {
        "GetStatus" => ("GET", s("/v1/status?consistency=stale"), None),
        "Init" => ("POST", s("/v1/init"), None),
        "AddMember" => (
            "POST",
            s("/v1/members"),
            Some(s(
                r#"{"node_id":99,"name":"n99","raft_addr":"x","admin_addr":"x","rest_addr":"x"}"#,
            )),
        ),
        "RemoveMember" => ("DELETE", s("/v1/members/99"), None),
        "ListClusters" => ("GET", s("/v1/clusters"), None),
        "GetCluster" => ("GET", s("/v1/clusters/west"), None),
        "PutCluster" => (
            "PUT",
            s("/v1/clusters/scratch"),
            Some(s(
                r#"{"name":"scratch","gateways":[{"name":"ew","address":"127.0.0.1:15443"}]}"#,
            )),
        ),
        "DeleteCluster" => ("DELETE", s("/v1/clusters/ghost"), None),
        "ListExports" => ("GET", s("/v1/exports"), None),
        "GetExport" => ("GET", s("/v1/exports/west/shop/api"), None),
        "PutExport shop in west" => (
            "PUT",
            s("/v1/exports/west/shop/api"),
            Some(export_body("west", "shop")),
        ),
        "PutExport bank in east" => (
            "PUT",
            s("/v1/exports/east/bank/api"),
            Some(export_body("east", "bank")),
        ),
        "DeleteExport shop in west" => ("DELETE", s("/v1/exports/west/shop/api"), None),
        "ListPolicies" => ("GET", s("/v1/policies"), None),
        "GetPolicy" => ("GET", s("/v1/policies/shop-rules"), None),
        "PutPolicy governing shop" => (
            "PUT",
            s("/v1/policies/shop-rules"),
            Some(policy_body("shop")),
        ),
        "PutPolicy governing bank" => (
            "PUT",
            s("/v1/policies/bank-rules"),
            Some(policy_body("bank")),
        ),
        "DeletePolicy governing shop" => ("DELETE", s("/v1/policies/shop-rules"), None),
        "ListClaims" => ("GET", s("/v1/claims"), None),
        "PutClaim for shop" => (
            "PUT",
            s("/v1/claims/shop.example.test"),
            Some(s(r#"{"namespace":"shop"}"#)),
        ),
        "DeleteClaim of shop" => ("DELETE", s("/v1/claims/shop.example.test"), None),
        "ListRegistrations" => ("GET", s("/v1/registrations"), None),
        "PutRegistration for shop" => (
            "PUT",
            s("/v1/registrations/shop-frontend"),
            Some(s(
                r#"{"cluster":"west","namespace":"shop","service_account":"app","uid":1000}"#,
            )),
        ),
        "PutRegistration for bank" => (
            "PUT",
            s("/v1/registrations/bank-teller"),
            Some(s(
                r#"{"cluster":"west","namespace":"bank","service_account":"app","uid":1000}"#,
            )),
        ),
        "DeleteRegistration of shop" => ("DELETE", s("/v1/registrations/shop-frontend"), None),
        "GetTrustBundle" => ("GET", s("/v1/trust-bundle"), None),
        // The bundle's JSON form is the catalog's; an empty one is refused after the
        // access check (400), which is all this table needs.
        "SetTrustBundle" => ("PUT", s("/v1/trust-bundle"), Some(s("{}"))),
        "Watch" => ("GET", s("/v1/watch?after_revision=0"), None),
        "CreateCluster" => ("POST", s("/v1/clusters/newcomer/join-token"), Some(s("{}"))),
        "RevokeCluster" => ("POST", s("/v1/clusters/ghost/revoke"), None),
        "RegisterGateway of west" => (
            "PUT",
            s("/v1/clusters/west/gateways/ew"),
            Some(s(r#"{"address":"127.0.0.1:15443"}"#)),
        ),
        other => panic!("no such operation in the table: {other}"),
    }
}

fn curl(
    dir: &Path,
    port: u16,
    creds: &Credentials,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(dir.join("bundle.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"));
    if let Some((cert, key)) = &creds.cert {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if let Some(token) = creds.token {
        cmd.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        cmd.args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_route_is_wired_to_the_access_decision() {
    let h = Harness::build(1, relaxed(), access()).await;
    setup(&h).await;
    let creds = credentials(&h);
    let port = h.node(1).listen.rest.port();
    let dir = h.dir.path().to_owned();
    let mut table: Vec<(&str, [Want; 8])> = TABLE.to_vec();
    table.push(("GET /openapi.json", READ));
    let failures = tokio::task::spawn_blocking(move || {
        let mut failures = Vec::new();
        for column in SMOKE {
            let (caller, creds) = (CALLERS[column], &creds[column]);
            for (op, wants) in &table {
                let (method, path, body) = if *op == "GET /openapi.json" {
                    ("GET", "/openapi.json".to_owned(), None)
                } else {
                    rest_call(op)
                };
                let code = curl(&dir, port, creds, method, &path, body.as_deref());
                let got = match code {
                    403 => D,
                    401 => U,
                    0 => panic!("{caller} / {op}: curl got no answer"),
                    _ => A,
                };
                if got != wants[column] {
                    failures.push(format!(
                        "{caller} / {method} {path}: expected {:?}, got HTTP {code}",
                        wants[column]
                    ));
                }
            }
        }
        failures
    })
    .await
    .unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    h.shutdown().await;
}
