//! Reading the server name from a TLS ClientHello without decrypting anything, and
//! mapping `<svc>.<ns>.svc.clusterset.local` to a service. Pure.
//!
//! Only the first TLS record is read: a ClientHello that does not fit in it (it may be
//! up to 16 KiB) is refused rather than reassembled.

/// The suffix of names that address a service of the cluster set (Kubernetes MCS).
pub const CLUSTERSET_SUFFIX: &str = ".svc.clusterset.local";
/// A TLS record header plus the largest record body.
pub const MAX_CLIENT_HELLO: usize = 5 + 16 * 1024;

/// Why no server name could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SniError {
    /// The first bytes are not a TLS handshake record.
    #[error("not a TLS handshake record")]
    NotTls,
    /// The handshake message is not a ClientHello.
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    /// The ClientHello is cut short or malformed.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The ClientHello is longer than its first record.
    #[error("the ClientHello spans several TLS records")]
    Fragmented,
    /// There is no server_name extension with a host name.
    #[error("the ClientHello carries no server name (SNI)")]
    NoServerName,
}

/// The SNI host name from the start of a TLS stream: `Ok(None)` until the first record is
/// complete.
pub fn server_name(buf: &[u8]) -> Result<Option<String>, SniError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != 22 {
        return Err(SniError::NotTls);
    }
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[1] != 3 {
        return Err(SniError::NotTls);
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if record_len > 16 * 1024 + 2048 {
        return Err(SniError::Malformed("record too long"));
    }
    let Some(record) = buf.get(5..5 + record_len) else {
        return Ok(None);
    };
    let mut r = Cursor(record);
    if r.u8()? != 1 {
        return Err(SniError::NotClientHello);
    }
    let hello_len = r.u24()?;
    if hello_len > r.0.len() {
        return Err(SniError::Fragmented);
    }
    let mut hello = Cursor(r.take(hello_len)?);
    hello.take(2 + 32)?; // legacy_version, random
    let session = usize::from(hello.u8()?);
    hello.take(session)?;
    let suites = usize::from(hello.u16()?);
    hello.take(suites)?;
    let compression = usize::from(hello.u8()?);
    hello.take(compression)?;
    if hello.0.is_empty() {
        return Err(SniError::NoServerName);
    }
    let extensions_len = usize::from(hello.u16()?);
    let mut extensions = Cursor(hello.take(extensions_len)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = usize::from(extensions.u16()?);
        let body = extensions.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Cursor(body);
        let list_len = usize::from(list.u16()?);
        let mut names = Cursor(list.take(list_len)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let len = usize::from(names.u16()?);
            let name = names.take(len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name)
                    .map_err(|_| SniError::Malformed("server name is not ASCII"))?;
                if name.is_empty() || !name.is_ascii() {
                    return Err(SniError::Malformed("server name is not ASCII"));
                }
                return Ok(Some(name.to_ascii_lowercase()));
            }
        }
    }
    Err(SniError::NoServerName)
}

/// `(namespace, service)` of a `<svc>.<ns>.svc.clusterset.local` name (case-insensitive,
/// a trailing dot allowed); `None` for any other name.
pub fn clusterset_service(host: &str) -> Option<(String, String)> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let rest = host.strip_suffix(CLUSTERSET_SUFFIX)?;
    let (service, namespace) = rest.split_once('.')?;
    let valid = |s: &str| isthmus_ca::spiffe::dns_label("name", s).is_ok();
    (valid(service) && valid(namespace)).then(|| (namespace.to_owned(), service.to_owned()))
}

/// A service (and maybe its port) named by a clusterset name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClustersetTarget {
    /// The namespace.
    pub namespace: String,
    /// The service.
    pub service: String,
    /// The port, when the name starts with one (`<port>.<svc>.<ns>.svc.clusterset.local`).
    pub port: Option<u16>,
}

/// The target of `<svc>.<ns>.svc.clusterset.local` or of
/// `<port>.<svc>.<ns>.svc.clusterset.local` (port 1-65535); `None` for any other name.
pub fn clusterset_target(host: &str) -> Option<ClustersetTarget> {
    if let Some((namespace, service)) = clusterset_service(host) {
        return Some(ClustersetTarget {
            namespace,
            service,
            port: None,
        });
    }
    let (port, rest) = host.split_once('.')?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && !port.starts_with('0'))?;
    let (namespace, service) = clusterset_service(rest)?;
    Some(ClustersetTarget {
        namespace,
        service,
        port: Some(port),
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SniError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, SniError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Result<usize, SniError> {
        let b = self.take(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello, as rustls writes it, for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        use std::sync::Arc;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_name_from_a_real_client_hello() {
        let hello = client_hello("Reviews.Shop.svc.clusterset.local");
        assert_eq!(
            server_name(&hello).unwrap().as_deref(),
            Some("reviews.shop.svc.clusterset.local")
        );
    }

    #[test]
    fn asks_for_more_until_the_record_is_complete() {
        let hello = client_hello("a.b.svc.clusterset.local");
        for end in 0..hello.len() {
            assert_eq!(server_name(&hello[..end]), Ok(None), "prefix {end}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_client_hello() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Err(SniError::NotTls));
        assert_eq!(
            server_name(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Err(SniError::NotClientHello)
        );
        assert_eq!(
            server_name(&[22, 3, 1, 0, 4, 1, 0, 0, 9]),
            Err(SniError::Fragmented)
        );
        let hello = client_hello("a.b.svc.clusterset.local");
        let mut cut = hello.clone();
        cut[4] -= 10; // shorter record than the ClientHello inside claims
        cut.truncate(cut.len() - 10);
        assert!(server_name(&cut).is_err());
    }

    #[test]
    fn maps_clusterset_names_to_services() {
        assert_eq!(
            clusterset_service("reviews.shop.svc.clusterset.local"),
            Some(("shop".into(), "reviews".into()))
        );
        assert_eq!(
            clusterset_service("Echo.Demo.svc.clusterset.local."),
            Some(("demo".into(), "echo".into()))
        );
        for other in [
            "reviews.shop.svc.cluster.local",
            "shop.svc.clusterset.local",
            "a.b.c.svc.clusterset.local",
            "-x.shop.svc.clusterset.local",
            "example.com",
        ] {
            assert_eq!(clusterset_service(other), None, "{other}");
        }
    }

    #[test]
    fn a_clusterset_name_may_start_with_the_port() {
        let target = |port| ClustersetTarget {
            namespace: "shop".into(),
            service: "api".into(),
            port,
        };
        assert_eq!(
            clusterset_target("api.shop.svc.clusterset.local"),
            Some(target(None))
        );
        assert_eq!(
            clusterset_target("8080.api.shop.svc.clusterset.local"),
            Some(target(Some(8080)))
        );
        for other in [
            "0.api.shop.svc.clusterset.local",
            "08080.api.shop.svc.clusterset.local",
            "65536.api.shop.svc.clusterset.local",
            "x.8080.api.shop.svc.clusterset.local",
            "8080.shop.svc.cluster.local",
        ] {
            assert_eq!(clusterset_target(other), None, "{other}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let hello = client_hello("a.b.svc.clusterset.local");
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = hello.clone();
            let i = (state as usize) % bytes.len();
            bytes[i] = (state >> 24) as u8;
            let _ = server_name(&bytes);
        }
    }
}
