//! Strict base64url (RFC 7515 §2): the URL-safe alphabet, no padding, no whitespace and
//! no non-canonical trailing bits. Every base64url value that reaches us from the
//! network (token segments, JWK members) is decoded here and nowhere else.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The `base64` crate's engine, for encoding (and, in tests, as the reference decoder):
/// `decode_allow_trailing_bits(false)` rejects an encoding whose unused low bits are
/// not zero, so every byte string has exactly one accepted encoding.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Sentinel in [`DECODE`] for bytes outside the alphabet.
const INVALID: u8 = 0xff;

/// The value of each base64url character, [`INVALID`] for every other byte.
const DECODE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// [`DECODE`] shifted into place for each position of a group of four characters, with
/// the top byte set for invalid characters: one OR of four lookups decodes a group.
const fn shifted(shift: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if DECODE[i] == INVALID {
            0xff00_0000
        } else {
            (DECODE[i] as u32) << shift
        };
        i += 1;
    }
    table
}

const D0: [u32; 256] = shifted(18);
const D1: [u32; 256] = shifted(12);
const D2: [u32; 256] = shifted(6);
const D3: [u32; 256] = shifted(0);

/// The decoded length of `len` characters of unpadded base64url, or `None` for a
/// length no canonical encoding has (one leftover character).
pub(crate) fn decoded_len(len: usize) -> Option<usize> {
    match len % 4 {
        1 => None,
        rem => Some(len / 4 * 3 + rem.saturating_sub(1)),
    }
}

/// Decodes strict base64url; `None` on any deviation.
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; decoded_len(input.len())?];
    decode_into(input, &mut out)?;
    Some(out)
}

/// Decodes into the front of `out`, returning the number of bytes written; `None` on
/// any deviation or when `out` is too small.
///
/// Written here rather than taken from the `base64` crate (which we still use to
/// encode) because it is on the path of every token and this loop is several times
/// faster: four table lookups per three bytes, validity accumulated without branches.
/// The property test below checks it against the `base64` crate on arbitrary input.
pub(crate) fn decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = decoded_len(input.len())?;
    let out = out.get_mut(..len)?;
    let mut bad = 0u8;
    let mut bad_groups = 0u32;
    let (chunks, tail) = input.as_chunks::<4>();
    let (out_chunks, out_tail) = out.split_at_mut(chunks.len() * 3);
    for (&[a, b, c, d], dst) in chunks.iter().zip(out_chunks.chunks_exact_mut(3)) {
        let n = D0[a as usize] | D1[b as usize] | D2[c as usize] | D3[d as usize];
        bad_groups |= n;
        dst[0] = (n >> 16) as u8;
        dst[1] = (n >> 8) as u8;
        dst[2] = n as u8;
    }
    if bad_groups & 0xff00_0000 != 0 {
        return None;
    }
    match *tail {
        [] => {}
        [a, b] => {
            let (a, b) = (DECODE[a as usize], DECODE[b as usize]);
            bad |= (a | b) & 0x80;
            // The 4 low bits of the last character are unused and must be zero.
            bad |= b & 0x0f;
            out_tail[0] = (a << 2) | (b >> 4);
        }
        [a, b, c] => {
            let (a, b, c) = (DECODE[a as usize], DECODE[b as usize], DECODE[c as usize]);
            bad |= (a | b | c) & 0x80;
            // The 2 low bits of the last character are unused and must be zero.
            bad |= c & 0x03;
            out_tail[0] = (a << 2) | (b >> 4);
            out_tail[1] = (b << 4) | (c >> 2);
        }
        _ => return None,
    }
    (bad == 0).then_some(len)
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
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoder_agrees_with_the_base64_crate(input in "[A-Za-z0-9_\\-+/= .]{0,64}") {
            prop_assert_eq!(decode(input.as_bytes()), ENGINE.decode(input.as_bytes()).ok());
        }

        #[test]
        fn decoder_agrees_on_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&input), ENGINE.decode(&input).ok());
        }

        #[test]
        fn round_trips_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(decode(encode(&data).as_bytes()), Some(data));
        }
    }

    #[test]
    fn too_small_output_is_refused() {
        let mut out = [0u8; 2];
        assert_eq!(decode_into(b"Zm9v", &mut out), None);
        let mut out = [0u8; 3];
        assert_eq!(decode_into(b"Zm9v", &mut out), Some(3));
    }

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
