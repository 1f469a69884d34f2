//! Jobs on the durable queue: what ingest hands to the worker.
//!
//! A job carries the raw item (already decompressed and checked to be JSON) plus the
//! request metadata the pipeline needs. The payload is embedded as raw JSON, not as an
//! escaped string, so the queue stores it once at its own size and the worker parses it
//! exactly once.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Name of the queue that carries [`EventJob`]s.
pub const EVENT_QUEUE: &str = "faultline::events";

/// What kind of payload an [`EventJob`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// An error/message event item (envelope `event` item or `/store/` body).
    Event,
    /// A browser security report (`/security/` body) to be turned into a `csp` event.
    SecurityReport,
}

/// One event to process: produced by ingest, consumed by the worker pipeline.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventJob {
    pub project_id: i64,
    /// The id answered to the SDK (envelope header, payload, or generated), 32 hex.
    pub event_id: String,
    /// Unix milliseconds when ingest accepted it.
    pub received_ms: i64,
    pub client_ip: Option<String>,
    /// Envelope header `sent_at`, for clock-drift correction.
    #[serde(default)]
    pub sent_at: Option<String>,
    /// Envelope header `sdk`, used when the event itself names none.
    #[serde(default)]
    pub envelope_sdk: Option<Box<RawValue>>,
    pub kind: PayloadKind,
    pub payload: Box<RawValue>,
}
