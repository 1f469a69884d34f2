//! The canonical error event: one typed shape for everything SDKs send.
//!
//! Field names and meanings follow Sentry's event payload (PROTOCOL.md §4). Every
//! interface keeps the fields we do not model in an `other` map, so nothing an SDK sent
//! is lost when the event is stored and shown again. Leniency (legacy shapes, aliases,
//! invalid optional values) lives in the deserializers of this module and in the
//! worker's `normalize` step; after normalization an `Event` is what the rest of the
//! pipeline, the pages and the API read.
//!
//! Reading is lenient the way Relay's is: a value of the wrong type is dropped and
//! recorded in [`Event::errors`] as `invalid_data` with its path, never a rejected event.
//! An event is read straight from the parser down to its interfaces (exceptions, stack
//! traces, frames, breadcrumbs: [`Streamed`]), and each field's value through a
//! `serde_json::Value` that is then taken apart by hand, moving strings instead of copying
//! them. Building a `Value` tree for the whole payload first was a sixth of the worker's
//! CPU (a map and a key string per object, then taken apart again). A stored (already
//! normalized) event reads back unchanged through the same code.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Unknown attributes of an interface, kept verbatim.
pub type Other = Map<String, Value>;

/// Longest tag key or value kept, in characters; longer ones are cut (Sentry's limit).
pub const MAX_TAG_LENGTH: usize = 200;

/// The processing error type for a value that had the wrong type or shape.
pub const INVALID_DATA: &str = "invalid_data";

/// An error or message event after normalization.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Event {
    /// 32-hex id chosen by the SDK (or by us when it sent none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// When the error happened, corrected for client clock drift.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// When Faultline received it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<DateTime<Utc>>,
    /// `error`, `default` (message), `csp`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dist: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `logentry` (the `message` legacy forms are folded into it when reading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logentry: Option<LogEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Values<Exception>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Values<Thread>>,
    /// Deprecated top-level stack trace (treated like a thread's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacktrace: Option<Stacktrace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breadcrumbs: Option<Values<Breadcrumb>>,
    /// Tags as ordered pairs (SDKs send an object or a list of pairs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// Contexts by alias (`trace`, `os`, `runtime`, `browser`, `device`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk: Option<ClientSdk>,
    /// Custom grouping fingerprint (`{{ default }}` and other variables allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_meta: Option<DebugMeta>,
    /// Problems found while normalizing (values dropped, shapes fixed), shown to users.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProcessingError>,
    /// Computed by the pipeline: the issue title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Computed by the pipeline: where it happened (transaction or top in-app frame).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub culprit: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warning,
    #[default]
    Error,
    Fatal,
}

impl Level {
    /// The wire name (`error`, `warning`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// Reads a level name as SDKs spell it: the five names, `log` (info), `warn`,
    /// `critical` (fatal), in any letter case.
    pub fn from_name(name: &str) -> Option<Level> {
        const NAMES: [(&str, Level); 8] = [
            ("debug", Level::Debug),
            ("info", Level::Info),
            ("log", Level::Info),
            ("warning", Level::Warning),
            ("warn", Level::Warning),
            ("error", Level::Error),
            ("fatal", Level::Fatal),
            ("critical", Level::Fatal),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, level)| level)
    }

    /// Reads a Python `logging` level number (10 debug ... 50 critical).
    pub fn from_python(number: u64) -> Option<Level> {
        match number {
            10 => Some(Level::Debug),
            20 => Some(Level::Info),
            30 => Some(Level::Warning),
            40 => Some(Level::Error),
            50 => Some(Level::Fatal),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A list interface; serialized as `{"values": [...]}` like Sentry stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Values<T> {
    pub values: Vec<T>,
}

impl<T> Default for Values<T> {
    fn default() -> Self {
        Values { values: Vec::new() }
    }
}

/// A log message: the template, its parameters and the formatted result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LogEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(flatten)]
    pub other: Other,
}

/// One exception of a (possibly chained) error; the last one in the list is the main one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Exception {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacktrace: Option<Stacktrace>,
    /// The stack trace as the SDK sent it, kept when source maps rewrote `stacktrace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_stacktrace: Option<Stacktrace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<Mechanism>,
    #[serde(flatten)]
    pub other: Other,
}

/// How an exception was caught (`onerror`, `generic`, ...), and whether it was handled.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mechanism {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_exception_group: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    #[serde(flatten)]
    pub other: Other,
}

/// Frames ordered caller first, crashing frame last.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stacktrace {
    pub frames: Vec<Frame>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registers: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
    #[serde(flatten)]
    pub other: Other,
}

/// One stack frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Frame {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abs_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineno: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colno: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_context: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_line: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_context: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_app: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vars: Option<Value>,
    /// `0x`-prefixed lowercase hex (SDKs may send integers or decimal strings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(flatten)]
    pub other: Other,
}

/// A thread at the time of the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Thread {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crashed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacktrace: Option<Stacktrace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_stacktrace: Option<Stacktrace>,
    #[serde(flatten)]
    pub other: Other,
}

/// Something that happened before the event (a log line, a click, an HTTP call).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breadcrumb {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// The user the event happened to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct User {
    /// Numeric ids arrive as numbers from some SDKs; they are kept as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An IPv4/IPv6 address, or `{{auto}}` before normalization resolves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(flatten)]
    pub other: Other,
}

impl User {
    /// The one identifier used for "users affected" counts and the `user:` search.
    pub fn identifier(&self) -> Option<String> {
        if let Some(id) = &self.id {
            return Some(format!("id:{id}"));
        }
        if let Some(v) = &self.username {
            return Some(format!("username:{v}"));
        }
        if let Some(v) = &self.email {
            return Some(format!("email:{v}"));
        }
        self.ip_address.as_ref().map(|v| format!("ip:{v}"))
    }

    /// Whether the user carries nothing at all.
    pub fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.email.is_none()
            && self.username.is_none()
            && self.name.is_none()
            && self.ip_address.is_none()
            && self.geo.is_none()
            && self.segment.is_none()
            && self.data.is_none()
            && self.other.is_empty()
    }
}

/// The HTTP request being handled when the event happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Request {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A list of `[name, value]` pairs (the wire allows a string, an object or pairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// A list of `[name, value]` pairs (the wire allows a string, an object or pairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookies: Option<Value>,
    /// Headers as ordered pairs (object or pair list on the wire), names `Title-Cased`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

impl Request {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The SDK that sent the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientSdk {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Value>,
    #[serde(flatten)]
    pub other: Other,
}

/// Debug files referenced by the event (source maps by debug id, native images).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DebugMeta {
    pub images: Vec<DebugImage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk_info: Option<Value>,
    #[serde(flatten)]
    pub other: Other,
}

/// One debug image; for JavaScript `{type: "sourcemap", code_file, debug_id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DebugImage {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_id: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

/// A problem found while processing the event (a value that was dropped or fixed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessingError {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl ProcessingError {
    /// An error of `ty` about the value at `name` (a dotted path like `exception.values.0`).
    pub fn new(ty: &str, name: impl Into<String>, value: Option<Value>) -> Self {
        ProcessingError {
            ty: ty.to_owned(),
            name: Some(name.into()),
            value,
        }
    }
}

impl Event {
    /// The exceptions, oldest (cause) first; empty when there are none.
    pub fn exceptions(&self) -> &[Exception] {
        self.exception
            .as_ref()
            .map(|v| v.values.as_slice())
            .unwrap_or(&[])
    }

    /// The main exception: the last one of the chain.
    pub fn main_exception(&self) -> Option<&Exception> {
        self.exceptions().last()
    }

    /// `contexts.trace.trace_id`, when the event belongs to an OpenTelemetry/Sentry trace.
    pub fn trace_id(&self) -> Option<&str> {
        self.contexts
            .as_ref()?
            .get("trace")?
            .get("trace_id")?
            .as_str()
    }

    /// The value of a tag the event carries.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The breadcrumbs, oldest first; empty when there are none.
    pub fn breadcrumbs(&self) -> &[Breadcrumb] {
        self.breadcrumbs
            .as_ref()
            .map(|v| v.values.as_slice())
            .unwrap_or(&[])
    }

