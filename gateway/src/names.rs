//! The names a gateway's DNS answers (pure): `<service>.<namespace>.svc.clusterset.local`
//! (the Kubernetes Multi-Cluster Services form) for addresses, and
//! `_<port>._<protocol>.<service>.<namespace>.svc.clusterset.local` for SRV records.
//! Everything under `clusterset.local` that does not have one of these shapes is
//! answered NXDOMAIN; everything outside it is someone else's (forwarded or refused, by
//! config).

/// The zone the gateway is authoritative for.
pub const ZONE: &str = "clusterset.local";

/// What a query name means to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameKind {
    /// `<service>.<namespace>.svc.clusterset.local`.
    Service {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
    },
    /// `_<port>._<protocol>.<service>.<namespace>.svc.clusterset.local`.
    Srv {
        /// Port name (as exported).
        port: String,
        /// `tcp` (the only transport a gateway carries).
        protocol: String,
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
    },
    /// Inside the zone but no name the gateway knows the shape of: NXDOMAIN.
    OtherInZone,
    /// Not in the zone at all: forwarded or refused, by config.
    OutsideZone,
}

/// Classifies a query name (absolute or not, any letter case).
pub fn classify(name: &str) -> NameKind {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let Some(rest) = name.strip_suffix(ZONE) else {
        return NameKind::OutsideZone;
    };
    if !(rest.is_empty() || rest.ends_with('.')) {
        // `notclusterset.local`: a different name that merely ends the same way.
        return NameKind::OutsideZone;
    }
    let labels: Vec<&str> = rest
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .collect();
    let valid = |label: &str| isthmus_ca::spiffe::dns_label("name", label).is_ok();
    match labels.as_slice() {
        [service, namespace, "svc"] if valid(service) && valid(namespace) => NameKind::Service {
            namespace: (*namespace).to_owned(),
            service: (*service).to_owned(),
        },
        [port, protocol, service, namespace, "svc"] => {
            match (port.strip_prefix('_'), protocol.strip_prefix('_')) {
                (Some(port), Some(protocol))
                    if valid(port) && valid(service) && valid(namespace) =>
                {
                    NameKind::Srv {
                        port: port.to_owned(),
                        protocol: protocol.to_owned(),
                        namespace: (*namespace).to_owned(),
                        service: (*service).to_owned(),
                    }
                }
                _ => NameKind::OtherInZone,
            }
        }
        _ => NameKind::OtherInZone,
    }
}

/// The address name of a service.
pub fn service_name(namespace: &str, service: &str) -> String {
    format!("{service}.{namespace}.svc.{ZONE}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, service: &str) -> NameKind {
        NameKind::Service {
            namespace: namespace.into(),
            service: service.into(),
        }
    }

    #[test]
    fn service_names_in_any_case_with_or_without_the_root_dot() {
        for name in [
            "echo.demo.svc.clusterset.local",
            "echo.demo.svc.clusterset.local.",
            "ECHO.Demo.SVC.ClusterSet.Local.",
        ] {
            assert_eq!(classify(name), service("demo", "echo"), "{name}");
        }
        assert_eq!(
            service_name("demo", "echo"),
            "echo.demo.svc.clusterset.local."
        );
        assert_eq!(
            classify(&service_name("shop", "reviews")),
            service("shop", "reviews")
        );
    }

    #[test]
    fn srv_names_carry_port_and_protocol() {
        assert_eq!(
            classify("_http._tcp.echo.demo.svc.clusterset.local."),
            NameKind::Srv {
                port: "http".into(),
                protocol: "tcp".into(),
                namespace: "demo".into(),
                service: "echo".into(),
            }
        );
        assert_eq!(
            classify("http.tcp.echo.demo.svc.clusterset.local"),
            NameKind::OtherInZone
        );
    }

    #[test]
    fn other_shapes_in_the_zone_are_nxdomain_and_the_rest_is_outside() {
        for name in [
            "clusterset.local",
            "svc.clusterset.local",
            "demo.svc.clusterset.local",
            "a.b.echo.demo.svc.clusterset.local",
            "echo.demo.pod.clusterset.local",
            "-bad.demo.svc.clusterset.local",
            "echo..svc.clusterset.local",
        ] {
            assert_eq!(classify(name), NameKind::OtherInZone, "{name}");
        }
        for name in [
            "example.com.",
            "echo.demo.svc.cluster.local",
            "notclusterset.local",
            "local",
            "",
        ] {
            assert_eq!(classify(name), NameKind::OutsideZone, "{name}");
        }
    }
}
