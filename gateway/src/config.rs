//! The gateway config file (`isthmus config schema gateway`): parsed, validated once into
//! an immutable [`GatewayConfig`]. What the file lists about services and peers seeds
//! the runtime [`crate::catalog::Catalog`], which can change while the gateway runs.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use isthmus_ca::spiffe::dns_label;
use isthmus_config::{FieldProblem, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::balancer::{OutlierPolicy, Policy};

/// A gateway config file as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfigFile {
    /// This gateway's cluster (a DNS-1123 label).
    pub cluster: String,
    /// Certificates and keys (paths relative to the config file's directory). Leave out
    /// when `[federation]` enrolls the gateway and issues its certificates.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Where to listen.
    pub listen: ListenSection,
    /// Gateways of other clusters.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// Services of this cluster that other clusters may reach.
    #[serde(default)]
    pub exports: Vec<ExportEntry>,
    /// Services of other clusters reachable here.
    #[serde(default)]
    pub imports: Vec<ImportEntry>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutSection,
    /// Outlier detection for exported endpoints.
    #[serde(default)]
    pub outlier_detection: OutlierSection,
    /// The async runtime.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Membership of a federation: enrollment, certificates, catalog sync.
    #[serde(default)]
    pub federation: Option<FederationSection>,
    /// The DNS server for `<svc>.<ns>.svc.clusterset.local`.
    #[serde(default)]
    pub dns: Option<DnsSection>,
    /// Ingress: TLS (terminated or passed through by SNI) and TCP from outside the mesh.
    #[serde(default)]
    pub ingress: Option<crate::ingress::config::IngressSection>,
    /// Egress: the allow-listed way out to hosts outside the mesh.
    #[serde(default)]
    pub egress: Option<crate::egress::config::EgressSection>,
    /// The access log (off unless set).
    #[serde(default)]
    pub access_log: Option<crate::access_log::config::AccessLogSection>,
    /// Traces exported over OTLP (off unless set).
    #[serde(default)]
    pub tracing: Option<crate::telemetry::config::TracingSection>,
    /// The SPIFFE Workload API for this cluster's workloads (a member only).
    #[serde(default)]
    pub workload_api: Option<crate::workload_api::config::WorkloadApiSection>,
}

/// Federation membership as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// Where the gateway keeps its enrollment (intermediate, key, bundle) and its last
    /// known-good catalog (relative to the config file's directory).
    pub state_dir: PathBuf,
    /// File holding the join token from `isthmus federation cluster create`; read only
    /// when `state_dir` holds no enrollment yet.
    pub join_token_file: Option<PathBuf>,
    /// An intermediate already signed by the root holder (PEM), with `intermediate_key`;
    /// without them the gateway sends a CSR for the federation to sign.
    pub intermediate_cert: Option<PathBuf>,
    /// The key of `intermediate_cert` (PKCS#8 PEM).
    pub intermediate_key: Option<PathBuf>,
    /// This gateway's name in its cluster (default `ew`).
    pub gateway_name: Option<String>,
    /// The QUIC address peers dial (default: the bound `listen.quic`).
    pub advertise: Option<SocketAddr>,
    /// Lifetime of this gateway's certificates (default 24h; at least 10s). Renewed at
    /// about half-life, with jitter.
    pub leaf_lifetime: Option<HumanDuration>,
    /// Addresses for imported services, one each (default 127.77.0.0/16).
    pub import_range: Option<String>,
}

/// DNS as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// UDP and TCP address of the DNS server. It answers `clusterset.local` itself.
    pub listen: SocketAddr,
    /// Where names outside `clusterset.local` go: an upstream resolver's address
    /// (forwarded over UDP, 2 s timeout, SERVFAIL when it does not answer). Absent: they
    /// are refused (REFUSED), so that a stub resolver falls through to its next server.
    pub forward: Option<SocketAddr>,
}

