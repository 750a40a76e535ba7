//! The provider's settings: where the federation is and how to authenticate, from the
//! `provider "isthmus"` block or the environment (`ISTHMUS_SERVERS`, `ISTHMUS_BUNDLE`,
//! `ISTHMUS_CERT`, `ISTHMUS_KEY`, `ISTHMUS_TOKEN`). Checked at configure, used to make
//! a client that connects lazily: nothing is dialled until a resource needs it.

use std::path::PathBuf;

use isthmus_federation_api::client::{ClientTls, FederationClient, bundle_from_pem};

use crate::diag::{Diag, top};
use crate::schema::{Attr, Block, Type};
use crate::value::Value;

/// The `provider "isthmus"` block.
pub(crate) fn schema() -> Block {
    Block {
        description: "An Isthmus federation's admin API (gRPC).",
        attrs: vec![
            Attr::optional(
                "servers",
                Type::List(Box::new(Type::String)),
                "host:port of federation nodes' admin gRPC listeners, tried in order (or ISTHMUS_SERVERS, comma-separated)",
            ),
            Attr::optional(
                "bundle",
                Type::String,
                "PEM file of the federation's trust bundle (or ISTHMUS_BUNDLE)",
            ),
            Attr::optional(
                "cert",
                Type::String,
                "PEM file of an admin client certificate chain (or ISTHMUS_CERT)",
            ),
            Attr::optional("key", Type::String, "PEM file of its key (or ISTHMUS_KEY)"),
            Attr::optional(
                "token",
                Type::String,
                "an admin bearer token instead of a certificate (or ISTHMUS_TOKEN)",
            )
            .sensitive(),
        ],
        blocks: vec![],
    }
}

/// The settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Node addresses.
    pub(crate) servers: Vec<String>,
    /// The bundle file.
    pub(crate) bundle: PathBuf,
    /// Certificate and key files.
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    /// A bearer token.
    pub(crate) token: Option<String>,
}

impl Settings {
    /// Reads the block, falling back on the environment, and names what is missing.
    pub(crate) fn read(
        config: &Value,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Vec<Diag>> {
        let text = |name: &str, var: &str| {
            config
                .get(name)
                .as_str()
                .map(str::to_owned)
                .or_else(|| env(var).filter(|v| !v.is_empty()))
        };
        let mut problems = Vec::new();
        if config.has_unknown() {
            problems.push(Diag::error(
                "provider settings unknown at plan",
                "the isthmus provider's settings must be known before apply: use values that do not depend on resources",
            ));
            return Err(problems);
        }
        let mut servers: Vec<String> = config
            .get("servers")
            .items()
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        if servers.is_empty() {
            servers = env("ISTHMUS_SERVERS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if servers.is_empty() {
            problems.push(Diag::attr(
                "servers",
                "no federation node",
                "set servers = [\"host:port\", …] (the nodes' admin gRPC listeners) or ISTHMUS_SERVERS",
            ));
        }
        let bundle = text("bundle", "ISTHMUS_BUNDLE");
        if bundle.is_none() {
            problems.push(Diag::attr(
                "bundle",
                "no trust bundle",
                "set bundle to the federation's bundle PEM file, or ISTHMUS_BUNDLE",
            ));
        }
        let (cert, key) = (text("cert", "ISTHMUS_CERT"), text("key", "ISTHMUS_KEY"));
        let token = text("token", "ISTHMUS_TOKEN");
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => {
                problems.push(Diag::attr(
                    "key",
                    "a certificate without its key",
                    "set key (or ISTHMUS_KEY) with cert",
                ));
                None
            }
            (None, Some(_)) => {
                problems.push(Diag::attr(
                    "cert",
                    "a key without its certificate",
                    "set cert (or ISTHMUS_CERT) with key",
                ));
                None
            }
        };
        if identity.is_none() && token.is_none() && problems.is_empty() {
            problems.push(Diag::attr(
                "token",
                "no credentials",
                "set cert and key (an admin certificate) or token (an admin bearer token), or ISTHMUS_CERT/ISTHMUS_KEY or ISTHMUS_TOKEN",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            servers,
            bundle: PathBuf::from(bundle.unwrap_or_default()),
            identity,
            token,
        })
    }

    /// A client of the federation (it dials on its first call).
    pub(crate) fn client(&self) -> Result<FederationClient, Vec<Diag>> {
        let tls = match &self.identity {
            Some((cert, key)) => {
                ClientTls::from_files((&self.bundle, "bundle"), (cert, "cert"), (key, "key"))
                    .map_err(|e| {
                        vec![Diag::attr(
                            "cert",
                            "the admin certificate cannot be used",
                            e.to_string(),
                        )]
                    })?
            }
            None => {
                let pem = std::fs::read_to_string(&self.bundle).map_err(|e| {
                    vec![Diag::attr(
                        "bundle",
                        "the trust bundle cannot be read",
                        format!("{}: {e}", self.bundle.display()),
                    )]
                })?;
                let bundle = bundle_from_pem(&pem, &self.bundle)
                    .map_err(|e| vec![Diag::attr("bundle", "not a trust bundle", e.to_string())])?;
                ClientTls::anonymous(bundle).map_err(|e| {
                    vec![Diag::attr(
                        "bundle",
                        "the trust bundle cannot be used",
                        e.to_string(),
                    )]
                })?
            }
        };
        let mut client = FederationClient::new(&self.servers, tls).map_err(|e| {
            vec![Diag::at(
                top("servers"),
                "bad federation address",
                e.to_string(),
            )]
        })?;
        if let Some(token) = &self.token {
            client = client
                .with_token(token)
                .map_err(|e| vec![Diag::attr("token", "not a usable token", e.to_string())])?;
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_block_or_the_environment_and_name_what_is_missing() {
        let none = |_: &str| None;
        let problems = Settings::read(&Value::Map(Default::default()), none).unwrap_err();
        let named: Vec<_> = problems.iter().map(|d| d.path.clone()).collect();
        assert_eq!(named, vec![top("servers"), top("bundle")]);
        let env = |k: &str| match k {
            "ISTHMUS_SERVERS" => Some("a:1, b:2".to_owned()),
            "ISTHMUS_BUNDLE" => Some("/b.pem".to_owned()),
            "ISTHMUS_TOKEN" => Some("t".to_owned()),
            _ => None,
        };
        let s = Settings::read(&Value::Map(Default::default()), env).unwrap();
        assert_eq!(s.servers, ["a:1", "b:2"]);
        assert_eq!(s.token.as_deref(), Some("t"));
        let half = Value::Map(
            [("cert".to_owned(), Value::string("/c.pem"))]
                .into_iter()
                .collect(),
        );
        let problems = Settings::read(&half, env).unwrap_err();
        assert_eq!(problems[0].path, top("key"));
    }
}
