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
    /// The payload as raw JSON.
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
    /// Or the payload zstd-compressed, base64-encoded: what ingest writes, because every
    /// accepted event is written to the queue on the hot path and a quarter of the bytes
    /// is a quarter of the I/O.
    #[serde(default)]
    pub payload_zstd: Option<String>,
    /// W3C `traceparent` of the ingest request that queued the job, when Faultline's own
    /// tracing is on: the worker's span for the job continues that trace. Jobs queued
    /// before this field existed decode with `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A job whose payload cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job has no payload")]
    Missing,
    #[error("job payload is not valid base64/zstd: {0}")]
    Corrupt(String),
}

impl EventJob {
    /// Encodes a payload for `payload_zstd`.
    pub fn pack_payload(raw: &[u8]) -> std::io::Result<String> {
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(crate::compress::zstd(raw)?))
    }

    /// The payload bytes, decompressing when needed (at most `limit` bytes).
    pub fn payload_bytes(&self, limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, JobError> {
        use base64::Engine;
        if let Some(raw) = &self.payload {
            return Ok(std::borrow::Cow::Borrowed(raw.get().as_bytes()));
        }
        let packed = self.payload_zstd.as_deref().ok_or(JobError::Missing)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(packed)
            .map_err(|e| JobError::Corrupt(e.to_string()))?;
        crate::compress::unzstd(&bytes, limit)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| JobError::Corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_payload_round_trips() {
        let raw = br#"{"message":"boom","extra":{"a":1}}"#;
        let job = EventJob {
            project_id: 1,
            event_id: "x".into(),
            received_ms: 0,
            client_ip: None,
            sent_at: None,
            envelope_sdk: None,
            kind: PayloadKind::Event,
            payload: None,
            payload_zstd: Some(EventJob::pack_payload(raw).expect("pack")),
            traceparent: None,
        };
        let json = serde_json::to_vec(&job).expect("serialize");
        let back: EventJob = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(&*back.payload_bytes(1 << 20).expect("payload"), &raw[..]);
        let broken = EventJob {
            payload_zstd: Some("!!!".into()),
            ..back
        };
        assert!(broken.payload_bytes(1 << 20).is_err());
    }

    #[test]
    fn jobs_queued_before_trace_context_still_decode() {
        let old = br#"{"project_id":1,"event_id":"ab","received_ms":5,"client_ip":null,"kind":"event","payload":{"message":"hi"}}"#;
        let job: EventJob = serde_json::from_slice(old).expect("old job decodes");
        assert_eq!(job.traceparent, None);
        assert_eq!(
            &*job.payload_bytes(1 << 10).expect("payload"),
            br#"{"message":"hi"}"#
        );
    }
}
