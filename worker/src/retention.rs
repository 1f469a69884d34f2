//! Retention: events older than their project's retention are deleted, and each issue
//! keeps at most its project's `max_events_per_issue` events (the newest). Issues and
//! their counters stay: "seen 12,000 times" remains true after the events are gone.
//!
//! Deletes run in chunks so a large backlog never becomes one huge transaction that blocks
//! the pipeline's writes. Running it from several workers at once is harmless.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};

use crate::sql::stmt;

/// Rows deleted per statement.
const CHUNK: i64 = 5000;

/// What one retention run removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub expired: u64,
    pub over_cap: u64,
}

/// Applies every project's retention once, as of `now_ms`.
pub async fn run(db: &DatabaseConnection, now_ms: i64) -> Result<RetentionOutcome, DbErr> {
    let backend = db.get_database_backend();
    let mut outcome = RetentionOutcome::default();
    let projects = db
        .query_all_raw(stmt(
            backend,
            "SELECT id, retention_days, max_events_per_issue FROM projects",
            vec![],
        ))
        .await?;
    for p in projects {
        let project_id: i64 = p.try_get("", "id")?;
        let days: i32 = p.try_get("", "retention_days")?;
        let cap: i32 = p.try_get("", "max_events_per_issue")?;

        // 1. Older than the retention period.
        let cutoff = now_ms - i64::from(days.max(1)) * 86_400_000;
        loop {
            let res = db
                .execute_raw(stmt(
                    backend,
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE project_id = ? AND received < ? LIMIT ?)",
                    vec![project_id.into(), cutoff.into(), CHUNK.into()],
                ))
                .await?;
            outcome.expired += res.rows_affected();
            if res.rows_affected() < CHUNK as u64 {
                break;
            }
        }

        // 2. More events than the cap: only issues seen more often can be over it.
        if cap <= 0 {
            continue;
        }
        let candidates = db
            .query_all_raw(stmt(
                backend,
                "SELECT id FROM issues WHERE project_id = ? AND times_seen > ?",
                vec![project_id.into(), i64::from(cap).into()],
            ))
            .await?;
        for row in candidates {
            let issue_id: i64 = row.try_get("", "id")?;
            // Everything after the newest `cap` events of the issue.
            let sql = match backend {
                DbBackend::Postgres => {
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE issue_id = ? \
                     ORDER BY timestamp DESC, id DESC OFFSET ?)"
                }
                _ => {
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE issue_id = ? \
                     ORDER BY timestamp DESC, id DESC LIMIT -1 OFFSET ?)"
                }
            };
            let res = db
                .execute_raw(stmt(
                    backend,
                    sql,
                    vec![issue_id.into(), i64::from(cap).into()],
                ))
                .await?;
            outcome.over_cap += res.rows_affected();
        }
    }
    Ok(outcome)
}
