//! End-to-end tests of `isthmus ca` through the built binary, with the `openssl` command
//! as the outside judge of every chain. In command lines, `@rel` is a path in the test's
//! temporary directory.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::{Dir, Run};

fn setup_cluster(dir: &Dir) {
    dir.isthmus("ca init --trust-domain mesh.example --out @root")
        .ok();
    dir.isthmus("ca intermediate --root-dir @root --cluster east --out @east")
        .ok();
}

fn openssl_verify(dir: &Dir, cluster: &str, leaf: &str, purpose: &str) -> Run {
    dir.openssl(&format!(
        "verify -purpose {purpose} -CAfile @root/root.pem -untrusted @{cluster}/intermediate.pem @{leaf}/cert.pem"
    ))
}

#[test]
fn openssl_verifies_the_direct_chain_for_client_and_server_use() {
    let dir = Dir::new();
    setup_cluster(&dir);
    dir.isthmus(
        "ca issue --ca-dir @east --spiffe-id spiffe://mesh.example/cluster/east/gateway/ew-1 \
         --dns ew-1.east.local --ttl 2h --out @gw",
    )
    .ok();
    for purpose in ["sslclient", "sslserver"] {
        let run = openssl_verify(&dir, "east", "gw", purpose).ok();
        assert!(run.stdout.contains(": OK"), "{run:?}");
    }
    let text = dir
        .openssl("x509 -in @gw/cert.pem -noout -text")
        .ok()
        .stdout;
    assert!(
        text.contains("URI:spiffe://mesh.example/cluster/east/gateway/ew-1"),
        "{text}"
    );
    assert!(text.contains("DNS:ew-1.east.local"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    let ca = dir
        .openssl("x509 -in @east/intermediate.pem -noout -text")
        .ok()
        .stdout;
    assert!(ca.contains("X509v3 Name Constraints: critical"), "{ca}");
    assert!(ca.contains("URI:mesh.example"), "{ca}");
    assert!(ca.contains("pathlen:0"), "{ca}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["root/root.key", "east/intermediate.key", "gw/key.pem"] {
            let mode = std::fs::metadata(dir.path(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
        }
    }
}

#[test]
fn federation_nodes_are_issued_by_the_root() {
    let dir = Dir::new();
    setup_cluster(&dir);
    dir.isthmus(
        "ca issue --ca-dir @root --spiffe-id spiffe://mesh.example/federation/node-1 \
         --dns node-1.fed.local --out @node",
    )
    .ok();
    let run = dir
        .openssl("verify -purpose sslserver -CAfile @root/root.pem @node/cert.pem")
        .ok();
    assert!(run.stdout.contains(": OK"), "{run:?}");
    let refused = dir.isthmus(
        "ca issue --ca-dir @root --spiffe-id spiffe://mesh.example/cluster/east/gateway/gw --out @x",
    );
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("issued by their cluster's intermediate"),
        "{refused:?}"
    );
}

#[test]
fn openssl_refuses_a_tampered_leaf_and_a_foreign_root() {
    let dir = Dir::new();
    setup_cluster(&dir);
    dir.isthmus(
        "ca issue --ca-dir @east --spiffe-id spiffe://mesh.example/cluster/east/ns/shop/sa/reviews --out @wl",
    )
    .ok();
    assert!(
        openssl_verify(&dir, "east", "wl", "sslclient")
            .ok()
            .stdout
            .contains(": OK")
    );

    // Flip one bit of the leaf's signature and write it back as PEM.
    let der = dir
        .openssl("x509 -in @wl/cert.pem -outform DER")
        .ok()
        .stdout_bytes;
    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    std::fs::create_dir_all(dir.path("bad")).unwrap();
    std::fs::write(dir.path("bad/cert.der"), &tampered).unwrap();
    dir.openssl("x509 -inform DER -in @bad/cert.der -out @bad/cert.pem")
        .ok();
    let refused = openssl_verify(&dir, "east", "bad", "sslclient");
    assert!(
        !refused.success,
        "openssl accepted a tampered leaf: {refused:?}"
    );
    assert!(refused.all().contains("signature failure"), "{refused:?}");
    let chain = std::fs::read_to_string(dir.path("bad/cert.pem")).unwrap()
        + &std::fs::read_to_string(dir.path("east/intermediate.pem")).unwrap();
    std::fs::write(dir.path("bad/chain.pem"), chain).unwrap();
    let ours = dir.isthmus("ca verify --bundle @root/bundle.pem @bad/chain.pem");
    assert_eq!(ours.code, Some(1), "{ours:?}");
    assert!(ours.stderr.contains("refused (bad_signature)"), "{ours:?}");

    // A second root of the same trust domain does not vouch for the first one's chain.
    dir.isthmus("ca init --trust-domain mesh.example --out @other")
        .ok();
    let foreign = dir
        .openssl("verify -CAfile @other/root.pem -untrusted @east/intermediate.pem @wl/cert.pem");
    assert!(!foreign.success, "{foreign:?}");
}

#[test]
fn csr_flow_keeps_the_intermediate_key_in_the_cluster() {
    let dir = Dir::new();
    dir.isthmus("ca init --trust-domain mesh.example --out @root")
        .ok();
    dir.isthmus("ca csr --trust-domain mesh.example --cluster west --out @west")
        .ok();
    // The wrong cluster name is caught before anything is signed.
    let wrong = dir.isthmus(
        "ca sign --root-dir @root --csr @west/intermediate.csr --cluster east --out @west",
    );
    assert_eq!(wrong.code, Some(1));
    assert!(
        wrong.stderr.contains("asks for cluster \"west\""),
        "{wrong:?}"
    );
    assert!(!std::path::Path::new(&dir.path("west/intermediate.pem")).exists());

    dir.isthmus(
        "ca sign --root-dir @root --csr @west/intermediate.csr --cluster west --validity 90d --out @west",
    )
    .ok();
    dir.isthmus(
        "ca issue --ca-dir @west --spiffe-id spiffe://mesh.example/cluster/west/gateway/gw --out @gw",
    )
    .ok();
    assert!(
        openssl_verify(&dir, "west", "gw", "sslserver")
            .ok()
            .stdout
            .contains(": OK")
    );
    let root_files: Vec<String> = std::fs::read_dir(dir.path("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !root_files.iter().any(|f| f.contains("intermediate")),
        "{root_files:?}"
    );
    // The key the cluster made is the one certified.
    let cert_key = dir
        .openssl("x509 -in @west/intermediate.pem -noout -pubkey")
        .ok()
        .stdout;
    let own_key = dir
        .openssl("pkey -in @west/intermediate.key -pubout")
        .ok()
        .stdout;
    assert_eq!(cert_key, own_key);
    // A tampered CSR (its signature no longer matches) is refused.
    let csr = std::fs::read_to_string(dir.path("west/intermediate.csr")).unwrap();
    let body: Vec<&str> = csr.lines().collect();
    let mut broken = body.clone();
    let middle = body.len() / 2;
    let flipped: String = body[middle]
        .chars()
        .map(|c| {
            if c == 'A' {
                'B'
            } else if c == 'B' {
                'A'
            } else {
                c
            }
        })
        .collect();
    broken[middle] = &flipped;
    std::fs::write(dir.path("forged.csr"), broken.join("\n")).unwrap();
    let forged = dir.isthmus("ca sign --root-dir @root --csr @forged.csr --cluster west --out @w2");
    assert_eq!(forged.code, Some(1), "{forged:?}");
    assert!(
        forged.stderr.contains("bad certificate signing request"),
        "{forged:?}"
    );
}

#[test]
fn imported_operator_root_issues_a_chain_openssl_accepts() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("op")).unwrap();
    dir.openssl(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout @op/key.pem \
         -out @op/cert.pem -days 3650 -subj /O=ExampleCorp/CN=ExampleCorpRoot \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    )
    .ok();
    dir.isthmus(
        "ca import --trust-domain corp.example --cert @op/cert.pem --key @op/key.pem --out @root",
    )
    .ok();
    dir.isthmus("ca intermediate --root-dir @root --cluster east --out @east")
        .ok();
    dir.isthmus("ca issue --ca-dir @east --spiffe-id spiffe://corp.example/cluster/east/ns/a/sa/b --out @wl")
        .ok();
    assert!(
        openssl_verify(&dir, "east", "wl", "sslclient")
            .ok()
            .stdout
            .contains(": OK")
    );
    let ours = dir
        .isthmus("ca verify --bundle @root/bundle.pem --trust-domain corp.example @wl/cert.pem")
        .ok();
    assert!(
        ours.stdout
            .contains("ok: spiffe://corp.example/cluster/east/ns/a/sa/b"),
        "{ours:?}"
    );

    // A leaf certificate is not a root.
    let refused = dir.isthmus(
        "ca import --trust-domain corp.example --cert @wl/cert.pem --key @wl/key.pem --out @root2",
    );
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("not a CA certificate"),
        "{refused:?}"
    );
    // A key that does not belong to the certificate is refused.
    let mismatched = dir.isthmus(
        "ca import --trust-domain corp.example --cert @op/cert.pem --key @wl/key.pem --out @root3",
    );
    assert_eq!(mismatched.code, Some(1));
    assert!(
        mismatched
            .stderr
            .contains("does not belong to the CA certificate"),
        "{mismatched:?}"
    );
}

