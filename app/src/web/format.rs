//! Formatting for pages: times, counts, URL parts. Pure functions, so templates get
//! ready-made strings and never need a custom filter.

use chrono::{TimeZone, Utc};

/// Percent-encodes a value for a query string or path segment.
pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `3 min ago`, `5 h ago`, `12 days ago`; "in the future" for clock skew.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let secs = (now_ms - ms) / 1000;
    if secs < -60 {
        return "in the future".into();
    }
    let secs = secs.max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        86_400..=2_591_999 => {
            let d = secs / 86_400;
            format!("{d} day{} ago", if d == 1 { "" } else { "s" })
        }
        2_592_000..=31_535_999 => format!("{} mo ago", secs / 2_592_000),
        _ => format!("{} y ago", secs / 31_536_000),
    }
}

/// `2026-11-22 05:12:09 UTC`.
pub fn datetime(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "-".into(),
    }
}

/// ISO 8601 for `<time datetime>`.
pub fn iso(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => String::new(),
    }
}

/// `1.2k`, `3.4M`: dense counts for lists.
pub fn count(n: i64) -> String {
    match n {
        i64::MIN..=999 => n.to_string(),
        1000..=999_999 => trim_one(n as f64 / 1000.0, "k"),
        _ => trim_one(n as f64 / 1_000_000.0, "M"),
    }
}

fn trim_one(v: f64, unit: &str) -> String {
    if v >= 100.0 {
        format!("{}{unit}", v.round() as i64)
    } else {
        let s = format!("{v:.1}");
        format!("{}{unit}", s.trim_end_matches(".0"))
    }
}

/// `12.3 KB`.
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KB", n / 1024.0)
    } else {
        format!("{:.1} MB", n / 1024.0 / 1024.0)
    }
}

/// Cuts a string to at most `max` characters, with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// A JSON value as text for a table cell: strings bare, everything else as compact JSON.
pub fn json_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".into(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_dense() {
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1k");
        assert_eq!(count(1540), "1.5k");
        assert_eq!(count(154_000), "154k");
        assert_eq!(count(2_500_000), "2.5M");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(0, 30_000), "just now");
        assert_eq!(ago(0, 120_000), "2 min ago");
        assert_eq!(ago(0, 86_400_000), "1 day ago");
        assert_eq!(ago(100_000_000, 0), "in the future");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
