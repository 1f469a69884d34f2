//! Ingest: `/api/{project_id}/envelope/`, `/store/` and `/security/`.
//!
//! The request's way: path -> credentials -> body read (compressed size limit) -> key and
//! project checks (in-memory cache) -> decompression (size limit while decompressing;
//! large bodies off the event loop, `decode.rs`) -> envelope split -> rate limit and
//! backpressure -> one job per event on the durable queue -> `200 {"id"}` once the job is
//! durable. The key is checked before the body is decompressed, so a sender without a valid
//! key never makes us decompress anything; an envelope whose only credentials are the `dsn`
//! in its own header has just that first line decompressed before the check. Everything refused gets Relay's status code and a JSON `detail`;
//! nothing here panics on input.

pub mod decode;
pub mod keys;
pub mod ratelimit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use faultline_core::body::{ContentEncoding, decode_body};
use faultline_core::config::Limits;
use faultline_core::jobs::{JobHead, PayloadKind};
use faultline_core::protocol::auth::{self, ClientAuth};
use faultline_core::protocol::check_in::CheckIn;
use faultline_core::protocol::envelope::{Envelope, EnvelopeHeaders, ItemType};
use faultline_core::protocol::json_check;
use futures_util::StreamExt;

use crate::queue::Queue;
use crate::telemetry::SPAN_TARGET;
use faultline_core::metrics;
use faultline_worker::budget::{Charge, MemoryBudget};
use keys::{KeyCache, KeyInfo};
use ratelimit::RateLimiter;
use tracing::Instrument;

/// What the ingest handlers share.
pub struct IngestState {
    pub keys: KeyCache,
    pub queue: Queue,
    pub limits: Limits,
    pub rate_limiter: RateLimiter,
    /// Free bytes on the data directory's disk, refreshed in the background.
    pub free_disk: Arc<AtomicU64>,
    /// Bytes of bodies being read, decoded and queued (`FAULTLINE_INGEST_MEMORY_MB`): a
    /// request that does not fit is answered 429 instead of buffered.
    pub memory: MemoryBudget,
}

/// Ingest's bodies in flight fill their budget: the sender retries in a second.
fn memory_full() -> IngestError {
    IngestError::rate_limited(1, "organization", "memory_full")
}

/// Registers the ingest routes (paths are matched after slash normalization).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/api/{project_id}/envelope", "/api/{project_id}/envelope/"])
            .route(web::post().to(envelope))
            .route(web::method(Method::OPTIONS).to(preflight)),
    )
    .service(
        web::resource(["/api/{project_id}/store", "/api/{project_id}/store/"])
            .route(web::post().to(store))
            .route(web::method(Method::OPTIONS).to(preflight)),
    )
    .service(
        web::resource([
            "/api/{project_id}/security",
            "/api/{project_id}/security/",
            "/api/{project_id}/csp-report",
            "/api/{project_id}/csp-report/",
        ])
        .route(web::post().to(security))
        .route(web::method(Method::OPTIONS).to(preflight)),
    )
    .service(
        web::resource([
            "/api/{project_id}/cron/{monitor_slug}",
            "/api/{project_id}/cron/{monitor_slug}/",
            "/api/{project_id}/cron/{monitor_slug}/{sentry_key}",
            "/api/{project_id}/cron/{monitor_slug}/{sentry_key}/",
        ])
        .route(web::get().to(cron))
        .route(web::post().to(cron))
        .route(web::method(Method::OPTIONS).to(preflight)),
    );
}

/// A refusal: status, Relay's `detail` text, optional causes and rate-limit data.
#[derive(Debug)]
pub struct IngestError {
    status: StatusCode,
    detail: String,
    causes: Vec<String>,
    retry_after: Option<u64>,
    /// `X-Sentry-Rate-Limits` categories and scope when rate limited.
    limit_scope: Option<(&'static str, &'static str)>,
    /// The project, once the DSN key proved which one it is (metrics label).
    project: Option<i64>,
}

