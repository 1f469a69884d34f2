//! An event turned into what the event section of the issue page shows: exception chain,
//! stack traces (in-app frames open, library frames folded), breadcrumbs, request, user,
//! contexts, tags, SDK. All values stay plain text; the template escapes them.

use faultline_core::protocol::event::{Event, Exception, Frame, Stacktrace};
use serde_json::Value;

use super::format;

/// Longest text shown for one value (a frame local, a breadcrumb's data, ...).
const MAX_VALUE: usize = 2000;

/// A line of source context.
#[derive(Debug, Clone)]
pub struct SourceLine {
    pub lineno: u64,
    pub text: String,
    pub current: bool,
}

/// A stack frame.
#[derive(Debug, Clone)]
pub struct FrameView {
    /// `app/views.py` (or the module, or `<unknown>`).
    pub file: String,
    pub function: String,
    /// `in app` frames are the user's code.
    pub in_app: bool,
    pub location: String,
    pub module: String,
    pub package: String,
    pub source: Vec<SourceLine>,
    pub vars: Vec<(String, String)>,
    /// Whether there is anything to unfold.
    pub has_detail: bool,
    /// Shown unfolded: the most recent in-app frame with source or locals.
    pub open: bool,
}

/// Consecutive frames of one kind: in-app frames are shown open, library frames folded.
#[derive(Debug, Clone)]
pub struct FrameGroup {
    pub in_app: bool,
    pub frames: Vec<FrameView>,
}

/// One exception of the chain.
#[derive(Debug, Clone)]
pub struct ExceptionView {
    pub ty: String,
    pub value: String,
    pub module: String,
    pub mechanism: String,
    /// `Some(false)` marks an unhandled exception.
    pub handled: Option<bool>,
    /// Frames most recent call first, grouped.
    pub groups: Vec<FrameGroup>,
    pub frame_count: usize,
}

/// A breadcrumb line.
#[derive(Debug, Clone)]
pub struct CrumbView {
    pub time: String,
    pub category: String,
    pub level: String,
    pub message: String,
    pub data: String,
}

/// A titled list of key/value rows (request, user, one context, SDK).
#[derive(Debug, Clone)]
pub struct KvSection {
    pub title: String,
    pub rows: Vec<(String, String)>,
}

/// The event, ready for the template.
#[derive(Debug, Clone, Default)]
pub struct EventView {
    pub message: String,
    pub exceptions: Vec<ExceptionView>,
    /// The stack of a thread or a bare `stacktrace` when there is no exception.
    pub thread_stack: Vec<FrameGroup>,
    pub breadcrumbs: Vec<CrumbView>,
    pub request: Option<KvSection>,
    pub request_headers: Vec<(String, String)>,
    pub user: Option<KvSection>,
    pub contexts: Vec<KvSection>,
    pub tags: Vec<(String, String)>,
    pub extra: Vec<(String, String)>,
    pub sdk: Option<KvSection>,
    pub trace_id: String,
    /// Whether any exception or thread carries a `raw_stacktrace` (source maps applied).
    pub has_raw: bool,
    pub release: String,
    pub environment: String,
    pub platform: String,
    pub errors: Vec<String>,
}

fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn frame_view(f: &Frame, treat_all_in_app: bool) -> FrameView {
    let file = f
        .filename
        .clone()
        .or_else(|| f.abs_path.clone())
        .or_else(|| f.module.clone())
        .unwrap_or_else(|| "<unknown>".into());
    let mut location = String::new();
    if let Some(l) = f.lineno {
        location = format!("line {l}");
        if let Some(c) = f.colno {
            location.push_str(&format!(", column {c}"));
        }
    }
    let mut source = Vec::new();
    if let (Some(lineno), Some(line)) = (f.lineno, &f.context_line) {
        let pre_len = f.pre_context.len() as u64;
        for (i, t) in f.pre_context.iter().enumerate() {
            source.push(SourceLine {
                lineno: (lineno + i as u64).saturating_sub(pre_len),
                text: format::truncate(t, 500),
                current: false,
            });
        }
        source.push(SourceLine {
            lineno,
            text: format::truncate(line, 500),
            current: true,
        });
        for (i, t) in f.post_context.iter().enumerate() {
            source.push(SourceLine {
                lineno: lineno + 1 + i as u64,
                text: format::truncate(t, 500),
                current: false,
            });
        }
    }
    let vars: Vec<(String, String)> = match &f.vars {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    format::truncate(&format::json_value(v), MAX_VALUE),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    FrameView {
        has_detail: !source.is_empty() || !vars.is_empty(),
        open: false,
        file,
        function: s(&f.function).if_empty("<anonymous>"),
        in_app: treat_all_in_app || f.in_app == Some(true),
        location,
        module: s(&f.module),
        package: s(&f.package),
        source,
        vars,
    }
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}
impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

/// Frames most recent first, in groups of consecutive in-app / library frames. When no
/// frame says it is in-app, every frame is treated as in-app (nothing would show otherwise).
pub fn group_frames(st: &Stacktrace) -> Vec<FrameGroup> {
    let any_in_app = st.frames.iter().any(|f| f.in_app == Some(true));
    let mut groups: Vec<FrameGroup> = Vec::new();
    for f in st.frames.iter().rev() {
        let v = frame_view(f, !any_in_app);
        match groups.last_mut() {
            Some(g) if g.in_app == v.in_app => g.frames.push(v),
            _ => groups.push(FrameGroup {
                in_app: v.in_app,
                frames: vec![v],
            }),
        }
    }
    if let Some(f) = groups
        .iter_mut()
        .filter(|g| g.in_app)
        .flat_map(|g| g.frames.iter_mut())
        .find(|f| f.has_detail)
    {
        f.open = true;
    }
    groups
}

fn exception_view(e: &Exception, raw: bool) -> ExceptionView {
    let st = if raw {
        e.raw_stacktrace.as_ref().or(e.stacktrace.as_ref())
    } else {
        e.stacktrace.as_ref()
    };
    let groups = st.map(group_frames).unwrap_or_default();
    let mechanism = e.mechanism.as_ref();
    ExceptionView {
        ty: s(&e.ty).if_empty("Error"),
        value: s(&e.value),
        module: s(&e.module),
        mechanism: mechanism.and_then(|m| m.ty.clone()).unwrap_or_default(),
        handled: mechanism.and_then(|m| m.handled),
        frame_count: st.map(|s| s.frames.len()).unwrap_or(0),
        groups,
    }
}

fn kv_object(title: &str, v: &Value) -> KvSection {
    let rows = match v {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| k.as_str() != "type")
            .map(|(k, v)| {
                (
                    k.clone(),
                    format::truncate(&format::json_value(v), MAX_VALUE),
                )
            })
            .collect(),
        other => vec![(
            "value".into(),
            format::truncate(&format::json_value(other), MAX_VALUE),
        )],
    };
    KvSection {
        title: title.to_string(),
        rows,
    }
}

fn push(rows: &mut Vec<(String, String)>, k: &str, v: &Option<String>) {
    if let Some(v) = v {
        rows.push((k.to_string(), format::truncate(v, MAX_VALUE)));
    }
}

fn pairs_text(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|p| match p {
                Value::Array(kv) if kv.len() == 2 => Some(format!(
                    "{}={}",
                    format::json_value(&kv[0]),
                    format::json_value(&kv[1])
                )),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("&"),
        other => format::json_value(other),
    }
}

