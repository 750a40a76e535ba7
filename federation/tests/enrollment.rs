//! Enrollment end to end on a real node: `CreateCluster` mints a token, a gateway-side
//! client spends it once (CSR signed by the node's root), and the gateway's certificate
//! then works on the admin API only within its own cluster until the cluster is revoked.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use isthmus_ca::{Authority, KeyAlgorithm, LeafRequest, SpiffeId};
use isthmus_federation_api::enroll::IntermediateRequest;
use isthmus_federation_api::enroll::{EnrollError, enroll};
use isthmus_federation_api::join::JoinToken;
use isthmus_federation_api::proto;
use isthmus_federation_api::proto::federation_admin_client::FederationAdminClient;
use support::*;
use tonic::Code;

async fn mint(h: &Harness, name: &str) -> JoinToken {
    let reply = h
        .client(1)
        .create_cluster(proto::CreateClusterRequest {
            name: name.into(),
            locality: Some("eu-west/a".into()),
            ttl_seconds: Some(120),
        })
        .await
        .unwrap()
        .into_inner();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 100..=now + 121).contains(&reply.expires_at),
        "{reply:?}"
    );
    JoinToken::parse(&reply.token).unwrap()
}

fn gateway_client(
    h: &Harness,
    intermediate: &Authority,
    cluster: &str,
) -> FederationAdminClient<tonic::transport::Channel> {
    let name = format!("gw-{cluster}");
    let (cert, key) = h.pki.write_leaf(
        intermediate,
        &name,
        &format!("spiffe://mesh.example/cluster/{cluster}/gateway/ew"),
    );
    let tls = client_tls(&h.dir.path().join("bundle.pem"), &cert, &key);
    let addr = h.node(1).listen.admin.to_string();
    FederationAdminClient::new(isthmus_federation_api::channel::channel(&addr, tls, None).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_enrolls_once_and_the_gateway_is_confined_to_its_cluster() {
    let h = Harness::new(1).await;
    let token = mint(&h, "west").await;
    assert_eq!(
        token.enroll,
        vec![h.node(1).listen.enroll.unwrap().to_string()]
    );

    let td = isthmus_ca::TrustDomain::new("mesh.example").unwrap();
    let (key, csr) = isthmus_ca::cluster_csr(&td, "west", KeyAlgorithm::EcdsaP256).unwrap();
    let timeout = Duration::from_secs(10);

    // A wrong secret is refused before anything is written.
    let before = h.node(1).federation.view().revision();
    let mut wrong = token.clone();
    wrong.secret = "0".repeat(64);
    let err = enroll(
        &wrong,
        "ew",
        "127.0.0.1:15443",
        IntermediateRequest::Csr(csr.clone()),
        timeout,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused(m) if m.contains("wrong token")),
        "{err}"
    );
    assert_eq!(h.node(1).federation.view().revision(), before);

    // A token pinning another root never sends the secret anywhere.
    let mut other_pin = token.clone();
    other_pin.root_sha256 = "ab".repeat(32);
    let err = enroll(
        &other_pin,
        "ew",
        "127.0.0.1:15443",
        IntermediateRequest::Csr(csr.clone()),
        timeout,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::PinMismatch { .. }), "{err}");

    let reply = enroll(
        &token,
        "ew",
        "127.0.0.1:15443",
        IntermediateRequest::Csr(csr.clone()),
        timeout,
    )
    .await
    .unwrap();
    assert_eq!(reply.cluster, "west");
    assert_eq!(reply.admin_addrs, vec![h.node(1).listen.admin.to_string()]);
    assert_eq!(reply.bundle.roots().len(), 1);
    let intermediate_der = isthmus_ca::pem::certs_from_pem(&reply.intermediate_pem).unwrap();
    reply.bundle.signer_of(&intermediate_der[0]).unwrap();
    let cluster = h
        .client(1)
        .get_cluster(proto::GetClusterRequest {
            name: "west".into(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cluster.state, proto::ClusterState::Active as i32);
    assert_eq!(cluster.locality.as_deref(), Some("eu-west/a"));
    assert_eq!(cluster.gateways[0].address, "127.0.0.1:15443");

    // Spent: a second use is refused.
    let err = enroll(
        &token,
        "ew2",
        "127.0.0.1:15444",
        IntermediateRequest::Csr(csr),
        timeout,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused(m) if m.contains("already used")),
        "{err}"
    );

    // The gateway issues its own leaf from the intermediate and uses the admin API.
    let west =
        Authority::from_pem(&reply.intermediate_pem, &key.serialize_pem(), Some(&td)).unwrap();
    let leaf = west
        .issue_leaf(
            &LeafRequest {
                id: SpiffeId::parse("spiffe://mesh.example/cluster/west/gateway/ew").unwrap(),
                lifetime: Duration::from_secs(3600),
                dns_names: vec![],
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            SystemTime::now(),
        )
        .unwrap();
    assert!(!leaf.cert.is_empty());
    h.client(1).put_cluster(put_cluster("east")).await.unwrap();
    let mut gw = gateway_client(&h, &west, "west");
    gw.list_clusters(stale()).await.unwrap();
    gw.put_export(proto::PutExportRequest {
        export: Some(export("west", "echo")),
        expect_revision: None,
    })
    .await
    .unwrap();
    let refused = gw
        .put_export(proto::PutExportRequest {
            export: Some(export("east", "echo")),
            expect_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("only its own cluster"),
        "{}",
        refused.message()
    );
    let refused = gw.put_cluster(put_cluster("west")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = gw
        .create_cluster(proto::CreateClusterRequest {
            name: "evil".into(),
            locality: None,
            ttl_seconds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    gw.register_gateway(proto::RegisterGatewayRequest {
        cluster: "west".into(),
        gateway: Some(proto::GatewayEndpoint {
            name: "ew".into(),
            address: "127.0.0.1:16443".into(),
        }),
    })
    .await
    .unwrap();

    // Revoked: the same certificate can do nothing, and the cluster cannot rejoin.
    h.client(1)
        .revoke_cluster(proto::RevokeClusterRequest {
            name: "west".into(),
        })
        .await
        .unwrap();
    let refused = gw.list_clusters(stale()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("Revoked"),
        "{}",
        refused.message()
    );
    let again = h
        .client(1)
        .create_cluster(proto::CreateClusterRequest {
            name: "west".into(),
            locality: None,
            ttl_seconds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intermediate_from_the_root_holder_is_checked_and_accepted() {
    let h = Harness::new(1).await;
    let token = mint(&h, "south").await;
    let timeout = Duration::from_secs(10);
    // Signed by a root outside the bundle: refused, and the token is still good.
    let td = isthmus_ca::TrustDomain::new("mesh.example").unwrap();
    let stranger = Authority::new_root(
        &td,
        KeyAlgorithm::EcdsaP256,
        Duration::from_secs(86400 * 30),
        SystemTime::now(),
    )
    .unwrap();
    let foreign = stranger
        .new_cluster_intermediate(
            "south",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86400),
            SystemTime::now(),
        )
        .unwrap();
    let err = enroll(
        &token,
        "ew",
        "127.0.0.1:15443",
        IntermediateRequest::Signed(foreign.cert_chain_pem()),
        timeout,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused(m) if m.contains("intermediate_pem") && m.contains("not signed by any root")),
        "{err}"
    );
    let good = h
        .pki
        .root
        .new_cluster_intermediate(
            "south",
            KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86400),
            SystemTime::now(),
        )
        .unwrap();
    let reply = enroll(
        &token,
        "ew",
        "127.0.0.1:15443",
        IntermediateRequest::Signed(good.cert_chain_pem()),
        timeout,
    )
    .await
    .unwrap();
    assert_eq!(reply.intermediate_pem, good.cert_chain_pem());
    h.shutdown().await;
}
