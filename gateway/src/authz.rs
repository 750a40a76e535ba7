//! Who may open a tunnelled connection here: the authorization in force at the
//! receiving gateway (the federation's policies, or a static config's peer list) and the
//! per-(source cluster, destination service) connection limits. Decisions are pure; the
//! only state is the token buckets and open-connection counts, which take `now`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::collections::BTreeMap;

use isthmus_federation_api::model::Policy;
use isthmus_federation_api::policy::{Caller, Decision, NamedLimit, PolicySet, Target};

/// The authorization in force.
#[derive(Debug, Clone)]
pub enum Authorization {
    /// A gateway run from a static config: every verified gateway of a cluster in its
    /// `[[peers]]` list may reach every export (the peer list is the allow list; there is
    /// no federation to hold policies).
    ConfiguredPeers,
    /// A federation member: the federation's policies; what no rule allows is denied.
    Policies(Arc<PolicySet>),
    /// The federation's policies could not be read (a document this gateway does not
    /// understand): everything is denied until they can, and the reason is logged.
    Unusable(String),
}

impl Default for Authorization {
    fn default() -> Self {
        Self::Policies(Arc::default())
    }
}

/// What the receiving gateway decided for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether it may go through.
    pub allowed: bool,
    /// The metric and log label of the deciding rule: `policy/rule`, `default-deny`,
    /// `configured-peers` or `unusable-policies`.
    pub rule: String,
    /// A shadow rule that would have decided otherwise (`policy/rule`).
    pub shadow: Option<String>,
    /// Why, for the refusal message.
    pub reason: String,
}

impl Verdict {
    /// A refusal by `rule` (not a policy's: a limit, a missing identity, a registration
    /// gone), for `reason`.
    pub fn refusal(rule: impl Into<String>, reason: String) -> Self {
        Self {
            allowed: false,
            rule: rule.into(),
            shadow: None,
            reason,
        }
    }
}

impl Authorization {
    /// The authorization of the federation's policies, failing closed: one policy this
    /// gateway could not read (`unreadable`, name → why) denies everything.
    pub fn from_policies<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        unreadable: &BTreeMap<String, String>,
    ) -> Self {
        if let Some((name, why)) = unreadable.iter().next() {
            return Self::Unusable(format!("policy \"{name}\" cannot be read: {why}"));
        }
        Self::Policies(Arc::new(PolicySet::new(
            policies
                .into_iter()
                .map(|p| (p.name.as_str(), p.body.clone())),
        )))
    }

    /// The decision for `caller` asking for `target` (pure).
    pub fn decide(&self, caller: &Caller<'_>, target: &Target<'_>) -> Verdict {
        match self {
            Self::ConfiguredPeers => Verdict {
                allowed: true,
                rule: "configured-peers".into(),
                shadow: None,
                reason: String::new(),
            },
            Self::Unusable(why) => Verdict {
                allowed: false,
                rule: "unusable-policies".into(),
                shadow: None,
                reason: format!("every connection is denied: {why}"),
            },
            Self::Policies(set) => {
                let Decision {
                    allowed,
                    rule,
                    would_deny,
                    would_allow,
                } = set.evaluate(caller, target);
                let reason = match (&rule, allowed) {
                    (Some(rule), false) => format!("denied by policy rule {rule}"),
                    (None, _) => format!(
                        "no policy rule allows cluster {} to reach {}.{} port {} (cross-cluster traffic is denied unless allowed)",
                        caller.cluster, target.service, target.namespace, target.port
                    ),
                    (Some(_), true) => String::new(),
                };
                Verdict {
                    allowed,
                    rule: rule.unwrap_or_else(|| "default-deny".into()),
                    shadow: would_deny.or(would_allow),
                    reason,
                }
            }
        }
    }

    /// The limit on connections from `cluster` to `namespace/service`, if any.
    pub fn rate_limit(&self, cluster: &str, namespace: &str, service: &str) -> Option<&NamedLimit> {
        match self {
            Self::Policies(set) => set.rate_limit(cluster, namespace, service),
            _ => None,
        }
    }
}

