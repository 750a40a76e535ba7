//! End-to-end tests of `isthmus ca` and `isthmus config` through the built binary, with
//! the `openssl` command as the outside judge of every chain.

mod support;

use support::{Dir, isthmus, openssl};

fn setup_cluster(dir: &Dir) {
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--out",
        &dir.path("root"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "intermediate",
        "--root-dir",
        &dir.path("root"),
        "--cluster",
        "east",
        "--out",
        &dir.path("east"),
    ])
    .ok();
}

fn openssl_verify(dir: &Dir, cluster_dir: &str, leaf_dir: &str, purpose: &str) -> support::Run {
    openssl(&[
        "verify",
        "-purpose",
        purpose,
        "-CAfile",
        &dir.path("root/root.pem"),
        "-untrusted",
        &dir.path(&format!("{cluster_dir}/intermediate.pem")),
        &dir.path(&format!("{leaf_dir}/cert.pem")),
    ])
}

#[test]
fn openssl_verifies_the_direct_chain_for_client_and_server_use() {
    let dir = Dir::new();
    setup_cluster(&dir);
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("east"),
        "--spiffe-id",
        "spiffe://mesh.example/cluster/east/gateway/ew-1",
        "--dns",
        "ew-1.east.local",
        "--ttl",
        "2h",
        "--out",
        &dir.path("gw"),
    ])
    .ok();
    for purpose in ["sslclient", "sslserver"] {
        let run = openssl_verify(&dir, "east", "gw", purpose).ok();
        assert!(run.stdout.contains(": OK"), "{run:?}");
    }
    let text = openssl(&["x509", "-in", &dir.path("gw/cert.pem"), "-noout", "-text"])
        .ok()
        .stdout;
    assert!(
        text.contains("URI:spiffe://mesh.example/cluster/east/gateway/ew-1"),
        "{text}"
    );
    assert!(text.contains("DNS:ew-1.east.local"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    let ca = openssl(&[
        "x509",
        "-in",
        &dir.path("east/intermediate.pem"),
        "-noout",
        "-text",
    ])
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
fn openssl_refuses_a_tampered_leaf_and_a_foreign_root() {
    let dir = Dir::new();
    setup_cluster(&dir);
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("east"),
        "--spiffe-id",
        "spiffe://mesh.example/cluster/east/ns/shop/sa/reviews",
        "--out",
        &dir.path("wl"),
    ])
    .ok();
    assert!(
        openssl_verify(&dir, "east", "wl", "sslclient")
            .ok()
            .stdout
            .contains(": OK")
    );

    // Flip one bit of the leaf's signature and write it back as PEM.
    let der = openssl(&["x509", "-in", &dir.path("wl/cert.pem"), "-outform", "DER"])
        .ok()
        .stdout_bytes;
    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    std::fs::create_dir_all(dir.path("bad")).unwrap();
    std::fs::write(dir.path("bad/cert.der"), &tampered).unwrap();
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &dir.path("bad/cert.der"),
        "-out",
        &dir.path("bad/cert.pem"),
    ])
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
    let ours = isthmus(&[
        "ca",
        "verify",
        "--bundle",
        &dir.path("root/bundle.pem"),
        &dir.path("bad/chain.pem"),
    ]);
    assert_eq!(ours.code, Some(1), "{ours:?}");
    assert!(ours.stderr.contains("refused (bad_signature)"), "{ours:?}");

    // A second root of the same trust domain does not vouch for the first one's chain.
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--out",
        &dir.path("other"),
    ])
    .ok();
    let foreign = openssl(&[
        "verify",
        "-CAfile",
        &dir.path("other/root.pem"),
        "-untrusted",
        &dir.path("east/intermediate.pem"),
        &dir.path("wl/cert.pem"),
    ]);
    assert!(!foreign.success, "{foreign:?}");
}

#[test]
fn csr_flow_keeps_the_intermediate_key_in_the_cluster() {
    let dir = Dir::new();
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--out",
        &dir.path("root"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "csr",
        "--trust-domain",
        "mesh.example",
        "--cluster",
        "west",
        "--out",
        &dir.path("west"),
    ])
    .ok();
    // The wrong cluster name is caught before anything is signed.
    let wrong = isthmus(&[
        "ca",
        "sign",
        "--root-dir",
        &dir.path("root"),
        "--csr",
        &dir.path("west/intermediate.csr"),
        "--cluster",
        "east",
        "--out",
        &dir.path("west"),
    ]);
    assert_eq!(wrong.code, Some(1));
    assert!(
        wrong.stderr.contains("asks for cluster \"west\""),
        "{wrong:?}"
    );
    assert!(!std::path::Path::new(&dir.path("west/intermediate.pem")).exists());

    isthmus(&[
        "ca",
        "sign",
        "--root-dir",
        &dir.path("root"),
        "--csr",
        &dir.path("west/intermediate.csr"),
        "--cluster",
        "west",
        "--validity",
        "90d",
        "--out",
        &dir.path("west"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("west"),
        "--spiffe-id",
        "spiffe://mesh.example/cluster/west/gateway/gw",
        "--out",
        &dir.path("gw"),
    ])
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
    let cert_key = openssl(&[
        "x509",
        "-in",
        &dir.path("west/intermediate.pem"),
        "-noout",
        "-pubkey",
    ])
    .ok()
    .stdout;
    let own_key = openssl(&["pkey", "-in", &dir.path("west/intermediate.key"), "-pubout"])
        .ok()
        .stdout;
    assert_eq!(cert_key, own_key);
}

