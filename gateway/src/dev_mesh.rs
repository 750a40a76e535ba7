//! A whole mesh on loopback in one process: a root CA, a federation of N nodes, and
//! clusters whose gateways enroll with join tokens — what `isthmus dev` runs and what the
//! mesh tests drive (stopping the federation, a gateway, rotating the root).
//!
//! It writes the files an operator would (configs, certificates, tokens) under one
//! directory, so that the CLI works against it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use isthmus_ca::{Authority, KeyAlgorithm, LeafRequest, SpiffeId, TrustDomain};
use isthmus_federation::command::{Command, Expect};
use isthmus_federation::config::{
    Enrollment, FederationConfig, FederationListen, FederationTls, RaftTiming,
};
use isthmus_federation::model::TrustBundleDoc;
use isthmus_federation::node::{NodeOptions, RunningNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::GatewayConfigFile;
use crate::membership::Member;

const DAY: Duration = Duration::from_secs(86_400);
/// The dev mesh's trust domain.
pub const TRUST_DOMAIN: &str = "dev.isthmus";
/// The admin identity whose certificate the mesh writes (`admin.pem`, `admin.key`).
pub const ADMIN_ID: &str = "spiffe://dev.isthmus/cluster/ops/ns/admin/sa/dev";

/// Why the dev mesh could not do something.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DevMeshError(String);

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> DevMeshError + '_ {
    move |e| DevMeshError(format!("{what}: {e}"))
}

/// A service a cluster exports: namespace, name, port and its endpoint.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Service port.
    pub port: u16,
    /// The endpoint serving it.
    pub endpoint: SocketAddr,
}

/// One cluster of the mesh.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Its name.
    pub name: String,
    /// `region` or `region/zone`.
    pub locality: String,
    /// Its import range, for example `127.77.0.0/16`.
    pub import_range: String,
    /// Whether its gateway serves DNS.
    pub dns: bool,
    /// What it exports.
    pub exports: Vec<ExportSpec>,
}

/// The running mesh.
pub struct DevMesh {
    /// Where its files are.
    pub dir: PathBuf,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The root CA.
    pub root: Authority,
    /// Federation nodes; `None` while stopped.
    pub nodes: Vec<Option<RunningNode>>,
    configs: Vec<FederationConfig>,
    /// Member gateways by cluster.
    pub members: BTreeMap<String, Member>,
    leaf_lifetime: Duration,
}

impl std::fmt::Debug for DevMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevMesh")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, DevMeshError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(err(&path.display().to_string()))?;
    Ok(path)
}

/// Issues a leaf for `id` from `ca`: (chain PEM, key PEM).
pub fn leaf_pem(
    ca: &Authority,
    id: &str,
    lifetime: Duration,
) -> Result<(String, String), DevMeshError> {
    let issued = ca
        .issue_leaf(
            &LeafRequest {
                id: SpiffeId::parse(id).map_err(err("SPIFFE ID"))?,
                lifetime,
                dns_names: if id.contains("/ns/") {
                    vec![]
                } else {
                    vec!["localhost".into()]
                },
                key_algorithm: KeyAlgorithm::EcdsaP256,
            },
            SystemTime::now(),
        )
        .map_err(err("issuing a leaf"))?;
    let chain = isthmus_ca::pem::certs_to_pem(std::iter::once(&issued.cert).chain(&issued.chain));
    Ok((chain, issued.key.serialize_pem()))
}

