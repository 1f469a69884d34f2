//! Message parameterization: messages and exception values are grouped by their shape,
//! not by the ids, numbers, addresses and dates they happen to contain.
//!
//! Behaviour follows Sentry's `normalize_message_for_grouping` (strategies/message.py and
//! parameterization.py): keep the first two non-empty lines (`...` appended when anything
//! was cut), then replace, leftmost first, each recognised value by a `<kind>`
//! placeholder. The kinds are tried in Sentry's priority order at every position, which is
//! what a single alternation of named groups gives us.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// Every placeholder kind, in the priority order Sentry's combined regex tries them.
const KINDS: &[&str] = &[
    "email",
    "url",
    "hostname",
    "ip",
    "uuid",
    "sha1",
    "md5",
    "date",
    "duration",
    "hex",
    "float",
    "int",
    "quoted_str",
    "quoted_identifier",
    "bool",
];

const MONTH: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const WEEKDAY: &str = "(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)";
const ZONE: &str = "(?:[-+]\\d{2}[0-5]\\d|UT|GMT|[ECMP][SD]T|[A-IK-Z])";
const OCTET: &str = "(?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])";
const H16: &str = "[0-9a-fA-F]{1,4}";

/// The most common top-level domains; the full list is thousands long and a hostname
/// with an unusual TLD simply stays as it is.
const TLDS: &str = "com|net|org|jp|de|uk|fr|br|it|ru|es|me|gov|pl|ca|au|cn|co|in|nl|edu|info|eu|ch|id|at|kr|cz|mx|be|tv|se|tr|tw|al|ua|ir|vn|cl|sk|ly|cc|to|no|fi|us|pt|dk|ar|hu|tk|gr|il|news|ro|my|biz|ie|za|nz|sg|ee|th|io|xyz|pe|bg|hk|rs|lt|link|ph|club|si|site|mobi|by|cat|wiki|la|ga|xxx|cf|hr|ng|jobs|online|kz|ug|gq|ae|is|lv|pro|fm|tips|ms|sa|app";

