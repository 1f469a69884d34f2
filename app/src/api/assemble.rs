//! Assembling uploaded chunks into a bundle and indexing its files:
//! `POST /api/0/organizations/{org}/artifactbundle/assemble/` (sentry-cli 3.x, and 2.x
//! against servers that accept artifact bundles) and the legacy
//! `POST /api/0/organizations/{org}/releases/{version}/assemble/` (2.x release bundles).
//!
//! The states sentry-cli understands: `not_found` with the chunks it still has to upload
//! (3.x asks first, uploads only those, then asks again), `created` when assembly starts,
//! `assembling` while it runs, `ok`, or `error` with a detail. The state lives in the
//! `assemble_tasks` table so every web process answers polls alike. Small bundles are
//! assembled within the request (the answer is then `ok` or `error` at once); a large one
//! keeps assembling in the background and later calls see its progress.
//!
//! Only chunks the calling organization uploaded count (`blobs::owned_chunks`): chunks of
//! another organization are reported missing, never used.
//!
//! Bounded per process: at most [`ASSEMBLIES_AT_ONCE`] assemblies hold a file in memory
//! (each at most [`chunks::MAX_FILE_SIZE`] put together plus its unpacked files, at most
//! `bundle::Limits::max_total_size`); up to [`ASSEMBLIES_ADMITTED`] in all may be started,
//! the rest wait their turn as `created` (no memory held but their chunk list). Past that,
//! a new assembly is answered `429` with `Retry-After` and nothing is recorded, so the
//! next call starts it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Org, Scope};
use super::bundle::{self, BundleError};
use super::{ApiAuth, ApiError, ApiResult, artifacts, blobs, chunks, execute, query_one, releases};
use faultline_core::entity::now_ms;

/// How long a request waits for its assembly before answering `created`.
const WAIT_IN_REQUEST: Duration = Duration::from_secs(20);
/// An `assembling` task older than this was abandoned (its process died): start again.
const STALE_AFTER_MS: i64 = 10 * 60 * 1000;
/// Assemblies that hold their file in memory at once, per process.
pub const ASSEMBLIES_AT_ONCE: usize = 2;
/// Assemblies started and not finished (running or waiting for a turn), per process.
pub const ASSEMBLIES_ADMITTED: usize = 32;
/// `Retry-After` of an assembly refused because all places were taken.
const RETRY_AFTER_SECS: u64 = 5;

/// The turns of [`ASSEMBLIES_AT_ONCE`]. Public so a test can occupy them the way long
/// assemblies would.
pub fn turns() -> &'static tokio::sync::Semaphore {
    static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ASSEMBLIES_AT_ONCE);
    &TURNS
}

/// Assemblies admitted and not finished.
static ADMITTED: AtomicUsize = AtomicUsize::new(0);

/// One admitted assembly; gives its place back when dropped (finished, or the task died).
struct Admission;

impl Admission {
    fn take() -> Option<Admission> {
        ADMITTED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < ASSEMBLIES_ADMITTED).then_some(n + 1)
            })
            .ok()
            .map(|_| Admission)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        ADMITTED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `429` with `Retry-After` and a `detail`, for uploads and assemblies over their bounds.
pub(super) fn busy(detail: &str, retry_after_secs: u64) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((
            actix_web::http::header::RETRY_AFTER,
            retry_after_secs.to_string(),
        ))
        .json(json!({ "detail": detail }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organizations/{org}/artifactbundle/assemble")
            .route(web::post().to(artifact_bundle)),
    )
    .service(
        web::resource("/organizations/{org}/releases/{version}/assemble")
            .route(web::post().to(release_bundle)),
    );
}

/// What sentry-cli posts (`ChunkedArtifactRequest`).
#[derive(Debug, Deserialize)]
pub struct AssembleRequest {
    checksum: String,
    #[serde(default)]
    chunks: Vec<String>,
    /// Project slugs, or numeric ids (as strings or numbers).
    #[serde(default)]
    projects: Vec<serde_json::Value>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    dist: Option<String>,
}

/// The state of one assembly, as sentry-cli reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    NotFound(Vec<String>),
    Created,
    Assembling,
    Ok,
    Error(String),
    /// Not started: every place for assemblies is taken (answered `429`).
    Busy,
}

