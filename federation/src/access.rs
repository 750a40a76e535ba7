//! Who may call the admin API, and what each role may do. Deny by default: a caller is
//! known only by a verified client certificate (SPIFFE ID) or a bearer token whose
//! SHA-256 the config holds, and every call names the operation it performs, which the
//! caller's role must grant. The decision is pure; the gRPC and REST layers only
//! extract the credentials and name the operation.
//!
//! | operation                      | platform-admin | namespace-admin      | reader | gateway            |
//! |--------------------------------|----------------|----------------------|--------|--------------------|
//! | reads and watch                | yes            | yes                  | yes    | yes                |
//! | members, clusters, trust bundle| yes            | no                   | no     | no                 |
//! | exports                        | yes            | its namespaces       | no     | its own cluster's  |
//! | policies                       | yes            | governing only its namespaces | no | no          |
//! | claims                         | yes            | its namespaces       | no     | no                 |
//! | register a gateway endpoint    | yes            | no                   | no     | its own cluster's  |
//! | report a gateway's status      | yes            | no                   | no     | its own cluster's  |
//! | the mesh picture and events    | yes            | edges of its namespaces | yes | yes                |

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use isthmus_ca::{Identity, SpiffeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use isthmus_federation_api::ApiError;

/// A role as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    /// Everything.
    PlatformAdmin,
    /// Reads, and writes of exports and policies of the listed namespaces.
    NamespaceAdmin,
    /// Reads and watch only.
    Reader,
}

/// What a caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything (federation nodes and configured platform admins).
    PlatformAdmin,
    /// Reads; exports and policies of these namespaces only.
    NamespaceAdmin(BTreeSet<String>),
    /// Reads and watch only.
    Reader,
    /// A gateway of this cluster: reads, watch, its own cluster's exports and gateway
    /// endpoint (whether the cluster is active is the caller's check: it needs state).
    Gateway(String),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// For messages and logs: the SPIFFE ID or `token:<name>`.
    pub who: String,
    /// Its role.
    pub role: Role,
}

/// What a call does, as far as access is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Any read, including the watch.
    Read,
    /// Membership, clusters, join tokens, revocation, the trust bundle, bootstrap.
    Platform,
    /// Creating, replacing or deleting an export.
    Export {
        /// Its cluster.
        cluster: &'a str,
        /// Its namespace.
        namespace: &'a str,
    },
    /// Creating, replacing or deleting a policy governing these namespaces (the
    /// namespaces of the document written and of the one replaced).
    Policy {
        /// Every namespace the old and new documents name as a destination.
        namespaces: BTreeSet<String>,
    },
    /// Claiming a host for a namespace, or giving up a claim.
    Claim {
        /// The namespace the claim is for.
        namespace: &'a str,
        /// The namespace holding the claim now, if the host is claimed.
        held: Option<&'a str>,
    },
    /// Creating, replacing or deleting a workload registration.
    Registration {
        /// The namespace it gives identities of.
        namespace: &'a str,
        /// The namespace of the entry it replaces or deletes, if one exists.
        held: Option<&'a str>,
    },
    /// Registering a gateway endpoint of a cluster.
    RegisterGateway {
        /// The cluster.
        cluster: &'a str,
    },
    /// Reporting the status a gateway of a cluster sees.
    ReportStatus {
        /// The cluster.
        cluster: &'a str,
    },
}

/// Which kind of call an operation is, before its request is read: the coarse check
/// both faces make right after authentication, so that a caller whose role can never
/// make this kind of call is refused before its request is decoded. The operation then
/// decides on the request itself ([`Principal::may`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Reads and the watch: every role.
    Read,
    /// Members, clusters, join tokens, revocation, the trust bundle: platform admins.
    Platform,
    /// Exports: platform admins, namespace admins, gateways.
    Export,
    /// Policies: platform admins, namespace admins.
    Policy,
    /// Claims: platform admins, namespace admins.
    Claim,
    /// Workload registrations: platform admins, namespace admins.
    Registration,
    /// Gateway endpoints and gateway status reports: platform admins, gateways.
    RegisterGateway,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlatformAdmin => f.write_str("platform-admin"),
            Self::NamespaceAdmin(ns) => {
                let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
                write!(f, "namespace-admin of {}", ns.join(", "))
            }
            Self::Reader => f.write_str("reader"),
            Self::Gateway(cluster) => write!(f, "gateway of cluster {cluster}"),
        }
    }
}

