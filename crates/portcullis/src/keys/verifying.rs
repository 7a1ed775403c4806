//! Verifying keys: the public half of an asymmetric key, or an HMAC secret.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::ParsedPublicKey;
use pkcs1::der::Encode as _;
use zeroize::Zeroizing;

use super::algorithm::{Algorithm, KeyFamily};
use super::error::{Error, Result, rejected};
use super::jwk::{Jwk, b64_member};
use super::params::{PublicParams, der_error};
use super::{oid, rsa_checks};

/// A key that checks signatures of exactly one [`Algorithm`].
///
/// For HMAC algorithms this holds the shared secret, so it is as sensitive as the
/// signing key: its `Debug` output is redacted and it is never published.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    kid: Option<String>,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    // Boxed: the backend's HMAC context is over a kilobyte.
    Hmac(Box<hmac::Key>),
    Public {
        key: ParsedPublicKey,
        params: PublicParams,
    },
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("VerifyingKey");
        d.field("alg", &self.alg).field("kid", &self.kid);
        match &self.inner {
            Inner::Hmac(_) => d.field("secret", &"[redacted]"),
            Inner::Public { params, .. } => d.field("public", params),
        };
        d.finish()
    }
}

impl VerifyingKey {
    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Returns the key with its `kid` replaced.
    #[must_use]
    pub fn with_kid(mut self, kid: Option<String>) -> Self {
        self.kid = kid;
        self
    }

    /// True for HMAC keys, whose verifying key is the shared secret.
    pub fn is_secret(&self) -> bool {
        matches!(self.inner, Inner::Hmac(_))
    }

    /// An HMAC key from a shared secret. The secret must be at least as long as the
    /// hash output (32, 48 or 64 bytes) and should be random.
    pub fn from_hmac_secret(alg: Algorithm, secret: &[u8], kid: Option<String>) -> Result<Self> {
        let Some((hmac_alg, min)) = alg.hmac() else {
            return Err(Error::AlgorithmMismatch {
                alg,
                reason: "not an HMAC algorithm".into(),
            });
        };
        if secret.len() < min {
            return Err(Error::WeakKey(
                format!(
                    "{alg} secret of {} bytes; at least {min} random bytes are required",
                    secret.len()
                )
                .into(),
            ));
        }
        Ok(VerifyingKey {
            alg,
            kid,
            inner: Inner::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))),
        })
    }

    /// Builds a public key from its numbers, applying every strength check.
    pub(crate) fn from_params(
        alg: Algorithm,
        kid: Option<String>,
        params: PublicParams,
    ) -> Result<Self> {
        let mismatch = |reason: &'static str| Error::AlgorithmMismatch {
            alg,
            reason: reason.into(),
        };
        let Some(verification) = alg.verification() else {
            return Err(mismatch("HMAC algorithms have no public key"));
        };
        let key = match (&params, alg.family()) {
            (PublicParams::Rsa { n, e }, KeyFamily::Rsa) => {
                rsa_checks::check_public(n, e)?;
                let der = pkcs1::RsaPublicKey {
                    modulus: pkcs1::UintRef::new(n).map_err(der_error)?,
                    public_exponent: pkcs1::UintRef::new(e).map_err(der_error)?,
                }
                .to_der()
                .map_err(der_error)?;
                ParsedPublicKey::new(verification, der).map_err(rejected)?
            }
            (PublicParams::Ec { x, y }, KeyFamily::Ec) => {
                let len = alg.ec_coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(mismatch(
                        "EC coordinates have the wrong length for the curve",
                    ));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                // The backend checks that the point is on the curve and not the point at
                // infinity (invalid-curve attacks).
                ParsedPublicKey::new(verification, point).map_err(rejected)?
            }
            (PublicParams::Okp { x }, KeyFamily::Okp) => {
                if x.len() != 32 {
                    return Err(mismatch("an Ed25519 public key is 32 bytes"));
                }
                ParsedPublicKey::new(verification, x).map_err(rejected)?
            }
            _ => return Err(mismatch("wrong key type for the algorithm")),
        };
        Ok(VerifyingKey {
            alg,
            kid,
            inner: Inner::Public { key, params },
        })
    }

    /// Imports a JWK (public, or private from which the public half is taken).
    ///
    /// `alg` is required for RSA and `oct` keys; for EC and OKP keys it follows from the
    /// curve and, when present, must agree with it. A JWK whose `use` is not `sig` or
    /// whose `key_ops` lack `verify` is refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        jwk.check_usable_for_verification()?;
        let alg = jwk_algorithm(jwk)?;
        let kid = jwk.kid.clone();
        match alg.family() {
            KeyFamily::Hmac => {
                let k = Zeroizing::new(jwk.bytes("k", &jwk.k)?);
                Self::from_hmac_secret(alg, &k, kid)
            }
            KeyFamily::Rsa => {
                if jwk.oth.is_some() {
                    return Err(Error::InvalidKey(
                        "multi-prime RSA keys are not supported".into(),
                    ));
                }
                let n = jwk.bytes("n", &jwk.n)?;
                let e = jwk.bytes("e", &jwk.e)?;
                let params = PublicParams::Rsa {
                    n: rsa_checks::strip_zeros(&n).to_vec(),
                    e: rsa_checks::strip_zeros(&e).to_vec(),
                };
                Self::from_params(alg, kid, params)
            }
            KeyFamily::Ec => {
                let x = jwk.bytes("x", &jwk.x)?;
                let y = jwk.bytes("y", &jwk.y)?;
                Self::from_params(alg, kid, PublicParams::Ec { x, y })
            }
            KeyFamily::Okp => {
                let x = jwk.bytes("x", &jwk.x)?;
                Self::from_params(alg, kid, PublicParams::Okp { x })
            }
        }
    }

    /// The public JWK, with `use: sig`, `alg` and `kid`. HMAC keys have none: their
    /// secret is never exported through this path.
    pub fn to_jwk(&self) -> Result<Jwk> {
        let Inner::Public { params, .. } = &self.inner else {
            return Err(Error::Unsupported(
                "an HMAC key is a shared secret and has no public JWK".into(),
            ));
        };
        let mut jwk = Jwk::default();
        jwk.kty = self.alg.kty().to_owned();
        jwk.use_ = Some("sig".to_owned());
        jwk.alg = Some(self.alg.as_str().to_owned());
        jwk.kid = self.kid.clone();
        jwk.crv = self.alg.curve().map(str::to_owned);
        match params {
            PublicParams::Rsa { n, e } => {
                jwk.n = b64_member(n);
                jwk.e = b64_member(e);
            }
            PublicParams::Ec { x, y } => {
                jwk.x = b64_member(x);
                jwk.y = b64_member(y);
            }
            PublicParams::Okp { x } => jwk.x = b64_member(x),
        }
        Ok(jwk)
    }

    /// Imports an X.509 SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`) in PEM.
    /// `alg` is required for RSA keys; for EC and Ed25519 keys it follows from the key
    /// and, when given, must agree.
    pub fn from_public_pem(pem: &str, alg: Option<Algorithm>, kid: Option<String>) -> Result<Self> {
        let (label, der) = pem_rfc7468::decode_vec(pem.as_bytes())
            .map_err(|e| Error::Encoding(e.to_string().into()))?;
        if label != "PUBLIC KEY" {
            return Err(Error::Encoding(
                format!("expected a PUBLIC KEY block, found {label:?}").into(),
            ));
        }
        Self::from_public_der(&der, alg, kid)
    }

    /// Imports a DER SubjectPublicKeyInfo; see [`VerifyingKey::from_public_pem`].
    pub fn from_public_der(
        der: &[u8],
        alg: Option<Algorithm>,
        kid: Option<String>,
    ) -> Result<Self> {
        let spki = spki::SubjectPublicKeyInfoRef::try_from(der).map_err(der_error)?;
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::Encoding("public key is not a whole number of bytes".into()))?;
        let (inferred, params) = oid::public_params(&spki.algorithm, key_bytes)?;
        let alg = oid::resolve_alg(inferred, alg)?;
        Self::from_params(alg, kid, params)
    }

    /// The SubjectPublicKeyInfo in PEM. Not available for HMAC keys.
    pub fn to_public_pem(&self) -> Result<String> {
        let Inner::Public { key, .. } = &self.inner else {
            return Err(Error::Unsupported("an HMAC key has no public PEM".into()));
        };
        let der = key.as_der()?;
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, der.as_ref())
            .map_err(|e| Error::Encoding(e.to_string().into()))
    }

    /// Checks `signature` over `message`. HMAC tags are compared in constant time.
    ///
    /// ECDSA signatures must be raw `R || S` of exactly twice the coordinate length;
    /// an all-zero `r` or `s` is refused before the backend sees it (CVE-2022-21449),
    /// and the backend refuses any `r` or `s` outside `[1, n-1]`.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            Inner::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Inner::Public { key, .. } => {
                if self.alg.family() == KeyFamily::Ec {
                    let len = self.alg.ec_coordinate_len();
                    if signature.len() != 2 * len {
                        return false;
                    }
                    let (r, s) = signature.split_at(len);
                    if r.iter().all(|&b| b == 0) || s.iter().all(|&b| b == 0) {
                        return false;
                    }
                }
                key.verify_sig(message, signature).is_ok()
            }
        }
    }
}

