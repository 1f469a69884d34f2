//! The pipeline driver: turns queued jobs into prepared events and stores them in batches.
//!
//! The job runner hands over one job at a time and waits; the batcher prepares jobs as they
//! arrive (normalize, group, compress, on threads of their own) and hands everything
//! prepared to the storer whenever it is idle, which stores it in ONE transaction and only
//! then answers each job — so a job is acknowledged exactly when its event is committed. If
//! a batch fails, its jobs are retried one by one, so one poison job cannot take the others
//! down with it.

use chrono::{DateTime, TimeZone, Utc};
use faultline_core::jobs::{EventJob, PayloadKind};
use faultline_core::metrics;
use faultline_core::protocol::event::Event;
use faultline_core::telemetry::SPAN_TARGET;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::budget::{Charge, MemoryBudget};
use crate::normalize::{self, NormalizeContext};
use crate::store::{self, PreparedEvent};
use crate::{grouping, symbolicate, tags};

/// Largest event payload a job may unpack to.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// The most jobs stored in one transaction. Large, because under load the store's cost is
/// mostly per issue touched, and a larger batch touches each issue once for more events:
/// through the queue, over 1,000 issues, batches of at most 2,000 drained ~9,000 events/s,
/// of 4,000 ~10,500/s and of 8,000 ~11,100/s (BENCHMARKS.md, 2026-12-04 evening). A light
/// load never waits for a batch to fill (see `batcher`).
pub const MAX_BATCH: usize = 8000;

/// Bytes the pipeline may hold for jobs between their hand-over and their commit, unless
/// configured (`FAULTLINE_WORKER_MEMORY_MB`). 32 MiB holds ~4,500 prepared 10 KB events
/// (~7 KB each: the zstd payload, the searchable columns, the job's bookkeeping): a batch
/// being stored and the next one growing, which is what keeps the storer busy. With 48 MiB
/// `faultline serve` peaked at ~195 MB RSS under a 30 s overload (BENCHMARKS.md).
pub const DEFAULT_MEMORY_BUDGET: usize = 32 * 1024 * 1024;

/// What a job costs beyond its own bytes: the structs around it, its waiter and span, and
/// apalis' task and the handler's future through its tower layers. Estimated from RSS: with
/// 2 KiB, `faultline serve` held ~50 MB of Rust heap beyond the ~27 MB charged while ~6,000
/// jobs were in flight, i.e. several KiB per job that the charge did not see.
const JOB_OVERHEAD: usize = 4096;

/// Why a job was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The payload can never become an event (retrying will not help).
    #[error("invalid event payload: {0}")]
    Invalid(String),
    /// The database refused the write (retry later).
    #[error("storing the event failed: {0}")]
    Storage(String),
    #[error("the pipeline is shutting down")]
    Closed,
}

struct Submitted {
    job: EventJob,
    done: oneshot::Sender<Result<(), PipelineError>>,
    /// The caller's span (the job's, when tracing is on): the batch's database span
    /// follows from it.
    span: tracing::Span,
    /// The job's bytes, charged until its event is committed (or it failed).
    charge: Charge,
}

/// Handle to the running batcher; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Submitted>,
    monitors: crate::monitors::Monitors,
    sessions: crate::sessions::Sessions,
    budget: MemoryBudget,
}

impl Pipeline {
    /// Starts the batcher on the current Tokio runtime, with the default memory budget.
    pub fn start(db: DatabaseConnection) -> Pipeline {
        Pipeline::start_with_budget(db, DEFAULT_MEMORY_BUDGET)
    }

    /// Starts the batcher with a memory budget of `bytes` for the jobs in flight.
    pub fn start_with_budget(db: DatabaseConnection, bytes: usize) -> Pipeline {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 2);
        let monitors = crate::monitors::Monitors::start(db.clone());
        let sessions = crate::sessions::Sessions::start(db.clone());
        tokio::spawn(batcher(db, rx));
        Pipeline {
            tx,
            monitors,
            sessions,
            budget: MemoryBudget::with_gauge(bytes, |b| {
                metrics::get().worker_inflight_bytes.set(b);
            }),
        }
    }

    /// The budget the jobs in flight are charged against: the queue's fetch waits for room
    /// in it, so jobs are not taken from the queue faster than they are admitted.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Processes one job; returns once its event is committed (or it failed). Waits first
    /// until the job's bytes fit in the memory budget.
    pub async fn process(&self, job: EventJob) -> Result<(), PipelineError> {
        if job.kind == PayloadKind::CheckIn {
            return self.monitors.process(job).await;
        }
        if matches!(job.kind, PayloadKind::Session | PayloadKind::Sessions) {
            return self.sessions.process(job).await;
        }
        let charge = self.budget.charge(job_cost(&job)).await;
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submitted {
                job,
                done,
                span: tracing::Span::current(),
                charge,
            })
            .await
            .map_err(|_| PipelineError::Closed)?;
        wait.await.map_err(|_| PipelineError::Closed)?
    }
}

