//! Strict base64url (RFC 7515 §2): the URL-safe alphabet, no padding, no whitespace and
//! no non-canonical trailing bits. Every base64url value that reaches us from the
//! network (token segments, JWK members) is decoded here and nowhere else.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The one engine: `decode_allow_trailing_bits(false)` rejects an encoding whose unused
/// low bits are not zero, so every byte string has exactly one accepted encoding.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict base64url; `None` on any deviation.
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    ENGINE.decode(input).ok()
}

/// Decodes into `out`, returning the number of bytes written; `None` on any deviation or
/// when `out` is too small. Used on the hot path to avoid an allocation.
pub(crate) fn decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    ENGINE.decode_slice(input, out).ok()
}

/// Encodes as base64url without padding.
pub(crate) fn encode(input: &[u8]) -> String {
    ENGINE.encode(input)
}

/// Appends the base64url encoding of `input` to `out`.
pub(crate) fn encode_to(input: &[u8], out: &mut String) {
    ENGINE.encode_string(input, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).collect();
            assert_eq!(decode(encode(&data).as_bytes()), Some(data));
        }
    }

    #[test]
    fn padding_is_rejected() {
        assert_eq!(decode(b"Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(decode(b"Zm8"), Some(b"fo".to_vec()));
        assert!(decode(b"Zm8=").is_none());
    }

    #[test]
    fn standard_alphabet_and_whitespace_are_rejected() {
        assert!(decode(b"+/8").is_none());
        assert!(decode(b"-_8").is_some());
        assert!(decode(b"Zm 9v").is_none());
        assert!(decode(b"Zm9v\n").is_none());
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        // "Zm8" is canonical for "fo"; "Zm9" differs only in the unused low bits.
        assert!(decode(b"Zm9").is_none());
        // One leftover character can never be valid.
        assert!(decode(b"Zm9vY").is_none());
    }
}