    /// The message a user reads: `logentry.formatted`, else the template.
    pub fn message(&self) -> Option<&str> {
        let entry = self.logentry.as_ref()?;
        entry.formatted.as_deref().or(entry.message.as_deref())
    }

    /// Reads an event payload (the JSON object an SDK sent), accepting every shape SDKs
    /// send; values of the wrong type are dropped and listed in `errors`.
    pub fn from_object(object: Map<String, Value>) -> Event {
        let mut reader = EventReader::default();
        for (key, value) in object {
            reader.field(Cow::Owned(key), value);
        }
        reader.finish()
    }

    /// Reads an event payload straight from its JSON text, as [`Event::from_object`] reads
    /// it from a `Value` (same leniency, same recorded problems), without building a
    /// `Value` tree first; `Ok(None)` when the JSON is not an object.
    pub fn from_json(json: &[u8]) -> Result<Option<Event>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let event = deserializer.deserialize_any(EventVisitor)?;
        deserializer.end()?;
        Ok(event)
    }

    /// Reads an event from a JSON value; `None` when it is not an object.
    pub fn from_value(value: Value) -> Option<Event> {
        match value {
            Value::Object(object) => Some(Event::from_object(object)),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lenient reading
// ---------------------------------------------------------------------------------------

/// Where a value sits in the payload; formatted only when a problem is recorded, so
/// reading a clean event allocates nothing for paths.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn key<'b>(&'b self, key: &'b str) -> Path<'b>
    where
        'a: 'b,
    {
        Path::Key(self, key)
    }

    fn index<'b>(&'b self, index: usize) -> Path<'b>
    where
        'a: 'b,
    {
        Path::Index(self, index)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parent = match self {
            Path::Root => return Ok(()),
            Path::Key(parent, _) | Path::Index(parent, _) => parent,
        };
        if !matches!(parent, Path::Root) {
            parent.fmt(f)?;
            f.write_str(".")?;
        }
        match self {
            Path::Key(_, key) => f.write_str(key),
            Path::Index(_, index) => write!(f, "{index}"),
            Path::Root => Ok(()),
        }
    }
}

/// The problems met while reading one payload.
#[derive(Default)]
struct Problems {
    errors: Vec<ProcessingError>,
}

impl Problems {
    /// Records a value that was dropped because it had the wrong type or shape.
    fn invalid(&mut self, path: Path<'_>, value: Value) {
        self.errors.push(ProcessingError::new(
            INVALID_DATA,
            path.to_string(),
            Some(value),
        ));
    }
}

/// An object key: borrowed from the payload unless it had escapes.
type Key<'a> = Cow<'a, str>;

/// Reads an object key without allocating when the parser can lend it.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Reads one interface straight from the parser: an object becomes `Some(T)` field by
/// field (`FromObject::read_field`, nested interfaces streamed in turn), `null` is `None`,
/// and any other value is dropped and recorded, exactly as [`read_struct`] does with a
/// `Value`.
struct Streamed<'a, 'p, T> {
    path: Path<'a>,
    problems: &'p mut Problems,
    item: std::marker::PhantomData<T>,
}

impl<'a, 'p, T> Streamed<'a, 'p, T> {
    fn new(path: Path<'a>, problems: &'p mut Problems) -> Self {
        Streamed {
            path,
            problems,
            item: std::marker::PhantomData,
        }
    }

    /// A value of the wrong type: recorded, and `None`.
    fn invalid<E>(self, value: Value) -> Result<Option<T>, E> {
        self.problems.invalid(self.path, value);
        Ok(None)
    }
}

