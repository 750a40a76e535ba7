//! Real rustls handshakes on loopback between issued certificates: one good pair, and
//! every bad case refused by the verifying side with its own typed reason.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::verify::tls::{SpiffeVerifier, client_config, server_config, verify_error_of};
use isthmus_ca::verify::{ExpectedIdentity, PeerRole, VerifyError};
use isthmus_ca::{
    Authority, IssuedLeaf, KeyAlgorithm, LeafRequest, SharedBundle, SpiffeId, TrustBundle,
    TrustDomain,
};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const TIMEOUT: Duration = Duration::from_secs(20);
const ALPN: &[&[u8]] = &[b"isthmus-test"];

/// A certificate chain and key that a side presents.
struct Presented {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Presented {
    fn leaf(issued: &IssuedLeaf) -> Self {
        let mut chain = vec![issued.cert.clone()];
        chain.extend(issued.chain.iter().cloned());
        Self {
            chain,
            key: key_der(&issued.key),
        }
    }
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// One trust domain's CA hierarchy: a root, and intermediates for east and west.
struct Pki {
    td: TrustDomain,
    root: Authority,
    east: Authority,
    west: Authority,
}

impl Pki {
    fn new(td: &str, now: SystemTime) -> Self {
        let td = TrustDomain::new(td).unwrap();
        let root = Authority::new_root(&td, KeyAlgorithm::EcdsaP256, 3650 * DAY, now).unwrap();
        let east = root
            .new_cluster_intermediate("east", KeyAlgorithm::EcdsaP256, 365 * DAY, now)
            .unwrap();
        let west = root
            .new_cluster_intermediate("west", KeyAlgorithm::EcdsaP256, 365 * DAY, now)
            .unwrap();
        Self {
            td,
            root,
            east,
            west,
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::new(self.td.clone(), [self.root.cert().clone()]).unwrap()
    }

    fn gateway(&self, cluster: &str, at: SystemTime, lifetime: Duration) -> IssuedLeaf {
        let ca = if cluster == "east" {
            &self.east
        } else {
            &self.west
        };
        let id = SpiffeId::parse(&format!(
            "spiffe://{}/cluster/{cluster}/gateway/gw",
            self.td
        ))
        .unwrap();
        ca.issue_leaf(
            &LeafRequest {
                id,
                lifetime,
                dns_names: vec![],
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            at,
        )
        .unwrap()
    }
}

/// Builds a leaf by hand (bypassing the CA's own checks) to model certificates that a
/// broken or hostile issuer could produce. `edit` changes the well-formed defaults.
fn craft_leaf(
    issuer: &Authority,
    uris: &[&str],
    edit: impl FnOnce(&mut CertificateParams),
) -> Presented {
    let issuer_key = KeyPair::from_pem(&issuer.key_pem()).unwrap();
    let by_root = matches!(issuer.kind(), isthmus_ca::AuthorityKind::Root);
    craft_leaf_by(issuer.cert(), &issuer_key, !by_root, uris, edit)
}

/// Like [`craft_leaf`], from any CA certificate and key; `with_issuer` appends the
/// issuer to the presented chain.
fn craft_leaf_by(
    issuer_cert: &CertificateDer<'static>,
    issuer_key: &KeyPair,
    with_issuer: bool,
    uris: &[&str],
    edit: impl FnOnce(&mut CertificateParams),
) -> Presented {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "crafted");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).to_owned().try_into().unwrap()));
    }
    edit(&mut params);
    let rc_issuer = Issuer::from_ca_cert_der(issuer_cert, issuer_key).unwrap();
    let cert = params.signed_by(&key, &rc_issuer).unwrap();
    let mut chain = vec![cert.der().clone()];
    if with_issuer {
        chain.push(issuer_cert.clone());
    }
    Presented {
        chain,
        key: key_der(&key),
    }
}

fn verifier(bundle: &TrustBundle, expected: ExpectedIdentity) -> Arc<SpiffeVerifier> {
    SpiffeVerifier::new(SharedBundle::new(bundle.clone()), expected)
}

/// What each side saw of one handshake and a one-byte echo after it.
#[derive(Debug)]
struct Outcome {
    server: Result<(), rustls::Error>,
    client: Result<(), rustls::Error>,
}

fn rustls_error(err: std::io::Error) -> rustls::Error {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(e) => e.clone(),
        None => rustls::Error::General(err.to_string()),
    }
}

