//! Issue titles and culprits, the way Sentry derives them.
//!
//! Title: `Type: first line of value` for errors (the crashing in-app function for
//! synthetic exceptions such as signals), the first line of the message otherwise,
//! `<unlabeled event>` when there is nothing. Culprit: the transaction when there is one,
//! else where the error happened according to the innermost in-app frame.

use faultline_core::protocol::event::{Event, Exception, Frame, Stacktrace};

use super::enhancers::ExceptionData;
use super::stacktrace::{StackContext, in_app_frames as frames_in_app};
use super::{exception_data, main_exception_index, stack_context};

/// Longest title kept (characters); longer ones end in `…`.
const MAX_TITLE: usize = 100;
/// Longest exception type kept in a title (characters).
const MAX_TYPE: usize = 128;
/// Longest culprit kept (characters).
const MAX_CULPRIT: usize = 200;

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn non_empty(stack: Option<&Stacktrace>) -> Option<&Stacktrace> {
    stack.filter(|s| !s.frames.is_empty())
}

/// The function of the crashing frame: the innermost in-app frame with a real function
/// name, else the innermost frame with one.
fn crash_function(
    event: &Event,
    main: Option<&Exception>,
    ctx: StackContext<'_>,
) -> Option<String> {
    let (stack, exc) = match main.and_then(|e| non_empty(e.stacktrace.as_ref())) {
        Some(s) => (s, main.map(exception_data).unwrap_or_default()),
        None => {
            let s = non_empty(event.stacktrace.as_ref()).or_else(|| {
                match event.threads.as_ref().map(|t| t.values.as_slice()) {
                    Some([only]) => non_empty(only.stacktrace.as_ref()),
                    _ => None,
                }
            })?;
            (s, ExceptionData::default())
        }
    };
    let frames = frames_in_app(stack, ctx, &exc);
    let usable = |f: &Frame| {
        f.function
            .as_deref()
            .is_some_and(|n| n != "<redacted>" && n != "<unknown>")
    };
    let mut fallback = None;
    for (frame, in_app) in frames.iter().rev().filter(|(f, _)| usable(f)) {
        if *in_app {
            return clean_function(frame, ctx);
        }
        fallback = fallback.or(Some(*frame));
    }
    fallback.and_then(|f| clean_function(f, ctx))
}

fn clean_function(frame: &Frame, ctx: StackContext<'_>) -> Option<String> {
    let function = frame.function.as_deref()?;
    if frame.raw_function.is_some() {
        return Some(function.to_string());
    }
    Some(super::stacktrace::trim_function_name(function, ctx.frame_platform(frame)).into_owned())
}

fn error_title(event: &Event, exc: &Exception, ctx: StackContext<'_>) -> String {
    if exc.mechanism.as_ref().and_then(|m| m.synthetic) == Some(true) {
        // A signal or OS error code says little; where it happened says more.
        return crash_function(event, Some(exc), ctx).unwrap_or_else(|| "<unknown>".to_string());
    }
    let ty = truncate(
        exc.ty
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or("Error"),
        MAX_TYPE,
    );
    match exc
        .value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(value) => {
            let first = value.lines().next().unwrap_or(value);
            format!("{ty}: {}", truncate(first, MAX_TITLE))
        }
        None => ty,
    }
}

fn frame_culprit(frame: &Frame, platform: Option<&str>) -> String {
    let platform = frame.platform.as_deref().or(platform);
    let function = frame.function.as_deref().unwrap_or("?");
    if matches!(platform, Some("objc" | "cocoa" | "native")) {
        return function.to_string();
    }
    let Some(location) = frame
        .module
        .as_deref()
        .or(frame.filename.as_deref())
        .filter(|l| !l.is_empty())
    else {
        return String::new();
    };
    if matches!(platform, Some("javascript" | "node")) {
        format!("{function}({location})")
    } else {
        format!("{location} in {function}")
    }
}