impl Principal {
    /// Refuses a caller whose role can never make a call of this kind (pure).
    pub fn may_attempt(&self, grant: Grant) -> Result<(), ApiError> {
        let allowed = matches!(
            (&self.role, grant),
            (Role::PlatformAdmin, _)
                | (_, Grant::Read)
                | (
                    Role::NamespaceAdmin(_),
                    Grant::Export | Grant::Policy | Grant::Claim | Grant::Registration
                )
                | (Role::Gateway(_), Grant::Export | Grant::RegisterGateway)
        );
        if allowed {
            return Ok(());
        }
        let what = match grant {
            Grant::Read => "read",
            Grant::Platform => "change members, clusters or the trust bundle (platform-admin only)",
            Grant::Export => "change exports",
            Grant::Policy => "change policies",
            Grant::Claim => "claim hosts",
            Grant::Registration => "register workloads",
            Grant::RegisterGateway => "register gateways",
        };
        Err(ApiError::PermissionDenied(format!(
            "{} ({}) may not {what}",
            self.who, self.role
        )))
    }

    /// Refuses `operation` unless this principal's role grants it (pure).
    pub fn may(&self, operation: &Operation<'_>) -> Result<(), ApiError> {
        let denied = |what: String| {
            Err(ApiError::PermissionDenied(format!(
                "{} ({}) may not {what}",
                self.who, self.role
            )))
        };
        match (&self.role, operation) {
            (Role::PlatformAdmin, _) | (_, Operation::Read) => Ok(()),
            (Role::NamespaceAdmin(mine), Operation::Export { namespace, .. }) => {
                if mine.contains(*namespace) {
                    Ok(())
                } else {
                    denied(format!("change exports of namespace {namespace}"))
                }
            }
            (Role::NamespaceAdmin(mine), Operation::Policy { namespaces }) => {
                let foreign: Vec<&str> = namespaces
                    .iter()
                    .filter(|n| !mine.contains(*n))
                    .map(String::as_str)
                    .collect();
                if namespaces.is_empty() {
                    denied("change a policy that governs no namespace of its own".into())
                } else if foreign.is_empty() {
                    Ok(())
                } else {
                    denied(format!(
                        "change a policy governing namespace {} (split the policy so that each governs one admin's namespaces)",
                        foreign.join(", ")
                    ))
                }
            }
            (Role::NamespaceAdmin(mine), Operation::Claim { namespace, held }) => {
                match held.filter(|h| !mine.contains(*h)) {
                    Some(other) => denied(format!("change the claim held by namespace {other}")),
                    None if mine.contains(*namespace) => Ok(()),
                    None => denied(format!("claim hosts for namespace {namespace}")),
                }
            }
            (Role::NamespaceAdmin(mine), Operation::Registration { namespace, held }) => {
                match held.filter(|h| !mine.contains(*h)) {
                    Some(other) => denied(format!("change a registration of namespace {other}")),
                    None if mine.contains(*namespace) => Ok(()),
                    None => denied(format!("register workloads of namespace {namespace}")),
                }
            }
            (Role::Gateway(mine), Operation::Export { cluster, .. })
            | (Role::Gateway(mine), Operation::RegisterGateway { cluster })
            | (Role::Gateway(mine), Operation::ReportStatus { cluster }) => {
                if mine == cluster {
                    Ok(())
                } else {
                    denied(format!(
                        "change cluster {cluster}'s objects (only its own cluster's)"
                    ))
                }
            }
            (_, Operation::Platform) => {
                denied("change members, clusters or the trust bundle (platform-admin only)".into())
            }
            (_, Operation::Export { namespace, .. }) => {
                denied(format!("change exports (of namespace {namespace})"))
            }
            (_, Operation::Policy { .. }) => denied("change policies".into()),
            (_, Operation::Claim { namespace, .. }) => {
                denied(format!("claim hosts (for namespace {namespace})"))
            }
            (_, Operation::Registration { namespace, .. }) => {
                denied(format!("register workloads (of namespace {namespace})"))
            }
            (_, Operation::RegisterGateway { cluster }) => {
                denied(format!("register gateways of cluster {cluster}"))
            }
            (_, Operation::ReportStatus { cluster }) => denied(format!(
                "report the status of cluster {cluster}'s gateways (only its gateways may)"
            )),
        }
    }
}

/// One bearer token the config allows, by the SHA-256 of its text.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// Its name, for logs (`token:<name>`).
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// The role it carries.
    pub role: Role,
}

/// The admin API's identities and tokens, validated from the config.
#[derive(Debug, Clone, Default)]
pub struct AccessControl {
    identities: HashMap<String, Role>,
    ids: Vec<SpiffeId>,
    tokens: Vec<TokenGrant>,
}

/// Prefix of tokens minted by `isthmus federation token create`.
pub const TOKEN_PREFIX: &str = "isthmus-admin-v1.";

