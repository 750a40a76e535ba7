//! `isthmus bench federation`: three `isthmus federation serve` processes (this very
//! binary) against three etcd members, measured in interleaved rounds in one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use isthmus_ca::Authority;
use isthmus_federation_api::client::{ClientTls, FederationClient};
use isthmus_federation_api::model::{Cluster as CatalogCluster, Expect, GatewayEndpoint};
use isthmus_federation_api::request::{AddMember, PutCluster};
use isthmus_federation_api::status::{Consistency, NodeInfo};

use super::FederationArgs;
use super::etcd::Etcd;
use super::load::{LoadResult, closed_loop, median};
use super::systems::{Cluster, Ops, Proc, free_port, wait_until};

const DAY: Duration = Duration::from_secs(86_400);

struct Node {
    config: PathBuf,
    admin: String,
    raft: String,
    rest: String,
}

/// Three federation processes.
struct Federation {
    exe: PathBuf,
    nodes: Vec<Node>,
    procs: Vec<Option<Proc>>,
    /// Per node, one client (one connection) per load connection.
    clients: Vec<Vec<FederationClient>>,
}

/// Clients of one federation node.
#[derive(Clone)]
struct FederationClients(Vec<FederationClient>);

impl Ops for FederationClients {
    async fn write(&self, conn: usize, key: String) -> Result<(), String> {
        let client = &self.0[conn % self.0.len()];
        let request = PutCluster {
            cluster: CatalogCluster {
                name: key,
                gateways: vec![GatewayEndpoint {
                    name: "ew".into(),
                    address: "127.0.0.1:15443".into(),
                }],
                intermediate_pem: None,
                state: Default::default(),
                locality: None,
                join: None,
                revision: 0,
            },
            expect: Expect::Any,
        };
        client
            .put_cluster(request)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn read(&self, conn: usize, key: String) -> Result<(), String> {
        let client = &self.0[conn % self.0.len()];
        client
            .cluster(&key, Consistency::Linearizable)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn write_leaf(root: &Authority, dir: &Path, name: &str, id: &str) -> anyhow::Result<()> {
    let leaf = isthmus_testkit::pki::issue(root, id, &["localhost"], DAY)?;
    leaf.write(
        &dir.join(format!("{name}.cert.pem")),
        &dir.join(format!("{name}.key.pem")),
    )?;
    Ok(())
}

impl Federation {
    async fn start(
        exe: &Path,
        dir: &Path,
        connections: usize,
    ) -> anyhow::Result<(Self, Arc<rustls::ClientConfig>)> {
        let pki = isthmus_testkit::TestPki::new("bench.example", &[])?;
        let root = &pki.root;
        isthmus_testkit::pki::write_file(&dir.join("bundle.pem"), &root.cert_chain_pem())?;
        write_leaf(
            root,
            dir,
            "client",
            "spiffe://bench.example/federation/bench-client",
        )?;
        // Certificates for etcd too, for the like-for-like run (`--etcd-tls`).
        for i in 1..=3 {
            let id = format!("spiffe://bench.example/federation/etcd-{i}");
            write_leaf(root, dir, &format!("etcd-{i}"), &id)?;
        }
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let name = format!("node-{i}");
            let id = format!("spiffe://bench.example/federation/{name}");
            write_leaf(root, dir, &name, &id)?;
            let (raft, admin, rest) = (free_port()?, free_port()?, free_port()?);
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "node_id = {i}\nname = \"{name}\"\ndata_dir = \"data-{i}\"\n[listen]\nraft = \"{raft}\"\nadmin = \"{admin}\"\nrest = \"{rest}\"\n[tls]\nbundle = \"bundle.pem\"\ncert = \"{name}.cert.pem\"\nkey = \"{name}.key.pem\"\n"
                ),
            )?;
            nodes.push(Node {
                config,
                admin: admin.to_string(),
                raft: raft.to_string(),
                rest: rest.to_string(),
            });
        }
        let tls = isthmus_testkit::pki::federation_client_tls(dir, b"h2")?;
        let client_tls = ClientTls::from_config(tls.clone());
        let mut clients = Vec::new();
        for node in &nodes {
            let mut per_node = Vec::new();
            for _ in 0..connections {
                per_node.push(
                    FederationClient::new([node.admin.as_str()], client_tls.clone())?
                        .with_timeout(Duration::from_secs(30)),
                );
            }
            clients.push(per_node);
        }
        let mut federation = Self {
            exe: exe.to_owned(),
            nodes,
            procs: vec![None, None, None],
            clients,
        };
        let federation_tls = tls;
        for i in 0..3 {
            federation.spawn(i)?;
            federation.wait_serving(i).await?;
        }
        let first = federation.clients[0][0].clone();
        first.init().await.context("init")?;
        for i in 1..3 {
            let node = &federation.nodes[i];
            let member = AddMember {
                node_id: i as u64 + 1,
                info: NodeInfo {
                    name: format!("node-{}", i + 1),
                    raft_addr: node.raft.clone(),
                    admin_addr: node.admin.clone(),
                    rest_addr: node.rest.clone(),
                    enroll_addr: None,
                },
            };
            first.add_member(member).await.context("member add")?;
        }
        Ok((federation, federation_tls))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let mut command = Command::new(&self.exe);
        command
            .arg("federation")
            .arg("serve")
            .arg("--config")
            .arg(&self.nodes[i].config);
        self.procs[i] = Some(Proc::spawn(&mut command)?);
        Ok(())
    }

