//! Sentry envelopes: the container every modern SDK posts to `/api/{project}/envelope/`
//! (PROTOCOL.md §3).
//!
//! ```text
//! Envelope = Headers *( "\n" Item ) [ "\n" ]
//! Item     = ItemHeaders "\n" Payload
//! ```
//!
//! Headers are JSON objects. A payload is either exactly `length` bytes (binary-safe) or, when
//! the item header has no `length`, everything up to the next `\n`. Real SDKs use both forms:
//! Python writes `length` on every item and ends each payload with `\n`; browser JS writes
//! `{"type":"event"}` without `length` and no newline after the last payload.
//!
//! Parsing is zero-copy: item payloads are [`Bytes::slice`]s of the request body. Unknown item
//! types, attachment types and header fields are kept, never errors (SDKs are newer than we
//! are); only a broken framing or a header that is not a JSON object fails the envelope.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

/// Why a request body is not a valid envelope. The messages are meant for the `detail` of a
/// 400 response, so they name the item (counting from 0) and what was expected there.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// The body is empty or only whitespace.
    #[error("empty envelope: expected a JSON object as envelope header")]
    MissingHeader,
    /// The first line is not a JSON object, or one of its known fields has the wrong type.
    #[error("invalid envelope header: {0}")]
    InvalidHeader(serde_json::Error),
    /// Something other than `\n` follows the envelope header.
    #[error("missing newline after the envelope header")]
    MissingNewlineAfterHeader,
    /// An item header is not a JSON object, or lacks `type`, or has a bad `length`.
    #[error("invalid header of item {index}: {source}")]
    InvalidItemHeader {
        /// Position of the item in the envelope, counting from 0.
        index: usize,
        /// What the JSON parser or our field checks found.
        source: serde_json::Error,
    },
    /// Something other than `\n` follows an item header.
    #[error("missing newline after the header of item {index}")]
    MissingNewlineAfterItemHeader {
        /// Position of the item in the envelope, counting from 0.
        index: usize,
    },
    /// The byte after a length-delimited payload is not `\n`: the declared length is wrong.
    #[error("missing newline after the payload of item {index} (its length {length} is wrong)")]
    MissingNewlineAfterPayload {
        /// Position of the item in the envelope, counting from 0.
        index: usize,
        /// The `length` the item header declared.
        length: u64,
    },
    /// An item declares more payload bytes than the body has left (a truncated upload or a
    /// wrong `length`).
    #[error("item {index} declares a length of {length} bytes but only {available} remain")]
    PayloadOverrun {
        /// Position of the item in the envelope, counting from 0.
        index: usize,
        /// The `length` the item header declared.
        length: u64,
        /// Bytes left in the body after the item header.
        available: usize,
    },
}

impl EnvelopeError {
    /// HTTP status for the response: always 400 (Relay answers `invalid event envelope` with
    /// this message among the `causes`).
    pub fn status(&self) -> u16 {
        400
    }
}

/// A parsed envelope: its headers and its items in the order they were sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// The first line.
    pub headers: EnvelopeHeaders,
    /// The items, possibly none (an envelope may consist of headers only).
    pub items: Vec<Item>,
}

impl Envelope {
    /// An envelope with the given headers and no items.
    pub fn new(headers: EnvelopeHeaders) -> Self {
        Self {
            headers,
            items: Vec::new(),
        }
    }

    /// An envelope carrying one error event, as an SDK would send it: `event_id` in the
    /// envelope header, `sent_at` now, one `event` item with `content_type: application/json`.
    /// The event JSON is not inspected; its own `event_id` should match.
    pub fn from_event_json(event_id: Uuid, event_json: impl Into<Bytes>) -> Self {
        let mut item = Item::new(ItemType::Event, event_json);
        item.headers.content_type = Some("application/json".to_owned());
        Self {
            headers: EnvelopeHeaders {
                event_id: Some(event_id),
                sent_at: Some(Utc::now()),
                ..EnvelopeHeaders::default()
            },
            items: vec![item],
        }
    }

    /// Parses an envelope. Item payloads share `bytes`' buffer; nothing is copied.
    ///
    /// Follows PROTOCOL.md §3.1 with one leniency over Relay: whitespace after the last item
    /// (say, a second trailing newline) ends the envelope instead of failing it.
    pub fn parse(bytes: Bytes) -> Result<Self, EnvelopeError> {
        let (headers, mut offset) = parse_envelope_headers(&bytes)?;
        let mut items = Vec::new();
        while !only_whitespace(&bytes[offset.min(bytes.len())..]) {
            let (item, next) = parse_item(&bytes, offset, items.len())?;
            items.push(item);
            offset = next;
        }
        Ok(Self { headers, items })
    }

    /// Serializes the envelope, Python SDK style: every item header carries `length` (taken
    /// from the payload, whatever `ItemHeaders::length` says) and every payload ends with `\n`.
    /// `Envelope::parse(e.to_bytes())` gives back the same items and payloads.
    pub fn to_bytes(&self) -> Bytes {
        let payloads: usize = self.items.iter().map(|item| item.payload.len() + 64).sum();
        let mut out = Vec::with_capacity(256 + payloads);
        out.extend_from_slice(self.headers.to_json().as_bytes());
        out.push(b'\n');
        for item in &self.items {
            out.extend_from_slice(item.headers.to_json(item.payload.len()).as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&item.payload);
            out.push(b'\n');
        }
        Bytes::from(out)
    }

    /// The envelope header's `event_id`.
    pub fn event_id(&self) -> Option<Uuid> {
        self.headers.event_id
    }

    /// The items of one type, in order.
    pub fn items_of_type<'a>(&'a self, ty: &'a ItemType) -> impl Iterator<Item = &'a Item> + 'a {
        self.items.iter().filter(move |item| &item.headers.ty == ty)
    }
}

