//! Jobs on the durable queue: what ingest hands to the worker.
//!
//! A job carries the raw item (already decompressed and checked to be JSON) plus the
//! request metadata the pipeline needs. Two wire forms:
//!
//! - **Frame** (the embedded SQLite queue, written by ingest): `FLJ1`, the head's length
//!   (u32 LE), the head (the job's metadata as JSON, no payload), the payload's length
//!   (u32 LE), then the payload as one lz4 block. Binary, so the compressed payload is
//!   stored at its own size (base64 inside JSON added a third), and lz4 is ~3x cheaper
//!   than zstd on the hot path of every accepted event.
//! - **JSON** (Redis, whose apalis storage only speaks JSON; and jobs queued by earlier
//!   versions): the head's fields plus `payload` (raw JSON) or `payload_zstd` (base64).
//!
//! [`EventJob::decode`] reads both.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Name of the queue that carries [`EventJob`]s.
pub const EVENT_QUEUE: &str = "faultline::events";

/// What kind of payload an [`EventJob`] carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// An error/message event item (envelope `event` item or `/store/` body).
    #[default]
    Event,
    /// A browser security report (`/security/` body) to be turned into a `csp` event.
    SecurityReport,
    /// A cron monitor check-in in the normal form of `protocol::check_in::CheckIn`.
    CheckIn,
    /// Release health: a JSON array of the envelope's checked `session` items.
    Session,
    /// Release health: a JSON array of the envelope's checked `sessions` items.
    Sessions,
}

/// One event to process: produced by ingest, consumed by the worker pipeline.
#[derive(Debug, Default, Serialize, Deserialize)]
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
    /// Or the payload as a length-prefixed lz4 block, from a frame (never in JSON).
    #[serde(skip)]
    pub payload_lz4: Option<Vec<u8>>,
    /// Why the queued bytes could not be read as a job ([`EventJob::undecodable`]).
    #[serde(skip)]
    pub decode_error: Option<String>,
}

/// The first bytes of a framed job (a JSON job starts with `{`).
pub const FRAME_MAGIC: &[u8; 4] = b"FLJ1";

/// A job's metadata, borrowed: what ingest writes as a frame's head (or, with a payload
/// field added, as a JSON job).
#[derive(Debug, Serialize)]
pub struct JobHead<'a> {
    pub project_id: i64,
    pub event_id: &'a str,
    pub received_ms: i64,
    pub client_ip: Option<&'a str>,
    pub sent_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope_sdk: Option<&'a serde_json::Value>,
    pub kind: PayloadKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<&'a str>,
}

/// What lz4 reuses from job to job on one thread: its output buffer and its hash table.
#[derive(Default)]
struct Lz4Scratch {
    out: Vec<u8>,
    table: Option<lz4_flex::block::CompressTable>,
}

thread_local! {
    static LZ4_SCRATCH: std::cell::RefCell<Lz4Scratch> = std::cell::RefCell::default();
}

impl JobHead<'_> {
    /// The job as a frame: head JSON, then the payload lz4-compressed.
    pub fn frame(&self, payload: &[u8]) -> Result<Vec<u8>, JobError> {
        let raw_len = u32::try_from(payload.len())
            .map_err(|_| JobError::Corrupt("payload larger than 4 GiB".into()))?;
        let max = lz4_flex::block::get_maximum_output_size(payload.len());
        // Compressed into a per-thread scratch buffer, zeroed once as it grows rather than
        // for every job (that memset was ~1.5 % of ingest's CPU), with a hash table that is
        // cleared rather than allocated zeroed for every job (another ~2 %), and the frame
        // is sized to what lz4 wrote, not to the worst case.
        LZ4_SCRATCH.with(|cell| {
            let scratch = &mut *cell.borrow_mut();
            if scratch.out.len() < max {
                scratch.out.resize(max, 0);
            }
            let table = scratch
                .table
                .get_or_insert_with(lz4_flex::block::CompressTable::small);
            let written =
                lz4_flex::block::compress_into_with_table(payload, &mut scratch.out[..max], table)
                    .map_err(|e| JobError::Corrupt(e.to_string()))?;
            let mut out = frame_head(self, 4 + written)?;
            out.extend_from_slice(&raw_len.to_le_bytes());
            out.extend_from_slice(&scratch.out[..written]);
            // A rare huge event should not pin its buffers for the thread's lifetime (its
            // table has grown to the large kind, too).
            if scratch.out.len() > 4 * 1024 * 1024 {
                *scratch = Lz4Scratch::default();
            }
            Ok(out)
        })
    }

    /// The job as JSON with the payload zstd-compressed in base64 (the Redis queue).
    pub fn json(&self, payload: &[u8]) -> Result<Vec<u8>, JobError> {
        let mut out = serde_json::to_vec(self).map_err(|e| JobError::Corrupt(e.to_string()))?;
        let packed =
            EventJob::pack_payload(payload).map_err(|e| JobError::Corrupt(e.to_string()))?;
        // `out` is an object: replace its closing brace by the payload field. Base64 needs
        // no JSON escaping.
        out.pop();
        out.extend_from_slice(b",\"payload_zstd\":\"");
        out.extend_from_slice(packed.as_bytes());
        out.extend_from_slice(b"\"}");
        Ok(out)
    }
}

