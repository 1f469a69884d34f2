//! The issue search grammar of the issues list.
//!
//! A query is a list of whitespace-separated terms; a value may be double-quoted to hold
//! spaces (`message:"a b"`, `"connection reset"`).
//!
//! | term | meaning |
//! |---|---|
//! | `is:unresolved` / `is:resolved` / `is:ignored` / `is:all` | status (resolved includes "in next release") |
//! | `level:error` | the level (repeat for any of several) |
//! | `release:1.2.0`, `environment:prod`, any `key:value` | events of the issue carried that tag value |
//! | `user:42`, `user:alice@x.io`, `user.email:alice@x.io` | a user affected (id, email, username or ip) |
//! | `has:key` | some event of the issue carried the tag `key` |
//! | `trace:<32 hex>` | an event of the issue belongs to that OpenTelemetry trace |
//! | `!key:value` | the negation of a tag term |
//! | anything else | free text, every word must occur in the title or culprit |

/// Issue status filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Unresolved,
    Resolved,
    Ignored,
    All,
}

impl StatusFilter {
    /// The stored statuses this filter matches.
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            StatusFilter::Unresolved => &["unresolved"],
            StatusFilter::Resolved => &["resolved", "resolved_in_next_release"],
            StatusFilter::Ignored => &["ignored"],
            StatusFilter::All => &[],
        }
    }
}

/// A tag term: the issue has (or, negated, has not) one of `values` under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    pub key: String,
    /// Any of these values (the `user:` term tries each kind of identifier).
    pub values: Vec<String>,
    pub negated: bool,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Search {
    pub status: Option<StatusFilter>,
    pub levels: Vec<String>,
    pub tags: Vec<TagFilter>,
    pub has: Vec<String>,
    pub trace: Option<String>,
    /// Lower-cased words that must all occur in the title or culprit.
    pub text: Vec<String>,
}

/// A query that cannot be run; the message says which term and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

/// Longest query accepted, and most terms.
const MAX_QUERY: usize = 2000;
const MAX_TERMS: usize = 20;

const LEVELS: &[&str] = &["fatal", "error", "warning", "info", "debug", "sample"];

/// Splits into terms, honouring double quotes (`key:"a b"` and `"a b"`).
fn terms(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut had_quotes = false;
    for c in q.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                had_quotes = true;
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() || had_quotes {
                    out.push(std::mem::take(&mut cur));
                }
                had_quotes = false;
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses a query. An empty query means "unresolved issues" to the caller.
pub fn parse(q: &str) -> Result<Search, SearchError> {
    if q.len() > MAX_QUERY {
        return Err(SearchError(format!(
            "The search is too long (at most {MAX_QUERY} characters)."
        )));
    }
    let mut s = Search::default();
    let all = terms(q);
    if all.len() > MAX_TERMS {
        return Err(SearchError(format!(
            "The search has too many terms (at most {MAX_TERMS})."
        )));
    }
    for term in all {
        let (negated, body) = match term.strip_prefix('!') {
            Some(rest) if rest.contains(':') => (true, rest),
            _ => (false, term.as_str()),
        };
        // `http://...` is a URL to find in the text, not the tag `http`.
        let Some((key, value)) = body
            .split_once(':')
            .filter(|(k, v)| is_key(k) && !v.starts_with("//"))
        else {
            if !term.is_empty() {
                s.text.push(term.to_lowercase());
            }
            continue;
        };
        if value.is_empty() {
            return Err(SearchError(format!("\"{key}:\" needs a value.")));
        }
        let positive_only = |what: &str| {
            if negated {
                Err(SearchError(format!("\"!{what}:\" cannot be negated.")))
            } else {
                Ok(())
            }
        };
        match key {
            "is" => {
                positive_only("is")?;
                s.status = Some(match value {
                    "unresolved" => StatusFilter::Unresolved,
                    "resolved" => StatusFilter::Resolved,
                    "ignored" | "archived" => StatusFilter::Ignored,
                    "all" => StatusFilter::All,
                    other => {
                        return Err(SearchError(format!(
                            "\"is:{other}\" is unknown; use is:unresolved, is:resolved, is:ignored or is:all."
                        )));
                    }
                });
            }
            "level" => {
                positive_only("level")?;
                let v = value.to_lowercase();
                if !LEVELS.contains(&v.as_str()) {
                    return Err(SearchError(format!(
                        "\"level:{value}\" is unknown; use one of {}.",
                        LEVELS.join(", ")
                    )));
                }
                s.levels.push(v);
            }
            "has" => {
                positive_only("has")?;
                s.has.push(value.to_string());
            }
            "trace" | "trace_id" | "trace.id" => {
                positive_only("trace")?;
                let v = value.replace('-', "").to_lowercase();
                if v.len() != 32 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(SearchError(format!(
                        "\"trace:{value}\" is not a trace id (32 hexadecimal digits)."
                    )));
                }
                s.trace = Some(v);
            }
            "user" => s.tags.push(TagFilter {
                key: "user".into(),
                values: user_values(value),
                negated,
            }),
            "user.id" | "user.email" | "user.username" | "user.ip" => s.tags.push(TagFilter {
                key: "user".into(),
                values: vec![format!("{}:{value}", &key[5..])],
                negated,
            }),
            _ => s.tags.push(TagFilter {
                key: key.to_string(),
                values: vec![value.to_string()],
                negated,
            }),
        }
    }
    Ok(s)
}

