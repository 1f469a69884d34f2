//! The issue search grammar, one for the pages and the Web API (`/api/0/.../issues/`).
//!
//! A query is a list of whitespace-separated terms; a value may be double-quoted to hold
//! spaces (`message:"a b"`, `"connection reset"`) or be a list (`level:[error, fatal]`, any
//! of them).
//!
//! | term | meaning |
//! |---|---|
//! | `is:unresolved` / `is:resolved` / `is:ignored` / `is:all` | status (resolved includes "in next release"; `muted` and `archived` mean ignored) |
//! | `level:error` | the level (repeat, or list, for any of several) |
//! | `release:1.2.0`, `environment:prod`, any `key:value` | events of the issue carried that tag value |
//! | `firstRelease:1.2.0` | the release the issue was first seen in |
//! | `user:42`, `user:alice@x.io`, `user.email:alice@x.io` | a user affected (id, email, username or ip) |
//! | `has:key` | some event of the issue carried the tag `key` |
//! | `trace:<32 hex>` | an event of the issue belongs to that OpenTelemetry trace |
//! | `assigned:me`, `assigned:none`, `assigned:<email>`, `assigned:user:<id>` | who the issue is assigned to |
//! | `is:assigned` / `is:unassigned` | assigned to anyone / to nobody |
//! | `!key:value` | the negation of a tag term |
//! | anything else | free text, every word must occur in the title or culprit |
//!
//! [`Search::condition`] turns a parsed search into one indexed SQL condition on `issues i`.

use sea_orm::Value;

use crate::sql::placeholders;

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

/// Who an `assigned:` / `is:assigned` term asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// The user searching.
    Me,
    Nobody,
    Anyone,
    UserId(i64),
    /// A user's email (lower-cased).
    Email(String),
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Search {
    pub status: Option<StatusFilter>,
    pub levels: Vec<String>,
    pub tags: Vec<TagFilter>,
    pub has: Vec<String>,
    /// `firstRelease:` versions, any of them.
    pub first_release: Vec<String>,
    pub trace: Option<String>,
    pub assigned: Option<Assigned>,
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

/// Splits into terms, honouring double quotes (`key:"a b"` and `"a b"`) and lists
/// (`key:[a, b]` is one term).
fn terms(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut had_quotes = false;
    let mut listed = false;
    for c in q.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                had_quotes = true;
            }
            // A list opens only as a term's value (`key:[`); elsewhere `[` is text.
            '[' if !quoted && cur.ends_with(':') => {
                listed = true;
                cur.push(c);
            }
            ']' if !quoted && listed => {
                listed = false;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted && !listed => {
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

/// A term's values: `[a, b]` (empty entries dropped) or the value itself.
fn values_of(v: &str) -> Vec<String> {
    match v.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None if v.is_empty() => vec![],
        None => vec![v.to_string()],
    }
}

/// The status filter an `is:` value (or the API's `?status=`) names.
pub fn status_filter(value: &str) -> Result<StatusFilter, SearchError> {
    Ok(match value {
        "unresolved" => StatusFilter::Unresolved,
        "resolved" => StatusFilter::Resolved,
        "ignored" | "archived" | "muted" => StatusFilter::Ignored,
        "all" => StatusFilter::All,
        other => {
            return Err(SearchError(format!(
                "\"is:{other}\" is unknown; use is:unresolved, is:resolved, is:ignored or is:all."
            )));
        }
    })
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
        if values_of(value).is_empty() {
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
            "is" if value == "assigned" || value == "unassigned" => {
                positive_only("is")?;
                s.assigned = Some(if value == "assigned" {
                    Assigned::Anyone
                } else {
                    Assigned::Nobody
                });
            }
            "is" => {
                positive_only("is")?;
                s.status = Some(status_filter(value)?);
            }
            "assigned" | "assigned_to" => {
                positive_only("assigned")?;
                let v = value.trim_start_matches('#').to_lowercase();
                let id = v.strip_prefix("user:").unwrap_or(&v).parse::<i64>().ok();
                s.assigned = Some(match (v.as_str(), id) {
                    ("me", _) => Assigned::Me,
                    ("none", _) | ("nobody", _) => Assigned::Nobody,
                    (_, Some(id)) => Assigned::UserId(id),
                    _ if v.contains('@') => Assigned::Email(v),
                    _ => {
                        return Err(SearchError(format!(
                            "\"assigned:{value}\" is unknown; use assigned:me, assigned:none or assigned:<email>."
                        )));
                    }
                });
            }
            "level" => {
                positive_only("level")?;
                for v in values_of(value) {
                    let v = v.to_lowercase();
                    if !LEVELS.contains(&v.as_str()) {
                        return Err(SearchError(format!(
                            "\"level:{v}\" is unknown; use one of {}.",
                            LEVELS.join(", ")
                        )));
                    }
                    s.levels.push(v);
                }
            }
            "has" => {
                positive_only("has")?;
                s.has.extend(values_of(value));
            }
            "firstRelease" | "first_release" | "first-release" => {
                positive_only(key)?;
                s.first_release.extend(values_of(value));
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
                values: values_of(value)
                    .iter()
                    .flat_map(|v| user_values(v))
                    .collect(),
                negated,
            }),
            "user.id" | "user.email" | "user.username" | "user.ip" => s.tags.push(TagFilter {
                key: "user".into(),
                values: values_of(value)
                    .iter()
                    .map(|v| format!("{}:{v}", &key[5..]))
                    .collect(),
                negated,
            }),
            _ => s.tags.push(TagFilter {
                key: key.to_string(),
                values: values_of(value),
                negated,
            }),
        }
    }
    Ok(s)
}

