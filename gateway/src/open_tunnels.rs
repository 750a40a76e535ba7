//! The connections open through this gateway, each with what its admission was decided
//! on, so that a change of what admitted them decides every one of them again. On the
//! receiving side ([`Decided`]), a change of the authorization in force: a tunnel no
//! longer allowed is cut (`policy_revoked`), and so are the newest beyond a limit on open
//! connections lowered below how many are open; the rest are untouched. The decision is
//! the same pure one as at admission ([`Authorization::decide`]). On the sending side,
//! workloads' mutual-TLS connections are held by identity and cut when no registration
//! gives it any more (`crate::workload_mtls`). This registry only holds each
//! connection's facts and the token that cuts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use isthmus_federation_api::policy::{Caller, Target};
use tokio_util::sync::CancellationToken;

use crate::authz::{Authorization, Verdict};

/// What a tunnel was admitted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decided {
    /// The source cluster (its gateway's verified certificate).
    pub(crate) cluster: String,
    /// The caller's namespace and service account, when the carried identity says.
    pub(crate) workload: Option<(String, String)>,
    /// The service's namespace.
    pub(crate) namespace: String,
    /// The service.
    pub(crate) service: String,
    /// Its port.
    pub(crate) port: u16,
}

impl Decided {
    /// The decision for this tunnel under `authorization` (pure).
    pub(crate) fn decide(&self, authorization: &Authorization) -> Verdict {
        let caller = Caller {
            cluster: &self.cluster,
            workload: self
                .workload
                .as_ref()
                .map(|(ns, sa)| (ns.as_str(), sa.as_str())),
        };
        let target = Target {
            namespace: &self.namespace,
            service: &self.service,
            port: self.port,
            http: None,
        };
        authorization.decide(&caller, &target)
    }
}

#[derive(Debug)]
struct Open<F> {
    decided: F,
    cut: CancellationToken,
    revoked: Arc<Mutex<Option<Verdict>>>,
}

/// Source cluster, namespace, service: what a limit counts open connections of.
type Group<'a> = (&'a str, &'a str, &'a str);

/// Marks `tunnel` revoked by `verdict` and cuts it.
fn revoke<F: Clone>(tunnel: &Open<F>, verdict: Verdict) -> (F, Verdict) {
    *tunnel.revoked.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict.clone());
    tunnel.cut.cancel();
    (tunnel.decided.clone(), verdict)
}

#[derive(Debug)]
struct Table<F> {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open<F>>>,
}

/// Every connection open of one kind: by default the tunnels on the receiving side.
#[derive(Debug)]
pub(crate) struct OpenTunnels<F = Decided>(Arc<Table<F>>);

impl<F> Default for OpenTunnels<F> {
    fn default() -> Self {
        Self(Arc::new(Table {
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }))
    }
}

impl<F> Clone for OpenTunnels<F> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// One connection's place in the registry; it leaves when dropped.
#[derive(Debug)]
pub(crate) struct OpenTunnel<F = Decided> {
    id: u64,
    table: Arc<Table<F>>,
    cut: CancellationToken,
    revoked: Arc<Mutex<Option<Verdict>>>,
}

impl<F> OpenTunnel<F> {
    /// Cancelled when the tunnel must end: revoked, or whatever cancels the parent.
    pub(crate) fn cut(&self) -> &CancellationToken {
        &self.cut
    }