type Waiter = oneshot::Sender<Result<(), PipelineError>>;

/// What a job may cost from its hand-over until it is prepared: its own bytes plus its
/// payload unpacked (preparing reads it whole and parses it). Frames say the unpacked size;
/// the old JSON jobs' zstd payloads are guessed at 4x. A lying frame is cut at the payload
/// limit, and a charge is never more than the whole budget.
pub fn job_cost(job: &EventJob) -> usize {
    let strings = job.event_id.len()
        + job.client_ip.as_ref().map_or(0, String::len)
        + job.sent_at.as_ref().map_or(0, String::len)
        + job.envelope_sdk.as_ref().map_or(0, |r| r.get().len())
        + job.traceparent.as_ref().map_or(0, String::len);
    let raw = job.payload.as_ref().map_or(0, |r| r.get().len());
    let lz4 = job.payload_lz4.as_ref().map_or(0, Vec::len);
    let unpacked_lz4 = job
        .payload_lz4
        .as_ref()
        .and_then(|p| p.first_chunk::<4>())
        .map_or(0, |len| u32::from_le_bytes(*len) as usize);
    let zstd = job.payload_zstd.as_ref().map_or(0, String::len);
    let unpacked = (unpacked_lz4 + zstd.saturating_mul(4)).min(MAX_PAYLOAD);
    JOB_OVERHEAD + strings + raw * 2 + lz4 + zstd + unpacked
}

/// What a prepared event keeps until its batch is committed.
fn prepared_cost(p: &PreparedEvent) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    JOB_OVERHEAD
        + std::mem::size_of::<PreparedEvent>()
        + p.payload.capacity()
        + p.event_id.capacity()
        + p.level.capacity()
        + p.title.capacity()
        + opt(&p.release)
        + opt(&p.environment)
        + opt(&p.platform)
        + opt(&p.trace_id)
        + opt(&p.user_ident)
        + opt(&p.culprit)
        + opt(&p.exception_type)
        + opt(&p.exception_value)
        + p.hashes.iter().map(|h| h.capacity() + 24).sum::<usize>()
        + p.tags
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity() + 48)
            .sum::<usize>()
}

/// Prepared events on their way to the database, with the jobs waiting for them.
#[derive(Default)]
struct ReadyBatch {
    events: Vec<PreparedEvent>,
    waiters: Vec<Waiter>,
    spans: Vec<tracing::Span>,
    /// The events' bytes, given back once the batch is done.
    charges: Vec<Charge>,
}

/// The most jobs prepared together (one hand-off to the prepare threads).
const CHUNK: usize = 256;

