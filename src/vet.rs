//! `isthmus vet DIR`: the admission checks, run offline on a directory of gateway
//! configs, federation configs, policy documents (`NAME.policy.json`) and traffic claims
//! (`claims.toml` / `claims.json`). Each file is checked as its kind is at load or
//! admission; then what only the files together show: policies naming clusters no file
//! defines, rules naming service accounts no registration gives, routes and imports to
//! services no gateway exports, hosts claimed by two namespaces, import ranges that
//! overlap on one host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isthmus_config::{ConfigError, FieldProblem, Format};
use isthmus_federation::config::FederationConfigFile;
use isthmus_federation_api::claims::{Claim, HostPattern};
use isthmus_federation_api::policy::PolicyBody;
use isthmus_gateway::config::{GatewayConfig, GatewayConfigFile};
use isthmus_gateway::ingress::table::{HostMode, ServiceRef};
use serde::{Deserialize, Serialize};

/// One finding: which file, which field, what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    /// The file, relative to the directory vetted.
    pub(crate) file: String,
    /// The field (dotted path), or `-` for the file as a whole.
    pub(crate) field: String,
    /// What is wrong and what to do.
    pub(crate) message: String,
}

/// A claims file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    claims: Vec<ClaimEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimEntry {
    host: String,
    namespace: String,
}

/// Why a directory could not be vetted at all.
#[derive(Debug, thiserror::Error)]
#[error("{dir}: {source}")]
pub(crate) struct VetError {
    dir: String,
    source: std::io::Error,
}

fn files(dir: &Path) -> Result<Vec<PathBuf>, VetError> {
    let fail = |source| VetError {
        dir: dir.display().to_string(),
        source,
    };
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(fail)? {
            let path = entry.map_err(fail)?.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("toml" | "json")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// What the files say, gathered for the cross-file checks.
#[derive(Default)]
struct Picture {
    gateways: Vec<(String, GatewayConfig)>,
    clusters: BTreeMap<String, String>,
    policies: Vec<(String, PolicyBody)>,
    claims: Option<(String, Vec<Claim>)>,
}

/// Vets every config, policy and claims file under `dir`.
pub(crate) fn vet_dir(dir: &Path) -> Result<(Vec<Finding>, usize), VetError> {
    let paths = files(dir)?;
    let mut findings = Vec::new();
    let mut picture = Picture::default();
    for path in &paths {
        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let mut finding = |field: &str, message: String| {
            findings.push(Finding {
                file: name.clone(),
                field: field.to_owned(),
                message,
            });
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                finding("-", format!("cannot read: {e}"));
                continue;
            }
        };
        let file_name = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if let Some(policy) = file_name.strip_suffix(".policy.json") {
            if let Err(e) = isthmus_federation_api::validate::name("name", policy) {
                finding("-", format!("the file name gives the policy's name: {e}"));
            }
            match isthmus_federation_api::policy::parse(&text) {
                Ok(body) => picture.policies.push((name.clone(), body)),
                Err(isthmus_federation_api::ApiError::InvalidArgument { field, message }) => {
                    finding(&field, message)
                }
                Err(e) => finding("-", e.to_string()),
            }
            continue;
        }
        if matches!(file_name, "claims.toml" | "claims.json") {
            let parsed: Result<ClaimsFile, Box<dyn std::error::Error>> =
                if file_name.ends_with(".toml") {
                    toml::from_str(&text).map_err(Into::into)
                } else {
                    serde_json::from_str(&text).map_err(Into::into)
                };
            match parsed {
                Err(e) => finding("-", e.to_string()),
                Ok(file) => {
                    let mut held: Vec<Claim> = Vec::new();
                    for (i, c) in file.claims.into_iter().enumerate() {
                        let claim = Claim {
                            host: c.host,
                            namespace: c.namespace,
                            revision: 0,
                        };
                        if let Err(e) = isthmus_federation_api::claims::check(&claim) {
                            finding(&format!("claims[{i}]"), e.to_string());
                        } else if let Some(other) =
                            isthmus_federation_api::claims::conflict(&held, &claim)
                        {
                            finding(
                                &format!("claims[{i}].host"),
                                format!(
                                    "{} is claimed by namespace {} (claim {}); a host belongs to one namespace",
                                    claim.host, other.namespace, other.host
                                ),
                            );
                        } else {
                            held.push(claim);
                        }
                    }
                    picture.claims = Some((name.clone(), held));
                }
            }
            continue;
        }
        let format = if file_name.ends_with(".toml") {
            Format::Toml
        } else {
            Format::Json
        };
        let is_federation = if format == Format::Toml {
            toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("node_id"))
        } else {
            serde_json::from_str::<serde_json::Value>(&text)
                .is_ok_and(|v| v.get("node_id").is_some())
        };
        let mut problems = |e: ConfigError| match e {
            ConfigError::Invalid { problems, .. } => {
                for FieldProblem {
                    field,
                    value,
                    accepted,
                } in problems
                {
                    finding(
                        &field,
                        format!("{value} is not accepted; expected {accepted}"),
                    );
                }
            }
            ConfigError::Field { field, message, .. } => finding(&field, message),
            ConfigError::Syntax {
                location, message, ..
            } => finding("-", format!("{location}: {message}")),
            other => finding("-", other.to_string()),
        };
        if is_federation {
            if let Err(e) = isthmus_config::parse_str::<FederationConfigFile>(&text, format, path) {
                problems(e);
            }
            continue;
        }
        match isthmus_config::parse_str::<GatewayConfigFile>(&text, format, path) {
            Ok(config) => {
                picture
                    .clusters
                    .insert(config.cluster.clone(), name.clone());
                for peer in &config.peers {
                    picture
                        .clusters
                        .entry(peer.cluster.clone())
                        .or_insert_with(|| name.clone());
                }
                picture.gateways.push((name.clone(), config));
            }
            Err(e) => problems(e),
        }
    }
    across(&picture, &mut findings);
    Ok((findings, paths.len()))
}

