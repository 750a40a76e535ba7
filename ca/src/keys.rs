//! Key algorithms a CA or leaf key may use, and key generation.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, SignatureAlgorithm};

use crate::error::CaError;

/// The key algorithms Isthmus generates keys for.
///
/// RSA is accepted in imported operator roots but never generated: `ring` cannot
/// generate RSA keys, and ECDSA P-256 is smaller and faster in every handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order shown to users.
    pub const ALL: [KeyAlgorithm; 3] = [Self::EcdsaP256, Self::EcdsaP384, Self::Ed25519];

    /// The name used in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Ed25519 => "ed25519",
        }
    }

    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// Generates a fresh key pair from the system's secure random source.
    pub fn generate(self) -> Result<KeyPair, CaError> {
        KeyPair::generate_for(self.signature_algorithm()).map_err(|source| CaError::Crypto {
            action: "generating a key",
            source,
        })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown key algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key algorithm {0:?}; expected one of ecdsa-p256, ecdsa-p384, ed25519")]
pub struct UnknownKeyAlgorithm(pub String);

impl FromStr for KeyAlgorithm {
    type Err = UnknownKeyAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.name() == s)
            .ok_or_else(|| UnknownKeyAlgorithm(s.to_owned()))
    }
}

/// Parses a PKCS#8 private key ("BEGIN PRIVATE KEY") from PEM.
pub fn key_from_pem(pem: &str) -> Result<KeyPair, CaError> {
    KeyPair::from_pem(pem).map_err(|_| CaError::BadKey(
        "not a PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA private key in PEM (\"BEGIN PRIVATE KEY\"); \
         convert other forms with `openssl pkcs8 -topk8 -nocrypt`"
            .to_owned(),
    ))
}