    /// The decision that revoked it, if one did.
    pub(crate) fn revoked(&self) -> Option<Verdict> {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<F> Drop for OpenTunnel<F> {
    fn drop(&mut self) {
        self.table
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl<F: Clone> OpenTunnels<F> {
    /// Registers a connection admitted as `decided`, cut when `cut` (a child of the
    /// gateway's drain token) is, or when it is revoked.
    pub(crate) fn register(&self, decided: F, cut: CancellationToken) -> OpenTunnel<F> {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let revoked = Arc::new(Mutex::new(None));
        self.0
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Open {
                    decided,
                    cut: cut.clone(),
                    revoked: revoked.clone(),
                },
            );
        OpenTunnel {
            id,
            table: self.0.clone(),
            cut,
            revoked,
        }
    }

    /// Cuts every open connection for which `decide` has a refusal; returns what each
    /// cut one was and why.
    pub(crate) fn revoke_where(&self, decide: impl Fn(&F) -> Option<Verdict>) -> Vec<(F, Verdict)> {
        let open = self.0.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values()
            .filter_map(|tunnel| Some(revoke(tunnel, decide(&tunnel.decided)?)))
            .collect()
    }

    /// How many are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl OpenTunnels<Decided> {
    /// Decides every open tunnel again under `authorization` and cuts those it no
    /// longer allows, and, where a limit on open connections is now below how many
    /// are open, the newest beyond it; returns what each cut one was and why.
    pub(crate) fn recheck(&self, authorization: &Authorization) -> Vec<(Decided, Verdict)> {
        let open = self.0.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut cut = Vec::new();
        let mut kept: HashMap<Group<'_>, Vec<(u64, &Open<Decided>)>> = HashMap::new();
        for (id, tunnel) in open.iter() {
            let verdict = tunnel.decided.decide(authorization);
            if verdict.allowed {
                let d = &tunnel.decided;
                kept.entry((d.cluster.as_str(), d.namespace.as_str(), d.service.as_str()))
                    .or_default()
                    .push((*id, tunnel));
                continue;
            }
            cut.push(revoke(tunnel, verdict));
        }
        for ((cluster, namespace, service), mut tunnels) in kept {
            let Some(limit) = authorization.rate_limit(cluster, namespace, service) else {
                continue;
            };
            let Some(max) = limit
                .limit
                .max_concurrent
                .and_then(|m| usize::try_from(m).ok())
            else {
                continue;
            };
            // The oldest keep their place; ids grow with each registration.
            tunnels.sort_by_key(|(id, _)| *id);
            for (_, tunnel) in tunnels.iter().skip(max) {
                let verdict = Verdict::refusal(
                    limit.id.clone(),
                    format!("more than {max} connections open at once ({})", limit.id),
                );
                cut.push(revoke(tunnel, verdict));
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use isthmus_federation_api::model::Policy;

    use super::*;

    fn policy(body: &str) -> Authorization {
        let policy = Policy {
            name: "p".into(),
            body: isthmus_federation_api::policy::parse(body).unwrap(),
            revision: 1,
        };
        Authorization::from_policies([&policy], &Default::default())
    }

    fn tunnel(service: &str) -> Decided {
        Decided {
            cluster: "east".into(),
            workload: None,
            namespace: "demo".into(),
            service: service.into(),
            port: 8080,
        }
    }

    #[test]
    fn a_new_deny_cuts_what_it_denies_and_nothing_else() {
        let open = OpenTunnels::default();
        let parent = CancellationToken::new();
        let echo = open.register(tunnel("echo"), parent.child_token());
        let other = open.register(tunnel("other"), parent.child_token());
        let allow_all = policy(
            r#"{"rules":[{"name":"all","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo"}}]}"#,
        );
        assert!(open.recheck(&allow_all).is_empty());
        let deny_echo = policy(
            r#"{"rules":[{"name":"all","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo"}},
                         {"name":"no-echo","action":"deny","from":[{"cluster":"*"}],"to":{"namespace":"demo","service":"echo"}}]}"#,
        );
        let cut = open.recheck(&deny_echo);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].1.rule, "p/no-echo");
        assert!(echo.cut().is_cancelled());
        assert_eq!(echo.revoked().map(|v| v.rule).as_deref(), Some("p/no-echo"));
        assert!(!other.cut().is_cancelled() && other.revoked().is_none());
        // A shadow rule never cuts.
        let shadow = policy(
            r#"{"rules":[{"name":"all","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo"}},
                         {"name":"audit","action":"deny","mode":"shadow","from":[{"cluster":"*"}],"to":{"namespace":"demo"}}]}"#,
        );
        assert!(open.recheck(&shadow).is_empty());
        drop(echo);
        assert_eq!(open.len(), 1, "a closed tunnel leaves the registry");
        // The drain still cuts through the child tokens.
        parent.cancel();
        assert!(other.cut().is_cancelled());
    }

    #[test]
    fn a_limit_lowered_below_the_open_count_cuts_the_newest() {
        let live = OpenTunnels::default();
        let parent = CancellationToken::new();
        let tunnels: Vec<_> = (0..3)
            .map(|_| live.register(tunnel("echo"), parent.child_token()))
            .collect();
        let limited = policy(
            r#"{"rules":[{"name":"all","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo"}}],
                "rate_limits":[{"name":"two","to":{"namespace":"demo","service":"echo"},"connections_per_second":100,"max_concurrent":2}]}"#,
        );
        let cut = live.recheck(&limited);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].1.rule, "p/two");
        let cancelled: Vec<bool> = tunnels.iter().map(|t| t.cut().is_cancelled()).collect();
        assert_eq!(cancelled, [false, false, true], "the newest goes");
    }
}
