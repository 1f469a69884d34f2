//! Ingest's check that an item payload is JSON the worker will read: one pass over the
//! bytes, nothing built, and the top-level `event_id` picked up on the way.
//!
//! Ingest answers 200 only for payloads the worker can parse, because an accepted event the
//! worker then refuses is an event lost. The worker reads payloads with serde_json (typed
//! fields and `Value`s), so this check accepts exactly what `serde_json::from_slice::<Value>`
//! accepts: UTF-8 text, known escapes with paired UTF-16 surrogates, numbers that fit an
//! `f64`, at most [`MAX_NESTING`] levels of arrays and objects, nothing after the value.
//!
//! Why not serde_json itself: its fast way to skip a value (`IgnoredAny`, what ingest used)
//! checks neither UTF-8 inside strings, nor surrogate pairs, nor number range, nor depth, so
//! events with a lone `\ud800` or a `1e400` got a 200 and then died in the worker. A serde
//! walk that checks all of it costs ~8 µs on an 8 KB event, this scan about a quarter of
//! that (BENCHMARKS.md). Why not a faster JSON crate (simd-json, sonic-rs): what matters here
//! is refusing exactly what serde_json refuses, and they draw those lines (depth, surrogates,
//! number range) differently. The tests compare this check with serde_json on thousands of
//! mutated payloads, and the `json_check` fuzz target does the same on whatever it finds.

use std::fmt;

/// The deepest nesting of arrays and objects the worker's parser reads: serde_json's
/// recursion limit of 128 counts the value that reaches it.
pub const MAX_NESTING: usize = 127;

/// What a valid payload looks like from the outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The payload is a JSON object (events must be; security reports may be arrays).
    pub is_object: bool,
    /// The object's top-level `event_id` when it is a string (the last one, if repeated,
    /// as serde_json's `Value` keeps it).
    pub event_id: Option<String>,
}

/// Why a payload is not JSON the worker reads, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset into the payload.
    pub offset: usize,
    pub reason: Reason,
}

/// The kinds of [`JsonError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// The payload ends inside a value.
    Eof,
    /// Something that starts no JSON value.
    ExpectedValue,
    /// An object key that is not a string.
    ExpectedKey,
    /// A key not followed by `:`.
    ExpectedColon,
    /// A value not followed by `,` or the end of its array or object.
    ExpectedCommaOrEnd,
    /// A backslash escape JSON does not have, or a `\u` without four hex digits.
    InvalidEscape,
    /// A `\u` escape of half a UTF-16 surrogate pair.
    LoneSurrogate,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacter,
    /// A number that breaks JSON's grammar (`01`, `1.`, `-`, `1e`).
    InvalidNumber,
    /// A number too large for an `f64`.
    NumberOutOfRange,
    /// More than whitespace after the value.
    TrailingCharacters,
    /// Arrays and objects nested deeper than [`MAX_NESTING`].
    TooDeep,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "invalid UTF-8",
            Reason::Eof => "unexpected end of JSON",
            Reason::ExpectedValue => "expected a JSON value",
            Reason::ExpectedKey => "expected a string as object key",
            Reason::ExpectedColon => "expected `:` after an object key",
            Reason::ExpectedCommaOrEnd => "expected `,` or the end of an array or object",
            Reason::InvalidEscape => "invalid escape in a string",
            Reason::LoneSurrogate => "unpaired UTF-16 surrogate in a \\u escape",
            Reason::ControlCharacter => "control character inside a string",
            Reason::InvalidNumber => "invalid number",
            Reason::NumberOutOfRange => "number out of range",
            Reason::TrailingCharacters => "trailing characters after the JSON value",
            Reason::TooDeep => "arrays and objects nest more than 127 levels deep",
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason.describe(), self.offset)
    }
}

impl std::error::Error for JsonError {}

/// Checks that `json` is one JSON value serde_json parses, and reads its top-level
/// `event_id`.
pub fn check(json: &[u8]) -> Result<Checked, JsonError> {
    // Outside strings any byte above 0x7F breaks the grammar anyway, so checking the whole
    // payload at once is the same as checking each string (std's check is word-at-a-time).
    if let Err(e) = std::str::from_utf8(json) {
        return Err(JsonError {
            offset: e.valid_up_to(),
            reason: Reason::NotUtf8,
        });
    }
    Scanner { json, pos: 0 }.document()
}