/// The envelope's first line. Known fields are typed; everything else is kept in `other`.
///
/// Parsing is lenient where a bad value only loses information (a `sent_at` that is not a
/// timestamp, or an `sdk`/`trace` that is not an object, reads as absent; Relay likewise
/// tolerates a broken `trace`) and strict where the field decides what the items belong to: a
/// malformed `event_id`, a non-string `dsn`, or any known field given twice (Sentry rejects a
/// duplicate `sent_at`) fail the envelope, as in Relay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvelopeHeaders {
    /// Id of the event (or transaction, feedback...) the items belong to; 32 hex digits on the
    /// wire, dashes accepted.
    pub event_id: Option<Uuid>,
    /// Full DSN string; authenticates the request when it carries no credentials itself.
    pub dsn: Option<String>,
    /// When the SDK sent the envelope, for clock-drift correction.
    pub sent_at: Option<DateTime<Utc>>,
    /// The SDK's `{name, version, integrations, packages}`.
    pub sdk: Option<Value>,
    /// The dynamic sampling context (`trace_id`, `public_key`, `release`, `environment`...).
    pub trace: Option<Value>,
    /// Any other field, kept for forward compatibility.
    pub other: BTreeMap<String, Value>,
}

const ENVELOPE_FIELDS: [&str; 5] = ["event_id", "dsn", "sent_at", "sdk", "trace"];

impl EnvelopeHeaders {
    /// The header as one line of JSON, known fields first.
    fn to_json(&self) -> String {
        let mut obj = JsonObject::default();
        if let Some(event_id) = self.event_id {
            obj.field_str("event_id", &event_id.simple().to_string());
        }
        if let Some(dsn) = &self.dsn {
            obj.field_str("dsn", dsn);
        }
        if let Some(sent_at) = self.sent_at {
            obj.field_str("sent_at", &format_timestamp(sent_at));
        }
        if let Some(sdk) = &self.sdk {
            obj.field("sdk", sdk);
        }
        if let Some(trace) = &self.trace {
            obj.field("trace", trace);
        }
        for (key, value) in &self.other {
            // `other` never holds a known field after parsing; skip them if a caller put one
            // there, as a duplicate key would make the envelope invalid.
            if !ENVELOPE_FIELDS.contains(&key.as_str()) {
                obj.field(key, value);
            }
        }
        obj.finish()
    }
}

impl<'de> Deserialize<'de> for EnvelopeHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeHeadersVisitor)
    }
}

struct EnvelopeHeadersVisitor;

impl<'de> Visitor<'de> for EnvelopeHeadersVisitor {
    type Value = EnvelopeHeaders;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvelopeHeaders, A::Error> {
        let mut headers = EnvelopeHeaders::default();
        let mut seen = FieldsSeen::default();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            match key.as_str() {
                "event_id" => {
                    seen.first("event_id")?;
                    headers.event_id = match value {
                        Value::Null => None,
                        Value::String(s) => Some(Uuid::parse_str(&s).map_err(|_| {
                            de::Error::custom(format_args!("`event_id` is not a UUID: {s:?}"))
                        })?),
                        _ => return Err(de::Error::custom("`event_id` must be a string")),
                    };
                }
                "dsn" => {
                    seen.first("dsn")?;
                    headers.dsn = match value {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        _ => return Err(de::Error::custom("`dsn` must be a string")),
                    };
                }
                "sent_at" => {
                    seen.first("sent_at")?;
                    headers.sent_at = value.as_str().and_then(parse_timestamp);
                }
                "sdk" => {
                    seen.first("sdk")?;
                    headers.sdk = value.is_object().then_some(value);
                }
                "trace" => {
                    seen.first("trace")?;
                    headers.trace = value.is_object().then_some(value);
                }
                _ => {
                    headers.other.insert(key, value);
                }
            }
        }
        Ok(headers)
    }
}

/// One item: its header line and its payload bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The item header.
    pub headers: ItemHeaders,
    /// The payload, a slice of the parsed body (no copy).
    pub payload: Bytes,
}

impl Item {
    /// An item of the given type and payload, with no other headers.
    pub fn new(ty: ItemType, payload: impl Into<Bytes>) -> Self {
        Self {
            headers: ItemHeaders::new(ty),
            payload: payload.into(),
        }
    }

    /// The item's type.
    pub fn ty(&self) -> &ItemType {
        &self.headers.ty
    }
}

/// An item's header line. Known fields are typed; everything else (`item_count`, `platform`,
/// `sentry_release`...) is kept in `other`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemHeaders {
    /// `type`: what the payload is; required.
    pub ty: ItemType,
    /// `length`: payload size in bytes, if the sender declared it. Serialization ignores this
    /// and writes the actual payload length.
    pub length: Option<u64>,
    /// `content_type`: MIME type of the payload.
    pub content_type: Option<String>,
    /// `filename`: original file name of an attachment.
    pub filename: Option<String>,
    /// `attachment_type`: what kind of attachment this is (`event.attachment` when absent).
    pub attachment_type: Option<AttachmentType>,
    /// Any other field.
    pub other: BTreeMap<String, Value>,
}

const ITEM_FIELDS: [&str; 5] = [
    "type",
    "length",
    "content_type",
    "filename",
    "attachment_type",
];

impl ItemHeaders {
    /// Headers with just a type.
    pub fn new(ty: ItemType) -> Self {
        Self {
            ty,
            length: None,
            content_type: None,
            filename: None,
            attachment_type: None,
            other: BTreeMap::new(),
        }
    }

    /// The header as one line of JSON with the given payload length, `type` first.
    fn to_json(&self, length: usize) -> String {
        let mut obj = JsonObject::default();
        obj.field_str("type", self.ty.as_str());
        obj.field("length", &Value::from(length));
        if let Some(content_type) = &self.content_type {
            obj.field_str("content_type", content_type);
        }
        if let Some(filename) = &self.filename {
            obj.field_str("filename", filename);
        }
        if let Some(attachment_type) = &self.attachment_type {
            obj.field_str("attachment_type", attachment_type.as_str());
        }
        for (key, value) in &self.other {
            if !ITEM_FIELDS.contains(&key.as_str()) {
                obj.field(key, value);
            }
        }
        obj.finish()
    }
}

impl<'de> Deserialize<'de> for ItemHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ItemHeadersVisitor)
    }
}

struct ItemHeadersVisitor;

