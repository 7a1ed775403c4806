//! The public numbers of a key, as read from DER or a JWK and kept for JWK export:
//! shared by the key types and the SPKI reader, which each depend on it alone.

use std::borrow::Cow;
use std::fmt;

use pkcs1::der::Decode as _;

use super::error::{Error, Result};

/// The public numbers, kept for JWK export.
#[derive(Clone, Debug)]
pub(crate) enum PublicParams {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { x: Vec<u8>, y: Vec<u8> },
    Okp { x: Vec<u8> },
}

pub(crate) fn der_error(e: impl fmt::Display) -> Error {
    Error::Encoding(Cow::Owned(e.to_string()))
}

/// Reads `n` and `e` from a PKCS#1 RSAPublicKey.
pub(crate) fn rsa_params_from_pkcs1(der: &[u8]) -> Result<PublicParams> {
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(der_error)?;
    Ok(PublicParams::Rsa {
        n: key.modulus.as_bytes().to_vec(),
        e: key.public_exponent.as_bytes().to_vec(),
    })
}
