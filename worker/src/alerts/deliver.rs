//! Sending: workers claim due rows of the notification log with a lease, render and mail
//! them, and record what happened. A failed send is retried with exponential backoff; a
//! worker that dies mid-send loses its lease and another one sends the email again (the
//! Message-ID stays the same, so mail systems can tell the copies apart).

use std::time::Duration;

use faultline_core::config::{AlertSettings, Config};
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult};
use tokio::sync::Notify;

use super::content::{self, AlertView, DigestLine, DigestView, Rendered};
use super::mailer::{Mailer, SendError};
use super::{dispatch, status, unsubscribe};
use crate::sql::stmt;
use crate::store::NotificationKind;
use faultline_core::protocol::event::Event;

/// Rows sent per round.
const BATCH: u64 = 20;

static WAKE: Notify = Notify::const_new();

/// Tells this process's alert loop that new outbox rows were committed.
pub fn wake() {
    WAKE.notify_one();
}

/// What delivering alerts needs; cheap to clone.
#[derive(Clone)]
pub struct AlertContext {
    pub db: DatabaseConnection,
    pub settings: AlertSettings,
    pub mailer: Mailer,
    /// `FAULTLINE_URL` without the trailing slash.
    pub base_url: String,
    pub jaeger_url: String,
    pub secret_key: String,
}

impl AlertContext {
    /// Builds the context from the configuration (checks the SMTP URL and sender).
    pub fn new(db: DatabaseConnection, config: &Config) -> anyhow::Result<AlertContext> {
        Ok(AlertContext {
            db,
            settings: config.alerts.clone(),
            mailer: Mailer::from_config(config)?,
            base_url: config.public_url.as_str().trim_end_matches('/').to_string(),
            jaeger_url: config.jaeger_url.trim_end_matches('/').to_string(),
            secret_key: config.secret_key.clone(),
        })
    }

    /// The link that unsubscribes `email` from the project's alerts.
    pub fn unsubscribe_url(&self, project_id: i64, email: &str) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.base_url,
            unsubscribe::token(&self.secret_key, project_id, email)
        )
    }

    /// The issue page.
    pub fn issue_url(&self, org_slug: &str, issue_id: i64) -> String {
        format!(
            "{}/organizations/{org_slug}/issues/{issue_id}/",
            self.base_url
        )
    }
}

