//! The embedded queue: `queue.db`, a SQLite file of its own, driven by apalis.
//!
//! Why our own storage and not apalis-sqlite: apalis-sqlite keeps every job in one wide
//! table (`Jobs`, about nine indexes) and writes each job five times — insert, lock,
//! "running", acknowledgement, cleanup — each rewriting the row with its payload. On two
//! cores that capped the all-in-one server at ~2,400 fully processed events/s, with the
//! worker's writes holding the file lock that ingest's group commits wait for.
//!
//! Here a job is a small row in `queue_jobs` (id, times, attempts, lock) plus its payload in
//! `queue_payloads`, written once by the group commit and deleted once by the batch
//! acknowledgement. Locking a batch rewrites only the small rows (a few pages for 512
//! jobs), never the payloads. apalis still runs the worker: this type implements
//! apalis-core's [`Persistence`] (register, heartbeat, fetch, acknowledge, re-enqueue),
//! and [`SqliteQueue`] is the [`Backend`] an apalis `WorkerBuilder` consumes.
//!
//! Delivery is at-least-once: a job leaves the queue only after the worker's handler
//! returned `Ok`, which happens after the transaction that stored its event committed.

use std::task::{Context, Poll};
use std::time::Duration;

use apalis_codec::json::JsonCodec;
use apalis_core::backend::codec::Codec;
use apalis_core::backend::persistence::{Persisted, Persistence, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::status::Status;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use faultline_worker::budget::MemoryBudget;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{self, QueryBuilder, Sqlite};
use serde_json::Value;

use super::MAX_ATTEMPTS;

/// The schema of `queue.db`. Ids come from AUTOINCREMENT so an id is never used twice: a
/// late acknowledgement from a worker that lost its lock can never delete a newer job.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        enqueued_at INTEGER NOT NULL,         -- Unix ms, for the age of the oldest job
        run_at INTEGER NOT NULL DEFAULT 0,    -- Unix ms; later than now while a retry waits
        attempts INTEGER NOT NULL DEFAULT 0,  -- runs that ended in an error (or a lost worker)
        lock_by TEXT,                         -- the worker run holding it; NULL while it waits
        lock_at INTEGER,
        last_error TEXT
    )",
    "CREATE TABLE IF NOT EXISTS queue_payloads (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)",
    // Waiting jobs in arrival order, without walking the ones workers hold.
    "CREATE INDEX IF NOT EXISTS queue_jobs_waiting ON queue_jobs (id) WHERE lock_by IS NULL",
    // A worker's jobs, for releasing them on stop and re-enqueueing them when it dies.
    "CREATE INDEX IF NOT EXISTS queue_jobs_locked ON queue_jobs (lock_by) WHERE lock_by IS NOT NULL",
    // Jobs that failed every attempt: kept for operators (`faultline jobs`).
    "CREATE TABLE IF NOT EXISTS queue_dead (
        id INTEGER PRIMARY KEY,
        payload BLOB NOT NULL,
        enqueued_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        died_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS queue_workers (
        name TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    )",
];

/// Settings of a consumer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs locked per fetch.
    pub batch_size: usize,
    /// How often a worker records that it is alive.
    pub heartbeat: Duration,
    /// Heartbeats a worker may miss before its jobs go back to the queue.
    pub missed_heartbeats: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 512,
            heartbeat: Duration::from_secs(3),
            missed_heartbeats: 2,
        }
    }
}

