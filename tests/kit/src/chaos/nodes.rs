//! The federation under test as real processes: `isthmus federation serve` per node,
//! certificates from a test root, each node's Raft behind its fault proxy, its data in
//! a tmpfs of its own when the machine allows mounting one (for disk-full), its log in
//! the run's directory. Dropping [`Nodes`] kills the processes and unmounts.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isthmus_federation_api::client::{ClientTls, FederationClient};
use isthmus_federation_api::request::AddMember;
use isthmus_federation_api::status::{Consistency, NodeInfo};

use super::ChaosError;
use super::proxy::{Proxies, source_of};
use crate::pki::{TestPki, federation_client_tls, issue, write_file};

const DAY: Duration = Duration::from_secs(86_400);
/// The identity the run's clients present (a platform admin).
pub const CLIENT_ID: &str = "spiffe://chaos.example/cluster/ops/ns/admin/sa/chaos";

/// One node's files and addresses.
pub struct Node {
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// gRPC admin address.
    pub admin: SocketAddr,
    /// REST address.
    pub rest: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
    process: Option<Child>,
    paused: bool,
    tmpfs: bool,
}

/// The run's nodes, their proxies and the clients' TLS.
pub struct Nodes {
    exe: PathBuf,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// The Raft fault proxies.
    pub proxies: Proxies,
    /// TLS for the gRPC admin API (ALPN `h2`), as the run's client.
    pub client_tls: Arc<rustls::ClientConfig>,
    /// TLS for the REST API (ALPN `http/1.1`).
    pub rest_tls: Arc<rustls::ClientConfig>,
    /// Whether each node's data is on a tmpfs of its own (disk-full possible).
    pub disk_full: bool,
    _claim: crate::loopback::RangeClaim,
}

/// The loopback range the nodes listen in, claimed machine-wide for the run (see
/// [`crate::loopback`]): node N listens on 127.0.2.N, ports 7001–7003. A port that
/// was free a moment ago (bind to port 0, close, hand it on) is in the ephemeral
/// range, and in 2 of 100 seeds some outgoing connection took it before the node
/// bound it; fixed ports below that range on addresses of the run's own cannot be
/// taken that way.
const RANGE: &str = "127.0.2.0/24";
/// How long a run waits for another run to let go of [`RANGE`].
const RANGE_WAIT: Duration = Duration::from_secs(600);

/// Node `i`'s (0-based) address for port `port`.
fn listen(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 2, i as u8 + 1], port))
}

