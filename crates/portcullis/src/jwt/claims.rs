//! JWT claims (RFC 7519 §4), parsed strictly.

use std::fmt;

use serde::Serialize;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{Error, Reason};
use crate::clock::UnixTime;
use crate::flat_json::{self, Flat};
use crate::strict_json::{Str, StrictValue, truncate, truncate_to};

/// 9999-12-31T23:59:59Z: no NumericDate after it is accepted, whatever the policy.
pub const MAX_NUMERIC_DATE: UnixTime = 253_402_300_799;

/// The claims of a verified token. Registered claims are typed; everything else is in
/// `extra`, checked for duplicate names like the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
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
    pub exp: Option<UnixTime>,
    /// Not before, seconds since the epoch (a fractional value is rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<UnixTime>,
    /// Issued at, seconds since the epoch (a fractional value is rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<UnixTime>,
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
#[non_exhaustive]
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
    ///
    /// Registered claims are read straight off the parser into their fields; the other
    /// claims go into `extra`. Duplicate names are refused either way. (For tests: the
    /// verifier keeps the other claims compact, `parse_split`.)
    #[cfg(test)]
    pub(crate) fn parse(bytes: &[u8]) -> Result<Claims, Error> {
        Self::parse_split(bytes).map(|(claims, others)| claims.with_others(&others))
    }

    /// Parses a decoded claims set as `parse` does, but keeps the other claims apart, in
    /// their compact form: the returned `Claims` has an empty `extra` (which allocates
    /// nothing).
    pub(crate) fn parse_split(bytes: &[u8]) -> Result<(Claims, OtherClaims), Error> {
        if let Some(raw) = flat_json::parse(bytes).and_then(RawClaims::from_flat) {
            return raw.into_claims();
        }
        Self::parse_full(bytes)
    }

    /// These registered claims with `others` as `extra`.
    pub(crate) fn with_others(mut self, others: &OtherClaims) -> Claims {
        self.extra = others
            .0
            .iter()
            .map(|(name, value)| (String::from(&**name), value.clone()))
            .collect();
        self
    }

    /// The full strict parser, for every input the fast path declines.
    fn parse_full(bytes: &[u8]) -> Result<(Claims, OtherClaims), Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw = de::Deserializer::deserialize_map(&mut de, RawClaimsVisitor)
            .and_then(|raw| de.end().map(|()| raw))
            .map_err(|e| {
                let message = e.to_string();
                Error::new(
                    Reason::Malformed,
                    format!("claims: {}", truncate_to(&message, 120)),
                )
            })?;
        raw.into_claims()
    }
}

/// The claims outside the registered ones, sorted by name (as `Claims::extra` orders
/// them), without duplicates.
///
/// Why not the `Map` of `Claims::extra`: a `BTreeMap` allocates a node for eleven
/// members however few there are (632 bytes, measured with heaptrack: half of what a
/// cached token weighed), and a verified token is kept for as long as the cache keeps
/// it. A sorted slice of `(name, value)` costs 48 bytes a member and is searched by
/// halving, which for the handful of claims a token carries is as fast.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct OtherClaims(Box<[(Box<str>, Value)]>);

impl OtherClaims {
    /// The claim `name`, when the token has it.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(other, _)| (**other).cmp(name))
            .ok()
            .map(|at| &self.0[at].1)
    }

    /// Every claim, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (&**name, value))
    }

    /// `members` sorted by name, or the first name given twice.
    fn from_members(mut members: Vec<(String, Value)>) -> Result<OtherClaims, String> {
        // Sorted once, then neighbours compared: a signed token with thousands of
        // members costs n log n, not n² (the parser saw each name once on the way).
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(pair[0].0.clone());
        }
        Ok(OtherClaims(
            members
                .into_iter()
                .map(|(name, value)| (name.into_boxed_str(), value))
                .collect(),
        ))
    }
}

/// Registered claims as parsed, before their types are checked: a wrong type is kept
/// as [`Raw::Mismatch`] so that it becomes `invalid_claim` rather than an opaque
/// parse error.
#[derive(Default)]
struct RawClaims {
    iss: Option<Raw>,
    sub: Option<Raw>,
    aud: Option<Raw>,
    exp: Option<Raw>,
    nbf: Option<Raw>,
    iat: Option<Raw>,
    jti: Option<Raw>,
    sid: Option<Raw>,
    scope: Option<Raw>,
    extra: Vec<(String, Value)>,
}

/// A registered claim's value, read straight off the parser without building a
/// `serde_json::Value` (twice as fast for a typical claims set, measured).
enum Raw {
    Str(String),
    Strings(Vec<String>),
    Unsigned(u64),
    Float(f64),
    /// Any other JSON type (or a negative integer, or an array that is not all
    /// strings): the claim is invalid whatever it is.
    Mismatch,
}

