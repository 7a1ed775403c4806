//! JWS compact serialization (RFC 7515 §3.1, §7.1): the format checks that run before
//! any decoding, signature verification against a [`KeySet`], and signing.
//!
//! This layer knows nothing of claims: it verifies any payload. [`super::Verifier`]
//! builds JWT validation on top of it.

use super::error::{Error, Reason};
use super::header::{Header, RawHeader};
use crate::b64;
use crate::keys::{KeySet, Miss, SigningKey, VerifyingKey};

/// True for the bytes allowed in a compact JWS: the base64url alphabet and `.`.
/// Written with range comparisons and no early exit so the compiler vectorizes the
/// loop that calls it.
#[inline(always)]
fn allowed(b: u8) -> bool {
    (b.wrapping_sub(b'A') < 26)
        | (b.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'_')
        | (b == b'.')
}

/// Checks every byte, 32 at a time.
fn all_allowed(token: &[u8]) -> bool {
    token
        .chunks(32)
        .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & allowed(b)))
}

/// The largest signature we ever decode: RSA-8192 (1024 bytes).
const MAX_SIGNATURE: usize = 1024;

/// A token split into its segments, after the format checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) header: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) signature: &'a [u8],
    /// `header '.' payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
}

/// Checks size and characters in one pass, then splits on exactly two dots. Nothing is
/// decoded or allocated before the token has passed, so a header of many dots, a JWE
/// (five segments) or a JSON serialization costs one scan (RFC 8725bis §3.14,
/// CVE-2025-30204).
pub(crate) fn split(token: &[u8], max_size: usize) -> Result<Parts<'_>, Error> {
    if token.len() > max_size {
        return Err(too_large(token.len(), max_size));
    }
    if !all_allowed(token) {
        return Err(Error::new(
            Reason::Malformed,
            "token contains a character outside base64url and '.'",
        ));
    }
    let mut found = memchr::memchr_iter(b'.', token);
    let (Some(first), Some(second)) = (found.next(), found.next()) else {
        return Err(Error::new(
            Reason::Malformed,
            "a compact JWS has exactly three segments",
        ));
    };
    if found.next().is_some() {
        return Err(Error::new(
            Reason::Malformed,
            "a compact JWS has exactly three segments (JWE is not accepted)",
        ));
    }
    let dots = [first, second];
    let parts = Parts {
        header: &token[..dots[0]],
        payload: &token[dots[0] + 1..dots[1]],
        signature: &token[dots[1] + 1..],
        signing_input: &token[..dots[1]],
    };
    if parts.header.is_empty() {
        return Err(Error::new(Reason::Malformed, "empty header segment"));
    }
    if parts.signature.is_empty() {
        return Err(Error::new(
            Reason::Malformed,
            "empty signature: unsigned tokens are never accepted",
        ));
    }
    Ok(parts)
}

/// Decodes a segment into `stack` when it fits (the usual case, no allocation), else
/// into `heap`.
pub(crate) fn decode_segment<'b>(
    segment: &[u8],
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Option<&'b [u8]> {
    let len = b64::decoded_len(segment.len())?;
    let out = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    b64::decode_into(segment, out)?;
    Some(out)
}

pub(crate) fn too_large(len: usize, max: usize) -> Error {
    Error::new(
        Reason::TooLarge,
        format!("token of {len} bytes is above the limit of {max}"),
    )
}

/// Decodes and checks the header, selects the key and checks the signature.
pub(crate) fn verify_parts<'k>(
    parts: &Parts<'_>,
    keys: &'k KeySet,
) -> Result<(Header, &'k VerifyingKey), Error> {
    // Stack buffers are sized for the usual case; zeroing a bigger one costs more than
    // the rare heap fallback saves.
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let header_json = decode_segment(parts.header, &mut stack, &mut heap)
        .ok_or_else(|| Error::new(Reason::Malformed, "header is not strict base64url"))?;
    let raw = RawHeader::parse(header_json)?;
    let alg = raw.algorithm()?;
    let key = keys
        .select(alg, raw.kid.as_ref().map(|k| k.0.as_ref()))
        .map_err(|miss| match miss {
            Miss::Unknown => Error::new(
                Reason::UnknownKey,
                if raw.kid.is_some() {
                    "no key with the token's kid"
                } else {
                    "token has no kid and the key set has no single key of its algorithm"
                },
            ),
            Miss::AlgorithmMismatch(key_alg) => Error::new(
                Reason::UnsupportedAlgorithm,
                format!("token alg {alg} does not match the key's {key_alg}"),
            ),
        })?;
    if b64::decoded_len(parts.signature.len()).is_none_or(|n| n > MAX_SIGNATURE) {
        return Err(Error::new(
            Reason::Malformed,
            "signature is not strict base64url or too long",
        ));
    }
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let sig = decode_segment(parts.signature, &mut stack, &mut heap)
        .ok_or_else(|| Error::new(Reason::Malformed, "signature is not strict base64url"))?;
    if !key.verify_signature(parts.signing_input, sig) {
        return Err(Error::new(
            Reason::InvalidSignature,
            "signature does not verify",
        ));
    }
    Ok((raw.to_header(alg), key))
}

