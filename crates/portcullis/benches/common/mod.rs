//! Shared setup of the token benchmarks: one key per algorithm and the same token for
//! portcullis, the bare aws-lc-rs primitive and the jsonwebtoken crate.
#![allow(dead_code)] // Each bench target uses a different part.

pub mod paired;

use std::time::Duration;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair,
};
use portcullis::jwt::{TokenBuilder, Validation, Verifier};
use portcullis::keys::{Algorithm, KeyFamily, KeySet, SigningKey};
use serde::Deserialize;

pub const ISS: &str = "https://issuer.example";
pub const AUD: &str = "api";

#[derive(Deserialize)]
pub struct JwtClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    sid: String,
    scope: String,
}

pub enum RawSigner {
    Hmac(hmac::Key),
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub enum RawVerifier {
    Hmac(hmac::Key),
    Public(ParsedPublicKey),
}

pub struct Case {
    pub key: SigningKey,
    pub token: String,
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
    pub verifier: std::sync::Arc<Verifier>,
    pub cached: std::sync::Arc<Verifier>,
    pub raw_signer: RawSigner,
    pub raw_verifier: RawVerifier,
    pub jwt: Option<(
        jsonwebtoken::EncodingKey,
        jsonwebtoken::DecodingKey,
        jsonwebtoken::Validation,
        jsonwebtoken::Header,
    )>,
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

pub fn builder() -> TokenBuilder {
    TokenBuilder::access_token(ISS, AUD)
        .subject("user-1234")
        .session_id("sid-5678")
        .scope("read write")
        .expires_in(Duration::from_secs(3600))
}

pub fn case(alg: Algorithm) -> Case {
    let key = SigningKey::generate(alg, Some("k1".into())).expect("key");
    let token = builder().sign(&key).expect("token");
    let (input, sig) = token.rsplit_once('.').expect("three segments");
    let validation = || {
        Validation::builder()
            .issuer(ISS)
            .audience(AUD)
            .build()
            .expect("policy")
    };
    let keys = || KeySet::new(vec![key.verifying_key().expect("public")]).expect("set");
    let verifier = std::sync::Arc::new(Verifier::new(keys(), validation()).with_cache(0, 0));
    let cached = std::sync::Arc::new(Verifier::new(keys(), validation()));

    let (raw_signer, raw_verifier, jwt_keys) = match alg.family() {
        KeyFamily::Hmac => {
            let secret = b64_decode(key.to_jwk().expect("jwk").k.as_deref().expect("k"));
            let h = match alg {
                Algorithm::HS256 => hmac::HMAC_SHA256,
                Algorithm::HS384 => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            (
                RawSigner::Hmac(hmac::Key::new(h, &secret)),
                RawVerifier::Hmac(hmac::Key::new(h, &secret)),
                Some((
                    jsonwebtoken::EncodingKey::from_secret(&secret).expect("jwt hmac"),
                    jsonwebtoken::DecodingKey::from_secret(&secret).expect("jwt hmac"),
                )),
            )
        }
        family => {
            let pem = key.to_pkcs8_pem().expect("pem");
            let public_pem = key
                .verifying_key()
                .expect("public")
                .to_public_pem()
                .expect("pem");
            let (_, der) = pem_rfc7468::decode_vec(pem.as_bytes()).expect("pem");
            let (signer, public_bytes, verification): (
                RawSigner,
                Vec<u8>,
                &'static dyn signature::VerificationAlgorithm,
            ) = match family {
                KeyFamily::Rsa => {
                    let kp = RsaKeyPair::from_pkcs8(&der).expect("rsa");
                    let public = kp.public_key().as_ref().to_vec();
                    let (enc, ver): (
                        &'static dyn signature::RsaEncoding,
                        &'static dyn signature::VerificationAlgorithm,
                    ) = match alg {
                        Algorithm::RS256 => (
                            &signature::RSA_PKCS1_SHA256,
                            &signature::RSA_PKCS1_2048_8192_SHA256,
                        ),
                        Algorithm::RS384 => (
                            &signature::RSA_PKCS1_SHA384,
                            &signature::RSA_PKCS1_2048_8192_SHA384,
                        ),
                        Algorithm::RS512 => (
                            &signature::RSA_PKCS1_SHA512,
                            &signature::RSA_PKCS1_2048_8192_SHA512,
                        ),
                        Algorithm::PS256 => (
                            &signature::RSA_PSS_SHA256,
                            &signature::RSA_PSS_2048_8192_SHA256,
                        ),
                        Algorithm::PS384 => (
                            &signature::RSA_PSS_SHA384,
                            &signature::RSA_PSS_2048_8192_SHA384,
                        ),
                        _ => (
                            &signature::RSA_PSS_SHA512,
                            &signature::RSA_PSS_2048_8192_SHA512,
                        ),
                    };
                    (RawSigner::Rsa(kp, enc), public, ver)
                }
                KeyFamily::Ec => {
                    let (sign_alg, ver): (
                        &'static signature::EcdsaSigningAlgorithm,
                        &'static dyn signature::VerificationAlgorithm,
                    ) = match alg {
                        Algorithm::ES256 => (
                            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                            &signature::ECDSA_P256_SHA256_FIXED,
                        ),
                        Algorithm::ES384 => (
                            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                            &signature::ECDSA_P384_SHA384_FIXED,
                        ),
                        _ => (
                            &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                            &signature::ECDSA_P521_SHA512_FIXED,
                        ),
                    };
                    let kp = EcdsaKeyPair::from_pkcs8(sign_alg, &der).expect("ec");
                    let public = kp.public_key().as_ref().to_vec();
                    (RawSigner::Ec(kp), public, ver)
                }
                _ => {
                    let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).expect("ed");
                    let public = kp.public_key().as_ref().to_vec();
                    (RawSigner::Ed(kp), public, &signature::ED25519)
                }
            };
            let parsed = ParsedPublicKey::new(verification, public_bytes).expect("public key");
            let jwt_keys = match family {
                _ if alg == Algorithm::ES512 => None,
                KeyFamily::Rsa => Some((
                    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("jwt rsa"),
                    jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes())
                        .expect("jwt rsa"),
                )),
                KeyFamily::Ec => Some((
                    jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("jwt ec"),
                    jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).expect("jwt ec"),
                )),
                _ => Some((
                    jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).expect("jwt ed"),
                    jsonwebtoken::DecodingKey::from_ed_pem(public_pem.as_bytes()).expect("jwt ed"),
                )),
            };
            (signer, RawVerifier::Public(parsed), jwt_keys)
        }
    };
    let jwt = jwt_keys.map(|(enc, dec)| {
        let jalg: jsonwebtoken::Algorithm = alg.as_str().parse().expect("jsonwebtoken alg");
        let mut v = jsonwebtoken::Validation::new(jalg);
        v.set_issuer(&[ISS]);
        v.set_audience(&[AUD]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        v.leeway = 30;
        let mut header = jsonwebtoken::Header::new(jalg);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        (enc, dec, v, header)
    });
    Case {
        signing_input: input.as_bytes().to_vec(),
        signature: b64_decode(sig),
        token,
        key,
        verifier,
        cached,
        raw_signer,
        raw_verifier,
        jwt,
    }
}

impl Case {
    pub fn verify_raw(&self) -> bool {
        match &self.raw_verifier {
            RawVerifier::Hmac(k) => hmac::verify(k, &self.signing_input, &self.signature).is_ok(),
            RawVerifier::Public(k) => k.verify_sig(&self.signing_input, &self.signature).is_ok(),
        }
    }

    pub fn sign_raw(&self, rng: &SystemRandom) -> Vec<u8> {
        match &self.raw_signer {
            RawSigner::Hmac(k) => hmac::sign(k, &self.signing_input).as_ref().to_vec(),
            RawSigner::Rsa(kp, enc) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(*enc, rng, &self.signing_input, &mut sig)
                    .expect("sign");
                sig
            }
            RawSigner::Ec(kp) => kp
                .sign(rng, &self.signing_input)
                .expect("sign")
                .as_ref()
                .to_vec(),
            RawSigner::Ed(kp) => kp.sign(&self.signing_input).as_ref().to_vec(),
        }
    }

    /// The claims of the token, for jsonwebtoken's encoder.
    pub fn claims_json(&self) -> serde_json::Value {
        let payload = self.token.split('.').nth(1).expect("payload");
        serde_json::from_slice(&b64_decode(payload)).expect("claims")
    }
}