/// Determines and checks the algorithm of a JWK (RFC 7518 §6, RFC 8037 §2).
pub(crate) fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm> {
    let declared = match jwk.alg.as_deref() {
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| Error::UnsupportedAlgorithm(name.to_owned()))?,
        ),
        None => None,
    };
    let alg = match jwk.kty.as_str() {
        "EC" => {
            let crv = jwk.crv.as_deref().unwrap_or("");
            let by_curve = Algorithm::for_ec_curve(crv)
                .ok_or_else(|| Error::InvalidKey(format!("unsupported EC curve {crv:?}").into()))?;
            match declared {
                Some(alg) if alg != by_curve => {
                    return Err(Error::AlgorithmMismatch {
                        alg,
                        reason: format!("curve {crv} is for {by_curve}").into(),
                    });
                }
                _ => by_curve,
            }
        }
        "OKP" => {
            let crv = jwk.crv.as_deref().unwrap_or("");
            if crv != "Ed25519" {
                return Err(Error::InvalidKey(
                    format!("unsupported OKP curve {crv:?}").into(),
                ));
            }
            match declared {
                Some(alg) if alg != Algorithm::EdDSA => {
                    return Err(Error::AlgorithmMismatch {
                        alg,
                        reason: "an Ed25519 key is for EdDSA".into(),
                    });
                }
                _ => Algorithm::EdDSA,
            }
        }
        "RSA" | "oct" => declared.ok_or_else(|| {
            Error::Jwk(format!("a {} key needs \"alg\" to fix its algorithm", jwk.kty).into())
        })?,
        other => {
            return Err(Error::InvalidKey(
                format!("unsupported kty {other:?}").into(),
            ));
        }
    };
    if alg.kty() != jwk.kty {
        return Err(Error::AlgorithmMismatch {
            alg,
            reason: format!("kty {:?} cannot be used with {alg}", jwk.kty).into(),
        });
    }
    Ok(alg)
}
