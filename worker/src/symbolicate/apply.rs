//! Rewriting an event's JavaScript frames with what the lookup found (pure CPU, no I/O).

use std::collections::HashSet;
use std::sync::Arc;

use faultline_core::protocol::event::{Event, Frame, ProcessingError, Stacktrace};
use serde_json::{Map, Value, json};

use super::files::{self, LocationError, MapError};
use super::{FileOutcome, Status, urls};

/// What happened to one frame, for the event page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrameReport {
    /// Where the frame is: `exception.values.0.stacktrace.frames.3`.
    pub path: String,
    /// The frame's file as the runtime reported it.
    pub abs_path: String,
    pub status: Status,
    /// A sentence saying why (empty when mapped).
    pub message: String,
}

/// A frame that source maps may apply to: JavaScript, with a file and a line.
pub fn is_js_frame(event_platform: Option<&str>, frame: &Frame) -> bool {
    let platform = frame.platform.as_deref().or(event_platform);
    if !matches!(platform, Some("javascript" | "node")) {
        return false;
    }
    if frame.lineno.is_none_or(|l| l == 0) {
        return false;
    }
    match frame_path(frame) {
        Some(p) => {
            !(p.starts_with("node:")
                || p.starts_with('<')
                || p == "native"
                || p == "[native code]"
                || p.starts_with("internal/"))
        }
        None => false,
    }
}

/// The frame's file URL, without the `async ` some old SDKs put in front.
pub fn frame_path(frame: &Frame) -> Option<&str> {
    let p = frame.abs_path.as_deref().or(frame.filename.as_deref())?;
    let p = p.strip_prefix("async ").unwrap_or(p).trim();
    (!p.is_empty()).then_some(p)
}

/// Every stack trace of the event, with the path to it and its `raw_stacktrace` slot.
pub fn for_each_stacktrace(
    event: &mut Event,
    mut f: impl FnMut(String, &mut Stacktrace, Option<&mut Option<Stacktrace>>),
) {
    if let Some(exceptions) = event.exception.as_mut() {
        for (i, e) in exceptions.values.iter_mut().enumerate() {
            if let Some(st) = e.stacktrace.as_mut() {
                f(
                    format!("exception.values.{i}.stacktrace"),
                    st,
                    Some(&mut e.raw_stacktrace),
                );
            }
        }
    }
    if let Some(threads) = event.threads.as_mut() {
        for (i, t) in threads.values.iter_mut().enumerate() {
            if let Some(st) = t.stacktrace.as_mut() {
                f(
                    format!("threads.values.{i}.stacktrace"),
                    st,
                    Some(&mut t.raw_stacktrace),
                );
            }
        }
    }
    if let Some(st) = event.stacktrace.as_mut() {
        f("stacktrace".to_owned(), st, None);
    }
}

/// What was found for a frame's file, by its path and debug id.
pub type Outcomes<'a> = dyn Fn(&str, Option<&str>) -> Option<Arc<FileOutcome>> + 'a;

/// Rewrites the event's JavaScript frames; `outcome` tells what was found for a frame's
/// file (by its path and debug id). Returns a report per JavaScript frame.
pub fn apply(event: &mut Event, outcome: &Outcomes<'_>) -> Vec<FrameReport> {
    let platform = event.platform.clone();
    let debug_ids = super::debug_ids(event);
    let mut reports = Vec::new();
    let mut errors: Vec<ProcessingError> = Vec::new();
    let mut seen_errors: HashSet<(String, String)> = HashSet::new();
    for_each_stacktrace(event, |path, st, raw_slot| {
        let raw = st.clone();
        let mut changed = false;
        // The original name at the caller's call site names the function it called.
        let mut caller_name: Option<String> = None;
        for (j, frame) in st.frames.iter_mut().enumerate() {
            if !is_js_frame(platform.as_deref(), frame) {
                caller_name = None;
                continue;
            }
            let Some(abs_path) = frame_path(frame).map(str::to_owned) else {
                continue;
            };
            let debug_id = debug_ids.get(&abs_path).map(String::as_str);
            let mut error = |ty: &str, url: &str, value: Value| {
                if seen_errors.insert((ty.to_owned(), url.to_owned())) {
                    errors.push(ProcessingError {
                        ty: ty.to_owned(),
                        name: Some(format!("{path}.frames.{j}")),
                        value: Some(value),
                    });
                }
            };
            let (status, message, name_here) = match outcome(&abs_path, debug_id).as_deref() {
                None => (
                    Status::LookupFailed,
                    "the file was not looked up".to_owned(),
                    None,
                ),
                Some(FileOutcome::Unmapped(status, message)) => {
                    if matches!(
                        status,
                        Status::DebugIdNotFound | Status::MissingSourcemap | Status::StorageError
                    ) {
                        error(
                            "js_no_source",
                            &abs_path,
                            json!({"url": abs_path, "reason": status.code(), "message": message}),
                        );
                    }
                    (*status, message.clone(), None)
                }
                Some(FileOutcome::Found(found)) => match &found.map {
                    Err(e) => {
                        let (status, ty) = match e {
                            MapError::TooLarge(_) => (Status::SourcemapTooLarge, "js_too_large"),
                            MapError::Unreadable(_) => (Status::StorageError, "js_no_source"),
                            _ => (Status::MalformedSourcemap, "js_invalid_source"),
                        };
                        error(
                            ty,
                            &found.map_url,
                            json!({"url": found.map_url, "reason": status.code(), "message": e.message()}),
                        );
                        (status, e.message(), None)
                    }
                    Ok(map) => {
                        let lineno = frame.lineno.unwrap_or(0);
                        let colno = frame.colno.unwrap_or(0);
                        match super::lookup_position(
                            found,
                            map,
                            lineno,
                            colno,
                            frame.function.as_deref(),
                        ) {
                            Ok(original) => {
                                let name = original.name.clone();
                                rewrite(frame, original, found, caller_name.take());
                                changed = true;
                                (Status::Symbolicated, String::new(), name)
                            }
                            Err(e) => {
                                let message = match e {
                                    LocationError::OutOfRange => format!(
                                        "line {lineno}, column {colno} is outside the minified file or its source map"
                                    ),
                                    LocationError::NoSource => format!(
                                        "the source map maps line {lineno}, column {colno} to no original source"
                                    ),
                                };
                                error(
                                    "js_invalid_sourcemap_location",
                                    &abs_path,
                                    json!({"url": abs_path, "row": lineno, "column": colno,
                                           "sourcemap": found.map_url, "message": message}),
                                );
                                (Status::InvalidLocation, message, None)
                            }
                        }
                    }
                },
            };
            if status != Status::Symbolicated {
                set_status(frame, status, &message);
            }
            caller_name = name_here;
            reports.push(FrameReport {
                path: format!("{path}.frames.{j}"),
                abs_path,
                status,
                message,
            });
        }
        if changed && let Some(slot) = raw_slot {
            *slot = Some(raw);
        }
    });
    event.errors.extend(errors);
    reports
}

