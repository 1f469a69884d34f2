//! Cron monitors in the worker: check-ins from the queue become monitor state and check-in
//! rows ([`apply_check_in`]), the clock marks missed and timed-out check-ins
//! ([`clock`]), and consecutive failures open an issue of their own that alerts like any
//! other ([`record_result`]).
//!
//! Order: check-ins of one monitor must apply in the order they were sent — `sentry-cli
//! monitors run` sends `monitor_config` only with its opening `in_progress`, so the closing
//! `ok` needs the monitor the opening one created. The queue hands jobs to many concurrent
//! handlers, so each process funnels its check-ins through ONE task that applies whatever is
//! waiting sorted by the time ingest accepted it. Across processes (or when a handler was
//! slow), a closing check-in that finds no monitor yet is retried by the queue for a few
//! seconds before it counts as "unknown monitor"; and a closing check-in that arrives before its
//! opening one stores the final status, which the late opening one does not overwrite.

pub mod clock;

use faultline_core::jobs::EventJob;
use faultline_core::metrics;
use faultline_core::monitors::{self, Monitor};
use faultline_core::protocol::check_in::{CheckIn, CheckInStatus};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};

use crate::alerts::outbox::{self, Trigger};
use crate::pipeline::PipelineError;
use crate::sql::{begin_write, execute, query_one};
use crate::store::NotificationKind;

/// How long a closing check-in without a monitor waits for the opening check-in that
/// creates it: it fails as a retryable error until then, and the queue retries after 0.25,
/// 1.25, 3.5 and 7.5 s, so the last attempt (past this grace) ends as "unknown monitor"
/// instead of in the dead-letter table.
pub const UNKNOWN_MONITOR_GRACE_MS: i64 = 5_000;

/// What became of one check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (a new row, or the closing of an open one).
    Stored,
    /// A repeat or an out-of-order opening of a check-in already closed: nothing changed.
    Unchanged,
    /// No monitor of that slug and no `monitor_config` to create it.
    UnknownMonitor,
    /// The monitor is disabled: check-ins are dropped.
    Disabled,
    /// No monitor yet, but its opening check-in may still be on its way: try again.
    NotYet,
}

impl Outcome {
    fn metric(self) -> &'static str {
        match self {
            Outcome::Stored | Outcome::Unchanged => "stored",
            Outcome::UnknownMonitor => "unknown_monitor",
            Outcome::Disabled => "disabled",
            Outcome::NotYet => "retried",
        }
    }
}

type Submitted = (EventJob, oneshot::Sender<Result<(), PipelineError>>);

/// Handle to the process's check-in task; cheap to clone.
#[derive(Clone)]
pub struct Monitors {
    tx: mpsc::Sender<Submitted>,
}

impl Monitors {
    /// Starts the check-in task on the current Tokio runtime.
    pub fn start(db: DatabaseConnection) -> Monitors {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(apply_loop(db, rx));
        Monitors { tx }
    }

    /// Applies one check-in job; returns once it is committed (or failed).
    pub async fn process(&self, job: EventJob) -> Result<(), PipelineError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((job, done))
            .await
            .map_err(|_| PipelineError::Closed)?;
        wait.await.map_err(|_| PipelineError::Closed)?
    }
}

/// The most check-ins applied in one transaction.
const MAX_GROUP: usize = 1000;

async fn apply_loop(db: DatabaseConnection, mut rx: mpsc::Receiver<Submitted>) {
    let mut waiting: Vec<Submitted> = Vec::new();
    while let Some(first) = rx.recv().await {
        waiting.push(first);
        while waiting.len() < MAX_GROUP
            && let Ok(more) = rx.try_recv()
        {
            waiting.push(more);
        }
        // Stable: jobs accepted in the same millisecond keep the queue's order.
        waiting.sort_by_key(|(job, _)| job.received_ms);
        apply_group(&db, std::mem::take(&mut waiting)).await;
    }
}