/// Runtime settings as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Worker threads (default: one per CPU core). 1 runs everything on one thread,
    /// which on a machine busy with other processes moves bulk data faster (see
    /// `docs/benchmarks.md`).
    pub worker_threads: Option<usize>,
}

/// Certificate files.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Trust bundle: the roots (PEM).
    pub bundle: PathBuf,
    /// This gateway's certificate chain: leaf then intermediate (PEM).
    pub cert: PathBuf,
    /// This gateway's private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Listen addresses.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// UDP address of the QUIC endpoint that peers connect to.
    pub quic: SocketAddr,
    /// TCP address of the Prometheus metrics endpoint (`/metrics`).
    pub metrics: Option<SocketAddr>,
    /// TCP address of the SNI passthrough listener.
    pub sni: Option<SocketAddr>,
}

/// A peer gateway.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// The peer's cluster.
    pub cluster: String,
    /// Its QUIC address.
    pub address: SocketAddr,
}

/// An exported service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportEntry {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// How endpoints are chosen: `least-connections` (default) or `round-robin`.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Whether callers must carry a workload identity: `optional` (the default) or
    /// `required` (a caller known only by its cluster, such as an app on an import
    /// listener or the ingress, is refused with `identity_required`).
    #[serde(default)]
    pub identity: IdentityRequirement,
    /// Service ports and their endpoints.
    pub ports: Vec<ExportPort>,
}

/// Whether an exported service's callers must carry a workload identity.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdentityRequirement {
    /// A caller known only by its cluster is decided on like any other.
    #[default]
    Optional,
    /// Only callers whose workload identity is carried (an SVID presented to their
    /// gateway's workload mTLS listener) may connect.
    Required,
}

/// One port of an exported service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportPort {
    /// The service port clients ask for.
    pub port: u16,
    /// Endpoint addresses serving it.
    pub endpoints: Vec<SocketAddr>,
    /// What the app speaks on it: `tcp` (anything; the default) or `tls` (its own TLS,
    /// carried end to end). On a `tls` port a connection whose bytes are not TLS is
    /// counted as plaintext on a TLS port, and its edge shows as `partial`.
    #[serde(default)]
    pub app_protocol: AppProtocol,
}

/// What an app speaks on an exported port.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// Any bytes.
    #[default]
    Tcp,
    /// The app's own TLS: anything else is a client that skipped it.
    Tls,
}

/// Load-balancing policy names.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancing {
    /// Power of two choices, least connections.
    #[default]
    LeastConnections,
    /// Round robin.
    RoundRobin,
}

/// An imported service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImportEntry {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The cluster that exports it (one of `peers`).
    pub cluster: String,
    /// The service port.
    pub port: u16,
    /// Local TCP address that apps connect to.
    pub listen: SocketAddr,
}

/// Timeouts as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    /// Connecting to an endpoint (default 5s).
    pub connect: Option<HumanDuration>,
    /// From opening a stream to the peer's answer (default 5s).
    pub stream_open: Option<HumanDuration>,
    /// A tunnelled connection with no bytes either way is closed, and so is a terminated
    /// ingress HTTP connection with no request in progress (default 1h).
    pub idle: Option<HumanDuration>,
    /// On SIGTERM, how long live connections may finish (default 30s).
    pub drain: Option<HumanDuration>,
}

/// Outlier detection as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    /// Consecutive connect failures that eject an endpoint (default 3).
    pub consecutive_failures: Option<u32>,
    /// How long it stays ejected (default 30s, doubling on repeats).
    pub ejection: Option<HumanDuration>,
}

