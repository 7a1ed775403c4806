//! The JOSE header, parsed strictly (RFC 7515 §4, RFC 8725 §3).

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::de::{self, MapAccess, Visitor};

use super::error::{Error, Reason};
use crate::flat_json::{self, Flat};
use crate::keys::Algorithm;
pub(crate) use crate::strict_json::truncate;
use crate::strict_json::truncate_to;
use crate::strict_json::{Str, StrictValue, media_subtype};

/// The header of a verified token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Header {
    /// The algorithm, equal to the verifying key's.
    pub alg: Algorithm,
    /// The key id, if the token named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The token type (`at+jwt` for access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The content type, if any (never a nested JWT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
}

/// Header members that make a verifier fetch keys, trust embedded keys, decompress or
/// change the signing input. We never act on them, so a token carrying them is refused
/// rather than half-understood (RFC 8725 §3.10, RFC 7515 §4.1.11, RFC 7797).
const REFUSED: [&str; 7] = ["crit", "jku", "jwk", "x5u", "x5c", "zip", "b64"];

/// A header as parsed, borrowing from the decoded bytes.
#[derive(Debug, PartialEq)]
pub(crate) struct RawHeader<'a> {
    pub(crate) alg: Str<'a>,
    pub(crate) kid: Option<Str<'a>>,
    pub(crate) typ: Option<Str<'a>>,
    pub(crate) cty: Option<Str<'a>>,
    refused: Option<&'static str>,
}

impl<'a> RawHeader<'a> {
    /// Parses and checks a decoded header: a strict JSON object with string `alg`,
    /// `kid`, `typ` and `cty`, no duplicate names, none of [`REFUSED`], no nested JWT.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<RawHeader<'a>, Error> {
        let header = match flat_json::parse(bytes).and_then(RawHeader::from_flat) {
            Some(header) => header,
            None => Self::parse_full(bytes)?,
        };
        if let Some(name) = header.refused {
            return Err(Error::new(
                Reason::UnsupportedHeader,
                format!("header member {name:?} is never accepted"),
            ));
        }
        if let Some(cty) = &header.cty
            && media_subtype(&cty.0).eq_ignore_ascii_case("jwt")
        {
            return Err(Error::new(
                Reason::UnsupportedHeader,
                "nested JWTs (cty: JWT) are not accepted",
            ));
        }
        Ok(header)
    }

    /// The full strict parser, for every input the fast path declines.
    fn parse_full(bytes: &'a [u8]) -> Result<RawHeader<'a>, Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        de::Deserializer::deserialize_map(&mut de, HeaderVisitor)
            .and_then(|h| de.end().map(|()| h))
            // serde_json may quote the input (a string where an object belongs): keep
            // what reaches the logs short.
            .map_err(|e| {
                Error::new(
                    Reason::Malformed,
                    format!("header: {}", truncate_to(&e.to_string(), 120)),
                )
            })
    }

    /// The same result the full parser gives for this input, or `None` to use it (a
    /// registered member that is not a string, or no `alg`).
    fn from_flat(members: Vec<(&'a str, Flat<'a>)>) -> Option<RawHeader<'a>> {
        let (mut alg, mut kid, mut typ, mut cty, mut refused) = (None, None, None, None, None);
        let mut others: Vec<&str> = Vec::new();
        for (name, value) in members {
            let slot = match name {
                "alg" => &mut alg,
                "kid" => &mut kid,
                "typ" => &mut typ,
                "cty" => &mut cty,
                other => {
                    if others.contains(&other) {
                        return None;
                    }
                    others.push(other);
                    if refused.is_none() {
                        refused = REFUSED.iter().copied().find(|r| *r == other);
                    }
                    continue;
                }
            };
            let (None, Flat::Str(s)) = (&slot, value) else {
                return None;
            };
            *slot = Some(Str(Cow::Borrowed(s)));
        }
        Some(RawHeader {
            alg: alg?,
            kid,
            typ,
            cty,
            refused,
        })
    }

    pub(crate) fn algorithm(&self) -> Result<Algorithm, Error> {
        Algorithm::from_name(&self.alg.0).ok_or_else(|| {
            Error::new(
                Reason::UnsupportedAlgorithm,
                format!("alg {:?} is not supported", truncate(&self.alg.0)),
            )
        })
    }

    pub(crate) fn to_header(&self, alg: Algorithm) -> Header {
        Header {
            alg,
            kid: self.kid.as_ref().map(|s| s.0.clone().into_owned()),
            typ: self.typ.as_ref().map(|s| s.0.clone().into_owned()),
            cty: self.cty.as_ref().map(|s| s.0.clone().into_owned()),
        }
    }
}

struct HeaderVisitor;

