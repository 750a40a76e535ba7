//! Whether a connection may reach a service here, and where it goes: the one decision a
//! peer's tunnel stream and an ingress connection or request both go through, made
//! before any IO (the receiving side then only connects, answers and splices).
//!
//! ```text
//!  peer still a peer? ─▶ source of that peer's cluster? ─▶ policy ─▶ exported here? ─▶ limits ─▶ endpoint order
//!  └──────── tunnel streams only ───────┘                            ingress: not exported here → the tunnel
//! ```
//!
//! Policy comes before the export lookup, so that a caller that may not reach a namespace
//! learns nothing of what it exports. Pure but for the limiter's buckets, which take
//! `now`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use isthmus_ca::{Identity, SpiffeId, TrustDomain};
use isthmus_federation_api::policy::{Caller, Target};

use crate::authz::{Limiter, Permit, Verdict};
use crate::catalog::{Catalog, ServicePort};
use crate::header::Status;

/// The metric label of a service that is not exported here: peer input must not create
/// label values without bound.
pub(crate) const UNKNOWN: &str = "unknown";

/// The rule a refusal names when an export requires a workload identity and the caller
/// has none.
pub(crate) const IDENTITY_REQUIRED: &str = "identity_required";

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A peer gateway's stream: the cluster its verified certificate names, and the
    /// source identity its header carries.
    Peer {
        /// The peer's cluster.
        cluster: &'a str,
        /// The identity the stream speaks for.
        identity: &'a SpiffeId,
    },
    /// A client of this gateway's ingress: from outside the mesh, it has no identity and
    /// speaks as this gateway's cluster.
    Ingress,
}

/// What is asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// Who asks.
    pub(crate) source: Source<'a>,
    /// The service's namespace.
    pub(crate) namespace: &'a str,
    /// The service.
    pub(crate) service: &'a str,
    /// Its port.
    pub(crate) port: u16,
    /// The HTTP request's method and path, when it is one.
    pub(crate) http: Option<(&'a str, &'a str)>,
}

/// What this gateway knows now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Here<'a> {
    /// Its cluster.
    pub(crate) cluster: &'a str,
    /// Its trust domain.
    pub(crate) trust_domain: &'a TrustDomain,
    /// The catalog in force.
    pub(crate) catalog: &'a Catalog,
    /// Connection limits' state.
    pub(crate) limiter: &'a Arc<Limiter>,
}

/// Where an admitted connection goes.
#[derive(Debug)]
pub(crate) enum Destination {
    /// An export of this cluster: its endpoints, in the order to try.
    Local {
        /// The exported port (its balancer).
        port: Arc<ServicePort>,
        /// The endpoints to try, best first.
        order: Vec<SocketAddr>,
    },
    /// Not exported here (an ingress route to another cluster's service): through the
    /// tunnel.
    Elsewhere,
}

/// A connection let through.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Where it goes.
    pub(crate) destination: Destination,
    /// The policy's verdict, to count and log.
    pub(crate) verdict: Verdict,
    /// Its place under the connection limits, held while it is open.
    pub(crate) permit: Permit,
    /// The service as metrics name it (`name.namespace`).
    pub(crate) label: String,
    /// The caller's namespace and service account, when the stream carried a workload
    /// identity: what the policy decided on, for deciding again later.
    pub(crate) workload: Option<(String, String)>,
}

/// A connection refused, with the status the sender gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The status.
    pub(crate) status: Status,
    /// Why, for the sender and the log.
    pub(crate) reason: String,
    /// The policy's verdict, when the policy decided (boxed: refusals stay small).
    pub(crate) verdict: Option<Box<Verdict>>,
    /// The limit that refused it (`policy/limit`), when one did.
    pub(crate) limit: Option<String>,
    /// The service as metrics name it (`name.namespace`, or [`UNKNOWN`]).
    pub(crate) label: String,
}

impl Refusal {
    fn new(status: Status, reason: String, label: &str) -> Self {
        Self {
            status,
            reason,
            verdict: None,
            limit: None,
            label: label.to_owned(),
        }
    }
}