/// The validated, immutable gateway config.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// This gateway's cluster.
    pub cluster: String,
    /// Certificate files as written (relative to the config file); `None` when the
    /// federation issues them.
    pub tls: Option<TlsFiles>,
    /// Listen addresses.
    pub listen: ListenSection,
    /// Peer gateways.
    pub peers: Vec<PeerEntry>,
    /// Exports.
    pub exports: Vec<Export>,
    /// Imports.
    pub imports: Vec<ImportEntry>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Outlier detection.
    pub outlier: OutlierPolicy,
    /// Worker threads; `None` means one per CPU core.
    pub worker_threads: Option<usize>,
    /// Federation membership.
    pub federation: Option<FederationSettings>,
    /// The DNS server.
    pub dns: Option<DnsSection>,
    /// The ingress.
    pub ingress: Option<crate::ingress::config::IngressSettings>,
    /// The egress.
    pub egress: Option<crate::egress::config::EgressSettings>,
    /// The access log; `None` when off.
    pub access_log: Option<crate::access_log::config::AccessLogSettings>,
    /// Tracing; `None` when off.
    pub tracing: Option<crate::telemetry::config::TracingSettings>,
    /// The Workload API; `None` when off.
    pub workload_api: Option<crate::workload_api::config::WorkloadApiSettings>,
}

/// Validated federation membership.
#[derive(Debug, Clone, PartialEq)]
pub struct FederationSettings {
    /// State directory (relative to the config file).
    pub state_dir: PathBuf,
    /// Join token file.
    pub join_token_file: Option<PathBuf>,
    /// A root-signed intermediate and its key, when brought.
    pub intermediate: Option<(PathBuf, PathBuf)>,
    /// Gateway name.
    pub gateway_name: String,
    /// Advertised QUIC address.
    pub advertise: Option<SocketAddr>,
    /// Leaf lifetime.
    pub leaf_lifetime: Duration,
    /// Import address range.
    pub import_range: crate::addresses::Ipv4Range,
}

/// A validated export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Load-balancing policy.
    pub policy: Policy,
    /// Whether callers must carry a workload identity.
    pub identity: IdentityRequirement,
    /// Ports and endpoints.
    pub ports: Vec<ExportPort>,
}

/// Validated timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Endpoint connect.
    pub connect: Duration,
    /// Stream open to answer.
    pub stream_open: Duration,
    /// Idle tunnelled connection, or ingress HTTP connection with no request in progress.
    pub idle: Duration,
    /// Drain deadline.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            stream_open: Duration::from_secs(5),
            idle: Duration::from_secs(3600),
            drain: Duration::from_secs(30),
        }
    }
}

impl Validate for GatewayConfigFile {
    type Valid = GatewayConfig;

    fn validate(self) -> Result<GatewayConfig, Vec<FieldProblem>> {
        let mut p = Problems::default();
        p.label("cluster", &self.cluster);

        let mut peer_clusters = HashSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            let field = format!("peers[{i}].cluster");
            p.label(&field, &peer.cluster);
            if peer.cluster == self.cluster {
                p.push(
                    &field,
                    &peer.cluster,
                    "a cluster other than this gateway's own",
                );
            } else if !peer_clusters.insert(peer.cluster.as_str()) {
                p.push(&field, &peer.cluster, "each peer cluster listed once");
            }
        }

        let mut services = HashSet::new();
        let mut exports = Vec::new();
        for (i, export) in self.exports.iter().enumerate() {
            p.label(&format!("exports[{i}].namespace"), &export.namespace);
            p.label(&format!("exports[{i}].name"), &export.name);
            if !services.insert((&export.namespace, &export.name)) {
                p.push(
                    &format!("exports[{i}].name"),
                    format!("{}/{}", export.namespace, export.name),
                    "each namespace/name exported once (list all its ports in one entry)",
                );
            }
            if export.ports.is_empty() {
                p.push(&format!("exports[{i}].ports"), "[]", "at least one port");
            }
            let mut ports = HashSet::new();
            for (j, port) in export.ports.iter().enumerate() {
                let field = format!("exports[{i}].ports[{j}]");
                if port.port == 0 {
                    p.push(&format!("{field}.port"), 0, "a port from 1 to 65535");
                } else if !ports.insert(port.port) {
                    p.push(&format!("{field}.port"), port.port, "each port listed once");
                }
                if port.endpoints.is_empty() {
                    p.push(
                        &format!("{field}.endpoints"),
                        "[]",
                        "at least one endpoint address",
                    );
                }
            }
            exports.push(Export {
                namespace: export.namespace.clone(),
                name: export.name.clone(),
                policy: match export.load_balancing {
                    LoadBalancing::LeastConnections => Policy::LeastConnections,
                    LoadBalancing::RoundRobin => Policy::RoundRobin,
                },
                identity: export.identity,
                ports: export.ports.clone(),
            });
        }