/// A new random token (256 bits from the system's CSPRNG) with its SHA-256 in hex, the
/// form `[[admin.tokens]] sha256` takes.
pub fn mint_token() -> Result<(String, String), ApiError> {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| ApiError::Internal("the system random generator failed".into()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&secret));
    let sha256 = hex(&token_sha256(&token));
    Ok((token, sha256))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a token's text.
pub fn token_sha256(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl AccessControl {
    /// Access from configured identities (SPIFFE ID → role) and token grants.
    pub fn new(
        identities: impl IntoIterator<Item = (SpiffeId, Role)>,
        tokens: Vec<TokenGrant>,
    ) -> Self {
        let mut access = Self {
            tokens,
            ..Self::default()
        };
        for (id, role) in identities {
            access.identities.insert(id.as_str().to_owned(), role);
            access.ids.push(id);
        }
        access
    }

    /// The SPIFFE IDs with a configured role (the TLS layer admits them).
    pub fn identities(&self) -> &[SpiffeId] {
        &self.ids
    }

    /// Who is calling, from the verified client certificate's SPIFFE ID and the
    /// `authorization` header's value, if any. A token, when sent, decides; otherwise
    /// the certificate does. Neither, or an unknown one: `Unauthenticated`.
    pub fn principal(
        &self,
        peer: Option<&SpiffeId>,
        authorization: Option<&str>,
    ) -> Result<Principal, ApiError> {
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::Unauthenticated(
                        "the authorization header is not `Bearer <token>`".into(),
                    )
                })?;
            let hash = token_sha256(token);
            // Comparing digests, not tokens: timing reveals at most a prefix of a
            // SHA-256, which does not help to find a token.
            return self
                .tokens
                .iter()
                .find(|t| t.sha256 == hash)
                .map(|t| Principal {
                    who: format!("token:{}", t.name),
                    role: t.role.clone(),
                })
                .ok_or_else(|| {
                    ApiError::Unauthenticated(
                        "the bearer token is not one this federation accepts".into(),
                    )
                });
        }
        let id = peer.ok_or_else(|| {
            ApiError::Unauthenticated(
                "no client certificate and no bearer token; the admin API denies anonymous calls"
                    .into(),
            )
        })?;
        let role = match id.identity() {
            Ok(Identity::FederationNode { .. }) => Role::PlatformAdmin,
            Ok(Identity::Gateway { cluster, .. }) => Role::Gateway(cluster),
            _ => self.identities.get(id.as_str()).cloned().ok_or_else(|| {
                ApiError::Unauthenticated(format!(
                    "{id} has no admin role; give it one in the node's [[admin.identities]]"
                ))
            })?,
        };
        Ok(Principal {
            who: id.to_string(),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    const ALICE: &str = "spiffe://m.test/cluster/ops/ns/admin/sa/alice";
    const BOB: &str = "spiffe://m.test/cluster/ops/ns/shop/sa/bob";
    const CAROL: &str = "spiffe://m.test/cluster/ops/ns/audit/sa/carol";

    fn access() -> AccessControl {
        AccessControl::new(
            [
                (id(ALICE), Role::PlatformAdmin),
                (id(BOB), Role::NamespaceAdmin(["shop".to_owned()].into())),
                (id(CAROL), Role::Reader),
            ],
            vec![TokenGrant {
                name: "ci".into(),
                sha256: token_sha256("s3cret"),
                role: Role::Reader,
            }],
        )
    }

    #[test]
    fn principals_come_from_certificates_or_tokens_and_nothing_else() {
        let a = access();
        let who = |peer: Option<&str>, auth: Option<&str>| {
            a.principal(peer.map(id).as_ref(), auth).map(|p| p.role)
        };
        assert_eq!(who(Some(ALICE), None).unwrap(), Role::PlatformAdmin);
        assert_eq!(who(Some(CAROL), None).unwrap(), Role::Reader);
        assert_eq!(
            who(Some("spiffe://m.test/federation/n1"), None).unwrap(),
            Role::PlatformAdmin
        );
        assert_eq!(
            who(Some("spiffe://m.test/cluster/west/gateway/gw"), None).unwrap(),
            Role::Gateway("west".into())
        );
        assert_eq!(who(None, Some("Bearer s3cret")).unwrap(), Role::Reader);
        // A token decides over the certificate it came with.
        assert_eq!(
            who(Some(ALICE), Some("Bearer s3cret")).unwrap(),
            Role::Reader
        );
        for (peer, auth, says) in [
            (None, None, "no client certificate and no bearer token"),
            (
                None,
                Some("Bearer wrong"),
                "not one this federation accepts",
            ),
            (None, Some("Basic s3cret"), "not `Bearer <token>`"),
            (None, Some("Bearer "), "not `Bearer <token>`"),
            (
                Some("spiffe://m.test/cluster/ops/ns/x/sa/mallory"),
                None,
                "has no admin role",
            ),
        ] {
            match who(peer, auth) {
                Err(ApiError::Unauthenticated(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{peer:?} {auth:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn each_role_is_granted_exactly_its_operations() {
        let p = |role: Role| Principal {
            who: "x".into(),
            role,
        };
        let shop = || Role::NamespaceAdmin(["shop".to_owned()].into());
        let ns = |n: &[&str]| Operation::Policy {
            namespaces: n.iter().map(|s| (*s).to_owned()).collect(),
        };
        let ops = [
            ("read", Operation::Read),
            ("platform", Operation::Platform),
            (
                "export shop of west",
                Operation::Export {
                    cluster: "west",
                    namespace: "shop",
                },
            ),
            (
                "export bank of east",
                Operation::Export {
                    cluster: "east",
                    namespace: "bank",
                },
            ),
            ("policy shop", ns(&["shop"])),
            ("policy shop+bank", ns(&["shop", "bank"])),
            ("policy of nothing", ns(&[])),
            (
                "register west",
                Operation::RegisterGateway { cluster: "west" },
            ),
            ("report west", Operation::ReportStatus { cluster: "west" }),
            ("report east", Operation::ReportStatus { cluster: "east" }),
        ];
        let table: [(Role, [bool; 10]); 4] = [
            (Role::PlatformAdmin, [true; 10]),
            (
                shop(),
                [
                    true, false, true, false, true, false, false, false, false, false,
                ],
            ),
            (
                Role::Reader,
                [
                    true, false, false, false, false, false, false, false, false, false,
                ],
            ),
            (
                Role::Gateway("west".into()),
                [
                    true, false, true, false, false, false, false, true, true, false,
                ],
            ),
        ];
        for (role, expected) in table {
            for ((what, op), want) in ops.iter().zip(expected) {
                let got = p(role.clone()).may(op);
                assert_eq!(got.is_ok(), want, "{role} / {what}: {got:?}");
                if let Err(e) = got {
                    assert!(matches!(e, ApiError::PermissionDenied(_)), "{e:?}");
                }
            }
        }
    }

    #[test]
    fn the_coarse_check_refuses_exactly_the_roles_no_request_of_the_kind_could_pass() {
        let p = |role: Role| Principal {
            who: "x".into(),
            role,
        };
        let roles = [
            Role::PlatformAdmin,
            Role::NamespaceAdmin(["shop".to_owned()].into()),
            Role::Reader,
            Role::Gateway("west".into()),
        ];
        // For each kind, requests that its most favoured caller could make.
        let kinds: [(Grant, Vec<Operation<'_>>); 6] = [
            (Grant::Read, vec![Operation::Read]),
            (Grant::Platform, vec![Operation::Platform]),
            (
                Grant::Export,
                vec![Operation::Export {
                    cluster: "west",
                    namespace: "shop",
                }],
            ),
            (
                Grant::Policy,
                vec![Operation::Policy {
                    namespaces: ["shop".to_owned()].into(),
                }],
            ),
            (
                Grant::Claim,
                vec![Operation::Claim {
                    namespace: "shop",
                    held: None,
                }],
            ),
            (
                Grant::RegisterGateway,
                vec![
                    Operation::RegisterGateway { cluster: "west" },
                    Operation::ReportStatus { cluster: "west" },
                ],
            ),
        ];
        for role in roles {
            for (grant, operations) in &kinds {
                let some = operations.iter().any(|op| p(role.clone()).may(op).is_ok());
                let coarse = p(role.clone()).may_attempt(*grant);
                assert_eq!(coarse.is_ok(), some, "{role} / {grant:?}");
                if let Err(e) = coarse {
                    assert!(matches!(e, ApiError::PermissionDenied(_)), "{e:?}");
                }
            }
        }
    }

    #[test]
    fn minted_tokens_are_accepted_by_their_hash_only() {
        let (token, sha256) = mint_token().unwrap();
        let (other, _) = mint_token().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token != other);
        let mut digest = [0u8; 32];
        for (i, b) in digest.iter_mut().enumerate() {
            *b = u8::from_str_radix(&sha256[2 * i..2 * i + 2], 16).unwrap();
        }
        let a = AccessControl::new(
            [],
            vec![TokenGrant {
                name: "t".into(),
                sha256: digest,
                role: Role::Reader,
            }],
        );
        assert_eq!(
            a.principal(None, Some(&format!("Bearer {token}")))
                .unwrap()
                .who,
            "token:t"
        );
        assert!(a.principal(None, Some(&format!("Bearer {other}"))).is_err());
    }
}