impl IngestError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        IngestError {
            status,
            detail: detail.into(),
            causes: Vec::new(),
            retry_after: None,
            limit_scope: None,
            project: None,
        }
    }

    /// Marks the refusal as concerning an authorized project.
    fn in_project(mut self, project_id: i64) -> Self {
        self.project = Some(project_id);
        self
    }

    /// Why, in one word, for the `reason` label of the rejected-requests counter.
    fn reason(&self) -> &'static str {
        match self.status.as_u16() {
            429 => self
                .limit_scope
                .map_or("rate_limited", |(_, reason)| reason),
            413 => "too_large",
            401 => "unauthorized",
            403 if self.detail.ends_with("DisabledKey") => "disabled_key",
            403 if self.detail.ends_with("DisabledProject") => "disabled_project",
            403 => "unknown_key",
            503 => "unavailable",
            _ => "invalid",
        }
    }

    /// Counts this refusal in the ingest metrics.
    fn count(&self) {
        let project = self.project.map(|p| p.to_string()).unwrap_or_default();
        metrics::get()
            .ingest_rejected
            .get_or_create(&metrics::RejectLabels {
                reason: self.reason(),
                project,
            })
            .inc();
    }

    fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    fn rate_limited(retry_after: u64, scope: &'static str, reason: &'static str) -> Self {
        let mut e = IngestError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "event submission rejected: rate limited",
        );
        e.retry_after = Some(retry_after);
        e.limit_scope = Some((scope, reason));
        e
    }

    fn response(&self) -> HttpResponse {
        let mut body = serde_json::json!({ "detail": self.detail });
        if !self.causes.is_empty() {
            body["causes"] = serde_json::json!(self.causes);
        }
        let mut resp = HttpResponse::build(self.status);
        cors(&mut resp);
        if let Ok(v) = HeaderValue::from_str(&self.detail) {
            resp.insert_header(("X-Sentry-Error", v));
        }
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
            if let Some((scope, reason)) = self.limit_scope {
                // Every error-tracking category, for this scope (PROTOCOL.md 2.8 grammar).
                resp.insert_header((
                    "X-Sentry-Rate-Limits",
                    format!("{secs}:default;error;security:{scope}:{reason}"),
                ));
            }
        }
        resp.json(body)
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl actix_web::ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}

/// CORS for browser SDKs: any origin, readable rate-limit headers (PROTOCOL.md 2.5).
fn cors(resp: &mut actix_web::HttpResponseBuilder) {
    resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            "x-sentry-error, x-sentry-rate-limits, retry-after",
        ))
        .insert_header(("Cross-Origin-Resource-Policy", "cross-origin"));
}

async fn preflight() -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    cors(&mut resp);
    resp.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "x-sentry-auth, x-requested-with, x-forwarded-for, origin, referer, accept, content-type, \
             authentication, authorization, content-encoding, transfer-encoding, sentry-trace, baggage",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "3600"))
        .finish()
}

fn project_id(req: &HttpRequest) -> Result<i64, IngestError> {
    req.match_info()
        .get("project_id")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| IngestError::new(StatusCode::BAD_REQUEST, "bad project path parameter"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Credentials from the headers or the query string (not the envelope yet).
fn request_auth(req: &HttpRequest) -> Result<Option<ClientAuth>, IngestError> {
    let headers = req.headers();
    let query = req.query_string();
    auth::extract_client_auth(
        header_str(headers, "x-sentry-auth"),
        header_str(headers, "authorization"),
        (!query.is_empty()).then_some(query),
    )
    .map_err(|e| IngestError::new(status(e.status()), e.detail()))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Reads the request body, refusing it as soon as it passes `limit` bytes, and charges its
/// bytes against ingest's memory budget as they arrive (`429` once they do not fit).
/// Only bytes that arrived are charged, not the announced length: a sender that announces
/// 20 MiB and sends nothing holds nothing of the budget.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    memory: &MemoryBudget,
) -> Result<(Bytes, Charge), IngestError> {
    // Sized from Content-Length, so a typical body is copied once instead of growing chunk
    // by chunk; at most 1 MiB up front, whatever the header claims (a client that announces
    // 20 MiB and sends nothing must not make us reserve it).
    let expected = header_str(req.headers(), "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(limit)
        .min(1 << 20);
    let mut charge = memory.try_charge(1).ok_or_else(memory_full)?;
    // A body that arrives in one chunk (most: a request's bytes come in one read) is used as
    // it is, not copied.
    let mut single: Option<Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    let mut total = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            IngestError::new(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
        })?;
        metrics::get().ingest_bytes.inc_by(chunk.len() as u64);
        total += chunk.len();
        if total > limit {
            return Err(IngestError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body exceeded size limit",
            ));
        }
        if total > charge.bytes() && !charge.try_grow(total - charge.bytes()) {
            return Err(memory_full());
        }
        if single.is_none() && buf.is_empty() {
            single = Some(chunk);
            continue;
        }
        if let Some(first) = single.take() {
            buf.reserve(expected.max(total));
            buf.extend_from_slice(&first);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((single.unwrap_or_else(|| buf.freeze()), charge))
}

/// The request's `Content-Encoding`.
fn content_encoding(req: &HttpRequest) -> Result<ContentEncoding, IngestError> {
    decode::encoding(header_str(req.headers(), "content-encoding"))
}

/// The key must exist, be enabled, belong to the project in the path, and the project
/// must be enabled.
async fn authorize(
    state: &IngestState,
    auth: &ClientAuth,
    project_id: i64,
) -> Result<KeyInfo, IngestError> {
    let key = state
        .keys
        .get(&auth.public_key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "key lookup failed");
            IngestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "key lookup failed; try again",
            )
        })?
        .ok_or_else(|| {
            IngestError::new(
                StatusCode::FORBIDDEN,
                "event submission rejected with_reason: ProjectId",
            )
        })?;
    if key.project_id != project_id {
        return Err(IngestError::new(
            StatusCode::FORBIDDEN,
            "event submission rejected with_reason: ProjectId",
        ));
    }
    if !key.key_enabled {
        return Err(IngestError::new(
            StatusCode::FORBIDDEN,
            "event submission rejected with_reason: DisabledKey",
        ));
    }
    if !key.project_enabled {
        return Err(IngestError::new(
            StatusCode::FORBIDDEN,
            "event submission rejected with_reason: DisabledProject",
        ));
    }
    Ok(key)
}

