//! `isthmus dev`: a whole mesh on this machine, in one process, on loopback: a root CA,
//! a 3-node federation, clusters east and west enrolled with join tokens, an east-west
//! gateway each (east with DNS), and an HTTP echo service that west exports. The files it
//! writes (configs, certificates, tokens) are the same an operator would write, so the
//! printed commands work against it. Ctrl-C drains and stops everything.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use isthmus_testkit::{ClusterSpec, DevMesh, ExportSpec, echo_server};

/// `isthmus dev` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Keep state here instead of a temporary directory (removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Lifetime of gateway certificates (renewed at about half of it).
    #[arg(long, default_value = "1h")]
    leaf_lifetime: isthmus_config::HumanDuration,
    /// Export both gateways' traces to this OTLP/gRPC collector (`http://host:port`).
    #[arg(long)]
    otlp_endpoint: Option<String>,
}

/// Progress for the person who started it, on stdout: stderr carries only the logs
/// (`--log-format json` keeps it machine-readable).
fn step(n: usize, what: &str) {
    println!("[{n}/5] {what}");
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

pub(crate) fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(dev(args))
}

async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("--data-dir {}", d.display()))?;
            std::fs::canonicalize(d)?
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };

    step(1, "root CA and a 3-node federation");
    let mut mesh = DevMesh::start(&dir, 3, args.leaf_lifetime.0).await?;

    step(
        2,
        "sample service: HTTP echo in west; policy allow-demo lets every cluster reach namespace demo",
    );
    let echo = echo_server("west").await?;
    mesh.allow_namespace("demo").await?;

    step(
        3,
        "clusters west and east: join tokens, enrollment, gateways",
    );
    // The gateway config checks the endpoint, naming the field, when it is loaded.
    let extra_config = match &args.otlp_endpoint {
        Some(endpoint) => format!("[tracing]\notlp_endpoint = {}\n", toml_string(endpoint)),
        None => String::new(),
    };
    mesh.add_cluster(&ClusterSpec {
        name: "west".into(),
        locality: "us-west".into(),
        import_range: "127.78.0.0/16".into(),
        dns: false,
        extra_config: extra_config.clone(),
        exports: vec![ExportSpec {
            namespace: "demo".into(),
            name: "echo".into(),
            port: 8080,
            endpoint: echo,
        }],
    })
    .await?;
    // East's workloads get SVIDs from its Workload API: the user running this is
    // registered as demo's service account `dev`.
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?);
    let workload_api = format!(
        "[workload_api]\nsocket = \"workload/agent.sock\"\n\n[[workload_api.registrations]]\nnamespace = \"demo\"\nservice_account = \"dev\"\nuid = {uid}\n"
    );
    mesh.add_cluster(&ClusterSpec {
        name: "east".into(),
        locality: "us-east".into(),
        import_range: "127.77.0.0/16".into(),
        dns: true,
        exports: vec![],
        extra_config: format!("{extra_config}\n{workload_api}"),
    })
    .await?;

    step(4, "waiting for east to import demo/echo from west");
    let east = &mesh.members["east"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while east.metrics().imported_services.get() < 1 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "east did not import demo/echo within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    step(5, "ready");
    let dns = east.addresses().dns.context("east has no DNS")?;
    println!();
    println!("  state     {}", dir.display());
    for node in mesh.nodes.iter().flatten() {
        println!(
            "  {}    admin {}  rest https://{}/v1/status  metrics http://{}/metrics",
            node.info.name,
            node.listen.admin,
            node.listen.rest,
            node.listen.metrics.map_or("-".into(), |m| m.to_string())
        );
    }
    for (cluster, member) in &mesh.members {
        println!(
            "  {cluster:<8}  gateway quic {}  metrics http://{}/metrics",
            member.quic_addr(),
            member
                .addresses()
                .metrics
                .map_or("-".into(), |m| m.to_string())
        );
    }
    println!("  east dns  {dns}");
    let rest_port = mesh.node(0)?.listen.rest.port();
    println!("  mesh      https://localhost:{rest_port}/v1/mesh (and /v1/mesh/events)");
    let token_file = dir.join("admin.token");
    let token =
        std::fs::read_to_string(&token_file).with_context(|| token_file.display().to_string())?;
    println!(
        "  ui        https://localhost:{rest_port}/ui/  sign in with the dev admin's token {} (in {}; the server certificate is from the dev root, {})",
        token.trim(),
        token_file.display(),
        dir.join("bundle.pem").display()
    );
    println!(
        "            a token that may only read: {}",
        dir.join("reader.token").display()
    );
    for cluster in mesh.members.keys() {
        println!(
            "  {cluster:<8}  access log {}",
            mesh.access_log(cluster).display()
        );
    }
    let socket = dir.join("east/workload/agent.sock");
    println!(
        "  workload  SPIFFE_ENDPOINT_SOCKET=unix://{} (east's Workload API; uid {uid} is registered as demo/dev)",
        socket.display()
    );
    println!();
    println!("try it:");
    println!(
        "  dig @{} -p {} +short echo.demo.svc.clusterset.local",
        dns.ip(),
        dns.port()
    );
    println!(
        "  curl http://$(dig @{} -p {} +short echo.demo.svc.clusterset.local):8080/",
        dns.ip(),
        dns.port()
    );
    let rest = mesh.node(0)?.listen.rest;
    println!(
        "  curl --cacert {bundle} --cert {cert} --key {key} --resolve localhost:{port}:127.0.0.1 https://localhost:{port}/v1/mesh",
        bundle = dir.join("bundle.pem").display(),
        cert = dir.join("admin.pem").display(),
        key = dir.join("admin.key").display(),
        port = rest.port(),
    );
    println!(
        "  isthmus federation cluster list --server {} --bundle {} --cert {} --key {}",
        mesh.node(0)?.listen.admin,
        dir.join("bundle.pem").display(),
        dir.join("admin.pem").display(),
        dir.join("admin.key").display()
    );
    println!(
        "  python3 -c 'from spiffe import WorkloadApiClient as W; print(W(\"unix://{}\").fetch_x509_svid().spiffe_id)'   # pip install spiffe",
        socket.display()
    );
    println!("isthmus dev mesh ready (Ctrl-C to stop)");

    super::gateway::shutdown_signal()?.await;
    println!("stopping");
    mesh.shutdown().await;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}
