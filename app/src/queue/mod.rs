//! The durable queue between ingest and the worker, on apalis: its own SQLite file
//! (`queue.db`, our storage in [`sqlite`]) in the embedded default, Redis (apalis-redis)
//! when `REDIS_URL` is set.
//!
//! Ingest answers an SDK only once its job is durable. To make that cheap, jobs are
//! group-committed: one committer task takes every job that arrived while the previous
//! write was running and makes them durable in a single transaction (SQLite) or a single
//! script call (Redis), then wakes all their requests. Under light load a batch is one
//! job and adds no delay; under heavy load the batches grow by themselves.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::TaskBuilder;
use faultline_core::config::Config;
use faultline_core::jobs::EVENT_QUEUE;
use sea_orm::sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

pub mod sqlite;

/// How many attempts a job gets before it lands in the dead-letter state.
pub const MAX_ATTEMPTS: usize = 5;
/// The largest number of jobs written in one group commit.
const MAX_BATCH: usize = 2048;

/// Where jobs are kept.
#[derive(Clone)]
pub enum Backend {
    /// Embedded: `queue.db` ([`sqlite`]).
    Sqlite(SqlitePool),
    /// Scaled: apalis-redis.
    Redis(redis::aio::ConnectionManager),
}

/// Why a job could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue write failed: {0}")]
    Write(String),
    #[error("queue is shutting down")]
    Closed,
}

struct Pending {
    job: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle for enqueuing jobs; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Pending>,
    backend: Backend,
    depth: Arc<AtomicU64>,
}

impl Queue {
    /// Opens the configured queue and starts its committer and depth gauge.
    pub async fn open(config: &Config) -> anyhow::Result<Queue> {
        let backend = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not usable: {e}"))?;
                let conn = tokio::time::timeout(
                    Duration::from_secs(5),
                    redis::aio::ConnectionManager::new(client),
                )
                .await
                .map_err(|_| anyhow::anyhow!("cannot reach Redis at {url}: timed out"))?
                .map_err(|e| anyhow::anyhow!("cannot reach Redis at {url}: {e}"))?;
                Backend::Redis(conn)
            }
            None => Backend::Sqlite(open_sqlite(&config.queue_db_path()).await?),
        };
        Ok(Queue::start(backend))
    }

    /// Starts the committer over an opened backend.
    pub fn start(backend: Backend) -> Queue {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let depth = Arc::new(AtomicU64::new(0));
        // The committer gets a thread of its own: on the shared runtime it waited behind
        // thousands of worker futures and every request's latency went with it.
        let commit_backend = backend.clone();
        let spawned = std::thread::Builder::new()
            .name("faultline-commit".into())
            .spawn(move || match commit_backend {
                Backend::Sqlite(pool) => {
                    sqlite_committer(pool.connect_options().get_filename().to_path_buf(), rx)
                }
                Backend::Redis(conn) => match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(redis_committer(conn, rx)),
                    Err(e) => tracing::error!(error = %e, "cannot start the queue committer"),
                },
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the queue committer thread");
        }
        tokio::spawn(depth_gauge(backend.clone(), depth.clone()));
        if let Backend::Sqlite(pool) = &backend {
            tokio::spawn(sqlite::checkpointer(
                pool.clone(),
                sqlite::WAL_RESTART_BYTES,
            ));
        }
        Queue { tx, backend, depth }
    }

    /// Makes one serialized job durable; returns once it is.
    pub async fn enqueue(&self, job: Vec<u8>) -> Result<(), QueueError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { job, done })
            .await
            .map_err(|_| QueueError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(QueueError::Write(e)),
            Err(_) => Err(QueueError::Closed),
        }
    }

    /// Whether jobs are written as binary frames (the embedded queue) rather than JSON
    /// (Redis, whose apalis storage decodes JSON only).
    pub fn takes_frames(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    /// Jobs waiting or running, as last measured (refreshed every second).
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// The backend, for the worker to consume from.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Checks that the queue storage answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Opens `queue.db` for producers (see [`sqlite::open`]).
pub async fn open_sqlite(path: &std::path::Path) -> anyhow::Result<SqlitePool> {
    sqlite::open(path).await
}

/// Opens `queue.db` for a worker (see [`sqlite::open_for_worker`]).
pub async fn open_sqlite_for_worker(path: &std::path::Path) -> anyhow::Result<SqlitePool> {
    sqlite::open_for_worker(path).await
}

/// Takes every job that arrived while the previous write ran (at most [`MAX_BATCH`]).
fn take_batch(first: Pending, rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

/// Answers every request of a written batch.
fn finish_batch(batch: &mut Vec<Pending>, result: Result<(), String>, started: Instant) {
    tracing::debug!(
        jobs = batch.len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "group commit"
    );
    if let Err(e) = &result {
        tracing::error!(error = %e, jobs = batch.len(), "queue write failed");
    }
    for p in batch.drain(..) {
        let _ = p.done.send(result.clone());
    }
}

/// The embedded queue's committer: a blocking loop over its own SQLite connection
/// ([`sqlite::Writer`]), opened again after a failed write.
fn sqlite_committer(path: PathBuf, mut rx: mpsc::Receiver<Pending>) {
    let mut writer: Option<sqlite::Writer> = None;
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        take_batch(first, &mut rx, &mut batch);
        let started = Instant::now();
        let written = match writer.as_mut() {
            Some(w) => Ok(w),
            None => sqlite::Writer::open(&path).map(|w| writer.insert(w)),
        }
        .and_then(|w| w.insert_batch(batch.iter().map(|p| p.job.as_slice())));
        if written.is_err() {
            // A broken connection must not fail every later batch too.
            writer = None;
        }
        finish_batch(&mut batch, written.map_err(|e| e.to_string()), started);
    }
}

/// The Redis committer: one script call per batch.
async fn redis_committer(conn: redis::aio::ConnectionManager, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        take_batch(first, &mut rx, &mut batch);
        let started = Instant::now();
        let tasks: Vec<_> = batch
            .iter_mut()
            .map(|p| {
                TaskBuilder::new(std::mem::take(&mut p.job))
                    .max_attempts(MAX_ATTEMPTS)
                    .build()
            })
            .collect();
        let mut conn = conn.clone();
        let result = apalis_redis::queries::push_tasks(&mut conn, &redis_config(), &tasks)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        finish_batch(&mut batch, result, started);
    }
}

