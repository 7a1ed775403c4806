//! Object identifiers of the key types we read from PKCS#8 and SubjectPublicKeyInfo.

use spki::{AlgorithmIdentifierRef, ObjectIdentifier};

use super::algorithm::{Algorithm, KeyFamily};
use super::error::{Error, Result};
use super::params::{PublicParams, rsa_params_from_pkcs1};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// The key type an AlgorithmIdentifier names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    Ec(Algorithm),
    Ed25519,
}

pub(crate) fn key_kind(id: &AlgorithmIdentifierRef<'_>) -> Result<KeyKind> {
    if id.oid == RSA_ENCRYPTION {
        Ok(KeyKind::Rsa)
    } else if id.oid == ED25519 {
        Ok(KeyKind::Ed25519)
    } else if id.oid == EC_PUBLIC_KEY {
        let curve = id
            .parameters_oid()
            .map_err(|_| Error::Encoding("EC key without a named curve".into()))?;
        let alg = if curve == SECP256R1 {
            Algorithm::ES256
        } else if curve == SECP384R1 {
            Algorithm::ES384
        } else if curve == SECP521R1 {
            Algorithm::ES512
        } else {
            return Err(Error::InvalidKey(
                format!("unsupported EC curve {curve}").into(),
            ));
        };
        Ok(KeyKind::Ec(alg))
    } else {
        Err(Error::InvalidKey(
            format!("unsupported key type {}", id.oid).into(),
        ))
    }
}

impl KeyKind {
    /// The algorithm the key type implies, if it implies one (RSA keys serve six).
    pub(crate) fn implied_alg(self) -> Option<Algorithm> {
        match self {
            KeyKind::Rsa => None,
            KeyKind::Ec(alg) => Some(alg),
            KeyKind::Ed25519 => Some(Algorithm::EdDSA),
        }
    }
}

/// Reads the public numbers out of a SubjectPublicKeyInfo's key bits.
pub(crate) fn public_params(
    id: &AlgorithmIdentifierRef<'_>,
    key: &[u8],
) -> Result<(Option<Algorithm>, PublicParams)> {
    let kind = key_kind(id)?;
    let params = match kind {
        KeyKind::Rsa => rsa_params_from_pkcs1(key)?,
        KeyKind::Ec(alg) => {
            let len = alg.ec_coordinate_len();
            if key.len() != 1 + 2 * len || key[0] != 0x04 {
                return Err(Error::InvalidKey(
                    "EC public key must be an uncompressed point".into(),
                ));
            }
            PublicParams::Ec {
                x: key[1..1 + len].to_vec(),
                y: key[1 + len..].to_vec(),
            }
        }
        KeyKind::Ed25519 => PublicParams::Okp { x: key.to_vec() },
    };
    Ok((kind.implied_alg(), params))
}

/// Combines the algorithm a key implies with the one the caller asked for.
pub(crate) fn resolve_alg(
    implied: Option<Algorithm>,
    given: Option<Algorithm>,
) -> Result<Algorithm> {
    match (implied, given) {
        (Some(implied), None) => Ok(implied),
        (Some(implied), Some(given)) if implied == given => Ok(given),
        (Some(implied), Some(given)) => Err(Error::AlgorithmMismatch {
            alg: given,
            reason: format!("the key is for {implied}").into(),
        }),
        (None, Some(given)) if given.family() == KeyFamily::Rsa => Ok(given),
        (None, Some(given)) => Err(Error::AlgorithmMismatch {
            alg: given,
            reason: "the key is an RSA key".into(),
        }),
        (None, None) => Err(Error::InvalidKey(
            "an RSA key serves several algorithms: say which one (RS256 … PS512)".into(),
        )),
    }
}