impl Settings {
    fn orphaned_after_ms(&self) -> i64 {
        (self.heartbeat.as_millis() as i64) * (i64::from(self.missed_heartbeats) + 1)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Opens `queue.db` for producers: WAL and `synchronous = FULL`, so a committed group of
/// jobs survives a power cut (the group commit pays the fsync once per batch).
///
/// Producers never checkpoint inside a commit (`wal_autocheckpoint = 0`): SQLite's automatic
/// checkpoint runs in the connection whose commit crossed 1,000 WAL pages, so one group
/// commit in a few took 30 ms copying 4 MB into the database file while every request waited
/// for it. [`checkpointer`] does that work beside the commits instead.
pub async fn open(path: &std::path::Path) -> anyhow::Result<SqlitePool> {
    let opts = connect_options(path)
        .synchronous(SqliteSynchronous::Full)
        .pragma("wal_autocheckpoint", "0")
        // A restarted WAL is cut back to this size, so it stays a file that commits
        // overwrite rather than extend.
        .pragma("journal_size_limit", WAL_RESTART_BYTES.to_string());
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        // Idle connections close within 30 s, and their SQLite memory with them.
        .idle_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open queue {}: {e}", path.display()))?;
    setup(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare queue {}: {e}", path.display()))?;
    Ok(pool)
}

/// The background checkpointer and its restart threshold are shared with the main
/// database (`faultline_core::db`), whose commits skip checkpoints for the same reason.
pub use faultline_core::db::{WAL_RESTART_BYTES, checkpointer};

/// Opens `queue.db` for a worker: `synchronous = NORMAL`. Losing a lock or an
/// acknowledgement in a power cut only means a job runs again, and storage is
/// exactly-once by event id; an fsync per acknowledgement would compete with ingest's.
pub async fn open_for_worker(path: &std::path::Path) -> anyhow::Result<SqlitePool> {
    let opts = connect_options(path).synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        // Idle connections close within 30 s, and their SQLite memory with them.
        .idle_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open queue {}: {e}", path.display()))?;
    setup(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare queue {}: {e}", path.display()))?;
    Ok(pool)
}

/// Pages of 8 KiB for a new `queue.db` (an existing file keeps its own): a job is ~2 KB, and
/// every WAL frame costs two writes and the checkpoint two more, so larger pages cut the
/// commit's CPU per job by ~18 % at 30 jobs a commit. A one-job commit rewrites whole pages,
/// so it costs ~25 % more (183 vs 145 µs); 16 KiB pages cost single-job commits 58 % more
/// and gained nothing over 8 KiB (measured with rusqlite on this machine, BENCHMARKS.md).
const PAGE_SIZE: u32 = 8192;

fn connect_options(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .page_size(PAGE_SIZE)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        // The lock and ack statements' `IN` lists have a text per job count: keep few.
        .statement_cache_capacity(16)
        // Process-wide; a queue-only process sets it too.
        .pragma(
            "soft_heap_limit",
            faultline_core::db::SQLITE_SOFT_HEAP_LIMIT.to_string(),
        )
}

/// Creates the tables (idempotent; web and worker processes may start together) and
/// moves jobs left by the apalis-sqlite storage of earlier versions into them.
pub async fn setup(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for statement in SCHEMA {
        sqlx::query(*statement).execute(&mut *tx).await?;
    }
    adopt_legacy_jobs(&mut tx).await?;
    tx.commit().await
}

/// A row of apalis-sqlite's `Jobs`: payload, status, attempts, max attempts, run at, last result.
type LegacyJob = (Vec<u8>, Option<String>, i64, i64, i64, Option<String>);

/// Earlier versions kept jobs in apalis-sqlite's `Jobs` table. Unfinished ones move into
/// the queue, dead ones into `queue_dead`; then the old tables go. Nothing accepted is lost
/// by an upgrade.
async fn adopt_legacy_jobs(tx: &mut sqlx::Transaction<'_, Sqlite>) -> Result<(), sqlx::Error> {
    let legacy: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'Jobs'",
    )
    .fetch_one(&mut **tx)
    .await?;
    if legacy == 0 {
        return Ok(());
    }
    let now = now_ms();
    // apalis kept `run_at` in seconds; `Done` jobs were finished.
    let rows: Vec<LegacyJob> = sqlx::query_as(
        "SELECT job, status, COALESCE(attempts, 0), COALESCE(max_attempts, 5), \
         COALESCE(run_at, 0), last_result FROM Jobs WHERE status IS NOT 'Done' ORDER BY ROWID",
    )
    .fetch_all(&mut **tx)
    .await?;
    let (mut moved, mut dead) = (0u64, 0u64);
    for (payload, status, attempts, max_attempts, run_at, last_error) in rows {
        let is_dead = status.as_deref() == Some("Killed")
            || (status.as_deref() == Some("Failed") && attempts >= max_attempts);
        let enqueued_at = run_at.saturating_mul(1000);
        if is_dead {
            sqlx::query(
                "INSERT INTO queue_dead (payload, enqueued_at, attempts, last_error, died_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(payload)
            .bind(enqueued_at)
            .bind(attempts)
            .bind(last_error)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            dead += 1;
        } else {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO queue_jobs (enqueued_at, attempts) VALUES (?1, ?2) RETURNING id",
            )
            .bind(enqueued_at)
            .bind(attempts.min(MAX_ATTEMPTS as i64 - 1))
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query("INSERT INTO queue_payloads (id, payload) VALUES (?1, ?2)")
                .bind(id)
                .bind(payload)
                .execute(&mut **tx)
                .await?;
            moved += 1;
        }
    }
    for drop in [
        "DROP TABLE IF EXISTS Jobs",
        "DROP TABLE IF EXISTS Workers",
        "DROP TABLE IF EXISTS _sqlx_migrations",
    ] {
        sqlx::query(drop).execute(&mut **tx).await?;
    }
    tracing::info!(
        moved,
        dead,
        "moved jobs from the earlier apalis-sqlite queue"
    );
    Ok(())
}

/// Makes a group of jobs durable in one transaction: two multi-row INSERTs (small rows,
/// then payloads). Every statement is a round trip to sqlx's SQLite thread, so the rows go
/// in chunks rather than one statement per job.
pub async fn insert_batch(pool: &SqlitePool, payloads: &[Vec<u8>]) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // 500 rows x 2 parameters stays far below SQLite's parameter limit.
    for chunk in payloads.chunks(500) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO queue_jobs (enqueued_at) ");
        insert.push_values(chunk, |mut row, _| {
            row.push_bind(now);
        });
        insert.push(" RETURNING id");
        let ids: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
        // RETURNING gives the ids in no promised order; any pairing is right, since all
        // rows of the chunk are alike.
        let mut payload_insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO queue_payloads (id, payload) ");
        payload_insert.push_values(ids.iter().zip(chunk), |mut row, (id, payload)| {
            row.push_bind(*id).push_bind(payload.as_slice());
        });
        payload_insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The group commit's own connection to `queue.db`: plain synchronous SQLite on the
/// committer's thread, with its two inserts prepared once.
///
/// Why not the sqlx pool: through sqlx every statement of a commit was a hand-off to sqlx's
/// connection thread and back (each a wake-up on a machine whose two cores the request
/// handlers keep busy), every payload was copied into an argument list, and every batch
/// size made a new multi-row statement to parse. Group commits held the queue's write lock
/// ~2.8 ms for 70 jobs at 24,000 requests/s; see BENCHMARKS.md for what this one takes.
pub struct Writer {
    conn: rusqlite::Connection,
}

impl Writer {
    /// Opens `queue.db` (created and set up by [`open`]) with the producer settings: WAL,
    /// `synchronous = FULL`, no checkpoints inside commits.
    pub fn open(path: &std::path::Path) -> rusqlite::Result<Writer> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.query_row(
            &format!(
                "PRAGMA soft_heap_limit = {}",
                faultline_core::db::SQLITE_SOFT_HEAP_LIMIT
            ),
            [],
            |_| Ok(()),
        )?;
        conn.query_row(
            &format!("PRAGMA journal_size_limit = {WAL_RESTART_BYTES}"),
            [],
            |_| Ok(()),
        )?;
        Ok(Writer { conn })
    }

    /// Makes a group of jobs durable in one transaction.
    pub fn insert_batch<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> rusqlite::Result<()> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut job = tx.prepare_cached("INSERT INTO queue_jobs (enqueued_at) VALUES (?1)")?;
            let mut payload =
                tx.prepare_cached("INSERT INTO queue_payloads (id, payload) VALUES (?1, ?2)")?;
            for bytes in payloads {
                let id = job.insert([now])?;
                payload.execute(rusqlite::params![id, bytes])?;
            }
        }
        tx.commit()
    }
}

