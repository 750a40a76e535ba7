//! The federation node config file (`isthmus config schema federation`): parsed and
//! validated once into an immutable [`FederationConfig`].

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use isthmus_ca::SpiffeId;
use isthmus_ca::spiffe::dns_label;
use isthmus_config::{FieldProblem, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::raft::NodeId;

/// A federation node config file as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationConfigFile {
    /// This node's Raft id: a positive integer, unique in the federation, never reused.
    pub node_id: u64,
    /// This node's name, the `NODE` of its SPIFFE ID `spiffe://TD/federation/NODE`.
    pub name: String,
    /// Where this node keeps its Raft log, catalog and snapshots (relative to the config
    /// file's directory).
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: FederationListen,
    /// Addresses other nodes and clients should use, when they differ from `listen`
    /// (behind NAT, or when listening on 0.0.0.0).
    #[serde(default)]
    pub advertise: Option<FederationListen>,
    /// This node's certificate files (relative to the config file's directory).
    pub tls: FederationTls,
    /// Who may use the admin API.
    #[serde(default)]
    pub admin: AdminSection,
    /// Raft timing and log retention.
    #[serde(default)]
    pub raft: RaftSection,
    /// Enrollment of new clusters' gateways (join tokens).
    #[serde(default)]
    pub enrollment: EnrollmentSection,
    /// Alerts on the mesh's security status.
    #[serde(default)]
    pub alerts: crate::alerts::config::AlertsSection,
}

/// Enrollment settings as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentSection {
    /// The root CA certificate (PEM). With `root_key`, this node signs the intermediate
    /// CSR that an enrolling gateway sends. Without them, gateways must bring an
    /// intermediate already signed by the root holder (`isthmus ca sign-csr`).
    pub root_cert: Option<PathBuf>,
    /// The root CA's private key (PKCS#8 PEM); keep it readable by this node only.
    pub root_key: Option<PathBuf>,
    /// Lifetime of intermediates signed here (default 365d).
    pub intermediate_lifetime: Option<isthmus_config::HumanDuration>,
    /// Lifetime of join tokens when `cluster create` does not say (default 15m; at most
    /// 24h).
    pub token_lifetime: Option<isthmus_config::HumanDuration>,
}

/// Listen addresses.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederationListen {
    /// Raft RPC between federation nodes (gRPC, mutual TLS; only federation nodes).
    pub raft: SocketAddr,
    /// Admin API, gRPC (mutual TLS).
    pub admin: SocketAddr,
    /// Admin API, REST/JSON over HTTPS (mutual TLS), with `/openapi.json`.
    pub rest: SocketAddr,
    /// Prometheus metrics, plain HTTP (`/metrics`); off when absent. Ignored under
    /// `advertise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// Enrollment of gateways with join tokens, gRPC over TLS with no client
    /// certificate (it serves nothing else); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll: Option<SocketAddr>,
}

/// Certificate files of a federation node.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederationTls {
    /// Trust bundle: the roots (PEM).
    pub bundle: PathBuf,
    /// This node's certificate (`spiffe://TD/federation/NAME`, issued by the root).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Admin API access.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// SPIFFE IDs with the platform-admin role besides federation nodes, for example
    /// `spiffe://mesh.example/cluster/ops/ns/admin/sa/alice` (shorthand for
    /// `[[admin.identities]]` entries with `role = "platform-admin"`).
    #[serde(default)]
    pub clients: Vec<String>,
    /// Client certificate identities and their roles. Gateways need no entry: a gateway
    /// certificate carries the gateway role for its own cluster.
    #[serde(default)]
    pub identities: Vec<AdminIdentity>,
    /// Bearer tokens (`authorization: Bearer <token>`), stored as their SHA-256; mint
    /// one with `isthmus federation token create`.
    #[serde(default)]
    pub tokens: Vec<AdminToken>,
}

