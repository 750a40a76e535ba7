//! The REST face against its own OpenAPI document, judged by schemathesis (PyPI) on a
//! live node: no answer may be a server error, no request the document calls valid may
//! be refused as malformed, and every answer must be what the document says (status,
//! content type, body schema). The rules JSON Schema cannot state are obeyed by the
//! test's hooks (`tests/openapi/hooks.py`), which choose values, never loosen a check.
//!
//! Left out: `POST /v1/members`. A well-formed request adds a learner at whatever
//! address it names; one that never answers is reported, rightly, as a 504 after the
//! catch-up bound — a server error by schemathesis's rule — and stays a learner. And
//! `GET /v1/mesh/events`: a Server-Sent Events stream that does not end, which
//! schemathesis would wait on until its timeout; its events' schema is in the document
//! and the mesh status test reads the stream.
//!
//! Needs schemathesis: `scripts/test` installs it from `tests/requirements.lock` and sets
//! `ISTHMUS_SCHEMATHESIS`; otherwise `st` must be on PATH. The seed is fixed (1) so that
//! a failure replays; `ISTHMUS_CONTRACT_SEED` and `ISTHMUS_CONTRACT_EXAMPLES` run others.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use isthmus_ca::{Authority, KeyAlgorithm, SpiffeId};
use isthmus_federation::access::{AccessControl, Role, TokenGrant, token_sha256};
use serde_json::json;
use support::*;

const TOKEN: &str = "isthmus-admin-v1.contract-test";

/// What is judged: server errors, schema-valid requests refused, and answers the
/// document does not describe (status, content type, body).
const CHECKS: &str = "not_a_server_error,positive_data_acceptance,response_schema_conformance,status_code_conformance,content_type_conformance";

fn schemathesis() -> String {
    std::env::var("ISTHMUS_SCHEMATHESIS").unwrap_or_else(|_| "st".into())
}

/// The certificates the hooks put into PEM fields.
fn fixtures(h: &Harness) -> serde_json::Value {
    let now = SystemTime::now();
    let own = h.pki.root.cert_chain_pem();
    let other = |_: u8| {
        Authority::new_root(&h.pki.td, KeyAlgorithm::EcdsaP256, 30 * DAY, now)
            .unwrap()
            .cert_chain_pem()
    };
    let (extra, retired) = (other(1), other(2));
    let intermediates: serde_json::Map<String, serde_json::Value> = (0..8)
        .map(|i| {
            let name = format!("c{i}");
            let ca = h
                .pki
                .root
                .new_cluster_intermediate(&name, KeyAlgorithm::EcdsaP256, 30 * DAY, now)
                .unwrap();
            (name, json!(isthmus_ca::pem::certs_to_pem([ca.cert()])))
        })
        .collect();
    json!({
        "roots": [own.clone(), format!("{own}{extra}")],
        "retired": ["", retired],
        "intermediates": intermediates,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_face_keeps_its_openapi_document() {
    let access = AccessControl::new(
        [(SpiffeId::parse(ADMIN_ID).unwrap(), Role::PlatformAdmin)],
        vec![TokenGrant {
            name: "contract".into(),
            sha256: token_sha256(TOKEN),
            role: Role::PlatformAdmin,
        }],
    );
    let h = Harness::build(1, relaxed(), access).await;
    let dir = h.dir.path().to_owned();
    let port = h.node(1).listen.rest.port();
    std::fs::write(
        dir.join("fixtures.json"),
        serde_json::to_vec(&fixtures(&h)).unwrap(),
    )
    .unwrap();
    let url = format!("https://localhost:{port}");
    let (dir2, url2) = (dir.clone(), url.clone());
    // A fixed seed, so that a failure replays; ISTHMUS_CONTRACT_SEED runs others.
    let seed = std::env::var("ISTHMUS_CONTRACT_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("ISTHMUS_CONTRACT_EXAMPLES").unwrap_or_else(|_| "25".into());
    let checks = std::env::var("ISTHMUS_CONTRACT_CHECKS").unwrap_or_else(|_| CHECKS.into());
    let output = tokio::task::spawn_blocking(move || {
        // The document, fetched as any client would.
        let fetched = Command::new("curl")
            .args(["-sS", "--fail", "--resolve"])
            .arg(format!("localhost:{port}:127.0.0.1"))
            .arg("--cacert")
            .arg(dir2.join("bundle.pem"))
            .args(["-H", &format!("authorization: Bearer {TOKEN}")])
            .arg("-o")
            .arg(dir2.join("openapi.json"))
            .arg(format!("{url2}/openapi.json"))
            .status()
            .expect("curl is installed");
        assert!(fetched.success(), "GET /openapi.json failed");
        let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
        Command::new(schemathesis())
            .current_dir(&dir2)
            .env("PYTHONPATH", &hooks)
            .env("SCHEMATHESIS_HOOKS", "hooks")
            .env("ISTHMUS_CONTRACT_FIXTURES", dir2.join("fixtures.json"))
            .arg("run")
            .arg(dir2.join("openapi.json"))
            .args(["--url", &url2])
            .arg("--tls-verify")
            .arg(dir2.join("bundle.pem"))
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--checks", &checks])
            .args(["--exclude-operation-id", "addMember"])
            .args(["--exclude-operation-id", "watchMesh"])
            .args([
                "--max-examples",
                &examples,
                "--seed",
                &seed,
                "--workers",
                "1",
            ])
            .args(["--request-timeout", "20", "--no-color"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run schemathesis ({}): {e}; run scripts/test, which installs it",
                    schemathesis()
                )
            })
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    let _ = url;
    h.shutdown().await;
}
