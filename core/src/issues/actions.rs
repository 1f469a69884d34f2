//! What people do to issues: change their status, delete them.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value};

use super::state::StatusChange;
use crate::sql::{begin_write, execute, placeholders, query_all};

/// Changes the status of the issues `ids` that belong to a project of `organization_id`
/// (others are left alone), as the worker reads it back: resolved issues regress on their
/// next event, resolved-in-next-release ones on an event of a release made after the
/// resolution, ignored ones wake up after a time or a number of further events. Returns
/// how many issues changed.
pub async fn set_status(
    db: &impl ConnectionTrait,
    organization_id: i64,
    ids: &[i64],
    change: &StatusChange,
    now: i64,
) -> Result<u64, DbErr> {
    let mut changed = 0;
    for chunk in ids.chunks(500) {
        let in_org = format!(
            "id IN ({}) AND project_id IN (SELECT id FROM projects WHERE organization_id = ?)",
            placeholders(chunk.len())
        );
        let mut scope: Vec<Value> = chunk.iter().map(|id| Value::from(*id)).collect();
        scope.push(organization_id.into());
        if !change.per_issue() {
            let stored = change.stored(None, 0, now);
            let mut values: Vec<Value> = vec![
                stored.status.into(),
                stored
                    .details
                    .and_then(|d| serde_json::to_string(&d).ok())
                    .into(),
                stored.resolved_at.into(),
            ];
            values.extend(scope);
            changed += execute(
                db,
                &format!(
                    "UPDATE issues SET status = ?, status_details = ?, resolved_at = ? WHERE {in_org}"
                ),
                values,
            )
            .await?;
            continue;
        }
        // The details depend on each issue: the release current at resolution (its last
        // release), or the count ignored events are counted from (its times_seen).
        let rows = query_all(
            db,
            &format!("SELECT id, last_release, times_seen FROM issues WHERE {in_org}"),
            scope,
        )
        .await?;
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let stored = change.stored(
                row.try_get("", "last_release")?,
                row.try_get("", "times_seen")?,
                now,
            );
            changed += execute(
                db,
                "UPDATE issues SET status = ?, status_details = ?, resolved_at = ? WHERE id = ?",
                vec![
                    stored.status.into(),
                    stored
                        .details
                        .and_then(|d| serde_json::to_string(&d).ok())
                        .into(),
                    stored.resolved_at.into(),
                    id.into(),
                ],
            )
            .await?;
        }
    }
    Ok(changed)
}

/// Deletes an issue of `organization_id` with its events, hashes and tag values (a later
/// event with one of its hashes starts a new issue). Returns whether it existed there.
pub async fn delete(
    db: &DatabaseConnection,
    organization_id: i64,
    issue_id: i64,
) -> Result<bool, DbErr> {
    let txn = begin_write(db).await?;
    let found = query_all(
        &txn,
        "SELECT i.project_id FROM issues i JOIN projects p ON p.id = i.project_id \
         WHERE i.id = ? AND p.organization_id = ?",
        vec![issue_id.into(), organization_id.into()],
    )
    .await?;
    let Some(row) = found.first() else {
        return Ok(false);
    };
    // Like a merge: no batch of the project is between mapping a hash to this issue and
    // inserting its events (PostgreSQL; SQLite's write lock already excludes it).
    super::merge::lock_project(&txn, row.try_get("", "project_id")?).await?;
    for table in ["issue_tag_values", "issue_hashes", "events"] {
        execute(
            &txn,
            &format!("DELETE FROM {table} WHERE issue_id = ?"),
            vec![issue_id.into()],
        )
        .await?;
    }
    execute(
        &txn,
        "DELETE FROM issues WHERE id = ?",
        vec![issue_id.into()],
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}