/// The apalis-redis settings shared by producers and consumers.
pub fn redis_config() -> apalis_redis::Config {
    apalis_redis::Config::default().queue(EVENT_QUEUE)
}

/// Jobs by state, and the dead ones (failed every attempt), for operators.
#[derive(Debug, Default)]
pub struct QueueReport {
    pub by_status: Vec<(String, i64)>,
    /// (job id, attempts, last error) of dead jobs, newest first.
    pub dead: Vec<(String, i64, Option<String>)>,
}

// Dead letters: jobs that failed every attempt, or were killed.

impl Queue {
    /// Counts by state and the newest dead jobs (embedded SQLite queue).
    pub async fn report(&self, limit: i64) -> anyhow::Result<QueueReport> {
        let Backend::Sqlite(pool) = &self.backend else {
            anyhow::bail!(
                "job listing is available for the embedded SQLite queue; inspect Redis with redis-cli"
            );
        };
        let by_status = sqlite::counts(pool).await?;
        let dead = sqlite::dead_jobs(pool, limit).await?;
        Ok(QueueReport { by_status, dead })
    }

    /// Puts every dead job back in the queue with fresh attempts; returns how many.
    pub async fn retry_dead(&self) -> anyhow::Result<u64> {
        let Backend::Sqlite(pool) = &self.backend else {
            anyhow::bail!("retrying dead jobs is available for the embedded SQLite queue");
        };
        Ok(sqlite::retry_dead(pool).await?)
    }
}

async fn depth_gauge(backend: Backend, depth: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let measured = match &backend {
            Backend::Sqlite(pool) => sqlite::depth(pool).await.ok(),
            // apalis-redis puts a job pushed with a run time (ours: "now") in its scheduled
            // set and moves it to the active list when a worker fetches: waiting jobs are in
            // both. Counting only the list read 0 while no worker ran.
            Backend::Redis(conn) => {
                let config = redis_config();
                let mut conn = conn.clone();
                redis::pipe()
                    .cmd("LLEN")
                    .arg(config.active_jobs_list())
                    .cmd("ZCARD")
                    .arg(config.scheduled_jobs_set())
                    .query_async::<(i64, i64)>(&mut conn)
                    .await
                    .ok()
                    .map(|(active, scheduled)| active + scheduled)
            }
        };
        if let Some(n) = measured {
            depth.store(n.max(0) as u64, Ordering::Relaxed);
            faultline_core::metrics::get().queue_depth.set(n.max(0));
        }
        if let Some(age) = oldest_waiting_age(&backend).await {
            faultline_core::metrics::get().queue_oldest_age.set(age);
        }
    }
}

/// Seconds the oldest waiting job has waited (0 when none waits), for `/metrics`.
async fn oldest_waiting_age(backend: &Backend) -> Option<f64> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    match backend {
        Backend::Sqlite(pool) => sqlite::oldest_enqueued_at(pool)
            .await
            .ok()
            .map(|oldest| oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0)),
        // Waiting jobs sit in the scheduled set (score: run time, seconds) until a worker
        // moves them to the active list, which it reads from the head. Job ids are ULIDs,
        // which carry their creation time.
        Backend::Redis(conn) => {
            let config = redis_config();
            let mut conn = conn.clone();
            let (head, first_scheduled): (Option<String>, Vec<(String, f64)>) = redis::pipe()
                .cmd("LINDEX")
                .arg(config.active_jobs_list())
                .arg(0)
                .cmd("ZRANGE")
                .arg(config.scheduled_jobs_set())
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .ok()?;
            let active_age = head
                .and_then(|id| ulid::Ulid::from_string(&id).ok())
                .map_or(0, |u| now_ms - u.timestamp_ms() as i64);
            let scheduled_age = first_scheduled
                .first()
                .map_or(0, |(_, run_at)| now_ms - (*run_at * 1000.0) as i64);
            Some(active_age.max(scheduled_age).max(0) as f64 / 1000.0)
        }
    }
}