fn pattern_for(kind: &str) -> String {
    match kind {
        "email" => r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*".into(),
        "url" => r"\b(?:wss?|https?|ftp)://[^\s/$.?#].[^\s]*".into(),
        "hostname" => {
            let upper = TLDS.to_uppercase();
            format!(r"\b(?:[a-zA-Z0-9\-]{{1,63}}\.)+?(?:{upper}|{TLDS})\b")
        }
        "ip" => {
            let v4 = format!(r"(?:{OCTET}\.){{3}}{OCTET}");
            let v6 = [
                format!("(?:{H16}:){{7}}{H16}"),
                format!("(?:{H16}:){{1,7}}:"),
                format!("(?:{H16}:){{1,6}}:{H16}"),
                format!("(?:{H16}:){{1,5}}(?::{H16}){{1,2}}"),
                format!("(?:{H16}:){{1,4}}(?::{H16}){{1,3}}"),
                format!("(?:{H16}:){{1,3}}(?::{H16}){{1,4}}"),
                format!("(?:{H16}:){{1,2}}(?::{H16}){{1,5}}"),
                format!("{H16}:(?::{H16}){{1,6}}"),
                format!(":(?:(?::{H16}){{1,7}}|:)"),
                "fe80:(?::[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]+".to_string(),
                format!("::(?:ffff(?::0{{1,4}})?:)?{v4}"),
                format!(r"(?:{H16}:){{1,4}}:{v4}\b"),
            ]
            .join("|");
            format!(r"{v6}|\b{v4}\b")
        }
        "uuid" => r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b".into(),
        "sha1" => r"\b[0-9a-fA-F]{40}\b".into(),
        "md5" => r"\b[0-9a-fA-F]{32}\b".into(),
        "date" => [
            // RFC 822 / 1123
            format!(r"{WEEKDAY},\s\d{{1,2}}\s{MONTH}\s\d{{2,4}}\s\d{{1,2}}:\d{{1,2}}(?::\d{{1,2}})?\s{ZONE}"),
            // "Mon Jan 02, 1999", "Jan 02, 1999"
            format!(r"(?:{WEEKDAY}\s)?{MONTH}\s[0-3]\d,\s\d{{2,4}}"),
            // RFC 850
            format!(r"(?:Sunday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday),\s\d{{2}}-{MONTH}-\d{{2}}\s\d{{2}}:\d{{2}}:\d{{2}}\s(?:UT|GMT|[ECMP][SD]T|[A-IK-Z])"),
            // RFC 3339 (with optional fraction and offset)
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?(?:[+-]?\d{2}:\d{2})?".to_string(),
            // SQL-style datetime
            r"\d{4}-?[01]\d-?[0-3]\d\s[0-2]\d:[0-5]\d:[0-5]\d(?:\.\d+)?".to_string(),
            // kitchen clock, 12:30 / 12:30:15 / 12:30pm
            r"\d{1,2}:\d{2}(?::\d{2})?(?:[aApP][Mm])?".to_string(),
            r"\d{4}-[01]\d-[0-3]\d".to_string(),
            r"[0-2]\d:[0-5]\d:[0-5]\d".to_string(),
            // ctime, "Mon Jan 12 12:34:56 2012"
            format!(r"\b(?:{WEEKDAY}\s+)?{MONTH}\s+\d{{1,2}}\s+\d{{2}}:\d{{2}}:\d{{2}}\s+\d{{4}}"),
            format!(r"\b(?:{WEEKDAY},\s+)?(?:0[1-9]|[1-2]?\d|3[01])\s+{MONTH}\s+(?:19\d{{2}}|[2-9]\d{{3}})\s+(?:2[0-3]|[0-1]\d):[0-5]\d(?::(?:60|[0-5]\d))?\s+{ZONE}"),
            r"datetime\.datetime\(.*?\)".to_string(),
        ]
        .join("|"),
        "duration" => r"\b\d+ms|\d(?:\.\d+)?s\b".into(),
        "hex" => r"\b0[xX][0-9a-fA-F]+\b".into(),
        "float" => r"-\d+\.\d+\b|\b\d+\.\d+\b".into(),
        "int" => r"-\d+\b|\b\d+\b".into(),
        // Only the value half of `key=value` pairs; the `=` is part of the match (the regex
        // crate has no look-behind) and is written back.
        "quoted_str" => r#"='[^']+'|="[^"]+""#.into(),
        // Generated SQL identifiers (`RELEASE SAVEPOINT "s1400_x7"`).
        "quoted_identifier" => r#""[a-z0-9_]+""#.into(),
        "bool" => "=(?:True|true|False|false)".into(),
        _ => unreachable!("unknown placeholder kind"),
    }
}

static PARAMETERIZER: LazyLock<Regex> = LazyLock::new(|| {
    let alternation = KINDS
        .iter()
        .map(|k| format!("(?P<{k}>{})", pattern_for(k)))
        .collect::<Vec<_>>()
        .join("|");
    Regex::new(&alternation).unwrap_or_else(|e| panic!("parameterization regex: {e}"))
});

/// Python's `str.splitlines` line boundaries.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// The first two non-empty lines joined by `\n`, plus `...` when that is not the whole
/// message.
fn trim_to_two_lines(message: &str) -> Cow<'_, str> {
    let mut lines = Vec::with_capacity(2);
    let mut rest = message;
    while lines.len() < 2 && !rest.is_empty() {
        let (line, next) = match rest.find(is_line_break) {
            Some(i) => {
                let brk = rest[i..].chars().next().map_or(1, char::len_utf8);
                // `\r\n` is one boundary.
                let skip = if rest[i..].starts_with("\r\n") {
                    2
                } else {
                    brk
                };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, ""),
        };
        if !line.trim().is_empty() {
            lines.push(line);
        }
        rest = next;
    }
    if lines.len() == 1 && lines[0].len() == message.len() {
        return Cow::Borrowed(message);
    }
    let joined = lines.join("\n");
    if joined == message {
        Cow::Borrowed(message)
    } else {
        Cow::Owned(joined + "...")
    }
}