/// A client certificate identity with a role.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminIdentity {
    /// The SPIFFE ID of the client certificate.
    pub id: String,
    /// platform-admin, namespace-admin or reader.
    pub role: crate::access::RoleName,
    /// For namespace-admin: the namespaces it administers (required, non-empty).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// A bearer token with a role.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// A name for logs (DNS-1123 label).
    pub name: String,
    /// SHA-256 of the token, 64 hex digits (the token itself is never stored).
    pub sha256: String,
    /// platform-admin, namespace-admin or reader.
    pub role: crate::access::RoleName,
    /// For namespace-admin: the namespaces it administers.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// Raft settings as written (milliseconds and counts).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    /// Leader heartbeat interval, ms (default 50). openraft also bounds each
    /// replication call by it, so it must cover a follower's disk flush.
    pub heartbeat_ms: Option<u64>,
    /// Smallest election timeout, ms (default 200). At least 3 heartbeats. A follower
    /// starts an election after the leader lease (`election_timeout_max_ms`) plus a
    /// random election timeout without hearing from the leader, so failover takes
    /// about `max + [min, max)` plus one vote round.
    pub election_timeout_min_ms: Option<u64>,
    /// Largest election timeout, ms (default 300).
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries (default 5000).
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot for lagging followers (default 1000).
    pub keep_after_snapshot: Option<u64>,
    /// Revisions of watch history kept for resuming watchers (default 10000).
    pub watch_history: Option<u64>,
    /// The local address Raft calls to other nodes leave from, for hosts with several
    /// addresses where peers or firewalls go by source (the kernel chooses when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<IpAddr>,
}

/// A validated federation node config.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// Raft id.
    pub node_id: NodeId,
    /// Node name.
    pub name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: FederationListen,
    /// Advertised addresses (defaults to `listen`).
    pub advertise: Option<FederationListen>,
    /// Certificate files.
    pub tls: FederationTls,
    /// Admin API identities and tokens with their roles.
    pub access: crate::access::AccessControl,
    /// Raft timing.
    pub raft: RaftTiming,
    /// Where Raft calls to other nodes leave from (the kernel's choice when `None`).
    pub raft_source: Option<IpAddr>,
    /// Enrollment.
    pub enrollment: Enrollment,
    /// Alerts on the mesh's security status.
    pub alerts: crate::alerts::config::AlertSettings,
}

/// Enrollment settings, validated.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// Root certificate and key files, when this node signs intermediates.
    pub root: Option<(PathBuf, PathBuf)>,
    /// Lifetime of intermediates signed here.
    pub intermediate_lifetime: Duration,
    /// Default lifetime of join tokens.
    pub token_lifetime: Duration,
}

/// The longest a join token may live.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Raft timing and retention, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot.
    pub keep_after_snapshot: u64,
    /// Watch history, in revisions.
    pub watch_history: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(300)),
            snapshot_every: 5000,
            keep_after_snapshot: 1000,
            watch_history: 10_000,
        }
    }
}

impl RaftTiming {
    /// The openraft config for this timing.
    pub fn openraft_config(
        &self,
        cluster_name: &str,
    ) -> Result<openraft::Config, Box<openraft::ConfigError>> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: cluster_name.to_owned(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            install_snapshot_timeout: 5_000,
            // Small batches keep each replication call well inside its time bound.
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(Box::new)
    }
}

impl Validate for FederationConfigFile {
    type Valid = FederationConfig;

