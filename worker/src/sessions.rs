//! Release health in the worker: session jobs counted per (project, release, environment,
//! hour), in memory per batch and written once per batch, in one transaction.
//!
//! Counting rules (PROTOCOL.md §9.1.4):
//! - An individual session (`session` items, keyed by project and `sid`) counts once, in
//!   the hour it started, however many updates it sends: its state is the worst any
//!   update reported ([`Health`]). `session_states` keeps each session's counted state,
//!   so a later, worse update moves the count (healthy −1, crashed +1) instead of adding
//!   one. Worst-wins makes updates order-free and idempotent: a redelivered job changes
//!   nothing, so individual updates need no deduplication.
//! - A session counts from its first update that arrives, `init` or not. Sentry counts
//!   only `init: true` updates in the total; when an `init` update is lost (dropped for a
//!   bad field, or its envelope never arrived) Sentry shows errored sessions that are in
//!   no total, and here the total stays the sum of its states.
//! - Aggregates (`sessions` items) add up. Adding is not idempotent, so every aggregate
//!   job's id is recorded (`session_aggregate_jobs`) in the same transaction and a
//!   redelivered job is skipped.
//! - Users: each distinct `did` per (project, release, environment, hour) is a row of
//!   `session_users` with the worst state of its sessions; the counter columns
//!   `users_<state>` follow it exactly like sessions. Exact rather than HyperLogLog: a
//!   sketch cannot move a user from healthy to crashed, and a row per user and hour is
//!   cheap at the scale one server ingests. The rows stay 91 days (they are what
//!   `count_unique(user)` over a range counts, and Sentry's longest period is 90 days);
//!   session states are pruned once no update can arrive for them (started more than 5
//!   days ago).
//!
//! Concurrency: the state rows are claimed with `INSERT … ON CONFLICT DO NOTHING
//! RETURNING` (a session this batch inserted is new, counted once) and existing ones are
//! read `FOR UPDATE` on PostgreSQL, so two workers never both count one session or both
//! move it; SQLite's single writer serializes batches anyway. Keys are written in sorted
//! order so that two workers lock rows in the same order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use faultline_core::jobs::{EventJob, PayloadKind};
use faultline_core::metrics;
use faultline_core::protocol::session::{self, Health, SessionAggregates, SessionUpdate};
use faultline_core::sql::{Col, bulk_insert, in_list, stmt};
use sea_orm::sea_query::ArrayType;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
    Value,
};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::PipelineError;

/// The most jobs counted in one transaction (a job carries up to 100 items).
const MAX_JOBS: usize = 4096;
/// Largest session job payload (ingest caps envelopes long before this).
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
const HOUR_MS: i64 = 3_600_000;
/// Rows per multi-row statement on SQLite (at most 10 columns: far below its 32,766
/// variables).
const SQLITE_CHUNK: usize = 1000;

/// The start of the hour `ms` falls in.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// One session job, read: its id and project, and the items it carries.
#[derive(Debug, Default)]
pub struct SessionJob {
    pub job_id: String,
    pub project_id: i64,
    pub updates: Vec<SessionUpdate>,
    pub aggregates: Vec<SessionAggregates>,
}

/// Reads a job of kind `Session` or `Sessions`. Ingest checked every item; one that does
/// not read now (it cannot happen unless the job was damaged) is skipped, not fatal.
pub fn read_job(job: &EventJob) -> Result<SessionJob, PipelineError> {
    let raw = job
        .payload_bytes(MAX_PAYLOAD)
        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&raw)
        .map_err(|e| PipelineError::Invalid(format!("session job is not a JSON array: {e}")))?;
    // The same correction ingest applied when it checked the items.
    let drift_ms = session::clock_drift_ms(
        job.sent_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis()),
        job.received_ms,
    );
    let mut out = SessionJob {
        job_id: job.event_id.clone(),
        project_id: job.project_id,
        ..SessionJob::default()
    };
    for item in items {
        let bytes = item.get().as_bytes();
        match job.kind {
            PayloadKind::Session => {
                if let Ok(u) = session::parse_update_drifted(bytes, job.received_ms, drift_ms) {
                    out.updates.push(u);
                }
            }
            PayloadKind::Sessions => {
                if let Ok(a) = session::parse_aggregates_drifted(bytes, job.received_ms, drift_ms) {
                    out.aggregates.push(a);
                }
            }
            other => {
                return Err(PipelineError::Invalid(format!(
                    "not a session job: {other:?}"
                )));
            }
        }
    }
    Ok(out)
}

