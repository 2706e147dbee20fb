//! A borrowing, single-pass JSON reader for request bodies, and the string escaper of pushes.
//!
//! [`Reader`] walks a JSON text once, front to back, and hands out strings as [`Cow`]s that
//! borrow from the text when the literal holds no escape (the common case for port names and
//! message bodies) and own an unescaped copy otherwise. No tree is built: the caller asks for
//! the value it expects next ([`Reader::string`], [`Reader::object`], …) and gets a typed error
//! naming what was found instead. Unknown values are validated and skipped
//! ([`Reader::skip_value`]) without allocating.
//!
//! The grammar is RFC 8259: no trailing commas, no comments, no leading zeros, no raw control
//! characters in strings, `\u` escapes with surrogate pairs (a lone surrogate is an error, as
//! it is no Unicode scalar value), nesting at most [`MAX_DEPTH`] deep.

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of arrays and objects accepted (as serde_json).
pub const MAX_DEPTH: usize = 128;

/// What went wrong, and where. Boxed, so that results stay small on the success path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError(Box<ErrorDetail>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct ErrorDetail {
    what: String,
    at: usize,
    line: usize,
    column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(f, "{} at line {} column {}", e.what, e.line, e.column)
    }
}

impl std::error::Error for JsonError {}

impl JsonError {
    /// What was wrong.
    pub fn what(&self) -> &str {
        &self.0.what
    }

    /// Byte offset of the offending input.
    pub fn at(&self) -> usize {
        self.0.at
    }

    /// The same error, prefixed with the field it happened in (the innermost field only).
    pub fn in_field(mut self, field: &str) -> JsonError {
        if !self.0.what.starts_with("field `") {
            self.0.what = format!("field `{field}`: {}", self.0.what);
        }
        self
    }
}

/// The kind of value starting with byte `b`, for "expected X, found Y" messages.
fn kind_of(b: Option<u8>) -> Cow<'static, str> {
    match b {
        None => "the end of the input".into(),
        Some(b'{') => "an object".into(),
        Some(b'[') => "an array".into(),
        Some(b'"') => "a string".into(),
        Some(b't' | b'f') => "a boolean".into(),
        Some(b'n') => "null".into(),
        Some(b'-' | b'0'..=b'9') => "a number".into(),
        Some(b) if b.is_ascii_graphic() => format!("`{}`", b as char).into(),
        Some(b) => format!("byte 0x{b:02x}").into(),
    }
}

/// A cursor over one JSON text.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

/// Whether byte `b` ends a run of plain string content: `"`, `\` or a control character.
#[inline(always)]
fn is_special(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// Index of the first byte of `bytes` that is `"`, `\` or a control character.
#[inline]
fn find_special(bytes: &[u8]) -> Option<usize> {
    // 16 bytes at a time: the branch-free test of a whole chunk compiles to vector compares
    // (safe code, no intrinsics); only the chunk that has a special byte is searched byte
    // by byte.
    let mut chunks = bytes.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | is_special(b)) {
            return chunk.iter().position(|&b| is_special(b)).map(|p| base + p);
        }
        base += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is_special(b))
        .map(|p| base + p)
}

/// Whether `bytes` hold `part` at offset `at`: a comparison of `N` bytes known at compile
/// time (no `memcmp` call).
#[inline(always)]
fn fixed<const N: usize>(bytes: &[u8], at: usize, part: &[u8; N]) -> bool {
    bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .is_some_and(|head| head == part)
}