/// Rate limit and backpressure, decided before anything is written.
fn admit(state: &IngestState, key: &KeyInfo) -> Result<(), IngestError> {
    if state.queue.depth() >= state.limits.max_queue_depth {
        return Err(IngestError::rate_limited(10, "organization", "queue_full"));
    }
    if state.free_disk.load(Ordering::Relaxed) < state.limits.min_free_disk {
        return Err(IngestError::rate_limited(60, "organization", "disk_full"));
    }
    state
        .rate_limiter
        .check(key.key_id, key.rate_limit_per_minute)
        .map_err(|secs| IngestError::rate_limited(secs, "key", "key_quota"))
}

/// Request metadata that goes into every job.
struct JobMeta<'a> {
    project_id: i64,
    received_ms: i64,
    client_ip: Option<String>,
    sent_at: Option<String>,
    envelope_sdk: Option<&'a serde_json::Value>,
    /// W3C trace context of the request, so the worker's span continues its trace.
    traceparent: Option<String>,
}

fn job_meta(req: &HttpRequest, project_id: i64) -> JobMeta<'static> {
    // `X-Forwarded-For` only from our own proxies: anyone else could pick the address
    // that `{{auto}}` in their events becomes.
    let client_ip = match req.app_data::<web::Data<crate::startup::AppState>>() {
        Some(app) => crate::client_ip::client_ip(req, &app.config.trusted_proxies),
        None => req.peer_addr().map(|a| a.ip().to_canonical()),
    }
    .map(|ip| ip.to_string());
    JobMeta {
        project_id,
        received_ms: chrono::Utc::now().timestamp_millis(),
        client_ip,
        sent_at: None,
        envelope_sdk: None,
        traceparent: crate::telemetry::current_traceparent(),
    }
}

/// Serializes a job around the already-validated payload, compressed, in the queue's wire
/// form (a binary frame for the embedded queue, JSON for Redis).
fn job_bytes(
    state: &IngestState,
    meta: &JobMeta<'_>,
    event_id: &str,
    kind: PayloadKind,
    payload: &[u8],
) -> Result<Vec<u8>, IngestError> {
    let head = JobHead {
        project_id: meta.project_id,
        event_id,
        received_ms: meta.received_ms,
        client_ip: meta.client_ip.as_deref(),
        sent_at: meta.sent_at.as_deref(),
        envelope_sdk: meta.envelope_sdk,
        kind,
        traceparent: meta.traceparent.as_deref(),
    };
    let bytes = if state.queue.takes_frames() {
        head.frame(payload)
    } else {
        head.json(payload)
    };
    bytes.map_err(|e| {
        tracing::error!(error = %e, "cannot serialize a job");
        IngestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "event could not be queued",
        )
    })
}

/// The event id to answer with: envelope header, else payload, else a new one.
fn pick_event_id(header: Option<uuid::Uuid>, payload: Option<&str>) -> String {
    if let Some(id) = header {
        return id.simple().to_string();
    }
    if let Some(id) = payload.and_then(|s| uuid::Uuid::parse_str(s).ok()) {
        return id.simple().to_string();
    }
    uuid::Uuid::new_v4().simple().to_string()
}

fn ok_id(event_id: Option<&str>) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    cors(&mut resp);
    match event_id {
        Some(id) => resp.json(serde_json::json!({ "id": id })),
        None => resp.json(serde_json::json!({})),
    }
}

/// Makes the job durable, then counts the event as accepted for its project.
async fn enqueue(state: &IngestState, project_id: i64, job: Vec<u8>) -> Result<(), IngestError> {
    enqueue_job(state, job).await?;
    metrics::get()
        .ingest_accepted
        .get_or_create(&metrics::ProjectLabel {
            project: project_id,
        })
        .inc();
    Ok(())
}

/// Makes a job durable.
async fn enqueue_job(state: &IngestState, job: Vec<u8>) -> Result<(), IngestError> {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "queue.enqueue",
        otel.kind = "producer",
        messaging.system = "apalis",
        messaging.destination.name = faultline_core::jobs::EVENT_QUEUE,
        messaging.message.body.size = job.len(),
    );
    state
        .queue
        .enqueue(job)
        .instrument(span)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "enqueue failed");
            IngestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "event could not be stored; try again",
            )
        })?;
    Ok(())
}

/// Counts a refusal in the ingest metrics on its way out.
fn counted(result: Result<HttpResponse, IngestError>) -> Result<HttpResponse, IngestError> {
    if let Err(e) = &result {
        e.count();
    }
    result
}

