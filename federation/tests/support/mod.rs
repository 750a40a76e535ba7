//! In-process federation harness: a CA, N nodes on loopback port 0 with their own data
//! directories, link faults between them, and admin clients. No sleeps: every wait is a
//! polled condition with a bound.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::{Authority, SpiffeId, TrustDomain};
use isthmus_federation::config::{
    Enrollment, FederationConfig, FederationListen, FederationTls, RaftTiming,
};
use isthmus_federation::faults::LinkFaults;
use isthmus_federation::node::{NodeOptions, RunningNode, start};
use isthmus_federation::raft::NodeId;
use isthmus_federation::service::ServiceTimeouts;
use isthmus_federation_api::mirror::CatalogMirror;
use isthmus_federation_api::proto;
use isthmus_federation_api::proto::federation_admin_client::FederationAdminClient;
use isthmus_testkit::TestPki;
use isthmus_testkit::pki::{issue, write_file};
use tonic::transport::Channel;

pub const DAY: Duration = Duration::from_secs(86_400);
pub const BOUND: Duration = Duration::from_secs(30);

pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `check` until it returns `Some`, failing after `bound`.
pub async fn eventually<T, F, Fut>(what: &str, bound: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A root CA with certificate files for nodes and an admin client.
pub struct Pki {
    pub td: TrustDomain,
    pub root: Authority,
    pub ops: Authority,
    pub dir: PathBuf,
}

pub const ADMIN_ID: &str = "spiffe://mesh.example/cluster/ops/ns/admin/sa/tester";

impl Pki {
    pub fn new(dir: &Path) -> Self {
        Self::from_kit(TestPki::new("mesh.example", &["ops"]).unwrap(), dir)
    }

    /// Writes the kit's root as `bundle.pem` and its key as `root.key.pem` in `dir`.
    pub fn from_kit(kit: TestPki, dir: &Path) -> Self {
        let TestPki {
            trust_domain: td,
            root,
            mut intermediates,
        } = kit;
        let ops = intermediates.remove("ops").unwrap();
        write_file(&dir.join("bundle.pem"), &root.cert_chain_pem()).unwrap();
        write_file(&dir.join("root.key.pem"), &root.key_pem()).unwrap();
        Self {
            td,
            root,
            ops,
            dir: dir.to_owned(),
        }
    }

    /// Writes `<name>.cert.pem` and `<name>.key.pem` for `id`, issued by `ca` (with the
    /// DNS name `localhost` unless `id` is a workload's).
    pub fn write_leaf(&self, ca: &Authority, name: &str, id: &str) -> (PathBuf, PathBuf) {
        let dns: &[&str] = if id.contains("/ns/") {
            &[]
        } else {
            &["localhost"]
        };
        let cert = self.dir.join(format!("{name}.cert.pem"));
        let key = self.dir.join(format!("{name}.key.pem"));
        issue(ca, id, dns, DAY).unwrap().write(&cert, &key).unwrap();
        (cert, key)
    }

    pub fn node_files(&self, name: &str) -> FederationTls {
        let (cert, key) = self.write_leaf(
            &self.root,
            name,
            &format!("spiffe://{}/federation/{name}", self.td),
        );
        FederationTls {
            bundle: self.dir.join("bundle.pem"),
            cert,
            key,
        }
    }

    pub fn admin_files(&self) -> (PathBuf, PathBuf) {
        self.write_leaf(&self.ops, "admin", ADMIN_ID)
    }
}

/// Raft timing for tests: slower than the default so that a busy CI machine (tests run
/// in parallel on 2 cores) does not start spurious elections. Tests never measure time.
pub fn relaxed() -> RaftTiming {
    RaftTiming {
        heartbeat: Duration::from_millis(100),
        election_timeout: (Duration::from_millis(500), Duration::from_millis(800)),
        ..RaftTiming::default()
    }
}

/// N federation nodes in this process.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub faults: LinkFaults,
    pub timing: RaftTiming,
    pub configs: BTreeMap<NodeId, FederationConfig>,
    pub nodes: BTreeMap<NodeId, RunningNode>,
    pub access: isthmus_federation::access::AccessControl,
    admin_tls: Arc<rustls::ClientConfig>,
}

/// The harness's access: `ADMIN_ID` is a platform admin.
pub fn admin_access() -> isthmus_federation::access::AccessControl {
    isthmus_federation::access::AccessControl::new(
        [(
            SpiffeId::parse(ADMIN_ID).unwrap(),
            isthmus_federation::access::Role::PlatformAdmin,
        )],
        vec![],
    )
}