struct Submitted {
    job: EventJob,
    done: oneshot::Sender<Result<(), PipelineError>>,
}

/// Handle to the running session batcher; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    tx: mpsc::Sender<Submitted>,
}

impl Sessions {
    /// Starts the batcher on the current Tokio runtime.
    pub fn start(db: DatabaseConnection) -> Sessions {
        let (tx, rx) = mpsc::channel(MAX_JOBS * 2);
        tokio::spawn(batcher(db, rx));
        Sessions { tx }
    }

    /// Counts one job; returns once its counts are committed (or it failed).
    pub async fn process(&self, job: EventJob) -> Result<(), PipelineError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submitted { job, done })
            .await
            .map_err(|_| PipelineError::Closed)?;
        wait.await.map_err(|_| PipelineError::Closed)?
    }
}

/// A group commit: whatever jobs wait are read and counted in one transaction; jobs
/// arriving meanwhile wait for the next one.
async fn batcher(db: DatabaseConnection, mut rx: mpsc::Receiver<Submitted>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let (jobs, waiters): (Vec<EventJob>, Vec<_>) =
            batch.into_iter().map(|s| (s.job, s.done)).unzip();
        // Reading JSON is CPU work: off the runtime's threads.
        let read = tokio::task::spawn_blocking(move || jobs.iter().map(read_job).collect())
            .await
            .unwrap_or_else(|_| Vec::new());
        let mut ok_jobs = Vec::new();
        let mut ok_waiters = Vec::new();
        let mut read: Vec<Result<SessionJob, PipelineError>> = read;
        read.resize_with(waiters.len(), || {
            Err(PipelineError::Storage("reading the job panicked".into()))
        });
        for (r, w) in read.into_iter().zip(waiters) {
            match r {
                Ok(j) => {
                    ok_jobs.push(j);
                    ok_waiters.push(w);
                }
                Err(e) => {
                    metrics::get().jobs_failed.inc();
                    let _ = w.send(Err(e));
                }
            }
        }
        if ok_jobs.is_empty() {
            continue;
        }
        match store_batch(&db, &ok_jobs).await {
            Ok(counted) => {
                metrics::get().sessions_counted.inc_by(counted);
                for w in ok_waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) if ok_jobs.len() > 1 => {
                tracing::warn!(error = %e, jobs = ok_jobs.len(), "session batch failed; counting its jobs one by one");
                for (j, w) in ok_jobs.iter().zip(ok_waiters) {
                    let r = store_batch(&db, std::slice::from_ref(j))
                        .await
                        .map(|n| {
                            metrics::get().sessions_counted.inc_by(n);
                        })
                        .map_err(|e| {
                            metrics::get().jobs_failed.inc();
                            PipelineError::Storage(e.to_string())
                        });
                    let _ = w.send(r);
                }
            }
            Err(e) => {
                metrics::get().jobs_failed.inc();
                for w in ok_waiters {
                    let _ = w.send(Err(PipelineError::Storage(e.to_string())));
                }
            }
        }
        prune_now_and_then(&db).await;
    }
}

/// (project, release, environment, hour).
type CountKey = (i64, String, String, i64);
/// Deltas of the counter columns: sessions per [`Health`], then users per [`Health`].
type Deltas = [i64; 10];

/// What one individual session amounts to within a batch.
struct SessionAgg {
    release: String,
    environment: String,
    bucket: i64,
    health: Health,
    did: Option<String>,
    /// Whether the fields above come from its `init` update (preferred).
    from_init: bool,
}