/// Applies whatever was waiting in ONE transaction (a group commit: one fsync for many
/// check-ins, as the event store does); if that fails, one by one, so a check-in that
/// cannot be stored fails alone.
async fn apply_group(db: &DatabaseConnection, group: Vec<Submitted>) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut parsed = Vec::with_capacity(group.len());
    for (job, done) in group {
        match parse_job(&job) {
            Ok(c) => parsed.push((job, c, done)),
            Err(e) => {
                let _ = done.send(Err(e));
            }
        }
    }
    if parsed.is_empty() {
        return;
    }
    let grouped = async {
        let txn = begin_write(db).await?;
        let mut outcomes = Vec::with_capacity(parsed.len());
        for (job, c, _) in &parsed {
            match apply_in(&txn, job.project_id, c, job.received_ms, now).await {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    let _ = txn.rollback().await;
                    return Err(e);
                }
            }
        }
        txn.commit().await?;
        Ok::<_, DbErr>(outcomes)
    }
    .await;
    match grouped {
        Ok(outcomes) => {
            for ((job, c, done), outcome) in parsed.into_iter().zip(outcomes) {
                let _ = done.send(answer(&job, &c, outcome));
            }
        }
        Err(e) => {
            if parsed.len() > 1 {
                tracing::warn!(error = %e, check_ins = parsed.len(), "check-in group failed; applying one by one");
            }
            for (job, c, done) in parsed {
                let result = apply_check_in(db, job.project_id, &c, job.received_ms, now)
                    .await
                    .map_err(|e| PipelineError::Storage(e.to_string()))
                    .and_then(|outcome| answer(&job, &c, outcome));
                let _ = done.send(result);
            }
        }
    }
}

fn parse_job(job: &EventJob) -> Result<CheckIn, PipelineError> {
    let payload = job
        .payload_bytes(256 * 1024)
        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
    CheckIn::parse(&payload).map_err(|e| PipelineError::Invalid(e.to_string()))
}

