//! A whole mesh on loopback in one process: a root CA, a federation of N nodes, and
//! clusters whose gateways enroll with join tokens — what `isthmus dev` runs and what the
//! mesh tests drive (stopping the federation, a gateway, rotating the root).
//!
//! It writes the files an operator would (configs, certificates, tokens) under one
//! directory, so that the CLI works against it, and it changes the catalog only through
//! the admin API, with its admin certificate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use isthmus_ca::{Authority, KeyAlgorithm, SpiffeId, TrustDomain};
use isthmus_federation::config::{
    Enrollment, FederationConfig, FederationListen, FederationTls, RaftTiming,
};
use isthmus_federation::node::{NodeOptions, RunningNode};
use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::client::{ClientTls, FederationClient};
use isthmus_federation_api::model::{Expect, Policy, TrustBundleDoc};
use isthmus_federation_api::request::{
    AddMember, CreateCluster, PutClaim, PutPolicy, SetTrustBundle,
};
use isthmus_gateway::Gateway;
use isthmus_gateway::config::GatewayConfigFile;

use crate::loopback::{self, RangeClaim};
use crate::pki::{PkiError, issue};

const DAY: Duration = Duration::from_secs(86_400);
/// The dev mesh's trust domain.
pub const TRUST_DOMAIN: &str = "dev.isthmus";
/// The admin identity whose certificate the mesh writes (`admin.pem`, `admin.key`).
pub const ADMIN_ID: &str = "spiffe://dev.isthmus/cluster/ops/ns/admin/sa/dev";

/// Why the dev mesh could not do something: what it was doing, and why not.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DevMeshError(pub String);

impl From<PkiError> for DevMeshError {
    fn from(e: PkiError) -> Self {
        Self(e.to_string())
    }
}

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
    /// More of its gateway's config, as TOML appended to the file the mesh writes (an
    /// `[ingress]` or `[egress]` section, say); paths in it are relative to the
    /// cluster's directory.
    pub extra_config: String,
}

/// An active member cluster with no gateway of its own (its one gateway endpoint is the
/// discard port): a source of catalog changes that no gateway's own publishing touches.
pub fn cluster_without_gateway(name: &str) -> isthmus_federation_api::model::Cluster {
    use isthmus_federation_api::model::{Cluster, ClusterState, GatewayEndpoint};
    Cluster {
        name: name.into(),
        gateways: vec![GatewayEndpoint {
            name: "ew".into(),
            address: "127.0.0.1:9".into(),
        }],
        intermediate_pem: None,
        state: ClusterState::Active,
        locality: None,
        join: None,
        revision: 0,
    }
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
    pub members: BTreeMap<String, Gateway>,
    leaf_lifetime: Duration,
    /// The import ranges of its clusters, claimed machine-wide while it lives.
    range_claims: Vec<RangeClaim>,
}

/// How long a cluster waits for its import range while another process holds it (about
/// the length of one mesh test).
const RANGE_WAIT: Duration = Duration::from_secs(300);

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

impl DevMesh {
    /// Starts a root CA and a federation of `nodes` nodes in `dir` (which must not hold a
    /// previous mesh). Gateways' leaves will live `leaf_lifetime`.
    pub async fn start(
        dir: &Path,
        nodes: u64,
        leaf_lifetime: Duration,
    ) -> Result<Self, DevMeshError> {
        Self::start_with_alerts(dir, nodes, leaf_lifetime, Default::default()).await
    }

