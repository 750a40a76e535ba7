//! The fault proxy in front of each node's Raft port. Nodes advertise the proxy's
//! address and send their own Raft calls from a loopback address of their own
//! (`raft.source_address` = 127.0.1.<n>), so the proxy knows each connection's caller
//! and applies the fault of that one directed link: cut (bytes held, as a partition
//! holds packets, until healed), delayed, or stalled like a retransmission.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::schedule::Rng;

/// What happens on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    /// Nothing passes (it waits).
    pub cut: bool,
    /// Added delay.
    pub delay: Duration,
    /// Extra random delay.
    pub jitter: Duration,
    /// Chunks stalled, per mille.
    pub stall_per_mille: u64,
    /// How long a stall lasts.
    pub stall: Duration,
}

/// The links' faults, by (caller, callee); links not named are clean.
pub type Links = HashMap<(usize, usize), Link>;

/// The loopback address node `node` (0-based) sends its Raft calls from.
pub fn source_of(node: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, node as u8 + 1))
}

fn node_of(source: IpAddr) -> Option<usize> {
    match source {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 1] && v4.octets()[3] > 0 => {
            Some(usize::from(v4.octets()[3]) - 1)
        }
        _ => None,
    }
}

/// The proxies of one run: one per node, all reading the same link table.
pub struct Proxies {
    links: watch::Sender<Links>,
    tasks: JoinSet<()>,
    /// Each node's proxy address (what it advertises for Raft).
    pub addresses: Vec<SocketAddr>,
}

impl Proxies {
    /// Starts one proxy per node, in front of `targets` (the nodes' Raft listeners).
    pub async fn start(targets: &[SocketAddr], seed: u64) -> std::io::Result<Self> {
        let (links, _) = watch::channel(Links::new());
        let mut tasks = JoinSet::new();
        let mut addresses = Vec::new();
        for (callee, target) in targets.iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addresses.push(listener.local_addr()?);
            let links = links.subscribe();
            let target = *target;
            tasks.spawn(accept(
                listener,
                target,
                callee,
                links,
                seed ^ callee as u64,
            ));
        }
        Ok(Self {
            links,
            tasks,
            addresses,
        })
    }

    /// Replaces the whole link table.
    pub fn set(&self, links: Links) {
        self.links.send_replace(links);
    }

    /// Every link clean again.
    pub fn heal(&self) {
        self.set(Links::new());
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    callee: usize,
    links: watch::Receiver<Links>,
    seed: u64,
) {
    let mut connections = JoinSet::new();
    let mut count = 0u64;
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // A connection from elsewhere (a client probing the port) passes clean.
        let caller = node_of(peer.ip());
        count += 1;
        let links = links.clone();
        let seed = seed.wrapping_mul(31).wrapping_add(count);
        connections.spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let link = caller.map(|caller| (caller, callee));
            // Both directions of the caller's connection obey the caller→callee link:
            // a cut call gets neither its request through nor its answer back.
            tokio::join!(
                pump(in_read, out_write, link, links.clone(), Rng::new(seed)),
                pump(out_read, in_write, link, links, Rng::new(seed ^ 1)),
            );
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Copies one direction, each chunk released at its arrival plus the link's delay, in
/// order; nothing is released while the link is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Option<(usize, usize)>,
    links: watch::Receiver<Links>,
    mut rng: Rng,
) {
    let (chunks, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = {
        let links = links.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut release = Instant::now();
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let rule = link
                    .and_then(|l| links.borrow().get(&l).copied())
                    .unwrap_or_default();
                let mut wait = rule.delay + rng.between(Duration::ZERO, rule.jitter);
                if rule.stall_per_mille > 0 && rng.chance(rule.stall_per_mille) {
                    wait += rule.stall;
                }
                release = release.max(Instant::now() + wait);
                if chunks.send((release, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        let mut links = links;
        while let Some((release, chunk)) = queued.recv().await {
            tokio::time::sleep_until(release).await;
            while link.is_some_and(|l| links.borrow().get(&l).is_some_and(|r| r.cut)) {
                if links.changed().await.is_err() {
                    return;
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