    fn validate(self) -> Result<FederationConfig, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        if self.node_id == 0 {
            problems.push(FieldProblem::new("node_id", 0, "a positive integer"));
        }
        if dns_label("name", &self.name).is_err() {
            problems.push(FieldProblem::new(
                "name",
                format!("{:?}", self.name),
                "a DNS-1123 label: 1-63 of a-z 0-9 -, starting and ending with a letter or digit",
            ));
        }
        let addrs = [
            ("listen.raft", self.listen.raft),
            ("listen.admin", self.listen.admin),
            ("listen.rest", self.listen.rest),
        ];
        let mut seen = HashSet::new();
        let metrics = self.listen.metrics.map(|addr| ("listen.metrics", addr));
        let enroll = self.listen.enroll.map(|addr| ("listen.enroll", addr));
        for (field, addr) in addrs.into_iter().chain(metrics).chain(enroll) {
            if addr.port() != 0 && !seen.insert(addr) {
                problems.push(FieldProblem::new(
                    field,
                    addr,
                    "an address not used by another listener",
                ));
            }
        }
        if let Some(advertise) = &self.advertise {
            for (field, addr) in [
                ("advertise.raft", advertise.raft),
                ("advertise.admin", advertise.admin),
                ("advertise.rest", advertise.rest),
            ] {
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    problems.push(FieldProblem::new(
                        field,
                        addr,
                        "a concrete address and port that others can reach",
                    ));
                }
            }
        }
        let access = access_control(&self.admin, &mut problems);
        let defaults = RaftTiming::default();
        let ms = Duration::from_millis;
        let r = &self.raft;
        let timing = RaftTiming {
            heartbeat: r.heartbeat_ms.map_or(defaults.heartbeat, ms),
            election_timeout: (
                r.election_timeout_min_ms
                    .map_or(defaults.election_timeout.0, ms),
                r.election_timeout_max_ms
                    .map_or(defaults.election_timeout.1, ms),
            ),
            snapshot_every: r.snapshot_every.unwrap_or(defaults.snapshot_every),
            keep_after_snapshot: r
                .keep_after_snapshot
                .unwrap_or(defaults.keep_after_snapshot),
            watch_history: r.watch_history.unwrap_or(defaults.watch_history),
        };
        if !(10..=10_000).contains(&timing.heartbeat.as_millis()) {
            problems.push(FieldProblem::new(
                "raft.heartbeat_ms",
                timing.heartbeat.as_millis(),
                "10 to 10000",
            ));
        }
        if timing.election_timeout.0 < timing.heartbeat * 3 {
            problems.push(FieldProblem::new(
                "raft.election_timeout_min_ms",
                timing.election_timeout.0.as_millis(),
                format!(
                    "at least 3 heartbeats ({} ms)",
                    (timing.heartbeat * 3).as_millis()
                ),
            ));
        }
        if timing.election_timeout.1 <= timing.election_timeout.0 {
            problems.push(FieldProblem::new(
                "raft.election_timeout_max_ms",
                timing.election_timeout.1.as_millis(),
                format!(
                    "more than election_timeout_min_ms ({})",
                    timing.election_timeout.0.as_millis()
                ),
            ));
        }
        if timing.snapshot_every == 0 {
            problems.push(FieldProblem::new(
                "raft.snapshot_every",
                0,
                "a positive count",
            ));
        }
        if let Some(source) = r.source_address
            && (source.is_unspecified() || source.is_multicast())
        {
            problems.push(FieldProblem::new(
                "raft.source_address",
                source,
                "one of this host's unicast addresses (or leave it out)",
            ));
        }
        if timing.watch_history == 0 {
            problems.push(FieldProblem::new(
                "raft.watch_history",
                0,
                "a positive count",
            ));
        }
        let e = &self.enrollment;
        let root = match (&e.root_cert, &e.root_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => {
                problems.push(FieldProblem::new(
                    "enrollment.root_key",
                    "missing",
                    "the root's key file, since enrollment.root_cert is set (or remove both)",
                ));
                None
            }
            (None, Some(_)) => {
                problems.push(FieldProblem::new(
                    "enrollment.root_cert",
                    "missing",
                    "the root's certificate file, since enrollment.root_key is set (or remove both)",
                ));
                None
            }
        };
        let token_lifetime = e
            .token_lifetime
            .map_or(Duration::from_secs(15 * 60), |d| d.0);
        if token_lifetime.is_zero() || token_lifetime > MAX_TOKEN_LIFETIME {
            problems.push(FieldProblem::new(
                "enrollment.token_lifetime",
                format!("{token_lifetime:?}"),
                "above zero and at most 24h",
            ));
        }
        let intermediate_lifetime = e
            .intermediate_lifetime
            .map_or(Duration::from_secs(365 * 24 * 3600), |d| d.0);
        if intermediate_lifetime < Duration::from_secs(3600) {
            problems.push(FieldProblem::new(
                "enrollment.intermediate_lifetime",
                format!("{intermediate_lifetime:?}"),
                "at least 1h (leaves are issued from it)",
            ));
        }
        let alerts = self.alerts.validate(&mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(FederationConfig {
            alerts,
            enrollment: Enrollment {
                root,
                intermediate_lifetime,
                token_lifetime,
            },
            node_id: self.node_id,
            name: self.name,
            data_dir: self.data_dir,
            listen: self.listen,
            advertise: self.advertise,
            tls: self.tls,
            access,
            raft: timing,
            raft_source: self.raft.source_address,
        })
    }
}