/// Counts the jobs in one transaction; returns how many updates and buckets it counted.
pub async fn store_batch(db: &DatabaseConnection, jobs: &[SessionJob]) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let txn = faultline_core::sql::begin_write(db).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut deltas: BTreeMap<CountKey, Deltas> = BTreeMap::new();
    let mut users: BTreeMap<(i64, String, String, i64, String), Health> = BTreeMap::new();
    let mut counted = 0u64;

    // Aggregates: only jobs not counted before.
    let fresh = claim_aggregate_jobs(&txn, backend, jobs, now).await?;
    for job in jobs.iter().filter(|j| fresh.contains(&j.job_id)) {
        for agg in &job.aggregates {
            let env = agg.attrs.environment.clone().unwrap_or_default();
            for b in &agg.buckets {
                counted += 1;
                let key = (
                    job.project_id,
                    agg.attrs.release.clone(),
                    env.clone(),
                    hour_of(b.started.timestamp_millis()),
                );
                let d = deltas.entry(key.clone()).or_default();
                for h in Health::ALL {
                    d[h.index()] += b.counts[h.index()] as i64;
                }
                if let (Some(did), Some(worst)) = (&b.did, b.worst()) {
                    let u = users
                        .entry((key.0, key.1, key.2, key.3, did.clone()))
                        .or_insert(worst);
                    *u = (*u).max(worst);
                }
            }
        }
    }

    // Individual sessions: the worst state per session within the batch.
    let mut sessions: BTreeMap<(i64, String), SessionAgg> = BTreeMap::new();
    for job in jobs {
        for u in &job.updates {
            counted += 1;
            let agg = sessions
                .entry((job.project_id, u.sid.clone()))
                .or_insert_with(|| SessionAgg {
                    release: u.attrs.release.clone(),
                    environment: u.attrs.environment.clone().unwrap_or_default(),
                    bucket: hour_of(u.started.timestamp_millis()),
                    health: u.health(),
                    did: u.did.clone(),
                    from_init: u.init,
                });
            agg.health = agg.health.max(u.health());
            if u.init && !agg.from_init {
                agg.release = u.attrs.release.clone();
                agg.environment = u.attrs.environment.clone().unwrap_or_default();
                agg.bucket = hour_of(u.started.timestamp_millis());
                agg.from_init = true;
            }
            if agg.did.is_none() {
                agg.did = u.did.clone();
            }
        }
    }
    count_sessions(&txn, backend, &sessions, &mut deltas, &mut users, now).await?;
    count_users(&txn, backend, &users, &mut deltas).await?;
    write_counts(&txn, backend, &deltas).await?;
    upsert_releases(&txn, backend, &deltas, now).await?;
    txn.commit().await?;
    Ok(counted)
}

/// Records the ids of the batch's aggregate jobs; returns those not recorded before.
async fn claim_aggregate_jobs(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    jobs: &[SessionJob],
    now: i64,
) -> Result<std::collections::HashSet<String>, DbErr> {
    let mut ids: Vec<&str> = jobs
        .iter()
        .filter(|j| !j.aggregates.is_empty())
        .map(|j| j.job_id.as_str())
        .collect();
    ids.sort_unstable();
    let rows: Vec<Vec<Value>> = ids
        .into_iter()
        .map(|id| vec![id.to_string().into(), now.into()])
        .collect();
    let mut fresh = std::collections::HashSet::new();
    for s in bulk_insert(
        backend,
        "INSERT INTO session_aggregate_jobs (job_id, received)",
        &[
            Col("text", ArrayType::String),
            Col("bigint", ArrayType::BigInt),
        ],
        rows,
        "ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
        SQLITE_CHUNK,
    ) {
        for row in txn.query_all_raw(s).await? {
            fresh.insert(row.try_get::<String>("", "job_id")?);
        }
    }
    Ok(fresh)
}

