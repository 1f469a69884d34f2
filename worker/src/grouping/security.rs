//! Browser security reports (CSP, HPKP, Expect-CT, Expect-Staple) group by what was
//! violated and where, not by their free-text message.

use faultline_core::protocol::event::Event;
use serde_json::Value;

use super::component::Component;

/// A security report interface of the event, under its field name or legacy alias.
pub(crate) fn report<'e>(event: &'e Event, name: &str, alias: &str) -> Option<&'e Value> {
    event
        .other
        .get(name)
        .or_else(|| event.other.get(alias))
        .filter(|v| v.is_object())
}

fn str_field<'e>(v: &'e Value, key: &str) -> Option<&'e str> {
    v.get(key).and_then(Value::as_str)
}

const LOCAL: &str = "'self'";

/// Splits `scheme://netloc...` like Python's `urlsplit` (scheme lower-cased, netloc as
/// written).
fn split_url(value: &str) -> (String, &str) {
    let scheme_len = value.find(':').filter(|&i| {
        i > 0
            && value[..i].starts_with(|c: char| c.is_ascii_alphabetic())
            && value[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let Some(i) = scheme_len else {
        return (String::new(), "");
    };
    let rest = &value[i + 1..];
    let netloc = rest
        .strip_prefix("//")
        .map(|r| &r[..r.find(['/', '?', '#']).unwrap_or(r.len())])
        .unwrap_or("");
    (value[..i].to_ascii_lowercase(), netloc)
}

/// The blocked URI reduced to what identifies its origin: the host for web URLs,
/// `scheme:` for data/blob/extension sources, `'self'` for the page itself.
fn normalized_blocked_uri(value: &str) -> String {
    if value.is_empty() || value == LOCAL || value == "self" {
        return LOCAL.to_string();
    }
    let (scheme, netloc) = if value.contains(':') {
        split_url(value)
    } else {
        (value.to_string(), "")
    };
    if scheme == "http" || scheme == "https" {
        return netloc.to_string();
    }
    let mut out = String::new();
    // Schemes that carry an authority are written with `//` even when it is empty.
    let uses_netloc = matches!(
        scheme.as_str(),
        "" | "ftp"
            | "http"
            | "gopher"
            | "nntp"
            | "telnet"
            | "imap"
            | "wais"
            | "file"
            | "mms"
            | "https"
            | "shttp"
            | "snews"
            | "prospero"
            | "rtsp"
            | "rtspu"
            | "rsync"
            | "svn"
            | "svn+ssh"
            | "sftp"
            | "nfs"
            | "git"
            | "git+ssh"
            | "ws"
            | "wss"
    );
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if !netloc.is_empty() || (uses_netloc && !scheme.is_empty()) {
        out.push_str("//");
        out.push_str(netloc);
    }
    out
}

/// The `csp` component: the directive as a salt, then the local violation type or the
/// blocked origin.
pub(crate) fn csp(report: &Value) -> Component<'static> {
    let violated = str_field(report, "violated_directive");
    let effective = str_field(report, "effective_directive")
        .map(str::to_string)
        .or_else(|| {
            violated
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let uri = normalized_blocked_uri(str_field(report, "blocked_uri").unwrap_or(""));
    let local_violation = match violated {
        Some(v) if effective == "script-src" && uri == LOCAL => {
            if v.contains("'unsafe-inline'") {
                Some("'unsafe-inline'")
            } else if v.contains("'unsafe-eval'") {
                Some("'unsafe-eval'")
            } else {
                None
            }
        }
        _ => None,
    };
    let (violation, mut uri) = match local_violation {
        Some(kind) => (
            Component::text("violation", kind),
            Component::text("uri", uri),
        ),
        None => (
            Component::empty("violation").with_hint("not a local script violation"),
            Component::text("uri", uri),
        ),
    };
    if local_violation.is_some() {
        uri.exclude("violation takes precedence");
    }
    Component::of(
        "csp",
        vec![
            Component::text("salt", effective).with_hint("a static salt"),
            violation,
            uri,
        ],
    )
}

/// The component of a host-based report (`hpkp`, `expect-ct`, `expect-staple`).
pub(crate) fn host_report(id: &'static str, report: &Value) -> Component<'static> {
    let hostname = match str_field(report, "hostname") {
        Some(h) => Component::text("hostname", h.to_string()),
        None => Component::empty("hostname"),
    };
    Component::of(
        id,
        vec![
            Component::text("salt", id).with_hint("a static salt"),
            hostname,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_uris() {
        assert_eq!(normalized_blocked_uri(""), "'self'");
        assert_eq!(normalized_blocked_uri("self"), "'self'");
        assert_eq!(normalized_blocked_uri("https://YYY"), "YYY");
        assert_eq!(
            normalized_blocked_uri("http://example.com/lol.js"),
            "example.com"
        );
        assert_eq!(normalized_blocked_uri("data"), "data:");
        assert_eq!(normalized_blocked_uri("blob:http://x/1"), "blob:");
        assert_eq!(
            normalized_blocked_uri("chrome-extension://abc/x.js"),
            "chrome-extension://abc"
        );
    }

    #[test]
    fn csp_components() {
        let c = csp(
            &serde_json::json!({"effective_directive": "script-src", "blocked_uri": "https://cdn.example.com/x.js"}),
        );
        assert_eq!(
            c.hash(),
            Some(super::super::component::hash_strings([
                "script-src",
                "cdn.example.com"
            ]))
        );
        let c = csp(&serde_json::json!({
            "effective_directive": "script-src", "blocked_uri": "self",
            "violated_directive": "script-src 'self' 'unsafe-inline'"
        }));
        assert_eq!(
            c.hash(),
            Some(super::super::component::hash_strings([
                "script-src",
                "'unsafe-inline'"
            ]))
        );
    }
}