fn run(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Nodes {
    /// Writes the configs and certificates of `count` nodes under `dir`, starts them,
    /// and makes them one federation (init on the first, the others added).
    pub async fn start(
        exe: &Path,
        dir: &Path,
        count: usize,
        seed: u64,
        tmpfs: bool,
    ) -> Result<Self, ChaosError> {
        let pki = TestPki::new("chaos.example", &["ops"])?;
        write_file(&dir.join("bundle.pem"), &pki.root.cert_chain_pem())?;
        let client = issue(pki.intermediate("ops")?, CLIENT_ID, &[], DAY)?;
        client.write(&dir.join("client.cert.pem"), &dir.join("client.key.pem"))?;
        let mut raft = Vec::new();
        let claim = crate::loopback::claim(RANGE, RANGE_WAIT)
            .await
            .map_err(|e| ChaosError::Setup(e.to_string()))?;
        for i in 0..count {
            raft.push(listen(i, 7001));
        }
        let proxies = Proxies::start(&raft, seed).await?;
        let mut nodes = Vec::new();
        let mut disk_full = tmpfs;
        for (i, raft) in raft.iter().enumerate() {
            let id = i + 1;
            let name = format!("node-{id}");
            let leaf = issue(
                &pki.root,
                &format!("spiffe://chaos.example/federation/{name}"),
                &["localhost"],
                DAY,
            )?;
            leaf.write(
                &dir.join(format!("{name}.cert.pem")),
                &dir.join(format!("{name}.key.pem")),
            )?;
            let (admin, rest) = (listen(i, 7002), listen(i, 7003));
            let data = dir.join(format!("data-{id}"));
            std::fs::create_dir_all(&data)?;
            let mounted = disk_full
                && run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
                    .arg(&data));
            disk_full &= mounted;
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    r#"node_id = {id}
name = "{name}"
data_dir = "data-{id}"

[listen]
raft = "{raft}"
admin = "{admin}"
rest = "{rest}"

[advertise]
raft = "{proxy}"
admin = "{admin}"
rest = "{rest}"

[tls]
bundle = "bundle.pem"
cert = "{name}.cert.pem"
key = "{name}.key.pem"

[admin]
clients = ["{CLIENT_ID}"]

[raft]
source_address = "{source}"
# Small, so that snapshots are built and installed under faults too.
snapshot_every = 300
keep_after_snapshot = 50
watch_history = 1000000
"#,
                    proxy = proxies.addresses[i],
                    source = source_of(i),
                ),
            )?;
            nodes.push(Node {
                config,
                data,
                admin,
                rest,
                log: dir.join(format!("{name}.log")),
                process: None,
                paused: false,
                tmpfs: mounted,
            });
        }
        let client_tls = federation_client_tls(dir, b"h2")?;
        let rest_tls = federation_client_tls(dir, b"http/1.1")?;
        let mut me = Self {
            exe: exe.to_owned(),
            nodes,
            proxies,
            client_tls,
            rest_tls,
            disk_full,
            _claim: claim,
        };
        for i in 0..count {
            me.spawn(i)?;
        }
        for i in 0..count {
            me.wait_serving(i, Duration::from_secs(60)).await?;
        }
        let first = me.client(0);
        first
            .init()
            .await
            .map_err(|e| ChaosError::Setup(format!("init: {e}")))?;
        for i in 1..count {
            let member = AddMember {
                node_id: i as u64 + 1,
                info: NodeInfo {
                    name: format!("node-{}", i + 1),
                    raft_addr: me.proxies.addresses[i].to_string(),
                    admin_addr: me.nodes[i].admin.to_string(),
                    rest_addr: me.nodes[i].rest.to_string(),
                    enroll_addr: None,
                },
            };
            first
                .add_member(member)
                .await
                .map_err(|e| ChaosError::Setup(format!("member add {}: {e}", i + 1)))?;
        }
        Ok(me)
    }

    /// A gRPC client of node `i` alone.
    pub fn client(&self, i: usize) -> FederationClient {
        let addr = self.nodes[i].admin.to_string();
        FederationClient::new(
            [addr.as_str()],
            ClientTls::from_config(self.client_tls.clone()),
        )
        .expect("a loopback address makes a client")
        .with_timeout(Duration::from_secs(2))
    }

    /// Starts node `i`'s process (its log appended to).
    pub fn spawn(&mut self, i: usize) -> Result<(), ChaosError> {
        let node = &mut self.nodes[i];
        let log = File::options().create(true).append(true).open(&node.log)?;
        let child = Command::new(&self.exe)
            .args(["federation", "serve", "--config"])
            .arg(&node.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.process = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Waits until node `i` answers a status call.
    pub async fn wait_serving(&self, i: usize, bound: Duration) -> Result<(), ChaosError> {
        let client = self.client(i);
        let deadline = Instant::now() + bound;
        loop {
            match client.status(Consistency::Stale).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(ChaosError::Setup(format!(
                        "node {} did not serve within {bound:?}: {e} (log: {})",
                        i + 1,
                        self.nodes[i].log.display()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Whether node `i`'s process is running (not killed, not exited).
    pub fn running(&mut self, i: usize) -> bool {
        match &mut self.nodes[i].process {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].paused = false;
    }

    /// Sends `signal` (`STOP` or `CONT`) to node `i`.
    fn signal(&mut self, i: usize, signal: &str) {
        if let Some(child) = &self.nodes[i].process {
            let pid = child.id().to_string();
            run(Command::new("kill").args([&format!("-{signal}"), &pid]));
        }
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "STOP");
        self.nodes[i].paused = true;
    }

    /// SIGCONTs node `i`.
    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused {
            self.signal(i, "CONT");
            self.nodes[i].paused = false;
        }
    }

    /// Fills node `i`'s tmpfs with a ballast file until the disk is full.
    pub fn fill_disk(&mut self, i: usize) -> Result<(), ChaosError> {
        use std::io::Write;
        let mut ballast = File::create(self.ballast(i))?;
        let chunk = vec![0u8; 1 << 20];
        while ballast.write_all(&chunk).is_ok() {}
        let _ = ballast.sync_all();
        Ok(())
    }

    /// Frees node `i`'s disk.
    pub fn free_disk(&mut self, i: usize) {
        let _ = std::fs::remove_file(self.ballast(i));
    }

    fn ballast(&self, i: usize) -> PathBuf {
        self.nodes[i].data.join("ballast")
    }

    /// Every node running and unpaused again (restarting those that died).
    pub fn revive_all(&mut self) -> Result<(), ChaosError> {
        for i in 0..self.nodes.len() {
            self.free_disk(i);
            self.resume(i);
            if !self.running(i) {
                self.kill(i);
                self.spawn(i)?;
            }
        }
        Ok(())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.kill(i);
            if self.nodes[i].tmpfs {
                run(Command::new("umount").arg(&self.nodes[i].data));
            }
        }
    }
}
