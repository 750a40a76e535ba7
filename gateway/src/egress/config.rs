//! The `[egress]` section of a gateway config: as written, validated, and the pure
//! allow-list decision.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use isthmus_config::FieldProblem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ingress::table::HostPattern;

/// The egress as written: the one way out to hosts outside the mesh. Deny by default:
/// only hosts and ports on the allow-list are reached.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    /// Where apps (or other clusters, through an export of the listener) connect.
    pub listeners: Vec<EgressListenerEntry>,
    /// The allow-list.
    #[serde(default)]
    pub hosts: Vec<EgressHostEntry>,
}

/// How a listener learns the external host.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EgressMode {
    /// The app speaks TLS to the external host itself; the ClientHello's server name
    /// (SNI) names it, and the bytes pass through undecrypted.
    Passthrough,
    /// The app speaks plain HTTP/1.1; the `Host` header names the host, and the gateway
    /// opens TLS to it (verifying it against the host's `ca`).
    Originate,
}

/// One listener as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EgressListenerEntry {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The external port its connections are for (default 443).
    #[serde(default = "https_port")]
    pub port: u16,
    /// passthrough (TLS from the app) or originate (HTTP from the app, TLS out).
    pub mode: EgressMode,
}

fn https_port() -> u16 {
    443
}

/// One allowed host as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EgressHostEntry {
    /// A DNS name, or `*.example.com` for one label under it.
    pub host: String,
    /// Ports it may be reached on.
    pub ports: Vec<u16>,
    /// The namespace that owns the entry (its traffic claim).
    pub namespace: String,
    /// A fixed address instead of a DNS lookup of the host (split horizon, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// PEM roots that verify the host when the gateway originates TLS (required for
    /// originate listeners to reach it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// A validated listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressListener {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The external port.
    pub port: u16,
    /// How the host is learnt.
    pub mode: EgressMode,
}

/// A validated allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Which names.
    pub pattern: HostPattern,
    /// Which ports.
    pub ports: Vec<u16>,
    /// The owning namespace.
    pub namespace: String,
    /// A fixed address.
    pub address: Option<SocketAddr>,
    /// Roots for TLS origination (path as written).
    pub ca: Option<PathBuf>,
}

/// The validated egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSettings {
    /// Listeners.
    pub listeners: Vec<EgressListener>,
    /// The allow-list, exact names before wildcards.
    pub hosts: Vec<AllowedHost>,
}

/// The egress decision for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressDecision<'a> {
    /// Allowed by this entry.
    Allow(&'a AllowedHost),
    /// Denied: no entry names the host, or none allows the port (the reason says which).
    Deny(String),
}

impl EgressSettings {
    /// Decides `host:port` (pure): the first entry (exact names before wildcards) whose
    /// pattern matches must list the port.
    pub fn decide(&self, host: &str, port: u16) -> EgressDecision<'_> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.hosts.iter().find(|h| h.pattern.matches(&host)) {
            None => EgressDecision::Deny(format!(
                "{host} is not on the egress allow-list (deny by default)"
            )),
            Some(entry) if !entry.ports.contains(&port) => EgressDecision::Deny(format!(
                "{host} is allowed on ports {:?} only, not {port}",
                entry.ports
            )),
            Some(entry) => EgressDecision::Allow(entry),
        }
    }
}