/// The checks only the files together can make.
fn across(p: &Picture, findings: &mut Vec<Finding>) {
    let mut push = |file: &str, field: String, message: String| {
        findings.push(Finding {
            file: file.to_owned(),
            field,
            message,
        });
    };
    // Policies naming clusters that no gateway config defines (as its own or a peer).
    for (file, body) in &p.policies {
        for f in isthmus_federation_api::vet::policy_clusters(body, |c| p.clusters.contains_key(c))
        {
            push(
                file,
                f.field,
                f.message.replace(
                    "no such member cluster",
                    "no gateway config here is of that cluster or peers with it",
                ),
            );
        }
    }
    // Rules naming a service account that no registration of the gateways here gives
    // (in the rule's source cluster, when it names one): they can match no caller.
    for (file, body) in &p.policies {
        for (i, rule) in body.rules.iter().enumerate() {
            for (j, source) in rule.from.iter().enumerate() {
                if source.service_account == "*" {
                    continue;
                }
                let produced = p.gateways.iter().any(|(_, g)| {
                    (source.cluster == "*" || source.cluster == g.cluster)
                        && g.workload_api.as_ref().is_some_and(|w| {
                            w.registrations.iter().any(|r| {
                                r.service_account == source.service_account
                                    && (source.namespace == "*" || source.namespace == r.namespace)
                            })
                        })
                });
                if !produced {
                    push(
                        file,
                        format!("body.rules[{i}].from[{j}].service_account"),
                        format!(
                            "no [[workload_api.registrations]] of a gateway config here gives service account {:?}{}: the rule can match no caller (register the workload, or registrations held in the federation may give it)",
                            source.service_account,
                            if source.namespace == "*" {
                                String::new()
                            } else {
                                format!(" in namespace {:?}", source.namespace)
                            },
                        ),
                    );
                }
            }
        }
    }
    // Routes and imports to services no gateway exports.
    let exported = |s: &ServiceRef| {
        p.gateways.iter().any(|(_, g)| {
            g.exports.iter().any(|e| {
                e.namespace == s.namespace
                    && e.name == s.name
                    && e.ports.iter().any(|port| port.port == s.port)
            })
        })
    };
    let nobody =
        |s: &ServiceRef| format!("no gateway config here exports {s}; export it, or fix the route");
    for (file, g) in &p.gateways {
        for (i, import) in g.imports.iter().enumerate() {
            let s = ServiceRef {
                namespace: import.namespace.clone(),
                name: import.name.clone(),
                port: import.port,
            };
            if !exported(&s) {
                push(file, format!("imports[{i}]"), nobody(&s));
            }
        }
        if let Some(ingress) = &g.ingress {
            for (i, h) in ingress.hosts.iter().enumerate() {
                match &h.mode {
                    HostMode::Passthrough(s) if !exported(s) => {
                        push(file, format!("ingress.hosts[{i}].passthrough"), nobody(s));
                    }
                    HostMode::Terminate { routes, .. } => {
                        for (j, r) in routes.iter().enumerate() {
                            if !exported(&r.service) {
                                push(
                                    file,
                                    format!("ingress.hosts[{i}].routes[{j}].service"),
                                    nobody(&r.service),
                                );
                            }
                        }
                    }
                    HostMode::Passthrough(_) => {}
                }
            }
            for (i, (_, s)) in ingress.tcp.iter().enumerate() {
                if !exported(s) {
                    push(file, format!("ingress.tcp[{i}].service"), nobody(s));
                }
            }
        }
    }
    // Hosts: one namespace each, across every ingress host and egress entry, and covered
    // by a claim of that namespace when a claims file is given.
    let mut hosts: Vec<(&str, String, &HostPattern, &str)> = Vec::new();
    for (file, g) in &p.gateways {
        if let Some(ingress) = &g.ingress {
            for (i, h) in ingress.hosts.iter().enumerate() {
                hosts.push((
                    file,
                    format!("ingress.hosts[{i}].host"),
                    &h.pattern,
                    &h.namespace,
                ));
            }
        }
        if let Some(egress) = &g.egress {
            for (i, h) in egress.hosts.iter().enumerate() {
                hosts.push((
                    file,
                    format!("egress.hosts[{i}].host"),
                    &h.pattern,
                    &h.namespace,
                ));
            }
        }
    }
    for (k, (file, field, pattern, namespace)) in hosts.iter().enumerate() {
        if let Some((other_file, other_field, other, other_ns)) = hosts[..k]
            .iter()
            .find(|(_, _, o, ns)| ns != namespace && o.overlaps(pattern))
        {
            push(
                file,
                field.clone(),
                format!(
                    "{pattern} is also {other} for namespace {other_ns} ({other_file}, {other_field}); a host belongs to one namespace"
                ),
            );
        }
        if let Some((claims_file, claims)) = &p.claims {
            if !isthmus_federation_api::claims::covered(claims, pattern, namespace) {
                push(
                    file,
                    field.clone(),
                    format!(
                        "{pattern} is not claimed by namespace {namespace} in {claims_file}; claim it there"
                    ),
                );
            }
        }
    }
    // Import ranges of gateways on one host must not overlap: their import addresses
    // would collide.
    let ranges: Vec<(
        &str,
        std::net::IpAddr,
        isthmus_gateway::addresses::Ipv4Range,
    )> = p
        .gateways
        .iter()
        .filter_map(|(file, g)| {
            g.federation
                .as_ref()
                .map(|f| (file.as_str(), g.listen.quic.ip(), f.import_range))
        })
        .collect();
    for (k, (file, ip, range)) in ranges.iter().enumerate() {
        if let Some((other_file, _, other)) = ranges[..k]
            .iter()
            .find(|(_, other_ip, other)| other_ip == ip && other.overlaps(range))
        {
            push(
                file,
                "federation.import_range".into(),
                format!(
                    "{range} overlaps {other} of {other_file}, a gateway on the same host ({ip}); give each its own range"
                ),
            );
        }
    }
}