/// `POST /api/{project_id}/envelope/`
async fn envelope(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    counted(envelope_request(req, payload, state).await)
}

async fn envelope_request(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let project_id = project_id(&req)?;
    let header_auth = request_auth(&req)?;
    let (body, mut charge) =
        read_body(&req, payload, state.limits.max_envelope_size, &state.memory).await?;
    handle_envelope(&req, &state, project_id, header_auth, body, &mut charge).await
}

/// An envelope body as sent (still compressed): key first, then decompression and the rest.
async fn handle_envelope(
    req: &HttpRequest,
    state: &IngestState,
    project_id: i64,
    header_auth: Option<ClientAuth>,
    body: Bytes,
    charge: &mut Charge,
) -> Result<HttpResponse, IngestError> {
    if body.is_empty() {
        return Err(IngestError::new(StatusCode::BAD_REQUEST, "empty envelope"));
    }
    let encoding = content_encoding(req)?;
    let auth = match header_auth {
        Some(a) => a,
        None => envelope_dsn_auth(encoding, &body, project_id)?,
    };
    let key = authorize(state, &auth, project_id).await?;
    let in_project = |e: IngestError| e.in_project(key.project_id);
    let body = decode::decode(encoding, body, state.limits.max_envelope_decompressed)
        .await
        .map_err(in_project)?;
    charge_decoded(charge, encoding, &body).map_err(in_project)?;
    if body.is_empty() {
        return Err(in_project(IngestError::new(
            StatusCode::BAD_REQUEST,
            "empty envelope",
        )));
    }
    let envelope = Envelope::parse(body).map_err(|e| {
        in_project(
            IngestError::new(StatusCode::BAD_REQUEST, "invalid event envelope")
                .cause(e.to_string()),
        )
    })?;
    accept_envelope(req, state, &key, &envelope)
        .await
        .map_err(in_project)
}

/// Charges a decompressed body on top of the compressed one (both may be alive until the
/// jobs are built; an uncompressed body is the same bytes and costs nothing more).
fn charge_decoded(
    charge: &mut Charge,
    encoding: ContentEncoding,
    decoded: &Bytes,
) -> Result<(), IngestError> {
    if encoding == ContentEncoding::Identity || charge.try_grow(decoded.len()) {
        Ok(())
    } else {
        Err(memory_full())
    }
}

/// Credentials from the `dsn` in the envelope header (tunnels that forward a browser SDK's
/// envelope as it is). Only the envelope's first line is decompressed for it
/// ([`decode::header_line`]): the rest waits until the key has been checked.
fn envelope_dsn_auth(
    encoding: ContentEncoding,
    body: &[u8],
    project_id: i64,
) -> Result<ClientAuth, IngestError> {
    let line = decode::header_line(encoding, body)?;
    let invalid = |cause: String| {
        IngestError::new(StatusCode::BAD_REQUEST, "invalid event envelope").cause(cause)
    };
    let headers = match serde_json::Deserializer::from_slice(&line)
        .into_iter::<EnvelopeHeaders>()
        .next()
    {
        Some(Ok(headers)) => headers,
        Some(Err(_)) if line.len() >= decode::HEADER_LINE_MAX && !line.ends_with(b"\n") => {
            return Err(invalid(format!(
                "the envelope header is longer than {} bytes",
                decode::HEADER_LINE_MAX
            )));
        }
        Some(Err(e)) => return Err(invalid(format!("invalid envelope header: {e}"))),
        None => {
            return Err(invalid(
                "empty envelope: expected a JSON object as envelope header".into(),
            ));
        }
    };
    let dsn = headers.dsn.as_deref().ok_or_else(|| {
        IngestError::new(
            StatusCode::UNAUTHORIZED,
            "missing authorization information",
        )
    })?;
    let auth = ClientAuth::from_dsn_str(dsn).map_err(|_| {
        IngestError::new(
            StatusCode::UNAUTHORIZED,
            "bad envelope authentication header",
        )
    })?;
    let dsn_project = faultline_core::protocol::dsn::Dsn::parse(dsn)
        .map(|d| d.project_id())
        .ok();
    if dsn_project.is_some_and(|p| p as i64 != project_id) {
        return Err(invalid(
            "project id header mismatch between envelope and request".into(),
        ));
    }
    Ok(auth)
}

