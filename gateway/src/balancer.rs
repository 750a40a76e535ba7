//! Choosing an endpoint of a local service for an inbound stream: round robin or
//! power-of-two-choices least connections, skipping endpoints that outlier detection has
//! ejected. Pure: the caller passes `now` and the random sample, and reports outcomes.
//!
//! ```text
//! order(now, sample) ──▶ [healthy endpoints, best first] ──connect──▶ success / failure
//!                                                                      │
//!        consecutive failures ≥ threshold ──▶ ejected until now + ejection ◀┘
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How the first endpoint to try is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Each endpoint in turn.
    RoundRobin,
    /// Of two endpoints picked at random, the one with fewer open connections.
    #[default]
    LeastConnections,
}

/// When an endpoint is taken out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Consecutive connect failures that eject an endpoint.
    pub consecutive_failures: u32,
    /// How long an ejected endpoint stays out (doubled for each ejection in a row, up to
    /// ten times this).
    pub ejection: Duration,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            ejection: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    addr: SocketAddr,
    active: u32,
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// The endpoints of one service port and their health.
#[derive(Debug, Clone)]
pub struct Balancer {
    endpoints: Vec<Endpoint>,
    policy: Policy,
    outlier: OutlierPolicy,
    next: usize,
}

impl Balancer {
    /// A balancer over `addrs`.
    pub fn new(addrs: &[SocketAddr], policy: Policy, outlier: OutlierPolicy) -> Self {
        Self {
            endpoints: addrs
                .iter()
                .map(|&addr| Endpoint {
                    addr,
                    active: 0,
                    failures: 0,
                    ejections: 0,
                    ejected_until: None,
                })
                .collect(),
            policy,
            outlier,
            next: 0,
        }
    }