/// Claims new sessions (counted at their state) and moves the count of known sessions
/// that got worse; adds each counted user's state to `users`.
async fn count_sessions(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    sessions: &BTreeMap<(i64, String), SessionAgg>,
    deltas: &mut BTreeMap<CountKey, Deltas>,
    users: &mut BTreeMap<(i64, String, String, i64, String), Health>,
    now: i64,
) -> Result<(), DbErr> {
    if sessions.is_empty() {
        return Ok(());
    }
    let rows = sessions
        .iter()
        .map(|((project, sid), a)| {
            vec![
                (*project).into(),
                sid.clone().into(),
                a.release.clone().into(),
                a.environment.clone().into(),
                a.bucket.into(),
                (a.health as i16).into(),
                a.did.clone().into(),
                now.into(),
            ]
        })
        .collect();
    let mut inserted = std::collections::HashSet::new();
    for s in bulk_insert(
        backend,
        "INSERT INTO session_states (project_id, sid, release, environment, bucket, status, did, updated)",
        &[
            Col("bigint", ArrayType::BigInt),
            Col("text", ArrayType::String),
            Col("text", ArrayType::String),
            Col("text", ArrayType::String),
            Col("bigint", ArrayType::BigInt),
            Col("smallint", ArrayType::SmallInt),
            Col("text?", ArrayType::String),
            Col("bigint", ArrayType::BigInt),
        ],
        rows,
        "ON CONFLICT (project_id, sid) DO NOTHING RETURNING project_id, sid",
        SQLITE_CHUNK,
    ) {
        for row in txn.query_all_raw(s).await? {
            inserted.insert((
                row.try_get::<i64>("", "project_id")?,
                row.try_get::<String>("", "sid")?,
            ));
        }
    }
    // Known sessions, per project.
    let mut known: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for ((project, sid), a) in sessions {
        if inserted.contains(&(*project, sid.clone())) {
            add(
                deltas,
                (*project, a.release.clone(), a.environment.clone(), a.bucket),
                a.health,
                0,
                1,
            );
            if let Some(did) = &a.did {
                add_user(
                    users,
                    (
                        *project,
                        a.release.clone(),
                        a.environment.clone(),
                        a.bucket,
                        did.clone(),
                    ),
                    a.health,
                );
            }
        } else {
            known.entry(*project).or_default().push(sid.clone());
        }
    }
    let lock = if backend == DbBackend::Postgres {
        " ORDER BY sid FOR UPDATE"
    } else {
        ""
    };
    for (project, sids) in known {
        for chunk in sids.chunks(500) {
            let (cond, mut values) = in_list(
                backend,
                "sid",
                ArrayType::String,
                chunk.iter().map(|s| Value::from(s.clone())).collect(),
            );
            values.insert(0, project.into());
            let stored = txn
                .query_all_raw(stmt(
                    backend,
                    &format!(
                        "SELECT sid, release, environment, bucket, CAST(status AS BIGINT) AS status, did \
                         FROM session_states WHERE project_id = ? AND {cond}{lock}"
                    ),
                    values,
                ))
                .await?;
            for row in stored {
                let sid: String = row.try_get("", "sid")?;
                let Some(a) = sessions.get(&(project, sid.clone())) else {
                    continue;
                };
                let old = Health::from_i16(row.try_get::<i64>("", "status")? as i16);
                if a.health <= old {
                    continue;
                }
                let release: String = row.try_get("", "release")?;
                let environment: String = row.try_get("", "environment")?;
                let bucket: i64 = row.try_get("", "bucket")?;
                let did: Option<String> =
                    row.try_get::<Option<String>>("", "did")?.or(a.did.clone());
                txn.execute_raw(stmt(
                    backend,
                    "UPDATE session_states SET status = ?, did = ?, updated = ? WHERE project_id = ? AND sid = ?",
                    vec![(a.health as i16).into(), did.clone().into(), now.into(), project.into(), sid.into()],
                ))
                .await?;
                let key = (project, release, environment, bucket);
                add(deltas, key.clone(), old, 0, -1);
                add(deltas, key.clone(), a.health, 0, 1);
                if let Some(did) = did {
                    add_user(users, (key.0, key.1, key.2, key.3, did), a.health);
                }
            }
        }
    }
    Ok(())
}

fn add(deltas: &mut BTreeMap<CountKey, Deltas>, key: CountKey, h: Health, offset: usize, n: i64) {
    deltas.entry(key).or_default()[offset + h.index()] += n;
}

fn add_user(
    users: &mut BTreeMap<(i64, String, String, i64, String), Health>,
    key: (i64, String, String, i64, String),
    h: Health,
) {
    let u = users.entry(key).or_insert(h);
    *u = (*u).max(h);
}