/// The authorized part of an envelope's way: item checks, admission, enqueue.
async fn accept_envelope(
    req: &HttpRequest,
    state: &IngestState,
    key: &KeyInfo,
    envelope: &Envelope,
) -> Result<HttpResponse, IngestError> {
    let project_id = key.project_id;
    let mut meta = job_meta(req, project_id);
    meta.sent_at = envelope.headers.sent_at.map(|t| t.to_rfc3339());
    meta.envelope_sdk = envelope.headers.sdk.as_ref();
    // Every item is checked before anything is written: one oversize item refuses the
    // whole envelope (Relay does the same), unsupported items are dropped silently, and an
    // invalid session item is dropped alone (counted with its reason).
    let mut event_item = None;
    let mut health = HealthItems {
        drift_ms: faultline_core::protocol::session::clock_drift_ms(
            envelope.headers.sent_at.map(|t| t.timestamp_millis()),
            meta.received_ms,
        ),
        ..HealthItems::default()
    };
    for item in &envelope.items {
        match item.headers.ty {
            ItemType::Event | ItemType::Security | ItemType::RawSecurity => {
                if item.payload.len() > state.limits.max_event_size {
                    return Err(IngestError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "envelope exceeded size limits for type '{}'",
                            item.headers.ty
                        ),
                    ));
                }
                if event_item.is_none() {
                    event_item = Some(item);
                }
            }
            ItemType::Session | ItemType::Sessions => health.check(item, meta.received_ms),
            _ => {}
        }
    }

    let header_id = envelope.headers.event_id;
    let event = match event_item {
        Some(item) => Some(check_event_item(item, header_id)?),
        None => None,
    };
    // Cron check-ins: each its own job, each refused alone (PROTOCOL.md 9.3.1).
    let check_ins = check_in_jobs(envelope, state.limits.max_event_size);
    if event.is_none() && health.is_empty() && check_ins.is_empty() {
        // Transactions, client reports, attachments: accepted, not stored yet.
        return Ok(ok_id(
            header_id.map(|id| id.simple().to_string()).as_deref(),
        ));
    }
    // One envelope is one request to the rate limiter, whatever it carries.
    admit(state, key)?;
    // The event and the envelope's session items travel as separate jobs, made durable
    // together before the answer.
    let mut jobs = Vec::with_capacity(3);
    if let Some((event_id, kind, payload)) = &event {
        jobs.push((true, job_bytes(state, &meta, event_id, *kind, payload)?));
    }
    for (kind, payload) in health.payloads() {
        let job_id = uuid::Uuid::new_v4().simple().to_string();
        jobs.push((false, job_bytes(state, &meta, &job_id, kind, &payload)?));
    }
    futures_util::future::try_join_all(jobs.into_iter().map(|(is_event, job)| async move {
        if is_event {
            enqueue(state, project_id, job).await
        } else {
            enqueue_job(state, job).await
        }
    }))
    .await?;
    health.count_accepted();
    // Check-ins one after another, in the envelope's order: a monitor's check-ins are
    // applied in the order ingest accepted them.
    for (id, payload) in check_ins {
        let job = job_bytes(state, &meta, &id, PayloadKind::CheckIn, &payload)?;
        enqueue_check_in(state, job).await?;
    }
    match event {
        Some((event_id, _, _)) => Ok(ok_id(Some(&event_id))),
        None => Ok(ok_id(
            header_id.map(|id| id.simple().to_string()).as_deref(),
        )),
    }
}

/// The envelope's event item, checked the way the worker reads it (an accepted payload
/// the worker cannot parse would be an event lost): its id, kind and payload.
fn check_event_item(
    item: &faultline_core::protocol::envelope::Item,
    header_id: Option<uuid::Uuid>,
) -> Result<(String, PayloadKind, Bytes), IngestError> {
    let checked = json_check::check(&item.payload).map_err(|e| {
        IngestError::new(StatusCode::BAD_REQUEST, "invalid event envelope")
            .cause(format!("event item is not valid JSON: {e}"))
    })?;
    // Security reports may be arrays (the Reporting API); events are objects.
    if item.headers.ty == ItemType::Event && !checked.is_object {
        return Err(
            IngestError::new(StatusCode::BAD_REQUEST, "invalid event envelope")
                .cause("event item is not a JSON object"),
        );
    }
    let kind = match item.headers.ty {
        ItemType::Event => PayloadKind::Event,
        _ => PayloadKind::SecurityReport,
    };
    Ok((
        pick_event_id(header_id, checked.event_id.as_deref()),
        kind,
        item.payload.clone(),
    ))
}

/// The release-health items of one envelope that passed the checks (PROTOCOL.md §9.1.3);
/// the others are counted with their reason and dropped here, so the worker only ever
/// sees items it can count.
#[derive(Default)]
struct HealthItems {
    /// How far the sender's clock is off (its times are moved by this much).
    drift_ms: i64,
    seen: usize,
    updates: Vec<Bytes>,
    aggregates: Vec<Bytes>,
}