impl<'de> Visitor<'de> for ItemHeadersVisitor {
    type Value = ItemHeaders;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemHeaders, A::Error> {
        let mut ty = None;
        let mut headers = ItemHeaders::new(ItemType::Unknown(String::new()));
        let mut seen = FieldsSeen::default();
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            match key.as_str() {
                "type" => {
                    seen.first("type")?;
                    match value {
                        Value::String(s) => {
                            ty = Some(s.parse::<ItemType>().unwrap_or_else(|e| match e {}))
                        }
                        _ => return Err(de::Error::custom("`type` must be a string")),
                    }
                }
                "length" => {
                    // The length frames the payload, so a value we cannot read is fatal.
                    seen.first("length")?;
                    headers.length = match value {
                        Value::Null => None,
                        other => Some(other.as_u64().ok_or_else(|| {
                            de::Error::custom(format_args!(
                                "`length` must be a non-negative integer, got {other}"
                            ))
                        })?),
                    };
                }
                // Descriptive fields of the wrong type are ignored rather than fatal: they do
                // not affect framing, and one odd attachment must not cost the event.
                "content_type" => {
                    seen.first("content_type")?;
                    headers.content_type = into_string(value);
                }
                "filename" => {
                    seen.first("filename")?;
                    headers.filename = into_string(value);
                }
                "attachment_type" => {
                    seen.first("attachment_type")?;
                    headers.attachment_type = into_string(value)
                        .map(|s| s.parse::<AttachmentType>().unwrap_or_else(|e| match e {}));
                }
                _ => {
                    headers.other.insert(key, value);
                }
            }
        }
        headers.ty = ty.ok_or_else(|| de::Error::missing_field("type"))?;
        Ok(headers)
    }
}

/// The type of an envelope item, from its `type` header. Every type string Relay knows has a
/// variant; anything else is `Unknown` and must be skipped, never rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemType {
    /// `event`: an error or message event as JSON.
    Event,
    /// `transaction`: a performance transaction event as JSON.
    Transaction,
    /// `security`: a security report already converted to an event, as JSON.
    Security,
    /// `attachment`: raw bytes of a file attached to an event (see `attachment_type`).
    Attachment,
    /// `form_data`: multipart form fields collected as JSON (produced by Relay endpoints).
    FormData,
    /// `raw_security`: a CSP/HPKP/Expect-CT report as the browser sent it.
    RawSecurity,
    /// `nel`: a Network Error Logging report.
    Nel,
    /// `unreal_report`: a compressed Unreal Engine crash report.
    UnrealReport,
    /// `user_report`: legacy user feedback `{event_id, email, name, comments}`.
    UserReport,
    /// `feedback`: new user feedback, an event of `type: "feedback"`.
    Feedback,
    /// `session`: a release-health session update.
    Session,
    /// `sessions`: pre-aggregated release-health sessions.
    Sessions,
    /// `statsd`: metrics in statsd text format.
    Statsd,
    /// `metric_buckets`: pre-aggregated metric buckets as JSON.
    MetricBuckets,
    /// `client_report`: the SDK's statistics of events it dropped.
    ClientReport,
    /// `profile`: a transaction-bound profile.
    Profile,
    /// `profile_chunk` (also `profile_chunk_ui`, sent by some Android SDKs): a continuous
    /// profiling chunk.
    ProfileChunk,
    /// `replay_event`: session replay metadata.
    ReplayEvent,
    /// `replay_recording`: session replay recording data.
    ReplayRecording,
    /// `replay_video`: session replay video (mobile).
    ReplayVideo,
    /// `check_in`: a cron monitor check-in.
    CheckIn,
    /// `log`: structured log entries, usually an item container.
    Log,
    /// `trace_metric`: trace-connected metrics, usually an item container.
    TraceMetric,
    /// `span`: standalone span(s), possibly an item container.
    Span,
    /// `integration`: Relay-internal payload of an integration endpoint (OTLP, Vercel...).
    Integration,
    /// Any other type string, kept verbatim (e.g. `otel_span` from older SDKs).
    Unknown(String),
}

impl ItemType {
    /// The wire value (`profile_chunk_ui` is normalized to `profile_chunk`).
    pub fn as_str(&self) -> &str {
        match self {
            ItemType::Event => "event",
            ItemType::Transaction => "transaction",
            ItemType::Security => "security",
            ItemType::Attachment => "attachment",
            ItemType::FormData => "form_data",
            ItemType::RawSecurity => "raw_security",
            ItemType::Nel => "nel",
            ItemType::UnrealReport => "unreal_report",
            ItemType::UserReport => "user_report",
            ItemType::Feedback => "feedback",
            ItemType::Session => "session",
            ItemType::Sessions => "sessions",
            ItemType::Statsd => "statsd",
            ItemType::MetricBuckets => "metric_buckets",
            ItemType::ClientReport => "client_report",
            ItemType::Profile => "profile",
            ItemType::ProfileChunk => "profile_chunk",
            ItemType::ReplayEvent => "replay_event",
            ItemType::ReplayRecording => "replay_recording",
            ItemType::ReplayVideo => "replay_video",
            ItemType::CheckIn => "check_in",
            ItemType::Log => "log",
            ItemType::TraceMetric => "trace_metric",
            ItemType::Span => "span",
            ItemType::Integration => "integration",
            ItemType::Unknown(other) => other,
        }
    }
}

impl FromStr for ItemType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "event" => ItemType::Event,
            "transaction" => ItemType::Transaction,
            "security" => ItemType::Security,
            "attachment" => ItemType::Attachment,
            "form_data" => ItemType::FormData,
            "raw_security" => ItemType::RawSecurity,
            "nel" => ItemType::Nel,
            "unreal_report" => ItemType::UnrealReport,
            "user_report" => ItemType::UserReport,
            "feedback" => ItemType::Feedback,
            "session" => ItemType::Session,
            "sessions" => ItemType::Sessions,
            "statsd" => ItemType::Statsd,
            "metric_buckets" => ItemType::MetricBuckets,
            "client_report" => ItemType::ClientReport,
            "profile" => ItemType::Profile,
            "profile_chunk" | "profile_chunk_ui" => ItemType::ProfileChunk,
            "replay_event" => ItemType::ReplayEvent,
            "replay_recording" => ItemType::ReplayRecording,
            "replay_video" => ItemType::ReplayVideo,
            "check_in" => ItemType::CheckIn,
            "log" => ItemType::Log,
            "trace_metric" => ItemType::TraceMetric,
            "span" => ItemType::Span,
            "integration" => ItemType::Integration,
            other => ItemType::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ItemType {
    fn from(s: &str) -> Self {
        s.parse().unwrap_or_else(|e| match e {})
    }
}

