//! Signing keys: private keys and HMAC secrets.

use std::fmt;

use aws_lc_rs::encoding::{AsBigEndian as _, AsDer as _};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use pkcs1::der::Decode as _;
use zeroize::Zeroizing;

use super::algorithm::{Algorithm, KeyFamily};
use super::error::{Error, Result, rejected};
use super::jwk::{Jwk, b64_member};
use super::oid::{self, KeyKind};
use super::params::{PublicParams, der_error, rsa_params_from_pkcs1};
use super::verifying::{VerifyingKey, jwk_algorithm};

/// A key that signs with exactly one [`Algorithm`]. Its `Debug` output is redacted;
/// HMAC secrets are wiped from memory on drop (the backend's own copies of private
/// keys are freed by the backend).
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    inner: Inner,
    /// The base64url header of an access token (`typ: at+jwt`) signed by this key,
    /// made once: every token of the key has the same one.
    access_header: std::sync::OnceLock<String>,
}

enum Inner {
    Hmac {
        // Boxed: the backend's HMAC context is over a kilobyte.
        key: Box<hmac::Key>,
        secret: Zeroizing<Vec<u8>>,
    },
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl SigningKey {
    /// Generates a fresh key: a random secret of the hash size for HMAC, a 2048-bit
    /// modulus for RSA, a key on the algorithm's curve for ECDSA and EdDSA.
    pub fn generate(alg: Algorithm, kid: Option<String>) -> Result<Self> {
        let inner = match alg.family() {
            KeyFamily::Hmac => {
                let (_, len) = alg.hmac().ok_or(Error::Crypto)?;
                let mut secret = Zeroizing::new(vec![0u8; len]);
                SystemRandom::new().fill(&mut secret)?;
                return Self::from_hmac_secret(alg, &secret, kid);
            }
            KeyFamily::Rsa => Inner::Rsa(RsaKeyPair::generate(KeySize::Rsa2048)?),
            KeyFamily::Ec => Inner::Ec(EcdsaKeyPair::generate(
                alg.ecdsa_signing().ok_or(Error::Crypto)?,
            )?),
            KeyFamily::Okp => Inner::Ed(Ed25519KeyPair::generate()?),
        };
        Ok(SigningKey {
            alg,
            kid,
            inner,
            access_header: std::sync::OnceLock::new(),
        })
    }

    /// An HMAC key from a shared secret of at least the hash size.
    pub fn from_hmac_secret(alg: Algorithm, secret: &[u8], kid: Option<String>) -> Result<Self> {
        // The verifying key applies the length check.
        VerifyingKey::from_hmac_secret(alg, secret, None)?;
        let (hmac_alg, _) = alg.hmac().ok_or(Error::Crypto)?;
        Ok(SigningKey {
            alg,
            kid,
            inner: Inner::Hmac {
                key: Box::new(hmac::Key::new(hmac_alg, secret)),
                secret: Zeroizing::new(secret.to_vec()),
            },
            access_header: std::sync::OnceLock::new(),
        })
    }

    /// The algorithm this key signs with.
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
        self.access_header = std::sync::OnceLock::new();
        self
    }

    /// The encoded header of an access token signed by this key.
    pub(crate) fn access_header(&self, make: impl FnOnce() -> String) -> &str {
        self.access_header.get_or_init(make)
    }

