//! The Sentry-compatible Web API under `/api/0/`: what sentry-cli and scripts call.
//!
//! Every handler authenticates through [`auth::ApiAuth`] (API token, or later a browser
//! session), works only inside the caller's organizations, and answers JSON — errors as
//! `{"detail": "..."}` with the status codes sentry-cli understands (404 for anything the
//! caller may not see, so another organization's objects look absent).
//!
//! One file per resource: `chunks` (chunked upload), `assemble` (artifact and release
//! bundles), `bundle` (the bundle file format, pure), `blobs` (content-addressed storage
//! and its garbage collection), `releases` (releases, deploys, release files), `orgs`
//! (organizations and projects), `issues` (issue search, pure, and the issue endpoints),
//! `activity` (an issue's timeline and comments), `events`, `pagination` (Sentry's cursors and `Link` header).

pub mod activity;
pub mod artifacts;
pub mod assemble;
pub mod auth;
pub mod blobs;
pub mod bundle;
pub mod chunks;
pub mod events;
pub mod issues;
pub mod monitors;
pub mod orgs;
pub mod pagination;
pub mod releases;
pub mod sessions;

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sea_orm::DbErr;

pub use auth::{ApiAuth, Principal, SessionUser};

/// Largest JSON body the API reads (assemble requests list up to thousands of chunk ids).
const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

/// Registers every `/api/0/` route. Registered before ingest so that `/api/0/...` never
/// reaches the ingest handlers; unknown `/api/0/` paths answer a JSON 404.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/0")
            .wrap(ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed))
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_JSON_BODY)
                    .content_type_required(false)
                    .error_handler(|err, _req| match err {
                        actix_web::error::JsonPayloadError::Overflow { limit }
                        | actix_web::error::JsonPayloadError::OverflowKnownLength {
                            limit, ..
                        } => ApiError::too_large(format!("the JSON body is over {limit} bytes"))
                            .into(),
                        err => ApiError::bad_request(format!("invalid JSON body: {err}")).into(),
                    }),
            )
            .app_data(web::PathConfig::default().error_handler(|err, _req| {
                ApiError::not_found(format!("invalid path: {err}")).into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|err, _req| {
                ApiError::bad_request(format!("invalid query string: {err}")).into()
            }))
            .configure(orgs::routes)
            .configure(chunks::routes)
            .configure(assemble::routes)
            .configure(releases::routes)
            .configure(issues::routes)
            .configure(activity::routes)
            .configure(events::routes)
            .configure(monitors::routes)
            .configure(sessions::routes)
            .default_service(web::to(unknown_endpoint)),
    );
}

/// A known path with another method: actix answers 405 with an empty body; sentry-cli
/// and scripts get the JSON `detail` every other error has.
fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let detail = format!(
        "method {} is not allowed on {}",
        res.request().method(),
        res.request().path()
    );
    let (req, _) = res.into_parts();
    let res = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, detail).error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res).map_into_right_body(),
    ))
}

async fn unknown_endpoint(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {} {}", req.method(), req.path()))
}

/// An API failure: its HTTP status and the `detail` sentry-cli shows to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }
    /// A server-side failure; the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server log has the cause",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(serde_json::json!({ "detail": self.detail }))
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        ApiError::internal(e)
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;
    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

// One SQL text for both engines: the helpers live in `faultline_core::sql`, shared with
// the issue domain, the pages and the worker.
pub use faultline_core::sql::{begin_write, execute, query_all, query_one};

/// Unix milliseconds as the RFC 3339 time Sentry's API writes (`2026-11-22T05:00:00.123Z`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The scheme and host the client reached us at, for absolute URLs it should call next.
pub fn request_base(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}