/// What the queue hears about an applied check-in.
fn answer(job: &EventJob, check_in: &CheckIn, outcome: Outcome) -> Result<(), PipelineError> {
    metrics::check_in(outcome.metric());
    match outcome {
        Outcome::NotYet => Err(PipelineError::Storage(format!(
            "monitor {:?} does not exist yet; waiting for its opening check-in",
            check_in.monitor_slug
        ))),
        Outcome::UnknownMonitor => {
            tracing::info!(
                project = job.project_id,
                monitor = %check_in.monitor_slug,
                "check-in dropped: unknown monitor (no monitor_config to create it)"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Applies one check-in accepted by ingest at `received_ms`, in one transaction.
pub async fn apply_check_in(
    db: &DatabaseConnection,
    project_id: i64,
    c: &CheckIn,
    received_ms: i64,
    now: i64,
) -> Result<Outcome, DbErr> {
    let txn = begin_write(db).await?;
    match apply_in(&txn, project_id, c, received_ms, now).await {
        // Committed whatever the outcome: a monitor created from a config is kept even when
        // the check-in itself changed nothing.
        Ok(outcome) => {
            txn.commit().await?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

async fn apply_in(
    txn: &sea_orm::DatabaseTransaction,
    project_id: i64,
    c: &CheckIn,
    received_ms: i64,
    now: i64,
) -> Result<Outcome, DbErr> {
    let monitor = match (
        &c.monitor_config,
        monitors::by_slug(txn, project_id, &c.monitor_slug).await?,
    ) {
        (Some(config), Some(m)) if m.config == *config => m,
        (Some(config), _) => {
            monitors::upsert(txn, project_id, &c.monitor_slug, config, now).await?
        }
        (None, Some(m)) => m,
        (None, None) => {
            let closing = c.status != CheckInStatus::InProgress;
            return Ok(if closing && now - received_ms < UNKNOWN_MONITOR_GRACE_MS {
                Outcome::NotYet
            } else {
                Outcome::UnknownMonitor
            });
        }
    };
    if monitor.status == "disabled" {
        return Ok(Outcome::Disabled);
    }
    let env_id = ensure_environment(txn, monitor.id, &c.environment, now).await?;

    let existing = match c.check_in_id {
        Some(id) => {
            query_one(
                txn,
                "SELECT id, guid, status, date_added FROM monitor_checkins WHERE monitor_id = ? AND guid = ?",
                vec![monitor.id.into(), id.simple().to_string().into()],
            )
            .await?
        }
        // The nil id closes the newest open check-in of the monitor and environment.
        None if c.status != CheckInStatus::InProgress => {
            query_one(
                txn,
                "SELECT id, guid, status, date_added FROM monitor_checkins \
                 WHERE monitor_environment_id = ? AND status = 'in_progress' \
                 ORDER BY date_added DESC, id DESC LIMIT 1",
                vec![env_id.into()],
            )
            .await?
        }
        None => None,
    };

    let mut final_status = None;
    let guid;
    let mut changed = true;
    if let Some(row) = existing {
        let id: i64 = row.try_get("", "id")?;
        guid = row.try_get::<String>("", "guid")?;
        let status: String = row.try_get("", "status")?;
        let added: i64 = row.try_get("", "date_added")?;
        let duration = c.duration_ms.unwrap_or((received_ms - added).max(0));
        match (status.as_str(), c.status) {
            ("in_progress", CheckInStatus::Ok | CheckInStatus::Error) => {
                execute(
                    txn,
                    "UPDATE monitor_checkins SET status = ?, duration_ms = ?, date_updated = ?, \
                     timeout_at = NULL WHERE id = ?",
                    vec![
                        c.status.as_str().into(),
                        duration.into(),
                        received_ms.into(),
                        id.into(),
                    ],
                )
                .await?;
                final_status = Some(c.status);
            }
            // A late close of a timed-out run keeps `timeout` but records how long it took.
            ("timeout", CheckInStatus::Ok | CheckInStatus::Error) => {
                execute(
                    txn,
                    "UPDATE monitor_checkins SET duration_ms = ?, date_updated = ? WHERE id = ?",
                    vec![duration.into(), received_ms.into(), id.into()],
                )
                .await?;
            }
            _ => changed = false,
        }
    } else {
        guid = c
            .check_in_id
            .unwrap_or_else(uuid::Uuid::new_v4)
            .simple()
            .to_string();
        let expected: Option<i64> = query_one(
            txn,
            "SELECT next_checkin FROM monitor_environments WHERE id = ?",
            vec![env_id.into()],
        )
        .await?
        .and_then(|r| r.try_get("", "next_checkin").ok())
        .flatten();
        let timeout_at = (c.status == CheckInStatus::InProgress)
            .then_some(received_ms + monitor.config.max_runtime * 60_000);
        let inserted = execute(
            txn,
            "INSERT INTO monitor_checkins (guid, monitor_id, monitor_environment_id, status, duration_ms, \
             release, trace_id, date_added, date_updated, expected_time, timeout_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (monitor_id, guid) DO NOTHING",
            vec![
                guid.clone().into(),
                monitor.id.into(),
                env_id.into(),
                c.status.as_str().into(),
                c.duration_ms.into(),
                c.release.clone().into(),
                c.trace_id.clone().into(),
                received_ms.into(),
                received_ms.into(),
                expected.into(),
                timeout_at.into(),
            ],
        )
        .await?;
        changed = inserted == 1;
        if changed && c.status != CheckInStatus::InProgress {
            final_status = Some(c.status);
        }
    }
    if !changed {
        return Ok(Outcome::Unchanged);
    }
    // Any check-in tells when the next one is due (Sentry counts from the check-in).
    if let Some(next) = monitor
        .config
        .schedule
        .next_after(monitor.config.timezone, received_ms)
    {
        execute(
            txn,
            "UPDATE monitor_environments SET last_checkin = ?, next_checkin = ?, next_checkin_latest = ? \
             WHERE id = ? AND (last_checkin IS NULL OR last_checkin <= ?)",
            vec![
                received_ms.into(),
                next.into(),
                (next + monitor.config.checkin_margin * 60_000).into(),
                env_id.into(),
                received_ms.into(),
            ],
        )
        .await?;
    }
    if let Some(status) = final_status {
        record_result(
            txn,
            &monitor,
            env_id,
            &c.environment,
            status,
            &guid,
            received_ms,
        )
        .await?;
    }
    Ok(Outcome::Stored)
}

/// The environment's row id, created on its first check-in.
async fn ensure_environment(
    txn: &impl ConnectionTrait,
    monitor_id: i64,
    environment: &str,
    now: i64,
) -> Result<i64, DbErr> {
    execute(
        txn,
        "INSERT INTO monitor_environments (monitor_id, environment, status, created_at) \
         VALUES (?, ?, 'active', ?) ON CONFLICT (monitor_id, environment) DO NOTHING",
        vec![monitor_id.into(), environment.into(), now.into()],
    )
    .await?;
    query_one(
        txn,
        "SELECT id FROM monitor_environments WHERE monitor_id = ? AND environment = ?",
        vec![monitor_id.into(), environment.into()],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("monitor environment".into()))?
    .try_get("", "id")
}

/// Counts a finished check-in (ok, error, missed, timeout) of one environment: after
/// `failure_issue_threshold` failures in a row an issue opens (with its alert outbox row,
/// in the caller's transaction); after `recovery_threshold` OKs in a row it resolves.
pub async fn record_result(
    txn: &sea_orm::DatabaseTransaction,
    monitor: &Monitor,
    env_id: i64,
    environment: &str,
    status: CheckInStatus,
    check_in_guid: &str,
    at: i64,
) -> Result<(), DbErr> {
    if status == CheckInStatus::Ok {
        let row = query_one(
            txn,
            "UPDATE monitor_environments SET status = 'ok', consecutive_oks = consecutive_oks + 1, \
             consecutive_failures = 0 WHERE id = ? RETURNING consecutive_oks, issue_id",
            vec![env_id.into()],
        )
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("monitor environment".into()))?;
        let oks: i64 = row.try_get("", "consecutive_oks")?;
        let issue: Option<i64> = row.try_get("", "issue_id")?;
        if let Some(issue_id) = issue
            && oks >= monitor.config.recovery_threshold
        {
            execute(
                txn,
                "UPDATE issues SET status = 'resolved', status_details = NULL, resolved_at = ? \
                 WHERE id = ? AND status <> 'resolved'",
                vec![at.into(), issue_id.into()],
            )
            .await?;
            execute(
                txn,
                "UPDATE monitor_environments SET issue_id = NULL WHERE id = ?",
                vec![env_id.into()],
            )
            .await?;
        }
        return Ok(());
    }
    let row = query_one(
        txn,
        "UPDATE monitor_environments SET status = 'error', consecutive_failures = consecutive_failures + 1, \
         consecutive_oks = 0 WHERE id = ? RETURNING consecutive_failures, issue_id",
        vec![env_id.into()],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("monitor environment".into()))?;
    let failures: i64 = row.try_get("", "consecutive_failures")?;
    let issue: Option<i64> = row.try_get("", "issue_id")?;
    if let Some(issue_id) = issue {
        // Still failing: the open issue counts it (and wakes if someone resolved it).
        execute(
            txn,
            "UPDATE issues SET last_seen = ?, times_seen = times_seen + 1 WHERE id = ?",
            vec![at.into(), issue_id.into()],
        )
        .await?;
        return Ok(());
    }
    if failures < monitor.config.failure_issue_threshold || monitor.is_muted {
        return Ok(());
    }
    let issue_id = open_issue(txn, monitor, environment, status, at).await?;
    execute(
        txn,
        "UPDATE monitor_environments SET issue_id = ? WHERE id = ?",
        vec![issue_id.into(), env_id.into()],
    )
    .await?;
    outbox::record(
        txn,
        txn.get_database_backend(),
        &[Trigger {
            project_id: monitor.project_id,
            issue_id,
            kind: NotificationKind::MonitorFailure,
            event_id: check_in_guid.to_string(),
            level: "error".into(),
            environment: Some(environment.to_string()),
            release: None,
        }],
    )
    .await?;
    metrics::get().issues_created.inc();
    Ok(())
}

/// What a failure is called in the issue's title.
pub fn failure_word(status: CheckInStatus) -> &'static str {
    match status {
        CheckInStatus::Missed => "missed",
        CheckInStatus::Timeout => "timed out",
        _ => "failed",
    }
}

async fn open_issue(
    txn: &sea_orm::DatabaseTransaction,
    monitor: &Monitor,
    environment: &str,
    status: CheckInStatus,
    at: i64,
) -> Result<i64, DbErr> {
    let counter = query_one(
        txn,
        "UPDATE projects SET issue_counter = issue_counter + 1 WHERE id = ? RETURNING issue_counter",
        vec![monitor.project_id.into()],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("project".into()))?;
    let short_id: i64 = counter.try_get("", "issue_counter")?;
    let title = format!("Monitor failure: {} {}", monitor.slug, failure_word(status));
    let value = match status {
        CheckInStatus::Missed => {
            "No check-in arrived within the schedule and its margin".to_string()
        }
        CheckInStatus::Timeout => format!(
            "The job ran longer than its maximum runtime of {} min",
            monitor.config.max_runtime
        ),
        _ => "The job checked in with status error".to_string(),
    };
    let row = query_one(
        txn,
        "INSERT INTO issues (project_id, short_id, title, culprit, exception_type, exception_value, level, \
         platform, status, first_seen, last_seen, times_seen, users_seen) \
         VALUES (?, ?, ?, ?, 'MonitorFailure', ?, 'error', NULL, 'unresolved', ?, ?, 1, 0) RETURNING id",
        vec![
            monitor.project_id.into(),
            short_id.into(),
            title.into(),
            format!("monitor {} ({environment})", monitor.slug).into(),
            value.into(),
            at.into(),
            at.into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::Custom("issue insert returned no id".into()))?;
    row.try_get("", "id")
}