impl State {
    fn response(&self) -> HttpResponse {
        let (state, missing, detail): (&str, &[String], Option<&str>) = match self {
            State::Busy => {
                return busy(
                    "Too many assemblies at once; try again shortly",
                    RETRY_AFTER_SECS,
                );
            }
            State::NotFound(missing) => ("not_found", missing, None),
            State::Created => ("created", &[], None),
            State::Assembling => ("assembling", &[], None),
            State::Ok => ("ok", &[], None),
            State::Error(d) => ("error", &[], Some(d)),
        };
        HttpResponse::Ok().json(json!({"state": state, "missingChunks": missing, "detail": detail}))
    }
}

/// What to index the assembled bundle's files under.
#[derive(Debug, Clone)]
struct Target {
    organization_id: i64,
    /// Release named by the request (created when missing), else by the manifest.
    release: Option<String>,
    dist: Option<String>,
    project_ids: Vec<i64>,
    /// Legacy release bundles: every file belongs to the release; no debug id needed.
    release_bundle: bool,
}

async fn artifact_bundle(
    auth: ApiAuth,
    path: web::Path<String>,
    body: web::Json<AssembleRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectReleases)?;
    let org = auth.organization(&path).await?;
    let body = body.into_inner();
    check_ids(&body)?;
    let version = body.version.clone().filter(|v| !v.is_empty());
    if let Some(v) = &version {
        releases::check_version(v)?;
    }
    let dist = body.dist.clone().filter(|d| !d.is_empty());
    if dist.is_some() && version.is_none() {
        return Err(ApiError::bad_request(
            "dist requires a release version (`--release`)",
        ));
    }
    if body.projects.is_empty() {
        return Err(ApiError::bad_request(
            "You need to specify at least one project",
        ));
    }
    let project_ids = releases::project_ids(auth.db(), &org, &body.projects).await?;
    let target = Target {
        organization_id: org.id,
        release: version,
        dist,
        project_ids,
        release_bundle: false,
    };
    let state = run(auth.db(), &org, "artifact_bundle", &body, target).await?;
    Ok(state.response())
}

async fn release_bundle(
    auth: ApiAuth,
    path: web::Path<(String, String)>,
    body: web::Json<AssembleRequest>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectReleases)?;
    let (org_slug, version) = path.into_inner();
    let org = auth.organization(&org_slug).await?;
    let release = releases::find(auth.db(), org.id, &version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release `{version}` not found")))?;
    let body = body.into_inner();
    check_ids(&body)?;
    let target = Target {
        organization_id: org.id,
        release: Some(release.version),
        dist: body.dist.clone().filter(|d| !d.is_empty()),
        project_ids: Vec::new(),
        release_bundle: true,
    };
    let state = run(auth.db(), &org, "release_bundle", &body, target).await?;
    Ok(state.response())
}

fn check_ids(body: &AssembleRequest) -> ApiResult<()> {
    if !blobs::is_sha1(&body.checksum) {
        return Err(ApiError::bad_request(
            "`checksum` must be the 40-digit hex SHA-1 of the whole file",
        ));
    }
    if let Some(bad) = body.chunks.iter().find(|c| !blobs::is_sha1(c)) {
        return Err(ApiError::bad_request(format!(
            "`chunks` must be 40-digit hex SHA-1s; `{bad}` is not"
        )));
    }
    if body.chunks.len() > chunks::MAX_FILE_SIZE / chunks::CHUNK_SIZE + 1 {
        return Err(ApiError::too_large(format!(
            "the file is larger than {} bytes",
            chunks::MAX_FILE_SIZE
        )));
    }
    Ok(())
}

