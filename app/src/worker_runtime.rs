//! Runs the event pipeline as an apalis worker on the queue's backend.
//!
//! apalis owns delivery: it fetches jobs, acknowledges each one only after our handler
//! returns, retries failures with `MAX_ATTEMPTS`, and leaves jobs that keep failing in
//! its dead-letter state (`Failed`/`Killed`), where `faultline jobs` shows them. The
//! handler hands each job to the pipeline's batcher, which stores many jobs in one
//! database transaction and answers every handler once that transaction has committed.

use std::time::Duration;

use apalis::prelude::*;
use faultline_core::jobs::EventJob;
use faultline_worker::pipeline::{Pipeline, PipelineError};
use sea_orm::DatabaseConnection;
use tracing::Instrument;

use crate::queue::{self, Backend as QueueBackend};
use apalis::prelude::WorkerError;

/// Jobs in flight at once, at most: two of the pipeline's largest batches, so that one batch
/// can fill while the previous one is being written. What actually bounds the jobs in
/// flight is the pipeline's memory budget (bytes, `FAULTLINE_WORKER_MEMORY_MB`): the
/// SQLite queue fetches only while it has room, and every job waits for its bytes.
const CONCURRENCY: usize = 2 * faultline_worker::pipeline::MAX_BATCH + 384;
/// Jobs fetched per poll.
const FETCH_BATCH: usize = 512;
/// Room in the memory budget a fetch waits for: a fetch's worth of typical ~10 KB events
/// (charged ~12 KB each until prepared). Larger jobs wait for their bytes in the handler.
const FETCH_ROOM: usize = FETCH_BATCH * 12 * 1024;
/// How often a worker tells the queue it is alive (and re-enqueues jobs of dead workers).
const HEARTBEAT: Duration = Duration::from_secs(3);
/// Heartbeats a worker may miss before its locked jobs go back to the queue.
const MISSED_HEARTBEATS: usize = 2;
/// How often an idle worker looks for new jobs (a busy one fetches as fast as it drains).
const IDLE_POLL: Duration = Duration::from_millis(20);

/// How long a stopping worker may take to finish its in-flight batches.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running worker; `stop` lets in-flight jobs finish (or be released) first.
pub struct RunningWorker {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
    backend: QueueBackend,
    /// The name of the current run, whose jobs a stop releases.
    run_name: std::sync::Arc<std::sync::Mutex<String>>,
}

impl RunningWorker {
    /// Stops fetching, waits (bounded) for the jobs in flight, then puts whatever this run
    /// still holds back in the queue at once — also when the wait timed out, so a stuck
    /// database never leaves jobs locked until the heartbeat timeout.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut handle = self.handle;
        if tokio::time::timeout(STOP_TIMEOUT, &mut handle)
            .await
            .is_err()
        {
            tracing::warn!(
                seconds = STOP_TIMEOUT.as_secs(),
                "worker did not finish its jobs in time; releasing them to the queue"
            );
            handle.abort();
        }
        let name = self.run_name.lock().map(|n| n.clone()).unwrap_or_default();
        release_jobs(&self.backend, &name).await;
    }
}

