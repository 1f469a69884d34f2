//! Email alerts: the right people hear about new issues, regressions and issues that woke
//! up from being ignored — once, and never a flood.
//!
//! The way of an alert:
//! 1. [`outbox`]: the event store writes one outbox row per issue state change inside the
//!    transaction that stores the events, so the change commits (or not) with them.
//! 2. [`dispatch`]: a worker claims an outbox row (a conditional UPDATE, so exactly one
//!    worker does), applies the project's [`rules`] and the [`throttle`], and writes one
//!    row per recipient to the notification log (`notifications`): queued, suppressed, or
//!    not sent because SMTP is not configured. Cap-suppressed alerts later become one
//!    digest per recipient.
//! 3. [`deliver`]: a worker claims due log rows with a lease, renders them ([`content`]),
//!    sends them over SMTP ([`mailer`]) and records the outcome; failures are retried with
//!    exponential backoff.
//!
//! The notification log is therefore the delivery queue too: one table that says what was
//! decided and what happened, on SQLite and PostgreSQL alike.

pub mod content;
pub mod deliver;
pub mod dispatch;
pub mod mailer;
pub mod outbox;
pub mod rules;
pub mod throttle;
pub mod unsubscribe;

use crate::store::NotificationKind;

pub use deliver::{AlertContext, run_loop, wake};

impl NotificationKind {
    /// The name stored in `alert_outbox.kind` and `notifications.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::NewIssue => "new_issue",
            NotificationKind::Regression => "regression",
            NotificationKind::Unignored => "unignored",
            NotificationKind::MonitorFailure => "monitor_failure",
        }
    }

    /// Reads a stored kind name.
    pub fn from_name(name: &str) -> Option<NotificationKind> {
        match name {
            "new_issue" => Some(NotificationKind::NewIssue),
            "regression" => Some(NotificationKind::Regression),
            "unignored" => Some(NotificationKind::Unignored),
            "monitor_failure" => Some(NotificationKind::MonitorFailure),
            _ => None,
        }
    }

    /// What a person reads in the subject and the log.
    pub fn label(self) -> &'static str {
        match self {
            NotificationKind::NewIssue => "New issue",
            NotificationKind::Regression => "Regression",
            NotificationKind::Unignored => "Issue no longer ignored",
            NotificationKind::MonitorFailure => "Monitor failure",
        }
    }
}

/// Log statuses of the notification log.
pub mod status {
    /// Waiting to be sent (`next_attempt_at` says when).
    pub const QUEUED: &str = "queued";
    /// A worker holds it until `next_attempt_at` (its lease).
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    /// The last attempt failed: retried at `next_attempt_at`, or given up when that is NULL.
    pub const FAILED: &str = "failed";
    /// Throttled: `throttle` says by what (cooldown | cap).
    pub const SUPPRESSED: &str = "suppressed";
    /// Recorded but not mailed: SMTP is not configured.
    pub const NOT_SENT: &str = "not_sent";
    /// No rule matched, or a rule matched but had nobody to mail.
    pub const SKIPPED: &str = "skipped";
}

/// Statuses that mean "this alert was (to be) mailed": they count for the cooldown and
/// the hourly cap.
pub(crate) const MAILED_STATUSES: &str = "('queued', 'sending', 'sent', 'failed', 'not_sent')";
/// Kinds that are alerts about one issue (not digests or test emails).
pub(crate) const ALERT_KINDS: &str = "('new_issue', 'regression', 'unignored')";

/// Current time as Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How long the notification log keeps entries, and dispatched outbox rows are kept.
pub const LOG_RETENTION_MS: i64 = 90 * 86_400_000;
pub const OUTBOX_RETENTION_MS: i64 = 7 * 86_400_000;

/// Deletes old notification log entries (never ones still waiting to be sent, nor the
/// cap-suppressed ones a digest has yet to summarise) and dispatched outbox rows; run
/// with retention. Returns the rows removed.
pub async fn prune(db: &sea_orm::DatabaseConnection, now: i64) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let backend = db.get_database_backend();
    let log = db
        .execute_raw(crate::sql::stmt(
            backend,
            "DELETE FROM notifications WHERE created_at < ? AND next_attempt_at IS NULL \
             AND NOT (COALESCE(throttle, '') = 'cap' AND digest_id IS NULL)",
            vec![(now - LOG_RETENTION_MS).into()],
        ))
        .await?;
    let outbox = db
        .execute_raw(crate::sql::stmt(
            backend,
            "DELETE FROM alert_outbox WHERE dispatched_at IS NOT NULL AND dispatched_at < ?",
            vec![(now - OUTBOX_RETENTION_MS).into()],
        ))
        .await?;
    Ok(log.rows_affected() + outbox.rows_affected())
}
