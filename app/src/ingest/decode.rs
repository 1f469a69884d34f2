//! Decompressing request bodies, once the sender's DSN key has been checked.
//!
//! A small body (at most [`INLINE_MAX_COMPRESSED`] as sent) is decoded right where it
//! arrived, on the event loop, with its output cut at [`INLINE_MAX_OUTPUT`]: a typical SDK
//! event is a few KiB compressed and decodes in microseconds, and handing it to another
//! thread and back would cost more than the decoding (ingest runs at ~30,000 events/s on
//! two cores, BENCHMARKS.md). Anything larger — a big body, or a small one that expands past
//! the inline cut — is decoded on tokio's blocking pool, at most [`slots`] at a time (one
//! per core): a flood of large or bomb-like bodies then costs those threads, never the
//! event loop that answers everybody else. A request that finds every slot taken for
//! [`SLOT_WAIT`] is answered `429` with `Retry-After`.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::StatusCode;
use bytes::Bytes;
use faultline_core::body::{self, BodyError, ContentEncoding};
use faultline_core::metrics::{self, ThreadLabel};
use tokio::sync::Semaphore;

use super::IngestError;

/// Compressed bodies up to this size are decoded on the event loop.
pub const INLINE_MAX_COMPRESSED: usize = 16 * 1024;
/// Output of an inline decode past which the body is decoded again on the blocking pool
/// (about a millisecond of gzip work).
pub const INLINE_MAX_OUTPUT: usize = 1024 * 1024;
/// How long a request waits for a decompression slot before it is answered `429`.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);
/// Output read from an envelope whose only credentials are in its header, before the key is
/// checked: the header line and no more.
pub const HEADER_LINE_MAX: usize = 64 * 1024;

/// Decompressions that may run on the blocking pool at once: one per core.
fn slots() -> &'static Semaphore {
    static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores)
    });
    &SLOTS
}

fn body_error(e: BodyError) -> IngestError {
    IngestError::new(status(e.status()), e.to_string())
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The `Content-Encoding` of a request, or `415` for one we cannot decode.
pub fn encoding(header: Option<&str>) -> Result<ContentEncoding, IngestError> {
    ContentEncoding::parse(header).map_err(body_error)
}

fn counted(thread: &'static str, out: &Result<Bytes, BodyError>) {
    let m = metrics::get();
    m.ingest_decompressions
        .get_or_create(&ThreadLabel { thread })
        .inc();
    if let Ok(out) = out {
        m.ingest_decompressed_bytes.inc_by(out.len() as u64);
    }
}

/// The decompressed body, at most `limit` bytes (`413` past it).
pub async fn decode(
    encoding: ContentEncoding,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, IngestError> {
    if encoding == ContentEncoding::Identity {
        return body::decode_body_bytes(None, body, limit).map_err(body_error);
    }
    if body.len() <= INLINE_MAX_COMPRESSED {
        let cut = limit.min(INLINE_MAX_OUTPUT);
        let out = body::decode_encoded(encoding, &body, cut);
        counted("event_loop", &out);
        match out {
            Err(BodyError::TooLarge { .. }) if cut < limit => {}
            out => return out.map_err(body_error),
        }
    }
    let permit = tokio::time::timeout(SLOT_WAIT, slots().acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| IngestError::rate_limited(1, "organization", "decoder_busy"))?;
    let out = tokio::task::spawn_blocking(move || {
        let out = body::decode_encoded(encoding, &body, limit);
        drop(permit);
        out
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "decompression task failed");
        IngestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request body could not be decompressed",
        )
    })?;
    counted("blocking_pool", &out);
    out.map_err(body_error)
}

/// The envelope's first line (its header), decompressed alone: what ingest reads to find a
/// `dsn` before the sender has proved a key.
pub fn header_line(encoding: ContentEncoding, body: &[u8]) -> Result<Vec<u8>, IngestError> {
    let line = body::decode_first_line(encoding, body, HEADER_LINE_MAX).map_err(body_error)?;
    if encoding != ContentEncoding::Identity {
        metrics::get()
            .ingest_decompressed_bytes
            .inc_by(line.len() as u64);
    }
    Ok(line)
}