async fn handle(job: EventJob, pipeline: Data<Pipeline>) -> Result<(), BoxDynError> {
    let span =
        crate::telemetry::job_span(job.project_id, &job.event_id, job.traceparent.as_deref());
    let result = pipeline.process(job).instrument(span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result.map_err(|e| match e {
        // Retrying cannot make a payload valid: the job goes dead at once (apalis reports an
        // abort as a kill, which the storages bury), not after five parses and 7.5 s.
        e @ PipelineError::Invalid(_) => Box::new(AbortError::new(e)) as BoxDynError,
        e => Box::new(e) as BoxDynError,
    })
}

/// A name for one run of a worker. apalis refuses a name whose previous holder's heartbeat
/// is still fresh, so every run gets its own; jobs a crashed run left locked are
/// re-enqueued by the next live worker once that run's heartbeats have lapsed
/// ([`HEARTBEAT`] x [`MISSED_HEARTBEATS`]).
fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    };
    format!(
        "faultline-{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Starts consuming the event queue with the default memory budget; if the worker ever
/// fails it is started again.
pub async fn spawn(db: DatabaseConnection, backend: QueueBackend) -> anyhow::Result<RunningWorker> {
    spawn_with_budget(
        db,
        backend,
        faultline_worker::pipeline::DEFAULT_MEMORY_BUDGET,
    )
    .await
}

/// Starts consuming the event queue, holding at most `memory_budget` bytes of jobs between
/// fetch and commit.
pub async fn spawn_with_budget(
    db: DatabaseConnection,
    backend: QueueBackend,
    memory_budget: usize,
) -> anyhow::Result<RunningWorker> {
    let pipeline = Pipeline::start_with_budget(db.clone(), memory_budget);
    tokio::spawn(retention_loop(db.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(faultline_worker::monitors::clock::run(db, stopped.clone()));
    let run_name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let current = run_name.clone();
    let worker_backend = backend.clone();
    let handle = tokio::spawn(async move {
        let backend = worker_backend;
        loop {
            let mut stopped_rx = stopped.clone();
            let signal = async move {
                let _ = stopped_rx.wait_for(|s| *s).await;
                Ok::<(), std::io::Error>(())
            };
            let name = worker_name();
            if let Ok(mut current) = current.lock() {
                current.clone_from(&name);
            }
            let result = run_once(&backend, pipeline.clone(), signal, &name).await;
            if *stopped.borrow() {
                return;
            }
            // A run that failed leaves its jobs to the next one at once.
            release_jobs(&backend, &name).await;
            match result {
                Ok(()) => tracing::warn!("worker ended unexpectedly; starting it again"),
                Err(e) => tracing::error!(error = %e, "worker failed; starting it again in 1 s"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(RunningWorker {
        stop,
        handle,
        backend,
        run_name,
    })
}

/// Applies retention a minute after start, then hourly.
async fn retention_loop(db: DatabaseConnection) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match faultline_worker::retention::run(&db, chrono::Utc::now().timestamp_millis()).await {
            Ok(o) if o.expired + o.over_cap > 0 => {
                tracing::info!(
                    expired = o.expired,
                    over_cap = o.over_cap,
                    "retention removed events"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; will retry next hour"),
        }
        if let Err(e) =
            faultline_worker::alerts::prune(&db, chrono::Utc::now().timestamp_millis()).await
        {
            tracing::warn!(error = %e, "pruning the notification log failed; will retry next hour");
        }
    }
}

/// On a graceful stop, puts the jobs this run fetched but did not finish back in the queue
/// at once (apalis would re-enqueue them only after the run's heartbeats lapse). They are
/// not counted as failed attempts. A job whose event was committed but whose
/// acknowledgement was cut short runs again and is deduplicated by its event id.
async fn release_jobs(backend: &QueueBackend, name: &str) {
    // apalis-redis re-enqueues a stopped worker's jobs through its heartbeat check.
    let QueueBackend::Sqlite(pool) = backend else {
        return;
    };
    if name.is_empty() {
        return;
    }
    match queue::sqlite::release(pool, name).await {
        Ok(0) => {}
        Ok(jobs) => tracing::info!(jobs, "released unfinished jobs to the queue"),
        Err(e) => {
            tracing::warn!(error = %e, "releasing unfinished jobs failed; they return after the heartbeat timeout")
        }
    }
}

async fn run_once(
    backend: &QueueBackend,
    pipeline: Pipeline,
    signal: impl std::future::Future<Output = Result<(), std::io::Error>> + Send + 'static,
    name: &str,
) -> Result<(), WorkerError> {
    let name = name.to_string();
    match backend {
        QueueBackend::Sqlite(pool) => {
            let storage = queue::sqlite::SqliteQueue::new(
                pool.clone(),
                queue::sqlite::Settings {
                    batch_size: FETCH_BATCH,
                    heartbeat: HEARTBEAT,
                    missed_heartbeats: MISSED_HEARTBEATS as u32,
                },
            )
            .with_budget(pipeline.budget().clone(), FETCH_ROOM)
            .poll_with_strategy(IdlePoll::new());
            WorkerBuilder::new(name)
                .backend(storage)
                .data(pipeline)
                .concurrency(CONCURRENCY)
                .build(handle)
                .run_until(signal)
                .await
        }
        QueueBackend::Redis(conn) => {
            let storage = apalis_redis::RedisStorage::<EventJob>::new(conn.clone())
                .with_config(
                    queue::redis_config()
                        .batch_size(FETCH_BATCH)
                        .heartbeat_interval(HEARTBEAT)
                        .missed_heartbeats(MISSED_HEARTBEATS),
                )
                .poll_with_strategy(IdlePoll::new());
            WorkerBuilder::new(name)
                .backend(storage)
                .data(pipeline)
                .concurrency(CONCURRENCY)
                .build(handle)
                .run_until(signal)
                .await
        }
    }
}

/// Wakes an idle worker every [`IDLE_POLL`] so it looks for new jobs.
///
/// apalis' own interval strategy re-arms its timer without polling it, so after a tick
/// that finds nothing no waker is registered and an idle worker can sleep until its next
/// heartbeat. This one always leaves a registered tick behind.
struct IdlePoll(tokio::time::Interval);

impl IdlePoll {
    fn new() -> Self {
        let mut interval = tokio::time::interval(IDLE_POLL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        IdlePoll(interval)
    }
}

impl PollStrategy for IdlePoll {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        let mut fired = false;
        // Poll until Pending so that the next tick's waker is registered.
        while self.0.poll_tick(cx).is_ready() {
            fired = true;
        }
        if fired {
            std::task::Poll::Ready(Some(()))
        } else {
            std::task::Poll::Pending
        }
    }
}
