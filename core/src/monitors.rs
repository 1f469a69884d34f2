//! The cron monitor domain's storage: monitors, their state per environment and their
//! check-ins, read and changed the same way whichever door the request came through (the
//! worker's check-ins, the Web API, the monitors page). Every function that a person's
//! request reaches takes the caller's organization and touches only its monitors.

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

use crate::protocol::check_in::{MonitorConfig, Schedule};
use crate::sql::{execute, query_all, query_one};

/// A monitor with its project.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub id: i64,
    /// Sentry's `id`: 32 hex.
    pub guid: String,
    pub project_id: i64,
    pub project_slug: String,
    pub slug: String,
    pub name: String,
    /// `active` or `disabled`.
    pub status: String,
    pub is_muted: bool,
    pub config: MonitorConfig,
    pub created_at: i64,
}

/// A monitor's state in one environment.
#[derive(Debug, Clone)]
pub struct MonitorEnvironment {
    pub id: i64,
    pub monitor_id: i64,
    pub environment: String,
    /// `active` (no check-in yet), `ok` or `error`.
    pub status: String,
    pub last_checkin: Option<i64>,
    pub next_checkin: Option<i64>,
    pub next_checkin_latest: Option<i64>,
    pub issue_id: Option<i64>,
    pub created_at: i64,
}

/// One stored check-in.
#[derive(Debug, Clone)]
pub struct CheckInRow {
    pub id: i64,
    pub guid: String,
    pub environment: String,
    pub status: String,
    pub duration_ms: Option<i64>,
    pub release: Option<String>,
    pub date_added: i64,
    pub expected_time: Option<i64>,
}

const MONITOR_COLUMNS: &str = "m.id, m.guid, m.project_id, p.slug AS project_slug, m.slug, m.name, \
     m.status, m.is_muted, m.schedule_type, m.schedule, m.checkin_margin, m.max_runtime, m.timezone, \
     m.failure_issue_threshold, m.recovery_threshold, m.created_at";

fn monitor_from_row(row: &QueryResult) -> Result<Monitor, DbErr> {
    let kind: String = row.try_get("", "schedule_type")?;
    let stored: String = row.try_get("", "schedule")?;
    let schedule = Schedule::from_stored(&kind, &stored)
        .map_err(|e| DbErr::Custom(format!("stored schedule: {e}")))?;
    let tz: String = row.try_get("", "timezone")?;
    Ok(Monitor {
        id: row.try_get("", "id")?,
        guid: row.try_get("", "guid")?,
        project_id: row.try_get("", "project_id")?,
        project_slug: row.try_get("", "project_slug")?,
        slug: row.try_get("", "slug")?,
        name: row.try_get("", "name")?,
        status: row.try_get("", "status")?,
        is_muted: row.try_get("", "is_muted")?,
        config: MonitorConfig {
            schedule,
            checkin_margin: row.try_get("", "checkin_margin")?,
            max_runtime: row.try_get("", "max_runtime")?,
            timezone: tz.parse().unwrap_or(chrono_tz::UTC),
            failure_issue_threshold: row.try_get("", "failure_issue_threshold")?,
            recovery_threshold: row.try_get("", "recovery_threshold")?,
        },
        created_at: row.try_get("", "created_at")?,
    })
}

fn env_from_row(row: &QueryResult) -> Result<MonitorEnvironment, DbErr> {
    Ok(MonitorEnvironment {
        id: row.try_get("", "id")?,
        monitor_id: row.try_get("", "monitor_id")?,
        environment: row.try_get("", "environment")?,
        status: row.try_get("", "status")?,
        last_checkin: row.try_get("", "last_checkin")?,
        next_checkin: row.try_get("", "next_checkin")?,
        next_checkin_latest: row.try_get("", "next_checkin_latest")?,
        issue_id: row.try_get("", "issue_id")?,
        created_at: row.try_get("", "created_at")?,
    })
}

/// The monitor `slug` of a project (any organization: the worker's view).
pub async fn by_slug(
    db: &impl ConnectionTrait,
    project_id: i64,
    slug: &str,
) -> Result<Option<Monitor>, DbErr> {
    let sql = format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m JOIN projects p ON p.id = m.project_id \
         WHERE m.project_id = ? AND m.slug = ?"
    );
    query_one(db, &sql, vec![project_id.into(), slug.into()])
        .await?
        .map(|r| monitor_from_row(&r))
        .transpose()
}

/// A monitor by its row id (the clock's view).
pub async fn by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<Monitor>, DbErr> {
    let sql = format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m JOIN projects p ON p.id = m.project_id WHERE m.id = ?"
    );
    query_one(db, &sql, vec![id.into()])
        .await?
        .map(|r| monitor_from_row(&r))
        .transpose()
}