#[test]
fn issue_refuses_identities_outside_the_issuer() {
    let dir = Dir::new();
    setup_cluster(&dir);
    let cases = [
        (
            "spiffe://mesh.example/cluster/west/gateway/gw",
            "only issues under spiffe://mesh.example/cluster/east/",
        ),
        (
            "spiffe://other.example/cluster/east/gateway/gw",
            "trust domain",
        ),
        (
            "spiffe://mesh.example/cluster/east/pods/x",
            "unrecognised identity path",
        ),
        ("https://mesh.example/x", "must start with spiffe://"),
    ];
    for (id, message) in cases {
        let run = dir.isthmus(&format!(
            "ca issue --ca-dir @east --spiffe-id {id} --out @x"
        ));
        assert_ne!(run.code, Some(0), "{id}: {run:?}");
        assert!(run.stderr.contains(message), "{id}: {run:?}");
    }
    let too_long = dir.isthmus(
        "ca issue --ca-dir @east --spiffe-id spiffe://mesh.example/cluster/east/gateway/gw --ttl 2y --out @x",
    );
    assert_eq!(too_long.code, Some(1));
    assert!(too_long.stderr.contains("leaf.max_ttl"), "{too_long:?}");
    assert!(
        !std::path::Path::new(&dir.path("x")).exists(),
        "nothing written on refusal"
    );
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = Dir::new();
    dir.isthmus("ca init --trust-domain mesh.example --out @root")
        .ok();
    let before = std::fs::read(dir.path("root/root.key")).unwrap();
    let again = dir.isthmus("ca init --trust-domain mesh.example --out @root");
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("refusing to overwrite"), "{again:?}");
    assert_eq!(std::fs::read(dir.path("root/root.key")).unwrap(), before);
}