/// Stage one: prepare jobs as they arrive (CPU, on the prepare threads), in chunks of
/// whatever is waiting, and hand everything prepared so far to the storer once it is idle
/// and no more jobs are waiting — a group commit. While the storer writes one batch the
/// next one grows: one event at a time when the load is light (no waiting for a batch to
/// fill), up to `MAX_BATCH` under load, when the machine's cores are the limit and fewer,
/// larger transactions leave more of them for preparing.
///
/// Why not fixed batches: storing costs mostly per distinct issue, not per event (on SQLite
/// a batch of 512 events over 1,000 issues took ~100 ms, one of 2,000 ~135 ms). Batches cut
/// by arrival (the queue delivers 512 jobs per fetch) were mostly 512-1,536 events, and the
/// storer, the critical path, wrote three small transactions where one large one would do.
async fn batcher(db: DatabaseConnection, mut rx: mpsc::Receiver<Submitted>) {
    // One permit: held by the batch being stored, so "available" means the storer is idle.
    let storer_idle = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let (ready_tx, ready_rx) = mpsc::channel::<(ReadyBatch, OwnedPermit)>(1);
    tokio::spawn(storer(db.clone(), ready_rx));
    let mut ready = ReadyBatch::default();
    let mut chunk: Vec<Submitted> = Vec::with_capacity(CHUNK);
    let mut open = true;
    loop {
        if !ready.events.is_empty() {
            // A full batch (or the last one) waits for the storer; a partial one goes only
            // if the storer is idle, and otherwise keeps growing.
            let permit = if ready.events.len() >= MAX_BATCH || !open {
                storer_idle.clone().acquire_owned().await.ok()
            } else if rx.is_empty() {
                storer_idle.clone().try_acquire_owned().ok()
            } else {
                None
            };
            if let Some(permit) = permit
                && ready_tx
                    .send((std::mem::take(&mut ready), permit))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if !open {
            return;
        }
        // The next job. With a batch waiting for the storer, whichever comes first: a job,
        // or the storer becoming idle (then the batch goes, and we come back here).
        let first = if ready.events.is_empty() || !rx.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                job = rx.recv() => job,
                permit = storer_idle.clone().acquire_owned() => {
                    let Ok(permit) = permit else { return };
                    if ready_tx.send((std::mem::take(&mut ready), permit)).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        let Some(first) = first else {
            open = false;
            continue;
        };
        chunk.push(first);
        while chunk.len() < CHUNK {
            match rx.try_recv() {
                Ok(s) => chunk.push(s),
                Err(_) => break,
            }
        }
        prepare_chunk(&db, &mut chunk, &mut ready).await;
    }
}

type OwnedPermit = tokio::sync::OwnedSemaphorePermit;

/// Prepares the jobs of `chunk` (emptying it) and adds them to `ready`; the jobs that can
/// never become events are answered at once.
async fn prepare_chunk(
    db: &DatabaseConnection,
    chunk: &mut Vec<Submitted>,
    ready: &mut ReadyBatch,
) {
    let mut jobs = Vec::with_capacity(chunk.len());
    let mut waiters = Vec::with_capacity(chunk.len());
    let mut spans = Vec::with_capacity(chunk.len());
    let mut charges = Vec::with_capacity(chunk.len());
    for s in chunk.drain(..) {
        jobs.push(s.job);
        waiters.push(s.done);
        spans.push(s.span);
        charges.push(s.charge);
    }
    let started = std::time::Instant::now();
    let prepared = prepare_parallel(jobs).await;
    let prepared = symbolicate_pending(db, prepared).await;
    tracing::trace!(
        jobs = prepared.len(),
        ms = started.elapsed().as_millis() as u64,
        "chunk prepared"
    );
    for (((p, w), span), mut charge) in prepared.into_iter().zip(waiters).zip(spans).zip(charges) {
        match p {
            Ok(p) => {
                // The unpacked payload is gone: keep only what the prepared event holds.
                charge.shrink_to(prepared_cost(&p));
                ready.events.push(p);
                ready.waiters.push(w);
                ready.spans.push(span);
                ready.charges.push(charge);
            }
            Err(e) => {
                tracing::warn!(error = %e, "an invalid job goes to the dead-letter state");
                metrics::get().jobs_failed.inc();
                let _ = w.send(Err(e));
            }
        }
    }
}

/// A job after the first CPU stage: ready to store, or waiting for source maps.
// Stages live for one batch only; boxing the common variant would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
pub enum Stage {
    Ready(PreparedEvent),
    /// A normalized event with JavaScript frames, of this project.
    Symbolicate(i64, Box<Event>),
}

/// Events a prepare thread takes at a time (rayon splits no finer).
const GRAB: usize = 16;

/// How much lower than the rest of the process the prepare threads run (`nice` steps).
///
/// Preparing is the bulk of the CPU work; storing is the critical path. At equal priority
/// the two prepare threads kept SQLite's thread (and, in `faultline serve`, ingestion)
/// waiting for a core, and only ~1.5 of 2 cores did useful work. At a lower priority
/// they use whatever the storer and the HTTP side leave, and both cores stay busy.
const PREPARE_NICENESS: i32 = 10;

/// The prepare threads: one per core, at `PREPARE_NICENESS`. Threads of their own, because
/// a niced thread of Tokio's blocking pool would stay niced for whatever ran on it next.
fn prepare_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("prepare-{i}"))
            .start_handler(|_| lower_priority(PREPARE_NICENESS))
            .build()
            // Fails only when the process cannot start threads at all, at start-up.
            .expect("starting the prepare threads")
    })
}