#[test]
fn imported_operator_root_issues_a_chain_openssl_accepts() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("op")).unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &dir.path("op/key.pem"),
        "-out",
        &dir.path("op/cert.pem"),
        "-days",
        "3650",
        "-subj",
        "/O=Example Corp/CN=Example Corp Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])
    .ok();
    isthmus(&[
        "ca",
        "import",
        "--trust-domain",
        "corp.example",
        "--cert",
        &dir.path("op/cert.pem"),
        "--key",
        &dir.path("op/key.pem"),
        "--out",
        &dir.path("root"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "intermediate",
        "--root-dir",
        &dir.path("root"),
        "--cluster",
        "east",
        "--out",
        &dir.path("east"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("east"),
        "--spiffe-id",
        "spiffe://corp.example/cluster/east/ns/a/sa/b",
        "--out",
        &dir.path("wl"),
    ])
    .ok();
    assert!(
        openssl_verify(&dir, "east", "wl", "sslclient")
            .ok()
            .stdout
            .contains(": OK")
    );
    let ours = isthmus(&[
        "ca",
        "verify",
        "--bundle",
        &dir.path("root/bundle.pem"),
        "--trust-domain",
        "corp.example",
        &dir.path("wl/cert.pem"),
    ])
    .ok();
    assert!(
        ours.stdout
            .contains("ok: spiffe://corp.example/cluster/east/ns/a/sa/b"),
        "{ours:?}"
    );

    // A leaf certificate is not a root.
    let refused = isthmus(&[
        "ca",
        "import",
        "--trust-domain",
        "corp.example",
        "--cert",
        &dir.path("wl/cert.pem"),
        "--key",
        &dir.path("wl/key.pem"),
        "--out",
        &dir.path("root2"),
    ]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("not a CA certificate"),
        "{refused:?}"
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
        let run = isthmus(&[
            "ca",
            "issue",
            "--ca-dir",
            &dir.path("east"),
            "--spiffe-id",
            id,
            "--out",
            &dir.path("x"),
        ]);
        assert_ne!(run.code, Some(0), "{id}: {run:?}");
        assert!(run.stderr.contains(message), "{id}: {run:?}");
    }
    let too_long = isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("east"),
        "--spiffe-id",
        "spiffe://mesh.example/cluster/east/gateway/gw",
        "--ttl",
        "2y",
        "--out",
        &dir.path("x"),
    ]);
    assert_eq!(too_long.code, Some(1));
    assert!(too_long.stderr.contains("leaf.max_ttl"), "{too_long:?}");
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = Dir::new();
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--out",
        &dir.path("root"),
    ])
    .ok();
    let before = std::fs::read(dir.path("root/root.key")).unwrap();
    let again = isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--out",
        &dir.path("root"),
    ]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("refusing to overwrite"), "{again:?}");
    assert_eq!(std::fs::read(dir.path("root/root.key")).unwrap(), before);
}

#[test]
fn inspect_shows_the_chain_and_warns_about_a_ca_near_expiry() {
    let dir = Dir::new();
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--validity",
        "30d",
        "--out",
        &dir.path("root"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "intermediate",
        "--root-dir",
        &dir.path("root"),
        "--cluster",
        "east",
        "--validity",
        "20d",
        "--out",
        &dir.path("east"),
    ])
    .ok();
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("east"),
        "--spiffe-id",
        "spiffe://mesh.example/cluster/east/gateway/gw",
        "--out",
        &dir.path("gw"),
    ])
    .ok();
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(dir.path("gw/cert.pem")).unwrap(),
        std::fs::read_to_string(dir.path("root/root.pem")).unwrap()
    );
    std::fs::write(dir.path("chain.pem"), chain).unwrap();
    let run = isthmus(&["ca", "inspect", &dir.path("chain.pem")]).ok();
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
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.example",
        "--out",
        &dir.path("long"),
    ])
    .ok();
    let quiet = isthmus(&["ca", "inspect", &dir.path("long/root.pem")]).ok();
    assert!(!quiet.stderr.contains("warning"), "{quiet:?}");
    // A key file is not a certificate file.
    let key = isthmus(&["ca", "inspect", &dir.path("long/root.key")]);
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
    isthmus(&[
        "ca",
        "issue",
        "--ca-dir",
        &dir.path("east"),
        "--spiffe-id",
        "spiffe://mesh.example/cluster/east/gateway/gw",
        "--out",
        &dir.path("gw"),
    ])
    .ok();
    let run = isthmus(&[
        "ca",
        "verify",
        "--bundle",
        &dir.path("root/bundle.pem"),
        "--expect",
        "spiffe://mesh.example/cluster/east/gateway/other",
        &dir.path("gw/cert.pem"),
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("refused (unexpected_identity)"),
        "{run:?}"
    );
}