/// The scanner's per-token functions are forced inline: called once per string, key and
/// separator, the calls cost ~20 % of the scan (5.3 vs 4.3 µs on the 8.8 KB bench event).
struct Scanner<'a> {
    json: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn document(mut self) -> Result<Checked, JsonError> {
        let mut checked = Checked::default();
        // Bit `d` says whether the container at depth `d + 1` is an array (else an object);
        // 127 levels fit in one u128, so no stack is allocated.
        let mut arrays: u128 = 0;
        let mut depth = 0usize;
        // Whether the value about to be read is the top-level object's `event_id`.
        let mut at_event_id = false;
        self.skip_whitespace();
        checked.is_object = self.peek() == Some(b'{');
        'value: loop {
            self.skip_whitespace();
            let capture = std::mem::take(&mut at_event_id);
            let Some(first) = self.peek() else {
                return self.fail(Reason::Eof);
            };
            if capture && first != b'"' {
                checked.event_id = None;
            }
            match first {
                b'{' | b'[' => {
                    if depth == MAX_NESTING {
                        return self.fail(Reason::TooDeep);
                    }
                    let is_array = first == b'[';
                    if is_array {
                        arrays |= 1u128 << depth;
                    } else {
                        arrays &= !(1u128 << depth);
                    }
                    depth += 1;
                    self.pos += 1;
                    self.skip_whitespace();
                    let close = if is_array { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        depth -= 1;
                    } else {
                        if !is_array {
                            at_event_id = self.key(depth)?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    let start = self.pos;
                    let escaped = self.string()?;
                    if capture {
                        checked.event_id = Some(self.decode_string(start, escaped));
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return self.fail(Reason::ExpectedValue),
            }
            // After a value: close what ends here, find where the next value starts.
            loop {
                self.skip_whitespace();
                if depth == 0 {
                    return if self.pos == self.json.len() {
                        Ok(checked)
                    } else {
                        self.fail(Reason::TrailingCharacters)
                    };
                }
                let in_array = (arrays >> (depth - 1)) & 1 == 1;
                match (self.peek(), in_array) {
                    (Some(b','), true) => {
                        self.pos += 1;
                        continue 'value;
                    }
                    (Some(b','), false) => {
                        self.pos += 1;
                        self.skip_whitespace();
                        at_event_id = self.key(depth)?;
                        continue 'value;
                    }
                    (Some(b']'), true) | (Some(b'}'), false) => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    (None, _) => return self.fail(Reason::Eof),
                    _ => return self.fail(Reason::ExpectedCommaOrEnd),
                }
            }
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    fn fail<T>(&self, reason: Reason) -> Result<T, JsonError> {
        Err(JsonError {
            offset: self.pos,
            reason,
        })
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Reads an object key and its `:`; true when it is the top-level `event_id`.
    #[inline(always)]
    fn key(&mut self, depth: usize) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b'"') => {}
            None => return self.fail(Reason::Eof),
            Some(_) => return self.fail(Reason::ExpectedKey),
        }
        let start = self.pos;
        let escaped = self.string()?;
        let is_event_id = depth == 1
            && if escaped {
                self.decode_string(start, true) == "event_id"
            } else {
                &self.json[start + 1..self.pos - 1] == b"event_id"
            };
        self.skip_whitespace();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(is_event_id)
            }
            None => self.fail(Reason::Eof),
            Some(_) => self.fail(Reason::ExpectedColon),
        }
    }

    /// Reads a string from its opening quote to past its closing one; true when it holds
    /// escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, JsonError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.skip_plain_string();
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return self.fail(Reason::ControlCharacter),
                None => return self.fail(Reason::Eof),
            }
        }
    }

    /// Moves to the next byte of a string that needs a look: `"`, `\` or a control
    /// character. Eight bytes at a time: the lowest flagged byte of a word is always a real
    /// match (a false flag can only sit above a real one), so the first match is exact.
    #[inline(always)]
    fn skip_plain_string(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
        let rest = self.json.get(self.pos..).unwrap_or_default();
        let mut words = rest.chunks_exact(8);
        let mut skipped = 0;
        for word in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let w = u64::from_le_bytes(bytes);
            let quote = w ^ (ONES * u64::from(b'"'));
            let backslash = w ^ (ONES * u64::from(b'\\'));
            let flagged = ((quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (w.wrapping_sub(ONES * 0x20) & !w))
                & HIGH_BITS;
            if flagged != 0 {
                self.pos += skipped + (flagged.trailing_zeros() / 8) as usize;
                return;
            }
            skipped += 8;
        }
        self.pos += skipped;
        for &b in words.remainder() {
            if b == b'"' || b == b'\\' || b < 0x20 {
                return;
            }
            self.pos += 1;
        }
    }

    /// Reads one escape, from its backslash on; a `\u` high surrogate must be followed by a
    /// `\u` low surrogate, and a low one must not come alone (as serde_json reads strings).
    fn escape(&mut self) -> Result<(), JsonError> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                match unit {
                    0xDC00..=0xDFFF => self.fail(Reason::LoneSurrogate),
                    0xD800..=0xDBFF => {
                        if self.json.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return self.fail(Reason::LoneSurrogate);
                        }
                        self.pos += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => self.fail(Reason::LoneSurrogate),
                        }
                    }
                    _ => Ok(()),
                }
            }
            None => self.fail(Reason::Eof),
            Some(_) => self.fail(Reason::InvalidEscape),
        }
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b) => (b as char).to_digit(16),
                None => return self.fail(Reason::Eof),
            };
            let Some(digit) = digit else {
                return self.fail(Reason::InvalidEscape);
            };
            unit = unit << 4 | digit as u16;
            self.pos += 1;
        }
        Ok(unit)
    }

    /// The text of the string that starts at `start` and ends before `self.pos`.
    fn decode_string(&self, start: usize, escaped: bool) -> String {
        let token = &self.json[start..self.pos];
        if escaped {
            // Rare (an escaped `event_id` key or value): serde_json unescapes it, and it
            // cannot fail on a string this scan has checked.
            serde_json::from_slice(token).unwrap_or_default()
        } else {
            String::from_utf8_lossy(&token[1..token.len() - 1]).into_owned()
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.json[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if word.starts_with(&self.json[self.pos..]) {
            self.pos = self.json.len();
            self.fail(Reason::Eof)
        } else {
            self.fail(Reason::ExpectedValue)
        }
    }

    /// Reads a number per JSON's grammar. Whether it fits an `f64` is left to serde_json
    /// itself, for the numbers where that is in question (an exponent, or more digits than
    /// an `f64`'s largest value has), so both agree on the boundary to the last digit.
    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return self.fail(Reason::InvalidNumber);
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            None => return self.fail(Reason::Eof),
            Some(_) => return self.fail(Reason::InvalidNumber),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        if (exponent || self.pos - start > 300)
            && serde_json::from_slice::<serde_json::Number>(&self.json[start..self.pos]).is_err()
        {
            return Err(JsonError {
                offset: start,
                reason: Reason::NumberOutOfRange,
            });
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            None => self.fail(Reason::Eof),
            Some(_) => self.fail(Reason::InvalidNumber),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// serde_json's verdict, the reference for every case.
    fn serde_accepts(json: &[u8]) -> bool {
        serde_json::from_slice::<Value>(json).is_ok()
    }

    fn agree(json: &[u8]) {
        assert_eq!(
            check(json).is_ok(),
            serde_accepts(json),
            "check: {:?}, serde_json: {:?}, on {:?}",
            check(json),
            serde_json::from_slice::<Value>(json).err(),
            String::from_utf8_lossy(json)
        );
    }

    /// The edge cases serde_json decides one way or the other, one by one.
    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        let cases: &[&[u8]] = &[
            b"{}",
            b" {\"a\" : [1, 2.5, -0, 1e5, 1E-5, 2.5e+3, true, false, null, \"x\"] } \n",
            b"[]",
            b"\"just a string\"",
            b"0",
            b"-",
            b"01",
            b"1.",
            b"1.e5",
            b".5",
            b"+1",
            b"1e",
            b"1e+",
            b"-01",
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"1.7976931348623157e308",
            b"1.7976931348623159e308",
            b"1797693134862315700000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000.5",
            b"18446744073709551616",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{1:2}",
            b"{\"a\":}",
            b"{} {}",
            b"{}x",
            b"",
            b"   ",
            b"tru",
            b"truex",
            b"nul",
            b"[true,fals]",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\ud800x\"",
            b"\"\\ud800\\n\"",
            b"\"\\uD83D\\uDE00\"",
            b"\"\\u00e9\\u0000\"",
            b"\"\\u12\"",
            b"\"\\u12g4\"",
            b"\"\\x\"",
            b"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
            b"\"tab\there\"",
            b"\"\x01\"",
            b"[\"a\x1f\"]",
            b"\"a long string with a control \x02 character past eight bytes\"",
            b"\"del\x7f is fine\"",
            b"\"caf\xc3\xa9\"",
            b"\"bad \xff byte\"",
            b"\"cut \xc3\"",
            b"\"\xe2\x82\"",
            b"{\"k\xff\":1}",
            b"\"unterminated",
            b"\"ends in escape\\",
            b"{\"a\":[{\"b\":[]}],\"c\":{}}",
            b"\xef\xbb\xbf{}",
            b"{\"a\":NaN}",
            b"[Infinity]",
        ];
        for case in cases {
            agree(case);
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in 120..135 {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let json = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                agree(json.as_bytes());
            }
        }
        let too_deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(
            check(too_deep.as_bytes()).map_err(|e| e.reason),
            Err(Reason::TooDeep)
        );
        // Wide is not deep.
        let wide = format!("{{\"x\": [{}]}}", vec!["[[]]"; 500].join(","));
        assert!(check(wide.as_bytes()).is_ok());
    }

    #[test]
    fn reads_the_top_level_event_id() {
        let id = |json: &str| check(json.as_bytes()).map(|c| c.event_id);
        assert_eq!(id(r#"{"event_id":"abc"}"#), Ok(Some("abc".into())));
        assert_eq!(id(r#"{"a":{"event_id":"inner"},"b":1}"#), Ok(None));
        assert_eq!(id(r#"{"a":[{"event_id":"inner"}]}"#), Ok(None));
        assert_eq!(id(r#"{"event_id":["x"]}"#), Ok(None));
        assert_eq!(id(r#"{"event_id":{"x":"y"}}"#), Ok(None));
        assert_eq!(id(r#"{"event_id":7}"#), Ok(None));
        assert_eq!(
            id(r#"{"event\u005fid":"esc\u0061ped"}"#),
            Ok(Some("escaped".into()))
        );
        assert_eq!(
            id(r#"{"event_id":"first","event_id":"last"}"#),
            Ok(Some("last".into()))
        );
        assert_eq!(id(r#"{"event_id":"first","event_id":null}"#), Ok(None));
        assert_eq!(id(r#"["event_id","x"]"#), Ok(None));
        let checked = check(br#"{"event_id":"abc"}"#).expect("valid");
        assert!(checked.is_object);
        assert!(!check(b"[1]").expect("valid").is_object);
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = check(b"{\"a\": \"\\ud800\"}").expect_err("lone surrogate");
        assert_eq!(err.reason, Reason::LoneSurrogate);
        assert_eq!(
            err.to_string(),
            "unpaired UTF-16 surrogate in a \\u escape at byte 13"
        );
        assert_eq!(
            check(b"{\"a\": 1e400}").map_err(|e| (e.reason, e.offset)),
            Err((Reason::NumberOutOfRange, 6))
        );
        assert_eq!(
            check(b"{\"a\": \"\xff\"}").map_err(|e| (e.reason, e.offset)),
            Err((Reason::NotUtf8, 7))
        );
    }

    /// Thousands of payloads made by breaking real events a byte at a time: this check and
    /// serde_json must agree on every one.
    #[test]
    fn agrees_with_serde_json_on_mutated_events() {
        let seeds: [&[u8]; 3] = [
            br#"{"event_id":"9f2c1e0b8c3a4d5e9f2c1e0b8c3a4d5e","level":"error","message":"caf\u00e9 \ud83d\ude00 \"quoted\" tab\t","exception":{"values":[{"type":"ValueError","value":"bad","stacktrace":{"frames":[{"lineno":12,"colno":-3,"in_app":true,"vars":{"x":1.5e-3,"y":null,"z":[]}}]}}]},"extra":{"big":18446744073709551616,"neg":-0.0}}"#,
            "{\"message\": \"plain ascii and \u{e9}\u{1F600}\", \"tags\": [[\"a\", \"b\"]], \"n\": [0, 10, 2E3]}".as_bytes(),
            b"[{\"a\":{\"b\":{\"c\":[1,[2,[3]]]}}}, \"\\/\\\\\", false]",
        ];
        let replacements: &[u8] = b"\"\\{}[]:,-+.eE0123456789 \x00\x1f\x7f\xc3\xa9\xffuntfl/";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut valid, mut invalid) = (0, 0);
        for seed in seeds {
            for position in 0..seed.len() {
                for _ in 0..12 {
                    let mut mutated = seed.to_vec();
                    let pick = replacements[(next() % replacements.len() as u64) as usize];
                    match next() % 3 {
                        0 => mutated[position] = pick,
                        1 => mutated.insert(position, pick),
                        _ => {
                            mutated.remove(position);
                        }
                    }
                    agree(&mutated);
                    if serde_accepts(&mutated) {
                        valid += 1;
                    } else {
                        invalid += 1;
                    }
                }
                agree(&seed[..position]);
            }
            agree(seed);
        }
        // Both verdicts are well represented, or the comparison proves little.
        assert!(
            valid > 1000 && invalid > 1000,
            "{valid} valid, {invalid} invalid"
        );
    }
}