    /// [`Self::start`] with every node's `[alerts]` settings.
    pub async fn start_with_alerts(
        dir: &Path,
        nodes: u64,
        leaf_lifetime: Duration,
        alerts: isthmus_federation::alerts::config::AlertSettings,
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
        let admin = issue(&ops, ADMIN_ID, &[], 7 * DAY)?;
        write(dir, "admin.pem", &admin.chain_pem())?;
        write(dir, "admin.key", &admin.key_pem())?;
        // A bearer token for the dev admin (the UI's sign-in), platform-admin.
        let (token, _) = isthmus_federation::access::mint_token().map_err(err("admin token"))?;
        write(dir, "admin.token", &token)?;
        let token_grant = isthmus_federation::access::TokenGrant {
            name: "dev-admin".into(),
            sha256: isthmus_federation::access::token_sha256(&token),
            role: isthmus_federation::access::Role::PlatformAdmin,
        };
        // And one that may only read, to see what a reader sees.
        let (reader, _) = isthmus_federation::access::mint_token().map_err(err("reader token"))?;
        write(dir, "reader.token", &reader)?;
        let reader_grant = isthmus_federation::access::TokenGrant {
            name: "dev-reader".into(),
            sha256: isthmus_federation::access::token_sha256(&reader),
            role: isthmus_federation::access::Role::Reader,
        };
        let mut configs = Vec::new();
        for id in 1..=nodes {
            let name = format!("node-{id}");
            let leaf = issue(
                &root,
                &format!("spiffe://{td}/federation/{name}"),
                &["localhost"],
                7 * DAY,
            )?;
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
                    cert: write(dir, &format!("{name}.pem"), &leaf.chain_pem())?,
                    key: write(dir, &format!("{name}.key"), &leaf.key_pem())?,
                },
                access: isthmus_federation::access::AccessControl::new(
                    [(
                        SpiffeId::parse(ADMIN_ID).map_err(err("admin ID"))?,
                        isthmus_federation::access::Role::PlatformAdmin,
                    )],
                    vec![token_grant.clone(), reader_grant.clone()],
                ),
                // Slower than the default: several meshes share the cores when tests run
                // in parallel, and openraft bounds each replication call by the
                // heartbeat, so a 50 ms heartbeat lets a busy machine starve a follower.
                raft: RaftTiming {
                    heartbeat: Duration::from_millis(100),
                    election_timeout: (Duration::from_millis(500), Duration::from_millis(800)),
                    ..RaftTiming::default()
                },
                raft_source: None,
                alerts: alerts.clone(),
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
            range_claims: Vec::new(),
        };
        for i in 0..mesh.configs.len() {
            mesh.start_node(i).await?;
        }
        // Bootstrapped as an operator would: init on the first node, then the others
        // added through it.
        let first = mesh.node_client(0)?;
        first.init().await.map_err(err("init"))?;
        for node in mesh.nodes[1..].iter().flatten() {
            let member = AddMember {
                node_id: node.id,
                info: node.info.clone(),
            };
            first.add_member(member).await.map_err(err("member add"))?;
        }
        let bundle = SetTrustBundle {
            bundle: TrustBundleDoc {
                trust_domain: td.to_string(),
                roots_pem: mesh.root.cert_chain_pem(),
                retired_pem: String::new(),
                revision: 0,
            },
            expect: Expect::Any,
        };
        first
            .set_trust_bundle(bundle)
            .await
            .map_err(err("trust bundle"))?;
        Ok(mesh)
    }

    /// How the mesh's admin calls the federation: `admin.pem`, trusting the roots in
    /// `bundle.pem` now (a root rotation rewrites it).
    fn admin_tls(&self) -> Result<ClientTls, DevMeshError> {
        ClientTls::from_files(
            (&self.dir.join("bundle.pem"), "bundle.pem"),
            (&self.dir.join("admin.pem"), "admin.pem"),
            (&self.dir.join("admin.key"), "admin.key"),
        )
        .map_err(err("admin certificate"))
    }

    /// An admin client of node `i` alone (0-based), for what one node says of itself.
    pub fn node_client(&self, i: usize) -> Result<FederationClient, DevMeshError> {
        let addr = self.node(i)?.listen.admin.to_string();
        FederationClient::new([addr], self.admin_tls()?).map_err(err("admin client"))
    }

    /// An admin client of the running nodes (the mesh's platform-admin certificate).
    pub fn client(&self) -> Result<FederationClient, DevMeshError> {
        let servers: Vec<String> = self
            .nodes
            .iter()
            .flatten()
            .map(|n| n.listen.admin.to_string())
            .collect();
        FederationClient::new(servers, self.admin_tls()?).map_err(err("admin client"))
    }

    /// Creates or replaces authorization policy `name` (a policy document, JSON);
    /// returns the revision it was written at.
    pub async fn put_policy(&self, name: &str, body: &str) -> Result<u64, DevMeshError> {
        let policy = Policy {
            name: name.into(),
            body: isthmus_federation_api::policy::parse(body)
                .map_err(err(&format!("policy {name}")))?,
            revision: 0,
        };
        let put = PutPolicy {
            policy,
            expect: Expect::Any,
        };
        let written = self.client()?.put_policy(put).await;
        Ok(written.map_err(err(&format!("policy {name}")))?.revision)
    }

    /// Claims `host` (a name or `*.` wildcard) for `namespace`.
    pub async fn put_claim(&self, host: &str, namespace: &str) -> Result<u64, DevMeshError> {
        let put = PutClaim {
            claim: Claim {
                host: host.into(),
                namespace: namespace.into(),
                revision: 0,
            },
            expect: Expect::Any,
        };
        let written = self.client()?.put_claim(put).await;
        Ok(written.map_err(err(&format!("claim {host}")))?.revision)
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
        let leaf = issue(
            ca,
            &format!("spiffe://{}/federation/{name}", self.trust_domain),
            &["localhost"],
            7 * DAY,
        )?;
        write(&self.dir, &format!("{name}.pem"), &leaf.chain_pem())?;
        write(&self.dir, &format!("{name}.key"), &leaf.key_pem())?;
        Ok(())
    }

    /// Writes one of the mesh's files (in its directory).
    pub(crate) fn write_file(&self, name: &str, text: &str) -> Result<(), DevMeshError> {
        write(&self.dir, name, text).map(|_| ())
    }

    /// Writes `bundle.pem` (what nodes load at start) with these roots.
    pub fn write_bundle_file(&self, pem: &str) -> Result<(), DevMeshError> {
        write(&self.dir, "bundle.pem", pem).map(|_| ())
    }

    /// Registers `spec` with a join token and starts its gateway.
    pub async fn add_cluster(&mut self, spec: &ClusterSpec) -> Result<&Gateway, DevMeshError> {
        let claim = loopback::claim(&spec.import_range, RANGE_WAIT)
            .await
            .map_err(|e| DevMeshError(e.to_string()))?;
        self.range_claims.push(claim);
        let create = CreateCluster {
            name: spec.name.clone(),
            locality: Some(spec.locality.clone()),
            ttl: None,
        };
        let token = self
            .client()?
            .create_cluster(create)
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
        text.push_str("\n[access_log]\noutput = \"file\"\npath = \"access.log\"\n");
        for e in &spec.exports {
            text.push_str(&format!(
                "\n[[exports]]\nnamespace = \"{}\"\nname = \"{}\"\nports = [{{ port = {}, endpoints = [\"{}\"] }}]\n",
                e.namespace, e.name, e.port, e.endpoint
            ));
        }
        text.push('\n');
        text.push_str(&spec.extra_config);
        let path = write(&cdir, "gateway.toml", &text)?;
        self.start_member(&spec.name, &path).await
    }

    /// Where the gateway of `cluster` writes its access log.
    pub fn access_log(&self, cluster: &str) -> PathBuf {
        self.dir.join(cluster).join("access.log")
    }

    /// Starts (or restarts, from its state directory) the gateway of `cluster`.
    pub async fn restart_member(&mut self, cluster: &str) -> Result<&Gateway, DevMeshError> {
        let path = self.dir.join(cluster).join("gateway.toml");
        self.start_member(cluster, &path).await
    }

    async fn start_member(&mut self, cluster: &str, path: &Path) -> Result<&Gateway, DevMeshError> {
        let config =
            isthmus_config::load::<GatewayConfigFile>(path).map_err(err("gateway config"))?;
        let base = path.parent().unwrap_or(Path::new("/")).to_owned();
        let member = Gateway::start(config, &base)
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