/// Lowers the calling thread's priority by `steps` from the process's (Linux:
/// `setpriority` on a thread id affects that thread only). Raising niceness needs no
/// privilege; a failure just leaves it as it was.
fn lower_priority(steps: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the current thread, no memory is shared.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        // Relative, so a server started with `nice` keeps its prepare threads below it.
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        if libc::setpriority(libc::PRIO_PROCESS, tid, (current + steps).min(19)) != 0 {
            tracing::debug!("could not lower the prepare thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = steps;
}

/// Runs `f` over `items` on the prepare threads; results keep the order.
///
/// Work-stealing rather than a fixed half per thread: the database thread and the runtime
/// share the same cores, so a fixed split left one thread idle while the other, slowed
/// down, finished its half alone.
async fn parallel<T, R>(
    items: Vec<T>,
    f: fn(T) -> Result<R, PipelineError>,
) -> Vec<Result<R, PipelineError>>
where
    T: Send + 'static,
    R: Send + 'static,
{
    use rayon::prelude::*;
    let n = items.len();
    let (tx, rx) = oneshot::channel();
    prepare_pool().spawn(move || {
        let out: Vec<Result<R, PipelineError>> = items
            .into_par_iter()
            .with_min_len(GRAB)
            .map(|item| {
                // A panic fails its own event only, not the batch.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)))
                    .unwrap_or_else(|_| Err(PipelineError::Invalid("processing panicked".into())))
            })
            .collect();
        let _ = tx.send(out);
    });
    match rx.await {
        Ok(out) => out,
        // The task itself never answered (it catches every item's panic): fail the items
        // without blaming them; the queue delivers them again.
        Err(_) => {
            tracing::error!("the prepare threads did not answer");
            (0..n)
                .map(|_| {
                    Err(PipelineError::Storage(
                        "the prepare threads did not answer".into(),
                    ))
                })
                .collect()
        }
    }
}

/// Prepares jobs on the prepare threads; results keep the jobs' order.
async fn prepare_parallel(jobs: Vec<EventJob>) -> Vec<Result<Stage, PipelineError>> {
    parallel(jobs, prepare).await
}

/// Events with JavaScript frames: source maps for the whole batch are looked up at once,
/// then grouped and compressed like the others. Batches without any skip this entirely.
async fn symbolicate_pending(
    db: &DatabaseConnection,
    stages: Vec<Result<Stage, PipelineError>>,
) -> Vec<Result<PreparedEvent, PipelineError>> {
    let mut out: Vec<Result<PreparedEvent, PipelineError>> = Vec::with_capacity(stages.len());
    let mut pending: Vec<(i64, Event)> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    for stage in stages {
        match stage {
            Ok(Stage::Ready(p)) => out.push(Ok(p)),
            Ok(Stage::Symbolicate(project, event)) => {
                slots.push(out.len());
                // A placeholder, replaced below.
                out.push(Err(PipelineError::Closed));
                pending.push((project, *event));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    if pending.is_empty() {
        return out;
    }
    symbolicate::symbolicate_batch(db, &mut pending).await;
    let prepared = parallel(pending, |(project, mut event)| {
        prepare_event(project, &mut event)
    })
    .await;
    for (slot, p) in slots.into_iter().zip(prepared) {
        out[slot] = p;
    }
    out
}

/// Stage two: one transaction per batch, then every job of the batch is answered. The
/// permit goes back (the storer is idle) once the batch is done.
async fn storer(db: DatabaseConnection, mut ready: mpsc::Receiver<(ReadyBatch, OwnedPermit)>) {
    while let Some((
        ReadyBatch {
            events,
            waiters,
            spans,
            charges,
        },
        _idle_when_dropped,
    )) = ready.recv().await
    {
        // Given back at the end of this round, when the events are dropped too.
        let _charges = charges;
        let started = std::time::Instant::now();
        let span = batch_span(&db, events.len(), &spans);
        let stored = store::store_batch(&db, &events).instrument(span).await;
        metrics::get()
            .store_batch_seconds
            .observe(started.elapsed().as_secs_f64());
        match stored {
            Ok(outcome) => {
                tracing::debug!(
                    events = events.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "batch stored"
                );
                log_outcome(&outcome);
                observe_latency(&events);
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) if events.len() > 1 => {
                tracing::warn!(error = %e, jobs = events.len(), "batch failed; storing its events one by one");
                for (p, w) in events.iter().zip(waiters) {
                    let r = store::store_batch(&db, std::slice::from_ref(p))
                        .await
                        .map(|o| {
                            log_outcome(&o);
                            observe_latency(std::slice::from_ref(p));
                        })
                        .map_err(|e| {
                            metrics::get().jobs_failed.inc();
                            PipelineError::Storage(e.to_string())
                        });
                    let _ = w.send(r);
                }
            }
            Err(e) => {
                metrics::get().jobs_failed.inc_by(waiters.len() as u64);
                for w in waiters {
                    let _ = w.send(Err(PipelineError::Storage(e.to_string())));
                }
            }
        }
    }
}

/// The database span of one batch: a child of its first job's span, following from the
/// others', so every job's trace shows the transaction that stored it.
fn batch_span(db: &DatabaseConnection, events: usize, jobs: &[tracing::Span]) -> tracing::Span {
    let Some(first) = jobs.first() else {
        return tracing::Span::none();
    };
    let system = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "postgresql",
        _ => "sqlite",
    };
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        parent: first,
        "db.store_batch",
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = "store_batch",
        db.operation.batch.size = events,
    );
    if !span.is_disabled() {
        for other in &jobs[1..] {
            span.follows_from(other);
        }
    }
    span
}

/// Time from ingest accepting each event to its commit.
fn observe_latency(events: &[PreparedEvent]) {
    let now = Utc::now().timestamp_millis();
    let histogram = &metrics::get().processing_seconds;
    for e in events {
        histogram.observe((now - e.received_ms).max(0) as f64 / 1000.0);
    }
}

fn log_outcome(outcome: &store::BatchOutcome) {
    if !outcome.notifications.is_empty() {
        // Their outbox rows are committed: let this process's alert loop look now.
        crate::alerts::wake();
    }
    let m = metrics::get();
    m.events_stored.inc_by(outcome.stored as u64);
    m.events_duplicate.inc_by(outcome.duplicates as u64);
    let created = outcome
        .notifications
        .iter()
        .filter(|n| n.kind == store::NotificationKind::NewIssue)
        .count();
    m.issues_created.inc_by(created as u64);
    for n in &outcome.notifications {
        tracing::debug!(issue_id = n.issue_id, project_id = n.project_id, kind = ?n.kind, "issue state changed");
    }
}

fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Normalize -> group -> extract the searchable columns -> compress. Pure CPU work.
/// Events with JavaScript frames stop after normalizing: their source maps are looked up
/// for the whole batch first.
pub fn prepare(job: EventJob) -> Result<Stage, PipelineError> {
    let received = ms_to_datetime(job.received_ms);
    let ctx = NormalizeContext {
        received,
        client_ip: job.client_ip.clone(),
        envelope_event_id: uuid::Uuid::parse_str(&job.event_id).ok(),
        sent_at: job
            .sent_at
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)),
        envelope_sdk: job
            .envelope_sdk
            .as_ref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok()),
    };
    // Jobs come from our own ingest, which caps events long before this.
    let raw = job
        .payload_bytes(MAX_PAYLOAD)
        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let raw = &raw[..];
    let mut event = match job.kind {
        PayloadKind::Event => normalize::normalize(raw, &ctx),
        PayloadKind::SecurityReport => normalize::normalize_security_report(raw, &ctx),
        // Routed to `monitors` before batching; never prepared as an event.
        PayloadKind::CheckIn => {
            return Err(PipelineError::Invalid("a check-in is not an event".into()));
        }
        // Counted by `sessions`, never prepared as events.
        PayloadKind::Session | PayloadKind::Sessions => {
            return Err(PipelineError::Invalid(
                "a session job is not an event".into(),
            ));
        }
    }
    .map_err(|e| PipelineError::Invalid(e.to_string()))?;
    if symbolicate::wants(&event) {
        return Ok(Stage::Symbolicate(job.project_id, Box::new(event)));
    }
    prepare_event(job.project_id, &mut event).map(Stage::Ready)
}