/// A token bucket: `rate` tokens a second up to `burst`, taken one per connection.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one at `now` (pure apart from `self`).
    pub fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a connection was refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverLimit {
    /// Too many new connections per second.
    Rate {
        /// `policy/limit`.
        limit: String,
        /// Its rate.
        per_second: u32,
    },
    /// Too many connections open at once.
    Concurrent {
        /// `policy/limit`.
        limit: String,
        /// Its maximum.
        max: u32,
    },
}

impl OverLimit {
    /// `policy/limit`.
    pub fn limit(&self) -> &str {
        match self {
            Self::Rate { limit, .. } | Self::Concurrent { limit, .. } => limit,
        }
    }
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rate { limit, per_second } => write!(
                f,
                "over rate limit {limit} ({per_second} new connections a second); retry later"
            ),
            Self::Concurrent { limit, max } => write!(
                f,
                "over rate limit {limit} ({max} connections open at once); retry when one closes"
            ),
        }
    }
}

type Key = (String, String, String);

#[derive(Debug)]
struct Entry {
    bucket: TokenBucket,
    open: u32,
}

/// The buckets and open-connection counts, per (source cluster, namespace, service).
/// Keys come from verified peer clusters and this gateway's exports only, so the map is
/// bounded by peers × exported services.
#[derive(Debug, Default)]
pub struct Limiter {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// An admitted connection; it counts as open until dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    key: Option<Key>,
}