/// Jobs waiting or held by a worker.
pub async fn depth(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM queue_jobs")
        .fetch_one(pool)
        .await
}

/// When the oldest job still in the queue arrived (Unix ms).
pub async fn oldest_enqueued_at(pool: &SqlitePool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT enqueued_at FROM queue_jobs ORDER BY id LIMIT 1")
        .fetch_optional(pool)
        .await
}

/// Counts for operators: waiting, held by workers, waiting for a retry, dead.
pub async fn counts(pool: &SqlitePool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let now = now_ms();
    let (waiting, running, retrying): (i64, i64, i64) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(lock_by IS NULL AND run_at <= ?1), 0), \
           COALESCE(SUM(lock_by IS NOT NULL), 0), \
           COALESCE(SUM(lock_by IS NULL AND run_at > ?1), 0) \
         FROM queue_jobs",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_dead")
        .fetch_one(pool)
        .await?;
    Ok(vec![
        ("waiting".into(), waiting),
        ("running".into(), running),
        ("retrying".into(), retrying),
        ("dead".into(), dead),
    ])
}

/// The newest dead jobs: (id, attempts, last error).
pub async fn dead_jobs(
    pool: &SqlitePool,
    limit: i64,
) -> Result<Vec<(String, i64, Option<String>)>, sqlx::Error> {
    let rows: Vec<(i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, attempts, last_error FROM queue_dead ORDER BY died_at DESC, id DESC LIMIT ?1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, attempts, error)| (id.to_string(), attempts, error))
        .collect())
}