/// Groups a normalized event and builds the row data to store.
pub fn prepare_event(project_id: i64, event: &mut Event) -> Result<PreparedEvent, PipelineError> {
    let hashes = grouping::hashes(event);
    let (title, culprit) = grouping::title_and_culprit(event);
    event.title = Some(title.clone());
    // Normalization only sets a culprit where it knows better (CSP reports); SDK-sent
    // culprits were already dropped.
    let culprit = event.culprit.clone().or(culprit);
    event.culprit = culprit.clone();
    let tags = tags::event_tags(event);
    let main = event.main_exception();
    let exception_type = main.and_then(|e| e.ty.clone());
    let exception_value = main.and_then(|e| e.value.clone());
    let payload = compress_event(event)?;
    let received_ms = event
        .received
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    Ok(PreparedEvent {
        project_id,
        event_id: event
            .event_id
            .map(|id| id.simple().to_string())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        timestamp_ms: event
            .timestamp
            .map(|t| t.timestamp_millis())
            .unwrap_or(received_ms),
        received_ms,
        level: event.level.unwrap_or_default().as_str().to_string(),
        release: event.release.clone(),
        environment: event.environment.clone(),
        platform: event.platform.clone(),
        trace_id: event.trace_id().map(str::to_string),
        user_ident: event.user.as_ref().and_then(|u| u.identifier()),
        title,
        culprit,
        exception_type,
        exception_value,
        hashes,
        tags,
        payload,
    })
}