#[test]
fn inspect_shows_the_chain_and_warns_about_a_ca_near_expiry() {
    let dir = Dir::new();
    dir.isthmus("ca init --trust-domain mesh.example --validity 30d --out @root")
        .ok();
    dir.isthmus("ca intermediate --root-dir @root --cluster east --validity 20d --out @east")
        .ok();
    dir.isthmus("ca issue --ca-dir @east --spiffe-id spiffe://mesh.example/cluster/east/gateway/gw --out @gw")
        .ok();
    let chain = std::fs::read_to_string(dir.path("gw/cert.pem")).unwrap()
        + &std::fs::read_to_string(dir.path("root/root.pem")).unwrap();
    std::fs::write(dir.path("chain.pem"), chain).unwrap();
    let run = dir.isthmus("ca inspect @chain.pem").ok();
    assert!(run.stdout.contains("#0: leaf"), "{run:?}");
    assert!(
        run.stdout
            .contains("spiffe://mesh.example/cluster/east/gateway/gw"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("#1: cluster intermediate CA (east)"),
        "{run:?}"
    );
    assert!(run.stdout.contains("#2: root CA"), "{run:?}");
    assert!(
        run.stdout.contains("issued by #1 (signature verifies)"),
        "{run:?}"
    );
    assert!(run.stderr.contains("warning: root CA"), "{run:?}");
    assert!(
        run.stderr
            .contains("warning: cluster intermediate CA (east)"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("expires in 19 days") || run.stderr.contains("expires in 20 days"),
        "{run:?}"
    );
    // A ten-year root raises no warning.
    dir.isthmus("ca init --trust-domain mesh.example --out @long")
        .ok();
    let quiet = dir.isthmus("ca inspect @long/root.pem").ok();
    assert!(!quiet.stderr.contains("warning"), "{quiet:?}");
    // A key file is not a certificate file.
    let key = dir.isthmus("ca inspect @long/root.key");
    assert_eq!(key.code, Some(1));
    assert!(
        key.stderr.contains("expected only CERTIFICATE blocks"),
        "{key:?}"
    );
}

#[test]
fn verify_reports_the_reason_for_a_wrong_identity() {
    let dir = Dir::new();
    setup_cluster(&dir);
    dir.isthmus("ca issue --ca-dir @east --spiffe-id spiffe://mesh.example/cluster/east/gateway/gw --out @gw")
        .ok();
    let run = dir.isthmus(
        "ca verify --bundle @root/bundle.pem --expect spiffe://mesh.example/cluster/east/gateway/other @gw/cert.pem",
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("refused (unexpected_identity)"),
        "{run:?}"
    );
}
