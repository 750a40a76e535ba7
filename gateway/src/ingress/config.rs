//! The `[ingress]` section of a gateway config: as written, and validated.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use isthmus_config::FieldProblem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::table::{HostEntry, HostMode, HostPattern, HttpRoute, ServiceRef};

/// The ingress as written: traffic from outside the mesh in.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IngressSection {
    /// The TLS listener: each connection's server name (SNI) picks a host, whose TLS is
    /// terminated here or passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Hosts served on `listen`.
    #[serde(default)]
    pub hosts: Vec<IngressHost>,
    /// Plain TCP routes: a listener per route, to one service port.
    #[serde(default)]
    pub tcp: Vec<TcpRouteEntry>,
}

/// One host as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IngressHost {
    /// A DNS name, or `*.example.com` for one label under it.
    pub host: String,
    /// The namespace that owns the host (its traffic claim).
    pub namespace: String,
    /// Terminate TLS: the host's certificate chain (PEM), relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// HTTP routes of a terminated host (HTTP/1.1 and HTTP/2).
    #[serde(default)]
    pub routes: Vec<HttpRouteEntry>,
    /// Pass TLS through, undecrypted, to this service: `<service>.<namespace>:<port>`
    /// (instead of cert, key and routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<String>,
}

/// One HTTP route as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteEntry {
    /// Path prefix starting with `/` (matched at a segment boundary; longest wins).
    pub path_prefix: String,
    /// `<service>.<namespace>:<port>`, in this cluster or any other.
    pub service: String,
}

/// One TCP route as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TcpRouteEntry {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `<service>.<namespace>:<port>`.
    pub service: String,
}

/// The validated ingress; certificate paths are as written (loaded at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSettings {
    /// The TLS listener.
    pub listen: Option<SocketAddr>,
    /// Hosts.
    pub hosts: Vec<HostEntry<(PathBuf, PathBuf)>>,
    /// TCP routes.
    pub tcp: Vec<(SocketAddr, ServiceRef)>,
}

