//! What the benchmark needs of a replicated store: clients per node, the leader, and
//! killing and restarting a node. Implemented by the Isthmus federation and by etcd.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Operations against one node.
pub(crate) trait Ops: Clone + Send + Sync + 'static {
    /// Writes `key` (a new key per call) through connection `conn`.
    fn write(&self, conn: usize, key: String) -> impl Future<Output = Result<(), String>> + Send;
    /// Reads `key`, linearizably, through connection `conn`.
    fn read(&self, conn: usize, key: String) -> impl Future<Output = Result<(), String>> + Send;
}

/// A 3-node replicated store under test.
pub(crate) trait Cluster {
    /// Clients of one node.
    type Clients: Ops;
    /// Clients of node `node` (0-based).
    fn clients(&self, node: usize) -> Self::Clients;
    /// The node that leads now.
    fn leader(&self) -> impl Future<Output = anyhow::Result<usize>>;
    /// SIGKILLs node `node`.
    fn kill(&mut self, node: usize);
    /// Starts node `node` again on its data.
    fn restart(&mut self, node: usize) -> impl Future<Output = anyhow::Result<()>>;
}

/// A loopback address with a port that was free a moment ago.
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process, SIGKILLed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    pub(crate) fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Self(child))
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it succeeds or `bound` passes.
pub(crate) async fn wait_until<T, Fut: Future<Output = anyhow::Result<T>>>(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> Fut,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + bound;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("waiting for {what}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