/// Claims new users (counted at their state) and moves the count of known users whose
/// state got worse.
async fn count_users(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    users: &BTreeMap<(i64, String, String, i64, String), Health>,
    deltas: &mut BTreeMap<CountKey, Deltas>,
) -> Result<(), DbErr> {
    if users.is_empty() {
        return Ok(());
    }
    let rows = users
        .iter()
        .map(|((p, r, e, b, d), h)| {
            vec![
                (*p).into(),
                r.clone().into(),
                e.clone().into(),
                (*b).into(),
                d.clone().into(),
                (*h as i16).into(),
            ]
        })
        .collect();
    let mut inserted = std::collections::HashSet::new();
    for s in bulk_insert(
        backend,
        "INSERT INTO session_users (project_id, release, environment, bucket, did, status)",
        &[
            Col("bigint", ArrayType::BigInt),
            Col("text", ArrayType::String),
            Col("text", ArrayType::String),
            Col("bigint", ArrayType::BigInt),
            Col("text", ArrayType::String),
            Col("smallint", ArrayType::SmallInt),
        ],
        rows,
        "ON CONFLICT (project_id, release, environment, bucket, did) DO NOTHING \
         RETURNING project_id, release, environment, bucket, did",
        SQLITE_CHUNK,
    ) {
        for row in txn.query_all_raw(s).await? {
            inserted.insert((
                row.try_get::<i64>("", "project_id")?,
                row.try_get::<String>("", "release")?,
                row.try_get::<String>("", "environment")?,
                row.try_get::<i64>("", "bucket")?,
                row.try_get::<String>("", "did")?,
            ));
        }
    }
    let mut known: BTreeMap<CountKey, Vec<String>> = BTreeMap::new();
    for (key, h) in users {
        if inserted.contains(key) {
            add(
                deltas,
                (key.0, key.1.clone(), key.2.clone(), key.3),
                *h,
                5,
                1,
            );
        } else {
            known
                .entry((key.0, key.1.clone(), key.2.clone(), key.3))
                .or_default()
                .push(key.4.clone());
        }
    }
    let lock = if backend == DbBackend::Postgres {
        " ORDER BY did FOR UPDATE"
    } else {
        ""
    };
    for (key, dids) in known {
        for chunk in dids.chunks(500) {
            let (cond, list) = in_list(
                backend,
                "did",
                ArrayType::String,
                chunk.iter().map(|s| Value::from(s.clone())).collect(),
            );
            let mut values: Vec<Value> = vec![
                key.0.into(),
                key.1.clone().into(),
                key.2.clone().into(),
                key.3.into(),
            ];
            values.extend(list);
            let stored = txn
                .query_all_raw(stmt(
                    backend,
                    &format!(
                        "SELECT did, CAST(status AS BIGINT) AS status FROM session_users \
                         WHERE project_id = ? AND release = ? AND environment = ? AND bucket = ? AND {cond}{lock}"
                    ),
                    values,
                ))
                .await?;
            for row in stored {
                let did: String = row.try_get("", "did")?;
                let old = Health::from_i16(row.try_get::<i64>("", "status")? as i16);
                let Some(new) = users
                    .get(&(key.0, key.1.clone(), key.2.clone(), key.3, did.clone()))
                    .copied()
                else {
                    continue;
                };
                if new <= old {
                    continue;
                }
                txn.execute_raw(stmt(
                    backend,
                    "UPDATE session_users SET status = ? WHERE project_id = ? AND release = ? \
                     AND environment = ? AND bucket = ? AND did = ?",
                    vec![
                        (new as i16).into(),
                        key.0.into(),
                        key.1.clone().into(),
                        key.2.clone().into(),
                        key.3.into(),
                        did.into(),
                    ],
                ))
                .await?;
                add(deltas, key.clone(), old, 5, -1);
                add(deltas, key.clone(), new, 5, 1);
            }
        }
    }
    Ok(())
}

const COUNT_COLUMNS: [&str; 10] = [
    "healthy",
    "errored",
    "unhandled",
    "abnormal",
    "crashed",
    "users_healthy",
    "users_errored",
    "users_unhandled",
    "users_abnormal",
    "users_crashed",
];