    async fn wait_serving(&self, i: usize) -> anyhow::Result<()> {
        let client = self.clients[i][0].clone();
        wait_until(
            "a federation node to serve",
            Duration::from_secs(30),
            || {
                let client = client.clone();
                async move {
                    client
                        .status(Consistency::Stale)
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
            },
        )
        .await
    }
}

impl Cluster for Federation {
    type Clients = FederationClients;

    fn clients(&self, node: usize) -> FederationClients {
        FederationClients(self.clients[node].clone())
    }

    async fn leader(&self) -> anyhow::Result<usize> {
        wait_until("a federation leader", Duration::from_secs(30), || async {
            for (i, clients) in self.clients.iter().enumerate() {
                if self.procs[i].is_none() {
                    continue;
                }
                if let Ok(status) = clients[0].status(Consistency::Stale).await
                    && status.state == "leader"
                {
                    return Ok(i);
                }
            }
            anyhow::bail!("no node says it leads")
        })
        .await
    }

    fn kill(&mut self, node: usize) {
        if let Some(mut proc) = self.procs[node].take() {
            proc.kill();
        }
    }

    async fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        self.spawn(node)?;
        self.wait_serving(node).await
    }
}

async fn writes<C: Cluster>(
    cluster: &C,
    args: &FederationArgs,
    round: usize,
) -> anyhow::Result<LoadResult> {
    let ops = cluster.clients(cluster.leader().await?);
    Ok(
        closed_loop(args.clients, args.duration(), move |client, seq| {
            let ops = ops.clone();
            async move { ops.write(client, format!("w-{round}-{client}-{seq}")).await }
        })
        .await,
    )
}

async fn reads<C: Cluster>(cluster: &C, args: &FederationArgs) -> anyhow::Result<LoadResult> {
    let ops = cluster.clients(cluster.leader().await?);
    Ok(
        closed_loop(args.clients, args.duration(), move |client, _| {
            let ops = ops.clone();
            async move { ops.read(client, format!("r-{client}")).await }
        })
        .await,
    )
}

/// Kills the leader and times the next acknowledged write through the others.
async fn failover<C: Cluster>(cluster: &mut C, trial: usize) -> anyhow::Result<Duration> {
    let leader = cluster.leader().await?;
    let others: Vec<_> = (0..3)
        .filter(|n| *n != leader)
        .map(|n| cluster.clients(n))
        .collect();
    cluster.kill(leader);
    let killed = Instant::now();
    let mut seq = 0;
    let took = loop {
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "no write succeeded within 60 s of the kill"
        );
        seq += 1;
        let ops = &others[seq % others.len()];
        let attempt = ops.write(0, format!("f-{trial}-{seq}"));
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(300), attempt).await {
            break killed.elapsed();
        }
    };
    cluster.restart(leader).await?;
    // Healthy again before the next trial: the restarted node takes writes too.
    let back = cluster.clients(leader);
    wait_until(
        "the restarted node to take writes",
        Duration::from_secs(30),
        || {
            let back = back.clone();
            async move {
                back.write(0, format!("f-{trial}-back"))
                    .await
                    .map_err(anyhow::Error::msg)
            }
        },
    )
    .await?;
    Ok(took)
}

