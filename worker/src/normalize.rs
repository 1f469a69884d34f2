//! Normalization: the first step of every event's way through the pipeline.
//!
//! It turns the raw payload an SDK sent (an envelope's event item or a `/store/` body)
//! into the canonical [`Event`], applying what Relay applies before Sentry stores an
//! event: ids and timestamps defaulted and corrected for clock drift, legacy shapes
//! converted, exceptions, frames, users, requests, tags and contexts cleaned up. A value
//! that cannot be used is dropped and listed in `Event::errors`; the only failure is a
//! payload that is not a JSON object at all.
//!
//! Browser security reports (`/api/{id}/security/`) become `csp` events through
//! [`normalize_security_report`].

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use faultline_core::protocol::event::{
    Breadcrumb, ClientSdk, DebugImage, Event, Exception, Frame, INVALID_DATA, Level, LogEntry,
    MAX_TAG_LENGTH, ProcessingError, Request, User, parse_cookie_header, truncate_chars,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// What the ingest side knew about an event when it queued it.
#[derive(Debug, Clone)]
pub struct NormalizeContext {
    /// When Faultline received the request.
    pub received: DateTime<Utc>,
    /// The sender's address: the TCP peer, or `X-Forwarded-For` behind a trusted proxy
    /// (`faultline_core::client_ip`, decided at ingest).
    pub client_ip: Option<String>,
    /// The envelope header's `event_id`; it wins over the payload's.
    pub envelope_event_id: Option<Uuid>,
    /// The envelope header's `sent_at`, used to correct the client's clock.
    pub sent_at: Option<DateTime<Utc>>,
    /// The envelope header's `sdk`, used when the payload names none.
    pub envelope_sdk: Option<Value>,
}

impl NormalizeContext {
    /// A context with only the receive time known.
    pub fn received_at(received: DateTime<Utc>) -> Self {
        NormalizeContext {
            received,
            client_ip: None,
            envelope_event_id: None,
            sent_at: None,
            envelope_sdk: None,
        }
    }
}

/// Why a payload could not become an event at all.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("the event payload is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    #[error("the event payload is JSON but not an object")]
    NotAnObject,
    #[error("the security report is not a CSP report")]
    UnsupportedSecurityReport,
    #[error("the CSP report names no known directive")]
    InvalidSecurityReport,
}

/// Smallest difference between the SDK's `sent_at` and our clock that counts as drift;
/// below it the difference is network latency (Relay's value).
pub const MINIMUM_CLOCK_DRIFT: Duration = Duration::minutes(55);
/// How far in the future an event timestamp may lie before it is corrected.
pub const MAX_SECS_IN_FUTURE: i64 = 60;
/// How far in the past an event timestamp may lie before it is corrected (30 days).
pub const MAX_SECS_IN_PAST: i64 = 30 * 24 * 3600;

/// The platforms Sentry knows; anything else is stored as `other`.
const VALID_PLATFORMS: [&str; 19] = [
    "as3",
    "c",
    "cfml",
    "cocoa",
    "csharp",
    "elixir",
    "go",
    "groovy",
    "haskell",
    "java",
    "javascript",
    "native",
    "node",
    "objc",
    "other",
    "perl",
    "php",
    "python",
    "ruby",
];

/// Debug image types Sentry can use; others are dropped.
const KNOWN_IMAGE_TYPES: [&str; 11] = [
    "apple",
    "symbolic",
    "macho",
    "elf",
    "pe",
    "pe_dotnet",
    "proguard",
    "wasm",
    "sourcemap",
    "jvm",
    "il2cpp",
];

/// Tags Sentry sets itself; a client may not send them.
const RESERVED_TAGS: [&str; 5] = ["release", "dist", "user", "filename", "function"];

/// Longest `logentry` message kept, in characters.
const MAX_MESSAGE_LENGTH: usize = 8192;

/// Normalizes an event payload (JSON object) into the canonical event.
pub fn normalize(raw: &[u8], ctx: &NormalizeContext) -> Result<Event, NormalizeError> {
    let mut event = parse_event(raw)?;
    // Sentry computes both; what a client sends is not trusted.
    event.culprit = None;
    event.title = None;
    normalize_event(&mut event, ctx);
    Ok(event)
}

/// Reads an event payload straight into an [`Event`] (no `Value` tree in between),
/// accepting the bare `NaN`/`Infinity` old Python clients emit (as `null`).
fn parse_event(raw: &[u8]) -> Result<Event, NormalizeError> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let event = match Event::from_json(raw) {
        Ok(event) => event,
        Err(err) => match replace_non_finite(raw) {
            Some(fixed) => Event::from_json(&fixed)?,
            None => return Err(err.into()),
        },
    };
    event.ok_or(NormalizeError::NotAnObject)
}

/// Parses JSON, accepting the bare `NaN`/`Infinity` old Python clients emit (as `null`).
fn parse_payload(raw: &[u8]) -> Result<Value, NormalizeError> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    match serde_json::from_slice(raw) {
        Ok(value) => Ok(value),
        Err(err) => match replace_non_finite(raw) {
            Some(fixed) => Ok(serde_json::from_slice(&fixed)?),
            None => Err(err.into()),
        },
    }
}