    /// The healthy endpoints in the order to try them: the policy's choice first, then
    /// the rest. Empty when every endpoint is ejected.
    pub fn order(&mut self, now: Instant, sample: u64) -> Vec<SocketAddr> {
        let healthy: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| {
                self.endpoints[i]
                    .ejected_until
                    .is_none_or(|until| now >= until)
            })
            .collect();
        if healthy.is_empty() {
            return Vec::new();
        }
        let first = match self.policy {
            Policy::RoundRobin => {
                let pick = healthy[self.next % healthy.len()];
                self.next = self.next.wrapping_add(1);
                pick
            }
            Policy::LeastConnections => {
                let a = healthy[(sample as usize) % healthy.len()];
                let b = healthy[((sample >> 32) as usize) % healthy.len()];
                if self.endpoints[b].active < self.endpoints[a].active {
                    b
                } else {
                    a
                }
            }
        };
        let start = healthy.iter().position(|&i| i == first).unwrap_or(0);
        healthy[start..]
            .iter()
            .chain(&healthy[..start])
            .map(|&i| self.endpoints[i].addr)
            .collect()
    }

    /// A connection to `addr` succeeded and is now open.
    pub fn connected(&mut self, addr: SocketAddr) {
        if let Some(e) = self.find(addr) {
            e.active += 1;
            e.failures = 0;
            e.ejections = 0;
            e.ejected_until = None;
        }
    }

    /// A connection to `addr` closed.
    pub fn closed(&mut self, addr: SocketAddr) {
        if let Some(e) = self.find(addr) {
            e.active = e.active.saturating_sub(1);
        }
    }

    /// A connect to `addr` failed at `now`; returns true when this ejects it.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let outlier = self.outlier;
        let Some(e) = self.find(addr) else {
            return false;
        };
        e.failures += 1;
        if e.failures < outlier.consecutive_failures {
            return false;
        }
        let factor = 1u32 << e.ejections.min(10);
        let ejection = outlier
            .ejection
            .saturating_mul(factor)
            .min(outlier.ejection * 10);
        e.ejected_until = Some(now + ejection);
        e.ejections += 1;
        e.failures = 0;
        true
    }

    /// Endpoints not ejected at `now`.
    pub fn healthy(&self, now: Instant) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.ejected_until.is_none_or(|until| now >= until))
            .count()
    }

    /// Open connections per endpoint, for metrics and tests.
    pub fn active(&self, addr: SocketAddr) -> u32 {
        self.endpoints
            .iter()
            .find(|e| e.addr == addr)
            .map_or(0, |e| e.active)
    }

    fn find(&mut self, addr: SocketAddr) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.addr == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_lists_the_rest_as_fallbacks() {
        let a = addrs(3);
        let mut b = Balancer::new(&a, Policy::RoundRobin, OutlierPolicy::default());
        let now = Instant::now();
        assert_eq!(b.order(now, 0), vec![a[0], a[1], a[2]]);
        assert_eq!(b.order(now, 0), vec![a[1], a[2], a[0]]);
        assert_eq!(b.order(now, 0), vec![a[2], a[0], a[1]]);
    }

    #[test]
    fn least_connections_prefers_the_idler_of_two() {
        let a = addrs(2);
        let mut b = Balancer::new(&a, Policy::LeastConnections, OutlierPolicy::default());
        let now = Instant::now();
        b.connected(a[0]);
        b.connected(a[0]);
        // Sample picks a[0] and a[1]: a[1] has fewer connections.
        let sample = 1u64 << 32;
        assert_eq!(b.order(now, sample)[0], a[1]);
        b.connected(a[1]);
        b.connected(a[1]);
        b.connected(a[1]);
        assert_eq!(b.order(now, sample)[0], a[0]);
        b.closed(a[1]);
        assert_eq!(b.active(a[1]), 2);
    }

    #[test]
    fn consecutive_failures_eject_for_a_cool_down() {
        let a = addrs(2);
        let outlier = OutlierPolicy {
            consecutive_failures: 2,
            ejection: Duration::from_secs(10),
        };
        let mut b = Balancer::new(&a, Policy::RoundRobin, outlier);
        let t0 = Instant::now();
        assert!(!b.failed(a[0], t0));
        assert!(b.failed(a[0], t0));
        assert_eq!(b.order(t0, 0), vec![a[1]]);
        assert_eq!(b.order(t0 + Duration::from_secs(9), 0), vec![a[1]]);
        let back = b.order(t0 + Duration::from_secs(10), 0);
        assert!(back.contains(&a[0]), "{back:?}");
    }

    #[test]
    fn repeated_ejections_grow_and_success_resets() {
        let a = addrs(1);
        let outlier = OutlierPolicy {
            consecutive_failures: 1,
            ejection: Duration::from_secs(10),
        };
        let mut b = Balancer::new(&a, Policy::RoundRobin, outlier);
        let t0 = Instant::now();
        b.failed(a[0], t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.order(t1, 0), a);
        b.failed(a[0], t1);
        assert!(b.order(t1 + Duration::from_secs(19), 0).is_empty());
        assert_eq!(b.order(t1 + Duration::from_secs(20), 0), a);
        b.connected(a[0]);
        b.failed(a[0], t1 + Duration::from_secs(20));
        assert_eq!(
            b.order(t1 + Duration::from_secs(30), 0),
            a,
            "success reset the backoff"
        );
    }

    #[test]
    fn all_ejected_means_no_endpoint() {
        let a = addrs(2);
        let outlier = OutlierPolicy {
            consecutive_failures: 1,
            ejection: Duration::from_secs(5),
        };
        let mut b = Balancer::new(&a, Policy::LeastConnections, outlier);
        let now = Instant::now();
        assert_eq!(b.healthy(now), 2);
        b.failed(a[0], now);
        assert_eq!(b.healthy(now), 1);
        b.failed(a[1], now);
        assert!(b.order(now, 7).is_empty());
        assert_eq!(b.healthy(now), 0);
        assert_eq!(
            b.healthy(now + Duration::from_secs(5)),
            2,
            "back after the ejection"
        );
        assert!(
            Balancer::new(&[], Policy::RoundRobin, outlier)
                .order(now, 0)
                .is_empty()
        );
    }

    #[test]
    fn ejection_backoff_is_capped() {
        let a = addrs(1);
        let outlier = OutlierPolicy {
            consecutive_failures: 1,
            ejection: Duration::from_secs(1),
        };
        let mut b = Balancer::new(&a, Policy::RoundRobin, outlier);
        let mut now = Instant::now();
        for _ in 0..40 {
            b.failed(a[0], now);
            now += Duration::from_secs(10);
            assert_eq!(
                b.order(now, 0),
                a,
                "never out for more than 10x the ejection"
            );
        }
    }
}