fn role(
    field: &str,
    name: crate::access::RoleName,
    namespaces: &[String],
    problems: &mut Vec<FieldProblem>,
) -> crate::access::Role {
    use crate::access::{Role, RoleName};
    for (j, ns) in namespaces.iter().enumerate() {
        if isthmus_federation_api::validate::name("namespace", ns).is_err() {
            problems.push(FieldProblem::new(
                format!("{field}.namespaces[{j}]"),
                format!("{ns:?}"),
                "a namespace name (DNS-1123 label)",
            ));
        }
    }
    match name {
        RoleName::NamespaceAdmin if namespaces.is_empty() => {
            problems.push(FieldProblem::new(
                format!("{field}.namespaces"),
                "[]",
                "the namespaces a namespace-admin administers (at least one)",
            ));
        }
        RoleName::PlatformAdmin | RoleName::Reader if !namespaces.is_empty() => {
            problems.push(FieldProblem::new(
                format!("{field}.namespaces"),
                format!("{namespaces:?}"),
                "no namespaces: only a namespace-admin has them (platform-admin and reader cover every namespace)",
            ));
        }
        _ => {}
    }
    match name {
        RoleName::PlatformAdmin => Role::PlatformAdmin,
        RoleName::NamespaceAdmin => Role::NamespaceAdmin(namespaces.iter().cloned().collect()),
        RoleName::Reader => Role::Reader,
    }
}

