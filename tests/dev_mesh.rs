//! The whole mesh through the binary: `isthmus dev` starts a federation and two
//! clusters; `dig` resolves west's echo service through east's DNS and `curl` reaches it
//! through east's gateway. Leaves live 20 s, so they renew while traffic runs; then west
//! is revoked with the CLI and east drops it.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{BOUND, Proc};

fn dig(dns: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("dig (dnsutils) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn curl(url: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .expect("curl is installed");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn metric(url: &str, name: &str) -> f64 {
    curl(url)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} at {url}"))
}

/// Also: `--log-format json` makes stderr one JSON object per line, without the routine
/// openraft races of a forming cluster at the default level; each gateway's access log
/// is named. (One mesh per binary: two `isthmus dev` would share import addresses.)
#[test]
fn dev_mesh_resolves_connects_renews_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mesh");
    let log_path = dir.path().join("stderr.log");
    let mut dev = Proc::spawn_with_stderr(
        env!("CARGO_BIN_EXE_isthmus"),
        &[
            "--log-format",
            "json",
            "dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--leaf-lifetime",
            "20s",
        ],
        std::fs::File::create(&log_path).unwrap().into(),
    );
    dev.wait_for("mesh ready");
    for cluster in ["east", "west"] {
        let line = dev
            .seen_lines()
            .iter()
            .find(|l| l.trim_start().starts_with(cluster) && l.contains("access log"))
            .unwrap_or_else(|| panic!("no access log line for {cluster}: {:?}", dev.seen_lines()));
        let path = line.rsplit(' ').next().unwrap();
        assert_eq!(
            path,
            data.join(cluster).join("access.log").to_str().unwrap()
        );
    }
    // East's Workload API: the user running the mesh gets demo/dev's SVID (py-spiffe).
    let workload = dev
        .seen_lines()
        .iter()
        .find(|l| l.trim_start().starts_with("workload"))
        .cloned()
        .unwrap_or_else(|| panic!("no workload line: {:?}", dev.seen_lines()));
    let socket = data.join("east/workload/agent.sock");
    assert!(
        workload.contains(&format!("unix://{}", socket.display())),
        "{workload}"
    );
    let python = std::env::var_os("ISTHMUS_SPIFFE_PYTHON").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/spiffe-venv/bin/python"),
        std::path::PathBuf::from,
    );
    let fetched = std::process::Command::new(python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spiffe/workload.py"))
        .arg(&socket)
        .arg("fetch")
        .output()
        .expect("the spiffe venv's python runs (scripts/test makes target/spiffe-venv)");
    let fetched = String::from_utf8_lossy(&fetched.stdout).into_owned();
    assert!(
        fetched.contains("svid spiffe://dev.isthmus/cluster/east/ns/demo/sa/dev "),
        "{fetched}"
    );

    let dns = dev.addr("east dns");
    let lines = dev.seen_lines();
    let east_metrics = lines
        .iter()
        .find(|l| l.trim_start().starts_with("east "))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .unwrap()
        .to_owned();
    let admin = lines
        .iter()
        .find(|l| l.trim_start().starts_with("node-1"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .to_owned();

    // A, SRV, and a name outside the zone.
    let a = dig(dns, &["+short", "echo.demo.svc.clusterset.local"]);
    let address = a.trim();
    assert!(address.starts_with("127.77."), "{a}");
    let srv = dig(
        dns,
        &[
            "+short",
            "SRV",
            "_tcp-8080._tcp.echo.demo.svc.clusterset.local",
        ],
    );
    assert!(
        srv.contains(" 8080 echo.demo.svc.clusterset.local."),
        "{srv}"
    );
    let other = dig(dns, &["example.com"]);
    assert!(other.contains("status: REFUSED"), "{other}");
    let unknown = dig(dns, &["nope.demo.svc.clusterset.local"]);
    assert!(unknown.contains("status: NXDOMAIN"), "{unknown}");

    // Traffic across at least two leaf renewals (20 s leaves renew every ~10 s): no
    // request may fail.
    let url = format!("http://{address}:8080/renewals");
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(24) {
        let body = curl(&url).unwrap_or_else(|e| panic!("request {requests} failed: {e}"));
        assert!(body.contains("hello from west"), "{body}");
        requests += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let renewals = metric(&east_metrics, "isthmus_gateway_certificate_renewals_total");
    assert!(
        renewals >= 2.0,
        "{renewals} renewals in 24 s of 20 s leaves"
    );
    assert!(metric(&east_metrics, "isthmus_gateway_federation_connected") == 1.0);
    assert!(metric(&east_metrics, "isthmus_gateway_catalog_age_seconds") < 5.0);

    // Revocation through the CLI: east removes west's service and its name.
    let files = |f: &str| data.join(f).to_string_lossy().into_owned();
    let revoke = Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args([
            "federation",
            "cluster",
            "revoke",
            "west",
            "--server",
            &admin,
        ])
        .args([
            "--bundle",
            &files("bundle.pem"),
            "--cert",
            &files("admin.pem"),
            "--key",
            &files("admin.key"),
        ])
        .output()
        .unwrap();
    assert!(revoke.status.success(), "{revoke:?}");
    let deadline = Instant::now() + BOUND;
    loop {
        let answer = dig(dns, &["echo.demo.svc.clusterset.local"]);
        if answer.contains("status: NXDOMAIN") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "east still resolves revoked west: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        curl(&url).is_err(),
        "the revoked cluster's service is still reachable"
    );

    let status = dev.terminate();
    assert!(status.success(), "{status:?}");

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["target"] == "isthmus_gateway::gateway"),
        "{text}"
    );
    let chatter: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("openraft::core::raft_core"))
        })
        .collect();
    assert!(
        chatter.is_empty(),
        "routine raft chatter at the default level: {chatter:?}"
    );
}