/// Creates the monitor or replaces its configuration (a check-in's `monitor_config`);
/// name, status and mute stay as a person set them.
pub async fn upsert(
    db: &impl ConnectionTrait,
    project_id: i64,
    slug: &str,
    config: &MonitorConfig,
    now: i64,
) -> Result<Monitor, DbErr> {
    let values = config_values(config);
    let changed = execute(
        db,
        "UPDATE monitors SET schedule_type = ?, schedule = ?, checkin_margin = ?, max_runtime = ?, \
         timezone = ?, failure_issue_threshold = ?, recovery_threshold = ? \
         WHERE project_id = ? AND slug = ?",
        values
            .iter()
            .cloned()
            .chain([project_id.into(), slug.into()])
            .collect(),
    )
    .await?;
    if changed == 0 {
        create(db, project_id, slug, slug, config, now).await?;
    }
    by_slug(db, project_id, slug)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("monitor {slug}")))
}

fn config_values(config: &MonitorConfig) -> Vec<Value> {
    vec![
        config.schedule.kind().into(),
        config.schedule.stored().into(),
        config.checkin_margin.into(),
        config.max_runtime.into(),
        config.timezone.name().into(),
        config.failure_issue_threshold.into(),
        config.recovery_threshold.into(),
    ]
}

/// Inserts a monitor (a conflicting slug in the project inserts nothing); returns whether
/// it was created.
pub async fn create(
    db: &impl ConnectionTrait,
    project_id: i64,
    slug: &str,
    name: &str,
    config: &MonitorConfig,
    now: i64,
) -> Result<bool, DbErr> {
    let mut values: Vec<Value> = vec![
        uuid::Uuid::new_v4().simple().to_string().into(),
        project_id.into(),
        slug.into(),
        name.into(),
    ];
    values.extend(config_values(config));
    values.push(now.into());
    let n = execute(
        db,
        "INSERT INTO monitors (guid, project_id, slug, name, status, is_muted, schedule_type, schedule, \
         checkin_margin, max_runtime, timezone, failure_issue_threshold, recovery_threshold, created_at) \
         VALUES (?, ?, ?, ?, 'active', FALSE, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (project_id, slug) DO NOTHING",
        values,
    )
    .await?;
    Ok(n == 1)
}

/// The organization's monitors (optionally of some projects), by project and slug.
pub async fn list(
    db: &impl ConnectionTrait,
    organization_id: i64,
    project_ids: Option<&[i64]>,
) -> Result<Vec<Monitor>, DbErr> {
    let mut sql = format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m JOIN projects p ON p.id = m.project_id \
         WHERE p.organization_id = ?"
    );
    let mut values: Vec<Value> = vec![organization_id.into()];
    if let Some(ids) = project_ids {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sql.push_str(&format!(
            " AND m.project_id IN ({})",
            crate::sql::placeholders(ids.len())
        ));
        values.extend(ids.iter().map(|i| Value::from(*i)));
    }
    sql.push_str(" ORDER BY p.slug, m.slug");
    query_all(db, &sql, values)
        .await?
        .iter()
        .map(monitor_from_row)
        .collect()
}

/// One of the organization's monitors by its slug or its `id` (guid); when projects of
/// the organization share a slug, the oldest monitor answers unless `project_id` says.
pub async fn get_in_org(
    db: &impl ConnectionTrait,
    organization_id: i64,
    id_or_slug: &str,
    project_id: Option<i64>,
) -> Result<Option<Monitor>, DbErr> {
    let mut sql = format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m JOIN projects p ON p.id = m.project_id \
         WHERE p.organization_id = ? AND (m.slug = ? OR m.guid = ?)"
    );
    let key = id_or_slug.replace('-', "").to_ascii_lowercase();
    let mut values: Vec<Value> = vec![organization_id.into(), id_or_slug.into(), key.into()];
    if let Some(p) = project_id {
        sql.push_str(" AND m.project_id = ?");
        values.push(p.into());
    }
    sql.push_str(" ORDER BY m.id LIMIT 1");
    query_one(db, &sql, values)
        .await?
        .map(|r| monitor_from_row(&r))
        .transpose()
}

/// The environments of these monitors, by monitor and name.
pub async fn environments(
    db: &impl ConnectionTrait,
    monitor_ids: &[i64],
) -> Result<Vec<MonitorEnvironment>, DbErr> {
    if monitor_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, monitor_id, environment, status, last_checkin, next_checkin, next_checkin_latest, \
         issue_id, created_at FROM monitor_environments WHERE monitor_id IN ({}) \
         ORDER BY monitor_id, environment",
        crate::sql::placeholders(monitor_ids.len())
    );
    query_all(
        db,
        &sql,
        monitor_ids.iter().map(|i| Value::from(*i)).collect(),
    )
    .await?
    .iter()
    .map(env_from_row)
    .collect()
}