impl HealthItems {
    fn check(&mut self, item: &faultline_core::protocol::envelope::Item, received_ms: i64) {
        use faultline_core::protocol::session::{self, Rejection};
        self.seen += 1;
        let is_update = item.headers.ty == ItemType::Session;
        let label = if is_update { "session" } else { "sessions" };
        let checked = if self.seen > session::MAX_ITEMS_PER_ENVELOPE {
            Err(Rejection::TooMany)
        } else if is_update {
            session::parse_update_drifted(&item.payload, received_ms, self.drift_ms).map(|_| ())
        } else {
            session::parse_aggregates_drifted(&item.payload, received_ms, self.drift_ms).map(|a| {
                // Buckets out of range are dropped one by one.
                for why in &a.dropped {
                    count_session_item(label, why.outcome());
                }
            })
        };
        match checked {
            Ok(()) if is_update => self.updates.push(item.payload.clone()),
            Ok(()) => self.aggregates.push(item.payload.clone()),
            Err(why) => {
                tracing::debug!(item = label, reason = %why, "session item dropped");
                count_session_item(label, why.outcome());
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.aggregates.is_empty()
    }

    /// One job payload per kind: a JSON array of the items (each already a JSON object).
    fn payloads(&self) -> impl Iterator<Item = (PayloadKind, Vec<u8>)> + '_ {
        [
            (PayloadKind::Session, &self.updates),
            (PayloadKind::Sessions, &self.aggregates),
        ]
        .into_iter()
        .filter(|(_, items)| !items.is_empty())
        .map(|(kind, items)| {
            let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item);
            }
            out.push(b']');
            (kind, out)
        })
    }

    fn count_accepted(&self) {
        for _ in &self.updates {
            count_session_item("session", "accepted");
        }
        for _ in &self.aggregates {
            count_session_item("sessions", "accepted");
        }
    }
}

fn count_session_item(item: &'static str, outcome: &'static str) {
    metrics::get()
        .session_items
        .get_or_create(&metrics::SessionItemLabels { item, outcome })
        .inc();
}

/// Largest check-in item (Relay's limit).
const MAX_CHECK_IN: usize = 100 * 1024;

/// The envelope's `check_in` items that parse, as (job id, normal form). The others are
/// dropped one by one, each with its reason in the log and `faultline_check_ins_total
/// {outcome="invalid"}`; the rest of the envelope is kept.
fn check_in_jobs(envelope: &Envelope, max_event_size: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for item in &envelope.items {
        if item.headers.ty != ItemType::CheckIn {
            continue;
        }
        let parsed = if item.payload.len() > MAX_CHECK_IN.min(max_event_size) {
            Err(format!("check-in item larger than {MAX_CHECK_IN} bytes"))
        } else {
            CheckIn::parse(&item.payload).map_err(|e| e.to_string())
        };
        match parsed {
            Ok(check_in) => out.push((check_in_job_id(&check_in), check_in.to_job_json())),
            Err(reason) => {
                metrics::check_in("invalid");
                tracing::info!(%reason, "check-in item dropped");
            }
        }
    }
    out
}

fn check_in_job_id(check_in: &CheckIn) -> String {
    check_in
        .check_in_id
        .unwrap_or_else(uuid::Uuid::new_v4)
        .simple()
        .to_string()
}

/// Makes a check-in job durable (counted as a check-in, not as an event).
async fn enqueue_check_in(state: &IngestState, job: Vec<u8>) -> Result<(), IngestError> {
    state.queue.enqueue(job).await.map_err(|e| {
        tracing::error!(error = %e, "enqueue failed");
        IngestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "check-in could not be stored; try again",
        )
    })?;
    metrics::check_in("accepted");
    Ok(())
}

/// `GET|POST /api/{project_id}/cron/{monitor_slug}/{sentry_key}/` (or the key in the
/// query or headers): a check-in for curl users. Parameters come from the query string;
/// a JSON body (by `Content-Type`) is a whole check-in and may carry `monitor_config`.
/// The path's slug wins over the body's. `202` with an empty body, as Relay answers.
async fn cron(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    counted(cron_request(req, payload, state).await)
}

