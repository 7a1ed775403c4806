//! A fast path for the JSON objects tokens usually carry: one flat object whose values
//! are strings without escapes, non-negative integers, booleans, null, or arrays of such
//! strings.
//!
//! Headers and claims are parsed on every request, and `serde_json` spends most of its
//! time there on generality we rarely need. This scanner handles the common shape in one
//! pass without allocating and answers `None` for anything else (escapes, fractions,
//! negative or huge numbers, nesting, malformed input), in which case
//! the caller runs the full strict parser, which also produces the error message. So
//! the fast path can only ever accept what the full parser accepts, with the same
//! result; differential property tests in `jwt::claims` and `jwt::header` check that.

/// A value the fast path understands.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Flat<'a> {
    Str(&'a str),
    UInt(u64),
    Bool(bool),
    Null,
    StrArray(Vec<&'a str>),
}

/// More members than this are left to the full parser (callers' duplicate checks are
/// linear scans).
const MAX_MEMBERS: usize = 32;

struct Scanner<'a> {
    /// The whole input, already checked to be UTF-8: every slice between two ASCII
    /// quotes is then UTF-8 too, so strings need no check of their own.
    text: &'a str,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.input.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// A string after its opening quote: no escapes, no control characters.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let rest = self.input.get(start..)?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[len] != b'"' || !rest[..len].iter().fold(true, |ok, &b| ok & (b >= 0x20)) {
            return None;
        }
        self.pos = start + len + 1;
        self.text.get(start..start + len)
    }

    /// A non-negative integer without leading zeros that fits in a u64.
    fn integer(&mut self) -> Option<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if self.pos > start && self.input[start] == b'0' {
                return None; // leading zero: let the full parser refuse it
            }
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.pos += 1;
        }
        // A fraction or exponent is for the full parser.
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ if self.pos == start => None,
            _ => Some(value),
        }
    }

    fn value(&mut self) -> Option<Flat<'a>> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.string().map(Flat::Str)
            }
            b'0'..=b'9' => self.integer().map(Flat::UInt),
            b't' => self.literal(b"true").map(|()| Flat::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Flat::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Flat::Null),
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.eat(b']').is_some() {
                    return Some(Flat::StrArray(items));
                }
                loop {
                    self.skip_ws();
                    self.eat(b'"')?;
                    items.push(self.string()?);
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(Flat::StrArray(items));
                        }
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }
}

/// Parses `input` as one flat object with nothing after it, or answers `None`. Member
/// names are not checked for duplicates here: each caller does, cheaply, as it files
/// the members (and answers `None` on a duplicate).
pub(crate) fn parse(input: &[u8]) -> Option<Vec<(&str, Flat<'_>)>> {
    let text = std::str::from_utf8(input).ok()?;
    let mut s = Scanner {
        text,
        input,
        pos: 0,
    };
    let mut members: Vec<(&str, Flat<'_>)> = Vec::with_capacity(12);
    s.skip_ws();
    s.eat(b'{')?;
    s.skip_ws();
    if s.eat(b'}').is_none() {
        loop {
            s.skip_ws();
            s.eat(b'"')?;
            let key = s.string()?;
            if members.len() == MAX_MEMBERS {
                return None;
            }
            s.skip_ws();
            s.eat(b':')?;
            s.skip_ws();
            let value = s.value()?;
            members.push((key, value));
            s.skip_ws();
            match s.peek()? {
                b',' => s.pos += 1,
                b'}' => {
                    s.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.pos == input.len()).then_some(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_shape_is_parsed() {
        let m = parse(br#" {"a":"x", "b":12,"c":true,"d":null,"e":["p","q"],"f":[]} "#).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[1], ("b", Flat::UInt(12)));
        assert_eq!(m[4].1, Flat::StrArray(vec!["p", "q"]));
        assert_eq!(parse(b"{}").unwrap(), vec![]);
    }

    #[test]
    fn anything_else_falls_back() {
        for input in [
            &br#"{"a":"x\n"}"#[..],
            br#"{"a\u0062":1}"#,
            br#"{"a":1.5}"#,
            br#"{"a":1e3}"#,
            br#"{"a":-1}"#,
            br#"{"a":01}"#,
            br#"{"a":18446744073709551616}"#,
            br#"{"a":{}}"#,
            br#"{"a":[1]}"#,
            br#"{"a":[[]]}"#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a":tru}"#,
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\x01\"}",
            br#"["a"]"#,
            b"",
            br#"{"a" 1}"#,
        ] {
            assert!(parse(input).is_none(), "{}", String::from_utf8_lossy(input));
        }
    }
}
