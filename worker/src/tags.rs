//! The tag values an event contributes to its issue's facets and to tag search.

use faultline_core::protocol::event::Event;
use serde_json::Value;

/// Longest tag value kept (Sentry's limit).
const MAX_VALUE: usize = 200;

/// The event's own tags, then the built-in ones Sentry derives (level, release,
/// environment, browser, os, runtime, server_name, url, user, handled), one value per key.
pub fn event_tags(event: &Event) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = Vec::with_capacity(event.tags.len() + 10);
    let push = |tags: &mut Vec<(String, String)>, key: &str, value: &str| {
        let value = value.trim();
        if key.is_empty() || value.is_empty() || tags.iter().any(|(k, _)| k == key) {
            return;
        }
        tags.push((truncate(key, 32 * 4), truncate(value, MAX_VALUE)));
    };
    for (k, v) in &event.tags {
        push(&mut tags, k, v);
    }
    push(&mut tags, "level", event.level.unwrap_or_default().as_str());
    if let Some(v) = &event.release {
        push(&mut tags, "release", v);
    }
    if let Some(v) = &event.environment {
        push(&mut tags, "environment", v);
    }
    for (context, tag) in [("browser", "browser"), ("os", "os"), ("runtime", "runtime")] {
        if let Some(v) = context_name_version(event, context) {
            push(&mut tags, tag, &v);
        }
    }
    if let Some(v) = &event.server_name {
        push(&mut tags, "server_name", v);
    }
    if let Some(url) = event.request.as_ref().and_then(|r| r.url.as_deref()) {
        push(&mut tags, "url", url);
    }
    if let Some(user) = event.user.as_ref().and_then(|u| u.identifier()) {
        push(&mut tags, "user", &user);
    }
    if let Some(handled) = event
        .main_exception()
        .and_then(|e| e.mechanism.as_ref())
        .and_then(|m| m.handled)
    {
        push(&mut tags, "handled", if handled { "yes" } else { "no" });
    }
    tags
}

/// The tags a stored event contributed when it was stored, read back from its payload
/// (zstd JSON of the normalized event, which `event_tags` read before it was written);
/// none if the payload cannot be read. An unmerge recounts tag values with it.
pub fn stored_event_tags(payload: &[u8]) -> Vec<(String, String)> {
    let Ok(json) = faultline_core::compress::unzstd(payload, 64 * 1024 * 1024) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_slice::<Value>(&json) else {
        return Vec::new();
    };
    Event::from_value(value)
        .map(|e| event_tags(&e))
        .unwrap_or_default()
}

/// `Chrome 120.0` from `contexts.browser = {name, version}`.
fn context_name_version(event: &Event, key: &str) -> Option<String> {
    let ctx = event.contexts.as_ref()?.get(key)?;
    let name = ctx.get("name").and_then(Value::as_str)?;
    match ctx.get("version").and_then(Value::as_str) {
        Some(version) => Some(format!("{name} {version}")),
        None => Some(name.to_string()),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::protocol::event::{Level, User};

    #[test]
    fn own_tags_first_then_builtins_once_each() {
        let mut contexts = serde_json::Map::new();
        contexts.insert(
            "browser".into(),
            serde_json::json!({"name": "Chrome", "version": "120.0"}),
        );
        let event = Event {
            tags: vec![
                ("environment".into(), "custom".into()),
                ("feature".into(), "x".into()),
            ],
            level: Some(Level::Warning),
            environment: Some("production".into()),
            release: Some("1.0".into()),
            user: Some(User {
                email: Some("a@b.c".into()),
                ..Default::default()
            }),
            contexts: Some(contexts),
            ..Default::default()
        };
        let tags = event_tags(&event);
        let get = |k: &str| {
            tags.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("environment"),
            Some("custom"),
            "the event's own tag wins"
        );
        assert_eq!(get("feature"), Some("x"));
        assert_eq!(get("level"), Some("warning"));
        assert_eq!(get("release"), Some("1.0"));
        assert_eq!(get("browser"), Some("Chrome 120.0"));
        assert_eq!(get("user"), Some("email:a@b.c"));
        assert_eq!(tags.iter().filter(|(k, _)| k == "environment").count(), 1);
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(300);
        let event = Event {
            tags: vec![("k".into(), long)],
            ..Default::default()
        };
        let tags = event_tags(&event);
        assert!(tags[0].1.len() <= MAX_VALUE);
    }
}
