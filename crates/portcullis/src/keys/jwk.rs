//! JSON Web Key and JWK Set documents (RFC 7517, RFC 7518 §6, RFC 8037 §2).
//!
//! [`Jwk`] is the document, member by member; turning it into a usable key (and
//! checking it) is [`super::VerifyingKey::from_jwk`] and [`super::SigningKey::from_jwk`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::{Error, Result};
use crate::{b64, strict_json};

/// One JSON Web Key. Unknown members are ignored. Private members are wiped from
/// memory when the value is dropped, and never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[allow(missing_docs)] // The members are the RFC 7517/7518 names, documented there.
#[non_exhaustive]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    /// Other primes of a multi-prime RSA key; present only so such keys can be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[zeroize(skip)]
    pub oth: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("use", &self.use_)
            .field("key_ops", &self.key_ops)
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("crv", &self.crv)
            .field(
                "private",
                &if self.is_private() {
                    "[redacted]"
                } else {
                    "no"
                },
            )
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// Parses one JWK from JSON. Duplicate member names anywhere are an error.
    pub fn from_json(json: &str) -> Result<Jwk> {
        let map = strict_json::parse_object(json.as_bytes())
            .map_err(|e| Error::Jwk(e.to_string().into()))?;
        Jwk::from_value(Value::Object(map))
    }

    fn from_value(value: Value) -> Result<Jwk> {
        serde_json::from_value(value).map_err(|e| Error::Jwk(e.to_string().into()))
    }

    /// Serializes as compact JSON.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True when the JWK carries private material (`d`, RSA CRT members, or `k`).
    pub fn is_private(&self) -> bool {
        self.d.is_some()
            || self.p.is_some()
            || self.q.is_some()
            || self.dp.is_some()
            || self.dq.is_some()
            || self.qi.is_some()
            || self.k.is_some()
    }

    /// Refuses JWKs whose `use` is not `sig` or whose `key_ops` do not include
    /// `verify` (RFC 7517 §4.2, §4.3).
    pub(crate) fn check_usable_for_verification(&self) -> Result<()> {
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Err(Error::NotForVerification(format!("use is {u:?}").into()));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(Error::NotForVerification(
                "key_ops does not include \"verify\"".into(),
            ));
        }
        Ok(())
    }

    /// Decodes a required base64url member.
    pub(crate) fn bytes(&self, name: &'static str, value: &Option<String>) -> Result<Vec<u8>> {
        let text = value
            .as_deref()
            .ok_or_else(|| Error::Jwk(format!("missing member {name:?}").into()))?;
        b64::decode(text.as_bytes())
            .ok_or_else(|| Error::Jwk(format!("member {name:?} is not strict base64url").into()))
    }
}

/// A JWK Set document (RFC 7517 §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, in document order.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWK Set. Duplicate member names anywhere are an error.
    pub fn from_json(json: &str) -> Result<Jwks> {
        let mut map = strict_json::parse_object(json.as_bytes())
            .map_err(|e| Error::Jwk(e.to_string().into()))?;
        let Some(Value::Array(keys)) = map.remove("keys") else {
            return Err(Error::Jwk("a JWK Set needs a \"keys\" array".into()));
        };
        let keys = keys
            .into_iter()
            .map(Jwk::from_value)
            .collect::<Result<Vec<_>>>()?;
        Ok(Jwks { keys })
    }

    /// Serializes as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Serializes as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

pub(crate) fn b64_member(bytes: &[u8]) -> Option<String> {
    Some(b64::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_private_members() {
        let jwk = Jwk::from_json(r#"{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}"#).unwrap();
        let shown = format!("{jwk:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn duplicate_members_are_rejected() {
        assert!(Jwk::from_json(r#"{"kty":"oct","k":"AA","k":"AQ"}"#).is_err());
        assert!(Jwks::from_json(r#"{"keys":[],"keys":[]}"#).is_err());
    }

    #[test]
    fn use_and_key_ops_limit_verification() {
        let mut jwk = Jwk::default();
        jwk.kty = "EC".into();
        assert!(jwk.check_usable_for_verification().is_ok());
        jwk.use_ = Some("enc".into());
        assert!(jwk.check_usable_for_verification().is_err());
        jwk.use_ = Some("sig".into());
        jwk.key_ops = Some(vec!["sign".into()]);
        assert!(jwk.check_usable_for_verification().is_err());
        jwk.key_ops = Some(vec!["sign".into(), "verify".into()]);
        assert!(jwk.check_usable_for_verification().is_ok());
    }

    #[test]
    fn jwks_without_keys_array_is_rejected() {
        assert!(Jwks::from_json(r#"{}"#).is_err());
        assert!(Jwks::from_json(r#"{"keys":{}}"#).is_err());
        assert!(Jwks::from_json(r#"{"keys":[{"kty":1}]}"#).is_err());
    }
}
