//! Strict JSON for untrusted input.
//!
//! `serde_json` silently keeps the last of two members with the same name and has no
//! depth bound below its own recursion limit. Tokens and keys are security input, so
//! everything that reaches us from outside is parsed through [`StrictValue`]: duplicate
//! member names are an error at every level (RFC 7515 §4 and §10.12), nesting is
//! bounded by [`MAX_DEPTH`], and nothing may follow the value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The deepest nesting of arrays and objects accepted anywhere. Real claims sets are
/// two or three levels deep; sixteen leaves room for custom claims and keeps a hostile
/// `[[[[…]]]]` cheap.
pub(crate) const MAX_DEPTH: usize = 16;

/// A `DeserializeSeed` that builds a [`Value`], rejecting duplicate member names and
/// nesting deeper than [`MAX_DEPTH`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct StrictValue {
    depth: usize,
}

impl StrictValue {
    pub(crate) const TOP: StrictValue = StrictValue { depth: 0 };
    /// For a member of a top-level object: that object is the first level.
    pub(crate) const MEMBER: StrictValue = StrictValue { depth: 1 };
    /// For a value inside a member of a top-level object.
    pub(crate) const NESTED: StrictValue = StrictValue { depth: 2 };

    fn nested<E: de::Error>(self) -> Result<StrictValue, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(StrictValue {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {:?}",
                    truncate(&key)
                )));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Keeps attacker-chosen strings short in error details and logs.
pub(crate) fn truncate(s: &str) -> &str {
    truncate_to(s, 32)
}

/// The first `n` characters of `s`.
pub(crate) fn truncate_to(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The subtype of a media type: `application/` is optional and matched without regard
/// to case (RFC 7515 §4.1.9, RFC 2045 §5.1).
pub(crate) fn media_subtype(media: &str) -> &str {
    match media.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &media[12..],
        _ => media,
    }
}

/// A JSON string member name or value that borrows from the input when it can.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Parses `input` as one strict JSON object with nothing after it.
pub(crate) fn parse_object(input: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(input);
    let value = StrictValue::TOP.deserialize(&mut de)?;
    de.end()?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom("expected a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_members_are_rejected_at_every_level() {
        assert!(parse_object(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_object(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_object(br#"{"a":[{"b":1,"b":1}]}"#).is_err());
        // An escaped spelling is the same name.
        assert!(parse_object(br#"{"a":1,"\u0061":2}"#).is_err());
        assert!(parse_object(br#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn trailing_data_and_non_objects_are_rejected() {
        assert!(parse_object(br#"{"a":1} "#).is_ok());
        assert!(parse_object(br#"{"a":1}x"#).is_err());
        assert!(parse_object(br#"{"a":1}{}"#).is_err());
        assert!(parse_object(br#"[1]"#).is_err());
        assert!(parse_object(br#""s""#).is_err());
        assert!(parse_object(b"").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse_object(ok.as_bytes()).is_ok());
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(parse_object(deep.as_bytes()).is_err());
        let hostile = format!("{{\"a\":{}}}", "[".repeat(100_000));
        assert!(parse_object(hostile.as_bytes()).is_err());
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert!(parse_object(b"{\"a\":\"\xff\"}").is_err());
    }
}
