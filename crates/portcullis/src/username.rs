//! Username normalisation: the one function used at signup, login and lookup alike.
//!
//! Modelled on the UsernameCaseMapped profile of RFC 8265 §3.3: compatibility and width
//! forms are folded (NFKC), letters are lower-cased, the result is put in NFC, and
//! anything that makes two names look alike without being equal, or that cannot be
//! typed back, is refused: whitespace, control and format characters, and characters
//! outside letters, digits and `. _ - @ +`. Applying it to its own output returns the
//! output unchanged (tested).
//!
//! Names that still look alike after that (Cyrillic `а` for Latin `a`, Greek `ο` for
//! `o`, dotless `ı` for `i`) are handled at account creation with Unicode UTS #39, using
//! the tables of the `unicode-security` crate rather than lists of our own: a new name
//! must be single-script ([`check_new_username`]), and a name whose confusable
//! [`skeleton`] equals an existing account's skeleton is taken. Both apply to new names
//! only, so an account created before these rules can still sign in.
//!
//! **Unstable** (feature `server`): a building block of the Portcullis server, public for
//! it and outside the library's semver promise.

use unicode_normalization::UnicodeNormalization as _;
use unicode_security::MixedScript as _;

/// Longest accepted username, in bytes after normalisation.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    /// Nothing left after normalisation.
    #[error("username must not be empty")]
    Empty,
    /// Longer than [`MAX_USERNAME_BYTES`].
    #[error("username must be at most 64 bytes")]
    TooLong,
    /// A character outside letters, digits and `. _ - @ +`.
    #[error("username may contain only letters, digits and . _ - @ +")]
    InvalidCharacter,
    /// Letters of more than one script (UTS #39 mixed-script detection).
    #[error(
        "username mixes letters of different scripts (for example Latin with Cyrillic or \
         Greek look-alikes); use letters of one script"
    )]
    MixedScript,
}

/// Normalises a username, or says why it cannot be one.
pub fn normalize_username(input: &str) -> Result<String, UsernameError> {
    if input.len() > 4 * MAX_USERNAME_BYTES {
        return Err(UsernameError::TooLong);
    }
    let folded: String = input.nfkc().collect::<String>().to_lowercase();
    let normalized: String = folded.nfc().collect();
    if normalized.is_empty() {
        return Err(UsernameError::Empty);
    }
    if normalized.len() > MAX_USERNAME_BYTES {
        return Err(UsernameError::TooLong);
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+');
    if !normalized.chars().all(allowed) {
        return Err(UsernameError::InvalidCharacter);
    }
    Ok(normalized)
}

/// The rule for a name a new account may take, beyond [`normalize_username`]: its
/// letters come from a single script (UTS #39 §5.1; Han with Hiragana and Katakana, and
/// the like, count as one). `normalized` is the output of [`normalize_username`].
pub fn check_new_username(normalized: &str) -> Result<(), UsernameError> {
    if normalized.is_single_script() {
        Ok(())
    } else {
        Err(UsernameError::MixedScript)
    }
}

/// The UTS #39 confusable skeleton of a normalised username: two names with the same
/// skeleton look alike, so the second is refused as taken.
pub fn skeleton(normalized: &str) -> String {
    unicode_security::skeleton(normalized).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn look_alike_names_share_a_skeleton_and_mixed_scripts_are_refused() {
        let alice = skeleton(&normalize_username("alice").unwrap());
        // Cyrillic а, dotless ı, and the Latin original.
        for lookalike in ["\u{430}lice", "al\u{131}ce", "ALICE"] {
            let name = normalize_username(lookalike).unwrap();
            assert_eq!(skeleton(&name), alice, "{lookalike}");
        }
        let bob = skeleton("bob");
        assert_eq!(skeleton(&normalize_username("b\u{3bf}b").unwrap()), bob);
        assert_eq!(
            check_new_username(&normalize_username("\u{430}lice").unwrap()),
            Err(UsernameError::MixedScript)
        );
        assert_eq!(
            check_new_username("b\u{3bf}b"),
            Err(UsernameError::MixedScript)
        );
        for fine in [
            "alice",
            "al\u{131}ce",
            "боб",
            "βοβ",
            "山田たろう",
            "user.name+tag@x",
            "x1",
        ] {
            assert_eq!(check_new_username(fine), Ok(()), "{fine}");
        }
        assert_ne!(skeleton("alice"), skeleton("alicia"));
    }

    #[test]
    fn case_width_and_compatibility_forms_fold_together() {
        assert_eq!(normalize_username("Alice").unwrap(), "alice");
        assert_eq!(normalize_username("ＡＬＩＣＥ").unwrap(), "alice");
        // e + combining acute and the precomposed é are one name.
        assert_eq!(
            normalize_username("Jose\u{301}").unwrap(),
            normalize_username("José").unwrap()
        );
        assert_eq!(normalize_username("ﬁlm").unwrap(), "film");
    }

    #[test]
    fn lookalike_and_untypeable_characters_are_refused() {
        for bad in [
            "a b",
            " alice",
            "alice\n",
            "al\u{200b}ice",
            "a/b",
            "a:b",
            "\u{0}",
            "<x>",
        ] {
            assert_eq!(
                normalize_username(bad),
                Err(UsernameError::InvalidCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(normalize_username(""), Err(UsernameError::Empty));
        assert_eq!(
            normalize_username(&"a".repeat(65)),
            Err(UsernameError::TooLong)
        );
        assert!(normalize_username(&"a".repeat(64)).is_ok());
    }

    /// Characters that make normalisation do work: ASCII, accented Latin (precomposed
    /// and as combining marks), full-width forms, compatibility characters that NFKC
    /// rewrites (ligatures, Roman numerals, half-width kana), case pairs with special
    /// folding (ß, İ, ǅ, Σ/ς), and any other scalar value now and then.
    fn username_char() -> impl Strategy<Value = char> {
        prop_oneof![
            8 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('A', 'Z'),
            2 => proptest::char::range('0', '9'),
            1 => prop::sample::select(vec!['.', '_', '-', '@', '+']),
            2 => proptest::char::range('\u{c0}', '\u{ff}'),
            2 => proptest::char::range('\u{300}', '\u{36f}'),
            2 => proptest::char::range('\u{ff21}', '\u{ff5a}'),
            2 => prop::sample::select(vec![
                '\u{fb01}', '\u{2168}', '\u{ff76}', '\u{df}', '\u{130}', '\u{1c5}',
                '\u{3a3}', '\u{3c2}', '\u{212b}', '\u{2126}', '\u{1e9e}', '\u{fe58}',
            ]),
            1 => any::<char>(),
        ]
    }

    /// Normalising twice changes nothing, over inputs that mostly normalise: the test
    /// counts the inputs that reached the comparison and fails if too few did.
    #[test]
    fn normalisation_is_idempotent() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 2000,
            ..ProptestConfig::default()
        });
        let checked = std::cell::Cell::new(0u32);
        runner
            .run(
                &prop::collection::vec(username_char(), 1..24)
                    .prop_map(|c| c.into_iter().collect::<String>()),
                |input| {
                    if let Ok(once) = normalize_username(&input) {
                        checked.set(checked.get() + 1);
                        prop_assert_eq!(normalize_username(&once), Ok(once.clone()));
                    }
                    Ok(())
                },
            )
            .unwrap();
        // About 520 of 2,000 normalise.
        assert!(
            checked.get() >= 250,
            "only {} of 2000 inputs normalised",
            checked.get()
        );
    }
}