impl Search {
    /// The search as one SQL condition on `issues i` (parts joined by AND, `?`
    /// placeholders) and its values; `default_status` applies when the query has no `is:`.
    /// Every part is an indexed lookup: status on `issues`, tag terms through
    /// `issue_tag_values (key, value, issue_id)`, trace ids through `events (trace_id)`;
    /// free text is matched only within the rows the rest selects.
    /// `viewer` is the user searching (`assigned:me`); with none, `assigned:me` matches
    /// nothing.
    pub fn condition(
        &self,
        default_status: StatusFilter,
        viewer: Option<i64>,
    ) -> (String, Vec<Value>) {
        let mut parts: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let statuses = self.status.unwrap_or(default_status).statuses();
        if !statuses.is_empty() {
            parts.push(format!("i.status IN ({})", placeholders(statuses.len())));
            values.extend(statuses.iter().map(|s| Value::from(*s)));
        }
        if !self.levels.is_empty() {
            parts.push(format!("i.level IN ({})", placeholders(self.levels.len())));
            values.extend(self.levels.iter().map(|s| Value::from(s.clone())));
        }
        if !self.first_release.is_empty() {
            parts.push(format!(
                "i.first_release IN ({})",
                placeholders(self.first_release.len())
            ));
            values.extend(self.first_release.iter().map(|s| Value::from(s.clone())));
        }
        for tag in &self.tags {
            parts.push(format!(
                "i.id {}IN (SELECT issue_id FROM issue_tag_values WHERE key = ? AND value IN ({}))",
                if tag.negated { "NOT " } else { "" },
                placeholders(tag.values.len())
            ));
            values.push(tag.key.clone().into());
            values.extend(tag.values.iter().map(|v| Value::from(v.clone())));
        }
        for key in &self.has {
            parts.push("i.id IN (SELECT issue_id FROM issue_tag_values WHERE key = ?)".into());
            values.push(key.clone().into());
        }
        if let Some(trace) = &self.trace {
            parts.push("i.id IN (SELECT issue_id FROM events WHERE trace_id = ?)".into());
            values.push(trace.clone().into());
        }
        match &self.assigned {
            None => {}
            Some(Assigned::Anyone) => parts.push("i.assignee_id IS NOT NULL".into()),
            Some(Assigned::Nobody) => parts.push("i.assignee_id IS NULL".into()),
            Some(Assigned::Me) => {
                parts.push("i.assignee_id = ?".into());
                values.push(viewer.unwrap_or(-1).into());
            }
            Some(Assigned::UserId(id)) => {
                parts.push("i.assignee_id = ?".into());
                values.push((*id).into());
            }
            Some(Assigned::Email(email)) => {
                parts.push("i.assignee_id IN (SELECT id FROM users WHERE LOWER(email) = ?)".into());
                values.push(email.clone().into());
            }
        }
        for word in &self.text {
            let pattern = format!("%{}%", escape_like(word));
            parts.push(
                "(LOWER(i.title) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(i.culprit, '')) LIKE ? ESCAPE '\\')"
                    .into(),
            );
            values.push(pattern.clone().into());
            values.push(pattern.into());
        }
        (parts.join(" AND "), values)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    fn assignment_terms() {
        assert_eq!(parse("assigned:me").unwrap().assigned, Some(Assigned::Me));
        assert_eq!(
            parse("assigned:none").unwrap().assigned,
            Some(Assigned::Nobody)
        );
        assert_eq!(
            parse("assigned:Kim@Example.com").unwrap().assigned,
            Some(Assigned::Email("kim@example.com".into()))
        );
        assert_eq!(
            parse("assigned:user:7").unwrap().assigned,
            Some(Assigned::UserId(7))
        );
        let s = parse("is:assigned").unwrap();
        assert_eq!((s.assigned, s.status), (Some(Assigned::Anyone), None));
        assert_eq!(
            parse("is:unassigned").unwrap().assigned,
            Some(Assigned::Nobody)
        );
        assert!(parse("assigned:#team").is_err());
        assert!(parse("!assigned:me").is_err());
        let (sql, values) = parse("assigned:me")
            .unwrap()
            .condition(StatusFilter::All, Some(5));
        assert_eq!(sql, "i.assignee_id = ?");
        assert_eq!(values, vec![sea_orm::Value::from(5i64)]);
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

    #[test]
    fn sentry_lists_and_aliases() {
        let s = parse("level:[error, FATAL] release:[1.0,2.0] is:muted firstRelease:1.0").unwrap();
        assert_eq!(s.levels, ["error", "fatal"]);
        assert_eq!(s.tags[0].values, ["1.0", "2.0"]);
        assert_eq!(s.status, Some(StatusFilter::Ignored));
        assert_eq!(s.first_release, ["1.0"]);
        assert_eq!(
            parse("user:[u1,id:2]").unwrap().tags[0].values,
            ["id:u1", "email:u1", "username:u1", "ip:u1", "id:2"]
        );
        assert!(parse("level:[]").is_err());
        assert!(parse("level:[error,loud]").is_err());
        // `[` elsewhere is text, and does not swallow the rest of the query.
        assert_eq!(parse("[x] y").unwrap().text, ["[x]", "y"]);
    }

    #[test]
    fn condition_is_one_indexed_where_clause() {
        let s = parse("level:error !environment:staging has:user 50%_off").unwrap();
        let (sql, values) = s.condition(StatusFilter::Unresolved, None);
        assert_eq!(
            sql,
            "i.status IN (?) AND i.level IN (?) AND i.id NOT IN (SELECT issue_id FROM \
             issue_tag_values WHERE key = ? AND value IN (?)) AND i.id IN (SELECT issue_id \
             FROM issue_tag_values WHERE key = ?) AND (LOWER(i.title) LIKE ? ESCAPE '\\' OR \
             LOWER(COALESCE(i.culprit, '')) LIKE ? ESCAPE '\\')"
        );
        assert_eq!(values.len(), 7);
        assert_eq!(values[5], Value::from("%50\\%\\_off%"));
        // The default status applies only without `is:`; `is:all` filters nothing.
        assert_eq!(Search::default().condition(StatusFilter::All, None).0, "");
        assert_eq!(
            parse("is:all")
                .unwrap()
                .condition(StatusFilter::Unresolved, None)
                .0,
            ""
        );
        assert_eq!(
            parse("is:resolved")
                .unwrap()
                .condition(StatusFilter::All, None)
                .1
                .len(),
            2
        );
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