/// A tag key: what SDKs use (letters, digits, `_ . - /`), so `http://x` stays free text.
fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 200
        && k.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
}

/// `user:` values: an explicit `id:`/`email:`/`username:`/`ip:` prefix, else every kind.
fn user_values(v: &str) -> Vec<String> {
    for prefix in ["id:", "email:", "username:", "ip:"] {
        if v.starts_with(prefix) {
            return vec![v.to_string()];
        }
    }
    ["id", "email", "username", "ip"]
        .iter()
        .map(|p| format!("{p}:{v}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> TagFilter {
        TagFilter {
            key: key.into(),
            values: vec![value.into()],
            negated: false,
        }
    }

    #[test]
    fn empty_query_filters_nothing() {
        assert_eq!(parse("").unwrap(), Search::default());
        assert_eq!(parse("   ").unwrap(), Search::default());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            parse("is:unresolved").unwrap().status,
            Some(StatusFilter::Unresolved)
        );
        assert_eq!(
            parse("is:resolved").unwrap().status,
            Some(StatusFilter::Resolved)
        );
        assert_eq!(
            parse("is:ignored").unwrap().status,
            Some(StatusFilter::Ignored)
        );
        assert_eq!(parse("is:all").unwrap().status, Some(StatusFilter::All));
        assert_eq!(
            StatusFilter::Resolved.statuses(),
            &["resolved", "resolved_in_next_release"]
        );
        let e = parse("is:sleeping").unwrap_err();
        assert!(e.0.contains("is:sleeping"), "{e}");
    }

    #[test]
    fn levels_are_checked_and_lowercased() {
        assert_eq!(
            parse("level:ERROR level:fatal").unwrap().levels,
            ["error", "fatal"]
        );
        assert!(parse("level:loud").is_err());
    }

    #[test]
    fn built_in_and_custom_tags() {
        let s = parse("release:1.2.0 environment:prod browser:\"Chrome 120\" server_name:web-1")
            .unwrap();
        assert_eq!(
            s.tags,
            vec![
                tag("release", "1.2.0"),
                tag("environment", "prod"),
                tag("browser", "Chrome 120"),
                tag("server_name", "web-1"),
            ]
        );
        assert!(s.text.is_empty());
    }

    #[test]
    fn release_versions_keep_their_colons_and_at_signs() {
        let s = parse("release:my-app@1.0.0+build:7").unwrap();
        assert_eq!(s.tags, vec![tag("release", "my-app@1.0.0+build:7")]);
    }

    #[test]
    fn user_terms_try_every_identifier() {
        let s = parse("user:alice@example.com").unwrap();
        assert_eq!(
            s.tags[0].values,
            [
                "id:alice@example.com",
                "email:alice@example.com",
                "username:alice@example.com",
                "ip:alice@example.com"
            ]
        );
        assert_eq!(parse("user:id:42").unwrap().tags[0].values, ["id:42"]);
        assert_eq!(
            parse("user.email:a@b.c").unwrap().tags[0].values,
            ["email:a@b.c"]
        );
    }

    #[test]
    fn has_and_trace() {
        let s = parse("has:user trace:4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(s.has, ["user"]);
        assert_eq!(s.trace.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(parse("trace:xyz").is_err());
        assert!(parse("trace:4bf92f3577b34da6a3ce929d0e0e473").is_err());
        // A UUID-shaped trace id is accepted.
        assert!(parse("trace:4bf92f35-77b3-4da6-a3ce-929d0e0e4736").is_ok());
    }

    #[test]
    fn free_text_and_quotes() {
        let s = parse("ZeroDivision \"connection reset\" is:unresolved").unwrap();
        assert_eq!(s.text, ["zerodivision", "connection reset"]);
        assert_eq!(s.status, Some(StatusFilter::Unresolved));
        // A URL is text, not a tag named "http".
        assert_eq!(parse("http://x/y").unwrap().text, ["http://x/y"]);
        // Markup is just text.
        assert_eq!(parse("<script>alert(1)</script>").unwrap().text.len(), 1);
    }

    #[test]
    fn negation() {
        let s = parse("!environment:staging").unwrap();
        assert_eq!(
            s.tags,
            vec![TagFilter {
                key: "environment".into(),
                values: vec!["staging".into()],
                negated: true
            }]
        );
        assert!(parse("!is:resolved").is_err());
        // A bare "!" word is text.
        assert_eq!(parse("!important").unwrap().text, ["!important"]);
    }

    #[test]
    fn garbage_is_refused_or_harmless() {
        assert!(parse("release:").is_err());
        assert!(parse(&"a ".repeat(30)).is_err());
        assert!(parse(&"x".repeat(3000)).is_err());
        assert!(parse("\"unterminated quote").is_ok());
        assert!(parse("%' OR 1=1 --").is_ok());
        assert!(parse("\u{0}:\u{0}").is_ok());
    }
}
