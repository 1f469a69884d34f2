//! The durable queue between ingest and the worker, on apalis: its own SQLite file
//! (`queue.db`) in the embedded default, Redis when `REDIS_URL` is set.
//!
//! Ingest answers an SDK only once its job is durable. To make that cheap, jobs are
//! group-committed: one committer task takes every job that arrived while the previous
//! write was running and makes them durable in a single transaction (SQLite) or a single
//! script call (Redis), then wakes all their requests. Under light load a batch is one
//! job and adds no delay; under heavy load the batches grow by themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use apalis::prelude::TaskBuilder;
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use faultline_core::config::Config;
use faultline_core::jobs::EVENT_QUEUE;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

/// How many attempts a job gets before it lands in the dead-letter state (apalis `Killed`/`Failed`).
pub const MAX_ATTEMPTS: usize = 5;
/// The largest number of jobs written in one group commit.
const MAX_BATCH: usize = 2048;

/// Where jobs are kept.
#[derive(Clone)]
pub enum Backend {
    /// Embedded: apalis-sqlite on `queue.db`.
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
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(committer(commit_backend, rx)),
                    Err(e) => tracing::error!(error = %e, "cannot start the queue committer"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the queue committer thread");
        }
        tokio::spawn(depth_gauge(backend.clone(), depth.clone()));
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

/// Opens `queue.db` with full durability (group commit pays the fsync once per batch).
pub async fn open_sqlite(path: &std::path::Path) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    // apalis' setup switches its connection to `synchronous = OFF`; run it on a throwaway
    // pool so the connections that write jobs keep FULL durability.
    {
        let setup_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open queue {}: {e}", path.display()))?;
        // Two processes starting together (web + worker) may both run apalis' setup; the
        // loser gets "database is locked" at once (journal-mode changes ignore the busy
        // timeout), so retry for a few seconds.
        let mut attempt = 0;
        loop {
            match SqliteStorage::setup(&setup_pool).await {
                Ok(()) => break,
                Err(e) if attempt < 25 && e.to_string().contains("locked") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot prepare queue {}: {e}",
                        path.display()
                    ));
                }
            }
        }
        seed_statistics(&setup_pool).await;
        setup_pool.close().await;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts.synchronous(SqliteSynchronous::Full))
        .await
        .map_err(|e| anyhow::anyhow!("cannot open queue {}: {e}", path.display()))?;
    Ok(pool)
}

/// A second pool on `queue.db` for the worker's fetches, locks, acks and heartbeats, with
/// `synchronous = NORMAL`: apalis commits them job by job, and with an fsync each they
/// starved ingest's group commits (seconds of latency under load). Losing one of them in a
/// power cut only means a job runs again, and storage is exactly-once by event id.
pub async fn open_sqlite_for_worker(path: &std::path::Path) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open queue {}: {e}", path.display()))
}

/// Gives the planner statistics before any connection prepares apalis' statements.
///
/// A statement keeps the plan it was prepared with, and a fresh `queue.db` has no
/// statistics: the worker's connection then planned the batch ack (`UPDATE Jobs ... FROM
/// json_each(?) ... AND lock_by = ?`) as a walk over every job it ever locked, re-parsing
/// the JSON list for each — one core busy in SQLite's JSON code and ingest stalled behind
/// the write lock. See [`pin_lock_statistics`].
async fn seed_statistics(pool: &SqlitePool) {
    let result = async {
        // sqlx's own transaction: rolled back if anything fails or the future is dropped,
        // so no pooled connection is ever left holding the write lock.
        let mut tx = pool.begin().await?;
        sea_orm::sqlx::query("ANALYZE sqlite_schema")
            .execute(&mut *tx)
            .await?;
        pin_lock_statistics(&mut tx).await?;
        tx.commit().await?;
        sea_orm::sqlx::query("ANALYZE sqlite_schema")
            .execute(pool)
            .await
            .map(|_| ())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "seeding the queue's planner statistics failed");
    }
}

/// Refreshes the planner statistics of `queue.db` (bounded work), keeping the two numbers
/// the worker's batch acknowledgement depends on pinned (in the same transaction, so no
/// connection ever loads the sampled ones).
pub async fn refresh_statistics(pool: &SqlitePool) {
    let result = async {
        let mut conn = pool.acquire().await?;
        // A nearly empty table would replace the seeded numbers with zeros.
        let rows: i64 =
            sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM Jobs LIMIT 1000)")
                .fetch_one(&mut *conn)
                .await?;
        if rows < 1000 {
            return Ok(());
        }
        drop(conn);
        let mut tx = pool.begin().await?;
        sea_orm::sqlx::query("PRAGMA analysis_limit = 400")
            .execute(&mut *tx)
            .await?;
        sea_orm::sqlx::query("ANALYZE Jobs")
            .execute(&mut *tx)
            .await?;
        pin_lock_statistics(&mut tx).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "analyzing the queue failed");
    }
}