impl Harness {
    /// `n` nodes, node 1 initialised, the others added as members.
    pub async fn new(n: u64) -> Self {
        Self::with_timing(n, relaxed()).await
    }

    pub async fn with_timing(n: u64, timing: RaftTiming) -> Self {
        Self::build(n, timing, admin_access()).await
    }

    /// `n` nodes whose admin API grants `access`.
    pub async fn build(
        n: u64,
        timing: RaftTiming,
        access: isthmus_federation::access::AccessControl,
    ) -> Self {
        init_crypto();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (cert, key) = pki.admin_files();
        let admin_tls = client_tls(&dir.path().join("bundle.pem"), &cert, &key);
        let mut harness = Self {
            dir,
            pki,
            faults: LinkFaults::default(),
            timing,
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            access,
            admin_tls,
        };
        harness.start(1).await;
        harness.client(1).init(proto::InitRequest {}).await.unwrap();
        for id in 2..=n {
            harness.add_member(id).await;
        }
        harness
    }

    fn config(&mut self, id: NodeId) -> FederationConfig {
        if let Some(config) = self.configs.get(&id) {
            return config.clone();
        }
        let name = format!("node-{id}");
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = FederationConfig {
            node_id: id,
            name: name.clone(),
            data_dir: self.dir.path().join(format!("data-{id}")),
            listen: FederationListen {
                raft: loopback,
                admin: loopback,
                rest: loopback,
                metrics: Some(loopback),
                enroll: Some(loopback),
            },
            advertise: None,
            tls: self.pki.node_files(&name),
            access: self.access.clone(),
            raft: self.timing,
            raft_source: None,
            alerts: Default::default(),
            enrollment: Enrollment {
                root: Some((
                    self.dir.path().join("bundle.pem"),
                    self.dir.path().join("root.key.pem"),
                )),
                intermediate_lifetime: Duration::from_secs(30 * 24 * 3600),
                token_lifetime: Duration::from_secs(600),
            },
        };
        self.configs.insert(id, config.clone());
        config
    }

    /// Starts node `id` (again, on the same addresses and data directory).
    pub async fn start(&mut self, id: NodeId) {
        let config = self.config(id);
        let options = NodeOptions {
            faults: self.faults.clone(),
            timeouts: ServiceTimeouts {
                write: Duration::from_secs(5),
                read_index: Duration::from_secs(2),
                catch_up: Duration::from_secs(30),
            },
        };
        let node = start(&config, Path::new("/"), options).await.unwrap();
        // Restarts keep their addresses: the members' records point at them.
        self.configs.get_mut(&id).unwrap().listen = node.listen;
        self.nodes.insert(id, node);
    }

    /// Stops node `id` (its data stays).
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    pub async fn add_member(&mut self, id: NodeId) {
        if !self.nodes.contains_key(&id) {
            self.start(id).await;
        }
        let info = self.nodes[&id].info.clone();
        let members: Vec<_> = self.nodes.keys().copied().filter(|n| *n != id).collect();
        let leader = self.leader_among(&members).await;
        let request = proto::AddMemberRequest {
            node_id: id,
            member: Some(proto::Member {
                node_id: id,
                name: info.name,
                raft_addr: info.raft_addr,
                admin_addr: info.admin_addr,
                rest_addr: info.rest_addr,
                enroll_addr: info.enroll_addr,
                voter: true,
                lag: None,
            }),
        };
        self.client(leader).add_member(request).await.unwrap();
    }

    /// Client TLS for a federation-node identity `name` (member or not).
    pub fn node_client_tls(&self, name: &str) -> Arc<rustls::ClientConfig> {
        let files = self.pki.node_files(name);
        client_tls(&files.bundle, &files.cert, &files.key)
    }

    pub fn node(&self, id: NodeId) -> &RunningNode {
        &self.nodes[&id]
    }

    /// An admin gRPC client of node `id`.
    pub fn client(&self, id: NodeId) -> FederationAdminClient<Channel> {
        let addr = self.nodes[&id].listen.admin.to_string();
        FederationAdminClient::new(
            isthmus_federation_api::channel::channel(&addr, self.admin_tls.clone(), None).unwrap(),
        )
    }