/// Verifies a compact JWS with any payload against `keys`, applying every format,
/// header, algorithm and key rule (but no claim rules). Returns the header and the
/// decoded payload.
pub fn verify(token: &str, keys: &KeySet, max_size: usize) -> Result<(Header, Vec<u8>), Error> {
    let parts = split(token.as_bytes(), max_size)?;
    let (header, _) = verify_parts(&parts, keys)?;
    let payload = b64::decode(parts.payload)
        .ok_or_else(|| Error::new(Reason::Malformed, "payload is not strict base64url"))?;
    Ok((header, payload))
}

/// Decodes a compact JWS without verifying anything but its format. For inspection
/// tools only: nothing returned here may be trusted.
pub fn insecure_decode(
    token: &str,
    max_size: usize,
) -> Result<(serde_json::Value, Vec<u8>), Error> {
    let parts = split(token.as_bytes(), max_size)?;
    let header = b64::decode(parts.header)
        .and_then(|h| crate::strict_json::parse_object(&h).ok())
        .ok_or_else(|| Error::new(Reason::Malformed, "header is not a base64url JSON object"))?;
    let payload = b64::decode(parts.payload)
        .ok_or_else(|| Error::new(Reason::Malformed, "payload is not strict base64url"))?;
    Ok((serde_json::Value::Object(header), payload))
}

/// Parses untrusted JSON text as one object, with the same strictness as token
/// headers and claims: duplicate member names at any depth, deep nesting and trailing
/// data are errors.
pub fn parse_json_object(
    input: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
    crate::strict_json::parse_object(input)
}

/// Signs `payload` with a header of `alg`, `typ` (when given) and the key's `kid`.
pub fn sign(
    payload: &[u8],
    typ: Option<&str>,
    key: &SigningKey,
) -> Result<String, crate::keys::Error> {
    let header = |typ: Option<&str>| {
        /// The header we write: `alg`, then `typ` and `kid` when there are.
        #[derive(serde::Serialize)]
        struct Header<'a> {
            alg: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            typ: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
        }
        let json = serde_json::to_vec(&Header {
            alg: key.algorithm().as_str(),
            typ,
            kid: key.kid(),
        })
        // Three strings cannot fail to serialize; an empty header would be refused.
        .unwrap_or_default();
        b64::encode(&json)
    };
    let mut token = String::with_capacity(payload.len() * 4 / 3 + 500);
    match typ {
        // Every access token of a key has the same header: encoded once per key.
        Some("at+jwt") => token.push_str(key.access_header(|| header(typ))),
        typ => token.push_str(&header(typ)),
    }
    token.push('.');
    b64::encode_to(payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    b64::encode_to(&signature, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(token: &str) -> Reason {
        split(token.as_bytes(), 8192).unwrap_err().reason()
    }

    #[test]
    fn three_segments_exactly() {
        assert!(split(b"a.b.c", 100).is_ok());
        assert!(split(b"a..c", 100).is_ok());
        assert_eq!(reason("a.b"), Reason::Malformed);
        assert_eq!(reason("a.b.c.d.e"), Reason::Malformed);
        assert_eq!(reason("abc"), Reason::Malformed);
        assert_eq!(reason(".b.c"), Reason::Malformed);
        assert_eq!(reason("a.b."), Reason::Malformed);
    }

    #[test]
    fn characters_are_checked_before_splitting() {
        for bad in [
            "a.b.c=",
            "a.b+.c",
            "a/b.c.d",
            "a.b.c ",
            " a.b.c",
            "{\"payload\":1}",
            "a.b.\u{e9}",
        ] {
            assert_eq!(reason(bad), Reason::Malformed, "{bad}");
        }
    }

    #[test]
    fn size_is_checked_first() {
        let long = "a".repeat(101);
        assert_eq!(
            split(long.as_bytes(), 100).unwrap_err().reason(),
            Reason::TooLarge
        );
        let dots = ".".repeat(101);
        assert_eq!(
            split(dots.as_bytes(), 100).unwrap_err().reason(),
            Reason::TooLarge
        );
    }
}