/// The end of a plain string starting at `from` (the offset of its closing quote): its first
/// special byte, which must be `"`.
#[inline(always)]
fn plain_end(bytes: &[u8], from: usize) -> Option<usize> {
    let n = find_special(bytes.get(from..)?)?;
    (bytes[from + n] == b'"').then_some(from + n)
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// The byte offset of the reader.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes of the text after the reader's position.
    pub fn remaining(&self) -> usize {
        self.text.len() - self.pos
    }

    /// A reader of the same text at byte offset `pos` (e.g. to read a value skipped before).
    pub fn at(&self, pos: usize) -> Reader<'a> {
        Reader {
            text: self.text,
            pos,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The usual shape of a small object read as fixed text around two plain strings: `open`,
    /// `between` and `close` are the bytes before, between and after them (e.g. `{"port":"`,
    /// `","body":"`, `"}`). Returns the two strings if the input matches exactly, with no
    /// escapes in the strings; otherwise consumes nothing, and the caller reads the value the
    /// general way. This accepts nothing the general way would not read the same. The parts
    /// are arrays so that their comparisons compile to a few loads of known size, not calls.
    #[inline(always)]
    pub fn template<const A: usize, const B: usize, const C: usize>(
        &mut self,
        open: &[u8; A],
        between: &[u8; B],
        close: &[u8; C],
    ) -> Option<(&'a str, &'a str)> {
        self.skip_ws();
        let b = self.bytes();
        let start = self.pos;
        if !fixed(b, start, open) {
            return None;
        }
        let first = start + A;
        let first_end = plain_end(b, first)?;
        let second = first_end + B;
        if !fixed(b, first_end, between) {
            return None;
        }
        let second_end = plain_end(b, second)?;
        if !fixed(b, second_end, close) {
            return None;
        }
        self.pos = second_end + C;
        let text = self.text;
        Some((&text[first..first_end], &text[second..second_end]))
    }

    /// An error at byte `at`.
    pub fn error_at(&self, at: usize, what: impl Into<String>) -> JsonError {
        let before = &self.bytes()[..at.min(self.text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        JsonError(Box::new(ErrorDetail {
            what: what.into(),
            at,
            line,
            column: at - line_start + 1,
        }))
    }

    /// An error at the current position.
    pub fn error(&self, what: impl Into<String>) -> JsonError {
        self.error_at(self.pos, what)
    }

    /// "expected `what`, found …" at the next value.
    pub fn expected(&mut self, what: &str) -> JsonError {
        let found = self.peek();
        self.error(format!("expected {what}, found {}", kind_of(found)))
    }

    fn skip_ws(&mut self) {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.pos).copied()
    }

    /// Consume `c` (after whitespace) or fail naming it.
    fn eat(&mut self, c: u8, what: &str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Only whitespace may follow the value just read.
    pub fn end(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the JSON value")),
        }
    }

    /// Whether the next value is `null`; consumes it if so.
    pub fn null(&mut self) -> Result<bool, JsonError> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal (expected true, false or null)"))
        }
    }

    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| false),
            _ => Err(self.expected("a boolean")),
        }
    }

    /// An unsigned integer that fits in 64 bits (no sign, fraction or exponent).
    pub fn u64(&mut self) -> Result<u64, JsonError> {
        let start = match self.peek() {
            Some(b'0'..=b'9') => self.pos,
            Some(b'-') => {
                let start = self.pos;
                self.number()?;
                return Err(self.error_at(
                    start,
                    "expected an unsigned integer, found a negative number",
                ));
            }
            _ => return Err(self.expected("an unsigned integer")),
        };
        let b = self.bytes();
        let mut value = 0u64;
        let mut i = start;
        let mut overflow = false;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(v) => value = v,
                None => overflow = true,
            }
            i += 1;
        }
        // Let the full number grammar judge leading zeros, fractions and exponents.
        self.number()?;
        if self.pos != i {
            return Err(self.error_at(
                start,
                "expected an unsigned integer, found a fraction or exponent",
            ));
        }
        if overflow {
            return Err(self.error_at(start, "number out of range of an unsigned 64-bit integer"));
        }
        Ok(value)
    }

    /// Skip a number, checking its grammar.
    fn number(&mut self) -> Result<(), JsonError> {
        let b = self.bytes();
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if b.get(i).is_some_and(u8::is_ascii_digit) {
                    return Err(self.error_at(i, "invalid number: leading zero"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(self.error_at(i, "invalid number: expected a digit")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return Err(self.error_at(i, "invalid number: expected a digit after `.`"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(self.error_at(i, "invalid number: expected a digit in the exponent"));
            }
        }
        self.pos = i;
        Ok(())
    }

    /// A string: borrowed from the text if it has no escapes, else an unescaped copy.
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.expected("a string"));
        }
        let open = self.pos;
        let start = open + 1;
        let b = self.bytes();
        let Some(n) = find_special(&b[start..]) else {
            return Err(self.error_at(b.len(), "unterminated string"));
        };
        let i = start + n;
        match b[i] {
            b'"' => {
                self.pos = i + 1;
                Ok(Cow::Borrowed(&self.text[start..i]))
            }
            b'\\' => {
                let mut owned = String::with_capacity(i - start + 16);
                owned.push_str(&self.text[start..i]);
                self.pos = i;
                self.escaped_rest(&mut owned)?;
                Ok(Cow::Owned(owned))
            }
            c => Err(self.error_at(
                i,
                format!("control character U+{c:04X} in a string (escape it)"),
            )),
        }
    }

    /// The rest of a string from an escape at `self.pos` on, appended unescaped to `out`.
    fn escaped_rest(&mut self, out: &mut String) -> Result<(), JsonError> {
        let b = self.bytes();
        loop {
            let i = self.pos;
            match b.get(i) {
                None => return Err(self.error_at(i, "unterminated string")),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let c = match b.get(i + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos = i + 2;
                            let c = self.unicode_escape(i)?;
                            out.push(c);
                            continue;
                        }
                        None => return Err(self.error_at(i + 1, "unterminated string")),
                        Some(_) => return Err(self.error_at(i, "invalid escape in a string")),
                    };
                    out.push(c);
                    self.pos = i + 2;
                }
                Some(&c) if c < 0x20 => {
                    return Err(self.error_at(
                        i,
                        format!("control character U+{c:04X} in a string (escape it)"),
                    ))
                }
                Some(_) => {
                    let n = find_special(&b[i..]).unwrap_or(b.len() - i);
                    out.push_str(&self.text[i..i + n]);
                    self.pos = i + n;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let b = self.bytes();
        let Some(digits) = b.get(self.pos..self.pos + 4) else {
            return Err(self.error_at(b.len(), "unterminated string"));
        };
        let mut v = 0u32;
        for (k, &d) in digits.iter().enumerate() {
            let x = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => {
                    return Err(
                        self.error_at(self.pos + k, "invalid \\u escape: expected 4 hex digits")
                    )
                }
            };
            v = v << 4 | u32::from(x);
        }
        self.pos += 4;
        Ok(v)
    }

    /// After `\u` (which started at `at`): one code point, joining a surrogate pair.
    fn unicode_escape(&mut self, at: usize) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.bytes()[self.pos..].starts_with(b"\\u") {
                    return Err(self.error_at(at, "lone leading surrogate in a \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error_at(at, "invalid surrogate pair in a \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.error_at(at, "lone trailing surrogate in a \\u escape"))
            }
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.error_at(at, "invalid \\u escape"))
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// An object: `member` is called with each key, the reader positioned at its value, and
    /// must consume that value.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.peek() != Some(b'{') {
            return Err(self.expected("an object"));
        }
        self.pos += 1;
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.expected("a string key"));
            }
            let key = self.string()?;
            self.eat(b':', "`:`")?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.expected("`,` or `}`")),
            }
        }
    }

    /// An array: `element` is called at each element and must consume it.
    pub fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.peek() != Some(b'[') {
            return Err(self.expected("an array"));
        }
        self.pos += 1;
        self.enter()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.expected("`,` or `]`")),
            }
        }
    }

    /// An array of strings.
    pub fn strings(&mut self) -> Result<Vec<Cow<'a, str>>, JsonError> {
        let mut out = Vec::new();
        self.array(|r| {
            out.push(r.string()?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Any value, checked and discarded.
    pub fn skip_value(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(|r, _| r.skip_value()),
            Some(b'[') => self.array(Reader::skip_value),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.expected("a value")),
        }
    }
}