/// Runs a real TLS 1.3 handshake over TCP on 127.0.0.1 and exchanges one byte.
async fn handshake(
    server: Presented,
    server_verifier: Arc<SpiffeVerifier>,
    client: Option<Presented>,
    client_verifier: Arc<SpiffeVerifier>,
) -> Outcome {
    let server_cfg = server_config(server_verifier, server.chain, server.key, ALPN).unwrap();
    let client_cfg = match client {
        Some(p) => client_config(client_verifier, p.chain, p.key, ALPN).unwrap(),
        None => rustls::ClientConfig::builder_with_provider(isthmus_ca::verify::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(client_verifier)
            .with_no_client_auth(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(rustls_error)?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(rustls_error)?;
        tls.write_all(&byte).await.map_err(rustls_error)?;
        tls.shutdown().await.map_err(rustls_error)?;
        Ok::<(), rustls::Error>(())
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(rustls_error)?;
        let name = rustls_pki_types::ServerName::try_from("gateway.mesh").unwrap();
        let mut tls = connector.connect(name, tcp).await.map_err(rustls_error)?;
        tls.write_all(&[7]).await.map_err(rustls_error)?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(rustls_error)?;
        assert_eq!(byte, [7]);
        Ok::<(), rustls::Error>(())
    };
    let client = tokio::time::timeout(TIMEOUT, client_result)
        .await
        .expect("client hung");
    let server = tokio::time::timeout(TIMEOUT, server_task)
        .await
        .expect("server hung")
        .unwrap();
    Outcome { server, client }
}

/// The reason the server gave for refusing the client.
fn server_reason(outcome: &Outcome) -> VerifyError {
    let err = outcome
        .server
        .as_ref()
        .expect_err("the server accepted a bad client");
    verify_error_of(err).unwrap_or_else(|| panic!("not a verification error: {err:?}"))
}

/// Handshake where the client presents `bad` to a server of `pki` expecting `expected`.
async fn refused_client(
    pki: &Pki,
    bad: Option<Presented>,
    expected: ExpectedIdentity,
) -> VerifyError {
    let now = SystemTime::now();
    let server = Presented::leaf(&pki.gateway("west", now, DAY));
    let bundle = pki.bundle();
    let outcome = handshake(
        server,
        verifier(&bundle, expected),
        bad,
        verifier(&bundle, ExpectedIdentity::AnyGateway),
    )
    .await;
    assert!(
        outcome.client.is_err(),
        "the client's exchange must fail too: {outcome:?}"
    );
    server_reason(&outcome)
}

#[tokio::test]
async fn issued_gateways_complete_a_mutual_tls_handshake() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bundle = pki.bundle();
    let outcome = handshake(
        Presented::leaf(&pki.gateway("west", now, DAY)),
        verifier(&bundle, ExpectedIdentity::GatewayOf("east".into())),
        Some(Presented::leaf(&pki.gateway("east", now, DAY))),
        verifier(&bundle, ExpectedIdentity::GatewayOf("west".into())),
    )
    .await;
    assert!(
        outcome.server.is_ok() && outcome.client.is_ok(),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_federation_node_issued_by_the_root_is_accepted() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let node = pki
        .root
        .issue_leaf(
            &LeafRequest {
                id: SpiffeId::parse("spiffe://mesh.example/federation/node-1").unwrap(),
                lifetime: DAY,
                dns_names: vec!["node-1.fed.local".into()],
                key_algorithm: KeyAlgorithm::Ed25519,
            },
            now,
        )
        .unwrap();
    let bundle = pki.bundle();
    let outcome = handshake(
        Presented::leaf(&node),
        verifier(&bundle, ExpectedIdentity::Any),
        Some(Presented::leaf(&pki.gateway("east", now, DAY))),
        verifier(&bundle, ExpectedIdentity::AnyFederationNode),
    )
    .await;
    assert!(
        outcome.server.is_ok() && outcome.client.is_ok(),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn expired_client_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now - 3 * DAY);
    let old = pki.gateway("east", now - 2 * DAY, DAY);
    let reason = refused_client(&pki, Some(Presented::leaf(&old)), ExpectedIdentity::Any).await;
    assert!(matches!(reason, VerifyError::Expired { .. }), "{reason:?}");
}

#[tokio::test]
async fn not_yet_valid_client_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let future = pki.gateway("east", now + HOUR, DAY);
    let reason = refused_client(&pki, Some(Presented::leaf(&future)), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::NotYetValid { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn other_trust_domain_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let other = Pki::new("other.example", now);
    let foreign = Presented::leaf(&other.gateway("east", now, DAY));
    let reason = refused_client(&pki, Some(foreign), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::WrongTrustDomain { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn unknown_root_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let impostor = Pki::new("mesh.example", now);
    let foreign = Presented::leaf(&impostor.gateway("east", now, DAY));
    let reason = refused_client(&pki, Some(foreign), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::UnknownRoot { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn self_signed_leaf_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.subject_alt_names.push(SanType::URI(
        "spiffe://mesh.example/cluster/east/gateway/gw"
            .to_owned()
            .try_into()
            .unwrap(),
    ));
    let cert = params.self_signed(&key).unwrap();
    let bad = Presented {
        chain: vec![cert.der().clone()],
        key: key_der(&key),
    };
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::SelfSignedLeaf { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn ca_certificate_presented_as_leaf_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bad = Presented {
        chain: vec![pki.east.cert().clone()],
        key: key_der(&KeyPair::from_pem(&pki.east.key_pem()).unwrap()),
    };
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert!(matches!(reason, VerifyError::LeafIsCa { .. }), "{reason:?}");
}

#[tokio::test]
async fn two_uri_sans_are_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bad = craft_leaf(
        &pki.east,
        &[
            "spiffe://mesh.example/cluster/east/gateway/gw",
            "spiffe://mesh.example/cluster/east/gateway/gw2",
        ],
        |_| {},
    );
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert_eq!(reason, VerifyError::UriSanCount { found: 2 });
}

#[tokio::test]
async fn non_spiffe_uri_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bad = craft_leaf(
        &pki.east,
        &["https://mesh.example/cluster/east/gateway/gw"],
        |_| {},
    );
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::NotSpiffe { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn leaf_outside_its_intermediates_cluster_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    // East's intermediate signs an identity of cluster west.
    let bad = craft_leaf(
        &pki.east,
        &["spiffe://mesh.example/cluster/west/gateway/gw"],
        |_| {},
    );
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::OutsideIssuerPath { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn cluster_identity_signed_by_the_root_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bad = craft_leaf(
        &pki.root,
        &["spiffe://mesh.example/cluster/east/gateway/gw"],
        |_| {},
    );
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::OutsideIssuerPath { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let reason = refused_client(&pki, None, ExpectedIdentity::Any).await;
    assert_eq!(reason, VerifyError::NoCertificate);
}

#[tokio::test]
async fn wrong_expected_identity_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let east = Presented::leaf(&pki.gateway("east", now, DAY));
    let reason = refused_client(&pki, Some(east), ExpectedIdentity::GatewayOf("west".into())).await;
    assert!(
        matches!(reason, VerifyError::UnexpectedIdentity { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn chain_to_a_removed_root_is_refused_and_the_new_root_works() {
    let now = SystemTime::now();
    let old = Pki::new("mesh.example", now);
    let new = Pki::new("mesh.example", now);
    let mut bundle = old.bundle();
    bundle.add_root(new.root.cert().clone()).unwrap();
    let server = Presented::leaf(&new.gateway("west", now, DAY));
    // Stage 1 (A+B): both roots' clients are accepted.
    for pki in [&old, &new] {
        let outcome = handshake(
            Presented::leaf(&new.gateway("west", now, DAY)),
            verifier(&bundle, ExpectedIdentity::Any),
            Some(Presented::leaf(&pki.gateway("east", now, DAY))),
            verifier(&bundle, ExpectedIdentity::Any),
        )
        .await;
        assert!(
            outcome.server.is_ok() && outcome.client.is_ok(),
            "{outcome:?}"
        );
    }
    // Stage 3: A removed; A-chained certificates are refused with their own reason.
    let old_fingerprint = isthmus_ca::fingerprint(old.root.cert());
    bundle.retire_root(&old_fingerprint).unwrap();
    let outcome = handshake(
        server,
        verifier(&bundle, ExpectedIdentity::Any),
        Some(Presented::leaf(&old.gateway("east", now, DAY))),
        verifier(&bundle, ExpectedIdentity::Any),
    )
    .await;
    let reason = server_reason(&outcome);
    assert!(
        matches!(&reason, VerifyError::RootRemoved { fingerprint, .. } if *fingerprint == old_fingerprint),
        "{reason:?}"
    );
}

#[tokio::test]
async fn missing_intermediate_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let mut leaf = Presented::leaf(&pki.gateway("east", now, DAY));
    leaf.chain.truncate(1);
    let reason = refused_client(&pki, Some(leaf), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::MissingIntermediate { .. }),
        "{reason:?}"
    );
}

/// Edits a certificate's parameters before signing.
type Tamper = Box<dyn FnOnce(&mut CertificateParams)>;

#[tokio::test]
async fn wrong_key_usage_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let id = ["spiffe://mesh.example/cluster/east/gateway/gw"];
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "no digitalSignature",
            Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyAgreement]),
        ),
        (
            "keyCertSign on a leaf",
            Box::new(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        ),
        (
            "serverAuth only, used as client",
            Box::new(|p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }),
        ),
        ("no keyUsage at all", Box::new(|p| p.key_usages.clear())),
    ];
    for (what, edit) in cases {
        let bad = craft_leaf(&pki.east, &id, edit);
        let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
        assert!(
            matches!(reason, VerifyError::WrongKeyUsage { .. }),
            "{what}: {reason:?}"
        );
    }
}

#[tokio::test]
async fn spiffe_id_over_2048_bytes_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let long = format!(
        "spiffe://mesh.example/cluster/east/ns/a/sa/{}",
        "b".repeat(2048)
    );
    let bad = craft_leaf(&pki.east, &[&long], |_| {});
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert_eq!(reason, VerifyError::SpiffeIdTooLong { bytes: long.len() });
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let mut leaf = Presented::leaf(&pki.gateway("east", now, DAY));
    let mut der = leaf.chain[0].to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01; // inside the signature BIT STRING, the certificate's last field
    leaf.chain[0] = CertificateDer::from(der);
    let reason = refused_client(&pki, Some(leaf), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::BadSignature { .. }),
        "{reason:?}"
    );
}

#[test]
fn unknown_critical_extension_is_refused() {
    // rustls will not even load such a certificate as its own, so this case is checked
    // through the verifier directly rather than over a handshake.
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bad = craft_leaf(
        &pki.east,
        &["spiffe://mesh.example/cluster/east/gateway/gw"],
        |p| {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
            ext.set_criticality(true);
            p.custom_extensions.push(ext);
        },
    );
    let reason = verifier(&pki.bundle(), ExpectedIdentity::Any)
        .verify(
            &bad.chain[0],
            &bad.chain[1..],
            rustls_pki_types::UnixTime::now(),
            PeerRole::Client,
        )
        .unwrap_err();
    assert!(
        matches!(reason, VerifyError::UnsupportedCriticalExtension { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn unrecognised_identity_form_is_refused() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let bad = craft_leaf(
        &pki.east,
        &["spiffe://mesh.example/cluster/east/something/else"],
        |_| {},
    );
    let reason = refused_client(&pki, Some(bad), ExpectedIdentity::Any).await;
    assert!(
        matches!(reason, VerifyError::InvalidSpiffeId { .. }),
        "{reason:?}"
    );
}

#[tokio::test]
async fn the_client_refuses_a_bad_server_too() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now - 3 * DAY);
    let bundle = pki.bundle();
    let outcome = handshake(
        Presented::leaf(&pki.gateway("west", now - 2 * DAY, DAY)),
        verifier(&bundle, ExpectedIdentity::Any),
        Some(Presented::leaf(&pki.gateway("east", now, DAY))),
        verifier(&bundle, ExpectedIdentity::GatewayOf("west".into())),
    )
    .await;
    let err = outcome
        .client
        .as_ref()
        .expect_err("client accepted an expired server");
    let reason = verify_error_of(err).unwrap();
    assert!(matches!(reason, VerifyError::Expired { .. }), "{reason:?}");
    assert_eq!(reason.reason(), "expired");
}

#[tokio::test]
async fn a_live_bundle_update_applies_to_the_next_handshake() {
    let now = SystemTime::now();
    let old = Pki::new("mesh.example", now);
    let new = Pki::new("mesh.example", now);
    let shared = SharedBundle::new(old.bundle());
    let server_verifier = SpiffeVerifier::new(shared.clone(), ExpectedIdentity::Any);
    let client_verifier = verifier(&new.bundle(), ExpectedIdentity::Any);
    let attempt = || {
        handshake(
            Presented::leaf(&new.gateway("west", now, DAY)),
            server_verifier.clone(),
            Some(Presented::leaf(&new.gateway("east", now, DAY))),
            client_verifier.clone(),
        )
    };
    let before = attempt().await;
    assert!(matches!(
        server_reason(&before),
        VerifyError::MissingIntermediate { .. } | VerifyError::UnknownRoot { .. }
    ));
    shared.replace(new.bundle());
    let after = attempt().await;
    assert!(after.server.is_ok() && after.client.is_ok(), "{after:?}");
}

#[tokio::test]
async fn a_reused_config_does_not_resume_past_a_bundle_change() {
    // Session resumption would skip the verifier; the configs must re-verify every time.
    let now = SystemTime::now();
    let old = Pki::new("mesh.example", now);
    let new = Pki::new("mesh.example", now);
    let mut both = old.bundle();
    both.add_root(new.root.cert().clone()).unwrap();
    let shared = SharedBundle::new(both.clone());
    let server = Presented::leaf(&new.gateway("west", now, DAY));
    let client = Presented::leaf(&old.gateway("east", now, DAY));
    let server_cfg = Arc::new(
        server_config(
            SpiffeVerifier::new(shared.clone(), ExpectedIdentity::Any),
            server.chain,
            server.key,
            ALPN,
        )
        .unwrap(),
    );
    let client_cfg = Arc::new(
        client_config(
            verifier(&both, ExpectedIdentity::Any),
            client.chain,
            client.key,
            ALPN,
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
    let server_task = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let result = async {
                let mut tls = acceptor.accept(tcp).await?;
                let mut byte = [0u8; 1];
                tls.read_exact(&mut byte).await?;
                tls.write_all(&byte).await?;
                tls.shutdown().await
            }
            .await
            .map_err(rustls_error);
            results.push(result);
        }
        results
    });
    let connector = tokio_rustls::TlsConnector::from(client_cfg);
    for round in 0..2 {
        if round == 1 {
            let mut retired = both.clone();
            retired
                .retire_root(&isthmus_ca::fingerprint(old.root.cert()))
                .unwrap();
            shared.replace(retired);
        }
        let attempt = async {
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls_pki_types::ServerName::try_from("west").unwrap();
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(&[1]).await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await
        };
        let _ = tokio::time::timeout(TIMEOUT, attempt)
            .await
            .expect("client hung");
    }
    let results = tokio::time::timeout(TIMEOUT, server_task)
        .await
        .unwrap()
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    let err = results[1]
        .as_ref()
        .expect_err("the second handshake resumed past the retirement");
    assert!(
        matches!(verify_error_of(err), Some(VerifyError::RootRemoved { .. })),
        "{err:?}"
    );
}

/// A CA made by hand: `issuer` None makes it self-signed.
fn craft_ca(
    issuer: Option<(&CertificateDer<'static>, &KeyPair)>,
    dn: &[(DnType, &str)],
    path_len: Option<u8>,
    edit: impl FnOnce(&mut CertificateParams),
) -> (CertificateDer<'static>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => rcgen::BasicConstraints::Constrained(n),
        None => rcgen::BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = issuer.is_some();
    edit(&mut params);
    let cert = match issuer {
        None => params.self_signed(&key).unwrap(),
        Some((der, issuer_key)) => {
            let issuer = Issuer::from_ca_cert_der(der, issuer_key).unwrap();
            params.signed_by(&key, &issuer).unwrap()
        }
    };
    (cert.der().clone(), key)
}

fn authority(cert: &CertificateDer<'static>, key: &KeyPair) -> Authority {
    let pem = isthmus_ca::pem::certs_to_pem([cert]);
    Authority::from_pem(
        &pem,
        &key.serialize_pem(),
        Some(&TrustDomain::new("mesh.example").unwrap()),
    )
    .unwrap()
}

fn verify_direct(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'static>],
) -> Result<(), VerifyError> {
    verifier(bundle, ExpectedIdentity::Any)
        .verify(
            &chain[0],
            &chain[1..],
            rustls_pki_types::UnixTime::now(),
            PeerRole::Client,
        )
        .map(|_| ())
}

#[test]
fn a_sub_ca_under_a_cluster_intermediate_is_refused_even_without_path_lengths() {
    // An operator's root and cluster intermediate with no pathLen at all: the rule that
    // a cluster intermediate signs only leaves must still hold.
    let td = TrustDomain::new("mesh.example").unwrap();
    let (root, root_key) = craft_ca(None, &[(DnType::CommonName, "Operator Root")], None, |_| {});
    let cluster_dn = [
        (DnType::OrganizationName, "mesh.example"),
        (DnType::OrganizationalUnitName, isthmus_ca::CLUSTER_OU),
        (DnType::CommonName, "east"),
    ];
    let (east, east_key) = craft_ca(Some((&root, &root_key)), &cluster_dn, None, |_| {});
    let (sub, sub_key) = craft_ca(
        Some((&east, &east_key)),
        &[(DnType::CommonName, "Y")],
        None,
        |_| {},
    );
    let bundle = TrustBundle::new(td, [root.clone()]).unwrap();
    // Through the sub-CA: a federation identity (root rule) and a west identity.
    for id in [
        "spiffe://mesh.example/federation/n1",
        "spiffe://mesh.example/cluster/west/gateway/gw",
    ] {
        let mut leaf = craft_leaf_by(&sub, &sub_key, true, &[id], |_| {});
        leaf.chain.push(east.clone());
        let reason = verify_direct(&bundle, &leaf.chain).unwrap_err();
        assert!(
            matches!(reason, VerifyError::OutsideIssuerPath { .. }),
            "{id}: {reason:?}"
        );
    }
    // The same intermediate signing a leaf of its own cluster directly is fine.
    let ok = craft_leaf(
        &authority(&east, &east_key),
        &["spiffe://mesh.example/cluster/east/gateway/gw"],
        |_| {},
    );
    verify_direct(&bundle, &ok.chain).unwrap();
}

#[test]
fn constraints_on_forms_isthmus_does_not_check_fail_closed() {
    let td = TrustDomain::new("mesh.example").unwrap();
    let (root, root_key) = craft_ca(
        None,
        &[(DnType::CommonName, "Operator Root")],
        Some(1),
        |_| {},
    );
    let cluster_dn = [
        (DnType::OrganizationName, "mesh.example"),
        (DnType::OrganizationalUnitName, isthmus_ca::CLUSTER_OU),
        (DnType::CommonName, "east"),
    ];
    let (east, east_key) = craft_ca(Some((&root, &root_key)), &cluster_dn, Some(0), |p| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "somewhere else");
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(dn)],
            excluded_subtrees: vec![],
        });
    });
    let bundle = TrustBundle::new(td, [root]).unwrap();
    let leaf = craft_leaf(
        &authority(&east, &east_key),
        &["spiffe://mesh.example/cluster/east/gateway/gw"],
        |_| {},
    );
    let reason = verify_direct(&bundle, &leaf.chain).unwrap_err();
    assert!(
        matches!(reason, VerifyError::NameConstraintViolation { .. }),
        "{reason:?}"
    );
}

