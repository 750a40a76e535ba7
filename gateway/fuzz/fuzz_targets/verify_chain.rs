//! Feed arbitrary bytes as DER certificate chains to the CA crate's chain verifier
//! (`isthmus_ca::verify::verify_chain`), and as PEM text to its PEM readers
//! (`pem::certs_from_pem`, `TrustBundle::from_pem`).
//!
//! Input: one flag byte (the peer role and the expected identity), then certificates,
//! each a 2-byte big-endian length and that many bytes (the last one takes whatever is
//! left when the length runs past the end). Certificate 0 is also offered as the root of
//! a second, fuzz-made bundle; certificate 1 is the leaf and the rest are the presented
//! intermediates.
//!
//! Asserts: nothing panics (verifying, `inspect`, parsing facts, printing errors);
//! nothing verifies against a real root made once with `Authority::new_root` (arbitrary
//! bytes cannot carry its signature), whichever certificate is taken as the leaf; a
//! chain that verifies against the fuzz-made bundle yields a peer consistent with it
//! (its ID of the bundle's trust domain and its identity form, the expected identity,
//! a root of the bundle); PEM that reads writes back to the same certificates.

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use isthmus_ca::pem::{certs_from_pem, certs_to_pem};
use isthmus_ca::verify::{ExpectedIdentity, PeerRole, verify_chain};
use isthmus_ca::{Authority, CertFacts, KeyAlgorithm, SpiffeId, TrustBundle, TrustDomain};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

/// The time the real root was made: 2026-12-02T00:00:00Z (the seed corpus was issued
/// that day, its leaves valid for 30 days).
const MADE: u64 = 1_796_169_600;
/// The time chains are verified at: a day later.
const NOW: i64 = MADE as i64 + 86_400;
const TRUST_DOMAIN: &str = "mesh.example";
const DAY: Duration = Duration::from_secs(86_400);

struct Fixture {
    trust_domain: TrustDomain,
    bundle: TrustBundle,
    root_der: CertificateDer<'static>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let trust_domain = TrustDomain::new(TRUST_DOMAIN).expect("a valid trust domain");
        let made = UNIX_EPOCH + Duration::from_secs(MADE);
        let root = Authority::new_root(&trust_domain, KeyAlgorithm::EcdsaP256, 3650 * DAY, made)
            .expect("a root");
        let bundle =
            TrustBundle::new(trust_domain.clone(), [root.cert().clone()]).expect("a bundle");
        Fixture {
            trust_domain,
            bundle,
            root_der: root.cert().clone(),
        }
    })
}

fn expected(flags: u8) -> ExpectedIdentity {
    let exact = || {
        ExpectedIdentity::Exact(
            SpiffeId::parse("spiffe://mesh.example/cluster/east/gateway/gw").expect("valid"),
        )
    };
    match (flags >> 1) % 9 {
        0 => ExpectedIdentity::Any,
        1 => exact(),
        2 => ExpectedIdentity::AnyGateway,
        3 => ExpectedIdentity::GatewayOf("east".into()),
        4 => ExpectedIdentity::InCluster("east".into()),
        5 => ExpectedIdentity::WorkloadOf("east".into()),
        6 => ExpectedIdentity::AnyFederationNode,
        7 => ExpectedIdentity::OneOf(vec![ExpectedIdentity::AnyFederationNode, exact()]),
        _ => ExpectedIdentity::OneOf(Vec::new()),
    }
}

/// The certificates of the input: 2-byte big-endian length, then the bytes.
fn split(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
    let mut certs = Vec::new();
    while data.len() >= 2 && certs.len() < 16 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (cert, tail) = rest.split_at(len.min(rest.len()));
        certs.push(CertificateDer::from(cert.to_vec()));
        data = tail;
    }
    certs
}

fn refused_by_the_real_root(
    leaf: &CertificateDer<'_>,
    presented: &[CertificateDer<'_>],
    role: PeerRole,
    expected: &ExpectedIdentity,
) {
    let fixture = fixture();
    match verify_chain(&fixture.bundle, leaf, presented, NOW, role, expected) {
        Ok(peer) => panic!("arbitrary bytes verified against a fresh root: {peer:?}"),
        Err(e) => {
            let _ = (e.to_string(), e.reason());
        }
    }
}

fn der_chains(flags: u8, certs: &[CertificateDer<'static>]) {
    let role = if flags & 1 == 0 {
        PeerRole::Server
    } else {
        PeerRole::Client
    };
    let expected = expected(flags);
    let fixture = fixture();

    for cert in certs {
        if let Ok(facts) = CertFacts::parse(cert) {
            let _ = (facts.ca_role(), facts.is_isthmus_root());
            let _ = facts.signing_trust_domain().map_err(|e| e.to_string());
        }
    }
    let _ = isthmus_ca::inspect::inspect(
        certs,
        UNIX_EPOCH + Duration::from_secs(NOW as u64),
        60 * DAY,
    )
    .map(|inspection| inspection.to_string())
    .map_err(|e| e.to_string());

    // Against the real root: whichever certificate leads, nothing verifies; also with the
    // real root itself presented after the input's certificates.
    if let Some((leaf, presented)) = certs.split_first() {
        refused_by_the_real_root(leaf, presented, role, &expected);
        let mut with_root = presented.to_vec();
        with_root.push(fixture.root_der.clone());
        refused_by_the_real_root(leaf, &with_root, role, &expected);
    }
    if let [_, leaf, presented @ ..] = certs {
        refused_by_the_real_root(leaf, presented, role, &expected);
    }

    // Against a bundle made of the input's first certificate, when it is a root.
    let [root, leaf, presented @ ..] = certs else {
        return;
    };
    let Ok(bundle) = TrustBundle::new(fixture.trust_domain.clone(), [root.clone()]) else {
        return;
    };
    let _ = bundle.to_pem();
    match verify_chain(&bundle, leaf, presented, NOW, role, &expected) {
        Ok(peer) => {
            assert_eq!(peer.id.trust_domain(), bundle.trust_domain());
            assert_eq!(peer.id.identity().as_ref(), Ok(&peer.identity));
            assert!(expected.matches(&peer.id, &peer.identity));
            assert!(
                bundle
                    .roots()
                    .iter()
                    .any(|r| r.facts.fingerprint == peer.root_fingerprint),
                "the chain ends in a root of the bundle"
            );
            assert!(peer.not_after >= NOW, "a verified leaf has not expired");
        }
        Err(e) => {
            let _ = (e.to_string(), e.reason());
        }
    }
}

fn pem_text(text: &str) {
    if let Ok(certs) = certs_from_pem(text) {
        let written = certs_to_pem(&certs);
        assert_eq!(
            certs_from_pem(&written).expect("written PEM reads"),
            certs,
            "PEM round trip"
        );
        if let Some((leaf, presented)) = certs.split_first() {
            refused_by_the_real_root(leaf, presented, PeerRole::Server, &ExpectedIdentity::Any);
        }
    }
    let fixture = fixture();
    match TrustBundle::from_pem(fixture.trust_domain.clone(), text) {
        Ok(bundle) => {
            let again = TrustBundle::from_pem(fixture.trust_domain.clone(), &bundle.to_pem())
                .expect("a bundle's PEM reads as a bundle");
            let prints = |b: &TrustBundle| -> Vec<String> {
                b.roots()
                    .iter()
                    .map(|r| r.facts.fingerprint.clone())
                    .collect()
            };
            assert_eq!(prints(&again), prints(&bundle));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&flags, rest)) = data.split_first() {
        der_chains(flags, &split(rest));
    }
    pem_text(&String::from_utf8_lossy(data));
});
