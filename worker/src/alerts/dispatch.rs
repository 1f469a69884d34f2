//! Turning outbox rows into notification rows: rules, recipients, throttling. Each outbox
//! row is claimed and fanned out in one transaction, so it is dispatched exactly once
//! however many workers look at it, and a crash in between leaves it pending.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait, Value,
};

use super::rules::{self, TriggerFacts};
use super::throttle::{self, Decision};
use super::{ALERT_KINDS, MAILED_STATUSES, status};
use crate::sql::stmt;
use crate::store::NotificationKind;
use faultline_core::config::AlertSettings;

/// Outbox rows handled per round.
const BATCH: u64 = 100;

/// Dispatches every pending outbox row; returns how many this worker dispatched.
pub async fn dispatch_pending(
    db: &DatabaseConnection,
    settings: &AlertSettings,
    smtp_configured: bool,
) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let ids: Vec<i64> = db
        .query_all_raw(stmt(
            backend,
            &format!(
                "SELECT id FROM alert_outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT {BATCH}"
            ),
            vec![],
        ))
        .await?
        .iter()
        .filter_map(|r| r.try_get("", "id").ok())
        .collect();
    let mut done = 0;
    for id in ids {
        if dispatch_one(db, settings, smtp_configured, id, super::now_ms()).await? {
            done += 1;
        }
    }
    Ok(done)
}

/// A notification row to write.
struct LogRow<'a> {
    project_id: i64,
    issue_id: Option<i64>,
    rule_id: Option<i64>,
    outbox_id: Option<i64>,
    event_id: Option<&'a str>,
    kind: &'a str,
    recipient: &'a str,
    status: &'a str,
    reason: Option<String>,
    next_attempt_at: Option<i64>,
    throttle: Option<&'a str>,
    created_at: i64,
}