impl<'de, T: FromObject> DeserializeSeed<'de> for Streamed<'_, '_, T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: FromObject> Visitor<'de> for Streamed<'_, '_, T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut this = T::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let at = self.path.key(&key);
            if !this.stream_field(&key, &mut map, at, self.problems)? {
                let value = map.next_value::<Value>()?;
                this.read_field(key, value, self.path, self.problems);
            }
        }
        Ok(Some(this))
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Option<T>, E> {
        self.invalid(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<T>, E> {
        self.invalid(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<T>, E> {
        self.invalid(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<T>, E> {
        self.invalid(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<T>, E> {
        self.invalid(Value::String(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        let items = collect_seq(seq)?;
        self.invalid(Value::Array(items))
    }
}

fn collect_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<Value>, A::Error> {
    let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
    while let Some(item) = seq.next_element::<Value>()? {
        items.push(item);
    }
    Ok(items)
}

/// The `visit_*` methods of a visitor whose value is `Result<_, Value>`: a scalar (or
/// `null`) is not the list it wanted and comes back as the `Value` it was.
macro_rules! scalars_are_not_lists {
    () => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Err(Value::Null))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Err(Value::Null))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Err(Value::Bool(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Err(Value::from(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Err(Value::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Err(Value::from(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Err(Value::String(v.to_owned())))
        }
    };
}

/// A list of interfaces streamed item by item, as [`read_items`] reads one: objects are
/// kept, `null` items skipped, others dropped and recorded. `None` for a value that is not
/// a list (recorded unless it is `null`).
struct StreamedItems<'a, 'p, T>(Streamed<'a, 'p, T>);

impl<'de, T: FromObject> DeserializeSeed<'de> for StreamedItems<'_, '_, T> {
    type Value = Option<Vec<T>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Vec<T>>, D::Error> {
        let StreamedItems(Streamed { path, problems, .. }) = self;
        match d.deserialize_any(ItemsOrValue::<T>::new(path, problems))? {
            Ok(items) => Ok(Some(items)),
            Err(Value::Null) => Ok(None),
            Err(other) => {
                problems.invalid(path, other);
                Ok(None)
            }
        }
    }
}

/// The items of a list (streamed), or the value that was there instead of a list.
struct ItemsOrValue<'a, 'p, T>(Streamed<'a, 'p, T>);

impl<'a, 'p, T> ItemsOrValue<'a, 'p, T> {
    fn new(path: Path<'a>, problems: &'p mut Problems) -> Self {
        ItemsOrValue(Streamed::new(path, problems))
    }
}

impl<'de, T: FromObject> Visitor<'de> for ItemsOrValue<'_, '_, T> {
    type Value = Result<Vec<T>, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ItemsOrValue(Streamed { path, problems, .. }) = self;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        let mut i = 0;
        while let Some(item) = seq.next_element_seed(Streamed::<T>::new(path.index(i), problems))? {
            items.extend(item);
            i += 1;
        }
        Ok(Ok(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Err(value))
    }
    scalars_are_not_lists!();
}

/// A list interface in any of its shapes, as [`read_values`] reads one, streamed when it is
/// a bare list or an object whose first key is `values` (what SDKs send); any other object
/// is read as a `Value` and handed to [`read_values`].
struct StreamedValues<'a, 'p, T>(Streamed<'a, 'p, T>);

impl<'de, T: FromObject> DeserializeSeed<'de> for StreamedValues<'_, '_, T> {
    type Value = Option<Values<T>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Values<T>>, D::Error> {
        let StreamedValues(Streamed { path, problems, .. }) = self;
        match d.deserialize_any(ItemsOrValues::<T>(Streamed::new(path, problems)))? {
            Ok(values) => Ok(values),
            Err(value) => Ok(read_values(value, path, problems)),
        }
    }
}

struct ItemsOrValues<'a, 'p, T>(Streamed<'a, 'p, T>);

impl<'de, T: FromObject> Visitor<'de> for ItemsOrValues<'_, '_, T> {
    type Value = Result<Option<Values<T>>, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list interface")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let ItemsOrValues(Streamed { path, problems, .. }) = self;
        match ItemsOrValue::<T>::new(path, problems).visit_seq(seq)? {
            Ok(values) => Ok(Ok(Some(Values { values }))),
            Err(value) => Ok(Err(value)),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ItemsOrValues(Streamed { path, problems, .. }) = self;
        let Some(first) = map.next_key_seed(KeySeed)? else {
            return Ok(Err(Value::Object(Map::new())));
        };
        if first != "values" {
            // A single object, or `values` further down: read it all, then decide.
            let mut object = Map::new();
            let value = map.next_value::<Value>()?;
            object.insert(first.into_owned(), value);
            while let Some(key) = map.next_key_seed(KeySeed)? {
                let value = map.next_value::<Value>()?;
                object.insert(key.into_owned(), value);
            }
            return Ok(Err(Value::Object(object)));
        }
        // `{"values": [...]}`: other keys are ignored; a repeated `values` wins.
        let at = path.key("values");
        let mut values = map.next_value_seed(StreamedItems(Streamed::<T>::new(at, problems)))?;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == "values" {
                values = map.next_value_seed(StreamedItems(Streamed::<T>::new(at, problems)))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Ok(values.map(|values| Values { values })))
    }
    scalars_are_not_lists!();
}

/// A type read from a JSON object by hand.
trait FromObject: Default {
    /// Reads one field; an unknown one is kept in `other`.
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, problems: &mut Problems);

    /// Reads a nested interface straight from the parser instead of through a `Value`
    /// (see [`Streamed`]); `Ok(false)` when this field is not one of them and its value is
    /// still to be read.
    fn stream_field<'de, A: MapAccess<'de>>(
        &mut self,
        _key: &str,
        _map: &mut A,
        _path: Path<'_>,
        _problems: &mut Problems,
    ) -> Result<bool, A::Error> {
        Ok(false)
    }

    fn from_object(object: Map<String, Value>, path: Path<'_>, problems: &mut Problems) -> Self {
        let mut this = Self::default();
        for (key, value) in object {
            this.read_field(Cow::Owned(key), value, path, problems);
        }
        this
    }
}

/// Reads an object-shaped value; anything else is dropped and recorded.
fn read_struct<T: FromObject>(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<T> {
    match value {
        Value::Object(object) => Some(T::from_object(object, path, problems)),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

fn read_string(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

/// A string where SDKs also send numbers or booleans (user ids, tag values, releases).
fn read_lenient_string(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

/// A string where any JSON is accepted; structured values are kept as their JSON text
/// (exception values and log messages that SDKs sometimes send as objects).
fn read_json_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn read_bool(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(b),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

/// A non-negative integer; integral floats and numeric strings (`"42"`) are accepted.
fn read_u64(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<u64> {
    let parsed = match &value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Null => return None,
        _ => None,
    };
    if parsed.is_none() {
        problems.invalid(path, value);
    }
    parsed
}

fn read_object(
    value: Value,
    path: Path<'_>,
    problems: &mut Problems,
) -> Option<Map<String, Value>> {
    match value {
        Value::Object(object) => Some(object),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

/// Any JSON value; `null` is the same as absent.
fn read_any(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        other => Some(other),
    }
}

/// A thread id: a number or a string.
fn read_thread_id(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Value> {
    match value {
        Value::Number(_) | Value::String(_) => Some(value),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

fn read_level(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Level> {
    let parsed = match &value {
        Value::String(s) => Level::from_name(s.trim()),
        Value::Number(n) => n.as_u64().and_then(Level::from_python),
        Value::Null => return None,
        _ => None,
    };
    if parsed.is_none() {
        problems.invalid(path, value);
    }
    parsed
}

fn read_uuid(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Uuid> {
    let parsed = match &value {
        Value::String(s) => Uuid::parse_str(s.trim()).ok(),
        Value::Null => return None,
        _ => None,
    };
    if parsed.is_none() {
        problems.invalid(path, value);
    }
    parsed
}

fn read_timestamp(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<DateTime<Utc>> {
    if value.is_null() {
        return None;
    }
    let parsed = parse_timestamp(&value);
    if parsed.is_none() {
        problems.invalid(path, value);
    }
    parsed
}

/// Reads an SDK timestamp: RFC 3339 (a missing zone means UTC) or Unix seconds as a
/// number (or a numeric string). Precision is kept to the microsecond, like Relay.
pub fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let parsed = match value {
        Value::Number(n) => match n.as_i64() {
            Some(secs) => Utc.timestamp_opt(secs, 0).single(),
            None => n.as_f64().and_then(timestamp_from_secs),
        },
        Value::String(s) => parse_timestamp_str(s.trim()),
        _ => None,
    }?;
    (0..=9999).contains(&parsed.year()).then_some(parsed)
}

fn timestamp_from_secs(secs: f64) -> Option<DateTime<Utc>> {
    // Beyond this the year is past 9999 anyway; the bound keeps the casts exact.
    if !secs.is_finite() || secs.abs() > 1e13 {
        return None;
    }
    let whole = secs.floor();
    let mut micros = ((secs - whole) * 1e6).round() as i64;
    let mut whole = whole as i64;
    if micros >= 1_000_000 {
        whole += 1;
        micros -= 1_000_000;
    }
    Utc.timestamp_opt(whole, (micros * 1000) as u32).single()
}

fn parse_timestamp_str(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = s.parse::<DateTime<Utc>>() {
        return Some(dt);
    }
    if let Ok(naive) = s.parse::<NaiveDateTime>() {
        return Some(naive.and_utc());
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(naive.and_utc());
    }
    s.parse::<f64>().ok().and_then(timestamp_from_secs)
}

/// A native address: an integer, a `0x` hex string or a decimal string, kept as `0x…` hex.
fn read_addr(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<String> {
    let parsed = match &value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse::<u64>().ok(),
            }
        }
        Value::Null => return None,
        _ => None,
    };
    match parsed {
        Some(addr) => Some(format!("{addr:#x}")),
        None => {
            problems.invalid(path, value);
            None
        }
    }
}

/// Source context lines; `null` lines become empty strings.
fn read_lines(value: Value, path: Path<'_>, problems: &mut Problems) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => {
                    problems.invalid(path.index(i), other);
                    String::new()
                }
            })
            .collect(),
        Value::Null => Vec::new(),
        other => {
            problems.invalid(path, other);
            Vec::new()
        }
    }
}

/// Reads a list interface in any of its shapes: `{"values": [...]}`, a bare list, a
/// single object, `{}` or `null`.
fn read_values<T: FromObject>(
    value: Value,
    path: Path<'_>,
    problems: &mut Problems,
) -> Option<Values<T>> {
    match value {
        Value::Array(items) => Some(read_items(items, path, problems)),
        Value::Object(mut object) => {
            if object.is_empty() {
                return None;
            }
            match object.remove("values") {
                Some(Value::Array(items)) => Some(read_items(items, path.key("values"), problems)),
                Some(Value::Null) => None,
                Some(other) => {
                    problems.invalid(path.key("values"), other);
                    None
                }
                None => Some(Values {
                    values: vec![T::from_object(object, path, problems)],
                }),
            }
        }
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

fn read_items<T: FromObject>(
    items: Vec<Value>,
    path: Path<'_>,
    problems: &mut Problems,
) -> Values<T> {
    let mut values = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(object) => values.push(T::from_object(object, path.index(i), problems)),
            Value::Null => {}
            other => problems.invalid(path.index(i), other),
        }
    }
    Values { values }
}

/// Cuts a string to at most `max` characters.
pub fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
    s
}

/// Tags: an object or a list of `[key, value]` pairs; numbers and booleans become text,
/// keys and values are cut to [`MAX_TAG_LENGTH`] characters, `null` values are skipped.
fn read_tags(value: Value, path: Path<'_>, problems: &mut Problems) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    match value {
        Value::Object(object) => {
            tags.reserve(object.len());
            for (key, value) in object {
                if let Some(value) = read_lenient_string(value, path.key(&key), problems) {
                    tags.push((
                        truncate_chars(key, MAX_TAG_LENGTH),
                        truncate_chars(value, MAX_TAG_LENGTH),
                    ));
                }
            }
        }
        Value::Array(items) => {
            tags.reserve(items.len());
            for (i, item) in items.into_iter().enumerate() {
                if let Some((key, value)) = read_pair(item, path.index(i), problems) {
                    tags.push((
                        truncate_chars(key, MAX_TAG_LENGTH),
                        truncate_chars(value, MAX_TAG_LENGTH),
                    ));
                }
            }
        }
        Value::Null => {}
        other => problems.invalid(path, other),
    }
    tags
}

/// One `[key, value]` pair of scalars; a `null` value skips the pair silently.
fn read_pair(item: Value, path: Path<'_>, problems: &mut Problems) -> Option<(String, String)> {
    match item {
        Value::Array(pair)
            if pair.len() == 2
                && is_scalar(&pair[0])
                && (is_scalar(&pair[1]) || pair[1].is_null()) =>
        {
            let mut pair = pair.into_iter();
            let key = pair.next().and_then(scalar_text)?;
            let value = pair.next().and_then(scalar_text)?;
            Some((key, value))
        }
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn scalar_text(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Request headers: an object (sorted by name, as Relay does) or a list of pairs (order
/// kept). Names are normalized to `Title-Case` initials; list values are joined by `,`.
fn read_headers(value: Value, path: Path<'_>, problems: &mut Problems) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    match value {
        Value::Object(object) => {
            for (name, value) in object {
                if let Some(value) = read_header_value(value, path.key(&name), problems) {
                    headers.push((header_name(&name), value));
                }
            }
            headers.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let at = path.index(i);
                match item {
                    Value::Array(pair) if pair.len() == 2 => {
                        let mut pair = pair.into_iter();
                        let (Some(name), Some(value)) = (pair.next(), pair.next()) else {
                            continue;
                        };
                        let Some(name) = read_string(name, at.index(0), problems) else {
                            continue;
                        };
                        if let Some(value) = read_header_value(value, at.index(1), problems) {
                            headers.push((header_name(&name), value));
                        }
                    }
                    Value::Null => {}
                    other => problems.invalid(at, other),
                }
            }
        }
        Value::Null => {}
        other => problems.invalid(path, other),
    }
    headers
}

fn read_header_value(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<String> {
    match value {
        Value::Array(parts) => {
            let mut joined = String::new();
            for (i, part) in parts.into_iter().enumerate() {
                if let Some(part) = read_lenient_string(part, path.index(i), problems) {
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    joined.push_str(&part);
                }
            }
            Some(joined)
        }
        other => read_lenient_string(other, path, problems),
    }
}

/// Upper-cases the first letter and every letter after a `-`; the rest is kept as sent.
fn header_name(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            normalized.extend(c.to_uppercase());
        } else {
            normalized.push(c);
        }
        upper = c == '-';
    }
    normalized
}

/// A query string (`a=1&b=2`, with or without `?`), an object or pairs, as a list of
/// `[name, value]` string pairs.
fn read_query(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Value> {
    match value {
        Value::String(s) => {
            let s = s.strip_prefix('?').unwrap_or(&s);
            let pairs: Vec<Value> = url::form_urlencoded::parse(s.as_bytes())
                .map(|(k, v)| pair_value(k.into_owned(), v.into_owned()))
                .collect();
            (!pairs.is_empty()).then_some(Value::Array(pairs))
        }
        other => read_pair_list(other, path, problems),
    }
}

/// Cookies: a `Cookie` header string (`a=1; b=2`), an object or pairs, as `[name, value]`
/// pairs; a string that is not `name=value` pairs is dropped and recorded.
fn read_cookies(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Value> {
    match value {
        Value::String(s) => match parse_cookie_header(&s) {
            Some(pairs) if !pairs.is_empty() => Some(Value::Array(pairs)),
            Some(_) => None,
            None => {
                problems.invalid(path, Value::String(s));
                None
            }
        },
        other => read_pair_list(other, path, problems),
    }
}

/// Splits a `Cookie` header into `[name, value]` pairs; `None` when a part has no `=`.
pub fn parse_cookie_header(header: &str) -> Option<Vec<Value>> {
    header
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=')?;
            Some(pair_value(name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn pair_value(name: String, value: String) -> Value {
    Value::Array(vec![Value::String(name), Value::String(value)])
}

/// An object or a list of pairs as a list of `[name, value]` pairs; structured values are
/// kept as their JSON text.
fn read_pair_list(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Value> {
    let mut pairs = Vec::new();
    match value {
        Value::Object(object) => {
            for (name, value) in object {
                if let Some(value) = read_json_string(value) {
                    pairs.push(pair_value(name, value));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::Array(pair) if pair.len() == 2 && pair[0].is_string() => {
                        let mut pair = pair.into_iter();
                        if let (Some(Value::String(name)), Some(value)) = (pair.next(), pair.next())
                            && let Some(value) = read_json_string(value)
                        {
                            pairs.push(pair_value(name, value));
                        }
                    }
                    Value::Null => {}
                    other => problems.invalid(path.index(i), other),
                }
            }
        }
        Value::Null => return None,
        other => {
            problems.invalid(path, other);
            return None;
        }
    }
    (!pairs.is_empty()).then_some(Value::Array(pairs))
}

/// Contexts: an object of objects; non-object entries are dropped.
fn read_contexts(
    value: Value,
    path: Path<'_>,
    problems: &mut Problems,
) -> Option<Map<String, Value>> {
    let mut contexts = read_object(value, path, problems)?;
    contexts.retain(|key, context| match context {
        Value::Object(_) => true,
        Value::Null => false,
        other => {
            problems.invalid(path.key(key), other.take());
            false
        }
    });
    (!contexts.is_empty()).then_some(contexts)
}

/// A fingerprint: a list of strings (numbers and booleans become text). Any other entry
/// makes the whole fingerprint invalid, as in Relay.
fn read_fingerprint(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<Vec<String>> {
    match value {
        Value::Array(items) if items.iter().all(is_scalar) => {
            Some(items.into_iter().filter_map(scalar_text).collect())
        }
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

/// An IP address or the `{{auto}}` placeholder.
fn read_ip(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<String> {
    match value {
        Value::String(s) if s == "{{auto}}" || s.trim().parse::<IpAddr>().is_ok() => {
            Some(s.trim().to_owned())
        }
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

fn read_errors(value: Value, path: Path<'_>, problems: &mut Problems) -> Vec<ProcessingError> {
    let mut errors = Vec::new();
    match value {
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let at = path.index(i);
                let Value::Object(object) = item else {
                    if !item.is_null() {
                        problems.invalid(at, item);
                    }
                    continue;
                };
                let mut error = ProcessingError::default();
                for (key, value) in object {
                    match key.as_str() {
                        "type" => {
                            error.ty =
                                read_string(value, at.key(&key), problems).unwrap_or_default()
                        }
                        "name" => error.name = read_string(value, at.key(&key), problems),
                        "value" => error.value = read_any(value),
                        _ => {}
                    }
                }
                errors.push(error);
            }
        }
        Value::Null => {}
        other => problems.invalid(path, other),
    }
    errors
}

/// The canonical field a legacy `sentry.interfaces.*` key stands for.
fn legacy_alias(key: &str) -> Option<&'static str> {
    Some(match key {
        "sentry.interfaces.Exception" => "exception",
        "sentry.interfaces.Stacktrace" => "stacktrace",
        "sentry.interfaces.Breadcrumbs" => "breadcrumbs",
        "sentry.interfaces.User" => "user",
        "sentry.interfaces.Http" => "request",
        "sentry.interfaces.Contexts" => "contexts",
        "sentry.interfaces.Message" => "logentry",
        "sentry.interfaces.Template" => "template",
        "sentry.interfaces.DebugMeta" => "debug_meta",
        "sentry.interfaces.Csp" => "csp",
        "sentry.interfaces.Hpkp" => "hpkp",
        "sentry.interfaces.ExpectCT" => "expectct",
        "sentry.interfaces.ExpectStaple" => "expectstaple",
        _ => return None,
    })
}

/// An event's top level as it is read, before the legacy forms are folded in.
#[derive(Default)]
struct EventReader {
    event: Event,
    message: Option<Value>,
    aliased: Vec<(&'static str, String, Value)>,
    problems: Problems,
}

impl EventReader {
    fn field(&mut self, key: Key<'_>, value: Value) {
        if let Some(field) = legacy_alias(&key) {
            self.aliased.push((field, key.into_owned(), value));
            return;
        }
        if key == "message" {
            self.message = Some(value);
            return;
        }
        let root = Path::Root;
        if let Err(value) = read_event_field(
            &mut self.event,
            &key,
            value,
            root.key(&key),
            &mut self.problems,
        ) {
            self.event.other.insert(key.into_owned(), value);
        }
    }

    /// The interfaces that are read straight from the parser (the bulk of a payload);
    /// `Ok(false)` for every other key, whose value is then read by [`Self::field`].
    fn stream_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        let root = Path::Root;
        let at = root.key(key);
        let (event, p) = (&mut self.event, &mut self.problems);
        match key {
            "exception" => {
                event.exception = map.next_value_seed(StreamedValues(Streamed::new(at, p)))?
            }
            "threads" => {
                event.threads = map.next_value_seed(StreamedValues(Streamed::new(at, p)))?
            }
            "breadcrumbs" => {
                event.breadcrumbs = map.next_value_seed(StreamedValues(Streamed::new(at, p)))?
            }
            "stacktrace" => event.stacktrace = map.next_value_seed(Streamed::new(at, p))?,
            "user" => event.user = map.next_value_seed(Streamed::new(at, p))?,
            "request" => event.request = map.next_value_seed(Streamed::new(at, p))?,
            "sdk" => event.sdk = map.next_value_seed(Streamed::new(at, p))?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self) -> Event {
        let EventReader {
            mut event,
            message,
            aliased,
            mut problems,
        } = self;
        let root = Path::Root;
        // A canonical key wins over its legacy alias; the alias fills in when it is missing.
        for (field, key, value) in aliased {
            if !event_field_is_set(&event, field)
                && let Err(value) =
                    read_event_field(&mut event, field, value, root.key(&key), &mut problems)
            {
                event.other.insert(field.to_owned(), value);
            }
        }
        if let Some(message) = message {
            if event.logentry.is_none() {
                event.logentry = read_logentry(message, root.key("message"), &mut problems);
            } else if !message.is_null() {
                event.other.insert("message".to_owned(), message);
            }
        }
        event.errors.append(&mut problems.errors);
        event
    }
}

/// Reads an event straight from the parser; `None` when the JSON is not an object.
struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Option<Event>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event as a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Event>, A::Error> {
        let mut reader = EventReader::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if legacy_alias(&key).is_some()
                || key == "message"
                || !reader.stream_field(&key, &mut map)?
            {
                let value = map.next_value::<Value>()?;
                reader.field(key, value);
            }
        }
        Ok(Some(reader.finish()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Event>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Event>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<Event>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Event>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Event>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Event>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Event>, E> {
        Ok(None)
    }
}

fn event_field_is_set(event: &Event, field: &str) -> bool {
    match field {
        "exception" => event.exception.is_some(),
        "stacktrace" => event.stacktrace.is_some(),
        "breadcrumbs" => event.breadcrumbs.is_some(),
        "user" => event.user.is_some(),
        "request" => event.request.is_some(),
        "contexts" => event.contexts.is_some(),
        "logentry" => event.logentry.is_some(),
        "debug_meta" => event.debug_meta.is_some(),
        other => event.other.contains_key(other),
    }
}

/// Reads one top-level field into the event; an unknown field is handed back.
fn read_event_field(
    event: &mut Event,
    field: &str,
    value: Value,
    path: Path<'_>,
    problems: &mut Problems,
) -> Result<(), Value> {
    let p = problems;
    match field {
        "event_id" => event.event_id = read_uuid(value, path, p),
        "timestamp" => event.timestamp = read_timestamp(value, path, p),
        "received" => event.received = read_timestamp(value, path, p),
        "type" => event.ty = read_string(value, path, p),
        "level" => event.level = read_level(value, path, p),
        "platform" => event.platform = read_string(value, path, p),
        "logger" => event.logger = read_string(value, path, p),
        "transaction" => event.transaction = read_string(value, path, p),
        "server_name" => event.server_name = read_string(value, path, p),
        "release" => event.release = read_lenient_string(value, path, p),
        "dist" => event.dist = read_lenient_string(value, path, p),
        "environment" => event.environment = read_string(value, path, p),
        "logentry" => event.logentry = read_logentry(value, path, p),
        "exception" => event.exception = read_values(value, path, p),
        "threads" => event.threads = read_values(value, path, p),
        "stacktrace" => event.stacktrace = read_struct(value, path, p),
        "breadcrumbs" => event.breadcrumbs = read_values(value, path, p),
        "tags" => event.tags = read_tags(value, path, p),
        "extra" => event.extra = read_object(value, path, p),
        "user" => event.user = read_struct(value, path, p),
        "request" => event.request = read_struct(value, path, p),
        "contexts" => event.contexts = read_contexts(value, path, p),
        "sdk" => event.sdk = read_struct(value, path, p),
        "fingerprint" => event.fingerprint = read_fingerprint(value, path, p),
        "modules" => event.modules = read_object(value, path, p),
        "debug_meta" => event.debug_meta = read_struct(value, path, p),
        "errors" => event.errors = read_errors(value, path, p),
        "title" => event.title = read_string(value, path, p),
        "culprit" => event.culprit = read_string(value, path, p),
        _ => return Err(value),
    }
    Ok(())
}

/// `logentry` (or the legacy `message`): a string is the formatted message.
fn read_logentry(value: Value, path: Path<'_>, problems: &mut Problems) -> Option<LogEntry> {
    match value {
        Value::Object(object) => Some(LogEntry::from_object(object, path, problems)),
        Value::String(s) => Some(LogEntry {
            formatted: Some(s),
            ..LogEntry::default()
        }),
        Value::Number(_) | Value::Bool(_) => Some(LogEntry {
            formatted: read_json_string(value),
            ..LogEntry::default()
        }),
        Value::Null => None,
        other => {
            problems.invalid(path, other);
            None
        }
    }
}

impl FromObject for LogEntry {
    fn read_field(
        &mut self,
        key: Key<'_>,
        value: Value,
        _path: Path<'_>,
        _problems: &mut Problems,
    ) {
        let entry = self;
        match &*key {
            "message" => entry.message = read_json_string(value),
            "formatted" => entry.formatted = read_json_string(value),
            "params" => entry.params = read_any(value),
            _ => {
                entry.other.insert(key.into_owned(), value);
            }
        }
    }
}

/// `stacktrace` and `raw_stacktrace` of an exception or a thread, streamed.
fn stream_stacktrace<'de, A: MapAccess<'de>>(
    key: &str,
    map: &mut A,
    at: Path<'_>,
    p: &mut Problems,
    [stacktrace, raw_stacktrace]: [&mut Option<Stacktrace>; 2],
) -> Result<bool, A::Error> {
    let slot = match key {
        "stacktrace" => stacktrace,
        "raw_stacktrace" => raw_stacktrace,
        _ => return Ok(false),
    };
    *slot = map.next_value_seed(Streamed::new(at, p))?;
    Ok(true)
}

impl FromObject for Exception {
    fn stream_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        at: Path<'_>,
        p: &mut Problems,
    ) -> Result<bool, A::Error> {
        if key == "mechanism" {
            self.mechanism = map.next_value_seed(Streamed::new(at, p))?;
            return Ok(true);
        }
        stream_stacktrace(
            key,
            map,
            at,
            p,
            [&mut self.stacktrace, &mut self.raw_stacktrace],
        )
    }

    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let exception = self;
        let at = path.key(&key);
        match &*key {
            "type" => exception.ty = read_string(value, at, p),
            "value" => exception.value = read_json_string(value),
            "module" => exception.module = read_string(value, at, p),
            "thread_id" => exception.thread_id = read_thread_id(value, at, p),
            "stacktrace" => exception.stacktrace = read_struct(value, at, p),
            "raw_stacktrace" => exception.raw_stacktrace = read_struct(value, at, p),
            "mechanism" => exception.mechanism = read_struct(value, at, p),
            _ => {
                exception.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for Mechanism {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let mechanism = self;
        let at = path.key(&key);
        match &*key {
            "type" => mechanism.ty = read_string(value, at, p),
            "handled" => mechanism.handled = read_bool(value, at, p),
            "synthetic" => mechanism.synthetic = read_bool(value, at, p),
            "description" => mechanism.description = read_string(value, at, p),
            "help_link" => mechanism.help_link = read_string(value, at, p),
            "source" => mechanism.source = read_string(value, at, p),
            "exception_id" => mechanism.exception_id = read_u64(value, at, p),
            "parent_id" => mechanism.parent_id = read_u64(value, at, p),
            "is_exception_group" => mechanism.is_exception_group = read_bool(value, at, p),
            "data" => mechanism.data = read_any(value),
            "meta" => mechanism.meta = read_any(value),
            _ => {
                mechanism.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for Stacktrace {
    fn stream_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        at: Path<'_>,
        p: &mut Problems,
    ) -> Result<bool, A::Error> {
        if key != "frames" {
            return Ok(false);
        }
        // Like `read_field`: a list replaces the frames, `null` or a wrong type does not.
        if let Some(frames) = map.next_value_seed(StreamedItems(Streamed::new(at, p)))? {
            self.frames = frames;
        }
        Ok(true)
    }

    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let stacktrace = self;
        let at = path.key(&key);
        match &*key {
            "frames" => match value {
                Value::Array(items) => stacktrace.frames = read_items(items, at, p).values,
                Value::Null => {}
                other => p.invalid(at, other),
            },
            "registers" => stacktrace.registers = read_any(value),
            "lang" => stacktrace.lang = read_string(value, at, p),
            "snapshot" => stacktrace.snapshot = read_bool(value, at, p),
            _ => {
                stacktrace.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for Frame {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let frame = self;
        let at = path.key(&key);
        match &*key {
            "filename" => frame.filename = read_string(value, at, p),
            "abs_path" => frame.abs_path = read_string(value, at, p),
            "function" => frame.function = read_string(value, at, p),
            "raw_function" => frame.raw_function = read_string(value, at, p),
            "module" => frame.module = read_string(value, at, p),
            "package" => frame.package = read_string(value, at, p),
            "platform" => frame.platform = read_string(value, at, p),
            "lineno" => frame.lineno = read_u64(value, at, p),
            "colno" => frame.colno = read_u64(value, at, p),
            "pre_context" => frame.pre_context = read_lines(value, at, p),
            "context_line" => frame.context_line = read_string(value, at, p),
            "post_context" => frame.post_context = read_lines(value, at, p),
            "in_app" => frame.in_app = read_bool(value, at, p),
            "vars" => frame.vars = read_any(value),
            "instruction_addr" => frame.instruction_addr = read_addr(value, at, p),
            "symbol_addr" => frame.symbol_addr = read_addr(value, at, p),
            "image_addr" => frame.image_addr = read_addr(value, at, p),
            "addr_mode" => frame.addr_mode = read_string(value, at, p),
            "symbol" => frame.symbol = read_string(value, at, p),
            "stack_start" => frame.stack_start = read_bool(value, at, p),
            "data" => frame.data = read_any(value),
            _ => {
                frame.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for Thread {
    fn stream_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        at: Path<'_>,
        p: &mut Problems,
    ) -> Result<bool, A::Error> {
        stream_stacktrace(
            key,
            map,
            at,
            p,
            [&mut self.stacktrace, &mut self.raw_stacktrace],
        )
    }

    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let thread = self;
        let at = path.key(&key);
        match &*key {
            "id" => thread.id = read_thread_id(value, at, p),
            "name" => thread.name = read_string(value, at, p),
            "crashed" => thread.crashed = read_bool(value, at, p),
            "current" => thread.current = read_bool(value, at, p),
            "main" => thread.main = read_bool(value, at, p),
            "state" => thread.state = read_string(value, at, p),
            "stacktrace" => thread.stacktrace = read_struct(value, at, p),
            "raw_stacktrace" => thread.raw_stacktrace = read_struct(value, at, p),
            _ => {
                thread.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for Breadcrumb {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let crumb = self;
        let at = path.key(&key);
        match &*key {
            "timestamp" => crumb.timestamp = read_timestamp(value, at, p),
            "type" => crumb.ty = read_string(value, at, p),
            "category" => crumb.category = read_string(value, at, p),
            "message" => crumb.message = read_string(value, at, p),
            "level" => crumb.level = read_level(value, at, p),
            "data" => crumb.data = read_object(value, at, p).map(Value::Object),
            "event_id" => crumb.event_id = read_string(value, at, p),
            _ => {
                crumb.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for User {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let user = self;
        let at = path.key(&key);
        match &*key {
            "id" => user.id = read_lenient_string(value, at, p),
            "email" => user.email = read_string(value, at, p),
            "username" => user.username = read_lenient_string(value, at, p),
            "name" => user.name = read_string(value, at, p),
            "ip_address" => user.ip_address = read_ip(value, at, p),
            "geo" => user.geo = read_object(value, at, p).map(Value::Object),
            "segment" => user.segment = read_string(value, at, p),
            "data" => user.data = read_object(value, at, p).map(Value::Object),
            _ => {
                user.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for Request {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let request = self;
        let at = path.key(&key);
        match &*key {
            "url" => request.url = read_string(value, at, p),
            "method" => request.method = read_string(value, at, p),
            "query_string" => request.query_string = read_query(value, at, p),
            "data" => request.data = read_any(value),
            "cookies" => request.cookies = read_cookies(value, at, p),
            "headers" => request.headers = read_headers(value, at, p),
            "env" => request.env = read_object(value, at, p),
            "fragment" => request.fragment = read_string(value, at, p),
            _ => {
                request.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for ClientSdk {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let sdk = self;
        let at = path.key(&key);
        match &*key {
            "name" => sdk.name = read_string(value, at, p),
            "version" => sdk.version = read_lenient_string(value, at, p),
            "integrations" => sdk.integrations = read_any(value),
            "packages" => sdk.packages = read_any(value),
            _ => {
                sdk.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for DebugMeta {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let meta = self;
        let at = path.key(&key);
        match &*key {
            "images" => match value {
                Value::Array(items) => meta.images = read_items(items, at, p).values,
                Value::Null => {}
                other => p.invalid(at, other),
            },
            "sdk_info" => meta.sdk_info = read_any(value),
            _ => {
                meta.other.insert(key.into_owned(), value);
            }
        }
    }
}

impl FromObject for DebugImage {
    fn read_field(&mut self, key: Key<'_>, value: Value, path: Path<'_>, p: &mut Problems) {
        let image = self;
        let at = path.key(&key);
        match &*key {
            "type" => image.ty = read_string(value, at, p),
            "code_file" => image.code_file = read_string(value, at, p),
            "debug_id" => image.debug_id = read_string(value, at, p),
            _ => {
                image.other.insert(key.into_owned(), value);
            }
        }
    }
}

/// Deserializes with the lenient readers above, streamed like an event's interfaces.
/// Standalone pieces (a frame, a user) drop invalid values silently; only a whole
/// [`Event`] records them.
macro_rules! lenient_deserialize {
    ($($ty:ident),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let mut problems = Problems::default();
                Streamed::<$ty>::new(Path::Root, &mut problems)
                    .deserialize(deserializer)?
                    .ok_or_else(|| serde::de::Error::custom(concat!(
                        "expected ",
                        stringify!($ty),
                        " as a JSON object"
                    )))
            }
        }
    )*};
}

lenient_deserialize!(
    Exception, Mechanism, Stacktrace, Frame, Thread, Breadcrumb, User, Request, ClientSdk,
    DebugMeta, DebugImage
);

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(EventVisitor)?
            .ok_or_else(|| serde::de::Error::custom("expected an event as a JSON object"))
    }
}

impl<'de> Deserialize<'de> for LogEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(read_logentry(value, Path::Root, &mut Problems::default()).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        read_level(value, Path::Root, &mut Problems::default()).ok_or_else(|| {
            serde::de::Error::custom("expected a level name or a Python level number")
        })
    }
}

impl<'de, T: FromObject> Deserialize<'de> for Values<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(read_values(value, Path::Root, &mut Problems::default()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: Value) -> Event {
        Event::from_value(value).expect("object")
    }

    fn error_names(event: &Event) -> Vec<&str> {
        event
            .errors
            .iter()
            .filter_map(|e| e.name.as_deref())
            .collect()
    }

    #[test]
    fn message_string_becomes_formatted_logentry() {
        let event = read(json!({"message": "hello"}));
        let entry = event.logentry.expect("logentry");
        assert_eq!(entry.formatted.as_deref(), Some("hello"));
        assert_eq!(entry.message, None);
    }

    #[test]
    fn message_object_and_interface_alias_become_logentry() {
        let event = read(json!({"message": {"message": "hi %s", "params": ["x"]}}));
        assert_eq!(
            event.logentry.expect("logentry").message.as_deref(),
            Some("hi %s")
        );

        let event = read(json!({
            "message": "hi x",
            "sentry.interfaces.Message": {"message": "hi %s", "params": ["x"]},
        }));
        let entry = event.logentry.expect("logentry");
        assert_eq!(entry.message.as_deref(), Some("hi %s"));
        assert_eq!(entry.params, Some(json!(["x"])));
        // The legacy string was not lost.
        assert_eq!(event.other.get("message"), Some(&json!("hi x")));
    }

    #[test]
    fn logentry_wins_over_its_alias() {
        let event = read(json!({
            "logentry": {"formatted": "new"},
            "sentry.interfaces.Message": {"formatted": "old"},
        }));
        assert_eq!(event.message(), Some("new"));
        assert!(!event.other.contains_key("sentry.interfaces.Message"));
    }

    #[test]
    fn values_containers_in_every_shape() {
        for shape in [
            json!({"values": [{"type": "E", "value": "v"}]}),
            json!([{"type": "E", "value": "v"}]),
            json!({"type": "E", "value": "v"}),
        ] {
            let event = read(json!({"exception": shape}));
            assert_eq!(event.exceptions().len(), 1, "{shape}");
            assert_eq!(event.exceptions()[0].ty.as_deref(), Some("E"));
        }
        for empty in [json!({}), json!(null), json!({"values": null})] {
            assert!(read(json!({"exception": empty})).exception.is_none());
        }
    }

    #[test]
    fn interface_aliases() {
        let event = read(json!({
            "sentry.interfaces.Exception": {"values": [{"type": "E"}]},
            "sentry.interfaces.Stacktrace": {"frames": [{"function": "f"}]},
            "sentry.interfaces.Breadcrumbs": [{"message": "m"}],
            "sentry.interfaces.User": {"id": 7},
            "sentry.interfaces.Http": {"url": "http://x/"},
            "sentry.interfaces.Contexts": {"os": {"name": "Linux"}},
            "sentry.interfaces.Template": {"filename": "a.html"},
            "sentry.interfaces.Csp": {"blocked_uri": "x"},
        }));
        assert_eq!(event.exceptions().len(), 1);
        assert_eq!(event.stacktrace.as_ref().map(|s| s.frames.len()), Some(1));
        assert_eq!(event.breadcrumbs().len(), 1);
        assert_eq!(event.user.as_ref().and_then(|u| u.id.as_deref()), Some("7"));
        let url = event.request.as_ref().and_then(|r| r.url.as_deref());
        assert_eq!(url, Some("http://x/"));
        assert!(
            event
                .contexts
                .as_ref()
                .is_some_and(|c| c.contains_key("os"))
        );
        assert!(event.other.contains_key("template"));
        assert!(event.other.contains_key("csp"));
        assert!(event.errors.is_empty());
    }

    #[test]
    fn tags_as_object_or_pairs() {
        let long = "x".repeat(250);
        let event = read(json!({"tags": {"a": 1, "b": true, "c": null, "d": long}}));
        assert_eq!(event.tag("a"), Some("1"));
        assert_eq!(event.tag("b"), Some("true"));
        assert_eq!(event.tag("c"), None);
        assert_eq!(event.tag("d").map(str::len), Some(MAX_TAG_LENGTH));

        let event = read(json!({"tags": [["a", "1"], ["b", 2], "bad", ["c"]]}));
        assert_eq!(
            event.tags,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(error_names(&event), ["tags.2", "tags.3"]);
    }

    #[test]
    fn levels() {
        for (raw, level) in [
            (json!("warning"), Level::Warning),
            (json!("warn"), Level::Warning),
            (json!("log"), Level::Info),
            (json!("critical"), Level::Fatal),
            (json!("ERROR"), Level::Error),
            (json!(10), Level::Debug),
            (json!(50), Level::Fatal),
        ] {
            assert_eq!(read(json!({"level": raw})).level, Some(level), "{raw}");
        }
        let event = read(json!({"level": 35}));
        assert_eq!(event.level, None);
        assert_eq!(error_names(&event), ["level"]);
    }

    #[test]
    fn timestamps_in_every_form() {
        let expected = Utc.with_ymd_and_hms(2011, 5, 2, 17, 41, 36).single();
        for raw in [
            json!("2011-05-02T17:41:36Z"),
            json!("2011-05-02T17:41:36"),
            json!("2011-05-02T17:41:36.000"),
            json!("2011-05-02T19:41:36+02:00"),
            json!(1304358096),
            json!(1304358096.0),
        ] {
            assert_eq!(read(json!({"timestamp": raw})).timestamp, expected, "{raw}");
        }
        let event = read(json!({"timestamp": 1304358096.407}));
        assert_eq!(
            event.timestamp.map(|t| t.timestamp_subsec_micros()),
            Some(407_000)
        );
        // Milliseconds by mistake: out of range, dropped.
        let event = read(json!({"timestamp": 1304358096407u64}));
        assert_eq!(event.timestamp, None);
        assert_eq!(error_names(&event), ["timestamp"]);
    }

    #[test]
    fn frame_numbers_and_addresses() {
        let event = read(json!({"stacktrace": {"frames": [{
            "lineno": "12", "colno": 3.0, "instruction_addr": 4096,
            "symbol_addr": "0X1F", "image_addr": "256",
            "pre_context": ["a", null], "post_context": null,
        }]}}));
        let frame = &event.stacktrace.expect("stacktrace").frames[0];
        assert_eq!(frame.lineno, Some(12));
        assert_eq!(frame.colno, Some(3));
        assert_eq!(frame.instruction_addr.as_deref(), Some("0x1000"));
        assert_eq!(frame.symbol_addr.as_deref(), Some("0x1f"));
        assert_eq!(frame.image_addr.as_deref(), Some("0x100"));
        assert_eq!(frame.pre_context, ["a", ""]);
        assert!(event.errors.is_empty(), "{:?}", event.errors);
    }

    #[test]
    fn request_shapes() {
        let event = read(json!({"request": {
            "headers": [["content-type", "text/html"], ["x-many", ["a", "b"]]],
            "query_string": "?a=1&b=two%20words",
            "cookies": "sid=1; theme=dark",
        }}));
        let request = event.request.expect("request");
        assert_eq!(
            request.headers,
            vec![
                ("Content-Type".into(), "text/html".into()),
                ("X-Many".into(), "a,b".into())
            ]
        );
        assert_eq!(
            request.query_string,
            Some(json!([["a", "1"], ["b", "two words"]]))
        );
        assert_eq!(
            request.cookies,
            Some(json!([["sid", "1"], ["theme", "dark"]]))
        );

        let event = read(json!({"request": {
            "headers": {"b": "2", "A": 1},
            "query_string": {"q": "x", "n": 2},
        }}));
        let request = event.request.expect("request");
        assert_eq!(
            request.headers,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        assert_eq!(request.query_string, Some(json!([["n", "2"], ["q", "x"]])));
    }

    #[test]
    fn event_ids_with_or_without_dashes() {
        let plain = read(json!({"event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0"}));
        let dashed = read(json!({"event_id": "fc6d8c0c-43fc-4630-ad85-0ee518f1b9d0"}));
        assert!(plain.event_id.is_some());
        assert_eq!(plain.event_id, dashed.event_id);
        let bad = read(json!({"event_id": "nope"}));
        assert_eq!(bad.event_id, None);
        assert_eq!(error_names(&bad), ["event_id"]);
    }

    #[test]
    fn wrong_types_are_dropped_and_recorded() {
        let event = read(json!({
            "release": {"x": 1},
            "user": "bob",
            "exception": {"values": [{"type": 5, "value": {"k": 1}, "stacktrace": {"frames": [
                {"lineno": "x", "in_app": "yes", "function": ["f"]}
            ]}}]},
            "breadcrumbs": [{"timestamp": "yesterday"}, 7],
            "contexts": {"os": "linux", "trace": {"trace_id": "t"}},
            "fingerprint": ["a", {"b": 1}],
        }));
        assert_eq!(event.release, None);
        assert_eq!(event.user, None);
        let exception = &event.exceptions()[0];
        assert_eq!(exception.ty, None);
        assert_eq!(exception.value.as_deref(), Some(r#"{"k":1}"#));
        let names = error_names(&event);
        for expected in [
            "release",
            "user",
            "exception.values.0.type",
            "exception.values.0.stacktrace.frames.0.lineno",
            "exception.values.0.stacktrace.frames.0.in_app",
            "exception.values.0.stacktrace.frames.0.function",
            "breadcrumbs.0.timestamp",
            "breadcrumbs.1",
            "contexts.os",
            "fingerprint",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(event.errors.iter().all(|e| e.ty == INVALID_DATA));
        assert_eq!(event.trace_id(), Some("t"));
    }

    #[test]
    fn unknown_fields_are_kept() {
        let event = read(json!({"csp": {"a": 1}, "exception": [{"type": "E", "foo": "bar"}]}));
        assert_eq!(event.other.get("csp"), Some(&json!({"a": 1})));
        assert_eq!(event.exceptions()[0].other.get("foo"), Some(&json!("bar")));
    }

    #[test]
    fn serialized_event_reads_back_unchanged() {
        let event = read(json!({
            "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
            "timestamp": 1304358096.25,
            "level": 40,
            "message": "boom",
            "tags": [["a", "b"]],
            "exception": [{"type": "E", "stacktrace": {"frames": [{"lineno": 3, "instruction_addr": 16}]}}],
            "breadcrumbs": [{"timestamp": 1304358090, "message": "m"}],
            "user": {"id": 1, "ip_address": "::1"},
            "request": {"headers": {"a": "b"}, "query_string": "x=1", "cookies": "c=d"},
            "errors": [{"type": "invalid_data", "name": "x", "value": 1}],
            "custom": {"kept": true},
        }));
        let json = serde_json::to_value(&event).expect("serialize");
        let back: Event = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }

    /// The event as the `Value` reader reads it, and as the streaming reader does, with the
    /// recorded problems in one order (the `Value` reader meets keys sorted, the streaming
    /// one in document order).
    fn both_readers(json: &str) -> (Option<Event>, Option<Event>) {
        let sorted = |mut e: Event| {
            e.errors
                .sort_by_key(|e| (e.name.clone(), e.value.as_ref().map(Value::to_string)));
            e
        };
        let by_value = Event::from_value(serde_json::from_str(json).expect("json")).map(sorted);
        let streamed = Event::from_json(json.as_bytes()).expect("json").map(sorted);
        (by_value, streamed)
    }

    /// Every shape the lenient reader knows reads the same, streamed or through a `Value`:
    /// list interfaces as lists, `{values}`, single objects, `values` not first, `null`s and
    /// wrong types at every level, legacy aliases, the message forms, unknown fields.
    #[test]
    fn streaming_reads_every_shape_like_the_value_reader() {
        let frame = r#"{"filename": "a.py", "lineno": "12", "colno": -1, "vars": {"x": [1, {"y": null}]}, "pre_context": ["a", 3, null], "in_app": "yes", "instruction_addr": 4096, "custom": {"k": 1}}"#;
        let cases = [
            format!(r#"{{"exception": {{"values": [{{"type": "E", "value": {{"o": 1}}, "stacktrace": {{"frames": [{frame}, null, 7, "x"]}}, "mechanism": {{"type": "t", "handled": "no", "exception_id": "3"}}}}]}}}}"#),
            format!(r#"{{"exception": [{{"type": "E", "stacktrace": {{"frames": [{frame}]}}}}, null, 1]}}"#),
            format!(r#"{{"exception": {{"type": "E", "stacktrace": {{"frames": [{frame}]}}}}}}"#),
            r#"{"exception": {"type": "E", "values": [{"type": "F"}]}}"#.to_owned(),
            r#"{"exception": {"values": [{"type": "F"}], "extra": 1, "values": [{"type": "G"}]}}"#.to_owned(),
            r#"{"exception": {"values": null}, "breadcrumbs": {"values": "x"}, "threads": {}}"#.to_owned(),
            r#"{"exception": "boom", "breadcrumbs": 3, "threads": [[]], "stacktrace": true, "user": [1], "request": "r", "sdk": 2.5}"#.to_owned(),
            r#"{"exception": {"values": [{"stacktrace": {"frames": null}}, {"stacktrace": {"frames": {"a": 1}}}, {"stacktrace": "s", "raw_stacktrace": {"frames": [{"function": "f"}]}, "mechanism": null}]}}"#.to_owned(),
            format!(r#"{{"threads": {{"values": [{{"id": 1, "stacktrace": {{"frames": [{frame}]}}, "raw_stacktrace": 3, "crashed": true}}]}}, "stacktrace": {{"frames": [{frame}], "registers": {{"rip": "0x1"}}}}}}"#),
            r#"{"breadcrumbs": [{"timestamp": "2024-01-01T00:00:00Z", "message": "m", "level": 40, "data": [1]}, null, "x"]}"#.to_owned(),
            r#"{"breadcrumbs": {"message": "single crumb"}}"#.to_owned(),
            r#"{"user": {"id": 42, "ip_address": "{{auto}}", "geo": "x", "other": 1}, "request": {"url": "u", "headers": [["A", "b"], ["C", 1]], "query_string": {"a": "b"}, "cookies": "a=b", "env": 1}, "sdk": {"name": "n", "version": 7, "integrations": ["a"]}}"#.to_owned(),
            r#"{"sentry.interfaces.Exception": {"values": [{"type": "Legacy"}]}, "sentry.interfaces.Message": {"message": "m %s", "params": ["a"]}, "sentry.interfaces.User": {"id": 1}}"#.to_owned(),
            r#"{"exception": {"values": [{"type": "New"}]}, "sentry.interfaces.Exception": {"values": [{"type": "Legacy"}]}}"#.to_owned(),
            r#"{"message": "plain", "logentry": {"formatted": "wins"}}"#.to_owned(),
            r#"{"message": {"message": "m", "params": [1]}, "level": "warning", "tags": {"a": 1, "b": null}, "fingerprint": ["{{ default }}", 3]}"#.to_owned(),
            r#"{"event_id": "nope", "timestamp": "x", "level": [], "release": 1.5, "platform": 3, "unknown": {"kept": [1, 2]}, "debug_meta": {"images": [{"type": "elf"}, 3]}}"#.to_owned(),
            r#"{"exception": {}, "breadcrumbs": [], "errors": [{"type": "t", "name": "n"}, 3]}"#.to_owned(),
            r#"{"aé": 1, "exception": {"values": [{"type": "Escaped"}]}}"#.to_owned(),
            r#"{}"#.to_owned(),
        ];
        for json in &cases {
            let (by_value, streamed) = both_readers(json);
            assert!(by_value.is_some(), "{json}");
            assert_eq!(streamed, by_value, "{json}");
        }
        for not_an_object in ["[1, {\"a\": 2}]", "\"event\"", "null", "3", "true"] {
            assert_eq!(both_readers(not_an_object), (None, None), "{not_an_object}");
        }
        // Nesting deeper than the parser allows is an error, not a stack overflow, in
        // every streamed interface and in a field read as a `Value`.
        for field in [
            "exception",
            "breadcrumbs",
            "threads",
            "stacktrace",
            "user",
            "extra",
        ] {
            for open in ["[", "{\"values\": ["] {
                let deep = format!(
                    "{{\"{field}\": {open}{}{}}}",
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                );
                assert!(Event::from_json(deep.as_bytes()).is_err(), "{field} {open}");
            }
        }
        let deep_frames = format!(
            "{{\"exception\": {{\"values\": [{{\"stacktrace\": {{\"frames\": [{{\"vars\": {}}}]}}}}]}}}}",
            "{\"a\": ".repeat(50_000)
        );
        assert!(Event::from_json(deep_frames.as_bytes()).is_err());
        // Broken JSON is an error for both, never a partial event.
        for broken in ["{\"exception\": {\"values\": [", "{\"a\": 1} trailing", ""] {
            assert!(Event::from_json(broken.as_bytes()).is_err(), "{broken}");
        }
    }

    #[test]
    fn path_display() {
        let root = Path::Root;
        let a = root.key("exception");
        let b = a.key("values");
        let c = b.index(2);
        assert_eq!(c.key("type").to_string(), "exception.values.2.type");
        assert_eq!(root.to_string(), "");
    }
}
