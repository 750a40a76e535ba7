//! The ingress route table, pure: which host entry a TLS server name (SNI) or HTTP
//! `Host` selects (exact names before wildcards, the longest wildcard first), and which
//! route a request path selects (the longest matching prefix).

use std::fmt;

pub use isthmus_federation_api::claims::HostPattern;

/// A service port anywhere in the mesh: `<service>.<namespace>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port.
    pub port: u16,
}

/// Why a text is not a service reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not <service>.<namespace>:<port>, for example api.shop:8080")]
pub struct NotAServiceRef(pub String);

impl ServiceRef {
    /// Parses `<service>.<namespace>:<port>`.
    pub fn parse(text: &str) -> Result<Self, NotAServiceRef> {
        let bad = || NotAServiceRef(text.to_owned());
        let (name_ns, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let (name, namespace) = name_ns.split_once('.').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        for part in [name, namespace] {
            isthmus_ca::spiffe::dns_label("name", part).map_err(|_| bad())?;
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}:{}", self.name, self.namespace, self.port)
    }
}

/// One HTTP route of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Path prefix, starting with `/`.
    pub path_prefix: String,
    /// Where matching requests go.
    pub service: ServiceRef,
}

/// What the ingress does with a host's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMode<C> {
    /// Terminate TLS with the host's certificate `C`, then route HTTP by path.
    Terminate {
        /// The certificate (paths as configured, or the loaded key).
        certificate: C,
        /// Routes; the longest matching prefix wins.
        routes: Vec<HttpRoute>,
    },
    /// Pass the TLS bytes through to a service that terminates them itself.
    Passthrough(ServiceRef),
}

/// One host the ingress serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry<C> {
    /// Which names it answers.
    pub pattern: HostPattern,
    /// The namespace that owns the host (traffic claims).
    pub namespace: String,
    /// Terminate or pass through.
    pub mode: HostMode<C>,
}

/// The hosts of one ingress, in order of precedence.
#[derive(Debug, Clone)]
pub struct HostTable<C> {
    hosts: Vec<HostEntry<C>>,
}

impl<C> HostTable<C> {
    /// A table of `hosts`: exact names before wildcards, longer wildcards first.
    pub fn new(mut hosts: Vec<HostEntry<C>>) -> Self {
        hosts.sort_by_key(|h| match &h.pattern {
            HostPattern::Exact(_) => (0, 0),
            HostPattern::Wildcard(s) => (1, usize::MAX - s.len()),
        });
        Self { hosts }
    }

    /// The entry serving `host` (a server name or `Host` header; port and case ignored).
    pub fn host(&self, host: &str) -> Option<&HostEntry<C>> {
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().find(|h| h.pattern.matches(&host))
    }

    /// Every entry.
    pub fn entries(&self) -> &[HostEntry<C>] {
        &self.hosts
    }
}

/// The route for `path` among `routes`: the longest prefix that matches at a segment
/// boundary (`/api` matches `/api` and `/api/x`, not `/apix`; `/` matches everything).
pub fn route<'a>(routes: &'a [HttpRoute], path: &str) -> Option<&'a HttpRoute> {
    routes
        .iter()
        .filter(|r| {
            let p = r.path_prefix.as_str();
            path.starts_with(p)
                && (p.ends_with('/')
                    || path.len() == p.len()
                    || matches!(path.as_bytes().get(p.len()), Some(b'/' | b'?')))
        })
        .max_by_key(|r| r.path_prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(s: &str) -> ServiceRef {
        ServiceRef::parse(s).unwrap()
    }

    fn entry(pattern: &str, ns: &str) -> HostEntry<()> {
        HostEntry {
            pattern: HostPattern::parse(pattern).unwrap(),
            namespace: ns.into(),
            mode: HostMode::Passthrough(svc("x.y:1")),
        }
    }

    #[test]
    fn service_refs_parse_or_say_what_they_should_be() {
        assert_eq!(
            svc("api.shop:8080"),
            ServiceRef {
                namespace: "shop".into(),
                name: "api".into(),
                port: 8080
            }
        );
        for bad in [
            "api.shop",
            "api:80",
            "api.shop:0",
            "API.shop:80",
            "api.shop:x",
            ".shop:80",
        ] {
            let e = ServiceRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("<service>.<namespace>:<port>"), "{bad}: {e}");
        }
    }

    #[test]
    fn exact_hosts_win_over_wildcards_and_wildcards_take_one_label() {
        let t = HostTable::new(vec![
            entry("*.example.test", "any"),
            entry("*.shop.example.test", "shop-any"),
            entry("www.shop.example.test", "web"),
        ]);
        let ns = |h: &str| t.host(h).map(|e| e.namespace.as_str());
        assert_eq!(ns("www.shop.example.test"), Some("web"));
        assert_eq!(
            ns("WWW.Shop.Example.Test:8443"),
            Some("web"),
            "case and port"
        );
        assert_eq!(ns("api.shop.example.test"), Some("shop-any"));
        assert_eq!(ns("shop.example.test"), Some("any"));
        assert_eq!(ns("a.b.example.test"), None, "a wildcard is one label");
        assert_eq!(ns("example.test"), None);
        assert_eq!(ns("other.test"), None);
    }

    #[test]
    fn host_patterns_are_checked_and_overlaps_found() {
        for bad in ["localhost", "*.com", "a..b", "-a.b", "*.*.b.c", "a_b.c"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("*.example.test").overlaps(&p("api.example.test")));
        assert!(p("api.example.test").overlaps(&p("*.example.test")));
        assert!(!p("*.example.test").overlaps(&p("a.b.example.test")));
        assert!(!p("*.a.test").overlaps(&p("*.b.test")));
        assert!(p("A.test").overlaps(&p("a.test")));
    }

    #[test]
    fn the_longest_prefix_at_a_segment_boundary_wins() {
        let routes = vec![
            HttpRoute {
                path_prefix: "/".into(),
                service: svc("web.shop:80"),
            },
            HttpRoute {
                path_prefix: "/api".into(),
                service: svc("api.shop:80"),
            },
            HttpRoute {
                path_prefix: "/api/v2/".into(),
                service: svc("v2.shop:80"),
            },
        ];
        let to = |path: &str| route(&routes, path).map(|r| r.service.name.as_str());
        assert_eq!(to("/"), Some("web"));
        assert_eq!(to("/index.html"), Some("web"));
        assert_eq!(to("/api"), Some("api"));
        assert_eq!(to("/api?x=1"), Some("api"));
        assert_eq!(to("/api/v1/items"), Some("api"));
        assert_eq!(to("/apix"), Some("web"), "not at a segment boundary");
        assert_eq!(to("/api/v2/items"), Some("v2"));
        assert_eq!(route(&routes[1..], "/other"), None);
    }
}