impl IngressSection {
    /// Checks every field, pushing problems that name it.
    pub fn validate(&self, problems: &mut Vec<FieldProblem>) -> IngressSettings {
        let mut push = |field: String, value: String, accepted: &str| {
            problems.push(FieldProblem::new(field, value, accepted));
        };
        if !self.hosts.is_empty() && self.listen.is_none() {
            push(
                "ingress.listen".into(),
                "(none)".into(),
                "a TLS listen address for the hosts",
            );
        }
        if self.hosts.is_empty() && self.tcp.is_empty() {
            push(
                "ingress".into(),
                "no hosts and no tcp routes".into(),
                "at least one [[ingress.hosts]] or [[ingress.tcp]]",
            );
        }
        let mut hosts: Vec<HostEntry<(PathBuf, PathBuf)>> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let at = |f: &str| format!("ingress.hosts[{i}].{f}");
            let pattern = match HostPattern::parse(&h.host) {
                Ok(p) => p,
                Err(e) => {
                    push(at("host"), format!("{:?}", h.host), &e.to_string());
                    continue;
                }
            };
            if let Some(other) = hosts.iter().find(|o| o.pattern == pattern) {
                push(
                    at("host"),
                    format!("{:?}", h.host),
                    &format!(
                        "a host listed once (already served for namespace {})",
                        other.namespace
                    ),
                );
            }
            if isthmus_ca::spiffe::dns_label("namespace", &h.namespace).is_err() {
                push(
                    at("namespace"),
                    format!("{:?}", h.namespace),
                    "a namespace (DNS-1123 label)",
                );
            }
            let service =
                |field: String, text: &str, push: &mut dyn FnMut(String, String, &str)| {
                    ServiceRef::parse(text)
                        .map_err(|e| push(field, format!("{text:?}"), &e.to_string()))
                        .ok()
                };
            let mode = match (&h.passthrough, &h.cert, &h.key) {
                (Some(target), None, None) if h.routes.is_empty() => {
                    match service(at("passthrough"), target, &mut push) {
                        Some(s) => HostMode::Passthrough(s),
                        None => continue,
                    }
                }
                (None, Some(cert), Some(key)) => {
                    if h.routes.is_empty() {
                        push(
                            at("routes"),
                            "[]".into(),
                            "at least one route for a terminated host",
                        );
                    }
                    let mut routes = Vec::new();
                    let mut prefixes = HashSet::new();
                    for (j, r) in h.routes.iter().enumerate() {
                        if !r.path_prefix.starts_with('/') {
                            push(
                                at(&format!("routes[{j}].path_prefix")),
                                format!("{:?}", r.path_prefix),
                                "a path starting with `/`",
                            );
                        } else if !prefixes.insert(&r.path_prefix) {
                            push(
                                at(&format!("routes[{j}].path_prefix")),
                                format!("{:?}", r.path_prefix),
                                "each prefix once per host",
                            );
                        }
                        if let Some(s) =
                            service(at(&format!("routes[{j}].service")), &r.service, &mut push)
                        {
                            routes.push(HttpRoute {
                                path_prefix: r.path_prefix.clone(),
                                service: s,
                            });
                        }
                    }
                    HostMode::Terminate {
                        certificate: (cert.clone(), key.clone()),
                        routes,
                    }
                }
                _ => {
                    push(
                        at("passthrough"),
                        format!(
                            "passthrough {}, cert {}, key {}, {} routes",
                            h.passthrough.is_some(),
                            h.cert.is_some(),
                            h.key.is_some(),
                            h.routes.len()
                        ),
                        "either cert, key and routes (terminate TLS here) or passthrough alone (the service terminates TLS)",
                    );
                    continue;
                }
            };
            hosts.push(HostEntry {
                pattern,
                namespace: h.namespace.clone(),
                mode,
            });
        }
        let mut listens: HashSet<SocketAddr> = self.listen.into_iter().collect();
        let mut tcp = Vec::new();
        for (i, t) in self.tcp.iter().enumerate() {
            if t.listen.port() != 0 && !listens.insert(t.listen) {
                push(
                    format!("ingress.tcp[{i}].listen"),
                    t.listen.to_string(),
                    "an address no other ingress listener uses",
                );
            }
            match ServiceRef::parse(&t.service) {
                Ok(s) => tcp.push((t.listen, s)),
                Err(e) => push(
                    format!("ingress.tcp[{i}].service"),
                    format!("{:?}", t.service),
                    &e.to_string(),
                ),
            }
        }
        IngressSettings {
            listen: self.listen,
            hosts,
            tcp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(String, String)> {
        let section: IngressSection = toml::from_str(text).unwrap();
        let mut found = Vec::new();
        section.validate(&mut found);
        found.into_iter().map(|p| (p.field, p.accepted)).collect()
    }

    #[test]
    fn a_good_section_validates_into_hosts_and_routes() {
        let section: IngressSection = toml::from_str(
            r#"
listen = "127.0.0.1:8443"
[[hosts]]
host = "*.shop.example"
namespace = "shop"
cert = "c.pem"
key = "k.pem"
routes = [{ path_prefix = "/", service = "web.shop:80" }]
[[hosts]]
host = "db.shop.example"
namespace = "shop"
passthrough = "db.shop:5432"
[[tcp]]
listen = "127.0.0.1:5432"
service = "db.shop:5432"
"#,
        )
        .unwrap();
        let mut found = Vec::new();
        let settings = section.validate(&mut found);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(settings.hosts.len(), 2);
        assert_eq!(settings.tcp[0].1.to_string(), "db.shop:5432");
    }

    #[test]
    fn each_bad_field_is_named_with_its_fix() {
        let cases = [
            (
                "[[hosts]]\nhost = \"a.test\"\nnamespace = \"x\"\npassthrough = \"s.x:1\"\n",
                "ingress.listen",
                "TLS listen address",
            ),
            ("listen = \"127.0.0.1:1\"\n", "ingress", "at least one"),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"localhost\"\nnamespace = \"x\"\npassthrough = \"s.x:1\"\n",
                "ingress.hosts[0].host",
                "two or more labels",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a.test\"\nnamespace = \"X!\"\npassthrough = \"s.x:1\"\n",
                "ingress.hosts[0].namespace",
                "namespace",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a.test\"\nnamespace = \"x\"\npassthrough = \"s:1\"\n",
                "ingress.hosts[0].passthrough",
                "<service>.<namespace>:<port>",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a.test\"\nnamespace = \"x\"\ncert = \"c\"\npassthrough = \"s.x:1\"\n",
                "ingress.hosts[0].passthrough",
                "either cert, key and routes",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a.test\"\nnamespace = \"x\"\ncert = \"c\"\nkey = \"k\"\n",
                "ingress.hosts[0].routes",
                "at least one route",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a.test\"\nnamespace = \"x\"\ncert = \"c\"\nkey = \"k\"\nroutes = [{ path_prefix = \"api\", service = \"s.x:1\" }]\n",
                "ingress.hosts[0].routes[0].path_prefix",
                "starting with `/`",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[hosts]]\nhost = \"a.test\"\nnamespace = \"x\"\npassthrough = \"s.x:1\"\n[[hosts]]\nhost = \"A.test\"\nnamespace = \"y\"\npassthrough = \"s.x:1\"\n",
                "ingress.hosts[1].host",
                "listed once",
            ),
            (
                "listen = \"127.0.0.1:1\"\n[[tcp]]\nlisten = \"127.0.0.1:1\"\nservice = \"s.x:1\"\n",
                "ingress.tcp[0].listen",
                "no other ingress listener",
            ),
        ];
        for (text, field, says) in cases {
            let found = problems(text);
            assert!(
                found.iter().any(|(f, a)| f == field && a.contains(says)),
                "{text}: {found:?}"
            );
        }
    }
}