impl Permit {
    /// A permit no limit counts (a connection no limit applies to).
    pub fn unlimited(limiter: &Arc<Limiter>) -> Self {
        Self {
            limiter: limiter.clone(),
            key: None,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut entries = self.limiter.lock();
            if let Some(entry) = entries.get_mut(&key) {
                entry.open = entry.open.saturating_sub(1);
            }
        }
    }
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // Every update leaves an entry whole, so a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one new connection from `cluster` to `namespace/service` under `limit`
    /// (none: admitted, not counted) at `now`.
    pub fn admit(
        self: &Arc<Self>,
        limit: Option<&NamedLimit>,
        cluster: &str,
        namespace: &str,
        service: &str,
        now: Instant,
    ) -> Result<Permit, OverLimit> {
        let Some(NamedLimit { id, limit }) = limit else {
            return Ok(Permit::unlimited(self));
        };
        let key = (cluster.to_owned(), namespace.to_owned(), service.to_owned());
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            bucket: TokenBucket::full(limit.burst(), now),
            open: 0,
        });
        if let Some(max) = limit.max_concurrent {
            if entry.open >= max {
                return Err(OverLimit::Concurrent {
                    limit: id.clone(),
                    max,
                });
            }
        }
        if !entry
            .bucket
            .take(limit.connections_per_second, limit.burst(), now)
        {
            return Err(OverLimit::Rate {
                limit: id.clone(),
                per_second: limit.connections_per_second,
            });
        }
        entry.open += 1;
        Ok(Permit {
            limiter: self.clone(),
            key: Some(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use isthmus_federation_api::policy::{LimitTarget, PolicyBody, RateLimit};

    use super::*;

    const EAST: Caller<'static> = Caller {
        cluster: "east",
        workload: None,
    };
    const API: Target<'static> = Target {
        namespace: "shop",
        service: "api",
        port: 80,
        http: None,
    };

    fn limit(rate: u32, burst: Option<u32>, max: Option<u32>) -> NamedLimit {
        NamedLimit {
            id: "p/l".into(),
            limit: RateLimit {
                name: "l".into(),
                from_cluster: "*".into(),
                to: LimitTarget {
                    namespace: "shop".into(),
                    service: "api".into(),
                },
                connections_per_second: rate,
                burst,
                max_concurrent: max,
            },
        }
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3, t0);
        assert!((0..3).all(|_| b.take(2, 3, t0)), "the burst at once");
        assert!(!b.take(2, 3, t0), "then empty");
        assert!(!b.take(2, 3, t0 + Duration::from_millis(400)), "0.8 token");
        assert!(
            b.take(2, 3, t0 + Duration::from_millis(500)),
            "1 token at 2/s"
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..10).filter(|_| b.take(2, 3, later)).count(),
            3,
            "capped at the burst"
        );
        assert!(!b.take(2, 3, t0), "a clock going back adds nothing");
    }

    #[test]
    fn the_limiter_refuses_over_rate_and_over_concurrency_per_source_cluster() {
        let l = Arc::new(Limiter::default());
        let t0 = Instant::now();
        let rate = limit(1, Some(2), None);
        let a = l.admit(Some(&rate), "east", "shop", "api", t0).unwrap();
        let _b = l.admit(Some(&rate), "east", "shop", "api", t0).unwrap();
        let over = l.admit(Some(&rate), "east", "shop", "api", t0).unwrap_err();
        assert_eq!(over.limit(), "p/l");
        assert!(
            over.to_string().contains("1 new connections a second"),
            "{over}"
        );
        // Each source cluster has its own bucket.
        assert!(l.admit(Some(&rate), "west", "shop", "api", t0).is_ok());
        assert!(
            l.admit(
                Some(&rate),
                "east",
                "shop",
                "api",
                t0 + Duration::from_secs(1)
            )
            .is_ok()
        );
        drop(a);

        let conc = limit(1000, None, Some(2));
        let c = Arc::new(Limiter::default());
        let one = c.admit(Some(&conc), "east", "shop", "api", t0).unwrap();
        let _two = c.admit(Some(&conc), "east", "shop", "api", t0).unwrap();
        let over = c.admit(Some(&conc), "east", "shop", "api", t0).unwrap_err();
        assert!(
            matches!(over, OverLimit::Concurrent { max: 2, .. }),
            "{over:?}"
        );
        drop(one);
        assert!(
            c.admit(Some(&conc), "east", "shop", "api", t0).is_ok(),
            "a closed connection frees its place"
        );
        assert!(
            c.admit(None, "east", "shop", "api", t0).is_ok(),
            "no limit, no count"
        );
    }

    #[test]
    fn authorization_fails_closed_and_names_the_rule() {
        let allow = r#"{"rules":[{"name":"east-api","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"shop","service":"api"}},
                                 {"name":"watch","action":"deny","mode":"shadow","from":[{"cluster":"*"}],"to":{"namespace":"shop"}}]}"#;
        let policy = |name: &str, body: &str| Policy {
            name: name.into(),
            body: isthmus_federation_api::policy::parse(body).unwrap(),
            revision: 1,
        };
        let p = policy("p", allow);
        let none = BTreeMap::new();
        let a = Authorization::from_policies([&p], &none);
        let v = a.decide(&EAST, &API);
        assert!(v.allowed);
        assert_eq!(
            (v.rule.as_str(), v.shadow.as_deref()),
            ("p/east-api", Some("p/watch"))
        );
        let west = Caller {
            cluster: "west",
            workload: None,
        };
        let v = a.decide(&west, &API);
        assert!(!v.allowed);
        assert_eq!(v.rule, "default-deny");
        assert!(
            v.reason.contains("no policy rule allows cluster west"),
            "{}",
            v.reason
        );

        // A policy the watch could not read (a newer language, say).
        let q = isthmus_federation_api::policy::parse("{ not json").unwrap_err();
        let unreadable = BTreeMap::from([("q".to_owned(), q.to_string())]);
        let broken = Authorization::from_policies([&p], &unreadable);
        let v = broken.decide(&EAST, &API);
        assert!(!v.allowed, "one unreadable document denies everything");
        assert_eq!(v.rule, "unusable-policies");
        assert!(v.reason.contains("policy \"q\""), "{}", v.reason);

        assert!(
            !Authorization::default().decide(&EAST, &API).allowed,
            "no policies: deny"
        );
        assert!(Authorization::ConfiguredPeers.decide(&EAST, &API).allowed);

        let limited = Authorization::Policies(Arc::new(PolicySet::new([(
            "p",
            PolicyBody {
                rules: vec![],
                rate_limits: vec![limit(5, None, None).limit],
            },
        )])));
        assert_eq!(
            limited
                .rate_limit("east", "shop", "api")
                .map(|l| l.id.as_str()),
            Some("p/l")
        );
        assert!(
            Authorization::ConfiguredPeers
                .rate_limit("east", "shop", "api")
                .is_none()
        );
    }
}
