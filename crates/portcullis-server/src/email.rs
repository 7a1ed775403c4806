//! Email addresses as accounts keep them.
//!
//! An address is split at its last `@`. The domain goes through IDNA (UTS #46, what
//! browsers and mail software do) to lower-case ASCII, and must be a host name: labels
//! of letters, digits and hyphens, at least two of them (no address literals, no
//! dotless hosts). The local part is kept as given (RFC 5321 lets a server tell its
//! case apart) but must be printable ASCII without spaces, quotes, backslashes or `@`,
//! at most 64 bytes, no leading, trailing or doubled dot: the dot-atom of RFC 5322,
//! which is what real addresses use. At most 254 bytes in all (RFC 5321's path limit).
//!
//! Uniqueness is by a key with the local part lower-cased as well: almost every mail
//! system treats `Alice@` and `alice@` as one mailbox, and two accounts proving one
//! mailbox would be two ways into one person's mail.

use portcullis_store::Email;

/// Why an address is refused, for the person who typed it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid(pub &'static str);

/// The address in the form the store keeps, or why not.
pub(crate) fn normalize(text: &str) -> Result<Email, Invalid> {
    let text = text.trim();
    let (local, domain) = text
        .rsplit_once('@')
        .ok_or(Invalid("an email address has an @"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(Invalid("the part before the @ must be 1 to 64 characters"));
    }
    let atom = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    if !local.chars().all(atom)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(Invalid(
            "the part before the @ may hold letters, digits and !#$%&'*+-/=?^_`{|}~ and single dots inside",
        ));
    }
    let ascii = idna::domain_to_ascii(domain)
        .map_err(|_| Invalid("the part after the @ is not a valid domain name"))?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) || ascii.len() > 253 {
        return Err(Invalid(
            "the part after the @ must be a domain name such as example.com",
        ));
    }
    let address = format!("{local}@{ascii}");
    if address.len() > 254 {
        return Err(Invalid("an email address is at most 254 characters"));
    }
    Ok(Email {
        key: format!("{}@{ascii}", local.to_ascii_lowercase()),
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_ascii_and_lower_case_and_keys_ignore_case() {
        let e = normalize("  Alice.Smith+tag@Example.COM ").unwrap();
        assert_eq!(e.address, "Alice.Smith+tag@example.com");
        assert_eq!(e.key, "alice.smith+tag@example.com");
        let idn = normalize("bob@Bücher.example").unwrap();
        assert_eq!(idn.address, "bob@xn--bcher-kva.example");
        assert_eq!(
            normalize("BOB@xn--bcher-kva.example").unwrap().key,
            idn.key,
            "one mailbox, whichever form"
        );
    }

    #[test]
    fn what_is_not_an_address_is_refused_with_a_reason() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "alice@[127.0.0.1]",
            "alice@exa mple.com",
            "al ice@example.com",
            "\"alice\"@example.com",
            "a\\b@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@example..com",
            "ålice@example.com",
            "alice@example.com\r\nBcc: x@y.z",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(normalize(&long_local).is_err());
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(63));
        assert!(normalize(&long).is_ok());
        let too_long = format!("a@{}.com", vec!["b".repeat(63); 4].join("."));
        assert!(normalize(&too_long).is_err());
    }
}
