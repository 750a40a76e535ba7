//! Join tokens: what `isthmus federation cluster create` prints and an enrolling gateway
//! presents. Pure: encoding, parsing and the secret's hash.
//!
//! A token is `isthmus-join-v1.` followed by unpadded base64url of a small JSON object:
//! the cluster, the token id, a 256-bit secret, the SHA-256 fingerprint of the root that
//! federation nodes chain to, and the enrollment addresses. The fingerprint lets the
//! gateway authenticate the federation before it sends the secret (as kubeadm's
//! `discovery-token-ca-cert-hash` does); the federation keeps only the secret's hash.

use serde::{Deserialize, Serialize};

/// The prefix that marks a join token and its format version.
pub const PREFIX: &str = "isthmus-join-v1.";

/// A join token's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinToken {
    /// The cluster this token enrolls.
    pub cluster: String,
    /// The federation's trust domain (the cluster's CSR names it).
    pub trust_domain: String,
    /// The token's id (16 hex digits).
    pub id: String,
    /// The secret (64 hex digits).
    pub secret: String,
    /// SHA-256 (hex) of the DER of the root that federation nodes chain to.
    pub root_sha256: String,
    /// `host:port` of federation enrollment listeners.
    pub enroll: Vec<String>,
}

/// Why a token string is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a usable join token: {0}; copy the whole line `isthmus federation cluster create` printed"
)]
pub struct TokenError(String);

impl JoinToken {
    /// A new token for `cluster` with fresh random id and secret.
    pub fn generate(
        cluster: &str,
        trust_domain: &str,
        root_sha256: &str,
        enroll: Vec<String>,
    ) -> Result<Self, TokenError> {
        Ok(Self {
            cluster: cluster.to_owned(),
            trust_domain: trust_domain.to_owned(),
            id: random_hex(8)?,
            secret: random_hex(32)?,
            root_sha256: root_sha256.to_owned(),
            enroll,
        })
    }

    /// The printable form.
    pub fn encode(&self) -> String {
        // A struct of strings always serialises.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", data_encoding::BASE64URL_NOPAD.encode(&json))
    }

    /// Parses the printable form (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| TokenError(format!("it does not start with {PREFIX:?}")))?;
        let json = data_encoding::BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|e| TokenError(format!("its body is not base64url ({e})")))?;
        let token: Self = serde_json::from_slice(&json)
            .map_err(|e| TokenError(format!("its body is not a token ({e})")))?;
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&token.id, 16) || !hex(&token.secret, 64) || !hex(&token.root_sha256, 64) {
            return Err(TokenError(
                "its id, secret or root fingerprint is malformed".into(),
            ));
        }
        if token.enroll.is_empty() {
            return Err(TokenError("it names no enrollment address".into()));
        }
        Ok(token)
    }

    /// SHA-256 (hex) of the secret, as the federation stores it.
    pub fn secret_sha256(&self) -> String {
        secret_sha256(&self.secret)
    }
}

/// SHA-256 (hex) of a token secret.
pub fn secret_sha256(secret: &str) -> String {
    isthmus_ca::fingerprint(secret.as_bytes())
}

fn random_hex(bytes: usize) -> Result<String, TokenError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| TokenError("the system's random source failed".into()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        JoinToken::generate(
            "west",
            "mesh.example",
            &"ab".repeat(32),
            vec!["127.0.0.1:7400".into()],
        )
        .expect("random")
    }

    #[test]
    fn round_trips_and_each_token_is_fresh() {
        let t = token();
        assert_eq!(
            JoinToken::parse(&format!("  {}\n", t.encode())),
            Ok(t.clone())
        );
        assert_ne!(token().secret, t.secret);
        assert_eq!(t.secret_sha256().len(), 64);
        assert_ne!(t.secret_sha256(), t.secret);
    }

    #[test]
    fn malformed_tokens_say_why() {
        let good = token().encode();
        let cases = [
            ("hello".to_owned(), "does not start with"),
            (format!("{PREFIX}!!!"), "not base64url"),
            (
                format!("{PREFIX}{}", data_encoding::BASE64URL_NOPAD.encode(b"{}")),
                "not a token",
            ),
            (good[..good.len() - 8].to_owned(), "token"),
        ];
        for (text, want) in cases {
            let err = JoinToken::parse(&text).expect_err(&text).to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.contains("copy the whole line"), "{err}");
        }
        let mut short = token();
        short.secret.truncate(10);
        assert!(JoinToken::parse(&short.encode()).is_err());
        let mut nowhere = token();
        nowhere.enroll.clear();
        assert!(JoinToken::parse(&nowhere.encode()).is_err());
    }
}