    /// The node that leads with every running node agreeing, within the bound.
    pub async fn leader(&self) -> NodeId {
        self.leader_among(&self.nodes.keys().copied().collect::<Vec<_>>())
            .await
    }

    /// The leader as the running nodes `among` all see it.
    pub async fn leader_among(&self, among: &[NodeId]) -> NodeId {
        eventually("an agreed leader", BOUND, || async {
            let mut leaders = among.iter().map(|id| {
                self.nodes[id]
                    .federation
                    .raft()
                    .metrics()
                    .borrow()
                    .current_leader
            });
            let first = leaders.next()??;
            let agreed = leaders.all(|l| l == Some(first)) && among.contains(&first);
            let leads = agreed && self.nodes[&first].federation.local_status().state == "leader";
            leads.then_some(first)
        })
        .await
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&self, id: NodeId) {
        for other in self.configs.keys() {
            if *other != id {
                self.faults.cut(id, *other);
            }
        }
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<_> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// The text of `http://addr/metrics`.
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

/// The value of the sample whose line starts with `series` (name and labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A mutual-TLS client config presenting `cert`, accepting any federation node.
pub fn client_tls(bundle: &Path, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
    let svid = isthmus_ca::Svid::load(
        isthmus_ca::SvidFiles {
            bundle: (bundle, "bundle"),
            cert: (cert, "cert"),
            key: (key, "key"),
        },
        &ExpectedIdentity::Any,
    )
    .unwrap();
    let verifier = isthmus_ca::verify::tls::SpiffeVerifier::new(
        isthmus_ca::SharedBundle::new(svid.bundle),
        ExpectedIdentity::AnyFederationNode,
    );
    Arc::new(
        isthmus_ca::verify::tls::client_config(verifier, svid.chain, svid.key, &[b"h2"]).unwrap(),
    )
}

pub fn cluster(name: &str) -> proto::Cluster {
    proto::Cluster {
        name: name.into(),
        gateways: vec![proto::GatewayEndpoint {
            name: "ew".into(),
            address: "127.0.0.1:15443".into(),
        }],
        intermediate_pem: None,
        state: 0,
        revision: 0,
        locality: None,
    }
}

pub fn put_cluster(name: &str) -> proto::PutClusterRequest {
    proto::PutClusterRequest {
        cluster: Some(cluster(name)),
        expect_revision: None,
    }
}

pub fn export(cluster: &str, name: &str) -> proto::ServiceExport {
    proto::ServiceExport {
        cluster: cluster.into(),
        namespace: "demo".into(),
        name: name.into(),
        ports: vec![proto::ExportPort {
            name: "http".into(),
            port: 8080,
            protocol: 1,
        }],
        health: Some(proto::EndpointHealth {
            healthy: 1,
            total: 1,
        }),
        revision: 0,
    }
}

pub fn stale() -> proto::ListRequest {
    proto::ListRequest {
        consistency: proto::Consistency::Stale as i32,
    }
}

pub fn linearizable() -> proto::ListRequest {
    proto::ListRequest { consistency: 0 }
}

/// Checks a watch with the library's [`CatalogMirror`], which refuses gaps, duplicates,
/// time travel and split snapshots: any such message fails the test.
pub struct WatchChecker {
    pub mirror: CatalogMirror,
}

impl WatchChecker {
    pub fn new() -> Self {
        Self {
            mirror: CatalogMirror::new(),
        }
    }

    pub fn feed(&mut self, message: proto::WatchResponse) {
        let message = isthmus_federation_api::convert::watch_from_proto(message).unwrap();
        if let Err(e) = self.mirror.apply(message) {
            panic!("watch broke its guarantees: {e}");
        }
    }

    pub fn at(&self) -> u64 {
        self.mirror.revision()
    }

    pub fn clusters(&self) -> std::collections::BTreeSet<String> {
        self.mirror.state().clusters.keys().cloned().collect()
    }

    /// Reads `stream` until the mirror is complete up to `revision`.
    pub async fn until(
        &mut self,
        stream: &mut tonic::Streaming<proto::WatchResponse>,
        revision: u64,
    ) {
        while self.at() < revision {
            let message = tokio::time::timeout(BOUND, stream.message())
                .await
                .unwrap_or_else(|_| panic!("watch stalled at {} waiting for {revision}", self.at()))
                .unwrap()
                .unwrap_or_else(|| panic!("watch ended at {} before {revision}", self.at()));
            self.feed(message);
        }
    }
}