/// Delivers alerts until the process ends: dispatch the outbox, queue due digests, send
/// what is due; then wait for a wake-up or the poll interval.
pub async fn run_loop(ctx: AlertContext) {
    let poll = Duration::from_millis(ctx.settings.poll_ms.max(50) as u64);
    loop {
        if let Err(e) = round(&ctx).await {
            tracing::warn!(error = %e, "alert delivery round failed; retrying");
        }
        tokio::select! {
            _ = WAKE.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round of everything that is due; public so tests can drive delivery step by step.
pub async fn round(ctx: &AlertContext) -> Result<(), DbErr> {
    let configured = ctx.mailer.is_configured();
    dispatch::dispatch_pending(&ctx.db, &ctx.settings, configured).await?;
    dispatch::queue_due_digests(&ctx.db, configured, super::now_ms()).await?;
    // Keep sending while there is a full batch waiting.
    while send_due(ctx).await? >= BATCH as usize {}
    Ok(())
}

/// A claimed row of the notification log.
struct Claimed {
    id: i64,
    project_id: i64,
    issue_id: Option<i64>,
    event_id: Option<String>,
    kind: String,
    recipient: String,
    attempts: i64,
    reason: Option<String>,
}

/// Sends the due rows this worker can claim; returns how many it handled.
pub async fn send_due(ctx: &AlertContext) -> Result<usize, DbErr> {
    let db = &ctx.db;
    let backend = db.get_database_backend();
    let now = super::now_ms();
    let due: Vec<(i64, String, i64)> = db
        .query_all_raw(stmt(
            backend,
            &format!(
                "SELECT id, status, next_attempt_at FROM notifications \
                 WHERE status IN ('queued', 'failed', 'sending') AND next_attempt_at <= ? \
                 ORDER BY next_attempt_at LIMIT {BATCH}"
            ),
            vec![now.into()],
        ))
        .await?
        .iter()
        .filter_map(|r| {
            Some((
                r.try_get("", "id").ok()?,
                r.try_get("", "status").ok()?,
                r.try_get("", "next_attempt_at").ok()?,
            ))
        })
        .collect();
    let lease = now + ctx.settings.smtp_timeout_ms * 4 + 30_000;
    let mut handled = 0;
    for (id, old_status, old_next) in due {
        // The lease: only the worker whose UPDATE matched the row as it was read sends it.
        let claimed = db
            .execute_raw(stmt(
                backend,
                "UPDATE notifications SET status = 'sending', next_attempt_at = ?, \
                 attempts = attempts + 1 WHERE id = ? AND status = ? AND next_attempt_at = ?",
                vec![lease.into(), id.into(), old_status.into(), old_next.into()],
            ))
            .await?;
        if claimed.rows_affected() == 0 {
            continue;
        }
        let Some(row) = db
            .query_one_raw(stmt(
                backend,
                "SELECT id, project_id, issue_id, event_id, kind, recipient, attempts, reason \
                 FROM notifications WHERE id = ?",
                vec![id.into()],
            ))
            .await?
        else {
            continue;
        };
        let claimed = read_claimed(&row)?;
        handled += 1;
        let outcome = match compose(ctx, &claimed).await {
            Ok(Some((subject, message))) => ctx.mailer.send(message).await.map(|()| subject),
            Ok(None) => Err(SendError {
                message: "the issue or project no longer exists".into(),
                permanent: true,
            }),
            Err(e) => Err(e),
        };
        record_outcome(ctx, &claimed, outcome).await?;
    }
    Ok(handled)
}

fn read_claimed(row: &QueryResult) -> Result<Claimed, DbErr> {
    Ok(Claimed {
        id: row.try_get("", "id")?,
        project_id: row.try_get("", "project_id")?,
        issue_id: row.try_get("", "issue_id")?,
        event_id: row.try_get("", "event_id")?,
        kind: row.try_get("", "kind")?,
        recipient: row.try_get("", "recipient")?,
        attempts: row
            .try_get::<i32>("", "attempts")
            .map(i64::from)
            .or_else(|_| row.try_get::<i64>("", "attempts"))?,
        reason: row.try_get("", "reason")?,
    })
}

async fn record_outcome(
    ctx: &AlertContext,
    n: &Claimed,
    outcome: Result<String, SendError>,
) -> Result<(), DbErr> {
    let backend = ctx.db.get_database_backend();
    let now = super::now_ms();
    match outcome {
        Ok(subject) => {
            // Keep what went wrong before: the log shows that it took retries.
            let reason = (n.attempts > 1).then(|| {
                format!(
                    "delivered on attempt {}; last failure: {}",
                    n.attempts,
                    n.reason.as_deref().unwrap_or("-")
                )
            });
            ctx.db
                .execute_raw(stmt(
                    backend,
                    "UPDATE notifications SET status = 'sent', sent_at = ?, next_attempt_at = NULL, \
                     subject = ?, reason = ? WHERE id = ?",
                    vec![now.into(), subject.into(), reason.into(), n.id.into()],
                ))
                .await?;
            tracing::info!(notification = n.id, kind = %n.kind, "alert email sent");
        }
        Err(e) => {
            let give_up = e.permanent || n.attempts >= ctx.settings.max_attempts;
            let (next, reason) = if give_up {
                (
                    None,
                    format!("gave up after {} attempt(s): {}", n.attempts, e.message),
                )
            } else {
                (
                    Some(now + super::throttle::retry_delay_ms(&ctx.settings, n.attempts)),
                    e.message.clone(),
                )
            };
            let status = if e.message == "SMTP not configured" {
                status::NOT_SENT
            } else {
                status::FAILED
            };
            ctx.db
                .execute_raw(stmt(
                    backend,
                    "UPDATE notifications SET status = ?, next_attempt_at = ?, reason = ? WHERE id = ?",
                    vec![status.into(), next.into(), reason.into(), n.id.into()],
                ))
                .await?;
            tracing::warn!(notification = n.id, error = %e.message, retry = !give_up, "alert email failed");
        }
    }
    Ok(())
}

fn permanent(message: impl Into<String>) -> SendError {
    SendError {
        message: message.into(),
        permanent: true,
    }
}

/// Builds the message of a claimed row; `None` when what it is about is gone.
async fn compose(ctx: &AlertContext, n: &Claimed) -> Result<Option<(String, Message)>, SendError> {
    let to: Mailbox = n
        .recipient
        .parse()
        .map_err(|e| permanent(format!("{:?} is not an email address: {e}", n.recipient)))?;
    let db_err = |e: DbErr| SendError {
        message: format!("reading the alert's data failed: {e}"),
        permanent: false,
    };
    let Some(project) = load_project(&ctx.db, n.project_id).await.map_err(db_err)? else {
        return Ok(None);
    };
    let unsubscribe_url = ctx.unsubscribe_url(n.project_id, &n.recipient);
    let rendered = if n.kind == "digest" {
        let lines = digest_lines(ctx, &project, n.id).await.map_err(db_err)?;
        if lines.is_empty() {
            return Ok(None);
        }
        content::render_digest(&DigestView {
            project: project.slug.clone(),
            cap: ctx.settings.hourly_cap,
            lines,
            project_url: format!("{}/", ctx.base_url),
            unsubscribe_url: unsubscribe_url.clone(),
        })
    } else if let Some(kind) = NotificationKind::from_name(&n.kind) {
        let Some(issue_id) = n.issue_id else {
            return Ok(None);
        };
        let Some(view) = alert_view(
            ctx,
            &project,
            issue_id,
            n.event_id.as_deref(),
            kind,
            &unsubscribe_url,
        )
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        content::render_alert(&view)
    } else {
        content::render_test(&ctx.base_url)
    }
    .map_err(|e| permanent(format!("rendering the email failed: {e}")))?;
    let message = build_message(ctx, n.id, to, &rendered, Some(&unsubscribe_url))?;
    Ok(Some((rendered.subject, message)))
}

/// Puts a rendered email into a multipart message with our headers.
pub fn build_message(
    ctx: &AlertContext,
    notification_id: i64,
    to: Mailbox,
    rendered: &Rendered,
    unsubscribe_url: Option<&str>,
) -> Result<Message, SendError> {
    let host = url::Url::parse(&ctx.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "faultline.localhost".into());
    let mut message = Message::builder()
        .from(ctx.mailer.from.clone())
        .to(to)
        // Already free of control characters; lettre encodes the rest.
        .subject(content::sanitize_subject(&rendered.subject))
        .message_id(Some(format!(
            "<faultline.notification.{notification_id}.{}@{host}>",
            &hex_tail(&ctx.secret_key)
        )))
        .date_now()
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(|e| permanent(format!("building the email failed: {e}")))?;
    if let Some(url) = unsubscribe_url {
        let headers = message.headers_mut();
        // RFC 2369 and RFC 8058: mail clients offer a one-click unsubscribe.
        for (name, value) in [
            ("List-Unsubscribe", format!("<{url}>")),
            (
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_string(),
            ),
        ] {
            if let Ok(name) = HeaderName::new_from_ascii(name.to_string()) {
                headers.insert_raw(HeaderValue::new(name, value));
            }
        }
    }
    Ok(message)
}

/// A short, stable, non-secret tag of this installation for Message-IDs.
fn hex_tail(secret: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("message-id:{secret}").as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

struct ProjectFacts {
    slug: String,
    org_slug: String,
}

async fn load_project(
    db: &DatabaseConnection,
    project_id: i64,
) -> Result<Option<ProjectFacts>, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(stmt(
            backend,
            "SELECT p.slug, o.slug AS org_slug FROM projects p \
             JOIN organizations o ON o.id = p.organization_id WHERE p.id = ?",
            vec![project_id.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some(ProjectFacts {
            slug: r.try_get("", "slug")?,
            org_slug: r.try_get("", "org_slug")?,
        }),
        None => None,
    })
}

/// Reads the issue and the event that caused the alert (or, when retention removed it,
/// the issue's newest event).
async fn alert_view(
    ctx: &AlertContext,
    project: &ProjectFacts,
    issue_id: i64,
    event_id: Option<&str>,
    kind: NotificationKind,
    unsubscribe_url: &str,
) -> Result<Option<AlertView>, DbErr> {
    let db = &ctx.db;
    let backend = db.get_database_backend();
    let Some(issue) = db
        .query_one_raw(stmt(
            backend,
            "SELECT short_id, title, culprit, level, first_seen, last_seen, times_seen \
             FROM issues WHERE id = ?",
            vec![issue_id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let mut event_row = None;
    if let Some(event_id) = event_id {
        event_row = db
            .query_one_raw(stmt(
                backend,
                "SELECT environment, release, payload FROM events WHERE project_id = \
                 (SELECT project_id FROM issues WHERE id = ?) AND event_id = ?",
                vec![issue_id.into(), event_id.to_string().into()],
            ))
            .await?;
    }
    if event_row.is_none() {
        event_row = db
            .query_one_raw(stmt(
                backend,
                "SELECT environment, release, payload FROM events WHERE issue_id = ? \
                 ORDER BY timestamp DESC, id DESC LIMIT 1",
                vec![issue_id.into()],
            ))
            .await?;
    }
    let (environment, release, event) = match &event_row {
        Some(r) => {
            let payload: Vec<u8> = r.try_get("", "payload")?;
            let event = faultline_core::compress::unzstd(&payload, 64 * 1024 * 1024)
                .ok()
                .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
                .and_then(Event::from_value);
            (
                r.try_get::<Option<String>>("", "environment")?,
                r.try_get::<Option<String>>("", "release")?,
                event,
            )
        }
        None => (None, None, None),
    };
    let frames = event
        .as_ref()
        .map(|e| content::top_frames(e, content::MAX_FRAMES))
        .unwrap_or_default();
    let trace_url = event
        .as_ref()
        .and_then(|e| e.trace_id())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|id| format!("{}/trace/{id}", ctx.jaeger_url));
    let message = event
        .as_ref()
        .and_then(|e| e.message())
        .filter(|m| event.as_ref().is_none_or(|e| e.exceptions().is_empty()) && !m.is_empty())
        .map(|m| m.chars().take(1000).collect());
    let short_id: i64 = issue.try_get("", "short_id")?;
    Ok(Some(AlertView {
        kind_label: kind.label().into(),
        is_new: kind == NotificationKind::NewIssue,
        project: project.slug.clone(),
        short_id: format!("{}-{short_id}", project.slug.to_uppercase()),
        title: issue.try_get("", "title")?,
        culprit: issue
            .try_get::<Option<String>>("", "culprit")?
            .filter(|c| !c.is_empty()),
        level: issue.try_get("", "level")?,
        first_seen: content::format_time(issue.try_get("", "first_seen")?),
        last_seen: content::format_time(issue.try_get("", "last_seen")?),
        times_seen: issue.try_get("", "times_seen")?,
        environment,
        release,
        message,
        frames,
        issue_url: ctx.issue_url(&project.org_slug, issue_id),
        trace_url,
        unsubscribe_url: unsubscribe_url.to_string(),
    }))
}

async fn digest_lines(
    ctx: &AlertContext,
    project: &ProjectFacts,
    digest_id: i64,
) -> Result<Vec<DigestLine>, DbErr> {
    let backend = ctx.db.get_database_backend();
    let rows = ctx
        .db
        .query_all_raw(stmt(
            backend,
            "SELECT n.kind, n.created_at, n.issue_id, i.title FROM notifications n \
             JOIN issues i ON i.id = n.issue_id WHERE n.digest_id = ? ORDER BY n.id",
            vec![digest_id.into()],
        ))
        .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: String = r.try_get("", "kind")?;
        let issue_id: i64 = r.try_get("", "issue_id")?;
        lines.push(DigestLine {
            kind_label: NotificationKind::from_name(&kind)
                .map(|k| k.label().to_string())
                .unwrap_or(kind),
            title: r.try_get("", "title")?,
            when: content::format_time(r.try_get("", "created_at")?),
            issue_url: ctx.issue_url(&project.org_slug, issue_id),
        });
    }
    Ok(lines)
}

/// Sends the test email to `to` now (the CLI and the settings page); when a project is
/// named, the attempt is written to its notification log.
pub async fn send_test_email(
    ctx: &AlertContext,
    to: &str,
    project_id: Option<i64>,
) -> Result<(), SendError> {
    let mailbox: Mailbox = to
        .trim()
        .parse()
        .map_err(|e| permanent(format!("{to:?} is not an email address: {e}")))?;
    let rendered = content::render_test(&ctx.base_url)
        .map_err(|e| permanent(format!("rendering the email failed: {e}")))?;
    let result = if ctx.mailer.is_configured() {
        let message = build_message(ctx, 0, mailbox, &rendered, None)?;
        ctx.mailer.send(message).await
    } else {
        Err(permanent("SMTP not configured"))
    };
    if let Some(project_id) = project_id {
        let (status, reason) = match &result {
            Ok(()) => (status::SENT, None),
            Err(e) if e.message == "SMTP not configured" => {
                (status::NOT_SENT, Some(e.message.clone()))
            }
            Err(e) => (status::FAILED, Some(e.message.clone())),
        };
        let backend = ctx.db.get_database_backend();
        let now = super::now_ms();
        let logged = ctx
            .db
            .execute_raw(stmt(
                backend,
                "INSERT INTO notifications (project_id, kind, recipient, status, reason, subject, \
                 attempts, sent_at, created_at) VALUES (?, 'test', ?, ?, ?, ?, 1, ?, ?)",
                vec![
                    project_id.into(),
                    to.trim().to_lowercase().into(),
                    status.into(),
                    reason.into(),
                    rendered.subject.clone().into(),
                    result.is_ok().then_some(now).into(),
                    now.into(),
                ],
            ))
            .await;
        if let Err(e) = logged {
            tracing::warn!(error = %e, "could not log the test email");
        }
    }
    result
}

/// One row of the notification log, as the settings page shows it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub id: i64,
    pub kind: String,
    pub recipient: String,
    pub status: String,
    pub reason: Option<String>,
    pub subject: Option<String>,
    pub issue_id: Option<i64>,
    pub issue_title: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
}

/// The newest entries of a project's notification log.
pub async fn recent_log(
    db: &impl ConnectionTrait,
    project_id: i64,
    limit: u64,
) -> Result<Vec<LogEntry>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            backend,
            &format!(
                "SELECT n.id, n.kind, n.recipient, n.status, n.reason, n.subject, n.issue_id, \
                 n.attempts, n.created_at, i.title FROM notifications n \
                 LEFT JOIN issues i ON i.id = n.issue_id WHERE n.project_id = ? \
                 ORDER BY n.created_at DESC, n.id DESC LIMIT {}",
                limit.min(1000)
            ),
            vec![project_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LogEntry {
                id: r.try_get("", "id")?,
                kind: r.try_get("", "kind")?,
                recipient: r.try_get("", "recipient")?,
                status: r.try_get("", "status")?,
                reason: r.try_get("", "reason")?,
                subject: r.try_get("", "subject")?,
                issue_id: r.try_get("", "issue_id")?,
                issue_title: r.try_get("", "title")?,
                attempts: r
                    .try_get::<i32>("", "attempts")
                    .map(i64::from)
                    .or_else(|_| r.try_get::<i64>("", "attempts"))?,
                created_at: r.try_get("", "created_at")?,
            })
        })
        .collect()
}
