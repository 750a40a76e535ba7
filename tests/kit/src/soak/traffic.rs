//! The soaks' load: connections held open through the tunnel that exchange bytes on a
//! period, and new connections at a steady rate, all against a byte echo. Every failure
//! is recorded with when it happened and why, and nothing is retried: a held connection
//! that fails is counted as dropped and not reopened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long one exchange (connect, write, read back) may take before it counts as failed.
pub const EXCHANGE_BOUND: Duration = Duration::from_secs(10);
/// The bytes of one exchange.
const MESSAGE: usize = 32;
/// Held connections opened at once while the load ramps up.
const RAMP_CONCURRENCY: usize = 64;
/// Failures kept in full (the rest are counted).
const KEPT_FAILURES: usize = 1_000;

/// What load to run.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// Connections opened at the start and held for the whole run.
    pub held: usize,
    /// How often each held connection exchanges a message.
    pub ping_every: Duration,
    /// New connections per second (each one exchange, then closed); 0 for none.
    pub new_per_second: u32,
}

/// One failed exchange.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When, from the start of the load.
    pub at: Duration,
    /// `held` (a held connection dropped or stalled) or `new`.
    pub kind: &'static str,
    /// What failed.
    pub why: String,
}

/// The load's counters, read while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Held connections open now.
    pub held_open: AtomicU64,
    /// Exchanges on held connections that came back intact.
    pub pings_ok: AtomicU64,
    /// New connections whose exchange came back intact.
    pub new_ok: AtomicU64,
    /// Failed exchanges, held and new.
    pub failed: AtomicU64,
    kept: Mutex<Vec<Failure>>,
}

impl Counters {
    /// The first failures, in full.
    pub fn failures(&self) -> Vec<Failure> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fail(&self, started: Instant, kind: &'static str, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < KEPT_FAILURES {
            kept.push(Failure {
                at: started.elapsed(),
                kind,
                why,
            });
        }
    }
}

/// The running load.
#[derive(Debug)]
pub struct Traffic {
    /// Its counters.
    pub counters: Arc<Counters>,
    /// When the load started (the failures' times count from here).
    pub started: Instant,
    /// How long opening the held connections took.
    pub ramp: Duration,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Traffic {
    /// Opens the held connections to `target` (returns once all are open or failed) and
    /// starts the new-connection load.
    pub async fn start(target: SocketAddr, options: &TrafficOptions) -> Self {
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let ramp = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
        let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<()>(options.held.max(1));
        for i in 0..options.held {
            // Spread the held connections' exchanges over the period, so that the load
            // is steady rather than a burst every period.
            let offset = options.ping_every.mul_f64(i as f64 / options.held as f64);
            let held = Held {
                target,
                every: options.ping_every,
                offset,
                counters: counters.clone(),
                started,
                stopped: stopped.clone(),
            };
            let (ramp, opened) = (ramp.clone(), opened_tx.clone());
            tasks.spawn(async move {
                let permit = ramp.acquire_owned().await;
                let connected = held.connect().await;
                drop(permit);
                let _ = opened.send(()).await;
                if let Some(tcp) = connected {
                    held.run(tcp).await;
                }
            });
        }
        drop(opened_tx);
        for _ in 0..options.held {
            if opened_rx.recv().await.is_none() {
                break;
            }
        }
        let ramp = started.elapsed();
        if options.new_per_second > 0 {
            let (counters, stopped) = (counters.clone(), stopped.clone());
            let rate = options.new_per_second;
            tasks.spawn(new_connections(target, rate, counters, started, stopped));
        }
        Self {
            counters,
            started,
            ramp,
            stop,
            tasks,
        }
    }

    /// Stops the load: held connections finish their exchange in progress and close.
    pub async fn stop(mut self) -> Arc<Counters> {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.counters
    }
}

/// One held connection.
struct Held {
    target: SocketAddr,
    every: Duration,
    offset: Duration,
    counters: Arc<Counters>,
    started: Instant,
    stopped: watch::Receiver<bool>,
}

impl Held {
    async fn connect(&self) -> Option<TcpStream> {
        match tokio::time::timeout(EXCHANGE_BOUND, TcpStream::connect(self.target)).await {
            Ok(Ok(tcp)) => {
                self.counters.held_open.fetch_add(1, Ordering::Relaxed);
                Some(tcp)
            }
            Ok(Err(e)) => {
                self.counters
                    .fail(self.started, "held", format!("connect: {e}"));
                None
            }
            Err(_) => {
                let why = format!("connect: not within {EXCHANGE_BOUND:?}");
                self.counters.fail(self.started, "held", why);
                None
            }
        }
    }

    async fn run(mut self, mut tcp: TcpStream) {
        let mut seq = 0u64;
        let first = tokio::time::Instant::now() + self.offset;
        let mut ticks = tokio::time::interval_at(first, self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.stopped.wait_for(|s| *s) => break,
            }
            seq += 1;
            match exchange(&mut tcp, seq).await {
                Ok(()) => {
                    self.counters.pings_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(why) => {
                    self.counters.held_open.fetch_sub(1, Ordering::Relaxed);
                    self.counters
                        .fail(self.started, "held", format!("exchange {seq}: {why}"));
                    return;
                }
            }
        }
        self.counters.held_open.fetch_sub(1, Ordering::Relaxed);
        let _ = tcp.shutdown().await;
    }
}

/// Writes one message stamped with `seq` and reads it back, within [`EXCHANGE_BOUND`].
async fn exchange(tcp: &mut TcpStream, seq: u64) -> Result<(), String> {
    let mut message = [0u8; MESSAGE];
    message[..8].copy_from_slice(&seq.to_be_bytes());
    message[8..].fill((seq % 251) as u8);
    let round_trip = async {
        tcp.write_all(&message)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut back = [0u8; MESSAGE];
        match tcp.read_exact(&mut back).await {
            Ok(_) if back == message => Ok(()),
            Ok(_) => Err("the echo came back different".to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err("the connection closed".to_owned())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    };
    tokio::time::timeout(EXCHANGE_BOUND, round_trip)
        .await
        .unwrap_or_else(|_| Err(format!("no echo within {EXCHANGE_BOUND:?}")))
}

/// Opens `rate` connections a second, each for one exchange.
async fn new_connections(
    target: SocketAddr,
    rate: u32,
    counters: Arc<Counters>,
    started: Instant,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    // A late tick is made up at once: the rate is per second of the run, not per tick.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = JoinSet::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
        while inflight.try_join_next().is_some() {}
        seq += 1;
        let counters = counters.clone();
        inflight.spawn(async move {
            let outcome = async {
                let mut tcp = tokio::time::timeout(EXCHANGE_BOUND, TcpStream::connect(target))
                    .await
                    .map_err(|_| format!("connect: not within {EXCHANGE_BOUND:?}"))?
                    .map_err(|e| format!("connect: {e}"))?;
                exchange(&mut tcp, seq).await
            }
            .await;
            match outcome {
                Ok(()) => {
                    counters.new_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(why) => counters.fail(started, "new", format!("connection {seq}: {why}")),
            }
        });
    }
    while inflight.join_next().await.is_some() {}
}