impl RawClaims {
    /// The field of a registered claim, or `None` for any other name.
    fn slot(&mut self, name: &str) -> Option<&mut Option<Raw>> {
        Some(match name {
            "iss" => &mut self.iss,
            "sub" => &mut self.sub,
            "aud" => &mut self.aud,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            "iat" => &mut self.iat,
            "jti" => &mut self.jti,
            "sid" => &mut self.sid,
            "scope" => &mut self.scope,
            _ => return None,
        })
    }

    /// The same result the full parser gives for this input (see `flat_json`), or
    /// `None` on a duplicate name, which the full parser then reports.
    fn from_flat(members: Vec<(&str, Flat<'_>)>) -> Option<RawClaims> {
        let mut raw = RawClaims::default();
        for (name, value) in members {
            let slot = match raw.slot(name) {
                Some(slot) => slot,
                None => {
                    let other = name;
                    let value = match value {
                        Flat::Str(s) => Value::String(s.to_owned()),
                        Flat::UInt(u) => Value::from(u),
                        Flat::Bool(b) => Value::Bool(b),
                        Flat::Null => Value::Null,
                        Flat::StrArray(all) => Value::Array(
                            all.into_iter()
                                .map(|s| Value::String(s.to_owned()))
                                .collect(),
                        ),
                    };
                    // A duplicate is found by `into_claims`; the full parser then
                    // names it.
                    raw.extra.push((other.to_owned(), value));
                    continue;
                }
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(match value {
                Flat::Str(s) => Raw::Str(s.to_owned()),
                Flat::UInt(u) => Raw::Unsigned(u),
                Flat::Bool(_) | Flat::Null => Raw::Mismatch,
                Flat::StrArray(all) => Raw::Strings(all.into_iter().map(str::to_owned).collect()),
            });
        }
        // A name given twice: the full parser says which. (Sorted here, the list is
        // found sorted again by `into_claims`, which costs a pass.)
        raw.extra.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if raw.extra.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return None;
        }
        Some(raw)
    }

    fn into_claims(self) -> Result<(Claims, OtherClaims), Error> {
        let others = OtherClaims::from_members(self.extra).map_err(|name| {
            Error::new(
                Reason::Malformed,
                format!("claims: duplicate member name {:?}", truncate(&name)),
            )
        })?;
        let sub = string(self.sub, "sub")?;
        if sub.as_deref() == Some("") {
            return Err(invalid("sub", "must not be empty"));
        }
        let claims = Claims {
            iss: string(self.iss, "iss")?,
            sub,
            aud: audience(self.aud)?,
            exp: date(self.exp, "exp", Round::Down)?,
            nbf: date(self.nbf, "nbf", Round::Up)?,
            iat: date(self.iat, "iat", Round::Up)?,
            jti: string(self.jti, "jti")?,
            sid: string(self.sid, "sid")?,
            scope: string(self.scope, "scope")?,
            extra: Map::new(),
        };
        Ok((claims, others))
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Unsigned(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(u64::try_from(v).map_or(Raw::Mismatch, Raw::Unsigned))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Raw, E> {
        Ok(Raw::Mismatch)
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Mismatch)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        // Only `aud` may be an array, and only of strings. Anything else is consumed
        // (serde_json bounds its depth) and refused.
        let mut all = Vec::new();
        let mut mismatch = false;
        while let Some(item) = seq.next_element_seed(StrictValue::NESTED)? {
            match item {
                Value::String(s) if !mismatch => all.push(s),
                _ => mismatch = true,
            }
        }
        Ok(if mismatch {
            Raw::Mismatch
        } else {
            Raw::Strings(all)
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map
            .next_entry_seed(PhantomData::<IgnoredAny>, StrictValue::NESTED)?
            .is_some()
        {}
        Ok(Raw::Mismatch)
    }
}

impl<'de> DeserializeSeed<'de> for RawVisitor {
    type Value = Raw;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(self)
    }
}

struct RawClaimsVisitor;

impl<'de> Visitor<'de> for RawClaimsVisitor {
    type Value = RawClaims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawClaims, A::Error> {
        let mut raw = RawClaims::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            let slot = match raw.slot(&key.0) {
                Some(slot) => slot,
                None => {
                    let value = map.next_value_seed(StrictValue::MEMBER)?;
                    raw.extra.push((key.0.into_owned(), value));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(duplicate(&key.0));
            }
            *slot = Some(map.next_value_seed(RawVisitor)?);
        }
        Ok(raw)
    }
}

fn duplicate<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("duplicate member name {:?}", truncate(name)))
}

fn invalid(claim: &str, why: &str) -> Error {
    Error::new(Reason::InvalidClaim, format!("claim {claim:?} {why}"))
}

fn string(value: Option<Raw>, name: &str) -> Result<Option<String>, Error> {
    match value {
        None => Ok(None),
        Some(Raw::Str(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

fn audience(value: Option<Raw>) -> Result<Option<Audience>, Error> {
    match value {
        None => Ok(None),
        Some(Raw::Str(s)) => Ok(Some(Audience::One(s))),
        Some(Raw::Strings(all)) => Ok(Some(Audience::Many(all))),
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
fn date(value: Option<Raw>, name: &str, round: Round) -> Result<Option<UnixTime>, Error> {
    let secs = match value {
        None => return Ok(None),
        Some(Raw::Unsigned(u)) => {
            UnixTime::try_from(u).map_err(|_| invalid(name, "is after the year 9999"))?
        }
        Some(Raw::Float(f)) if f.is_finite() && f >= 0.0 => {
            if f > MAX_NUMERIC_DATE as f64 {
                return Err(invalid(name, "is after the year 9999"));
            }
            // In range, so the cast is exact for the integral part.
            match round {
                Round::Down => f.floor() as UnixTime,
                Round::Up => f.ceil() as UnixTime,
            }
        }
        Some(Raw::Float(_)) => return Err(invalid(name, "must be a non-negative number")),
        Some(_) => return Err(invalid(name, "must be a number (NumericDate)")),
    };
    if secs > MAX_NUMERIC_DATE {
        return Err(invalid(name, "is after the year 9999"));
    }
    Ok(Some(secs))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// JSON text of the shapes tokens carry, with the deviations the fast path must
    /// decline: escapes, control characters, fractions, signs, leading zeros, big
    /// numbers, nesting, duplicates, odd whitespace, trailing data.
    pub(crate) fn json_object_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("iss"),
            Just("sub"),
            Just("aud"),
            Just("exp"),
            Just("nbf"),
            Just("iat"),
            Just("jti"),
            Just("sid"),
            Just("scope"),
            Just("alg"),
            Just("kid"),
            Just("typ"),
            Just("cty"),
            Just("crit"),
            Just("x"),
            Just("y"),
            Just("a\\u0062"),
        ]
        .prop_map(|k| format!("\"{k}\""));
        let string = prop_oneof![
            "[a-z:/.+ ]{0,12}",
            Just("\\n".to_owned()),
            Just("\\u00e9".to_owned()),
            Just("\u{e9}t\u{e9}".to_owned()),
            Just("\u{1}".to_owned()),
        ]
        .prop_map(|s| format!("\"{s}\""));
        let scalar = prop_oneof![
            string.clone(),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..3_000_000_000).prop_map(|n| n.to_string()),
            Just("-1".to_owned()),
            Just("-0".to_owned()),
            Just("01".to_owned()),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("\"EdDSA\"".to_owned()),
            Just("\"at+jwt\"".to_owned()),
        ];
        let value = prop_oneof![
            4 => scalar.clone(),
            1 => prop::collection::vec(string, 0..3).prop_map(|v| format!("[{}]", v.join(","))),
            1 => prop::collection::vec(scalar, 0..3).prop_map(|v| format!("[ {} ]", v.join(" , "))),
            1 => Just("{\"k\":1}".to_owned()),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\r")];
        (
            prop::collection::vec((key, value, ws.clone()), 0..8),
            ws,
            prop_oneof![
                Just(""),
                Just(""),
                Just(" "),
                Just(","),
                Just("x"),
                Just("}")
            ],
        )
            .prop_map(|(members, ws, tail)| {
                let body: Vec<String> = members
                    .iter()
                    .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}{w}"))
                    .collect();
                format!("{ws}{{{}}}{ws}{tail}", body.join(","))
            })
    }

    /// Runs `check` over 4,000 objects from `texts`; `check` says whether the input
    /// reached its comparison, and the run fails if fewer than `least` did (a generator
    /// that drifted away from what the fast path takes would otherwise pass vacuously).
    pub(crate) fn over_json_objects(
        texts: impl Strategy<Value = String>,
        least: u32,
        check: impl Fn(&str) -> Result<bool, proptest::test_runner::TestCaseError>,
    ) {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 4000,
            ..ProptestConfig::default()
        });
        let reached = std::cell::Cell::new(0u32);
        runner
            .run(&texts, |text| {
                if check(&text)? {
                    reached.set(reached.get() + 1);
                }
                Ok(())
            })
            .unwrap();
        assert!(
            reached.get() >= least,
            "only {} of 4000 inputs reached the comparison",
            reached.get()
        );
    }

    /// The fast path gives exactly the full parser's answer whenever it answers.
    #[test]
    fn fast_path_agrees_with_the_full_parser() {
        // About 400 of 4,000 take the fast path; fewer than 200 means the generator drifted.
        over_json_objects(json_object_text(), 200, |text| {
            let full = Claims::parse_full(text.as_bytes());
            if flat_json::parse(text.as_bytes())
                .and_then(RawClaims::from_flat)
                .is_some()
            {
                prop_assert_eq!(Claims::parse_split(text.as_bytes()), full);
                return Ok(true);
            }
            Ok(false)
        });
    }

    #[test]
    fn non_objects_are_malformed() {
        assert_eq!(reason("[]"), Reason::Malformed);
        assert_eq!(reason(""), Reason::Malformed);
        assert_eq!(reason("foo"), Reason::Malformed);
    }
}