impl DevMesh {
    /// Starts a root CA and a federation of `nodes` nodes in `dir` (which must not hold a
    /// previous mesh). Gateways' leaves will live `leaf_lifetime`.
    pub async fn start(
        dir: &Path,
        nodes: u64,
        leaf_lifetime: Duration,
    ) -> Result<Self, DevMeshError> {
        if dir.join("bundle.pem").exists() {
            return Err(DevMeshError(format!(
                "{} holds a previous dev mesh; use an empty directory",
                dir.display()
            )));
        }
        let td = TrustDomain::new(TRUST_DOMAIN).map_err(err("trust domain"))?;
        let root = Authority::new_root(&td, KeyAlgorithm::EcdsaP256, 365 * DAY, SystemTime::now())
            .map_err(err("root CA"))?;
        let bundle = write(dir, "bundle.pem", &root.cert_chain_pem())?;
        let root_key = write(dir, "root.key", &root.key_pem())?;
        let ops = root
            .new_cluster_intermediate("ops", KeyAlgorithm::EcdsaP256, 30 * DAY, SystemTime::now())
            .map_err(err("ops intermediate"))?;
        let (cert, key) = leaf_pem(&ops, ADMIN_ID, 7 * DAY)?;
        write(dir, "admin.pem", &cert)?;
        write(dir, "admin.key", &key)?;
        let mut configs = Vec::new();
        for id in 1..=nodes {
            let name = format!("node-{id}");
            let (cert, key) =
                leaf_pem(&root, &format!("spiffe://{td}/federation/{name}"), 7 * DAY)?;
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            configs.push(FederationConfig {
                node_id: id,
                name: name.clone(),
                data_dir: dir.join(&name),
                listen: FederationListen {
                    raft: loopback,
                    admin: loopback,
                    rest: loopback,
                    metrics: Some(loopback),
                    enroll: Some(loopback),
                },
                advertise: None,
                tls: FederationTls {
                    bundle: bundle.clone(),
                    cert: write(dir, &format!("{name}.pem"), &cert)?,
                    key: write(dir, &format!("{name}.key"), &key)?,
                },
                access: isthmus_federation::access::AccessControl::new(
                    [(
                        SpiffeId::parse(ADMIN_ID).map_err(err("admin ID"))?,
                        isthmus_federation::access::Role::PlatformAdmin,
                    )],
                    vec![],
                ),
                // Slower than the default: several meshes share the cores when tests run
                // in parallel, and openraft bounds each replication call by the
                // heartbeat, so a 50 ms heartbeat lets a busy machine starve a follower.
                raft: RaftTiming {
                    heartbeat: Duration::from_millis(100),
                    election_timeout: (Duration::from_millis(500), Duration::from_millis(800)),
                    ..RaftTiming::default()
                },
                enrollment: Enrollment {
                    root: Some((bundle.clone(), root_key.clone())),
                    intermediate_lifetime: 30 * DAY,
                    token_lifetime: Duration::from_secs(600),
                },
            });
        }
        let mut mesh = Self {
            dir: dir.to_owned(),
            trust_domain: td.clone(),
            root,
            nodes: (0..nodes).map(|_| None).collect(),
            configs,
            members: BTreeMap::new(),
            leaf_lifetime,
        };
        for i in 0..mesh.configs.len() {
            mesh.start_node(i).await?;
        }
        let first = mesh.node(0)?;
        first.federation.init().await.map_err(err("init"))?;
        for node in mesh.nodes[1..].iter().flatten() {
            first
                .federation
                .add_member(node.id, node.info.clone())
                .await
                .map_err(err("member add"))?;
        }
        first
            .federation
            .write(Command::SetTrustBundle {
                trust_bundle: TrustBundleDoc {
                    trust_domain: td.to_string(),
                    roots_pem: mesh.root.cert_chain_pem(),
                    retired_pem: String::new(),
                    revision: 0,
                },
                expect: Expect::Any,
            })
            .await
            .map_err(err("trust bundle"))?;
        Ok(mesh)
    }

    /// Creates or replaces authorization policy `name` (a policy document, JSON);
    /// returns the revision it was written at.
    pub async fn put_policy(&self, name: &str, body: &str) -> Result<u64, DevMeshError> {
        self.any_node()?
            .federation
            .write(Command::PutPolicy {
                policy: isthmus_federation::model::PolicyDoc {
                    name: name.into(),
                    body: body.into(),
                    revision: 0,
                },
                expect: Expect::Any,
            })
            .await
            .map_err(err(&format!("policy {name}")))
    }

    /// Claims `host` (a name or `*.` wildcard) for `namespace`.
    pub async fn put_claim(&self, host: &str, namespace: &str) -> Result<u64, DevMeshError> {
        self.any_node()?
            .federation
            .write(Command::PutClaim {
                claim: isthmus_federation::claims::Claim {
                    host: host.into(),
                    namespace: namespace.into(),
                    revision: 0,
                },
                expect: Expect::Any,
            })
            .await
            .map_err(err(&format!("claim {host}")))
    }

    /// Allows every cluster to reach every service of `namespace` (policy
    /// `allow-<namespace>`): cross-cluster traffic is otherwise denied.
    pub async fn allow_namespace(&self, namespace: &str) -> Result<u64, DevMeshError> {
        let body = serde_json::json!({ "rules": [{
            "name": "every-cluster",
            "action": "allow",
            "from": [{ "cluster": "*" }],
            "to": { "namespace": namespace },
        }]});
        self.put_policy(&format!("allow-{namespace}"), &body.to_string())
            .await
    }