impl EgressSection {
    /// Checks every field, pushing problems that name it.
    pub fn validate(&self, problems: &mut Vec<FieldProblem>) -> EgressSettings {
        let mut push = |field: String, value: String, accepted: &str| {
            problems.push(FieldProblem::new(field, value, accepted));
        };
        if self.listeners.is_empty() {
            push(
                "egress.listeners".into(),
                "[]".into(),
                "at least one listener (mode passthrough or originate)",
            );
        }
        let mut listens = HashSet::new();
        let mut listeners = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if l.port == 0 {
                push(
                    format!("egress.listeners[{i}].port"),
                    "0".into(),
                    "a port from 1 to 65535",
                );
            }
            if l.listen.port() != 0 && !listens.insert(l.listen) {
                push(
                    format!("egress.listeners[{i}].listen"),
                    l.listen.to_string(),
                    "an address no other egress listener uses",
                );
            }
            listeners.push(EgressListener {
                listen: l.listen,
                port: l.port,
                mode: l.mode,
            });
        }
        let originates = listeners.iter().any(|l| l.mode == EgressMode::Originate);
        let mut hosts: Vec<AllowedHost> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let at = |f: &str| format!("egress.hosts[{i}].{f}");
            let pattern = match HostPattern::parse(&h.host) {
                Ok(p) => p,
                Err(e) => {
                    push(at("host"), format!("{:?}", h.host), &e.to_string());
                    continue;
                }
            };
            if hosts.iter().any(|o| o.pattern == pattern) {
                push(
                    at("host"),
                    format!("{:?}", h.host),
                    "each host listed once (list all its ports in one entry)",
                );
            }
            if h.ports.is_empty() || h.ports.contains(&0) {
                push(
                    at("ports"),
                    format!("{:?}", h.ports),
                    "one or more ports from 1 to 65535",
                );
            }
            if isthmus_ca::spiffe::dns_label("namespace", &h.namespace).is_err() {
                push(
                    at("namespace"),
                    format!("{:?}", h.namespace),
                    "a namespace (DNS-1123 label)",
                );
            }
            if originates && h.ca.is_none() {
                push(
                    at("ca"),
                    "(none)".into(),
                    "PEM roots that verify this host: an originate listener opens TLS to it",
                );
            }
            hosts.push(AllowedHost {
                pattern,
                ports: h.ports.clone(),
                namespace: h.namespace.clone(),
                address: h.address,
                ca: h.ca.clone(),
            });
        }
        hosts.sort_by_key(|h| match &h.pattern {
            HostPattern::Exact(_) => (0, 0),
            HostPattern::Wildcard(s) => (1, usize::MAX - s.len()),
        });
        EgressSettings { listeners, hosts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> (EgressSettings, Vec<(String, String)>) {
        let section: EgressSection = toml::from_str(text).unwrap();
        let mut found = Vec::new();
        let s = section.validate(&mut found);
        (
            s,
            found.into_iter().map(|p| (p.field, p.accepted)).collect(),
        )
    }

    #[test]
    fn the_allow_list_denies_by_default_and_checks_ports() {
        let (s, problems) = settings(
            r#"
listeners = [{ listen = "127.0.0.1:15443", mode = "passthrough" }]
[[hosts]]
host = "*.partner.test"
ports = [443]
namespace = "shop"
[[hosts]]
host = "api.partner.test"
ports = [443, 8443]
namespace = "shop"
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let allowed = |h: &str, p: u16| matches!(s.decide(h, p), EgressDecision::Allow(_));
        assert!(allowed("api.partner.test", 8443), "the exact entry wins");
        assert!(allowed("API.Partner.Test.", 443));
        assert!(allowed("files.partner.test", 443));
        assert!(
            !allowed("files.partner.test", 8443),
            "the wildcard lists 443 only"
        );
        assert!(!allowed("a.b.partner.test", 443), "one label");
        assert!(!allowed("evil.test", 443));
        match s.decide("evil.test", 443) {
            EgressDecision::Deny(why) => {
                assert!(why.contains("not on the egress allow-list"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        match s.decide("files.partner.test", 8443) {
            EgressDecision::Deny(why) => assert!(why.contains("ports [443] only"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_field_is_named_with_its_fix() {
        let cases = [
            (
                "listeners = []\n",
                "egress.listeners",
                "at least one listener",
            ),
            (
                "listeners = [{ listen = \"127.0.0.1:1\", mode = \"passthrough\", port = 0 }]\n",
                "egress.listeners[0].port",
                "1 to 65535",
            ),
            (
                "listeners = [{ listen = \"127.0.0.1:1\", mode = \"passthrough\" }, { listen = \"127.0.0.1:1\", mode = \"originate\" }]\n",
                "egress.listeners[1].listen",
                "no other egress listener",
            ),
            (
                "listeners = [{ listen = \"127.0.0.1:1\", mode = \"passthrough\" }]\n[[hosts]]\nhost = \"x\"\nports = [443]\nnamespace = \"a\"\n",
                "egress.hosts[0].host",
                "two or more labels",
            ),
            (
                "listeners = [{ listen = \"127.0.0.1:1\", mode = \"passthrough\" }]\n[[hosts]]\nhost = \"x.test\"\nports = []\nnamespace = \"a\"\n",
                "egress.hosts[0].ports",
                "one or more ports",
            ),
            (
                "listeners = [{ listen = \"127.0.0.1:1\", mode = \"originate\" }]\n[[hosts]]\nhost = \"x.test\"\nports = [443]\nnamespace = \"a\"\n",
                "egress.hosts[0].ca",
                "PEM roots",
            ),
            (
                "listeners = [{ listen = \"127.0.0.1:1\", mode = \"passthrough\" }]\n[[hosts]]\nhost = \"x.test\"\nports = [443]\nnamespace = \"a\"\n[[hosts]]\nhost = \"X.test\"\nports = [80]\nnamespace = \"b\"\n",
                "egress.hosts[1].host",
                "listed once",
            ),
        ];
        for (text, field, says) in cases {
            let (_, found) = settings(text);
            assert!(
                found.iter().any(|(f, a)| f == field && a.contains(says)),
                "{text}: {found:?}"
            );
        }
    }
}