/// Replaces `NaN`, `Infinity` and `-Infinity` outside strings by `null`; `None` when
/// there are none (so the original parse error stands).
fn replace_non_finite(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut replaced = false;
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else {
            let token = [&b"NaN"[..], b"-Infinity", b"Infinity"]
                .into_iter()
                .find(|token| raw[i..].starts_with(token));
            if let Some(token) = token {
                out.extend_from_slice(b"null");
                i += token.len();
                replaced = true;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    replaced.then_some(out)
}

/// Applies every normalization step to an event read from a payload.
fn normalize_event(event: &mut Event, ctx: &NormalizeContext) {
    let mut errors = Vec::new();
    event.event_id = ctx
        .envelope_event_id
        .or(event.event_id)
        .or_else(|| Some(Uuid::new_v4()));
    normalize_timestamps(event, ctx, &mut errors);
    normalize_ip_addresses(event, ctx.client_ip.as_deref());
    normalize_release_environment(event, &mut errors);
    normalize_user(event);
    normalize_logentry(event, &mut errors);
    normalize_debug_meta(event, &mut errors);
    normalize_breadcrumbs(event);
    normalize_tags(event, &mut errors);
    normalize_platform_and_level(event);
    normalize_stacktraces(event);
    normalize_exceptions(event, &mut errors);
    if event.threads.as_ref().is_some_and(|t| t.values.is_empty()) {
        event.threads = None;
    }
    event.ty = Some(infer_event_type(event).to_owned());
    if event.sdk.is_none()
        && let Some(sdk) = &ctx.envelope_sdk
    {
        event.sdk = serde_json::from_value::<ClientSdk>(sdk.clone()).ok();
    }
    if let Some(request) = &mut event.request {
        normalize_request(request, &mut errors);
    }
    normalize_contexts(event);
    event.errors.append(&mut errors);
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

/// Corrects the client's clock, defaults the timestamp and records when we received it.
fn normalize_timestamps(
    event: &mut Event,
    ctx: &NormalizeContext,
    errors: &mut Vec<ProcessingError>,
) {
    let received = ctx.received;
    if let Some(sent_at) = ctx.sent_at {
        let drift = received - sent_at;
        if drift.num_seconds().unsigned_abs() >= MINIMUM_CLOCK_DRIFT.num_seconds().unsigned_abs() {
            shift_timestamps(event, drift);
            errors.push(clock_error("clock_drift", sent_at, received));
        }
    }
    if let Some(timestamp) = event.timestamp {
        let kind = if timestamp > received + Duration::seconds(MAX_SECS_IN_FUTURE) {
            Some("future_timestamp")
        } else if timestamp < received - Duration::seconds(MAX_SECS_IN_PAST) {
            Some("past_timestamp")
        } else {
            None
        };
        if let Some(kind) = kind {
            shift_timestamps(event, received - timestamp);
            errors.push(clock_error(kind, timestamp, received));
        }
    }
    event.timestamp.get_or_insert(received);
    event.received = Some(received);
}

fn clock_error(kind: &str, sdk_time: DateTime<Utc>, server_time: DateTime<Utc>) -> ProcessingError {
    ProcessingError::new(
        kind,
        "timestamp",
        Some(json!({
            "sdk_time": sdk_time.to_rfc3339(),
            "server_time": server_time.to_rfc3339(),
        })),
    )
}

/// Moves the event's and its breadcrumbs' timestamps by `drift`.
fn shift_timestamps(event: &mut Event, drift: Duration) {
    let shift = |t: &mut DateTime<Utc>| {
        if let Some(shifted) = t.checked_add_signed(drift) {
            *t = shifted;
        }
    };
    if let Some(timestamp) = &mut event.timestamp {
        shift(timestamp);
    }
    if let Some(breadcrumbs) = &mut event.breadcrumbs {
        for crumb in &mut breadcrumbs.values {
            if let Some(timestamp) = &mut crumb.timestamp {
                shift(timestamp);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Identity: IP addresses and users
// ---------------------------------------------------------------------------------------

/// Resolves `{{auto}}`, copies `REMOTE_ADDR` to the user and, for browser and Apple
/// platforms, uses the sender's address when the user has none (Relay's rules).
fn normalize_ip_addresses(event: &mut Event, client_ip: Option<&str>) {
    let remote_addr = event
        .request
        .as_mut()
        .and_then(|request| request.env.as_mut())
        .and_then(|env| env.get_mut("REMOTE_ADDR"));
    if let Some(Value::String(addr)) = remote_addr
        && addr == "{{auto}}"
        && let Some(ip) = client_ip
    {
        *addr = ip.to_owned();
    }
    if let Some(user) = &mut event.user
        && user.ip_address.as_deref() == Some("{{auto}}")
    {
        user.ip_address = client_ip.map(str::to_owned);
    }

    let http_ip = event
        .request
        .as_ref()
        .and_then(|request| request.env.as_ref())
        .and_then(|env| env.get("REMOTE_ADDR"))
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .map(str::to_owned);
    let has_user_ip = event.user.as_ref().is_some_and(|u| u.ip_address.is_some());
    if has_user_ip {
        return;
    }
    let inferred = match http_ip {
        Some(ip) => Some(ip),
        None if matches!(
            event.platform.as_deref(),
            Some("javascript" | "cocoa" | "objc")
        ) =>
        {
            client_ip.map(str::to_owned)
        }
        None => None,
    };
    if let Some(ip) = inferred {
        event.user.get_or_insert_with(User::default).ip_address = Some(ip);
    }
}

/// Moves unknown user attributes into `user.data`; an empty user is removed.
fn normalize_user(event: &mut Event) {
    let Some(user) = &mut event.user else {
        return;
    };
    if !user.other.is_empty() {
        let extra = std::mem::take(&mut user.other);
        match &mut user.data {
            Some(Value::Object(data)) => data.extend(extra),
            _ => user.data = Some(Value::Object(extra)),
        }
    }
    if user.is_empty() {
        event.user = None;
    }
}

// ---------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------

/// Trims `release`, `dist`, `environment` and `transaction`; empty ones are removed and
/// values Sentry cannot store are dropped with an error.
fn normalize_release_environment(event: &mut Event, errors: &mut Vec<ProcessingError>) {
    trim_or_remove(&mut event.release);
    if let Some(release) = &event.release
        && !is_valid_release(release)
    {
        errors.push(invalid("release", event.release.take().map(Value::String)));
    }
    trim_or_remove(&mut event.dist);
    if let Some(dist) = &event.dist
        && (dist.chars().count() > 64
            || !dist
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
    {
        errors.push(invalid("dist", event.dist.take().map(Value::String)));
    }
    trim_or_remove(&mut event.environment);
    if let Some(environment) = &event.environment
        && !is_valid_environment(environment)
    {
        errors.push(invalid(
            "environment",
            event.environment.take().map(Value::String),
        ));
    }
    trim_or_remove(&mut event.transaction);
    if let Some(logger) = &event.logger
        && logger.contains(['\r', '\n'])
    {
        errors.push(invalid("logger", event.logger.take().map(Value::String)));
    }
}

fn invalid(name: &str, value: Option<Value>) -> ProcessingError {
    ProcessingError::new(INVALID_DATA, name, value)
}

fn trim_or_remove(value: &mut Option<String>) {
    if let Some(s) = value {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            *value = None;
        } else if trimmed.len() != s.len() {
            *s = trimmed.to_owned();
        }
    }
}

/// Characters that cannot travel through Sentry's API in a release or environment name.
fn has_api_unsafe_chars(s: &str) -> bool {
    s.contains(['/', '\r', '\n', '\t', '\x0c'])
}

fn is_valid_release(release: &str) -> bool {
    release.len() <= 200
        && release != "."
        && release != ".."
        && !release.eq_ignore_ascii_case("latest")
        && !has_api_unsafe_chars(release)
}

fn is_valid_environment(environment: &str) -> bool {
    environment.len() <= 64
        && environment != "."
        && environment != ".."
        && !environment.eq_ignore_ascii_case("none")
        && !has_api_unsafe_chars(environment)
}

/// Defaults `platform` to `other` (also for platforms Sentry does not know) and `level`
/// to `error` (`info` for transactions).
fn normalize_platform_and_level(event: &mut Event) {
    // Relay replaces an unknown platform without reporting it.
    if !event
        .platform
        .as_deref()
        .is_some_and(|platform| VALID_PLATFORMS.contains(&platform))
    {
        event.platform = Some("other".to_owned());
    }
    if event.level.is_none() {
        event.level = Some(if event.ty.as_deref() == Some("transaction") {
            Level::Info
        } else {
            Level::Error
        });
    }
}

/// The event's type from its content: `error` when it has exceptions, the security report
/// kind for reports, `default` otherwise. `transaction` and `feedback` are kept as sent.
fn infer_event_type(event: &Event) -> &'static str {
    match event.ty.as_deref() {
        Some("transaction") => return "transaction",
        Some("feedback") => return "feedback",
        _ => {}
    }
    if !event.exceptions().is_empty() {
        return "error";
    }
    for report in ["csp", "hpkp", "expectct", "expectstaple"] {
        if event.other.contains_key(report) {
            return report;
        }
    }
    if event
        .contexts
        .as_ref()
        .is_some_and(|c| c.contains_key("nel"))
    {
        return "nel";
    }
    match event.ty.as_deref() {
        Some("csp") => "csp",
        Some("hpkp") => "hpkp",
        Some("expectct") => "expectct",
        Some("expectstaple") => "expectstaple",
        Some("nel") => "nel",
        _ => "default",
    }
}

/// Removes tags Sentry sets itself and repeated keys, empty or multi-line tags; takes a
/// legacy `environment` tag as the environment; adds `server_name` and `site` as tags.
fn normalize_tags(event: &mut Event, errors: &mut Vec<ProcessingError>) {
    let tags = std::mem::take(&mut event.tags);
    let mut seen: HashSet<String> = HashSet::with_capacity(tags.len() + 2);
    let mut kept: Vec<(String, String)> = Vec::with_capacity(tags.len() + 2);
    for (index, (key, value)) in tags.into_iter().enumerate() {
        let key = match key.trim() {
            trimmed if trimmed.len() == key.len() => key,
            trimmed => trimmed.to_owned(),
        };
        if key == "environment" {
            let environment = value.trim();
            if event.environment.is_none()
                && !environment.is_empty()
                && is_valid_environment(environment)
            {
                event.environment = Some(environment.to_owned());
            }
            continue;
        }
        if RESERVED_TAGS.contains(&key.as_str()) || seen.contains(&key) {
            continue;
        }
        if key.is_empty() || value.is_empty() || value.contains('\n') {
            errors.push(invalid(&format!("tags.{index}"), Some(json!([key, value]))));
            continue;
        }
        seen.insert(key.clone());
        kept.push((key, value));
    }
    if let Some(server_name) = &event.server_name
        && !seen.contains("server_name")
    {
        let value = truncate_chars(server_name.clone(), MAX_TAG_LENGTH);
        kept.push(("server_name".to_owned(), value));
    }
    if matches!(event.other.get("site"), Some(Value::String(_)))
        && !seen.contains("site")
        && let Some(Value::String(site)) = event.other.remove("site")
    {
        kept.push(("site".to_owned(), truncate_chars(site, MAX_TAG_LENGTH)));
    }
    event.tags = kept;
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// Formats `message` with `params` when the SDK did not, and keeps the message in
/// `formatted` alone when the two agree (Relay's rules). An entry with no text is dropped.
fn normalize_logentry(event: &mut Event, errors: &mut Vec<ProcessingError>) {
    let Some(entry) = &mut event.logentry else {
        return;
    };
    if entry.message.is_none() && entry.formatted.is_none() {
        if entry.params.is_some() || !entry.other.is_empty() {
            errors.push(ProcessingError::new(
                INVALID_DATA,
                "logentry",
                Some(Value::String("no message present".to_owned())),
            ));
        }
        event.logentry = None;
        return;
    }
    if entry.formatted.is_none()
        && let (Some(message), Some(params)) = (&entry.message, &entry.params)
    {
        entry.formatted = format_message(message, params);
    }
    if entry.formatted.is_none() || entry.message == entry.formatted {
        entry.formatted = entry.message.take();
    }
    for text in [&mut entry.message, &mut entry.formatted]
        .into_iter()
        .flatten()
    {
        if text.len() > MAX_MESSAGE_LENGTH {
            *text = truncate_chars(std::mem::take(text), MAX_MESSAGE_LENGTH);
        }
    }
}

/// Fills a `%s`/`%(name)s` (Python) or `{}`/`{0}`/`{name}` (Java, .NET) template;
/// `None` when the template does not fit the parameters.
fn format_message(template: &str, params: &Value) -> Option<String> {
    if template.contains('%') {
        format_percent(template, params)
    } else if template.contains('{') {
        format_curly(template, params)
    } else {
        None
    }
}

fn param_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn format_percent(template: &str, params: &Value) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut next = 0;
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let spec = &rest[at + 1..];
        if let Some(after) = spec.strip_prefix('%') {
            out.push('%');
            rest = after;
            continue;
        }
        let (value, spec) = match spec.strip_prefix('(') {
            Some(named) => {
                let close = named.find(')')?;
                (params.get(&named[..close])?, &named[close + 1..])
            }
            None => {
                let value = params.as_array()?.get(next)?;
                next += 1;
                (value, spec)
            }
        };
        // Flags, width and precision are accepted and ignored.
        let skip = spec
            .find(|c: char| !(c.is_ascii_digit() || "-+ #.".contains(c)))
            .unwrap_or(spec.len());
        let mut chars = spec[skip..].chars();
        let conversion = chars.next()?;
        if !"sdiufFeEgGxXocra".contains(conversion) {
            return None;
        }
        out.push_str(&param_text(value));
        rest = chars.as_str();
    }
    out.push_str(rest);
    Some(out)
}

fn format_curly(template: &str, params: &Value) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut next = 0;
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let close = template[i..].find('}')? + i;
                let name = &template[i + 1..close];
                let value = if name.is_empty() {
                    next += 1;
                    params.as_array()?.get(next - 1)?
                } else if let Ok(index) = name.parse::<usize>() {
                    params.as_array()?.get(index)?
                } else {
                    params.get(name)?
                };
                out.push_str(&param_text(value));
                while chars.peek().is_some_and(|&(j, _)| j <= close) {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Exceptions and stack traces
// ---------------------------------------------------------------------------------------

/// Cleans every non-raw stack trace: the event's, its exceptions' and its threads'.
fn normalize_stacktraces(event: &mut Event) {
    let exceptions = event.exception.iter_mut().flat_map(|v| v.values.iter_mut());
    let threads = event.threads.iter_mut().flat_map(|v| v.values.iter_mut());
    let stacktraces = exceptions
        .map(|e| &mut e.stacktrace)
        .chain(threads.map(|t| &mut t.stacktrace))
        .chain(std::iter::once(&mut event.stacktrace));
    for stacktrace in stacktraces {
        if let Some(trace) = stacktrace {
            trace.frames.iter_mut().for_each(normalize_frame);
        }
        if stacktrace.as_ref().is_some_and(|t| t.frames.is_empty()) {
            *stacktrace = None;
        }
    }
}

/// Fills `abs_path`/`filename` from each other (a URL's path for web files), removes the
/// unknown function `?` and completes source context, as Relay does.
fn normalize_frame(frame: &mut Frame) {
    if frame.abs_path.as_deref().is_none_or(str::is_empty) {
        frame.abs_path = frame.filename.take();
    }
    if frame.filename.as_deref().is_none_or(str::is_empty)
        && let Some(abs_path) = &frame.abs_path
    {
        frame.filename = Some(url_path(abs_path).unwrap_or_else(|| abs_path.clone()));
    }
    if frame.function.as_deref() == Some("?") {
        frame.function = None;
    }
    if (!frame.pre_context.is_empty() || !frame.post_context.is_empty())
        && frame.context_line.is_none()
    {
        frame.context_line = Some(String::new());
    }
}

/// The path of an `http(s):`, `file:` or `applewebdata:` URL, when it is more than `/`.
fn url_path(abs_path: &str) -> Option<String> {
    let is_url = ["http:", "https:", "file:", "applewebdata:"]
        .iter()
        .any(|scheme| abs_path.starts_with(scheme));
    if !is_url {
        return None;
    }
    let url = url::Url::parse(abs_path).ok()?;
    let path = url.path();
    (!path.is_empty() && path != "/").then(|| path.to_owned())
}

/// Splits `Type: value` when the type is missing, removes exceptions with neither type
/// nor value and names unnamed mechanisms `generic`.
fn normalize_exceptions(event: &mut Event, errors: &mut Vec<ProcessingError>) {
    let Some(exceptions) = &mut event.exception else {
        return;
    };
    if let [only] = exceptions.values.as_mut_slice()
        && only.stacktrace.is_none()
        && event.stacktrace.is_some()
    {
        only.stacktrace = event.stacktrace.take();
    }
    let mut index = 0;
    exceptions.values.retain_mut(|exception| {
        let keep = normalize_exception(exception);
        if !keep {
            errors.push(ProcessingError::new(
                "missing_attribute",
                format!("exception.values.{index}"),
                Some(Value::String("type or value".to_owned())),
            ));
        }
        index += 1;
        keep
    });
    if exceptions.values.is_empty() {
        event.exception = None;
    }
}

fn normalize_exception(exception: &mut Exception) -> bool {
    if exception.ty.as_deref().is_none_or(str::is_empty)
        && let Some(value) = &exception.value
        && let Some((ty, rest)) = split_type_value(value)
    {
        let (ty, rest) = (ty.to_owned(), rest.trim().to_owned());
        exception.ty = Some(ty);
        exception.value = Some(rest);
    }
    if let Some(mechanism) = &mut exception.mechanism
        && mechanism.ty.as_deref().is_none_or(str::is_empty)
    {
        mechanism.ty = Some("generic".to_owned());
    }
    !(exception.ty.as_deref().is_none_or(str::is_empty)
        && exception.value.as_deref().is_none_or(str::is_empty))
}

/// `Word: rest` on one line, as Relay's `^(\w+):(.*)$`.
fn split_type_value(value: &str) -> Option<(&str, &str)> {
    let (ty, rest) = value.split_once(':')?;
    let is_word = !ty.is_empty() && ty.chars().all(|c| c.is_alphanumeric() || c == '_');
    (is_word && !rest.contains('\n')).then_some((ty, rest))
}

// ---------------------------------------------------------------------------------------
// Breadcrumbs, debug images, request, contexts
// ---------------------------------------------------------------------------------------

/// Defaults breadcrumb `type` to `default` and `level` to `info`; keeps SDK order.
fn normalize_breadcrumbs(event: &mut Event) {
    let Some(breadcrumbs) = &mut event.breadcrumbs else {
        return;
    };
    for crumb in &mut breadcrumbs.values {
        normalize_breadcrumb(crumb);
    }
    if breadcrumbs.values.is_empty() {
        event.breadcrumbs = None;
    }
}

fn normalize_breadcrumb(crumb: &mut Breadcrumb) {
    if crumb.ty.as_deref().is_none_or(str::is_empty) {
        crumb.ty = Some("default".to_owned());
    }
    crumb.level.get_or_insert(Level::Info);
}

/// Drops debug images of types Sentry does not know and reads the legacy field names of
/// native images (`name` → `code_file`, `id`/`uuid` → `debug_id`).
fn normalize_debug_meta(event: &mut Event, errors: &mut Vec<ProcessingError>) {
    let Some(meta) = &mut event.debug_meta else {
        return;
    };
    let mut index = 0;
    meta.images.retain_mut(|image| {
        let known = image
            .ty
            .as_deref()
            .is_some_and(|ty| KNOWN_IMAGE_TYPES.contains(&ty));
        if known {
            normalize_debug_image(image);
        } else {
            errors.push(invalid(
                &format!("debug_meta.images.{index}"),
                Some(image.ty.clone().map_or(Value::Null, Value::String)),
            ));
        }
        index += 1;
        known
    });
}

fn normalize_debug_image(image: &mut DebugImage) {
    if image.ty.as_deref() == Some("apple") {
        image.ty = Some("macho".to_owned());
    }
    if matches!(image.ty.as_deref(), Some("sourcemap" | "jvm" | "proguard")) {
        return;
    }
    let take_string = |other: &mut Map<String, Value>, key: &str| match other.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(value) => {
            other.insert(key.to_owned(), value);
            None
        }
        None => None,
    };
    if image.code_file.is_none() {
        image.code_file = take_string(&mut image.other, "name");
    }
    if image.debug_id.is_none() {
        image.debug_id =
            take_string(&mut image.other, "id").or_else(|| take_string(&mut image.other, "uuid"));
    }
}

/// Upper-cases the method, moves the URL's query and fragment into their fields and the
/// `Cookie` header into `cookies`.
fn normalize_request(request: &mut Request, errors: &mut Vec<ProcessingError>) {
    if let Some(method) = &mut request.method {
        method.make_ascii_uppercase();
        let valid = (3..=32).contains(&method.len())
            && method
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
        if !valid {
            errors.push(invalid(
                "request.method",
                request.method.take().map(Value::String),
            ));
        }
    }
    if let Some(url) = &mut request.url {
        if let Some(stripped) = url.strip_suffix('\u{2026}') {
            *url = format!("{stripped}...");
        }
        if let Some(at) = url.find('#') {
            if request.fragment.is_none() && at + 1 < url.len() {
                request.fragment = Some(url[at + 1..].to_owned());
            }
            url.truncate(at);
        }
        if let Some(at) = url.find('?') {
            if request.query_string.is_none() {
                let pairs: Vec<Value> = url::form_urlencoded::parse(&url.as_bytes()[at + 1..])
                    .map(|(k, v)| json!([k, v]))
                    .collect();
                if !pairs.is_empty() {
                    request.query_string = Some(Value::Array(pairs));
                }
            }
            url.truncate(at);
        }
    }
    let cookie_header = request
        .headers
        .iter()
        .position(|(name, _)| name.eq_ignore_ascii_case("cookie"));
    if let Some(index) = cookie_header {
        if request.cookies.is_some() {
            request.headers.remove(index);
        } else if let Some(pairs) = parse_cookie_header(&request.headers[index].1) {
            if !pairs.is_empty() {
                request.cookies = Some(Value::Array(pairs));
            }
            request.headers.remove(index);
        }
    }
}

/// Removes a client-sent `reprocessing` context and names each context's `type` after its
/// key when the SDK left it out.
fn normalize_contexts(event: &mut Event) {
    let Some(contexts) = &mut event.contexts else {
        return;
    };
    contexts.remove("reprocessing");
    for (key, context) in contexts.iter_mut() {
        if let Value::Object(context) = context
            && !context.get("type").is_some_and(Value::is_string)
        {
            context.insert("type".to_owned(), Value::String(key.clone()));
        }
    }
    if contexts.is_empty() {
        event.contexts = None;
    }
}

// ---------------------------------------------------------------------------------------
// Security reports
// ---------------------------------------------------------------------------------------

/// Turns a browser CSP report (`{"csp-report": {...}}` or the Reporting API's
/// `[{"type": "csp-violation", "body": {...}}]`) into a `csp` event; for a batch, the
/// first report.
pub fn normalize_security_report(
    raw: &[u8],
    ctx: &NormalizeContext,
) -> Result<Event, NormalizeError> {
    normalize_security_reports(raw, ctx)?
        .into_iter()
        .next()
        .ok_or(NormalizeError::UnsupportedSecurityReport)
}

/// Turns every CSP report of a security report body into a `csp` event. Reports naming no
/// known directive are skipped; when none is left the body is an error.
pub fn normalize_security_reports(
    raw: &[u8],
    ctx: &NormalizeContext,
) -> Result<Vec<Event>, NormalizeError> {
    let bodies = match parse_payload(raw)? {
        Value::Object(mut object) => match object.remove("csp-report") {
            Some(Value::Object(report)) => vec![report],
            Some(_) => return Err(NormalizeError::UnsupportedSecurityReport),
            None => reporting_api_body(object).into_iter().collect(),
        },
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(object) => reporting_api_body(object),
                _ => None,
            })
            .collect(),
        _ => return Err(NormalizeError::NotAnObject),
    };
    if bodies.is_empty() {
        return Err(NormalizeError::UnsupportedSecurityReport);
    }
    let events: Vec<Event> = bodies
        .into_iter()
        .enumerate()
        .filter_map(|(index, body)| {
            let report = CspReport::from_object(body);
            let directive = report.effective_directive()?;
            let mut event = report.into_event(&directive);
            let mut ctx = ctx.clone();
            if index > 0 {
                ctx.envelope_event_id = None;
            }
            if let Some(ip) = &ctx.client_ip {
                event.user.get_or_insert_with(User::default).ip_address = Some(ip.clone());
            }
            normalize_event(&mut event, &ctx);
            Some(event)
        })
        .collect();
    if events.is_empty() {
        return Err(NormalizeError::InvalidSecurityReport);
    }
    Ok(events)
}

/// The `body` of a Reporting API entry of type `csp-violation`.
fn reporting_api_body(mut entry: Map<String, Value>) -> Option<Map<String, Value>> {
    if entry.get("type").and_then(Value::as_str) != Some("csp-violation") {
        return None;
    }
    match entry.remove("body") {
        Some(Value::Object(body)) => Some(body),
        _ => None,
    }
}

/// The parts of a CSP violation report Sentry reads (hyphenated, camelCase or snake_case).
#[derive(Default)]
struct CspReport {
    effective_directive: Option<String>,
    blocked_uri: String,
    document_uri: Option<String>,
    original_policy: Option<String>,
    referrer: Option<String>,
    status_code: Option<u64>,
    violated_directive: String,
    source_file: Option<String>,
    line_number: Option<u64>,
    column_number: Option<u64>,
    script_sample: Option<String>,
    disposition: Option<String>,
    other: Map<String, Value>,
}

/// Directive names a CSP report may carry.
const CSP_DIRECTIVES: [&str; 32] = [
    "base-uri",
    "child-src",
    "connect-src",
    "default-src",
    "fenced-frame-src",
    "font-src",
    "form-action",
    "frame-ancestors",
    "frame-src",
    "img-src",
    "manifest-src",
    "media-src",
    "object-src",
    "plugin-types",
    "prefetch-src",
    "referrer",
    "script-src",
    "script-src-attr",
    "script-src-elem",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "upgrade-insecure-requests",
    "worker-src",
    "sandbox",
    "navigate-to",
    "report-uri",
    "report-to",
    "block-all-mixed-content",
    "require-sri-for",
    "require-trusted-types-for",
    "trusted-types",
];

impl CspReport {
    fn from_object(object: Map<String, Value>) -> Self {
        let mut report = CspReport {
            blocked_uri: "self".to_owned(),
            ..CspReport::default()
        };
        let text = |value: Value| match value {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let number = |value: Value| match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        for (key, value) in object {
            match key.as_str() {
                "effective-directive" | "effectiveDirective" | "effective_directive" => {
                    report.effective_directive = text(value)
                }
                "blocked-uri" | "blockedURL" | "blocked_uri" => {
                    if let Some(uri) = text(value) {
                        report.blocked_uri = uri;
                    }
                }
                "document-uri" | "documentURL" | "document_uri" => {
                    report.document_uri = text(value)
                }
                "original-policy" | "originalPolicy" | "original_policy" => {
                    report.original_policy = text(value)
                }
                "referrer" => report.referrer = text(value),
                "status-code" | "statusCode" | "status_code" => report.status_code = number(value),
                "violated-directive" | "violatedDirective" | "violated_directive" => {
                    report.violated_directive = text(value).unwrap_or_default()
                }
                "source-file" | "sourceFile" | "source_file" => report.source_file = text(value),
                "line-number" | "lineNumber" | "line_number" => report.line_number = number(value),
                "column-number" | "columnNumber" | "column_number" => {
                    report.column_number = number(value)
                }
                "script-sample" | "scriptSample" | "sample" | "script_sample" => {
                    report.script_sample = text(value)
                }
                "disposition" => report.disposition = text(value),
                _ => {
                    report.other.insert(key, value);
                }
            }
        }
        report
    }

    /// The directive that was enforced: `effective-directive`, else the first word of
    /// `violated-directive` (Firefox sends only that).
    fn effective_directive(&self) -> Option<String> {
        let first_word = |s: &str| s.split_whitespace().next().map(str::to_owned);
        self.effective_directive
            .as_deref()
            .and_then(first_word)
            .filter(|d| CSP_DIRECTIVES.contains(&d.as_str()))
            .or_else(|| {
                first_word(&self.violated_directive)
                    .filter(|d| CSP_DIRECTIVES.contains(&d.as_str()))
            })
    }

    /// Sentry's title for the violation, e.g. `Blocked 'script' from 'evil.example'`.
    fn message(&self, directive: &str) -> String {
        if directive == "script-src" {
            match self.blocked_uri.as_str() {
                "inline" => return "Blocked unsafe inline 'script'".to_owned(),
                "eval" => return "Blocked unsafe eval() 'script'".to_owned(),
                _ => {}
            }
        }
        if is_local_uri(&self.blocked_uri) {
            return match directive {
                "child-src" => "Blocked inline 'child'".to_owned(),
                "connect-src" => "Blocked inline 'connect'".to_owned(),
                "font-src" => "Blocked inline 'font'".to_owned(),
                "img-src" => "Blocked inline 'image'".to_owned(),
                "manifest-src" => "Blocked inline 'manifest'".to_owned(),
                "media-src" => "Blocked inline 'media'".to_owned(),
                "object-src" => "Blocked inline 'object'".to_owned(),
                "script-src-attr" => "Blocked unsafe 'script' element".to_owned(),
                "script-src-elem" => "Blocked inline script attribute".to_owned(),
                "style-src" => "Blocked inline 'style'".to_owned(),
                "style-src-elem" => "Blocked 'style' or 'link' element".to_owned(),
                "style-src-attr" => "Blocked style attribute".to_owned(),
                "script-src" => "Blocked unsafe (eval() or inline) 'script'".to_owned(),
                other => format!("Blocked inline '{other}'"),
            };
        }
        let uri = normalize_csp_uri(&self.blocked_uri);
        match directive {
            "child-src" => format!("Blocked 'child' from '{uri}'"),
            "connect-src" => format!("Blocked 'connect' from '{uri}'"),
            "font-src" => format!("Blocked 'font' from '{uri}'"),
            "form-action" => format!("Blocked 'form' action to '{uri}'"),
            "img-src" => format!("Blocked 'image' from '{uri}'"),
            "manifest-src" => format!("Blocked 'manifest' from '{uri}'"),
            "media-src" => format!("Blocked 'media' from '{uri}'"),
            "object-src" => format!("Blocked 'object' from '{uri}'"),
            "script-src" | "script-src-elem" => format!("Blocked 'script' from '{uri}'"),
            "script-src-attr" => format!("Blocked inline script attribute from '{uri}'"),
            "style-src" | "style-src-elem" => format!("Blocked 'style' from '{uri}'"),
            "style-src-attr" => format!("Blocked style attribute from '{uri}'"),
            other => format!("Blocked '{other}' from '{uri}'"),
        }
    }

    /// The violated directive with its sources, the document's own origin shown as
    /// `'self'` (Sentry's culprit for CSP issues).
    fn culprit(&self) -> String {
        let mut bits = self.violated_directive.split_whitespace();
        let Some(first) = bits.next() else {
            return String::new();
        };
        let document = normalize_csp_uri(self.document_uri.as_deref().unwrap_or(""));
        let mut culprit = first.to_owned();
        for bit in bits {
            culprit.push(' ');
            let is_self = bit == document
                || (bit.contains(':')
                    && !bit.starts_with('\'')
                    && normalize_csp_uri(bit) == document);
            culprit.push_str(if is_self { "'self'" } else { bit });
        }
        culprit
    }

    fn into_event(self, directive: &str) -> Event {
        let mut event = Event {
            ty: Some("csp".to_owned()),
            logger: Some("csp".to_owned()),
            logentry: Some(LogEntry {
                formatted: Some(self.message(directive)),
                ..LogEntry::default()
            }),
            culprit: Some(self.culprit()),
            ..Event::default()
        };
        let mut blocked_uri = self.blocked_uri.clone();
        if blocked_uri.starts_with("https://api.stripe.com/")
            && let Some(at) = blocked_uri.find(['#', '?'])
        {
            // Stripe puts secrets in query strings; Sentry strips them from this tag.
            blocked_uri.truncate(at);
        }
        event.tags = vec![
            ("effective-directive".to_owned(), directive.to_owned()),
            ("blocked-uri".to_owned(), truncate_chars(blocked_uri, 200)),
        ];
        if let Ok(url) = url::Url::parse(&self.blocked_uri)
            && matches!(url.scheme(), "http" | "https")
            && let Some(host) = url.host_str()
        {
            event
                .tags
                .push(("blocked-host".to_owned(), host.to_owned()));
        }
        let mut request = Request {
            url: self.document_uri.clone(),
            ..Request::default()
        };
        if let Some(referrer) = self.referrer.as_ref().filter(|r| !r.is_empty()) {
            request
                .headers
                .push(("Referer".to_owned(), referrer.clone()));
        }
        event.request = Some(request);

        let mut csp = self.other;
        let fields = [
            ("effective_directive", Some(json!(directive))),
            ("blocked_uri", Some(json!(self.blocked_uri))),
            ("document_uri", self.document_uri.map(Value::String)),
            ("original_policy", self.original_policy.map(Value::String)),
            ("referrer", self.referrer.map(Value::String)),
            ("status_code", self.status_code.map(Value::from)),
            ("violated_directive", Some(json!(self.violated_directive))),
            ("source_file", self.source_file.map(Value::String)),
            ("line_number", self.line_number.map(Value::from)),
            ("column_number", self.column_number.map(Value::from)),
            ("script_sample", self.script_sample.map(Value::String)),
            ("disposition", self.disposition.map(Value::String)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                csp.insert(key.to_owned(), value);
            }
        }
        event.other.insert("csp".to_owned(), Value::Object(csp));
        event
    }
}

fn is_local_uri(uri: &str) -> bool {
    matches!(uri, "" | "self" | "'self'")
}

/// A blocked URI as Sentry shows it: the host (and port) for web URLs, `scheme:` for bare
/// schemes like `data`, `'self'` for the page itself.
fn normalize_csp_uri(uri: &str) -> String {
    if is_local_uri(uri) {
        return "'self'".to_owned();
    }
    if !uri.contains(':') {
        return unsplit_uri(uri, "");
    }
    let Ok(url) = url::Url::parse(uri) else {
        return uri.to_owned();
    };
    let host = url.host_str().unwrap_or_default();
    let normalized = match url.scheme() {
        "http" | "https" => host.to_owned(),
        scheme => unsplit_uri(scheme, host),
    };
    match url.port() {
        Some(port) => format!("{normalized}:{port}"),
        None => normalized,
    }
}

/// Python's `urlunsplit` for a scheme and host, quirks included.
fn unsplit_uri(scheme: &str, host: &str) -> String {
    const USES_NETLOC: [&str; 24] = [
        "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp",
        "snews", "prospero", "rtsp", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git",
        "git+ssh", "ws", "wss",
    ];
    if !host.is_empty() || USES_NETLOC.contains(&scheme) {
        format!("{scheme}://{host}")
    } else if !scheme.is_empty() {
        format!("{scheme}:{host}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_outside_strings_become_null() {
        let raw = br#"{"a": NaN, "b": -Infinity, "c": "NaN Infinity", "d": [Infinity]}"#;
        let fixed = replace_non_finite(raw).expect("replaced");
        let value: Value = serde_json::from_slice(&fixed).expect("json");
        assert_eq!(
            value,
            json!({"a": null, "b": null, "c": "NaN Infinity", "d": [null]})
        );
        assert!(replace_non_finite(br#"{"a": "NaN"}"#).is_none());
    }

    #[test]
    fn percent_and_curly_templates() {
        let params = json!([1002, "timeout"]);
        assert_eq!(
            format_message("order %s failed: %s (100%%)", &params).as_deref(),
            Some("order 1002 failed: timeout (100%)")
        );
        assert_eq!(
            format_message("%(who)s has %5.2f", &json!({"who": "ada", "x": 1})).as_deref(),
            None
        );
        assert_eq!(
            format_message("%(who)s says hi", &json!({"who": "ada"})).as_deref(),
            Some("ada says hi")
        );
        assert_eq!(
            format_message("{} then {1} {{literal}}", &params).as_deref(),
            Some("1002 then timeout {literal}")
        );
        assert_eq!(format_message("%s %s %s", &params), None);
    }

    #[test]
    fn type_and_value_split() {
        assert_eq!(
            split_type_value("ValueError: bad"),
            Some(("ValueError", " bad"))
        );
        assert_eq!(split_type_value("not a type: bad"), None);
        assert_eq!(split_type_value("Error: line\nnext"), None);
    }

    #[test]
    fn url_paths_of_web_files() {
        assert_eq!(
            url_path("https://cdn.example.com/static/app.js?v=1").as_deref(),
            Some("/static/app.js")
        );
        assert_eq!(url_path("http://example.com/"), None);
        assert_eq!(url_path("http://example.com"), None);
        assert_eq!(url_path("app:///main.jsbundle"), None);
        assert_eq!(url_path("webpack:///./src/app.js"), None);
    }

    #[test]
    fn csp_uris() {
        assert_eq!(normalize_csp_uri(""), "'self'");
        assert_eq!(normalize_csp_uri("data"), "data:");
        assert_eq!(
            normalize_csp_uri("http://evil.example/x.js"),
            "evil.example"
        );
        assert_eq!(
            normalize_csp_uri("https://evil.example:8443/"),
            "evil.example:8443"
        );
        assert_eq!(normalize_csp_uri("xyz://host/"), "xyz://host");
    }
}