/// The assemble state machine: missing chunks first, then the stored state, else start.
async fn run(
    db: &DatabaseConnection,
    org: &Org,
    kind: &str,
    body: &AssembleRequest,
    target: Target,
) -> ApiResult<State> {
    let checksum = body.checksum.to_ascii_lowercase();
    let chunk_ids: Vec<String> = body.chunks.iter().map(|c| c.to_ascii_lowercase()).collect();
    if chunk_ids.is_empty() {
        // sentry-cli polls with no chunks for a file it never uploaded.
        return Ok(known_state(db, org.id, &checksum)
            .await?
            .unwrap_or(State::NotFound(Vec::new())));
    }
    let present = blobs::owned_chunks(db, org.id, &chunk_ids).await?;
    let mut missing: Vec<String> = Vec::new();
    for c in &chunk_ids {
        if !present.contains(c) && !missing.contains(c) {
            missing.push(c.clone());
        }
    }
    if !missing.is_empty() {
        return Ok(State::NotFound(missing));
    }
    match known_state(db, org.id, &checksum).await? {
        Some(State::Ok) => return Ok(State::Ok),
        Some(s @ (State::Created | State::Assembling)) => return Ok(s),
        // An error is retried: the client may have fixed the cause (e.g. created the release).
        Some(_) | None => {}
    }
    let Some(admission) = Admission::take() else {
        faultline_core::metrics::get().assemblies_refused.inc();
        return Ok(State::Busy);
    };
    if !claim(db, org.id, &checksum, kind).await? {
        return Ok(known_state(db, org.id, &checksum)
            .await?
            .unwrap_or(State::Assembling));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let db2 = db.clone();
    let checksum2 = checksum.clone();
    tokio::spawn(async move {
        let _admission = admission;
        let state = match turns().acquire().await {
            Ok(_turn) => {
                mark_assembling(&db2, target.organization_id, &checksum2).await;
                assemble(&db2, &checksum2, &chunk_ids, &target).await
            }
            // The semaphore is never closed.
            Err(_) => State::Error("assembly could not start; try again".into()),
        };
        let _ = tx.send(state);
    });
    match tokio::time::timeout(WAIT_IN_REQUEST, rx).await {
        Ok(Ok(state)) => Ok(state),
        _ => Ok(State::Created),
    }
}

/// The stored state of an assembly, if any (an abandoned one counts as none).
async fn known_state(
    db: &DatabaseConnection,
    org_id: i64,
    checksum: &str,
) -> ApiResult<Option<State>> {
    let row = query_one(
        db,
        "SELECT state, detail, updated_at FROM assemble_tasks WHERE organization_id = ? AND checksum = ?",
        vec![org_id.into(), checksum.to_string().into()],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("", "state")?;
    let detail: Option<String> = row.try_get("", "detail")?;
    let updated: i64 = row.try_get("", "updated_at")?;
    Ok(match state.as_str() {
        "ok" => Some(State::Ok),
        "error" => Some(State::Error(detail.unwrap_or_default())),
        _ if now_ms() - updated > STALE_AFTER_MS => None,
        "created" => Some(State::Created),
        _ => Some(State::Assembling),
    })
}

/// Records that a waiting assembly got its turn (`created` -> `assembling`).
async fn mark_assembling(db: &DatabaseConnection, org_id: i64, checksum: &str) {
    if let Err(e) = execute(
        db,
        "UPDATE assemble_tasks SET state = 'assembling', updated_at = ? \
         WHERE organization_id = ? AND checksum = ?",
        vec![now_ms().into(), org_id.into(), checksum.to_string().into()],
    )
    .await
    {
        tracing::warn!(error = %e, "cannot record that an assembly started");
    }
}

/// Marks the assembly as ours to run (`created`, until it gets its turn); false when
/// another request already runs it. Writes
/// first (no read-then-write transaction), so SQLite never has to upgrade a read lock.
async fn claim(
    db: &DatabaseConnection,
    org_id: i64,
    checksum: &str,
    kind: &str,
) -> ApiResult<bool> {
    let now = now_ms();
    let inserted = execute(
        db,
        "INSERT INTO assemble_tasks (organization_id, checksum, kind, state, detail, created_at, updated_at) \
         VALUES (?, ?, ?, 'created', NULL, ?, ?) ON CONFLICT (organization_id, checksum) DO NOTHING",
        vec![org_id.into(), checksum.to_string().into(), kind.to_string().into(), now.into(), now.into()],
    )
    .await?;
    if inserted == 1 {
        return Ok(true);
    }
    // A failed or abandoned assembly may be taken over; an `ok` one is final.
    let taken = execute(
        db,
        "UPDATE assemble_tasks SET state = 'created', detail = NULL, kind = ?, updated_at = ? \
         WHERE organization_id = ? AND checksum = ? AND state <> 'ok' AND (state = 'error' OR updated_at < ?)",
        vec![
            kind.to_string().into(),
            now.into(),
            org_id.into(),
            checksum.to_string().into(),
            (now - STALE_AFTER_MS).into(),
        ],
    )
    .await?;
    Ok(taken == 1)
}

/// Puts the chunks together, checks and parses the bundle, indexes its files; records and
/// returns the final state.
async fn assemble(
    db: &DatabaseConnection,
    checksum: &str,
    chunk_ids: &[String],
    target: &Target,
) -> State {
    let state = match assemble_inner(db, checksum, chunk_ids, target).await {
        Ok(()) => State::Ok,
        Err(detail) => State::Error(detail),
    };
    let (name, detail) = match &state {
        State::Ok => ("ok", None),
        State::Error(d) => ("error", Some(d.clone())),
        _ => ("error", None),
    };
    if let Err(e) = execute(
        db,
        "UPDATE assemble_tasks SET state = ?, detail = ?, updated_at = ? WHERE organization_id = ? AND checksum = ?",
        vec![
            name.to_string().into(),
            detail.into(),
            now_ms().into(),
            target.organization_id.into(),
            checksum.to_string().into(),
        ],
    )
    .await
    {
        tracing::error!(error = %e, "cannot record the state of an assembly");
    }
    state
}

async fn assemble_inner(
    db: &DatabaseConnection,
    checksum: &str,
    chunk_ids: &[String],
    target: &Target,
) -> Result<(), String> {
    let internal = |e: sea_orm::DbErr| {
        tracing::error!(error = %e, "assembly failed");
        "internal error while assembling; the server log has the cause".to_string()
    };
    let mut file = Vec::new();
    for id in chunk_ids {
        let chunk = blobs::get_chunk(db, target.organization_id, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| format!("chunk {id} disappeared before assembly; upload again"))?;
        file.extend_from_slice(&chunk);
        if file.len() > chunks::MAX_FILE_SIZE {
            return Err(format!(
                "the file is larger than {} bytes",
                chunks::MAX_FILE_SIZE
            ));
        }
    }
    let actual = blobs::sha1_hex(&file);
    if actual != checksum {
        return Err(format!(
            "checksum mismatch: the chunks put together have SHA-1 {actual}, not {checksum}"
        ));
    }
    let parsed =
        tokio::task::spawn_blocking(move || bundle::parse(&file, bundle::Limits::default()))
            .await
            .map_err(|e| format!("bundle parser failed: {e}"))?
            .map_err(|e: BundleError| e.to_string())?;
    let release = target.release.clone().or(parsed.release.clone());
    let dist = if target.release.is_some() {
        target.dist.clone()
    } else {
        target.dist.clone().or(parsed.dist.clone())
    };
    if !target.release_bundle
        && release.is_none()
        && parsed.files.iter().all(|f| f.debug_id.is_none())
    {
        return Err(
            "the bundle has no files with debug ids and no release: run `sentry-cli sourcemaps inject` first, or upload with --release"
                .into(),
        );
    }
    if let Some(r) = &release
        && let Err(e) = releases::check_version(r)
    {
        return Err(e.detail);
    }
    let txn = super::begin_write(db).await.map_err(internal)?;
    let release_id = match &release {
        Some(v) => Some(
            releases::ensure(&txn, target.organization_id, v, &target.project_ids)
                .await
                .map_err(internal)?,
        ),
        None => None,
    };
    for f in &parsed.files {
        artifacts::store(
            &txn,
            artifacts::NewArtifact {
                organization_id: target.organization_id,
                release_id,
                dist: dist.as_deref(),
                name: &f.url,
                kind: f.kind,
                debug_id: f.debug_id.as_deref(),
                headers: &f.headers,
                content: &f.content,
            },
        )
        .await
        .map_err(internal)?;
    }
    txn.commit().await.map_err(internal)?;
    tracing::info!(
        files = parsed.files.len(),
        release = release.as_deref().unwrap_or(""),
        "bundle assembled"
    );
    Ok(())
}