#[test]
fn a_uri_name_constraint_outside_the_trust_domain_is_enforced() {
    let td = TrustDomain::new("mesh.example").unwrap();
    let (root, root_key) = craft_ca(
        None,
        &[(DnType::CommonName, "Operator Root")],
        Some(1),
        |_| {},
    );
    let cluster_dn = [
        (DnType::OrganizationName, "mesh.example"),
        (DnType::OrganizationalUnitName, isthmus_ca::CLUSTER_OU),
        (DnType::CommonName, "east"),
    ];
    // Permits only URIs under .sub.mesh.example: spiffe://mesh.example/... is outside.
    let (east, east_key) = craft_ca(Some((&root, &root_key)), &cluster_dn, Some(0), |p| {
        let mut nc = vec![0x30];
        let host = b".sub.mesh.example";
        let base = [&[0x86, host.len() as u8][..], host].concat();
        let subtree = [&[0x30, base.len() as u8][..], &base].concat();
        let permitted = [&[0xa0, subtree.len() as u8][..], &subtree].concat();
        nc.push(permitted.len() as u8);
        nc.extend(permitted);
        let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], nc);
        ext.set_criticality(true);
        p.custom_extensions.push(ext);
    });
    let bundle = TrustBundle::new(td, [root]).unwrap();
    let leaf = craft_leaf(
        &authority(&east, &east_key),
        &["spiffe://mesh.example/cluster/east/gateway/gw"],
        |_| {},
    );
    let reason = verify_direct(&bundle, &leaf.chain).unwrap_err();
    assert!(
        matches!(reason, VerifyError::NameConstraintViolation { .. }),
        "{reason:?}"
    );
}

#[test]
fn an_overlong_presented_chain_is_refused_before_parsing() {
    let now = SystemTime::now();
    let pki = Pki::new("mesh.example", now);
    let leaf = Presented::leaf(&pki.gateway("east", now, DAY));
    let mut chain = leaf.chain.clone();
    chain.extend(std::iter::repeat_n(CertificateDer::from(vec![0u8; 4]), 10));
    let reason = verify_direct(&pki.bundle(), &chain).unwrap_err();
    assert!(
        matches!(reason, VerifyError::PathTooLong { .. }),
        "{reason:?}"
    );
}