impl Serialize for ItemType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ItemType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(ItemType::from(s.as_str()))
    }
}

/// The kind of an `attachment` item, from its `attachment_type` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum AttachmentType {
    /// `event.attachment`: a plain file attached to an event (the default).
    #[default]
    Attachment,
    /// `event.minidump`: a native crash minidump; creates an event itself.
    Minidump,
    /// `event.applecrashreport`: an Apple crash report; creates an event itself.
    AppleCrashReport,
    /// `event.payload`: an event serialized as MessagePack.
    EventPayload,
    /// `event.breadcrumbs`: breadcrumbs serialized as MessagePack.
    Breadcrumbs,
    /// `event.view_hierarchy`: a mobile UI view hierarchy as JSON.
    ViewHierarchy,
    /// `unreal.context`: the context XML of an Unreal crash report.
    UnrealContext,
    /// `unreal.logs`: the logs of an Unreal crash report.
    UnrealLogs,
    /// `playstation.prosperodump`: a PlayStation crash dump.
    Prosperodump,
    /// `nswitch.dying_message`: a Nintendo Switch dying message.
    NintendoSwitchDyingMessage,
    /// Any other value, kept verbatim.
    Unknown(String),
}

impl AttachmentType {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            AttachmentType::Attachment => "event.attachment",
            AttachmentType::Minidump => "event.minidump",
            AttachmentType::AppleCrashReport => "event.applecrashreport",
            AttachmentType::EventPayload => "event.payload",
            AttachmentType::Breadcrumbs => "event.breadcrumbs",
            AttachmentType::ViewHierarchy => "event.view_hierarchy",
            AttachmentType::UnrealContext => "unreal.context",
            AttachmentType::UnrealLogs => "unreal.logs",
            AttachmentType::Prosperodump => "playstation.prosperodump",
            AttachmentType::NintendoSwitchDyingMessage => "nswitch.dying_message",
            AttachmentType::Unknown(other) => other,
        }
    }
}

impl FromStr for AttachmentType {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "event.attachment" => AttachmentType::Attachment,
            "event.minidump" => AttachmentType::Minidump,
            "event.applecrashreport" => AttachmentType::AppleCrashReport,
            "event.payload" => AttachmentType::EventPayload,
            "event.breadcrumbs" => AttachmentType::Breadcrumbs,
            "event.view_hierarchy" => AttachmentType::ViewHierarchy,
            "unreal.context" => AttachmentType::UnrealContext,
            "unreal.logs" => AttachmentType::UnrealLogs,
            "playstation.prosperodump" => AttachmentType::Prosperodump,
            "nswitch.dying_message" => AttachmentType::NintendoSwitchDyingMessage,
            other => AttachmentType::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for AttachmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for AttachmentType {
    fn from(s: &str) -> Self {
        s.parse().unwrap_or_else(|e| match e {})
    }
}

impl Serialize for AttachmentType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttachmentType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(AttachmentType::from(s.as_str()))
    }
}

/// Parses the envelope header; returns it and the offset just past its terminating newline.
fn parse_envelope_headers(bytes: &[u8]) -> Result<(EnvelopeHeaders, usize), EnvelopeError> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<EnvelopeHeaders>();
    let headers = match stream.next() {
        None => return Err(EnvelopeError::MissingHeader),
        Some(Err(err)) => return Err(EnvelopeError::InvalidHeader(err)),
        Some(Ok(headers)) => headers,
    };
    let end = stream.byte_offset();
    match bytes.get(end) {
        None => Ok((headers, end)),
        Some(b'\n') => Ok((headers, end + 1)),
        Some(_) => Err(EnvelopeError::MissingNewlineAfterHeader),
    }
}

/// Parses the item starting at `offset` (which must not be at the end of the body); returns
/// it and the offset of whatever follows its payload's terminating newline.
fn parse_item(bytes: &Bytes, offset: usize, index: usize) -> Result<(Item, usize), EnvelopeError> {
    let rest = bytes.get(offset..).unwrap_or_default();
    let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<ItemHeaders>();
    let headers = match stream.next() {
        // Only reachable if the caller skipped its end-of-body check; report it as a header
        // that is missing rather than panic.
        None => {
            return Err(EnvelopeError::InvalidItemHeader {
                index,
                source: de::Error::custom("expected an item header, found the end of the body"),
            });
        }
        Some(Err(source)) => return Err(EnvelopeError::InvalidItemHeader { index, source }),
        Some(Ok(headers)) => headers,
    };
    let header_end = offset + stream.byte_offset();
    let payload_start = match bytes.get(header_end) {
        // The last item may end right after its header: an empty payload.
        None => header_end,
        Some(b'\n') => header_end + 1,
        Some(_) => return Err(EnvelopeError::MissingNewlineAfterItemHeader { index }),
    };
    let available = bytes.len() - payload_start;

    let (payload_end, next) = match headers.length {
        Some(length) => {
            let payload_end = usize::try_from(length)
                .ok()
                .filter(|&len| len <= available)
                .map(|len| payload_start + len)
                .ok_or(EnvelopeError::PayloadOverrun {
                    index,
                    length,
                    available,
                })?;
            match bytes.get(payload_end) {
                None => (payload_end, payload_end),
                Some(b'\n') => (payload_end, payload_end + 1),
                Some(_) => {
                    return Err(EnvelopeError::MissingNewlineAfterPayload { index, length });
                }
            }
        }
        // No length: the payload is the rest of the line. A `\r` before the `\n` is payload.
        None => match bytes[payload_start..].iter().position(|&b| b == b'\n') {
            Some(newline) => (payload_start + newline, payload_start + newline + 1),
            None => (bytes.len(), bytes.len()),
        },
    };

    let item = Item {
        headers,
        payload: bytes.slice(payload_start..payload_end),
    };
    Ok((item, next))
}

