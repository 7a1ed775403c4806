//! JWT claims (RFC 7519 §4), parsed strictly.

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{Error, Reason};
use crate::strict_json;

/// 9999-12-31T23:59:59Z: no NumericDate after it is accepted, whatever the policy.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// The claims of a verified token. Registered claims are typed; everything else is in
/// `extra`, checked for duplicate names like the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Claims {
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject (non-empty when present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiry, seconds since the epoch (a fractional value is rounded down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not before, seconds since the epoch (a fractional value is rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch (a fractional value is rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Session (refresh family) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Space-separated scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `aud` claim: one string or an array of strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "api"`.
    One(String),
    /// `"aud": ["api", "other"]`.
    Many(Vec<String>),
}

impl Audience {
    /// True when `aud` is or contains `audience` (exact comparison).
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

impl Claims {
    /// True when the claim `name` is present (registered or not).
    pub fn has(&self, name: &str) -> bool {
        match name {
            "iss" => self.iss.is_some(),
            "sub" => self.sub.is_some(),
            "aud" => self.aud.is_some(),
            "exp" => self.exp.is_some(),
            "nbf" => self.nbf.is_some(),
            "iat" => self.iat.is_some(),
            "jti" => self.jti.is_some(),
            "sid" => self.sid.is_some(),
            "scope" => self.scope.is_some(),
            other => self.extra.contains_key(other),
        }
    }

    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// Parses a decoded claims set: one strict JSON object, typed registered claims.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Claims, Error> {
        let mut map = strict_json::parse_object(bytes)
            .map_err(|e| Error::new(Reason::Malformed, format!("claims: {e}")))?;
        let sub = string(&mut map, "sub")?;
        if sub.as_deref() == Some("") {
            return Err(invalid("sub", "must not be empty"));
        }
        Ok(Claims {
            iss: string(&mut map, "iss")?,
            sub,
            aud: audience(&mut map)?,
            exp: date(&mut map, "exp", Round::Down)?,
            nbf: date(&mut map, "nbf", Round::Up)?,
            iat: date(&mut map, "iat", Round::Up)?,
            jti: string(&mut map, "jti")?,
            sid: string(&mut map, "sid")?,
            scope: string(&mut map, "scope")?,
            extra: map,
        })
    }
}

fn invalid(claim: &str, why: &str) -> Error {
    Error::new(Reason::InvalidClaim, format!("claim {claim:?} {why}"))
}

fn string(map: &mut Map<String, Value>, name: &str) -> Result<Option<String>, Error> {
    match map.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

fn audience(map: &mut Map<String, Value>) -> Result<Option<Audience>, Error> {
    match map.remove("aud") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Audience::One(s))),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(invalid("aud", "must be a string or an array of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|all| Some(Audience::Many(all))),
        Some(_) => Err(invalid("aud", "must be a string or an array of strings")),
    }
}

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, never a string, boolean or
/// null; not negative, finite, and no later than [`MAX_NUMERIC_DATE`]. Fractions are
/// rounded in the direction that shortens validity.
fn date(map: &mut Map<String, Value>, name: &str, round: Round) -> Result<Option<u64>, Error> {
    let Some(value) = map.remove(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(invalid(name, "must be a number (NumericDate)"));
    };
    let secs = if let Some(u) = n.as_u64() {
        u
    } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
        if f > MAX_NUMERIC_DATE as f64 {
            return Err(invalid(name, "is after the year 9999"));
        }
        // In range, so the cast is exact for the integral part.
        match round {
            Round::Down => f.floor() as u64,
            Round::Up => f.ceil() as u64,
        }
    } else {
        return Err(invalid(name, "must be a non-negative number"));
    };
    if secs > MAX_NUMERIC_DATE {
        return Err(invalid(name, "is after the year 9999"));
    }
    Ok(Some(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(json: &str) -> Reason {
        Claims::parse(json.as_bytes()).unwrap_err().reason()
    }

    #[test]
    fn registered_claims_are_typed() {
        let c = Claims::parse(
            br#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":1.5,"iat":2,"jti":"j","sid":"x","scope":"a b","custom":{"k":[1]}}"#,
        )
        .unwrap();
        assert_eq!(c.iss.as_deref(), Some("i"));
        assert!(c.aud.as_ref().unwrap().contains("b"));
        assert_eq!((c.exp, c.nbf, c.iat), (Some(10), Some(2), Some(2)));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert!(c.has("custom") && !c.has("other"));
    }

    #[test]
    fn numeric_dates_must_be_plain_numbers() {
        for bad in [
            r#"{"exp":"100"}"#,
            r#"{"exp":true}"#,
            r#"{"exp":null}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":-0.5}"#,
            r#"{"exp":[1]}"#,
            r#"{"exp":18446744073709551615}"#,
            r#"{"exp":253402300800}"#,
            r#"{"exp":1e300}"#,
            r#"{"iat":"1"}"#,
            r#"{"nbf":{}}"#,
        ] {
            assert_eq!(reason(bad), Reason::InvalidClaim, "{bad}");
        }
        // Beyond f64 range is not even JSON we accept.
        assert_eq!(reason(r#"{"exp":1e400}"#), Reason::Malformed);
        assert!(Claims::parse(br#"{"exp":253402300799}"#).is_ok());
    }

    #[test]
    fn fractions_round_toward_shorter_validity() {
        let c = Claims::parse(br#"{"exp":100.9,"nbf":50.1,"iat":50.1}"#).unwrap();
        assert_eq!((c.exp, c.nbf, c.iat), (Some(100), Some(51), Some(51)));
    }

    #[test]
    fn string_claims_must_be_strings() {
        assert_eq!(reason(r#"{"iss":["a"]}"#), Reason::InvalidClaim);
        assert_eq!(reason(r#"{"sub":1}"#), Reason::InvalidClaim);
        assert_eq!(reason(r#"{"sub":""}"#), Reason::InvalidClaim);
        assert_eq!(reason(r#"{"aud":1}"#), Reason::InvalidClaim);
        assert_eq!(reason(r#"{"aud":["a",1]}"#), Reason::InvalidClaim);
        assert_eq!(reason(r#"{"scope":["a"]}"#), Reason::InvalidClaim);
    }

    #[test]
    fn duplicate_claims_are_malformed_including_custom_ones() {
        assert_eq!(reason(r#"{"exp":1,"exp":2}"#), Reason::Malformed);
        assert_eq!(reason(r#"{"admin":false,"admin":true}"#), Reason::Malformed);
        assert_eq!(reason(r#"{"a":{"b":1,"b":2}}"#), Reason::Malformed);
    }

    #[test]
    fn non_objects_are_malformed() {
        assert_eq!(reason("[]"), Reason::Malformed);
        assert_eq!(reason(""), Reason::Malformed);
        assert_eq!(reason("foo"), Reason::Malformed);
    }
}