/// The decision for `request` at `now`; `sample` is a random number for the endpoint
/// order.
pub(crate) fn admit(
    here: &Here<'_>,
    request: &Request<'_>,
    now: Instant,
    sample: u64,
) -> Result<Admission, Refusal> {
    let export = here
        .catalog
        .export(request.namespace, request.service, request.port);
    let service = format!("{}.{}", request.service, request.namespace);
    // A peer may name anything; the ingress only what its config routes to.
    let label = if export.is_some() || matches!(request.source, Source::Ingress) {
        service.as_str()
    } else {
        UNKNOWN
    };
    let (cluster, workload) = match request.source {
        Source::Ingress => (here.cluster, None),
        Source::Peer { cluster, identity } => {
            // Peers can be removed while their connection stays up: checked on every
            // stream.
            if here.catalog.peer(cluster).is_none() {
                let reason = format!("cluster {cluster} is no longer a peer of this gateway");
                return Err(Refusal::new(Status::Denied, reason, label));
            }
            // The source identity must belong to the cluster whose gateway carries it.
            let parsed = identity.identity().ok();
            if identity.trust_domain() != here.trust_domain
                || parsed.as_ref().and_then(Identity::cluster) != Some(cluster)
            {
                let reason = format!("source {identity} is not an identity of cluster {cluster}");
                return Err(Refusal::new(Status::Denied, reason, label));
            }
            let workload = match parsed {
                Some(Identity::Workload {
                    namespace,
                    service_account,
                    ..
                }) => Some((namespace, service_account)),
                _ => None,
            };
            (cluster, workload)
        }
    };
    let caller = Caller {
        cluster,
        workload: workload.as_ref().map(|(ns, sa)| (ns.as_str(), sa.as_str())),
    };
    let target = Target {
        namespace: request.namespace,
        service: request.service,
        port: request.port,
        http: request.http,
    };
    let verdict = here.catalog.authorization().decide(&caller, &target);
    if !verdict.allowed {
        return Err(Refusal {
            verdict: Some(Box::new(verdict.clone())),
            ..Refusal::new(Status::Denied, verdict.reason, label)
        });
    }
    let Some(port) = export else {
        return match request.source {
            Source::Ingress => Ok(Admission {
                destination: Destination::Elsewhere,
                verdict,
                permit: Permit::unlimited(here.limiter),
                label: service,
                workload: None,
            }),
            Source::Peer { .. } => Err(Refusal {
                verdict: Some(Box::new(verdict)),
                ..Refusal::new(
                    Status::UnknownService,
                    format!(
                        "{}/{} port {} is not exported by cluster {}",
                        request.namespace, request.service, request.port, here.cluster
                    ),
                    UNKNOWN,
                )
            }),
        };
    };
    if port.identity_required() && workload.is_none() {
        let verdict = Verdict::refusal(
            IDENTITY_REQUIRED,
            format!(
                "{service} requires a workload identity (identity = \"required\" on its export) and the caller is known only as cluster {cluster}; connect through the workload mTLS listener with an SVID"
            ),
        );
        return Err(Refusal {
            verdict: Some(Box::new(verdict.clone())),
            ..Refusal::new(Status::Denied, verdict.reason, &service)
        });
    }
    // Limits apply to peers' streams to exported services only, so that peer input
    // cannot grow the limiter's map.
    let permit = match request.source {
        Source::Ingress => Permit::unlimited(here.limiter),
        Source::Peer { cluster, .. } => {
            let limit = here.catalog.authorization().rate_limit(
                cluster,
                request.namespace,
                request.service,
            );
            match here
                .limiter
                .admit(limit, cluster, request.namespace, request.service, now)
            {
                Ok(permit) => permit,
                Err(over) => {
                    return Err(Refusal {
                        verdict: Some(Box::new(verdict)),
                        limit: Some(over.limit().to_owned()),
                        ..Refusal::new(Status::RateLimited, over.to_string(), &service)
                    });
                }
            }
        }
    };
    let order = port.balancer().order(now, sample);
    if order.is_empty() {
        return Err(Refusal {
            verdict: Some(Box::new(verdict)),
            ..Refusal::new(
                Status::NoHealthyEndpoint,
                format!("every endpoint of {service} is ejected after failures"),
                &service,
            )
        });
    }
    Ok(Admission {
        destination: Destination::Local { port, order },
        verdict,
        permit,
        label: service,
        workload,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use isthmus_federation_api::model::Policy;

    use super::*;
    use crate::authz::Authorization;
    use crate::balancer::{OutlierPolicy, Policy as Balancing};
    use crate::config::{Export, ExportPort, IdentityRequirement, PeerEntry};

    const TD: &str = "mesh.example";

    fn catalog_under(policy: &str) -> Catalog {
        catalog_with(policy, IdentityRequirement::Optional)
    }

    fn catalog_with(policy: &str, identity: IdentityRequirement) -> Catalog {
        let policy = Policy {
            name: "p".into(),
            body: isthmus_federation_api::policy::parse(policy).unwrap(),
            revision: 1,
        };
        let authorization = Authorization::from_policies([&policy], &BTreeMap::new());
        let exports = [Export {
            namespace: "shop".into(),
            name: "api".into(),
            policy: Balancing::LeastConnections,
            identity,
            ports: vec![ExportPort {
                port: 80,
                endpoints: vec!["127.0.0.1:1".parse().unwrap()],
                app_protocol: Default::default(),
            }],
        }];
        let peers = [PeerEntry {
            cluster: "east".into(),
            address: "127.0.0.1:2".parse().unwrap(),
        }];
        Catalog::new(&exports, &peers, OutlierPolicy::default(), authorization)
    }

    const ALLOW_EAST: &str = r#"{"rules":[{"name":"east","action":"allow","from":[{"cluster":"east"},{"cluster":"west"}],"to":{"namespace":"shop"}}],
        "rate_limits":[{"name":"one","from_cluster":"east","to":{"namespace":"shop"},"connections_per_second":1,"burst":1}]}"#;

    fn id(path: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://{TD}/{path}")).unwrap()
    }

    fn decide(
        catalog: &Catalog,
        limiter: &Arc<Limiter>,
        source: Source<'_>,
        service: &str,
        port: u16,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        let td = TrustDomain::new(TD).unwrap();
        let here = Here {
            cluster: "west",
            trust_domain: &td,
            catalog,
            limiter,
        };
        let request = Request {
            source,
            namespace: "shop",
            service,
            port,
            http: None,
        };
        admit(&here, &request, now, 7)
    }

    #[test]
    fn a_peers_stream_passes_each_step_in_order() {
        let catalog = catalog_under(ALLOW_EAST);
        let limiter = Arc::new(Limiter::default());
        let now = Instant::now();
        let gw = id("cluster/east/gateway/gw");
        let east = Source::Peer {
            cluster: "east",
            identity: &gw,
        };
        let status = |r: Result<Admission, Refusal>| r.map(|_| ()).map_err(|r| r.status);
        // Not a peer (any more): refused before anything else.
        let north_gw = id("cluster/north/gateway/gw");
        let north = Source::Peer {
            cluster: "north",
            identity: &north_gw,
        };
        let refused = decide(&catalog, &limiter, north, "api", 80, now).unwrap_err();
        assert_eq!((refused.status, refused.verdict), (Status::Denied, None));
        // A source identity of another cluster than the peer's.
        let other = id("cluster/west/ns/shop/sa/web");
        let lying = Source::Peer {
            cluster: "east",
            identity: &other,
        };
        let refused = decide(&catalog, &limiter, lying, "api", 80, now).unwrap_err();
        assert!(
            refused.reason.contains("not an identity of cluster east"),
            "{refused:?}"
        );
        // Allowed, exported: the endpoint order, and the limit's one token taken.
        let admitted = decide(&catalog, &limiter, east, "api", 80, now).unwrap();
        assert_eq!(admitted.label, "api.shop");
        assert_eq!(admitted.verdict.rule, "p/east");
        assert!(
            matches!(admitted.destination, Destination::Local { ref order, .. } if order.len() == 1)
        );
        // The next one in the same instant is over the limit, naming it.
        let refused = decide(&catalog, &limiter, east, "api", 80, now).unwrap_err();
        assert_eq!(refused.status, Status::RateLimited);
        assert_eq!(refused.limit.as_deref(), Some("p/one"));
        drop(admitted);
        // Allowed by policy but not exported: the caller learns it only now.
        assert_eq!(
            status(decide(&catalog, &limiter, east, "db", 80, now)),
            Err(Status::UnknownService)
        );
        // Denied by policy: the export is not looked at, and the label stays bounded.
        let deny = catalog_under(
            r#"{"rules":[{"name":"x","action":"deny","from":[{"cluster":"*"}],"to":{"namespace":"shop"}}]}"#,
        );
        let refused = decide(&deny, &limiter, east, "nope", 1, now).unwrap_err();
        assert_eq!(refused.status, Status::Denied);
        assert_eq!(refused.label, UNKNOWN);
        assert_eq!(refused.verdict.unwrap().rule, "p/x");
    }

    #[test]
    fn every_endpoint_ejected_is_no_healthy_endpoint_and_the_ingress_goes_elsewhere() {
        let catalog = catalog_under(ALLOW_EAST);
        let limiter = Arc::new(Limiter::default());
        let now = Instant::now();
        let port = catalog.export("shop", "api", 80).unwrap();
        for _ in 0..OutlierPolicy::default().consecutive_failures {
            port.balancer().failed("127.0.0.1:1".parse().unwrap(), now);
        }
        // The ingress speaks as this gateway's cluster (west), which the policy allows.
        let refused = decide(&catalog, &limiter, Source::Ingress, "api", 80, now).unwrap_err();
        assert_eq!(refused.status, Status::NoHealthyEndpoint);
        let admitted = decide(&catalog, &limiter, Source::Ingress, "elsewhere", 80, now).unwrap();
        assert!(matches!(admitted.destination, Destination::Elsewhere));
        // The ingress names only services its config routes to: counted by name.
        assert_eq!(admitted.label, "elsewhere.shop");
        // No limit counts the ingress's connections.
        assert!(decide(&catalog, &limiter, Source::Ingress, "elsewhere", 80, now).is_ok());
    }

    #[test]
    fn an_export_that_requires_an_identity_refuses_a_caller_known_by_its_cluster() {
        let catalog = catalog_with(ALLOW_EAST, IdentityRequirement::Required);
        let limiter = Arc::new(Limiter::default());
        let now = Instant::now();
        let gw = id("cluster/east/gateway/gw");
        let gateway = Source::Peer {
            cluster: "east",
            identity: &gw,
        };
        let refused = decide(&catalog, &limiter, gateway, "api", 80, now).unwrap_err();
        assert_eq!(refused.status, Status::Denied);
        assert_eq!(refused.verdict.unwrap().rule, IDENTITY_REQUIRED);
        assert!(
            refused.reason.contains("requires a workload identity"),
            "{}",
            refused.reason
        );
        // The ingress speaks for callers from outside the mesh: no identity either.
        let refused = decide(&catalog, &limiter, Source::Ingress, "api", 80, now).unwrap_err();
        assert_eq!(refused.verdict.unwrap().rule, IDENTITY_REQUIRED);
        let frontend = id("cluster/east/ns/shop/sa/frontend");
        let workload = Source::Peer {
            cluster: "east",
            identity: &frontend,
        };
        let admitted = decide(&catalog, &limiter, workload, "api", 80, now).unwrap();
        assert_eq!(
            admitted.workload,
            Some(("shop".to_owned(), "frontend".to_owned()))
        );
    }
}