async fn insert_log(txn: &DatabaseTransaction, row: LogRow<'_>) -> Result<i64, DbErr> {
    let backend = txn.get_database_backend();
    let values: Vec<Value> = vec![
        row.project_id.into(),
        row.issue_id.into(),
        row.rule_id.into(),
        row.outbox_id.into(),
        row.event_id.map(str::to_string).into(),
        row.kind.into(),
        row.recipient.into(),
        row.status.into(),
        row.reason.into(),
        row.next_attempt_at.into(),
        row.throttle.map(str::to_string).into(),
        row.created_at.into(),
    ];
    let r = txn
        .query_one_raw(stmt(
            backend,
            "INSERT INTO notifications (project_id, issue_id, rule_id, outbox_id, event_id, kind, \
             recipient, status, reason, next_attempt_at, throttle, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("notification insert returned no id".into()))?;
    r.try_get("", "id")
}

/// Serializes dispatching per project: on PostgreSQL the upsert holds the project's row
/// lock until commit, so two workers never both read "under the cap" for one project.
/// (SQLite has one writer anyway.)
async fn lock_project(txn: &DatabaseTransaction, project_id: i64, now: i64) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    txn.execute_raw(stmt(
        backend,
        "INSERT INTO alert_project_state (project_id, digest_due_at, updated_at) VALUES (?, NULL, ?) \
         ON CONFLICT (project_id) DO UPDATE SET updated_at = excluded.updated_at",
        vec![project_id.into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// Dispatches one outbox row at `now`; false when another worker already did.
pub async fn dispatch_one(
    db: &DatabaseConnection,
    settings: &AlertSettings,
    smtp_configured: bool,
    outbox_id: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    // The claim is the transaction's first statement: on SQLite it takes the write lock
    // at once; on PostgreSQL a second worker's claim waits for ours and then finds the
    // row dispatched.
    let claimed = txn
        .execute_raw(stmt(
            backend,
            "UPDATE alert_outbox SET dispatched_at = ? WHERE id = ? AND dispatched_at IS NULL",
            vec![now.into(), outbox_id.into()],
        ))
        .await?;
    if claimed.rows_affected() == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    let Some(row) = txn
        .query_one_raw(stmt(
            backend,
            "SELECT project_id, issue_id, kind, event_id, level, environment, release \
             FROM alert_outbox WHERE id = ?",
            vec![outbox_id.into()],
        ))
        .await?
    else {
        txn.rollback().await?;
        return Ok(false);
    };
    let project_id: i64 = row.try_get("", "project_id")?;
    let issue_id: i64 = row.try_get("", "issue_id")?;
    let kind_name: String = row.try_get("", "kind")?;
    let event_id: String = row.try_get("", "event_id")?;
    let level: String = row.try_get("", "level")?;
    let environment: Option<String> = row.try_get("", "environment")?;
    let release: Option<String> = row.try_get("", "release")?;
    let Some(kind) = NotificationKind::from_name(&kind_name) else {
        // Written by a newer version of us; leave it dispatched rather than loop on it.
        txn.commit().await?;
        return Ok(true);
    };
    lock_project(&txn, project_id, now).await?;

    let log = |recipient: &'static str, reason: String| LogRow {
        project_id,
        issue_id: Some(issue_id),
        rule_id: None,
        outbox_id: Some(outbox_id),
        event_id: None,
        kind: kind.as_str(),
        recipient,
        status: status::SKIPPED,
        reason: Some(reason),
        next_attempt_at: None,
        throttle: None,
        created_at: now,
    };

    let facts = TriggerFacts {
        kind,
        level: &level,
        environment: environment.as_deref(),
        release: release.as_deref(),
    };
    let all_rules = rules::load(&txn, project_id).await?;
    let matched: Vec<&rules::AlertRule> = all_rules.iter().filter(|r| r.matches(&facts)).collect();
    if matched.is_empty() {
        let reason = format!(
            "no alert rule matches ({}, level {}, environment {}, release {})",
            kind.label().to_lowercase(),
            level,
            environment.as_deref().unwrap_or("-"),
            release.as_deref().unwrap_or("-"),
        );
        insert_log(&txn, log("", reason)).await?;
        txn.commit().await?;
        return Ok(true);
    }
    let recipients = rules::recipients(&txn, project_id, &matched).await?;
    if recipients.is_empty() {
        let reason = "no recipients: no members or extra addresses, or all unsubscribed".into();
        insert_log(&txn, log("", reason)).await?;
        txn.commit().await?;
        return Ok(true);
    }

    let last_issue_alert: Option<i64> = txn
        .query_one_raw(stmt(
            backend,
            &format!(
                "SELECT MAX(created_at) AS last FROM notifications WHERE issue_id = ? \
                 AND kind IN {ALERT_KINDS} AND status IN {MAILED_STATUSES}"
            ),
            vec![issue_id.into()],
        ))
        .await?
        .and_then(|r| r.try_get::<Option<i64>>("", "last").ok().flatten());
    let alerts_in_window: i64 = txn
        .query_one_raw(stmt(
            backend,
            &format!(
                "SELECT COUNT(DISTINCT outbox_id) AS n FROM notifications WHERE project_id = ? \
                 AND created_at > ? AND kind IN {ALERT_KINDS} AND status IN {MAILED_STATUSES}"
            ),
            vec![project_id.into(), (now - settings.cap_window_ms).into()],
        ))
        .await?
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
    let decision = throttle::decide(settings, now, last_issue_alert, alerts_in_window);

    let (status, reason, next, throttled) = match decision {
        Decision::Send if smtp_configured => (status::QUEUED, None, Some(now), None),
        Decision::Send => (
            status::NOT_SENT,
            Some("SMTP not configured".to_string()),
            None,
            None,
        ),
        Decision::Cooldown { last_alert_ms } => (
            status::SUPPRESSED,
            Some(format!(
                "cooldown: this issue was alerted at {} (one email per issue per {} min)",
                super::content::format_time(last_alert_ms),
                settings.cooldown_ms / 60_000
            )),
            None,
            Some("cooldown"),
        ),
        Decision::Cap { cap } => (
            status::SUPPRESSED,
            Some(format!(
                "hourly cap of {cap} alerts reached; summarised in a digest"
            )),
            None,
            Some("cap"),
        ),
    };
    for (recipient, rule_id) in &recipients {
        insert_log(
            &txn,
            LogRow {
                project_id,
                issue_id: Some(issue_id),
                rule_id: Some(*rule_id),
                outbox_id: Some(outbox_id),
                event_id: Some(&event_id),
                kind: kind.as_str(),
                recipient,
                status,
                reason: reason.clone(),
                next_attempt_at: next,
                throttle: throttled,
                created_at: now,
            },
        )
        .await?;
    }
    if matches!(decision, Decision::Cap { .. }) {
        // The digest goes out one window after the first alert it holds back.
        txn.execute_raw(stmt(
            backend,
            "UPDATE alert_project_state SET digest_due_at = COALESCE(digest_due_at, ?) \
             WHERE project_id = ?",
            vec![(now + settings.cap_window_ms).into(), project_id.into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Turns the cap-suppressed alerts of every project whose digest is due into one digest
/// row per recipient; returns how many digests were queued.
pub async fn queue_due_digests(
    db: &DatabaseConnection,
    smtp_configured: bool,
    now: i64,
) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let due: Vec<(i64, i64)> = db
        .query_all_raw(stmt(
            backend,
            "SELECT project_id, digest_due_at FROM alert_project_state \
             WHERE digest_due_at IS NOT NULL AND digest_due_at <= ?",
            vec![now.into()],
        ))
        .await?
        .iter()
        .filter_map(|r| {
            Some((
                r.try_get("", "project_id").ok()?,
                r.try_get("", "digest_due_at").ok()?,
            ))
        })
        .collect();
    let mut queued = 0;
    for (project_id, due_at) in due {
        let txn = db.begin().await?;
        let claimed = txn
            .execute_raw(stmt(
                backend,
                "UPDATE alert_project_state SET digest_due_at = NULL, updated_at = ? \
                 WHERE project_id = ? AND digest_due_at = ?",
                vec![now.into(), project_id.into(), due_at.into()],
            ))
            .await?;
        if claimed.rows_affected() == 0 {
            txn.rollback().await?;
            continue;
        }
        let held: Vec<(i64, String)> = txn
            .query_all_raw(stmt(
                backend,
                "SELECT id, recipient FROM notifications WHERE project_id = ? \
                 AND throttle = 'cap' AND digest_id IS NULL ORDER BY id",
                vec![project_id.into()],
            ))
            .await?
            .iter()
            .filter_map(|r| Some((r.try_get("", "id").ok()?, r.try_get("", "recipient").ok()?)))
            .collect();
        let mut by_recipient: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for (id, recipient) in held {
            by_recipient.entry(recipient).or_default().push(id);
        }
        for (recipient, ids) in by_recipient {
            let (status, reason, next) = if smtp_configured {
                (status::QUEUED, None, Some(now))
            } else {
                (
                    status::NOT_SENT,
                    Some("SMTP not configured".to_string()),
                    None,
                )
            };
            let digest_id = insert_log(
                &txn,
                LogRow {
                    project_id,
                    issue_id: None,
                    rule_id: None,
                    outbox_id: None,
                    event_id: None,
                    kind: "digest",
                    recipient: &recipient,
                    status,
                    reason: reason.or(Some(format!("summarises {} alerts", ids.len()))),
                    next_attempt_at: next,
                    throttle: None,
                    created_at: now,
                },
            )
            .await?;
            for chunk in ids.chunks(500) {
                let (cond, mut list) = crate::sql::in_ids(backend, "id", chunk);
                let mut values: Vec<Value> = vec![digest_id.into()];
                values.append(&mut list);
                txn.execute_raw(stmt(
                    backend,
                    &format!("UPDATE notifications SET digest_id = ? WHERE {cond}"),
                    values,
                ))
                .await?;
            }
            queued += 1;
        }
        txn.commit().await?;
    }
    Ok(queued)
}