thread_local! {
    /// The JSON of the event being compressed: one buffer per thread, grown to the largest
    /// event once, instead of a vector grown by doubling and freed for every event.
    static EVENT_JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The normalized event as stored: JSON, zstd-compressed.
fn compress_event(event: &Event) -> Result<Vec<u8>, PipelineError> {
    EVENT_JSON.with(|cell| {
        let mut json = cell.borrow_mut();
        json.clear();
        serde_json::to_writer(&mut *json, event)
            .map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let packed = faultline_core::compress::zstd_event(&json)
            .map_err(|e| PipelineError::Invalid(e.to_string()));
        // A rare huge event should not pin its buffer for the thread's lifetime.
        if json.capacity() > 4 * 1024 * 1024 {
            *json = Vec::new();
        }
        packed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double_unless_13(n: u32) -> Result<u32, PipelineError> {
        if n == 13 {
            panic!("a bug on one event");
        }
        Ok(n * 2)
    }

    #[cfg(target_os = "linux")]
    fn niceness_of_this_thread(_: ()) -> Result<i32, PipelineError> {
        // SAFETY: plain system calls about the current thread.
        Ok(unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        })
    }

    /// The storer and ingestion get a core before event preparation does.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_prepared_at_a_lower_priority_than_the_runtime() {
        let runtime = niceness_of_this_thread(()).unwrap_or_default();
        let prepared = parallel(vec![(); 256], niceness_of_this_thread).await;
        assert_eq!(prepared.len(), 256);
        for n in prepared {
            let n = n.unwrap_or_default();
            assert_eq!(
                n,
                (runtime + PREPARE_NICENESS).min(19),
                "prepare thread at nice {n}"
            );
        }
        // The runtime's own threads keep their priority.
        assert_eq!(niceness_of_this_thread(()).unwrap_or_default(), runtime);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_keeps_the_order_and_a_panic_fails_only_its_own_item() {
        let items: Vec<u32> = (0..1000).collect();
        let out = parallel(items, double_unless_13).await;
        assert_eq!(out.len(), 1000);
        for (i, r) in out.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i as u32 * 2, "result {i} out of order"),
                Err(PipelineError::Invalid(why)) => {
                    assert_eq!(i, 13, "only the panicking item fails");
                    assert!(why.contains("panicked"));
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert!(out[13].is_err());
        // An empty batch and a batch smaller than one grab work too.
        assert!(parallel(Vec::new(), double_unless_13).await.is_empty());
        let small = parallel(vec![1, 2, 3], double_unless_13).await;
        assert_eq!(
            small.into_iter().map(|r| r.ok()).collect::<Vec<_>>(),
            vec![Some(2), Some(4), Some(6)]
        );
    }
}