async fn cron_request(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let project_id = project_id(&req)?;
    let auth = match req.match_info().get("sentry_key") {
        // The key as a path segment: the DSN's public key, 32 hex.
        Some(key) if !key.is_empty() && key.len() <= 64 => ClientAuth {
            public_key: key.to_string(),
            version: auth::PROTOCOL_VERSION,
            client: None,
        },
        Some(key) if !key.is_empty() => {
            return Err(IngestError::new(
                StatusCode::UNAUTHORIZED,
                "bad sentry_key in the path",
            ));
        }
        _ => request_auth(&req)?.ok_or_else(|| {
            IngestError::new(
                StatusCode::UNAUTHORIZED,
                "missing authorization information",
            )
        })?,
    };
    let key = authorize(&state, &auth, project_id).await?;
    let in_project = |e: IngestError| e.in_project(key.project_id);
    // The charge is held until the check-in is queued (the end of this function).
    let (body, _charge) = read_body(&req, payload, MAX_CHECK_IN, &state.memory)
        .await
        .map_err(in_project)?;
    let is_json = header_str(req.headers(), "content-type")
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    let mut fields = serde_json::Map::new();
    if is_json && !body.is_empty() {
        let encoding = content_encoding(&req).map_err(in_project)?;
        let body = decode::decode(encoding, body, MAX_CHECK_IN)
            .await
            .map_err(in_project)?;
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(obj)) => fields = obj,
            _ => {
                return Err(in_project(IngestError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid check-in: the body is not a JSON object",
                )));
            }
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            let value = match k.as_ref() {
                "status" | "check_in_id" | "environment" => serde_json::Value::from(v.as_ref()),
                "duration" => match v.parse::<f64>() {
                    Ok(d) => serde_json::json!(d),
                    Err(_) => serde_json::Value::from(v.as_ref()),
                },
                _ => continue,
            };
            fields.insert(k.into_owned(), value);
        }
    }
    let slug = req.match_info().get("monitor_slug").unwrap_or_default();
    fields.insert("monitor_slug".into(), slug.into());
    let check_in = CheckIn::from_object(&fields).map_err(|e| {
        metrics::check_in("invalid");
        in_project(IngestError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid check-in: {e}"),
        ))
    })?;
    admit(&state, &key).map_err(in_project)?;
    let meta = job_meta(&req, key.project_id);
    let id = check_in_job_id(&check_in);
    let job = job_bytes(
        &state,
        &meta,
        &id,
        PayloadKind::CheckIn,
        &check_in.to_job_json(),
    )
    .map_err(in_project)?;
    enqueue_check_in(&state, job).await.map_err(in_project)?;
    let mut resp = HttpResponse::Accepted();
    cors(&mut resp);
    Ok(resp.finish())
}

/// `POST /api/{project_id}/store/`: one JSON event (or an envelope by content type).
async fn store(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    counted(store_request(req, payload, state).await)
}

async fn store_request(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let project_id = project_id(&req)?;
    let header_auth = request_auth(&req)?;
    let is_envelope = header_str(req.headers(), "content-type")
        .is_some_and(|ct| ct.starts_with("application/x-sentry-envelope"));
    let compressed_limit = if is_envelope {
        state.limits.max_envelope_size
    } else {
        state.limits.max_event_size
    };
    let (body, mut charge) = read_body(&req, payload, compressed_limit, &state.memory).await?;
    if is_envelope {
        return handle_envelope(&req, &state, project_id, header_auth, body, &mut charge).await;
    }
    let encoding = content_encoding(&req)?;
    let auth = header_auth.ok_or_else(|| {
        IngestError::new(
            StatusCode::UNAUTHORIZED,
            "missing authorization information",
        )
    })?;
    let key = authorize(&state, &auth, project_id).await?;
    let in_project = |e: IngestError| e.in_project(key.project_id);
    let body = decode::decode(encoding, body, state.limits.max_event_size)
        .await
        .map_err(in_project)?;
    charge_decoded(&mut charge, encoding, &body).map_err(in_project)?;
    accept_store_body(&req, &state, &key, body)
        .await
        .map_err(in_project)
}

/// The authorized part of a `/store/` JSON body's way.
async fn accept_store_body(
    req: &HttpRequest,
    state: &IngestState,
    key: &KeyInfo,
    mut body: Bytes,
) -> Result<HttpResponse, IngestError> {
    let project_id = key.project_id;
    // Legacy clients send base64(zlib(json)) without a Content-Encoding.
    if body.first().is_some_and(|b| *b != b'{') {
        body = legacy_base64_zlib(&body, state.limits.max_event_size)?;
    }
    // Old Python clients may write NaN/Infinity: the job gets them as null.
    let (body, checked) = match json_check::check(&body) {
        Ok(checked) => (body, checked),
        Err(e) => {
            let fixed = replace_non_finite(&body);
            match json_check::check(&fixed) {
                Ok(checked) => (Bytes::from(fixed), checked),
                Err(_) => {
                    return Err(IngestError::new(
                        StatusCode::BAD_REQUEST,
                        format!("invalid JSON event: {e}"),
                    ));
                }
            }
        }
    };
    if !checked.is_object {
        return Err(IngestError::new(
            StatusCode::BAD_REQUEST,
            "invalid JSON event: not an object",
        ));
    }
    admit(state, key)?;
    let event_id = pick_event_id(None, checked.event_id.as_deref());
    let meta = job_meta(req, project_id);
    let job = job_bytes(state, &meta, &event_id, PayloadKind::Event, &body)?;
    enqueue(state, project_id, job).await?;
    Ok(ok_id(Some(&event_id)))
}

