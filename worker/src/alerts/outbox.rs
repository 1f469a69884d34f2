//! The alert outbox: issue state changes recorded inside the event store's transaction.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Value};

use crate::sql::stmt;
use crate::store::NotificationKind;

/// One issue state change, with what rule filters look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub project_id: i64,
    pub issue_id: i64,
    pub kind: NotificationKind,
    /// The event that caused it (the newest of the batch for that issue).
    pub event_id: String,
    pub level: String,
    pub environment: Option<String>,
    pub release: Option<String>,
}

/// Writes the triggers as outbox rows; part of the caller's transaction.
pub async fn record(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    triggers: &[Trigger],
) -> Result<(), DbErr> {
    let now = super::now_ms();
    for chunk in triggers.chunks(100) {
        let mut sql = String::from(
            "INSERT INTO alert_outbox (project_id, issue_id, kind, event_id, level, environment, \
             release, created_at) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 8);
        for (i, t) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?)");
            values.extend([
                t.project_id.into(),
                t.issue_id.into(),
                t.kind.as_str().into(),
                t.event_id.clone().into(),
                t.level.clone().into(),
                t.environment.clone().into(),
                t.release.clone().into(),
                now.into(),
            ]);
        }
        txn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}