/// Adds the batch's deltas to the counters, one upsert per engine round.
async fn write_counts(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    deltas: &BTreeMap<CountKey, Deltas>,
) -> Result<(), DbErr> {
    let rows: Vec<Vec<Value>> = deltas
        .iter()
        .filter(|(_, d)| d.iter().any(|n| *n != 0))
        .map(|((p, r, e, b), d)| {
            let mut row: Vec<Value> =
                vec![(*p).into(), r.clone().into(), e.clone().into(), (*b).into()];
            row.extend(d.iter().map(|n| Value::from(*n)));
            row
        })
        .collect();
    let mut cols = vec![
        Col("bigint", ArrayType::BigInt),
        Col("text", ArrayType::String),
        Col("text", ArrayType::String),
        Col("bigint", ArrayType::BigInt),
    ];
    cols.extend((0..10).map(|_| Col("bigint", ArrayType::BigInt)));
    let set: Vec<String> = COUNT_COLUMNS
        .iter()
        .map(|c| format!("{c} = session_counts.{c} + excluded.{c}"))
        .collect();
    for s in bulk_insert(
        backend,
        &format!(
            "INSERT INTO session_counts (project_id, release, environment, bucket, {})",
            COUNT_COLUMNS.join(", ")
        ),
        &cols,
        rows,
        &format!(
            "ON CONFLICT (project_id, release, environment, bucket) DO UPDATE SET {}",
            set.join(", ")
        ),
        SQLITE_CHUNK,
    ) {
        txn.execute_raw(s).await?;
    }
    Ok(())
}

/// A release that only sends sessions is a release too: it gets its row (and the
/// project's link to it) so the releases pages list it.
async fn upsert_releases(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    deltas: &BTreeMap<CountKey, Deltas>,
    now: i64,
) -> Result<(), DbErr> {
    let mut seen: Vec<(i64, &str)> = deltas.keys().map(|(p, r, _, _)| (*p, r.as_str())).collect();
    seen.dedup();
    for (project_id, version) in seen {
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO releases (organization_id, version, date_created, status) \
             SELECT organization_id, ?, ?, 'open' FROM projects WHERE id = ? \
             ON CONFLICT (organization_id, version) DO NOTHING",
            vec![version.to_string().into(), now.into(), project_id.into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO release_projects (release_id, project_id, new_issues) \
             SELECT r.id, p.id, 0 FROM releases r JOIN projects p ON p.organization_id = r.organization_id \
             WHERE p.id = ? AND r.version = ? \
             ON CONFLICT (release_id, project_id) DO NOTHING",
            vec![project_id.into(), version.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// How long the per-user rows are kept: Sentry's longest `statsPeriod` (90 days) and a day.
const USER_ROWS_KEPT_MS: i64 = 91 * 24 * HOUR_MS;

/// When the session states and aggregate job ids were last pruned (Unix ms).
static LAST_PRUNE: AtomicI64 = AtomicI64::new(0);

/// Every 10 minutes: forgets session states no update can reach any more (started over 5
/// days and 2 hours ago; updates of sessions that old are dropped by ingest), aggregate
/// job ids older than a week (a job is retried for minutes, not days) and users per hour
/// older than 91 days.
async fn prune_now_and_then(db: &DatabaseConnection) {
    let now = chrono::Utc::now().timestamp_millis();
    let last = LAST_PRUNE.load(Ordering::Relaxed);
    if now - last < 600_000
        || LAST_PRUNE
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let result = prune(db, now).await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "pruning session states failed");
    }
}

/// Deletes what no query or update needs any more, as of `now` (see
/// [`prune_now_and_then`]).
pub async fn prune(db: &DatabaseConnection, now: i64) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    faultline_core::sql::execute(
        &txn,
        "DELETE FROM session_states WHERE bucket < ?",
        vec![(hour_of(now - session::MAX_AGE_MS) - 2 * HOUR_MS).into()],
    )
    .await?;
    faultline_core::sql::execute(
        &txn,
        "DELETE FROM session_aggregate_jobs WHERE received < ?",
        vec![(now - 7 * 24 * HOUR_MS).into()],
    )
    .await?;
    // Users per hour are kept as long as Sentry's longest period (90 days) can ask
    // for them; the hourly counters, a few rows per release, stay.
    faultline_core::sql::execute(
        &txn,
        "DELETE FROM session_users WHERE bucket < ?",
        vec![(hour_of(now) - USER_ROWS_KEPT_MS).into()],
    )
    .await?;
    txn.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(HOUR_MS), HOUR_MS);
        assert_eq!(hour_of(-1), -HOUR_MS);
    }
}