/// Whether `s` can be written inside a JSON string literal as it is (no `"`, `\` or control
/// characters).
#[inline]
pub fn needs_no_escape(s: &str) -> bool {
    find_special(s.as_bytes()).is_none()
}

/// Whether a string to write may hold bytes JSON escapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escaping {
    /// Unknown: scanned, and escaped where needed ([`write_string`]).
    #[default]
    Scan,
    /// Known to hold no `"`, `\` or control character (the [`Reader`] found it so): copied
    /// between quotes without a scan.
    Plain,
}

/// Append `s` as a JSON string literal, as `escaping` says.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str, escaping: Escaping) {
    match escaping {
        Escaping::Scan => write_string(out, s),
        Escaping::Plain => {
            debug_assert!(needs_no_escape(s), "a plain string holds a byte to escape");
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
    }
}

/// Append `s` as a JSON string literal: copied whole when nothing needs escaping, else `"`,
/// `\`, `\n`, `\r`, `\t` get short escapes and other control characters `\u00XX`.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(n) = find_special(&bytes[start..]) {
        let i = start + n;
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Result<Cow<'_, str>, JsonError> {
        let mut r = Reader::new(text);
        let s = r.string()?;
        r.end()?;
        Ok(s)
    }

    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_owned() {
        assert!(matches!(
            string(r#""hello world""#),
            Ok(Cow::Borrowed("hello world"))
        ));
        assert!(matches!(string(r#""""#), Ok(Cow::Borrowed(""))));
        assert!(matches!(
            string("\"héllo ✓ 😀\""),
            Ok(Cow::Borrowed("héllo ✓ 😀"))
        ));
        let s = string(r#""a\"b\\c\/d\b\f\n\r\t e""#).unwrap();
        assert!(matches!(s, Cow::Owned(_)));
        assert_eq!(s, "a\"b\\c/d\u{8}\u{c}\n\r\t e");
    }

    #[test]
    fn unicode_escapes_decode_including_surrogate_pairs() {
        assert_eq!(string(r#""\u0041\u00e9\u2713""#).unwrap(), "Aé✓");
        assert_eq!(string(r#""x\ud83d\ude00y""#).unwrap(), "x😀y");
        assert_eq!(string(r#""\uD83D\uDE00""#).unwrap(), "😀");
        assert_eq!(string(r#""\u0000""#).unwrap(), "\0");
    }

    #[test]
    fn bad_strings_are_rejected_with_a_reason() {
        let cases = [
            (r#""abc"#, "unterminated string"),
            (r#""abc\"#, "unterminated string"),
            (r#""\u12"#, "unterminated string"),
            (r#""\q""#, "invalid escape"),
            (r#""\u12g4""#, "4 hex digits"),
            (r#""\ud800""#, "lone leading surrogate"),
            (r#""\ud800\u0041""#, "invalid surrogate pair"),
            (r#""\udc00""#, "lone trailing surrogate"),
            ("\"a\nb\"", "control character U+000A"),
            ("\"ab\\n\tc\"", "control character U+0009"),
            ("12", "expected a string, found a number"),
        ];
        for (text, want) in cases {
            let e = string(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn special_bytes_are_found_in_every_position_of_a_chunk() {
        for special in [b'"', b'\\', 0u8, 0x1f] {
            for len in 1..20 {
                for at in 0..len {
                    let mut v = vec![b'a'; len];
                    v[at] = special;
                    assert_eq!(find_special(&v), Some(at), "{special} at {at} of {len}");
                    // Bytes at and above 0x20 other than `"` and `\` are plain, including
                    // UTF-8 continuation bytes.
                    v[at] = 0xc3;
                    assert_eq!(find_special(&v), None);
                }
            }
        }
        assert_eq!(find_special(b"ab\"c\\"), Some(2));
    }

    #[test]
    fn unsigned_integers() {
        let num = |t: &str| {
            let mut r = Reader::new(t);
            let v = r.u64()?;
            r.end()?;
            Ok::<_, JsonError>(v)
        };
        assert_eq!(num("0"), Ok(0));
        assert_eq!(num(" 42 "), Ok(42));
        assert_eq!(num("18446744073709551615"), Ok(u64::MAX));
        for (text, want) in [
            ("18446744073709551616", "out of range"),
            ("99999999999999999999999", "out of range"),
            ("-1", "negative"),
            ("1.5", "fraction or exponent"),
            ("1e3", "fraction or exponent"),
            ("01", "leading zero"),
            ("1.", "after `.`"),
            ("\"1\"", "expected an unsigned integer, found a string"),
            ("1 2", "trailing characters"),
        ] {
            let e = num(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn skip_value_checks_the_grammar() {
        let skip = |t: &str| {
            let mut r = Reader::new(t);
            r.skip_value()?;
            r.end()
        };
        for ok in [
            r#"{"a":[1,-2.5e+3,true,false,null,{"b":"\u00e9"}],"c":{}}"#,
            "[]",
            " [ [ ] , { } ] ",
            "-0.0E-0",
        ] {
            assert_eq!(skip(ok), Ok(()), "{ok}");
        }
        for bad in [
            "[1,]",
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            "{1:2}",
            "tru",
            "nul",
            "+1",
            ".5",
            "[",
            "",
            "1e",
            "--1",
        ] {
            assert!(skip(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(skip(&deep), Ok(()));
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(skip(&deeper)
            .unwrap_err()
            .to_string()
            .contains("nested deeper"));
    }

    #[test]
    fn errors_say_where() {
        let mut r = Reader::new("{\n  \"a\" 1}");
        let e = r.object(|r, _| r.skip_value()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected `:`, found a number at line 2 column 7"
        );
        assert_eq!(
            e.in_field("x").to_string(),
            "field `x`: expected `:`, found a number at line 2 column 7"
        );
    }

    #[test]
    fn a_template_reads_its_exact_shape_or_consumes_nothing() {
        const PARTS: (&[u8; 6], &[u8; 7], &[u8; 2]) = (br#"{"a":""#, br#"","b":""#, br#""}"#);
        let mut r = Reader::new(r#" {"a":"x y","b":"é"},"#);
        assert_eq!(r.template(PARTS.0, PARTS.1, PARTS.2), Some(("x y", "é")));
        assert_eq!(r.peek(), Some(b','));
        for other in [
            r#"{"a": "x","b":"y"}"#,
            r#"{"b":"y","a":"x"}"#,
            r#"{"a":"x"","b":"y"}"#,
            r#"{"a":"x","b":"y
"}"#,
            r#"{"a":"x","b":"y" }"#,
            r#"{"a":"x","b":"y""#,
            r#"{"a":"x"#,
        ] {
            let mut r = Reader::new(other);
            assert_eq!(r.template(PARTS.0, PARTS.1, PARTS.2), None, "{other}");
            assert_eq!(r.position(), 0, "{other}");
        }
    }

    /// Extra bytes the escape of `c` takes.
    fn escape_len(c: char) -> usize {
        match c {
            '"' | '\\' | '\n' => 1,
            _ => 5,
        }
    }

    #[test]
    fn write_string_escapes_only_what_must_be_escaped() {
        let mut out = Vec::new();
        write_string(&mut out, "plain text é ✓ that is longer than a chunk");
        assert_eq!(
            out,
            "\"plain text é ✓ that is longer than a chunk\"".as_bytes()
        );
        out.clear();
        write_string(&mut out, "a\u{1}é\\\t\"\n\r\u{1f}");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, r#""a\u0001é\\\t\"\n\r\u001f""#);
        assert_eq!(
            serde_json::from_str::<String>(&s).unwrap(),
            "a\u{1}é\\\t\"\n\r\u{1f}"
        );
        // A special byte in any chunk or in the tail, at every offset around a chunk edge.
        for len in [15, 16, 17, 31, 32, 33, 64, 70] {
            for at in 0..len {
                let mut text: Vec<char> = "0123456789abcdef".chars().cycle().take(len).collect();
                for special in ['"', '\\', '\n', '\u{1}'] {
                    text[at] = special;
                    let text: String = text.iter().collect();
                    let mut out = Vec::new();
                    write_string(&mut out, &text);
                    let written = String::from_utf8(out).unwrap();
                    assert_eq!(serde_json::from_str::<String>(&written).unwrap(), text);
                    assert_eq!(written.len(), text.len() + 2 + escape_len(special));
                }
            }
        }
        assert!(needs_no_escape("hello é"));
        assert!(!needs_no_escape("a\"b"));
    }
}