/// Builds the view of an event; `raw` shows the minified (pre-source-map) frames.
pub fn build(event: &Event, raw: bool) -> EventView {
    let mut v = EventView {
        message: event
            .message()
            .map(|m| format::truncate(m, 10_000))
            .unwrap_or_default(),
        release: s(&event.release),
        environment: s(&event.environment),
        platform: s(&event.platform),
        trace_id: event.trace_id().unwrap_or_default().to_string(),
        ..Default::default()
    };
    // Newest (the one raised last) first, as people read a chain.
    for e in event.exceptions().iter().rev() {
        v.has_raw |= e.raw_stacktrace.is_some();
        v.exceptions.push(exception_view(e, raw));
    }
    if v.exceptions.is_empty() {
        let thread_stack = event
            .threads
            .as_ref()
            .and_then(|t| {
                t.values
                    .iter()
                    .find(|t| t.crashed == Some(true) || t.current == Some(true))
                    .or(t.values.first())
            })
            .and_then(|t| {
                if raw {
                    t.raw_stacktrace.as_ref().or(t.stacktrace.as_ref())
                } else {
                    t.stacktrace.as_ref()
                }
            })
            .or(event.stacktrace.as_ref());
        if let Some(st) = thread_stack {
            v.thread_stack = group_frames(st);
        }
    }
    if let Some(t) = &event.threads {
        v.has_raw |= t.values.iter().any(|t| t.raw_stacktrace.is_some());
    }
    // Breadcrumbs: newest last, as they happened (Sentry shows the last 100).
    let crumbs = event.breadcrumbs();
    let skip = crumbs.len().saturating_sub(100);
    for b in &crumbs[skip..] {
        v.breadcrumbs.push(CrumbView {
            time: b
                .timestamp
                .map(|t| t.format("%H:%M:%S%.3f").to_string())
                .unwrap_or_default(),
            category: b
                .category
                .clone()
                .or_else(|| b.ty.clone())
                .unwrap_or_else(|| "default".into()),
            level: b
                .level
                .map(|l| l.as_str().to_string())
                .unwrap_or_else(|| "info".into()),
            message: format::truncate(&s(&b.message), MAX_VALUE),
            data: b
                .data
                .as_ref()
                .filter(|d| !d.as_object().is_some_and(|o| o.is_empty()))
                .map(|d| format::truncate(&serde_json::to_string(d).unwrap_or_default(), MAX_VALUE))
                .unwrap_or_default(),
        });
    }
    if let Some(r) = &event.request {
        let mut rows = Vec::new();
        push(&mut rows, "url", &r.url);
        push(&mut rows, "method", &r.method);
        if let Some(q) = &r.query_string {
            rows.push(("query".into(), format::truncate(&pairs_text(q), MAX_VALUE)));
        }
        if let Some(d) = &r.data {
            rows.push((
                "data".into(),
                format::truncate(&format::json_value(d), MAX_VALUE),
            ));
        }
        if let Some(c) = &r.cookies {
            rows.push((
                "cookies".into(),
                format::truncate(&pairs_text(c), MAX_VALUE),
            ));
        }
        if let Some(env) = &r.env {
            for (k, val) in env {
                rows.push((
                    format!("env.{k}"),
                    format::truncate(&format::json_value(val), MAX_VALUE),
                ));
            }
        }
        v.request_headers = r
            .headers
            .iter()
            .map(|(k, val)| (k.clone(), format::truncate(val, MAX_VALUE)))
            .collect();
        v.request = Some(KvSection {
            title: "Request".into(),
            rows,
        });
    }
    if let Some(u) = &event.user {
        let mut rows = Vec::new();
        push(&mut rows, "id", &u.id);
        push(&mut rows, "email", &u.email);
        push(&mut rows, "username", &u.username);
        push(&mut rows, "name", &u.name);
        push(&mut rows, "ip_address", &u.ip_address);
        push(&mut rows, "segment", &u.segment);
        if let Some(g) = &u.geo {
            rows.push((
                "geo".into(),
                format::truncate(&format::json_value(g), MAX_VALUE),
            ));
        }
        if let Some(d) = &u.data {
            rows.push((
                "data".into(),
                format::truncate(&format::json_value(d), MAX_VALUE),
            ));
        }
        for (k, val) in &u.other {
            rows.push((
                k.clone(),
                format::truncate(&format::json_value(val), MAX_VALUE),
            ));
        }
        if !rows.is_empty() {
            v.user = Some(KvSection {
                title: "User".into(),
                rows,
            });
        }
    }
    if let Some(ctxs) = &event.contexts {
        // The familiar ones first.
        let order = ["browser", "os", "runtime", "device", "app", "trace"];
        let mut names: Vec<&String> = ctxs.keys().collect();
        names.sort_by_key(|n| {
            (
                order.iter().position(|o| o == n).unwrap_or(order.len()),
                n.to_string(),
            )
        });
        for name in names {
            if let Some(val) = ctxs.get(name) {
                v.contexts.push(kv_object(name, val));
            }
        }
    }
    v.tags = event
        .tags
        .iter()
        .map(|(k, val)| (k.clone(), val.clone()))
        .collect();
    if let Some(extra) = &event.extra {
        v.extra = extra
            .iter()
            .map(|(k, val)| {
                (
                    k.clone(),
                    format::truncate(&format::json_value(val), MAX_VALUE),
                )
            })
            .collect();
    }
    if let Some(sdk) = &event.sdk {
        let mut rows = Vec::new();
        push(&mut rows, "name", &sdk.name);
        push(&mut rows, "version", &sdk.version);
        if let Some(Value::Array(list)) = &sdk.integrations {
            let names: Vec<String> = list.iter().map(format::json_value).collect();
            rows.push((
                "integrations".into(),
                format::truncate(&names.join(", "), MAX_VALUE),
            ));
        }
        v.sdk = Some(KvSection {
            title: "SDK".into(),
            rows,
        });
    }
    v.errors = event
        .errors
        .iter()
        .map(|e| format::truncate(&serde_json::to_string(e).unwrap_or_default(), 500))
        .collect();
    v
}