/// Puts every dead job back in the queue with fresh attempts; returns how many.
pub async fn retry_dead(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let dead: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT id, payload FROM queue_dead")
        .fetch_all(&mut *tx)
        .await?;
    let now = now_ms();
    for (id, payload) in &dead {
        let new_id: i64 =
            sqlx::query_scalar("INSERT INTO queue_jobs (enqueued_at) VALUES (?1) RETURNING id")
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("INSERT INTO queue_payloads (id, payload) VALUES (?1, ?2)")
            .bind(new_id)
            .bind(payload.as_slice())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM queue_dead WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(dead.len() as u64)
}

/// Puts the jobs a worker run holds back in the queue (a graceful stop): not counted as
/// attempts. Returns how many.
pub async fn release(pool: &SqlitePool, worker: &str) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let released =
        sqlx::query("UPDATE queue_jobs SET lock_by = NULL, lock_at = NULL WHERE lock_by = ?1")
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    sqlx::query("DELETE FROM queue_workers WHERE name = ?1")
        .bind(worker)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(released)
}

/// Jobs held by worker runs that stopped sending heartbeats go back to the queue. Their
/// run counts as an attempt: a job that kills the process running it (a crash, the OOM
/// killer) must end in `queue_dead` rather than take every worker down in turn.
async fn requeue_orphans(
    conn: &mut sqlx::SqliteConnection,
    alive_since: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let orphans: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM queue_jobs WHERE lock_by IS NOT NULL AND lock_by NOT IN \
         (SELECT name FROM queue_workers WHERE last_seen >= ?1)",
    )
    .bind(alive_since)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM queue_workers WHERE last_seen < ?1")
        .bind(alive_since)
        .execute(&mut *conn)
        .await?;
    if orphans.is_empty() {
        return Ok(0);
    }
    for chunk in orphans.chunks(1000) {
        let mut requeue = QueryBuilder::<Sqlite>::new(
            "UPDATE queue_jobs SET lock_by = NULL, lock_at = NULL, attempts = attempts + 1, \
             last_error = COALESCE(last_error, 'the worker running it stopped without finishing it') \
             WHERE id IN ",
        );
        requeue.push_tuples(chunk, |mut t, id| {
            t.push_bind(*id);
        });
        requeue.build().execute(&mut *conn).await?;
    }
    let exhausted: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM queue_jobs WHERE lock_by IS NULL AND attempts >= ?1")
            .bind(MAX_ATTEMPTS as i64)
            .fetch_all(&mut *conn)
            .await?;
    bury(conn, &exhausted, now).await?;
    tracing::warn!(
        jobs = orphans.len(),
        dead = exhausted.len(),
        "re-enqueued jobs of a worker that stopped sending heartbeats"
    );
    Ok(orphans.len() as u64)
}

/// Moves jobs to `queue_dead`, with the attempts and last error recorded on them.
async fn bury(conn: &mut sqlx::SqliteConnection, ids: &[i64], now: i64) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(1000) {
        let mut copy = QueryBuilder::<Sqlite>::new(
            "INSERT INTO queue_dead (id, payload, enqueued_at, attempts, last_error, died_at) \
             SELECT j.id, p.payload, j.enqueued_at, j.attempts, j.last_error, ",
        );
        copy.push_bind(now)
            .push(" FROM queue_jobs j JOIN queue_payloads p ON p.id = j.id WHERE j.id IN ");
        copy.push_tuples(chunk, |mut t, id| {
            t.push_bind(*id);
        });
        copy.build().execute(&mut *conn).await?;
        delete_jobs(conn, chunk).await?;
    }
    Ok(())
}