        let mut listens: HashSet<SocketAddr> = self
            .listen
            .metrics
            .into_iter()
            .chain(self.listen.sni)
            .collect();
        if self.listen.metrics.is_some_and(|a| a.port() != 0)
            && self.listen.metrics == self.listen.sni
        {
            p.push(
                "listen.sni",
                self.listen.sni.map_or(String::new(), |a| a.to_string()),
                "an address other than listen.metrics",
            );
        }
        let mut imported = HashSet::new();
        for (i, import) in self.imports.iter().enumerate() {
            p.label(&format!("imports[{i}].namespace"), &import.namespace);
            p.label(&format!("imports[{i}].name"), &import.name);
            if !peer_clusters.contains(import.cluster.as_str()) {
                p.push(
                    &format!("imports[{i}].cluster"),
                    &import.cluster,
                    format!("one of the peers' clusters ({})", join(&peer_clusters)),
                );
            }
            if import.port == 0 {
                p.push(&format!("imports[{i}].port"), 0, "a port from 1 to 65535");
            }
            if !imported.insert((
                &import.namespace,
                &import.name,
                &import.cluster,
                import.port,
            )) {
                p.push(
                    &format!("imports[{i}]"),
                    format!(
                        "{}/{}:{} from {}",
                        import.namespace, import.name, import.port, import.cluster
                    ),
                    "each service port imported once per cluster",
                );
            }
            // Port 0 asks the OS for a free port, so it never clashes.
            if import.listen.port() != 0 && !listens.insert(import.listen) {
                p.push(
                    &format!("imports[{i}].listen"),
                    import.listen,
                    "an address no other listener uses",
                );
            }
        }

        let defaults = Timeouts::default();
        let t = &self.timeouts;
        let timeouts = Timeouts {
            connect: p.duration(
                "timeouts.connect",
                t.connect,
                defaults.connect,
                ms(1),
                secs(300),
            ),
            stream_open: p.duration(
                "timeouts.stream_open",
                t.stream_open,
                defaults.stream_open,
                ms(100),
                secs(300),
            ),
            idle: p.duration(
                "timeouts.idle",
                t.idle,
                defaults.idle,
                secs(1),
                secs(7 * 86_400),
            ),
            drain: p.duration(
                "timeouts.drain",
                t.drain,
                defaults.drain,
                Duration::ZERO,
                secs(3600),
            ),
        };
        let default_outlier = OutlierPolicy::default();
        let failures = self
            .outlier_detection
            .consecutive_failures
            .unwrap_or(default_outlier.consecutive_failures);
        if !(1..=1000).contains(&failures) {
            p.push(
                "outlier_detection.consecutive_failures",
                failures,
                "a number from 1 to 1000",
            );
        }
        let outlier = OutlierPolicy {
            consecutive_failures: failures,
            ejection: p.duration(
                "outlier_detection.ejection",
                self.outlier_detection.ejection,
                default_outlier.ejection,
                secs(1),
                secs(3600),
            ),
        };

        if let Some(threads) = self.runtime.worker_threads {
            if !(1..=1024).contains(&threads) {
                p.push("runtime.worker_threads", threads, "a number from 1 to 1024");
            }
        }