    /// Signs `message`. ECDSA signatures are raw `R || S` (RFC 7518 §3.4).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        Ok(match &self.inner {
            Inner::Hmac { key, .. } => hmac::sign(key, message).as_ref().to_vec(),
            Inner::Rsa(kp) => {
                let encoding = self.alg.rsa_encoding().ok_or(Error::Crypto)?;
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(encoding, &SystemRandom::new(), message, &mut sig)?;
                sig
            }
            Inner::Ec(kp) => kp.sign(&SystemRandom::new(), message)?.as_ref().to_vec(),
            Inner::Ed(kp) => kp.sign(message).as_ref().to_vec(),
        })
    }

    /// The matching verifying key, with the same `kid`. Applies the same strength
    /// checks as importing a public key.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        let kid = self.kid.clone();
        match &self.inner {
            Inner::Hmac { secret, .. } => VerifyingKey::from_hmac_secret(self.alg, secret, kid),
            Inner::Rsa(kp) => {
                let params = rsa_params_from_pkcs1(kp.public_key().as_ref())?;
                VerifyingKey::from_params(self.alg, kid, params)
            }
            Inner::Ec(kp) => {
                let point = kp.public_key().as_ref();
                let len = self.alg.ec_coordinate_len();
                if point.len() != 1 + 2 * len {
                    return Err(Error::Crypto);
                }
                let params = PublicParams::Ec {
                    x: point[1..1 + len].to_vec(),
                    y: point[1 + len..].to_vec(),
                };
                VerifyingKey::from_params(self.alg, kid, params)
            }
            Inner::Ed(kp) => {
                let params = PublicParams::Okp {
                    x: kp.public_key().as_ref().to_vec(),
                };
                VerifyingKey::from_params(self.alg, kid, params)
            }
        }
    }

    /// Imports a private JWK. See [`VerifyingKey::from_jwk`] for how the algorithm is
    /// determined; the key must also pass the public-key strength checks.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self> {
        let alg = jwk_algorithm(jwk)?;
        let kid = jwk.kid.clone();
        let inner = match alg.family() {
            KeyFamily::Hmac => {
                let k = Zeroizing::new(jwk.bytes("k", &jwk.k)?);
                return Self::from_hmac_secret(alg, &k, kid);
            }
            KeyFamily::Rsa => {
                if jwk.oth.is_some() {
                    return Err(Error::InvalidKey(
                        "multi-prime RSA keys are not supported".into(),
                    ));
                }
                let n = jwk.bytes("n", &jwk.n)?;
                let e = jwk.bytes("e", &jwk.e)?;
                let secret = |name, v| jwk.bytes(name, v).map(Zeroizing::new);
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: super::rsa_checks::strip_zeros(&n),
                        e: super::rsa_checks::strip_zeros(&e),
                    },
                    d: secret("d", &jwk.d)?,
                    p: secret("p", &jwk.p)?,
                    q: secret("q", &jwk.q)?,
                    dP: secret("dp", &jwk.dp)?,
                    dQ: secret("dq", &jwk.dq)?,
                    qInv: secret("qi", &jwk.qi)?,
                };
                let components = KeyPairComponents {
                    public_key: components.public_key,
                    d: components.d.as_slice(),
                    p: components.p.as_slice(),
                    q: components.q.as_slice(),
                    dP: components.dP.as_slice(),
                    dQ: components.dQ.as_slice(),
                    qInv: components.qInv.as_slice(),
                };
                Inner::Rsa(RsaKeyPair::from_components(&components).map_err(rejected)?)
            }
            KeyFamily::Ec => {
                let len = alg.ec_coordinate_len();
                let d = Zeroizing::new(jwk.bytes("d", &jwk.d)?);
                let x = jwk.bytes("x", &jwk.x)?;
                let y = jwk.bytes("y", &jwk.y)?;
                if d.len() != len || x.len() != len || y.len() != len {
                    return Err(Error::InvalidKey(
                        "EC members have the wrong length for the curve".into(),
                    ));
                }
                let mut point = vec![0x04];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let signing = alg.ecdsa_signing().ok_or(Error::Crypto)?;
                Inner::Ec(
                    EcdsaKeyPair::from_private_key_and_public_key(signing, &d, &point)
                        .map_err(rejected)?,
                )
            }
            KeyFamily::Okp => {
                let d = Zeroizing::new(jwk.bytes("d", &jwk.d)?);
                let x = jwk.bytes("x", &jwk.x)?;
                Inner::Ed(Ed25519KeyPair::from_seed_and_public_key(&d, &x).map_err(rejected)?)
            }
        };
        let key = SigningKey {
            alg,
            kid,
            inner,
            access_header: std::sync::OnceLock::new(),
        };
        key.verifying_key()?;
        Ok(key)
    }

    /// The private JWK, with `use: sig`, `alg` and `kid`. Handle it as a secret.
    pub fn to_jwk(&self) -> Result<Jwk> {
        let mut jwk = match &self.inner {
            Inner::Hmac { secret, .. } => {
                let mut jwk = Jwk::default();
                jwk.kty = "oct".to_owned();
                jwk.k = b64_member(secret);
                jwk
            }
            Inner::Rsa(kp) => {
                let mut jwk = self.verifying_key()?.to_jwk()?;
                let pkcs8 = kp.as_der()?;
                let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_ref()).map_err(der_error)?;
                let rsa = pkcs1::RsaPrivateKey::from_der(info.private_key).map_err(der_error)?;
                jwk.d = b64_member(rsa.private_exponent.as_bytes());
                jwk.p = b64_member(rsa.prime1.as_bytes());
                jwk.q = b64_member(rsa.prime2.as_bytes());
                jwk.dp = b64_member(rsa.exponent1.as_bytes());
                jwk.dq = b64_member(rsa.exponent2.as_bytes());
                jwk.qi = b64_member(rsa.coefficient.as_bytes());
                jwk
            }
            Inner::Ec(kp) => {
                let mut jwk = self.verifying_key()?.to_jwk()?;
                let d = kp.private_key().as_be_bytes()?;
                jwk.d = b64_member(d.as_ref());
                jwk
            }
            Inner::Ed(kp) => {
                let mut jwk = self.verifying_key()?.to_jwk()?;
                let seed = kp.seed()?.as_be_bytes()?;
                jwk.d = b64_member(seed.as_ref());
                jwk
            }
        };
        jwk.use_ = Some("sig".to_owned());
        jwk.alg = Some(self.alg.as_str().to_owned());
        jwk.kid = self.kid.clone();
        Ok(jwk)
    }

    /// Imports an unencrypted PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    /// `alg` is required for RSA keys; for EC and Ed25519 keys it follows from the key
    /// and, when given, must agree.
    pub fn from_pkcs8_pem(pem: &str, alg: Option<Algorithm>, kid: Option<String>) -> Result<Self> {
        let (label, der) = pem_rfc7468::decode_vec(pem.as_bytes())
            .map_err(|e| Error::Encoding(e.to_string().into()))?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(Error::Encoding(
                format!("expected a PRIVATE KEY block, found {label:?}").into(),
            ));
        }
        Self::from_pkcs8_der(&der, alg, kid)
    }

    /// Imports an unencrypted PKCS#8 DER private key; see [`SigningKey::from_pkcs8_pem`].
    pub fn from_pkcs8_der(der: &[u8], alg: Option<Algorithm>, kid: Option<String>) -> Result<Self> {
        let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(der_error)?;
        let kind = oid::key_kind(&info.algorithm)?;
        let alg = oid::resolve_alg(kind.implied_alg(), alg)?;
        let inner = match kind {
            KeyKind::Rsa => Inner::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
            KeyKind::Ec(_) => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(alg.ecdsa_signing().ok_or(Error::Crypto)?, der)
                    .map_err(rejected)?,
            ),
            KeyKind::Ed25519 => {
                Inner::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
            }
        };
        let key = SigningKey {
            alg,
            kid,
            inner,
            access_header: std::sync::OnceLock::new(),
        };
        key.verifying_key()?;
        Ok(key)
    }

    /// The private key as unencrypted PKCS#8 PEM. Not available for HMAC keys.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = match &self.inner {
            Inner::Hmac { .. } => {
                return Err(Error::Unsupported(
                    "an HMAC secret has no PKCS#8 form".into(),
                ));
            }
            Inner::Rsa(kp) => Zeroizing::new(kp.as_der()?.as_ref().to_vec()),
            Inner::Ec(kp) => Zeroizing::new(kp.to_pkcs8v1()?.as_ref().to_vec()),
            Inner::Ed(kp) => Zeroizing::new(kp.to_pkcs8v1()?.as_ref().to_vec()),
        };
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|e| Error::Encoding(e.to_string().into()))
    }
}