/// Removes jobs (their rows and payloads).
async fn delete_jobs(conn: &mut sqlx::SqliteConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(2000) {
        for table in ["queue_jobs", "queue_payloads"] {
            let mut delete =
                QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE id IN "));
            delete.push_tuples(chunk, |mut t, id| {
                t.push_bind(*id);
            });
            delete.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// The consumer side: what apalis' [`Persisted`] drives.
#[derive(Debug, Clone)]
pub struct Jobs {
    pool: SqlitePool,
    settings: Settings,
}

impl Jobs {
    pub fn new(pool: SqlitePool, settings: Settings) -> Jobs {
        Jobs { pool, settings }
    }
}

impl Persistence for Jobs {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = sqlx::Error;

    async fn register(&mut self, worker: &WorkerContext) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO queue_workers (name, started_at, last_seen) VALUES (?1, ?2, ?2) \
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(worker.name())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        requeue_orphans(&mut tx, now - self.settings.orphaned_after_ms(), now).await?;
        tx.commit().await
    }

    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), sqlx::Error> {
        self.register(worker).await
    }

    async fn fetch_next(
        &mut self,
        worker: &WorkerContext,
    ) -> Result<Vec<Task<Vec<u8>>>, sqlx::Error> {
        let now = now_ms();
        // IMMEDIATE: the lock is taken before the read, so two workers never pick the same
        // jobs and the read never has to be upgraded to a write (which SQLite refuses at
        // once, whatever the busy timeout, when another writer committed in between).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT j.id, j.attempts, p.payload FROM queue_jobs j JOIN queue_payloads p ON p.id = j.id \
             WHERE j.lock_by IS NULL AND j.run_at <= ?1 ORDER BY j.id LIMIT ?2",
        )
        .bind(now)
        .bind(self.settings.batch_size as i64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut lock = QueryBuilder::<Sqlite>::new("UPDATE queue_jobs SET lock_by = ");
        lock.push_bind(worker.name())
            .push(", lock_at = ")
            .push_bind(now)
            .push(" WHERE id IN ");
        lock.push_tuples(&rows, |mut t, (id, _, _)| {
            t.push_bind(*id);
        });
        lock.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(id, attempts, payload)| {
                TaskBuilder::new(payload)
                    .task_id(TaskId::from_int(id as u64))
                    .attempt(attempts.max(0) as usize)
                    .max_attempts(MAX_ATTEMPTS)
                    .build()
            })
            .collect())
    }

    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<Task<Vec<u8>>>,
        worker: &WorkerContext,
    ) -> Result<u64, sqlx::Error> {
        let ids: Vec<i64> = tasks.iter().filter_map(task_id).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut unlock = QueryBuilder::<Sqlite>::new(
            "UPDATE queue_jobs SET lock_by = NULL, lock_at = NULL WHERE lock_by = ",
        );
        unlock.push_bind(worker.name()).push(" AND id IN ");
        unlock.push_tuples(&ids, |mut t, id| {
            t.push_bind(*id);
        });
        Ok(unlock.build().execute(&self.pool).await?.rows_affected())
    }

    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), sqlx::Error> {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for event in events {
            if let TaskEvent::Complete(result) = event {
                let Some(id) = id_of(&result.task_id) else {
                    continue;
                };
                match (result.status, result.result) {
                    (Status::Done, _) => done.push(id),
                    (status, outcome) => {
                        let error = outcome.err().unwrap_or_else(|| status.to_string());
                        failed.push((id, result.attempt, status, error));
                    }
                }
            }
        }
        if done.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        delete_jobs(&mut tx, &done).await?;
        for (id, attempt, status, error) in failed {
            // A retry request (Pending) is not a failure; a kill is final.
            let attempts = if status == Status::Pending {
                attempt.saturating_sub(1)
            } else {
                attempt
            } as i64;
            // Back off 0.25 s, 1 s, 2.25 s, 4 s so a passing outage (the database
            // restarting) does not use up every attempt at once.
            let delay = 250 * attempts * attempts;
            let updated = sqlx::query(
                "UPDATE queue_jobs SET lock_by = NULL, lock_at = NULL, attempts = ?1, \
                 last_error = ?2, run_at = ?3 WHERE id = ?4 AND lock_by = ?5",
            )
            .bind(attempts)
            .bind(&error)
            .bind(now + delay)
            .bind(id)
            .bind(worker.name())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 && (status == Status::Killed || attempts >= MAX_ATTEMPTS as i64) {
                bury(&mut tx, &[id], now).await?;
                tracing::warn!(job = id, attempts, error = %error, "job failed every attempt; kept in queue_dead");
            }
        }
        tx.commit().await
    }

    async fn push_tasks(&mut self, tasks: Vec<Task<Vec<u8>>>) -> Result<(), sqlx::Error> {
        let payloads: Vec<Vec<u8>> = tasks.into_iter().map(|t| t.args).collect();
        insert_batch(&self.pool, &payloads).await
    }
}