        let federation = self.federation.as_ref().map(|f| {
            let gateway_name = f.gateway_name.clone().unwrap_or_else(|| "ew".to_owned());
            p.label("federation.gateway_name", &gateway_name);
            let intermediate = match (&f.intermediate_cert, &f.intermediate_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                (Some(_), None) => {
                    p.push(
                        "federation.intermediate_key",
                        "missing",
                        "the key of federation.intermediate_cert",
                    );
                    None
                }
                (None, Some(_)) => {
                    p.push(
                        "federation.intermediate_cert",
                        "missing",
                        "the certificate of federation.intermediate_key",
                    );
                    None
                }
            };
            let range_text = f
                .import_range
                .clone()
                .unwrap_or_else(|| "127.77.0.0/16".to_owned());
            let import_range = match range_text.parse::<crate::addresses::Ipv4Range>() {
                Ok(r) => r,
                Err(e) => {
                    p.push("federation.import_range", &range_text, e.to_string());
                    crate::addresses::Ipv4Range::loopback_default()
                }
            };
            if f.advertise
                .is_some_and(|a| a.port() == 0 || a.ip().is_unspecified())
            {
                p.push(
                    "federation.advertise",
                    f.advertise.map_or(String::new(), |a| a.to_string()),
                    "a concrete address and port that peers can reach",
                );
            }
            FederationSettings {
                state_dir: f.state_dir.clone(),
                join_token_file: f.join_token_file.clone(),
                intermediate,
                gateway_name,
                advertise: f.advertise,
                leaf_lifetime: p.duration(
                    "federation.leaf_lifetime",
                    f.leaf_lifetime,
                    secs(86_400),
                    secs(10),
                    secs(365 * 86_400),
                ),
                import_range,
            }
        });
        match (&self.tls, &federation) {
            (None, None) => p.push(
                "tls",
                "missing",
                "certificate files, or a [federation] section that enrolls the gateway",
            ),
            (Some(_), Some(_)) => p.push(
                "tls",
                "set with [federation]",
                "either [tls] files or [federation] (which issues the certificates), not both",
            ),
            _ => {}
        }
        if let Some(dns) = &self.dns {
            if listens.contains(&dns.listen) && dns.listen.port() != 0 {
                p.push(
                    "dns.listen",
                    dns.listen,
                    "an address no other TCP listener uses",
                );
            }
        }
        let ingress = self.ingress.as_ref().map(|i| i.validate(&mut p.0));
        let egress = self.egress.as_ref().map(|e| e.validate(&mut p.0));
        let access_log = self.access_log.as_ref().and_then(|a| a.validate(&mut p.0));
        let tracing = self.tracing.as_ref().and_then(|t| t.validate(&mut p.0));
        let workload_api = self.workload_api.as_ref().map(|w| w.validate(&mut p.0));
        if workload_api.is_some() && federation.is_none() {
            p.push(
                "workload_api",
                "set",
                "a [federation] member: SVIDs are issued from the cluster intermediate it enrolls for",
            );
        }
        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(GatewayConfig {
            federation,
            workload_api,
            ingress,
            egress,
            access_log,
            tracing,
            dns: self.dns,
            cluster: self.cluster,
            tls: self.tls,
            listen: self.listen,
            peers: self.peers,
            exports,
            imports: self.imports,
            timeouts,
            outlier,
            worker_threads: self.runtime.worker_threads,
        })
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn join(set: &HashSet<&str>) -> String {
    let mut names: Vec<&str> = set.iter().copied().collect();
    names.sort_unstable();
    if names.is_empty() {
        "none are configured".into()
    } else {
        names.join(", ")
    }
}

#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn push(&mut self, field: &str, value: impl std::fmt::Display, accepted: impl Into<String>) {
        self.0.push(FieldProblem::new(field, value, accepted));
    }

    fn label(&mut self, field: &str, value: &str) {
        if dns_label("name", value).is_err() {
            self.push(
                field,
                format!("{value:?}"),
                "a DNS-1123 label: 1-63 of a-z 0-9 -, starting and ending with a letter or digit",
            );
        }
    }

    fn duration(
        &mut self,
        field: &str,
        value: Option<HumanDuration>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let value = value.map_or(default, Duration::from);
        if value < min || value > max {
            let show = |d: Duration| {
                if d < secs(1) && !d.is_zero() {
                    format!("{}ms", d.as_millis())
                } else {
                    HumanDuration(d).to_string()
                }
            };
            self.push(
                field,
                show(value),
                format!("a duration from {} to {}", show(min), show(max)),
            );
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_config::{Format, parse_str};
    use std::path::Path;

    const GOOD: &str = r#"
        cluster = "east"
        [tls]
        bundle = "bundle.pem"
        cert = "cert.pem"
        key = "key.pem"
        [listen]
        quic = "127.0.0.1:15443"
        metrics = "127.0.0.1:15090"
        [[peers]]
        cluster = "west"
        address = "127.0.0.1:25443"
        [[exports]]
        namespace = "demo"
        name = "echo"
        [[exports.ports]]
        port = 8080
        endpoints = ["127.0.0.1:9000", "127.0.0.1:9001"]
        [[imports]]
        namespace = "demo"
        name = "reviews"
        cluster = "west"
        port = 9080
        listen = "127.0.0.1:19080"
    "#;

    fn parse(text: &str) -> Result<GatewayConfig, String> {
        parse_str::<GatewayConfigFile>(text, Format::Toml, Path::new("gw.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_config_parses_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.cluster, "east");
        assert_eq!(config.exports[0].ports[0].endpoints.len(), 2);
        assert_eq!(config.exports[0].policy, Policy::LeastConnections);
        assert_eq!(config.timeouts, Timeouts::default());
        assert_eq!(config.outlier, OutlierPolicy::default());
    }

    #[test]
    fn cross_field_problems_are_all_reported_with_their_paths() {
        let text = GOOD
            .replace(
                "cluster = \"west\"\n        port",
                "cluster = \"north\"\n        port",
            )
            .replace("port = 8080", "port = 0")
            .replace("cluster = \"east\"", "cluster = \"East\"");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("field `cluster`: value \"East\""), "{err}");
        assert!(
            err.contains("field `imports[0].cluster`: value north"),
            "{err}"
        );
        assert!(err.contains("one of the peers' clusters (west)"), "{err}");
        assert!(
            err.contains("field `exports[0].ports[0].port`: value 0"),
            "{err}"
        );
    }

    #[test]
    fn duplicates_and_empty_lists_are_refused() {
        let text = format!(
            "{GOOD}\n[[peers]]\ncluster = \"west\"\naddress = \"127.0.0.1:1\"\n\
             [[exports]]\nnamespace = \"demo\"\nname = \"echo\"\nports = []\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.contains("`peers[1].cluster`"), "{err}");
        assert!(err.contains("`exports[1].name`"), "{err}");
        assert!(err.contains("`exports[1].ports`"), "{err}");
    }

    #[test]
    fn out_of_range_timeouts_name_the_range() {
        let err = parse(&format!("{GOOD}\n[timeouts]\nconnect = \"1h\"\n")).unwrap_err();
        assert!(err.contains("field `timeouts.connect`: value 1h is not accepted; expected a duration from 1ms to 5m"), "{err}");
    }

    #[test]
    fn worker_threads_are_checked_and_kept() {
        assert_eq!(parse(GOOD).unwrap().worker_threads, None);
        let config = parse(&format!("{GOOD}\n[runtime]\nworker_threads = 1\n")).unwrap();
        assert_eq!(config.worker_threads, Some(1));
        let err = parse(&format!("{GOOD}\n[runtime]\nworker_threads = 0\n")).unwrap_err();
        assert!(
            err.contains("field `runtime.worker_threads`: value 0"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_addresses_name_the_field() {
        let err = parse(&GOOD.replace("metrics =", "metrix =")).unwrap_err();
        assert!(err.contains("field `listen.metrix`"), "{err}");
        let err = parse(&GOOD.replace("127.0.0.1:25443", "localhost")).unwrap_err();
        assert!(err.contains("field `peers[0].address`"), "{err}");
    }
}