fn stack_culprit(event: &Event, ctx: StackContext<'_>) -> Option<String> {
    let (stack, exc) = if event.exceptions().is_empty() {
        (
            non_empty(event.stacktrace.as_ref())?,
            ExceptionData::default(),
        )
    } else {
        let last = event
            .exceptions()
            .iter()
            .rev()
            .find(|e| non_empty(e.stacktrace.as_ref()).is_some())?;
        (non_empty(last.stacktrace.as_ref())?, exception_data(last))
    };
    let mut fallback = None;
    for (frame, in_app) in frames_in_app(stack, ctx, &exc).into_iter().rev() {
        if in_app {
            let c = frame_culprit(frame, event.platform.as_deref());
            if !c.is_empty() {
                return Some(c);
            }
        } else if fallback.is_none() {
            fallback = Some(frame_culprit(frame, event.platform.as_deref()));
        }
    }
    fallback.filter(|c| !c.is_empty())
}

fn culprit(event: &Event, ctx: StackContext<'_>) -> Option<String> {
    if let Some(t) = event
        .transaction
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(truncate(t, MAX_CULPRIT));
    }
    // Synthetic exceptions (signals, OS codes) get no culprit.
    if event
        .main_exception()
        .and_then(|e| e.mechanism.as_ref())
        .and_then(|m| m.synthetic)
        == Some(true)
    {
        return None;
    }
    stack_culprit(event, ctx)
        .or_else(|| event.request.as_ref().and_then(|r| r.url.clone()))
        .filter(|c| !c.is_empty())
        .map(|c| truncate(&c, MAX_CULPRIT))
}

/// The title and culprit of an event (see the module documentation).
pub fn title_and_culprit(event: &Event) -> (String, Option<String>) {
    let ctx = stack_context(event);
    let exceptions = event.exceptions();
    let title = if !exceptions.is_empty() {
        let main = main_exception_index(exceptions).and_then(|i| exceptions.get(i));
        match main {
            Some(exc) => error_title(event, exc, ctx),
            None => "<unknown>".to_string(),
        }
    } else {
        let log = event.logentry.as_ref();
        let message = log
            .and_then(|l| l.formatted.as_deref())
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .or_else(|| {
                log.and_then(|l| l.message.as_deref())
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
            });
        match message {
            Some(m) => truncate(m.lines().next().unwrap_or(m), MAX_TITLE),
            None => "<unlabeled event>".to_string(),
        }
    };
    (title, culprit(event, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn error_titles_and_culprits() {
        let e = event(serde_json::json!({
            "platform": "python",
            "exception": {"values": [{"type": "ValueError", "value": "bad input\nsecond line", "stacktrace": {"frames": [
                {"function": "main", "module": "app.cli", "in_app": true},
                {"function": "parse", "module": "app.parse", "in_app": true},
                {"function": "loads", "module": "json", "abs_path": "/usr/lib/python3/site-packages/json/x.py", "in_app": false}
            ]}}]}
        }));
        assert_eq!(
            title_and_culprit(&e),
            (
                "ValueError: bad input".to_string(),
                Some("app.parse in parse".to_string())
            )
        );
    }

    #[test]
    fn transaction_wins_and_messages() {
        let e = event(
            serde_json::json!({"transaction": "/api/x", "logentry": {"formatted": "Disk full\nmore"}}),
        );
        assert_eq!(
            title_and_culprit(&e),
            ("Disk full".to_string(), Some("/api/x".to_string()))
        );
        assert_eq!(
            title_and_culprit(&Event::default()),
            ("<unlabeled event>".to_string(), None)
        );
    }

    #[test]
    fn synthetic_uses_crashing_function() {
        let e = event(serde_json::json!({
            "platform": "native",
            "exception": {"values": [{"type": "SIGSEGV", "value": "Segfault", "mechanism": {"type": "signalhandler", "synthetic": true},
                "stacktrace": {"frames": [
                    {"function": "main", "in_app": true},
                    {"function": "do_work(int)", "in_app": true},
                    {"function": "<unknown>"}
                ]}}]}
        }));
        assert_eq!(title_and_culprit(&e), ("do_work".to_string(), None));
    }

    #[test]
    fn javascript_culprit_and_long_values() {
        let long = "x".repeat(300);
        let e = event(serde_json::json!({
            "platform": "javascript",
            "exception": {"values": [{"type": "TypeError", "value": long, "stacktrace": {"frames": [
                {"function": "render", "filename": "/static/app.js", "in_app": true}
            ]}}]}
        }));
        let (title, culprit) = title_and_culprit(&e);
        assert_eq!(title.chars().count(), "TypeError: ".len() + MAX_TITLE + 1);
        assert_eq!(culprit.as_deref(), Some("render(/static/app.js)"));
    }
}