fn id_of(id: &TaskId) -> Option<i64> {
    match id {
        TaskId::Int(n) => i64::try_from(*n).ok(),
        other => other.to_string().parse().ok(),
    }
}

fn task_id(task: &Task<Vec<u8>>) -> Option<i64> {
    task.task_id().and_then(id_of)
}

/// How jobs in `queue.db` are read: ingest writes frames (`EventJob::decode`); JSON jobs
/// of earlier versions still decode; bytes that are neither become a job the pipeline
/// refuses, so they go dead instead of stopping the worker.
#[derive(Debug, Clone, Default)]
pub struct JobCodec;

impl Codec<faultline_core::jobs::EventJob> for JobCodec {
    type Error = faultline_core::jobs::JobError;
    type Compact = Vec<u8>;

    fn encode(&self, job: &faultline_core::jobs::EventJob) -> Result<Vec<u8>, Self::Error> {
        // Only jobs pushed through apalis itself come here (ingest writes its own frames).
        job.encode()
    }

    fn decode(&self, bytes: &Vec<u8>) -> Result<faultline_core::jobs::EventJob, Self::Error> {
        // Never an error here: see `EventJob::undecodable`.
        Ok(faultline_core::jobs::EventJob::decode(bytes)
            .unwrap_or_else(|e| faultline_core::jobs::EventJob::undecodable(&e)))
    }
}

/// The apalis backend over `queue.db`.
#[derive(Debug)]
pub struct SqliteQueue {
    jobs: Persisted<Jobs>,
    settings: Settings,
    codec: JobCodec,
    /// The pipeline's memory budget and the room a fetch waits for (see `with_budget`).
    gate: Option<(MemoryBudget, usize)>,
}

impl SqliteQueue {
    pub fn new(pool: SqlitePool, settings: Settings) -> SqliteQueue {
        SqliteQueue {
            jobs: Persisted::new(Jobs::new(pool, settings.clone())),
            settings,
            codec: JobCodec,
            gate: None,
        }
    }

    /// Takes jobs only while `budget` has at least `room` bytes free (at most half the
    /// budget is asked for). Without it apalis fetches as long as its concurrency allows,
    /// and every fetched job waiting for the pipeline's budget holds its payload outside it.
    pub fn with_budget(mut self, budget: MemoryBudget, room: usize) -> SqliteQueue {
        self.gate = Some((budget, room));
        self
    }
}

impl Backend for SqliteQueue {
    type Task = Task<Vec<u8>>;
    type Error = sqlx::Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.jobs.poll_ready(cx, worker, self.settings.heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        if let Some((budget, room)) = &self.gate
            && budget.poll_room(cx, *room).is_pending()
        {
            // Woken when the pipeline gives bytes back.
            return Poll::Pending;
        }
        self.jobs.poll_next(cx, worker)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.jobs.poll_close(cx, worker)
    }
}

impl BackendConfig for SqliteQueue {
    type Args = faultline_core::jobs::EventJob;
    type Id = u64;
    type Kind = apalis_core::backend::finalize::Durable;
    type Config = Settings;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Settings {
        &self.settings
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        // Completions are acknowledged (in batches, by `handle_events`); no per-task
        // "running" write: jobs are locked when fetched.
        self.jobs
            .layer(JsonCodec::default(), self.settings.batch_size)
            .persist_results(true)
            .lock_tasks(false)
    }
}

impl WireFormatBackend for SqliteQueue {
    type Codec = JobCodec;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}