/// Rewrites bare `NaN`, `Infinity`, `-Infinity` tokens outside strings to `null`.
fn replace_non_finite(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    'outer: while i < json.len() {
        let b = json[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else {
            for token in [&b"-Infinity"[..], b"Infinity", b"NaN"] {
                if json[i..].starts_with(token) {
                    out.extend_from_slice(b"null");
                    i += token.len();
                    continue 'outer;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn legacy_base64_zlib(body: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    use base64::Engine;
    let trimmed: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&trimmed)
        .map_err(|_| {
            IngestError::new(
                StatusCode::BAD_REQUEST,
                "invalid JSON event: body is neither JSON nor base64",
            )
        })?;
    decode_body(Some("deflate"), &raw, limit)
        .map_err(|e| IngestError::new(status(e.status()), e.to_string()))
}

/// `POST /api/{project_id}/security/`: browser CSP reports, authenticated by `?sentry_key=`.
async fn security(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    counted(security_request(req, payload, state).await)
}

async fn security_request(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let project_id = project_id(&req)?;
    // Browsers cannot add headers to CSP reports: the key comes as `?sentry_key=`.
    let auth = request_auth(&req)?.ok_or_else(|| {
        IngestError::new(
            StatusCode::UNAUTHORIZED,
            "missing authorization information",
        )
    })?;
    let key = authorize(&state, &auth, project_id).await?;
    let project_id = key.project_id;
    let in_project = |e: IngestError| e.in_project(project_id);
    let (body, mut charge) = read_body(&req, payload, state.limits.max_event_size, &state.memory)
        .await
        .map_err(in_project)?;
    let encoding = content_encoding(&req).map_err(in_project)?;
    let body = decode::decode(encoding, body, state.limits.max_event_size)
        .await
        .map_err(in_project)?;
    charge_decoded(&mut charge, encoding, &body).map_err(in_project)?;
    json_check::check(&body).map_err(|e| {
        in_project(IngestError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid security report: {e}"),
        ))
    })?;
    admit(&state, &key).map_err(in_project)?;
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let meta = job_meta(&req, project_id);
    let job = job_bytes(&state, &meta, &event_id, PayloadKind::SecurityReport, &body)
        .map_err(in_project)?;
    enqueue(&state, project_id, job).await.map_err(in_project)?;
    Ok(ok_id(Some(&event_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_become_null_outside_strings() {
        let input = br#"{"a":NaN,"b":"NaN and Infinity","c":[Infinity,-Infinity,1.5]}"#;
        let out = replace_non_finite(input);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON after rewrite");
        assert_eq!(v["a"], serde_json::Value::Null);
        assert_eq!(v["b"], "NaN and Infinity");
        assert_eq!(v["c"], serde_json::json!([null, null, 1.5]));
    }

    #[test]
    fn refusals_name_their_reason() {
        let cases = [
            (
                IngestError::new(StatusCode::BAD_REQUEST, "invalid event envelope"),
                "invalid",
            ),
            (
                IngestError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing authorization information",
                ),
                "unauthorized",
            ),
            (
                IngestError::new(
                    StatusCode::FORBIDDEN,
                    "event submission rejected with_reason: ProjectId",
                ),
                "unknown_key",
            ),
            (
                IngestError::new(
                    StatusCode::FORBIDDEN,
                    "event submission rejected with_reason: DisabledKey",
                ),
                "disabled_key",
            ),
            (
                IngestError::new(
                    StatusCode::FORBIDDEN,
                    "event submission rejected with_reason: DisabledProject",
                ),
                "disabled_project",
            ),
            (
                IngestError::new(StatusCode::PAYLOAD_TOO_LARGE, "too big"),
                "too_large",
            ),
            (
                IngestError::rate_limited(10, "organization", "queue_full"),
                "queue_full",
            ),
            (
                IngestError::rate_limited(60, "organization", "disk_full"),
                "disk_full",
            ),
            (
                IngestError::rate_limited(5, "key", "key_quota"),
                "key_quota",
            ),
            (
                IngestError::new(StatusCode::SERVICE_UNAVAILABLE, "try again"),
                "unavailable",
            ),
        ];
        for (e, reason) in cases {
            assert_eq!(e.reason(), reason, "{e}");
        }
    }

    #[test]
    fn job_frames_carry_the_metadata_and_payload() {
        let sdk = serde_json::json!({"name": "sentry.python"});
        let meta = JobMeta {
            project_id: 3,
            received_ms: 1,
            client_ip: Some("127.0.0.1".into()),
            sent_at: None,
            envelope_sdk: Some(&sdk),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let head = JobHead {
            project_id: meta.project_id,
            event_id: "ab",
            received_ms: meta.received_ms,
            client_ip: meta.client_ip.as_deref(),
            sent_at: None,
            envelope_sdk: meta.envelope_sdk,
            kind: PayloadKind::Event,
            traceparent: meta.traceparent.as_deref(),
        };
        for bytes in [
            head.frame(br#"{"message":"hi"}"#).expect("frame"),
            head.json(br#"{"message":"hi"}"#).expect("json"),
        ] {
            let job = faultline_core::jobs::EventJob::decode(&bytes).expect("job decodes");
            assert_eq!(job.project_id, 3);
            assert_eq!(
                job.traceparent.as_deref(),
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            );
            assert_eq!(
                &*job.payload_bytes(1 << 20).expect("payload"),
                br#"{"message":"hi"}"#
            );
            assert_eq!(
                job.envelope_sdk.map(|s| s.get().to_string()).as_deref(),
                Some(r#"{"name":"sentry.python"}"#)
            );
        }
    }
}
