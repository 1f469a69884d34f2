//! What people do to issues: change their status, delete them.

use sea_orm::{DatabaseConnection, DbErr, Value};

use super::activity::{self, Actor};
use super::state::{StatusChange, StatusDetails};
use crate::sql::{begin_write, execute, placeholders, query_all};

/// Changes the status of the issues `ids` that belong to a project of `organization_id`
/// (others are left alone), as the worker reads it back: resolved issues regress on their
/// next event, resolved-in-next-release ones on an event of a release made after the
/// resolution, ignored ones wake up after a time or a number of further events. Each issue
/// whose status or conditions change gets a timeline entry by `actor`, in the same
/// transaction. Returns how many issues it matched.
pub async fn set_status(
    db: &DatabaseConnection,
    organization_id: i64,
    ids: &[i64],
    change: &StatusChange,
    actor: &Actor,
    now: i64,
) -> Result<u64, DbErr> {
    let txn = begin_write(db).await?;
    let mut changed = 0;
    let mut entries = Vec::new();
    for chunk in ids.chunks(500) {
        let in_org = format!(
            "id IN ({}) AND project_id IN (SELECT id FROM projects WHERE organization_id = ?)",
            placeholders(chunk.len())
        );
        let mut scope: Vec<Value> = chunk.iter().map(|id| Value::from(*id)).collect();
        scope.push(organization_id.into());
        // The rows as they are: the timeline records only real changes, and per-issue
        // details depend on the release current at resolution (its last release) or the
        // count ignored events are counted from (its times_seen).
        let rows = query_all(
            &txn,
            &format!(
                "SELECT id, project_id, status, status_details, last_release, times_seen \
                 FROM issues WHERE {in_org}"
            ),
            scope.clone(),
        )
        .await?;
        let per_issue = change.per_issue();
        if !per_issue {
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
                &txn,
                &format!(
                    "UPDATE issues SET status = ?, status_details = ?, resolved_at = ? WHERE {in_org}"
                ),
                values,
            )
            .await?;
        }
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let last_release: Option<String> = row.try_get("", "last_release")?;
            let stored = change.stored(last_release, row.try_get("", "times_seen")?, now);
            let before = (
                row.try_get::<String>("", "status")?,
                StatusDetails::read(
                    row.try_get::<Option<String>>("", "status_details")?
                        .as_deref(),
                ),
            );
            if before
                != (
                    stored.status.to_string(),
                    stored.details.clone().unwrap_or_default(),
                )
            {
                entries.push(activity::status_entry(
                    id,
                    row.try_get("", "project_id")?,
                    change,
                    stored
                        .details
                        .as_ref()
                        .and_then(|d| d.resolved_release.as_deref()),
                ));
            }
            if !per_issue {
                continue;
            }
            changed += execute(
                &txn,
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
    activity::record(&txn, actor, &entries, now).await?;
    txn.commit().await?;
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
        "SELECT i.id FROM issues i JOIN projects p ON p.id = i.project_id \
         WHERE i.id = ? AND p.organization_id = ?",
        vec![issue_id.into(), organization_id.into()],
    )
    .await?;
    if found.is_empty() {
        return Ok(false);
    }
    for table in [
        "issue_tag_values",
        "issue_hashes",
        "events",
        "issue_activity",
    ] {
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
