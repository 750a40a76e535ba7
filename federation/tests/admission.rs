//! Admission on a real node: writes that would misconfigure the mesh are refused with the
//! field and what to fix, and nothing is written. The same checks run offline in
//! `isthmus vet` (tests/vet_cli.rs).

#![allow(clippy::unwrap_used)]

mod support;

use isthmus_federation_api::proto;
use support::*;
use tonic::Code;

fn claim(host: &str, namespace: &str) -> proto::PutClaimRequest {
    proto::PutClaimRequest {
        claim: Some(proto::Claim {
            host: host.into(),
            namespace: namespace.into(),
            revision: 0,
        }),
        expect_revision: None,
    }
}

fn policy(body: &str) -> proto::PutPolicyRequest {
    proto::PutPolicyRequest {
        policy: Some(proto::Policy {
            name: "p".into(),
            body: body.into(),
            revision: 0,
        }),
        expect_revision: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_refused_with_the_field_and_nothing_is_written() {
    let h = Harness::new(1).await;
    let mut c = h.client(1);
    c.put_cluster(put_cluster("west")).await.unwrap();
    let revision = || async {
        h.client(1)
            .list_clusters(linearizable())
            .await
            .unwrap()
            .into_inner()
            .revision
    };

    // Traffic claims: the first claimant keeps the host; a second namespace is refused
    // for the same name and for a wildcard over it.
    c.put_claim(claim("shop.example.test", "shop"))
        .await
        .unwrap();
    c.put_claim(claim("*.pay.example.test", "payments"))
        .await
        .unwrap();
    let before = revision().await;
    for (host, holder) in [
        ("shop.example.test", "shop"),
        ("*.example.test", "shop"),
        ("api.pay.example.test", "payments"),
    ] {
        let err = c.put_claim(claim(host, "bank")).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{host}: {err:?}");
        assert!(
            err.message()
                .contains(&format!("claimed by namespace \"{holder}\"")),
            "{host}: {}",
            err.message()
        );
    }
    // The owner may widen its own claims; names in the clusterset zone are not claimable.
    c.put_claim(claim("api.shop.example.test", "shop"))
        .await
        .unwrap();
    let err = c
        .put_claim(claim("api.shop.svc.clusterset.local", "shop"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("claim.host"), "{}", err.message());
    let list = c.list_claims(linearizable()).await.unwrap().into_inner();
    let held: Vec<(String, String)> = list
        .claims
        .iter()
        .map(|c| (c.host.clone(), c.namespace.clone()))
        .collect();
    assert_eq!(
        held,
        [
            ("*.pay.example.test".to_owned(), "payments".to_owned()),
            ("api.shop.example.test".into(), "shop".into()),
            ("shop.example.test".into(), "shop".into()),
        ]
    );
    assert_eq!(
        revision().await,
        before + 1,
        "only the owner's own claim was written"
    );

    // A policy naming a cluster that does not exist: refused by the catalog as it stands
    // (FAILED_PRECONDITION, 409 on REST), naming the field.
    let before = revision().await;
    let err = c
        .put_policy(policy(
            r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"west"},{"cluster":"esat"}],"to":{"namespace":"shop"}}]}"#,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("body.rules[0].from[1].cluster")
            && err.message().contains("unknown cluster \"esat\""),
        "{}",
        err.message()
    );
    let err = c
        .put_policy(policy(
            r#"{"rate_limits":[{"name":"l","from_cluster":"nowhere","to":{"namespace":"shop"},"connections_per_second":5}]}"#,
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("body.rate_limits[0].from_cluster"),
        "{}",
        err.message()
    );
    // An export without ports, and one of a cluster that does not exist.
    let mut no_ports = export("west", "api");
    no_ports.ports.clear();
    let err = c
        .put_export(proto::PutExportRequest {
            export: Some(no_ports),
            expect_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("ports"), "{}", err.message());
    let err = c
        .put_export(proto::PutExportRequest {
            export: Some(export("nowhere", "api")),
            expect_revision: None,
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("unknown cluster \"nowhere\""),
        "{}",
        err.message()
    );
    assert_eq!(revision().await, before, "nothing refused was written");

    // With the cluster named correctly, the same policy is accepted; the cluster cannot
    // then be deleted from under it.
    c.put_policy(policy(
        r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"west"}],"to":{"namespace":"shop"}}]}"#,
    ))
    .await
    .unwrap();
    let err = c
        .delete_cluster(proto::DeleteClusterRequest {
            name: "west".into(),
            expect_revision: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("policy \"p\" names cluster \"west\" (body.rules[0].from[0].cluster)"),
        "{}",
        err.message()
    );
    h.shutdown().await;
}
