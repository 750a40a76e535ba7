//! Two benchmarks of the gateways' DNS:
//!
//! - `bench propagation`: a catalog change, from the admin write to the moment it is in
//!   the DNS table of every watching gateway — real member gateways of a 3-node
//!   federation in one process — as p50/p99 over all (change, gateway) pairs.
//! - `bench dns`: queries per second of the gateway's DNS server against dnsmasq and
//!   Knot (Debian packages) serving the same names, each driven by `dnsperf` in
//!   interleaved rounds, with the ratios.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use isthmus_federation_api::model::{
    EndpointHealth, Expect, ExportKey, ExportPort, PortProtocol, ServiceExport,
};
use isthmus_federation_api::request::{DeleteExport, PutCluster, PutExport};
use isthmus_gateway::dns::{DnsServer, DnsTable, ServiceRecord};
use isthmus_testkit::{ClusterSpec, DevMesh};

use super::systems::{Proc, free_port};

/// Options of `isthmus bench propagation`.
#[derive(Debug, Args)]
pub(crate) struct PropagationArgs {
    /// Watching gateways (each a member gateway of its own cluster).
    #[arg(long, default_value_t = 50)]
    gateways: usize,
    /// Catalog changes (alternately an export added and removed).
    #[arg(long, default_value_t = 200)]
    changes: usize,
}

/// Options of `isthmus bench dns`.
#[derive(Debug, Args)]
pub(crate) struct DnsArgs {
    /// Names served by every server.
    #[arg(long, default_value_t = 1000)]
    names: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Interleaved rounds (the report shows medians).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn propagation(args: &PropagationArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        eprintln!("starting a 3-node federation and {} gateways", args.gateways);
        let mut mesh = DevMesh::start(dir.path(), 3, Duration::from_secs(3600)).await?;
        for i in 0..args.gateways {
            // Each gateway imports into its own range, so that listeners never clash.
            let spec = ClusterSpec {
                name: format!("w{i:03}"),
                locality: "bench".into(),
                import_range: format!("127.{}.0.0/16", 100 + i % 150),
                dns: i == 0,
                exports: vec![],
                extra_config: String::new(),
            };
            mesh.add_cluster(&spec).await?;
        }
        // The exporting cluster has no gateway of its own: its exports are written by
        // the benchmark through the admin API, so that nothing else changes them.
        let client = mesh.client()?;
        client
            .put_cluster(PutCluster {
                cluster: isthmus_testkit::mesh::cluster_without_gateway("src"),
                expect: Expect::Any,
            })
            .await?;
        let watchers: Vec<_> = mesh.members.values().map(|m| m.revision()).collect();
        let mut samples = Vec::with_capacity(args.changes * watchers.len());
        let mut commits = Vec::with_capacity(args.changes);
        for change in 0..args.changes {
            let started = Instant::now();
            let written = if change % 2 == 0 {
                client.put_export(PutExport {
                    export: ServiceExport {
                        cluster: "src".into(),
                        namespace: "bench".into(),
                        name: format!("svc-{}", change / 2),
                        ports: vec![ExportPort {
                            name: "http".into(),
                            port: 8080,
                            protocol: PortProtocol::Http,
                        }],
                        health: EndpointHealth {
                            healthy: 1,
                            total: 1,
                        },
                        revision: 0,
                    },
                    expect: Expect::Any,
                })
                .await?
            } else {
                client
                    .delete_export(DeleteExport {
                        key: ExportKey {
                            cluster: "src".into(),
                            namespace: "bench".into(),
                            name: format!("svc-{}", change / 2),
                        },
                        expect: Expect::Any,
                    })
                    .await?
            };
            let revision = written.revision;
            commits.push(started.elapsed());
            let waits = watchers.iter().cloned().map(|mut rx| async move {
                let seen = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|r| *r >= revision)).await;
                seen.map(|_| started.elapsed())
            });
            for seen in futures_util::future::join_all(waits).await {
                samples.push(seen.context("a gateway did not see a change within 30 s")?);
            }
        }
        // The last state is visible through real DNS on the gateway that serves it.
        let dns = mesh.members.values().find_map(|m| m.addresses().dns).context("no DNS")?;
        let last = format!("svc-{}.bench.svc.clusterset.local.", (args.changes - 1) / 2);
        let answer = isthmus_gateway::dns::forward(dns, Query::query(Name::from_ascii(&last)?, RecordType::A))
            .await
            .map_err(anyhow::Error::msg)?;
        let expected = if args.changes % 2 == 1 { ResponseCode::NoError } else { ResponseCode::NXDomain };
        anyhow::ensure!(answer.code == expected, "DNS answered {:?} for {last}, expected {expected:?}", answer.code);
        samples.sort();
        commits.sort();
        println!(
            "catalog change → in the DNS table of each of {} gateways ({} changes, {} samples)",
            watchers.len(),
            args.changes,
            samples.len()
        );
        println!(
            "  commit (admin write acknowledged): p50 {:>8.2?}  p99 {:>8.2?}",
            percentile(&commits, 50.0),
            percentile(&commits, 99.0)
        );
        println!(
            "  visible in DNS:                    p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}   (goal p99 ≤ 100 ms)",
            percentile(&samples, 50.0),
            percentile(&samples, 99.0),
            samples.last().copied().unwrap_or_default()
        );
        mesh.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// One DNS server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Isthmus,
    Dnsmasq,
    Knot,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Isthmus => "isthmus",
            Self::Dnsmasq => "dnsmasq",
            Self::Knot => "knot",
        }
    }
}