/// A job whose payload cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job has no payload")]
    Missing,
    #[error("job payload is not valid base64/zstd/lz4: {0}")]
    Corrupt(String),
    #[error("job is neither a frame nor JSON: {0}")]
    Undecodable(String),
}

impl EventJob {
    /// Encodes a payload for `payload_zstd`.
    pub fn pack_payload(raw: &[u8]) -> std::io::Result<String> {
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(crate::compress::zstd(raw)?))
    }

    /// Writes the job back in the form it came in: a frame when its payload is lz4, else JSON.
    pub fn encode(&self) -> Result<Vec<u8>, JobError> {
        let Some(packed) = &self.payload_lz4 else {
            return serde_json::to_vec(self).map_err(|e| JobError::Corrupt(e.to_string()));
        };
        let mut out = frame_head(self, packed.len())?;
        // Already length-prefixed and compressed.
        out.extend_from_slice(packed);
        Ok(out)
    }

    /// A stand-in for queued bytes that are no job at all (a damaged row): the pipeline
    /// refuses it like any invalid payload, so it ends in the dead-letter state with this
    /// reason. A decoding error inside apalis would instead stop the whole worker, and the
    /// restarted worker would fetch the same job again, blocking every job behind it.
    pub fn undecodable(error: &JobError) -> EventJob {
        EventJob {
            decode_error: Some(error.to_string()),
            ..EventJob::default()
        }
    }

    /// Reads a job in either wire form (frame or JSON).
    pub fn decode(bytes: &[u8]) -> Result<EventJob, JobError> {
        let Some(rest) = bytes.strip_prefix(FRAME_MAGIC) else {
            return serde_json::from_slice(bytes).map_err(|e| JobError::Undecodable(e.to_string()));
        };
        let (head_len, rest) = split_u32(rest)?;
        if rest.len() < head_len {
            return Err(JobError::Undecodable("frame head is truncated".into()));
        }
        let (head, packed) = rest.split_at(head_len);
        let mut job: EventJob =
            serde_json::from_slice(head).map_err(|e| JobError::Undecodable(e.to_string()))?;
        // Checked here so that a damaged frame fails as a whole, not later in the worker.
        split_u32(packed)?;
        job.payload_lz4 = Some(packed.to_vec());
        Ok(job)
    }

    /// The payload bytes, decompressing when needed (at most `limit` bytes).
    pub fn payload_bytes(&self, limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, JobError> {
        use base64::Engine;
        if let Some(error) = &self.decode_error {
            return Err(JobError::Undecodable(error.clone()));
        }
        if let Some(raw) = &self.payload {
            return Ok(std::borrow::Cow::Borrowed(raw.get().as_bytes()));
        }
        if let Some(packed) = &self.payload_lz4 {
            let (len, block) = split_u32(packed)?;
            if len > limit {
                return Err(JobError::Corrupt(format!(
                    "payload of {len} bytes is over the limit of {limit}"
                )));
            }
            let mut out = vec![0; len];
            let written = lz4_flex::block::decompress_into(block, &mut out)
                .map_err(|e| JobError::Corrupt(e.to_string()))?;
            if written != len {
                return Err(JobError::Corrupt(format!(
                    "payload is {written} bytes, its frame says {len}"
                )));
            }
            return Ok(std::borrow::Cow::Owned(out));
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

/// A frame up to its payload: the magic, the head's length and the head, with room for
/// `payload_capacity` more bytes.
fn frame_head(head: &impl Serialize, payload_capacity: usize) -> Result<Vec<u8>, JobError> {
    let mut out = Vec::with_capacity(8 + 256 + payload_capacity);
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut out, head).map_err(|e| JobError::Corrupt(e.to_string()))?;
    let head_len = u32::try_from(out.len() - 8)
        .map_err(|_| JobError::Corrupt("job head larger than 4 GiB".into()))?;
    out[4..8].copy_from_slice(&head_len.to_le_bytes());
    Ok(out)
}

/// A little-endian u32 length and what follows it.
fn split_u32(bytes: &[u8]) -> Result<(usize, &[u8]), JobError> {
    match bytes.split_first_chunk::<4>() {
        Some((len, rest)) => Ok((u32::from_le_bytes(*len) as usize, rest)),
        None => Err(JobError::Undecodable("frame is truncated".into())),
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
            payload_zstd: Some(EventJob::pack_payload(raw).expect("pack")),
            ..EventJob::default()
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

    fn head(sdk: Option<&serde_json::Value>) -> JobHead<'_> {
        JobHead {
            project_id: 7,
            event_id: "0123456789abcdef0123456789abcdef",
            received_ms: 42,
            client_ip: Some("10.0.0.1"),
            sent_at: None,
            envelope_sdk: sdk,
            kind: PayloadKind::Event,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        }
    }

    #[test]
    fn frames_and_json_jobs_decode_to_the_same_job() {
        let sdk = serde_json::json!({"name": "sentry.python"});
        let payload = br#"{"message":"boom","extra":{"a":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#;
        let frame = head(Some(&sdk)).frame(payload).expect("frame");
        let reencoded = EventJob::decode(&frame)
            .and_then(|job| job.encode())
            .expect("re-encodes");
        for bytes in [
            frame,
            reencoded,
            head(Some(&sdk)).json(payload).expect("json"),
        ] {
            let job = EventJob::decode(&bytes).expect("decodes");
            assert_eq!(job.project_id, 7);
            assert_eq!(job.event_id, "0123456789abcdef0123456789abcdef");
            assert_eq!(job.client_ip.as_deref(), Some("10.0.0.1"));
            assert_eq!(
                job.envelope_sdk.as_ref().map(|s| s.get()),
                Some(r#"{"name":"sentry.python"}"#)
            );
            assert!(job.traceparent.is_some());
            assert_eq!(&*job.payload_bytes(1 << 20).expect("payload"), &payload[..]);
            assert!(job.payload_bytes(10).is_err(), "over the limit");
        }
    }

    /// Frames made one after another on a thread share its lz4 scratch buffer: a small
    /// payload after a large one carries nothing of the large one, and a frame is no larger
    /// than its head and what lz4 wrote.
    #[test]
    fn frames_in_a_row_carry_only_their_own_payload() {
        let large: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for payload in [&large[..], b"{}", &large[..1000], b"{\"a\":1}"] {
            let frame = head(None).frame(payload).expect("frame");
            let bound = 8 + 256 + 4 + lz4_flex::block::get_maximum_output_size(payload.len());
            assert!(frame.len() <= bound, "{} > {bound}", frame.len());
            let job = EventJob::decode(&frame).expect("decodes");
            assert_eq!(&*job.payload_bytes(1 << 30).expect("payload"), payload);
        }
    }

    #[test]
    fn damaged_frames_are_errors_not_panics() {
        let frame = head(None)
            .frame(&br#"{"message":"hello hello hello"}"#.repeat(20))
            .expect("frame");
        for cut in 0..frame.len() {
            // Any prefix either fails to decode or fails to unpack; none panics.
            if let Ok(job) = EventJob::decode(&frame[..cut]) {
                assert!(job.payload_bytes(1 << 20).is_err(), "cut at {cut}");
            }
        }
        let mut flipped = frame.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0xff;
        if let Ok(job) = EventJob::decode(&flipped) {
            let _ = job.payload_bytes(1 << 20);
        }
        assert!(EventJob::decode(b"FLJ1\xff\xff\xff\xff{}").is_err());
        assert!(EventJob::decode(b"garbage").is_err());
    }
}