fn set_once<'a, E: de::Error>(slot: &mut Option<Str<'a>>, name: &str, v: Str<'a>) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom(format_args!("duplicate member name {name:?}")));
    }
    *slot = Some(v);
    Ok(())
}

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader<'de>, A::Error> {
        let (mut alg, mut kid, mut typ, mut cty) = (None, None, None, None);
        let mut refused = None;
        let mut others: Vec<Str<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            let name = key.0.as_ref();
            match name {
                "alg" => set_once(&mut alg, name, map.next_value()?)?,
                "kid" => set_once(&mut kid, name, map.next_value()?)?,
                "typ" => set_once(&mut typ, name, map.next_value()?)?,
                "cty" => set_once(&mut cty, name, map.next_value()?)?,
                _ => {
                    if others.contains(&key) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate member name {:?}",
                            truncate(name)
                        )));
                    }
                    if refused.is_none() {
                        refused = REFUSED.iter().copied().find(|r| *r == name);
                    }
                    // Checked for duplicates and depth, then dropped: unknown members
                    // are ignored (RFC 7515 §4), refused ones are reported after parsing.
                    map.next_value_seed(StrictValue::MEMBER)?;
                    others.push(key);
                }
            }
        }
        let alg = alg.ok_or_else(|| de::Error::custom("missing alg"))?;
        Ok(RawHeader {
            alg,
            kid,
            typ,
            cty,
            refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::claims::tests::json_object_text;
    use proptest::prelude::*;

    /// The fast path gives exactly the full parser's answer whenever it answers.
    #[test]
    fn fast_path_agrees_with_the_full_parser() {
        // Headers need a string `alg`: most inputs get one in front of the generated
        // members (which may repeat it, or bring a `kid` or `typ` of the wrong type).
        let with_alg = |text: String| match text.find('{') {
            Some(i) => {
                let rest = &text[i + 1..];
                let sep = if rest.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                format!("{}{{\"alg\":\"EdDSA\"{sep}{rest}", &text[..i])
            }
            None => text,
        };
        let texts = prop_oneof![
            1 => json_object_text(),
            4 => json_object_text().prop_map(with_alg),
        ];
        // About 290 of 4,000 take the fast path (2 did before the `alg` was added).
        crate::jwt::claims::tests::over_json_objects(texts, 150, |text| {
            if let Some(fast) = flat_json::parse(text.as_bytes()).and_then(RawHeader::from_flat) {
                prop_assert_eq!(Ok(fast), RawHeader::parse_full(text.as_bytes()));
                return Ok(true);
            }
            Ok(false)
        });
    }

    fn reason(json: &str) -> Reason {
        RawHeader::parse(json.as_bytes()).unwrap_err().reason()
    }

    #[test]
    fn a_plain_header_parses() {
        let h = RawHeader::parse(br#"{"alg":"ES256","kid":"k1","typ":"at+jwt","x":1}"#).unwrap();
        assert_eq!(h.algorithm().unwrap(), Algorithm::ES256);
        assert_eq!(h.kid.unwrap().0, "k1");
    }

    #[test]
    fn duplicates_are_malformed_for_known_and_unknown_members() {
        assert_eq!(
            reason(r#"{"alg":"ES256","alg":"ES256"}"#),
            Reason::Malformed
        );
        assert_eq!(reason(r#"{"alg":"ES256","x":1,"x":2}"#), Reason::Malformed);
        assert_eq!(
            reason(r#"{"alg":"ES256","\u0061lg":"HS256"}"#),
            Reason::Malformed
        );
    }

    #[test]
    fn wrong_types_and_missing_alg_are_malformed() {
        assert_eq!(reason(r#"{"alg":1}"#), Reason::Malformed);
        assert_eq!(reason(r#"{"alg":"ES256","kid":5}"#), Reason::Malformed);
        assert_eq!(reason(r#"{"alg":"ES256","typ":null}"#), Reason::Malformed);
        assert_eq!(reason(r#"{"kid":"a"}"#), Reason::Malformed);
        assert_eq!(reason(r#"["alg"]"#), Reason::Malformed);
        assert_eq!(reason(r#"{"alg":"ES256"} x"#), Reason::Malformed);
        assert_eq!(
            RawHeader::parse(b"{\"alg\":\"ES256\",\"kid\":\"\xff\"}")
                .unwrap_err()
                .reason(),
            Reason::Malformed
        );
    }

    #[test]
    fn refused_members_are_unsupported_header() {
        for name in REFUSED {
            let json = format!(r#"{{"alg":"ES256","{name}":"x"}}"#);
            assert_eq!(reason(&json), Reason::UnsupportedHeader, "{name}");
        }
        assert_eq!(
            reason(r#"{"alg":"ES256","crit":[]}"#),
            Reason::UnsupportedHeader
        );
    }

    #[test]
    fn nested_jwt_content_type_is_refused() {
        for cty in [
            "JWT",
            "jwt",
            "application/jwt",
            "application/JWT",
            "Application/JWT",
            "APPLICATION/jwt",
        ] {
            let json = format!(r#"{{"alg":"ES256","cty":"{cty}"}}"#);
            assert_eq!(reason(&json), Reason::UnsupportedHeader, "{cty}");
        }
        assert!(RawHeader::parse(br#"{"alg":"ES256","cty":"text/plain"}"#).is_ok());
    }

    #[test]
    fn none_in_any_spelling_is_unsupported() {
        for alg in ["none", "None", "NONE", "nOnE", "es256", ""] {
            let json = format!(r#"{{"alg":"{alg}"}}"#);
            let h = RawHeader::parse(json.as_bytes()).unwrap();
            assert_eq!(
                h.algorithm().unwrap_err().reason(),
                Reason::UnsupportedAlgorithm
            );
        }
    }
}