/// Whether an `ip` match stands alone: Sentry (since 2024) refuses matches glued to
/// identifiers, so `Foo::bar` or `SomeClass::method` are not read as IPv6 addresses.
fn ip_stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && !after.is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Normalizes a message or exception value for grouping: at most two lines, values
/// replaced by `<kind>` placeholders.
pub(crate) fn normalize_message(message: &str) -> Cow<'_, str> {
    let trimmed = trim_to_two_lines(message);
    let text: &str = &trimmed;
    let re = &*PARAMETERIZER;
    // The DFA answers "anything at all?" cheaply; captures are only needed when so.
    if !re.is_match(text) {
        return trimmed;
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut pos = 0;
    while pos <= text.len() {
        let Some(caps) = re.captures_at(text, pos) else {
            break;
        };
        let Some(whole) = caps.get(0) else { break };
        let Some(kind) = KINDS.iter().copied().find(|k| caps.name(k).is_some()) else {
            break;
        };
        if kind == "ip" && !ip_stands_alone(text, whole.start(), whole.end()) {
            // Retry one character further, as a look-behind would have.
            pos = whole.start()
                + text[whole.start()..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
            continue;
        }
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(&text[copied..whole.start()]);
        if matches!(kind, "quoted_str" | "bool") {
            buf.push('=');
        }
        buf.push('<');
        buf.push_str(kind);
        buf.push('>');
        copied = whole.end();
        // An empty match cannot happen with these patterns, but never loop forever.
        pos = if whole.end() > whole.start() {
            whole.end()
        } else {
            whole.end() + 1
        };
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
        None => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_message as n;

    #[test]
    fn numbers() {
        assert_eq!(
            n("testing testing 1, 2, 3"),
            "testing testing <int>, <int>, <int>"
        );
        assert_eq!(n("Test 1"), "Test <int>");
        assert_eq!(
            n("took -12 and 3.5 and -0.25"),
            "took <int> and <float> and <float>"
        );
        assert_eq!(n("user42 stays"), "user42 stays");
    }

    #[test]
    fn hex_and_hashes() {
        assert_eq!(
            n("Fatal Error: 0x40000015 / 0x00000001"),
            "Fatal Error: <hex> / <hex>"
        );
        assert_eq!(n("blob d41d8cd98f00b204e9800998ecf8427e"), "blob <md5>");
        assert_eq!(
            n("commit 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 gone"),
            "commit <sha1> gone"
        );
        assert_eq!(n("id 7f7aaadf-a006-4217-9ed5-5fbf8585c6c0"), "id <uuid>");
    }

    #[test]
    fn urls_emails_hosts_ips() {
        assert_eq!(
            n("Loading chunk 158 failed.\n(timeout: https://cdn.example.com/a/b.js)"),
            "Loading chunk <int> failed.\n(timeout: <url>"
        );
        assert_eq!(n("mail jane.doe@example.com now"), "mail <email> now");
        assert_eq!(
            n("connect to db.internal.example.com refused"),
            "connect to <hostname> refused"
        );
        assert_eq!(n("from 192.168.0.12 and ::1"), "from <ip> and <ip>");
        assert_eq!(n("call Foo::bar failed"), "call Foo::bar failed");
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(n("at 2024-01-02T03:04:05Z"), "at <date>");
        assert_eq!(n("at 2024-01-02 03:04:05.123"), "at <date>");
        assert_eq!(n("timeout after 250ms"), "timeout after <duration>");
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(n("name='Bob Smith' ok=true"), "name=<quoted_str> ok=<bool>");
        assert_eq!(n(r#"key="abc""#), "key=<quoted_str>");
        assert_eq!(n("'quoted' alone"), "'quoted' alone");
        assert_eq!(
            n(r#"SQL: RELEASE SAVEPOINT "s140078941939520_x761""#),
            "SQL: RELEASE SAVEPOINT <quoted_identifier>"
        );
    }

    #[test]
    fn keeps_two_lines() {
        assert_eq!(n("first\n\nsecond\nthird"), "first\nsecond...");
        assert_eq!(n("first\nsecond"), "first\nsecond");
        assert_eq!(n("first\r\nsecond"), "first\nsecond...");
        assert_eq!(n("only one"), "only one");
        assert_eq!(n(""), "");
    }
}