fn address(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 77, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn name(i: usize) -> String {
    format!("svc-{i}.bench.svc.clusterset.local")
}

/// Waits until the server at `addr` answers the last name.
async fn ready(addr: SocketAddr, names: usize) -> anyhow::Result<()> {
    let query = Query::query(
        Name::from_ascii(format!("{}.", name(names - 1)))?,
        RecordType::A,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match isthmus_gateway::dns::forward(addr, query.clone()).await {
            Ok(a) if a.code == ResponseCode::NoError && !a.records.is_empty() => return Ok(()),
            other => {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{addr} never answered: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn dnsperf(addr: SocketAddr, queries: &Path, seconds: u64) -> anyhow::Result<(f64, String)> {
    let out = Command::new("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args([
            "-l",
            &seconds.to_string(),
            "-c",
            "8",
            "-T",
            "1",
            "-q",
            "256",
        ])
        .output()
        .context("running dnsperf (apt-get install dnsperf)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let qps = text
        .lines()
        .find(|l| l.trim_start().starts_with("Queries per second:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no result from dnsperf: {text}"))?;
    let lost = text
        .lines()
        .find(|l| l.trim_start().starts_with("Queries lost:"))
        .unwrap_or("Queries lost: ?")
        .trim()
        .to_owned();
    Ok((qps, lost))
}

pub(crate) fn dns(args: &DnsArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let base = dir.path();
    // dnsmasq drops to `nobody` when started as root: let it read the hosts file.
    std::fs::set_permissions(base, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let queries = base.join("queries.txt");
    let hosts = base.join("hosts");
    let zone = base.join("clusterset.local.zone");
    let mut q = String::new();
    let mut h = String::new();
    let mut z = String::from(
        "$ORIGIN clusterset.local.\n$TTL 5\n@ SOA ns.clusterset.local. admin.clusterset.local. 1 3600 600 86400 5\n@ NS ns\nns A 127.0.0.1\n",
    );
    for i in 0..args.names {
        q.push_str(&format!("{} A\n", name(i)));
        h.push_str(&format!("{} {}\n", address(i), name(i)));
        z.push_str(&format!("{}. A {}\n", name(i), address(i)));
    }
    std::fs::write(&queries, q)?;
    std::fs::write(&hosts, h)?;
    std::fs::write(&zone, z)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let mut results: Vec<(System, Vec<f64>)> = [System::Isthmus, System::Dnsmasq, System::Knot]
        .into_iter()
        .map(|s| (s, Vec::new()))
        .collect();
    for round in 0..args.rounds {
        for k in 0..results.len() {
            // Rotate the order each round, so that no system always runs first.
            let system = results[(k + round) % results.len()].0;
            let (qps, lost) =
                runtime.block_on(measure(system, args, base, &queries, &hosts, &zone))?;
            eprintln!(
                "round {} {:<8} {qps:>10.0} q/s  ({lost})",
                round + 1,
                system.name()
            );
            if let Some((_, list)) = results.iter_mut().find(|(s, _)| *s == system) {
                list.push(qps);
            }
        }
    }
    let median = |list: &[f64]| {
        let mut v = list.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let of = |s: System| {
        median(
            &results
                .iter()
                .find(|(x, _)| *x == s)
                .map(|(_, l)| l.clone())
                .unwrap_or_default(),
        )
    };
    let (ours, dnsmasq, knot) = (of(System::Isthmus), of(System::Dnsmasq), of(System::Knot));
    println!(
        "DNS queries per second, {} names, dnsperf -c 8 -q 256, {} s × {} rounds (medians)",
        args.names, args.seconds, args.rounds
    );
    println!("  isthmus  {ours:>10.0}");
    println!(
        "  dnsmasq  {dnsmasq:>10.0}   isthmus/dnsmasq {:.2}x (goal ≥ 1x)",
        ours / dnsmasq
    );
    println!(
        "  knot     {knot:>10.0}   isthmus/knot    {:.2}x",
        ours / knot
    );
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    system: System,
    args: &DnsArgs,
    base: &Path,
    queries: &Path,
    hosts: &Path,
    zone: &Path,
) -> anyhow::Result<(f64, String)> {
    let addr = free_port()?;
    let seconds = args.seconds;
    match system {
        System::Isthmus => {
            let table = DnsTable::new();
            for i in 0..args.names {
                table.put(
                    "bench",
                    &format!("svc-{i}"),
                    ServiceRecord {
                        address: address(i),
                        ports: vec![("http".into(), 8080)],
                    },
                );
            }
            // As a member gateway binds it: one UDP socket per core.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let udp = isthmus_gateway::dns::bind_udp(addr, cores)?;
            let tcp = tokio::net::TcpListener::bind(addr).await?;
            let server = DnsServer::start_many(table, udp, tcp, None);
            ready(addr, args.names).await?;
            let queries = queries.to_owned();
            let result =
                tokio::task::spawn_blocking(move || dnsperf(addr, &queries, seconds)).await?;
            server.stop().await;
            result
        }
        System::Dnsmasq => {
            let _proc = Proc::spawn(
                Command::new("dnsmasq")
                    .args([
                        "--keep-in-foreground",
                        "--no-resolv",
                        "--no-hosts",
                        "--bind-interfaces",
                    ])
                    .args([
                        "--listen-address=127.0.0.1",
                        "--local=/clusterset.local/",
                        "--cache-size=10000",
                        "--pid-file=",
                    ])
                    .arg(format!("--port={}", addr.port()))
                    .arg(format!("--addn-hosts={}", hosts.display())),
            )?;
            ready(addr, args.names).await?;
            let queries = queries.to_owned();
            tokio::task::spawn_blocking(move || dnsperf(addr, &queries, seconds)).await?
        }
        System::Knot => {
            let run = base.join(format!("knot-{}", addr.port()));
            std::fs::create_dir_all(run.join("db"))?;
            let conf = run.join("knot.conf");
            std::fs::write(
                &conf,
                format!(
                    "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\ndatabase:\n    storage: \"{run}/db\"\nzone:\n  - domain: clusterset.local\n    file: \"{zone}\"\n    storage: \"{run}\"\n",
                    run = run.display(),
                    port = addr.port(),
                    zone = zone.display()
                ),
            )?;
            let _proc = Proc::spawn(Command::new("knotd").arg("-c").arg(&conf))?;
            ready(addr, args.names).await?;
            let queries = queries.to_owned();
            tokio::task::spawn_blocking(move || dnsperf(addr, &queries, seconds)).await?
        }
    }
}
