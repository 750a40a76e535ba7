//! The SPIFFE Workload API of a member gateway, with py-spiffe (PyPI `spiffe`, from the
//! hashed `tests/spiffe/requirements.lock`) as the outside client: a registered caller
//! (by uid) fetches its X.509-SVID and the bundle; an unregistered uid is refused with
//! `PermissionDenied`; the stream pushes a new SVID at half its life; a registration
//! put in the federation (admin API) gives the caller a second SVID, and deleting it
//! takes that away. Needs
//! `target/spiffe-venv` (`scripts/test` makes it; or `ISTHMUS_SPIFFE_PYTHON`).

#![allow(clippy::unwrap_used)]

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

/// Runs the workload script in `mode`, as `uid` when given; its stdout, and whether it
/// succeeded.
fn workload(socket: &Path, mode: &str, uid: Option<u32>) -> (String, bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/spiffe/workload.py");
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
        .arg(&script)
        .arg(socket)
        .arg(mode)
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
    assert!(
        python().exists(),
        "{} is missing: scripts/test makes target/spiffe-venv",
        python().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = DevMesh::start(dir.path(), 1, Duration::from_secs(3600))
        .await
        .unwrap();
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
    let registration = isthmus_federation_api::registration::Registration {
        name: "billing".into(),
        cluster: "east".into(),
        namespace: "shop".into(),
        service_account: "billing".into(),
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

/// The uid this test runs as (the registered one).
fn current_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
