//! Chunked upload: `GET /api/0/organizations/{org}/chunk-upload/` tells sentry-cli how to
//! upload (sizes, gzip, which upload kinds we accept); `POST` to the same URL takes
//! `multipart/form-data` parts named `file_gzip` (gzip) or `file` (raw), each part's file
//! name the SHA-1 of the uncompressed chunk. Every chunk is checked and stored as a blob
//! owned by the uploading organization; uploading a chunk twice is harmless.
//!
//! A request holds its chunks in memory (at most [`MAX_REQUEST_SIZE`] plus one chunk), so at
//! most [`UPLOADS_AT_ONCE`] requests per process read their bodies at once; the others wait
//! for a place (their bodies unread) up to [`UPLOAD_WAIT`], then get `429` with
//! `Retry-After`.

use std::io::Read;
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use super::auth::Scope;
use super::{ApiAuth, ApiError, ApiResult, blobs, request_base};

/// Bytes of one chunk, uncompressed (a power of two: sentry-cli up to 2.39 requires it).
pub const CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// Chunks in one request.
pub const CHUNKS_PER_REQUEST: usize = 64;
/// Bytes of one upload request as sent.
pub const MAX_REQUEST_SIZE: usize = 32 * 1024 * 1024;
/// Bytes of one assembled file (a bundle).
pub const MAX_FILE_SIZE: usize = 256 * 1024 * 1024;
/// Parallel upload requests sentry-cli may make.
const CONCURRENCY: u8 = 4;
/// Upload requests whose bodies one process reads at once (8 x 40 MiB at most).
pub const UPLOADS_AT_ONCE: usize = 8;
/// How long an upload request waits for a place before it is answered `429`.
pub const UPLOAD_WAIT: Duration = Duration::from_secs(30);

/// The places of [`UPLOADS_AT_ONCE`].
fn upload_places() -> &'static tokio::sync::Semaphore {
    static PLACES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(UPLOADS_AT_ONCE);
    &PLACES
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organizations/{org}/chunk-upload")
            .route(web::get().to(options))
            .route(web::post().to(upload)),
    );
}

/// The upload options sentry-cli reads (`ChunkServerOptions`).
async fn options(
    auth: ApiAuth,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectReleases)?;
    let org = auth.organization(&path).await?;
    Ok(HttpResponse::Ok().json(json!({
        // Absolute, so every sentry-cli version posts to exactly this server.
        "url": format!("{}/api/0/organizations/{}/chunk-upload/", request_base(&req), org.slug),
        "chunkSize": CHUNK_SIZE,
        "chunksPerRequest": CHUNKS_PER_REQUEST,
        "maxFileSize": MAX_FILE_SIZE,
        "maxRequestSize": MAX_REQUEST_SIZE,
        "concurrency": CONCURRENCY,
        "hashAlgorithm": "sha1",
        "compression": ["gzip"],
        // `release_files` makes 2.x use chunks at all; `artifact_bundles(_v2)` makes it
        // upload bundles (v2: ask which chunks are missing first, as 3.x always does).
        "accept": ["release_files", "sources", "artifact_bundles", "artifact_bundles_v2"],
    })))
}

/// Stores every chunk of a multipart request.
async fn upload(
    auth: ApiAuth,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectReleases)?;
    let org = auth.organization(&path).await?;
    let is_multipart = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::bad_request(
            "expected multipart/form-data with `file_gzip` or `file` parts",
        ));
    }
    let Ok(Ok(_place)) = tokio::time::timeout(UPLOAD_WAIT, upload_places().acquire()).await else {
        return Ok(super::assemble::busy(
            "Too many uploads at once; try again shortly",
            5,
        ));
    };
    let mut form = Multipart::new(req.headers(), payload);
    let mut received = 0usize;
    let mut chunks = 0usize;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_string);
        let mut data = Vec::new();
        while let Some(part) = field.next().await {
            let part =
                part.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
            received += part.len();
            if received > MAX_REQUEST_SIZE {
                return Err(ApiError::too_large(format!(
                    "Request too large: at most {MAX_REQUEST_SIZE} bytes per upload request"
                )));
            }
            data.extend_from_slice(&part);
        }
        let gzipped = match name.as_str() {
            "file_gzip" => true,
            "file" => false,
            // Other form fields carry nothing we need.
            _ => continue,
        };
        chunks += 1;
        if chunks > CHUNKS_PER_REQUEST {
            return Err(ApiError::bad_request(format!(
                "Too many chunks: at most {CHUNKS_PER_REQUEST} per request"
            )));
        }
        let claimed = file_name
            .filter(|f| blobs::is_sha1(f))
            .map(|f| f.to_ascii_lowercase())
            .ok_or_else(|| {
                ApiError::bad_request("each chunk's file name must be the SHA-1 of its content")
            })?;
        let chunk = if gzipped { gunzip(&data)? } else { data };
        if chunk.len() > CHUNK_SIZE {
            return Err(ApiError::too_large(format!(
                "Chunk size too large: chunk {claimed} is over {CHUNK_SIZE} bytes"
            )));
        }
        let actual = blobs::sha1_hex(&chunk);
        if actual != claimed {
            return Err(ApiError::bad_request(format!(
                "Checksum mismatch: chunk named {claimed} has SHA-1 {actual}"
            )));
        }
        blobs::put_chunk(auth.db(), org.id, &claimed, &chunk).await?;
    }
    Ok(HttpResponse::Ok().finish())
}

/// Decompresses a gzip part, refusing more than one chunk's worth of output.
fn gunzip(data: &[u8]) -> ApiResult<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(CHUNK_SIZE as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("a `file_gzip` part is not valid gzip: {e}")))?;
    if out.len() > CHUNK_SIZE {
        return Err(ApiError::too_large(format!(
            "Chunk size too large: a chunk is over {CHUNK_SIZE} bytes uncompressed"
        )));
    }
    Ok(out)
}