fn access_control(
    admin: &AdminSection,
    problems: &mut Vec<FieldProblem>,
) -> crate::access::AccessControl {
    use crate::access::{Role, TokenGrant};
    let mut identities: Vec<(SpiffeId, Role)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |field: String, text: &str, role: Role, problems: &mut Vec<FieldProblem>| {
        match SpiffeId::parse(text) {
            Ok(id) if !seen.insert(id.as_str().to_owned()) => problems.push(FieldProblem::new(
                field,
                format!("{text:?}"),
                "an identity listed once (in admin.clients or admin.identities, not both)",
            )),
            Ok(id)
                if id
                    .identity()
                    .is_ok_and(|i| !matches!(i, isthmus_ca::Identity::Workload { .. })) =>
            {
                problems.push(FieldProblem::new(
                    field,
                    format!("{text:?}"),
                    "a workload identity (federation nodes and gateways have their roles already)",
                ))
            }
            Ok(id) => identities.push((id, role)),
            Err(e) => problems.push(FieldProblem::new(
                field,
                format!("{text:?}"),
                format!(
                    "a SPIFFE ID such as spiffe://mesh.example/cluster/ops/ns/admin/sa/alice ({e})"
                ),
            )),
        }
    };
    for (i, client) in admin.clients.iter().enumerate() {
        add(
            format!("admin.clients[{i}]"),
            client,
            Role::PlatformAdmin,
            problems,
        );
    }
    for (i, entry) in admin.identities.iter().enumerate() {
        let field = format!("admin.identities[{i}]");
        let r = role(&field, entry.role, &entry.namespaces, problems);
        add(format!("{field}.id"), &entry.id, r, problems);
    }
    let mut tokens = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, entry) in admin.tokens.iter().enumerate() {
        let field = format!("admin.tokens[{i}]");
        if isthmus_federation_api::validate::name("name", &entry.name).is_err()
            || !names.insert(&entry.name)
        {
            problems.push(FieldProblem::new(
                format!("{field}.name"),
                format!("{:?}", entry.name),
                "a DNS-1123 label, unique among admin.tokens",
            ));
        }
        let r = role(&field, entry.role, &entry.namespaces, problems);
        let hex = entry.sha256.trim();
        let mut sha256 = [0u8; 32];
        let parsed = hex.len() == 64
            && hex.is_ascii()
            && (0..32).all(|j| {
                u8::from_str_radix(&hex[2 * j..2 * j + 2], 16)
                    .map(|b| sha256[j] = b)
                    .is_ok()
            });
        if !parsed {
            problems.push(FieldProblem::new(
                format!("{field}.sha256"),
                format!("{:?}", entry.sha256),
                "64 hex digits: the SHA-256 of the token, as `isthmus federation token create` prints (never the token itself)",
            ));
            continue;
        }
        tokens.push(TokenGrant {
            name: entry.name.clone(),
            sha256,
            role: r,
        });
    }
    crate::access::AccessControl::new(identities, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_config::{Format, parse_str};
    use std::path::Path;

    const BASE: &str = r#"
node_id = 1
name = "n1"
data_dir = "d"
[listen]
raft = "127.0.0.1:0"
admin = "127.0.0.1:0"
rest = "127.0.0.1:0"
[tls]
bundle = "b.pem"
cert = "c.pem"
key = "k.pem"
"#;

    fn problems(admin: &str) -> Vec<FieldProblem> {
        let text = format!("{BASE}{admin}");
        match parse_str::<FederationConfigFile>(&text, Format::Toml, Path::new("f.toml")) {
            Ok(_) => vec![],
            Err(isthmus_config::ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn the_raft_source_address_must_be_one_to_send_from() {
        assert!(problems("[raft]\nsource_address = \"127.0.1.2\"\n").is_empty());
        for bad in ["0.0.0.0", "::", "224.0.0.1"] {
            let found = problems(&format!("[raft]\nsource_address = \"{bad}\"\n"));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].field, "raft.source_address", "{bad}");
        }
    }

    #[test]
    fn admin_roles_and_tokens_are_checked_field_by_field() {
        let hash = "ab".repeat(32);
        assert!(
            problems(&format!(
                r#"
[admin]
clients = ["spiffe://m.test/cluster/ops/ns/admin/sa/alice"]
[[admin.identities]]
id = "spiffe://m.test/cluster/ops/ns/shop/sa/bob"
role = "namespace-admin"
namespaces = ["shop"]
[[admin.tokens]]
name = "ci"
sha256 = "{hash}"
role = "reader"
"#
            ))
            .is_empty()
        );
        let cases = [
            (
                "[[admin.identities]]\nid = \"spiffe://m.test/cluster/ops/ns/shop/sa/bob\"\nrole = \"namespace-admin\"\n",
                "admin.identities[0].namespaces",
                "at least one",
            ),
            (
                "[[admin.identities]]\nid = \"spiffe://m.test/cluster/ops/ns/shop/sa/bob\"\nrole = \"reader\"\nnamespaces = [\"shop\"]\n",
                "admin.identities[0].namespaces",
                "only a namespace-admin",
            ),
            (
                "[[admin.identities]]\nid = \"spiffe://m.test/cluster/west/gateway/gw\"\nrole = \"reader\"\n",
                "admin.identities[0].id",
                "workload identity",
            ),
            (
                "[admin]\nclients = [\"spiffe://m.test/cluster/ops/ns/a/sa/x\"]\n[[admin.identities]]\nid = \"spiffe://m.test/cluster/ops/ns/a/sa/x\"\nrole = \"reader\"\n",
                "admin.identities[0].id",
                "listed once",
            ),
            (
                "[[admin.tokens]]\nname = \"ci\"\nsha256 = \"not-hex\"\nrole = \"reader\"\n",
                "admin.tokens[0].sha256",
                "64 hex digits",
            ),
            (
                "[[admin.tokens]]\nname = \"CI!\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000000\"\nrole = \"reader\"\n",
                "admin.tokens[0].name",
                "DNS-1123",
            ),
        ];
        for (admin, field, says) in cases {
            let found = problems(admin);
            assert!(
                found
                    .iter()
                    .any(|p| p.field == field && p.accepted.contains(says)),
                "{admin}: {found:?}"
            );
        }
    }
}