    /// Node `i` (0-based), if running.
    pub fn node(&self, i: usize) -> Result<&RunningNode, DevMeshError> {
        self.nodes
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| DevMeshError(format!("node {} is not running", i + 1)))
    }

    /// A running node (the first that runs).
    pub fn any_node(&self) -> Result<&RunningNode, DevMeshError> {
        self.nodes
            .iter()
            .flatten()
            .next()
            .ok_or_else(|| DevMeshError("no federation node runs".into()))
    }

    /// Starts node `i` (again: same addresses, same data).
    pub async fn start_node(&mut self, i: usize) -> Result<(), DevMeshError> {
        let node = isthmus_federation::node::start(
            &self.configs[i],
            Path::new("/"),
            NodeOptions::default(),
        )
        .await
        .map_err(err(&format!("starting node {}", i + 1)))?;
        // Restarts keep their addresses: the members' records point at them.
        self.configs[i].listen = node.listen;
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Stops node `i` (its data stays).
    pub async fn stop_node(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await;
        }
    }

    /// Replaces node `i`'s certificate files (for a root rotation); takes effect at its
    /// next start.
    pub fn reissue_node(&mut self, i: usize, ca: &Authority) -> Result<(), DevMeshError> {
        let name = self.configs[i].name.clone();
        let (cert, key) = leaf_pem(
            ca,
            &format!("spiffe://{}/federation/{name}", self.trust_domain),
            7 * DAY,
        )?;
        write(&self.dir, &format!("{name}.pem"), &cert)?;
        write(&self.dir, &format!("{name}.key"), &key)?;
        Ok(())
    }

    /// Writes `bundle.pem` (what nodes load at start) with these roots.
    pub fn write_bundle_file(&self, pem: &str) -> Result<(), DevMeshError> {
        write(&self.dir, "bundle.pem", pem).map(|_| ())
    }

    /// Registers `spec` with a join token and starts its gateway.
    pub async fn add_cluster(&mut self, spec: &ClusterSpec) -> Result<&Member, DevMeshError> {
        let token = self
            .any_node()?
            .enroller
            .create_cluster(
                &spec.name,
                Some(spec.locality.clone()),
                None,
                SystemTime::now(),
            )
            .await
            .map_err(err("cluster create"))?;
        let cdir = self.dir.join(&spec.name);
        std::fs::create_dir_all(&cdir).map_err(err(&cdir.display().to_string()))?;
        write(&cdir, "join.token", &token.token)?;
        let mut text = format!(
            "cluster = \"{}\"\n\n[listen]\nquic = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n\n[federation]\nstate_dir = \"state\"\njoin_token_file = \"join.token\"\nleaf_lifetime = \"{}\"\nimport_range = \"{}\"\n",
            spec.name,
            isthmus_config::HumanDuration(self.leaf_lifetime),
            spec.import_range
        );
        if spec.dns {
            text.push_str("\n[dns]\nlisten = \"127.0.0.1:0\"\n");
        }
        for e in &spec.exports {
            text.push_str(&format!(
                "\n[[exports]]\nnamespace = \"{}\"\nname = \"{}\"\nports = [{{ port = {}, endpoints = [\"{}\"] }}]\n",
                e.namespace, e.name, e.port, e.endpoint
            ));
        }
        let path = write(&cdir, "gateway.toml", &text)?;
        self.start_member(&spec.name, &path).await
    }

    /// Starts (or restarts, from its state directory) the gateway of `cluster`.
    pub async fn restart_member(&mut self, cluster: &str) -> Result<&Member, DevMeshError> {
        let path = self.dir.join(cluster).join("gateway.toml");
        self.start_member(cluster, &path).await
    }

    async fn start_member(&mut self, cluster: &str, path: &Path) -> Result<&Member, DevMeshError> {
        let config =
            isthmus_config::load::<GatewayConfigFile>(path).map_err(err("gateway config"))?;
        let base = path.parent().unwrap_or(Path::new("/")).to_owned();
        let member = crate::membership::start(config, &base)
            .await
            .map_err(err(&format!("starting the gateway of {cluster}")))?;
        self.members.insert(cluster.to_owned(), member);
        self.members
            .get(cluster)
            .ok_or_else(|| DevMeshError("vanished".into()))
    }

    /// Stops the gateway of `cluster` at once (its connections are cut).
    pub async fn stop_member(&mut self, cluster: &str) {
        if let Some(member) = self.members.remove(cluster) {
            member.drain(Duration::ZERO).await;
        }
    }

    /// Drains the gateways and stops the nodes.
    pub async fn shutdown(mut self) {
        for (_, member) in std::mem::take(&mut self.members) {
            member.drain(Duration::from_secs(2)).await;
        }
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                node.shutdown().await;
            }
        }
    }
}

/// Serves a tiny HTTP/1.1 responder on loopback that says who answered and what was
/// asked; returns its address.
pub async fn echo_server(label: &str) -> Result<SocketAddr, DevMeshError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err("echo server"))?;
    let addr = listener.local_addr().map_err(err("echo server"))?;
    let label = label.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let label = label.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                    match tcp.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]).into_owned();
                let line = request.lines().next().unwrap_or_default().to_owned();
                // Read the body too: closing with unread bytes would reset the
                // connection, and the answer could be lost with it.
                let head_end = request.find("\r\n\r\n").map_or(len, |i| i + 4);
                let body_len = request
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(1 << 20);
                let mut unread = body_len.saturating_sub(len - head_end);
                while unread > 0 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => unread = unread.saturating_sub(n),
                    }
                }
                let body = format!("hello from {label}: echo.demo answered \"{line}\"\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    Ok(addr)
}