fn data_mut(frame: &mut Frame) -> &mut Map<String, Value> {
    if !matches!(frame.data, Some(Value::Object(_))) {
        frame.data = Some(Value::Object(Map::new()));
    }
    match frame.data.as_mut() {
        Some(Value::Object(m)) => m,
        // Just made an object above.
        _ => unreachable!("frame data is an object"),
    }
}

fn set_status(frame: &mut Frame, status: Status, message: &str) {
    let data = data_mut(frame);
    data.insert("symbolicator_status".into(), json!(status.code()));
    data.insert("symbolicator_message".into(), json!(message));
}

fn rewrite(
    frame: &mut Frame,
    original: files::Original,
    found: &super::Found,
    caller_name: Option<String>,
) {
    let base = if found.map_url.starts_with("data:") {
        found.minified_url.as_str()
    } else {
        found.map_url.as_str()
    };
    let abs_path = urls::join(base, &original.source);
    let filename = urls::display_filename(&original.source, &abs_path);
    let vendor = is_vendor(&abs_path) || is_vendor(&filename);
    frame.function = original
        .function
        .or(caller_name)
        .or_else(|| frame.function.take());
    frame.lineno = Some(original.lineno);
    frame.colno = Some(original.colno);
    if let Some(line) = original.context_line {
        frame.pre_context = original.pre_context;
        frame.context_line = Some(line);
        frame.post_context = original.post_context;
    } else {
        // The SDK's context is the minified line; it stays in the raw frame.
        frame.pre_context.clear();
        frame.context_line = None;
        frame.post_context.clear();
    }
    if vendor {
        frame.in_app = Some(false);
    } else if abs_path.starts_with("webpack:") || abs_path.starts_with("app:") {
        frame.in_app = Some(true);
    }
    frame.abs_path = Some(abs_path);
    frame.filename = Some(filename);
    let data = data_mut(frame);
    data.insert("sourcemap".into(), json!(found.map_url_for_display()));
    data.insert("resolved_with".into(), json!(found.resolved_with));
    data.insert("symbolicated".into(), json!(true));
    data.insert(
        "symbolicator_status".into(),
        json!(Status::Symbolicated.code()),
    );
}

/// Dependencies and bundler internals are not the application's code.
fn is_vendor(path: &str) -> bool {
    path.contains("node_modules/")
        || path.contains("/~/")
        || path.starts_with("~/node_modules")
        || path.contains("webpack/bootstrap")
        || path.contains("webpack/runtime")
        || path.starts_with("(webpack)")
        || path.contains("/(webpack)/")
}

/// Puts the event back as the SDK sent it (before an earlier symbolication): frames from
/// `raw_stacktrace`, statuses and `js_*` errors removed.
pub fn unapply(event: &mut Event) {
    for_each_stacktrace(event, |_, st, raw_slot| {
        if let Some(raw) = raw_slot.and_then(Option::take) {
            *st = raw;
        }
        for frame in &mut st.frames {
            if let Some(Value::Object(data)) = frame.data.as_mut() {
                data.remove("symbolicator_status");
                data.remove("symbolicator_message");
                if data.is_empty() {
                    frame.data = None;
                }
            }
        }
    });
    event.errors.retain(|e| !e.ty.starts_with("js_"));
}
