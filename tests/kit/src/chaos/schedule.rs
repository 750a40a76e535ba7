//! The faults of one run, drawn from its seed before anything starts, so that a failing
//! seed replays the same faults in the same order at the same offsets (the processes'
//! own timing still varies from run to run).

use std::time::Duration;

/// A small deterministic generator (SplitMix64): enough for drawing faults and
/// operations, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A duration in `[low, high)`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_micros().max(1) as u64;
        low + Duration::from_micros(self.below(span))
    }
}

/// One fault, on one node or on links between nodes (0-based node indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the node; heal: start it again on its data.
    Kill(usize),
    /// SIGKILL whichever node leads when the fault starts.
    KillLeader,
    /// SIGSTOP the node; heal: SIGCONT.
    Pause(usize),
    /// Cut every link between these nodes and the others, both ways.
    Partition(Vec<usize>),
    /// Cut the link from one node to another only (its calls do not arrive; the other
    /// way works).
    CutOneWay {
        /// The caller whose calls are lost.
        from: usize,
        /// The node they were for.
        to: usize,
    },
    /// Delay every byte between nodes by this much, plus up to `jitter`.
    Slow {
        /// Added one-way delay.
        delay: Duration,
        /// Extra random delay, order kept.
        jitter: Duration,
    },
    /// Stall a share of the chunks between nodes as a lost packet's retransmission
    /// would (TCP hides the loss itself; what the application sees is the stall).
    Lossy {
        /// Chunks stalled, per mille.
        per_mille: u64,
        /// How long each stall lasts.
        stall: Duration,
    },
    /// Fill the node's data directory (its own small tmpfs); heal: free it and start
    /// the node again if it stopped.
    DiskFull(usize),
}

impl Fault {
    /// A short name for tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kill(_) => "kill",
            Self::KillLeader => "kill-leader",
            Self::Pause(_) => "pause",
            Self::Partition(_) => "partition",
            Self::CutOneWay { .. } => "one-way-cut",
            Self::Slow { .. } => "delay",
            Self::Lossy { .. } => "loss-stall",
            Self::DiskFull(_) => "disk-full",
        }
    }
}

/// A fault and when it starts and ends, from the start of the run's load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When it starts.
    pub at: Duration,
    /// How long it lasts.
    pub lasts: Duration,
    /// The fault.
    pub fault: Fault,
}

/// Draws the faults of a run of `length` on `nodes` nodes: one fault at a time, each
/// 0.5–3 s, with 0.3–1.5 s of quiet between. `disk_full` says whether the machine can
/// give a node its own tmpfs (it needs root).
pub fn draw(seed: u64, nodes: usize, length: Duration, disk_full: bool) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    let mut at = rng.between(Duration::from_millis(300), Duration::from_millis(1000));
    let n = nodes as u64;
    loop {
        let lasts = rng.between(Duration::from_millis(500), Duration::from_millis(3000));
        if at + lasts > length {
            break;
        }
        let node = rng.below(n) as usize;
        let kinds = if disk_full { 8 } else { 7 };
        let fault = match rng.below(kinds) {
            0 => Fault::Kill(node),
            1 => Fault::KillLeader,
            2 => Fault::Pause(node),
            3 => {
                // A minority: one node, or two of five.
                let mut side = vec![node];
                if nodes >= 5 && rng.chance(500) {
                    side.push((node + 1 + rng.below(n - 1) as usize) % nodes);
                }
                side.sort_unstable();
                Fault::Partition(side)
            }
            4 => Fault::CutOneWay {
                from: node,
                to: (node + 1 + rng.below(n - 1) as usize) % nodes,
            },
            5 => Fault::Slow {
                delay: rng.between(Duration::from_millis(5), Duration::from_millis(60)),
                jitter: rng.between(Duration::ZERO, Duration::from_millis(30)),
            },
            6 => Fault::Lossy {
                per_mille: 10 + rng.below(40),
                stall: rng.between(Duration::from_millis(200), Duration::from_millis(400)),
            },
            _ => Fault::DiskFull(node),
        };
        steps.push(Step { at, lasts, fault });
        at += lasts + rng.between(Duration::from_millis(300), Duration::from_millis(1500));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_faults_every_time() {
        let length = Duration::from_secs(20);
        assert_eq!(draw(7, 3, length, true), draw(7, 3, length, true));
        assert_ne!(draw(7, 3, length, true), draw(8, 3, length, true));
        for step in draw(7, 5, length, false) {
            assert!(step.at + step.lasts <= length);
            assert_ne!(step.fault.kind(), "disk-full");
        }
    }

    #[test]
    fn faults_do_not_overlap() {
        let steps = draw(3, 3, Duration::from_secs(60), true);
        assert!(steps.len() > 5, "{steps:?}");
        for pair in steps.windows(2) {
            assert!(pair[0].at + pair[0].lasts < pair[1].at);
        }
    }
}