/// Writes what is true of `Jobs` at any size into the planner statistics: `id` is unique,
/// `lock_by` is shared by many jobs. Sampled statistics of a backlog that nobody had locked
/// yet (every `lock_by` NULL, as after `faultline web` took a load alone) said `lock_by = ?`
/// picks a few hundred rows; the batch ack was then planned over `LIdx` times the JSON
/// list, and a worker draining 10,000 jobs spent 7 s per acknowledgement.
async fn pin_lock_statistics(
    conn: &mut sea_orm::sqlx::Transaction<'_, sea_orm::sqlx::Sqlite>,
) -> Result<(), sea_orm::sqlx::Error> {
    sea_orm::sqlx::query(
        "DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs' AND idx IN ('sqlite_autoindex_Jobs_1', 'LIdx')",
    )
    .execute(&mut **conn)
    .await?;
    sea_orm::sqlx::query(
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES \
         ('Jobs', 'sqlite_autoindex_Jobs_1', '100000 1'), ('Jobs', 'LIdx', '100000 20000')",
    )
    .execute(&mut **conn)
    .await?;
    Ok(())
}

async fn committer(backend: Backend, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let jobs: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|p| std::mem::take(&mut p.job))
            .collect();
        let started = std::time::Instant::now();
        let count = jobs.len();
        let result = write_batch(&backend, jobs).await;
        tracing::debug!(
            jobs = count,
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
}

async fn write_batch(backend: &Backend, jobs: Vec<Vec<u8>>) -> Result<(), String> {
    match backend {
        Backend::Sqlite(pool) => {
            // One multi-row INSERT instead of apalis' statement per job: every statement is
            // a round trip to sqlx's SQLite thread, and those hops cost more than the insert.
            // The columns are apalis-sqlite 1.0's Jobs table; the apalis worker reads these
            // rows like its own (every end-to-end test depends on it).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
            for chunk in jobs.chunks(500) {
                let mut insert = sea_orm::sqlx::QueryBuilder::<sea_orm::sqlx::Sqlite>::new(
                    "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority) ",
                );
                insert.push_values(chunk, |mut row, job| {
                    row.push_bind(job.as_slice())
                        .push_bind(ulid::Ulid::generate().to_string())
                        .push_bind(EVENT_QUEUE)
                        .push_bind("Pending")
                        .push_bind(0i64)
                        .push_bind(MAX_ATTEMPTS as i64)
                        .push_bind(now)
                        .push_bind(0i64);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())
        }
        Backend::Redis(conn) => {
            let tasks: Vec<_> = jobs
                .into_iter()
                .map(|job| TaskBuilder::new(job).max_attempts(MAX_ATTEMPTS).build())
                .collect();
            let mut conn = conn.clone();
            apalis_redis::queries::push_tasks(&mut conn, &redis_config(), &tasks)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// The apalis-redis settings shared by producers and consumers.
pub fn redis_config() -> apalis_redis::Config {
    apalis_redis::Config::default().queue(EVENT_QUEUE)
}

/// The apalis-sqlite settings shared by producers and consumers.
pub fn sqlite_config() -> apalis_sqlite::Config {
    apalis_sqlite::Config::default().queue(EVENT_QUEUE)
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
        let by_status = sea_orm::sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM Jobs WHERE job_type = ?1 GROUP BY status ORDER BY status",
        )
        .bind(EVENT_QUEUE)
        .fetch_all(pool)
        .await?;
        let dead = sea_orm::sqlx::query_as::<_, (String, i64, Option<String>)>(
            "SELECT id, attempts, last_result FROM Jobs WHERE job_type = ?1 \
             AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) \
             ORDER BY done_at DESC LIMIT ?2",
        )
        .bind(EVENT_QUEUE)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        Ok(QueueReport { by_status, dead })
    }

    /// Puts every dead job back in the queue with fresh attempts; returns how many.
    pub async fn retry_dead(&self) -> anyhow::Result<u64> {
        let Backend::Sqlite(pool) = &self.backend else {
            anyhow::bail!("retrying dead jobs is available for the embedded SQLite queue");
        };
        let res = sea_orm::sqlx::query(
            "UPDATE Jobs SET status = 'Pending', attempts = 0, lock_by = NULL, lock_at = NULL, done_at = NULL \
             WHERE job_type = ?1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
        )
        .bind(EVENT_QUEUE)
        .execute(pool)
        .await?;
        Ok(res.rows_affected())
    }
}

async fn depth_gauge(backend: Backend, depth: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        if n.is_multiple_of(5)
            && let Backend::Sqlite(pool) = &backend
        {
            // Finished jobs are kept a minute (for inspection), then removed so the queue
            // file does not grow with every event ever received. Dead jobs stay.
            let removed = sea_orm::sqlx::query(
                "DELETE FROM Jobs WHERE status = 'Done' AND done_at < strftime('%s', 'now') - 60",
            )
            .execute(pool)
            .await;
            if let Err(e) = removed {
                tracing::warn!(error = %e, "removing finished jobs failed");
            }
            refresh_statistics(pool).await;
        }
        let measured = match &backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND status IN ('Pending', 'Queued', 'Running')",
            )
            .bind(EVENT_QUEUE)
            .fetch_one(pool)
            .await
            .ok(),
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
        // `run_at` is when the job became runnable, in seconds.
        Backend::Sqlite(pool) => sea_orm::sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(run_at) FROM Jobs WHERE job_type = ?1 AND status = 'Pending'",
        )
        .bind(EVENT_QUEUE)
        .fetch_one(pool)
        .await
        .ok()
        .map(|oldest| oldest.map_or(0.0, |s| ((now_ms - s * 1000).max(0)) as f64 / 1000.0)),
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