/// JSON's whitespace, which the JSON parser skips before a header anyway.
fn only_whitespace(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Parses `sent_at`: RFC 3339 (what SDKs send), or the same without a zone, read as UTC (old
/// SDKs). Years outside 0..=9999 are rejected so that every accepted value can be written back.
fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|dt| dt.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|naive| naive.and_utc())
        })
        .ok()?;
    (0..=9999).contains(&parsed.year()).then_some(parsed)
}

/// Formats a timestamp as SDKs do: RFC 3339 in UTC with a `Z`, fractional digits only as needed.
fn format_timestamp(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn into_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Tracks which known header fields appeared, to refuse duplicates: a JSON parser would
/// silently keep the last one, and for `length` or `type` that would mean guessing.
#[derive(Default)]
struct FieldsSeen(Vec<&'static str>);

impl FieldsSeen {
    fn first<E: de::Error>(&mut self, field: &'static str) -> Result<(), E> {
        if self.0.contains(&field) {
            return Err(E::duplicate_field(field));
        }
        self.0.push(field);
        Ok(())
    }
}

/// Writes a JSON object field by field, in the order given (so that `type` comes first in item
/// headers, as SDKs write them). Infallible: values are rendered through `serde_json::Value`.
#[derive(Default)]
struct JsonObject(String);

impl JsonObject {
    fn field(&mut self, key: &str, value: &Value) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(&value.to_string());
    }

    fn field_str(&mut self, key: &str, value: &str) {
        self.field(key, &Value::from(value));
    }

    fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENT_ID: &str = "9ec79c33ec9942ab8353589fcb2e04dc";
    const DSN: &str = "https://e12d836b15bb49d7bbf99e64295d995b@sentry.example.com/42";

    fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Envelope::parse(Bytes::copy_from_slice(bytes))
    }

    fn parse_ok(bytes: &[u8]) -> Envelope {
        match parse(bytes) {
            Ok(envelope) => envelope,
            Err(err) => panic!("{err}: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn types(envelope: &Envelope) -> Vec<&str> {
        envelope.items.iter().map(|i| i.ty().as_str()).collect()
    }

    fn payloads(envelope: &Envelope) -> Vec<&[u8]> {
        envelope.items.iter().map(|i| i.payload.as_ref()).collect()
    }

    /// What sentry-python writes: `length` on every item, every payload ends with `\n`.
    fn python_envelope() -> Vec<u8> {
        let event = json!({
            "event_id": EVENT_ID,
            "level": "error",
            "platform": "python",
            "timestamp": "2026-01-02T03:04:05.123456Z",
            "exception": {"values": [{"type": "ZeroDivisionError", "value": "division by zero"}]},
        })
        .to_string();
        let attachment: &[u8] = b"line one\nline two\r\n\x00\xff\xfe binary\n";
        let mut out = Vec::new();
        out.extend_from_slice(
            format!(
                r#"{{"event_id":"{EVENT_ID}","sent_at":"2026-01-02T03:04:05.678901Z","trace":{{"trace_id":"0af7651916cd43dd8448eb211c80319c","public_key":"e12d836b15bb49d7bbf99e64295d995b","environment":"production","release":"app@1.0","sample_rate":"1.0","sampled":"true"}}}}"#
            )
            .as_bytes(),
        );
        out.push(b'\n');
        out.extend_from_slice(
            format!(
                r#"{{"type":"event","content_type":"application/json","length":{}}}"#,
                event.len()
            )
            .as_bytes(),
        );
        out.push(b'\n');
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(
            format!(
                r#"{{"type":"attachment","length":{},"filename":"app.log","content_type":"application/octet-stream","attachment_type":"event.attachment"}}"#,
                attachment.len()
            )
            .as_bytes(),
        );
        out.push(b'\n');
        out.extend_from_slice(attachment);
        out.push(b'\n');
        out
    }

    /// What the browser JS SDK writes: no `length` on JSON items, no trailing newline.
    fn js_envelope() -> Vec<u8> {
        format!(
            "{{\"event_id\":\"{EVENT_ID}\",\"sent_at\":\"2026-01-02T03:04:05.678Z\",\"sdk\":{{\"name\":\"sentry.javascript.browser\",\"version\":\"9.0.0\"}},\"trace\":{{\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"public_key\":\"e12d836b15bb49d7bbf99e64295d995b\",\"sampled\":\"true\"}}}}\n\
             {{\"type\":\"event\"}}\n\
             {{\"event_id\":\"{EVENT_ID}\",\"level\":\"error\",\"platform\":\"javascript\",\"exception\":{{\"values\":[{{\"type\":\"TypeError\",\"value\":\"x is undefined\"}}]}}}}\n\
             {{\"type\":\"attachment\",\"length\":5,\"filename\":\"note.txt\",\"content_type\":\"text/plain\"}}\n\
             hello"
        )
        .into_bytes()
    }

    #[test]
    fn python_sdk_envelope() {
        let bytes = python_envelope();
        let envelope = parse_ok(&bytes);
        assert_eq!(
            envelope.event_id(),
            Some(Uuid::parse_str(EVENT_ID).unwrap())
        );
        assert_eq!(
            envelope.headers.sent_at.map(format_timestamp).as_deref(),
            Some("2026-01-02T03:04:05.678901Z")
        );
        assert_eq!(
            envelope
                .headers
                .trace
                .as_ref()
                .and_then(|t| t.get("release")),
            Some(&json!("app@1.0"))
        );
        assert_eq!(types(&envelope), ["event", "attachment"]);
        let event: Value = serde_json::from_slice(&envelope.items[0].payload).unwrap();
        assert_eq!(event["exception"]["values"][0]["type"], "ZeroDivisionError");
        let attachment = &envelope.items[1];
        assert_eq!(
            attachment.payload.as_ref(),
            b"line one\nline two\r\n\x00\xff\xfe binary\n"
        );
        assert_eq!(attachment.headers.filename.as_deref(), Some("app.log"));
        assert_eq!(
            attachment.headers.attachment_type,
            Some(AttachmentType::Attachment)
        );
        assert_eq!(
            attachment.headers.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            attachment.headers.length,
            Some(attachment.payload.len() as u64)
        );
    }

    #[test]
    fn js_sdk_envelope() {
        let envelope = parse_ok(&js_envelope());
        assert_eq!(types(&envelope), ["event", "attachment"]);
        assert_eq!(envelope.items[0].headers.length, None);
        let event: Value = serde_json::from_slice(&envelope.items[0].payload).unwrap();
        assert_eq!(event["platform"], "javascript");
        assert_eq!(envelope.items[1].payload.as_ref(), b"hello");
        assert_eq!(
            envelope.headers.sdk,
            Some(json!({"name": "sentry.javascript.browser", "version": "9.0.0"}))
        );
    }

    #[test]
    fn js_event_only_without_trailing_newline() {
        let envelope = parse_ok(b"{}\n{\"type\":\"event\"}\n{\"message\":\"hi\"}");
        assert_eq!(payloads(&envelope), [b"{\"message\":\"hi\"}".as_ref()]);
    }

    #[test]
    fn payloads_are_slices_of_the_input() {
        let bytes = Bytes::from(python_envelope());
        let envelope = Envelope::parse(bytes.clone()).unwrap();
        let range = bytes.as_ptr_range();
        for item in &envelope.items {
            assert!(range.contains(&item.payload.as_ptr()), "payload was copied");
        }
    }

    #[test]
    fn headers_only_envelopes() {
        for body in [
            format!("{{\"event_id\":\"{EVENT_ID}\",\"dsn\":\"{DSN}\"}}"),
            format!("{{\"event_id\":\"{EVENT_ID}\",\"dsn\":\"{DSN}\"}}\n"),
        ] {
            let envelope = parse_ok(body.as_bytes());
            assert!(envelope.items.is_empty());
            assert_eq!(envelope.headers.dsn.as_deref(), Some(DSN));
            assert_eq!(
                envelope.event_id(),
                Some(Uuid::parse_str(EVENT_ID).unwrap())
            );
        }
        let envelope = parse_ok(b"{}");
        assert_eq!(envelope, Envelope::default());
    }

    #[test]
    fn empty_body_is_missing_header() {
        for body in [&b""[..], b"\n", b"  \r\n\t"] {
            assert!(matches!(parse(body), Err(EnvelopeError::MissingHeader)));
        }
    }

    #[test]
    fn extra_trailing_whitespace_is_tolerated() {
        let envelope = parse_ok(b"{}\n{\"type\":\"event\",\"length\":2}\n{}\n\n\r\n");
        assert_eq!(payloads(&envelope), [b"{}".as_ref()]);
        assert!(parse_ok(b"{}\n\n").items.is_empty());
    }

    #[test]
    fn empty_payloads_with_and_without_length() {
        let body = b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}\n";
        assert_eq!(payloads(&parse_ok(body)), [b"".as_ref(), b""]);
        let body =
            b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}";
        assert_eq!(payloads(&parse_ok(body)), [b"".as_ref(), b""]);
        // Header at the very end without newline and without length: empty payload.
        let body = b"{}\n{\"type\":\"attachment\"}";
        assert_eq!(payloads(&parse_ok(body)), [b"".as_ref()]);
        // Implicit length, empty line as payload, then another item.
        let body = b"{}\n{\"type\":\"session\"}\n\n{\"type\":\"event\"}\n{}";
        assert_eq!(types(&parse_ok(body)), ["session", "event"]);
        assert_eq!(payloads(&parse_ok(body)), [b"".as_ref(), b"{}"]);
    }

    #[test]
    fn carriage_return_belongs_to_payload_without_length() {
        let envelope =
            parse_ok(b"{}\n{\"type\":\"attachment\"}\nhello\r\n{\"type\":\"event\"}\n{}\r");
        assert_eq!(payloads(&envelope), [b"hello\r".as_ref(), b"{}\r"]);
    }

    #[test]
    fn length_payload_may_contain_newlines_and_binary() {
        let payload: &[u8] = b"\n\n\r\n{\"type\":\"event\"}\n\x00\x01\xff";
        let mut body = format!(
            "{{}}\n{{\"type\":\"attachment\",\"length\":{}}}\n",
            payload.len()
        )
        .into_bytes();
        body.extend_from_slice(payload);
        // With and without the optional trailing newline.
        assert_eq!(payloads(&parse_ok(&body)), [payload]);
        body.push(b'\n');
        assert_eq!(payloads(&parse_ok(&body)), [payload]);
    }

    #[test]
    fn length_too_long_is_an_overrun() {
        let err = parse(b"{}\n{\"type\":\"attachment\",\"length\":10}\nhello").unwrap_err();
        assert!(
            matches!(
                err,
                EnvelopeError::PayloadOverrun {
                    index: 0,
                    length: 10,
                    available: 5
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "item 0 declares a length of 10 bytes but only 5 remain"
        );
        // Declared length but the body ends right after the header.
        assert!(matches!(
            parse(b"{}\n{\"type\":\"attachment\",\"length\":1}"),
            Err(EnvelopeError::PayloadOverrun { available: 0, .. })
        ));
        // Lengths that do not fit in memory must not overflow.
        let body = format!(
            "{{}}\n{{\"type\":\"attachment\",\"length\":{}}}\nx",
            u64::MAX
        );
        assert!(matches!(
            parse(body.as_bytes()),
            Err(EnvelopeError::PayloadOverrun { .. })
        ));
    }

    #[test]
    fn length_too_short_is_missing_newline() {
        let err = parse(b"{}\n{\"type\":\"attachment\",\"length\":3}\nhello\n").unwrap_err();
        assert!(
            matches!(
                err,
                EnvelopeError::MissingNewlineAfterPayload {
                    index: 0,
                    length: 3
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_envelopes() {
        let full = python_envelope();
        // Cutting the body anywhere must give an error or a shorter valid envelope, never a
        // panic; cutting inside the attachment must be an overrun.
        for cut in 0..full.len() {
            let _ = parse(&full[..cut]);
        }
        let cut = full.len() - 10;
        assert!(matches!(
            parse(&full[..cut]),
            Err(EnvelopeError::PayloadOverrun { index: 1, .. })
        ));
        // Cut inside an item header.
        let header_end = full.iter().position(|&b| b == b'\n').unwrap();
        assert!(matches!(
            parse(&full[..header_end + 10]),
            Err(EnvelopeError::InvalidItemHeader { index: 0, .. })
        ));
    }

    #[test]
    fn invalid_json_headers() {
        assert!(matches!(
            parse(b"{\"event_id\":\n"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"[]\n"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"null"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"hello"),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        let err = parse(b"{}\n{\"type\":\"event\"\n{}").unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::InvalidItemHeader { index: 0, .. }
        ));
        let err = parse(b"{}\n{\"type\":\"event\"}\n{}\n[1,2]\n").unwrap_err();
        assert!(
            matches!(err, EnvelopeError::InvalidItemHeader { index: 1, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("invalid header of item 1: "),
            "{err}"
        );
    }

    #[test]
    fn missing_newline_after_headers() {
        assert!(matches!(
            parse(b"{} \n"),
            Err(EnvelopeError::MissingNewlineAfterHeader)
        ));
        assert!(matches!(
            parse(b"{}{\"type\":\"event\"}\n{}"),
            Err(EnvelopeError::MissingNewlineAfterHeader)
        ));
        // Windows line endings are not part of the grammar.
        assert!(matches!(
            parse(b"{}\r\n{\"type\":\"event\"}\r\n{}"),
            Err(EnvelopeError::MissingNewlineAfterHeader)
        ));
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\"}x\n{}"),
            Err(EnvelopeError::MissingNewlineAfterItemHeader { index: 0 })
        ));
    }

    #[test]
    fn item_header_field_checks() {
        let invalid = |body: &[u8]| match parse(body) {
            Err(EnvelopeError::InvalidItemHeader { source, .. }) => source.to_string(),
            other => panic!("expected an invalid item header, got {other:?}"),
        };
        assert!(invalid(b"{}\n{\"length\":2}\n{}").contains("missing field `type`"));
        assert!(invalid(b"{}\n{\"type\":5}\n{}").contains("`type` must be a string"));
        for length in ["-1", "1.5", "\"2\"", "true", "[]"] {
            let body = format!("{{}}\n{{\"type\":\"event\",\"length\":{length}}}\n{{}}");
            assert!(
                invalid(body.as_bytes()).contains("`length` must be"),
                "{length}"
            );
        }
        assert!(
            invalid(b"{}\n{\"type\":\"event\",\"length\":2,\"length\":3}\n{}")
                .contains("duplicate field `length`")
        );
        assert!(
            invalid(b"{}\n{\"type\":\"event\",\"type\":\"session\"}\n{}").contains("duplicate")
        );
        // `length: null` is no length.
        let envelope = parse_ok(b"{}\n{\"type\":\"event\",\"length\":null}\n{}");
        assert_eq!(envelope.items[0].headers.length, None);
    }

    #[test]
    fn odd_descriptive_item_fields_are_ignored() {
        let envelope = parse_ok(
            b"{}\n{\"type\":\"attachment\",\"length\":1,\"filename\":7,\"content_type\":null,\"attachment_type\":{}}\nx",
        );
        let headers = &envelope.items[0].headers;
        assert_eq!(headers.filename, None);
        assert_eq!(headers.content_type, None);
        assert_eq!(headers.attachment_type, None);
    }

    #[test]
    fn unknown_fields_and_types_are_kept() {
        let envelope = parse_ok(
            b"{\"future\":{\"a\":1}}\n{\"type\":\"otel_span\",\"length\":2,\"item_count\":3,\"platform\":\"x\"}\n{}\n{\"type\":\"profile_chunk_ui\"}\n{}",
        );
        assert_eq!(envelope.headers.other.get("future"), Some(&json!({"a": 1})));
        assert_eq!(
            envelope.items[0].headers.ty,
            ItemType::Unknown("otel_span".into())
        );
        assert_eq!(
            envelope.items[0].headers.other.get("item_count"),
            Some(&json!(3))
        );
        assert_eq!(envelope.items[1].headers.ty, ItemType::ProfileChunk);
    }

    #[test]
    fn envelope_header_leniency_and_strictness() {
        // Malformed sent_at / trace / sdk read as absent.
        let envelope = parse_ok(b"{\"sent_at\":\"yesterday\",\"trace\":\"abc\",\"sdk\":[1]}");
        assert_eq!(envelope.headers.sent_at, None);
        assert_eq!(envelope.headers.trace, None);
        assert_eq!(envelope.headers.sdk, None);
        let envelope = parse_ok(b"{\"sent_at\":12345,\"trace\":null}");
        assert_eq!(envelope.headers.sent_at, None);
        // Zone-less timestamps of old SDKs are UTC.
        let envelope = parse_ok(b"{\"sent_at\":\"2020-05-06T07:08:09.5\"}");
        assert_eq!(
            envelope.headers.sent_at.map(format_timestamp).as_deref(),
            Some("2020-05-06T07:08:09.500Z")
        );
        // Offsets are converted to UTC.
        let envelope = parse_ok(b"{\"sent_at\":\"2020-05-06T09:08:09+02:00\"}");
        assert_eq!(
            envelope.headers.sent_at.map(format_timestamp).as_deref(),
            Some("2020-05-06T07:08:09Z")
        );
        // Hyphenated event ids are fine; garbage is not.
        let envelope = parse_ok(b"{\"event_id\":\"9ec79c33-ec99-42ab-8353-589fcb2e04dc\"}");
        assert_eq!(
            envelope.event_id(),
            Some(Uuid::parse_str(EVENT_ID).unwrap())
        );
        assert!(parse_ok(b"{\"event_id\":null}").event_id().is_none());
        for bad in [
            &b"{\"event_id\":\"nope\"}"[..],
            b"{\"event_id\":42}",
            b"{\"dsn\":42}",
            b"{\"sent_at\":\"2020-01-01T00:00:00Z\",\"sent_at\":\"2020-01-01T00:00:00Z\"}",
        ] {
            assert!(
                matches!(parse(bad), Err(EnvelopeError::InvalidHeader(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn item_type_strings_round_trip() {
        let known = [
            "event",
            "transaction",
            "security",
            "attachment",
            "form_data",
            "raw_security",
            "nel",
            "unreal_report",
            "user_report",
            "feedback",
            "session",
            "sessions",
            "statsd",
            "metric_buckets",
            "client_report",
            "profile",
            "profile_chunk",
            "replay_event",
            "replay_recording",
            "replay_video",
            "check_in",
            "log",
            "trace_metric",
            "span",
            "integration",
        ];
        for s in known {
            let ty: ItemType = s.parse().unwrap();
            assert!(!matches!(ty, ItemType::Unknown(_)), "{s}");
            assert_eq!(ty.to_string(), s);
            assert_eq!(serde_json::to_value(&ty).unwrap(), json!(s));
            assert_eq!(serde_json::from_value::<ItemType>(json!(s)).unwrap(), ty);
        }
        assert_eq!(ItemType::from("profile_chunk_ui"), ItemType::ProfileChunk);
        assert_eq!(ItemType::from("Event"), ItemType::Unknown("Event".into()));
        assert_eq!(ItemType::from("metric_meta").to_string(), "metric_meta");
    }

    #[test]
    fn attachment_type_strings_round_trip() {
        for s in [
            "event.attachment",
            "event.minidump",
            "event.applecrashreport",
            "event.payload",
            "event.breadcrumbs",
            "event.view_hierarchy",
            "unreal.context",
            "unreal.logs",
            "playstation.prosperodump",
            "nswitch.dying_message",
        ] {
            let ty = AttachmentType::from(s);
            assert!(!matches!(ty, AttachmentType::Unknown(_)), "{s}");
            assert_eq!(ty.to_string(), s);
        }
        assert_eq!(AttachmentType::default(), AttachmentType::Attachment);
        assert_eq!(
            AttachmentType::from("event.something_new"),
            AttachmentType::Unknown("event.something_new".into())
        );
    }

    #[test]
    fn serialization_round_trips() {
        for body in [python_envelope(), js_envelope()] {
            let first = parse_ok(&body);
            let bytes = first.to_bytes();
            let second = Envelope::parse(bytes.clone()).unwrap();
            assert_eq!(types(&first), types(&second));
            assert_eq!(payloads(&first), payloads(&second));
            assert_eq!(first.headers, second.headers);
            for (a, b) in first.items.iter().zip(&second.items) {
                assert_eq!(a.headers.content_type, b.headers.content_type);
                assert_eq!(a.headers.filename, b.headers.filename);
                assert_eq!(a.headers.attachment_type, b.headers.attachment_type);
                assert_eq!(b.headers.length, Some(b.payload.len() as u64));
            }
            // Serializing again is stable.
            assert_eq!(second.to_bytes(), bytes);
        }
    }

    #[test]
    fn serialization_format() {
        let mut envelope = Envelope::new(EnvelopeHeaders {
            event_id: Some(Uuid::parse_str(EVENT_ID).unwrap()),
            dsn: Some(DSN.to_owned()),
            sent_at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            ..EnvelopeHeaders::default()
        });
        let mut attachment = Item::new(ItemType::Attachment, &b"a\nb"[..]);
        attachment.headers.filename = Some("x.txt".into());
        // A stale declared length and a colliding `other` key must not leak into the output.
        attachment.headers.length = Some(99);
        attachment.headers.other.insert("length".into(), json!(1));
        attachment
            .headers
            .other
            .insert("zzz".into(), json!("\"quoted\"\n"));
        envelope.items.push(attachment);
        envelope.items.push(Item::new(ItemType::Event, "{}"));
        let expected = format!(
            "{{\"event_id\":\"{EVENT_ID}\",\"dsn\":\"{DSN}\",\"sent_at\":\"2026-01-02T03:04:05.678Z\"}}\n\
             {{\"type\":\"attachment\",\"length\":3,\"filename\":\"x.txt\",\"zzz\":\"\\\"quoted\\\"\\n\"}}\na\nb\n\
             {{\"type\":\"event\",\"length\":2}}\n{{}}\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&envelope.to_bytes()),
            expected.as_str()
        );
        assert_eq!(Envelope::default().to_bytes().as_ref(), b"{}\n");
    }

    #[test]
    fn event_envelope_helper() {
        let id = Uuid::new_v4();
        let event = json!({"event_id": id.simple().to_string(), "message": "hello"}).to_string();
        let envelope = Envelope::from_event_json(id, event.clone());
        let parsed = Envelope::parse(envelope.to_bytes()).unwrap();
        assert_eq!(parsed.event_id(), Some(id));
        assert!(parsed.headers.sent_at.is_some());
        let events: Vec<_> = parsed.items_of_type(&ItemType::Event).collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload.as_ref(), event.as_bytes());
        assert_eq!(
            events[0].headers.content_type.as_deref(),
            Some("application/json")
        );
    }

    #[test]
    fn many_items_and_blank_lines_between_headers() {
        // JSON allows whitespace before a header; Relay's parser skips it too.
        let envelope = parse_ok(b"{}\n{\"type\":\"event\",\"length\":2}\n{}\n \n\t{\"type\":\"session\",\"length\":2}\n{}");
        assert_eq!(types(&envelope), ["event", "session"]);
        let mut body = b"{}\n".to_vec();
        for i in 0..1000 {
            body.extend_from_slice(format!("{{\"type\":\"log\"}}\n{i}\n").as_bytes());
        }
        let envelope = parse_ok(&body);
        assert_eq!(envelope.items.len(), 1000);
        assert_eq!(envelope.items[999].payload.as_ref(), b"999");
    }

    #[test]
    fn error_messages_are_readable() {
        let err = parse(b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "empty envelope: expected a JSON object as envelope header"
        );
        assert_eq!(err.status(), 400);
        let err = parse(b"{\"event_id\":\"x\"}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid envelope header: `event_id` is not a UUID"),
            "{err}"
        );
        let err = parse(b"{}\n{\"type\":\"attachment\",\"length\":1}\nab").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing newline after the payload of item 0 (its length 1 is wrong)"
        );
    }
}