/// The newest check-ins of a monitor (of one environment if given), newest first;
/// `before` is a check-in id for the next page.
pub async fn check_ins(
    db: &impl ConnectionTrait,
    monitor_id: i64,
    environment: Option<&str>,
    since: Option<i64>,
    before: Option<(i64, i64)>,
    limit: u64,
) -> Result<Vec<CheckInRow>, DbErr> {
    let mut sql = String::from(
        "SELECT c.id, c.guid, e.environment, c.status, c.duration_ms, c.release, c.date_added, \
         c.expected_time FROM monitor_checkins c \
         JOIN monitor_environments e ON e.id = c.monitor_environment_id WHERE c.monitor_id = ?",
    );
    let mut values: Vec<Value> = vec![monitor_id.into()];
    if let Some(env) = environment {
        sql.push_str(" AND e.environment = ?");
        values.push(env.into());
    }
    if let Some(since) = since {
        sql.push_str(" AND c.date_added >= ?");
        values.push(since.into());
    }
    if let Some((added, id)) = before {
        sql.push_str(" AND (c.date_added < ? OR (c.date_added = ? AND c.id < ?))");
        values.extend([added.into(), added.into(), id.into()]);
    }
    sql.push_str(&format!(
        " ORDER BY c.date_added DESC, c.id DESC LIMIT {}",
        limit.min(1000)
    ));
    let mut out = Vec::new();
    for row in query_all(db, &sql, values).await? {
        out.push(CheckInRow {
            id: row.try_get("", "id")?,
            guid: row.try_get("", "guid")?,
            environment: row.try_get("", "environment")?,
            status: row.try_get("", "status")?,
            duration_ms: row.try_get("", "duration_ms")?,
            release: row.try_get("", "release")?,
            date_added: row.try_get("", "date_added")?,
            expected_time: row.try_get("", "expected_time")?,
        });
    }
    Ok(out)
}

/// What a person may change on a monitor (each `None` stays as it is).
#[derive(Debug, Default, Clone)]
pub struct MonitorUpdate {
    pub name: Option<String>,
    pub slug: Option<String>,
    /// `active` or `disabled`.
    pub status: Option<String>,
    pub is_muted: Option<bool>,
    pub config: Option<MonitorConfig>,
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("a monitor with this slug already exists in the project")]
    SlugTaken,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Applies an update to one of the organization's monitors (the caller found it with
/// [`get_in_org`]); a changed schedule takes effect from the next check-in.
pub async fn update(
    db: &impl ConnectionTrait,
    organization_id: i64,
    monitor: &Monitor,
    change: &MonitorUpdate,
) -> Result<(), UpdateError> {
    if let Some(slug) = change.slug.as_deref()
        && slug != monitor.slug
        && by_slug(db, monitor.project_id, slug).await?.is_some()
    {
        return Err(UpdateError::SlugTaken);
    }
    let config = change.config.as_ref().unwrap_or(&monitor.config);
    let mut values: Vec<Value> = vec![
        change
            .name
            .clone()
            .unwrap_or_else(|| monitor.name.clone())
            .into(),
        change
            .slug
            .clone()
            .unwrap_or_else(|| monitor.slug.clone())
            .into(),
        change
            .status
            .clone()
            .unwrap_or_else(|| monitor.status.clone())
            .into(),
        change.is_muted.unwrap_or(monitor.is_muted).into(),
    ];
    values.extend(config_values(config));
    values.extend([monitor.id.into(), organization_id.into()]);
    execute(
        db,
        "UPDATE monitors SET name = ?, slug = ?, status = ?, is_muted = ?, schedule_type = ?, \
         schedule = ?, checkin_margin = ?, max_runtime = ?, timezone = ?, failure_issue_threshold = ?, \
         recovery_threshold = ? WHERE id = ? AND project_id IN \
         (SELECT id FROM projects WHERE organization_id = ?)",
        values,
    )
    .await?;
    Ok(())
}

/// Deletes one of the organization's monitors with its environments and check-ins.
pub async fn delete(
    db: &impl ConnectionTrait,
    organization_id: i64,
    monitor_id: i64,
) -> Result<bool, DbErr> {
    let owned = query_one(
        db,
        "SELECT m.id FROM monitors m JOIN projects p ON p.id = m.project_id \
         WHERE m.id = ? AND p.organization_id = ?",
        vec![monitor_id.into(), organization_id.into()],
    )
    .await?
    .is_some();
    if !owned {
        return Ok(false);
    }
    // Children first: SQLite enforces the foreign keys only when asked to.
    execute(
        db,
        "DELETE FROM monitor_checkins WHERE monitor_id = ?",
        vec![monitor_id.into()],
    )
    .await?;
    execute(
        db,
        "DELETE FROM monitor_environments WHERE monitor_id = ?",
        vec![monitor_id.into()],
    )
    .await?;
    execute(
        db,
        "DELETE FROM monitors WHERE id = ?",
        vec![monitor_id.into()],
    )
    .await?;
    Ok(true)
}