pub(super) fn run(args: &FederationArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        eprintln!(
            "starting 3 isthmus federation nodes and 3 etcd members in {}",
            dir.path().display()
        );
        std::fs::create_dir_all(dir.path().join("isthmus"))?;
        let pki = dir.path().join("isthmus");
        let (mut ours, tls) = Federation::start(&exe, &pki, args.connections).await?;
        let etcd_tls = args.etcd_tls.then(|| super::etcd::EtcdTls {
            dir: pki.clone(),
            client: tls,
        });
        let mut etcd = Etcd::start(&args.etcd, dir.path(), args.connections, etcd_tls).await?;
        for client in 0..args.clients {
            let key = format!("r-{client}");
            ours.clients(ours.leader().await?)
                .write(0, key.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            etcd.clients(etcd.leader().await?)
                .write(0, key)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let mut results: BTreeMap<(&str, &str), Vec<LoadResult>> = BTreeMap::new();
        for round in 0..args.rounds {
            eprintln!(
                "round {}/{}: writes and linearizable reads, {} s each",
                round + 1,
                args.rounds,
                args.seconds
            );
            results
                .entry(("isthmus", "write"))
                .or_default()
                .push(writes(&ours, args, round).await?);
            results
                .entry(("etcd", "write"))
                .or_default()
                .push(writes(&etcd, args, round).await?);
            results
                .entry(("isthmus", "read"))
                .or_default()
                .push(reads(&ours, args).await?);
            results
                .entry(("etcd", "read"))
                .or_default()
                .push(reads(&etcd, args).await?);
        }
        let mut failovers: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for trial in 0..args.failovers {
            eprintln!(
                "failover {}/{}: kill -9 the leader, time the next acknowledged write",
                trial + 1,
                args.failovers
            );
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            failovers
                .entry("isthmus")
                .or_default()
                .push(ms(failover(&mut ours, trial).await?));
            failovers
                .entry("etcd")
                .or_default()
                .push(ms(failover(&mut etcd, trial).await?));
        }
        report(args, &results, &mut failovers);
        Ok(ExitCode::SUCCESS)
    })
}

fn report(
    args: &FederationArgs,
    results: &BTreeMap<(&str, &str), Vec<LoadResult>>,
    failovers: &mut BTreeMap<&str, Vec<f64>>,
) {
    let stat = |system: &str, workload: &str, f: &dyn Fn(&LoadResult) -> f64| {
        let mut values: Vec<f64> = results
            .get(&(system, workload))
            .map(|r| r.iter().map(f).collect())
            .unwrap_or_default();
        median(&mut values)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\nisthmus bench federation: {} clients over {} connections, {} s x {} rounds (medians), fsync on, loopback; etcd {}",
        args.clients,
        args.connections,
        args.seconds,
        args.rounds,
        if args.etcd_tls {
            "with mutual TLS on client and peer links"
        } else {
            "without TLS"
        }
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}   goal",
        "", "isthmus", "etcd", "ratio"
    );
    let row = |label: &str, ours: f64, theirs: f64, goal: &str| {
        let ratio = if theirs > 0.0 {
            format!("{:.2}x", ours / theirs)
        } else {
            "-".to_owned()
        };
        println!("{label:<28} {ours:>12.1} {theirs:>12.1} {ratio:>8}   {goal}");
    };
    for (workload, name) in [("write", "writes"), ("read", "linearizable reads")] {
        row(
            &format!("{name}/s"),
            stat("isthmus", workload, &|r| r.per_second()),
            stat("etcd", workload, &|r| r.per_second()),
            ">= 2x",
        );
        row(
            &format!("{name} p50 ms"),
            stat("isthmus", workload, &|r| ms(r.percentile(0.5))),
            stat("etcd", workload, &|r| ms(r.percentile(0.5))),
            "",
        );
        row(
            &format!("{name} p99 ms"),
            stat("isthmus", workload, &|r| ms(r.percentile(0.99))),
            stat("etcd", workload, &|r| ms(r.percentile(0.99))),
            "",
        );
        row(
            &format!("{name} errors"),
            stat("isthmus", workload, &|r| r.errors as f64),
            stat("etcd", workload, &|r| r.errors as f64),
            "",
        );
    }
    let ours = median(failovers.entry("isthmus").or_default());
    let theirs = median(failovers.entry("etcd").or_default());
    row("failover ms (kill -9)", ours, theirs, "<= 0.5x");
    for ((system, workload), runs) in results {
        if let Some(e) = runs.iter().find_map(|r| r.first_error.clone()) {
            println!("first {workload} error of {system}: {e}");
        }
    }
    println!("all failover trials (ms): {failovers:?}");
}
