//! An issue's timeline: who changed its status or assignee and when, the regressions the
//! worker found (with the release), merges, and comments (Markdown `note`s), in Sentry's
//! activity type names.
//!
//! Every change is recorded by the function that makes it, in the same transaction
//! ([`record`]): a status change without its entry, or an entry without its change, cannot
//! commit. "First seen" has no row: it is synthesized from `issues.first_seen` when the
//! timeline is read ([`list`]), as Sentry does (its id is `0`). A row per new issue would add
//! one insert per new issue to the worker's hot path (a burst of new issues is exactly when
//! the store is busiest) and would only repeat a column the issue already has.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Value};
use serde_json::{Value as Json, json};

use super::Issue;
use super::state::StatusChange;
use crate::sql::{array, begin_write, execute, placeholders, query_all, query_one};

/// Sentry's activity type names, as stored in `issue_activity.kind`.
pub mod kind {
    pub const FIRST_SEEN: &str = "first_seen";
    pub const SET_RESOLVED: &str = "set_resolved";
    /// Resolved in the next release (`data.inNextRelease`).
    pub const SET_RESOLVED_IN_RELEASE: &str = "set_resolved_in_release";
    pub const SET_UNRESOLVED: &str = "set_unresolved";
    pub const SET_IGNORED: &str = "set_ignored";
    pub const SET_REGRESSION: &str = "set_regression";
    pub const ASSIGNED: &str = "assigned";
    pub const UNASSIGNED: &str = "unassigned";
    pub const NOTE: &str = "note";
    pub const MERGE: &str = "merge";
}

/// The longest comment, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;

/// The newest entries a timeline shows (Sentry shows 100 too).
pub const TIMELINE_LIMIT: u64 = 100;

/// Who did something to an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user: their browser session, or a token they made on the settings page.
    User(i64),
    /// An organization token without an owner (made with the CLI), shown as this label:
    /// the organization's name when it acted.
    Organization(String),
    /// Faultline itself: a regression found when an event arrived.
    System,
}

impl Actor {
    fn columns(&self) -> (Option<i64>, Option<String>) {
        match self {
            Actor::User(id) => (Some(*id), None),
            Actor::Organization(label) => (None, Some(label.clone())),
            Actor::System => (None, None),
        }
    }
}

/// An entry to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewActivity {
    pub issue_id: i64,
    pub project_id: i64,
    /// One of [`kind`].
    pub kind: &'static str,
    /// Sentry's `data` object.
    pub data: Json,
}

/// Records `entries` by `actor` at `now`. Call it on the transaction that makes the change.
/// One statement: on PostgreSQL over `UNNEST` of one array per column (the same text and
/// plan for any number of rows); on SQLite multi-row `VALUES`, 500 rows per statement.
/// The worker calls it once per batch with every issue the batch reopened.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entries: &[NewActivity],
    now: i64,
) -> Result<(), DbErr> {
    if entries.is_empty() {
        return Ok(());
    }
    let (user_id, label) = actor.columns();
    if db.get_database_backend() == DbBackend::Postgres {
        use sea_orm::sea_query::ArrayType;
        let column = |f: &dyn Fn(&NewActivity) -> Value, ty: ArrayType| {
            array(ty, entries.iter().map(f).collect())
        };
        execute(
            db,
            "INSERT INTO issue_activity (issue_id, project_id, kind, user_id, actor, data, created_ms) \
             SELECT u.i, u.p, u.k, ?::bigint, ?::text, u.d, ?::bigint \
             FROM UNNEST(?::bigint[], ?::bigint[], ?::text[], ?::text[]) AS u(i, p, k, d)",
            vec![
                user_id.into(),
                label.into(),
                now.into(),
                column(&|e| e.issue_id.into(), ArrayType::BigInt),
                column(&|e| e.project_id.into(), ArrayType::BigInt),
                column(&|e| e.kind.into(), ArrayType::String),
                column(&|e| e.data.to_string().into(), ArrayType::String),
            ],
        )
        .await?;
        return Ok(());
    }
    for chunk in entries.chunks(500) {
        let rows = vec![format!("({})", placeholders(4)); chunk.len()].join(", ");
        let mut values: Vec<Value> = vec![user_id.into(), label.clone().into(), now.into()];
        for e in chunk {
            values.extend([
                e.issue_id.into(),
                e.project_id.into(),
                e.kind.into(),
                e.data.to_string().into(),
            ]);
        }
        execute(
            db,
            &format!(
                "INSERT INTO issue_activity (issue_id, project_id, kind, user_id, actor, data, created_ms) \
                 SELECT column1, column2, column3, ?, ?, column4, ? FROM (VALUES {rows})"
            ),
            values,
        )
        .await?;
    }
    Ok(())
}

/// The entry a status change writes, with Sentry's type and data.
pub fn status_entry(
    issue_id: i64,
    project_id: i64,
    change: &StatusChange,
    resolved_release: Option<&str>,
) -> NewActivity {
    let (kind, data) = match change {
        StatusChange::Resolved => (kind::SET_RESOLVED, json!({})),
        StatusChange::ResolvedInNextRelease => (
            kind::SET_RESOLVED_IN_RELEASE,
            // Sentry writes an empty `version` until the next release exists.
            json!({"version": "", "inNextRelease": true, "current_release_version": resolved_release}),
        ),
        StatusChange::Unresolved => (kind::SET_UNRESOLVED, json!({})),
        StatusChange::Ignored { until, count } => {
            let mut d = json!({});
            if let Some(t) = until {
                d["ignoreUntil"] = json!(iso(*t));
            }
            if let Some(n) = count {
                d["ignoreCount"] = json!(n);
            }
            (kind::SET_IGNORED, d)
        }
    };
    NewActivity {
        issue_id,
        project_id,
        kind,
        data,
    }
}

/// Unix ms as RFC 3339 with milliseconds, as Sentry's data carries times.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// `0` for the synthesized "first seen".
    pub id: i64,
    pub issue_id: i64,
    pub kind: String,
    /// The user who did it, with their email (the user may have been deleted since: then
    /// the id stays and the email is gone).
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub user_created: Option<i64>,
    /// The label of an organization token without an owner.
    pub actor: Option<String>,
    pub data: Json,
    pub created_ms: i64,
    pub edited_ms: Option<i64>,
}

impl Activity {
    /// Who did it, as the pages show it.
    pub fn who(&self) -> String {
        match (&self.user_email, &self.actor, self.user_id) {
            (Some(email), _, _) => email.clone(),
            (None, Some(label), _) => label.clone(),
            (None, None, Some(id)) => format!("user {id} (deleted)"),
            (None, None, None) => "Faultline".into(),
        }
    }

    /// A note's text (empty for other kinds).
    pub fn text(&self) -> &str {
        self.data.get("text").and_then(Json::as_str).unwrap_or("")
    }

    /// Whether `actor` wrote this note: the same user, or — for notes of organization
    /// tokens without an owner — any such token of the organization.
    pub fn written_by(&self, actor: &Actor) -> bool {
        match actor {
            Actor::User(id) => self.user_id == Some(*id),
            Actor::Organization(_) => self.user_id.is_none() && self.actor.is_some(),
            Actor::System => false,
        }
    }

    fn from_row(row: &QueryResult) -> Result<Activity, DbErr> {
        let data: Option<String> = row.try_get("", "data")?;
        Ok(Activity {
            id: row.try_get("", "id")?,
            issue_id: row.try_get("", "issue_id")?,
            kind: row.try_get("", "kind")?,
            user_id: row.try_get("", "user_id")?,
            user_email: row.try_get("", "email")?,
            user_created: row.try_get("", "user_created")?,
            actor: row.try_get("", "actor")?,
            data: data
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_else(|| json!({})),
            created_ms: row.try_get("", "created_ms")?,
            edited_ms: row.try_get("", "edited_ms")?,
        })
    }
}

const COLUMNS: &str = "a.id, a.issue_id, a.kind, a.user_id, u.email, u.created_at AS user_created, \
     a.actor, a.data, a.created_ms, a.edited_ms";
const FROM: &str = "issue_activity a LEFT JOIN users u ON u.id = a.user_id";

/// The issue's timeline, newest first as Sentry lists it: its newest
/// [`TIMELINE_LIMIT`] entries, then "first seen" (synthesized from the issue).
pub async fn list(db: &impl ConnectionTrait, issue: &Issue) -> Result<Vec<Activity>, DbErr> {
    let rows = query_all(
        db,
        &format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE a.issue_id = ? \
             ORDER BY a.created_ms DESC, a.id DESC LIMIT {TIMELINE_LIMIT}"
        ),
        vec![issue.id.into()],
    )
    .await?;
    let mut out = rows
        .iter()
        .map(Activity::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    out.push(Activity {
        id: 0,
        issue_id: issue.id,
        kind: kind::FIRST_SEEN.into(),
        user_id: None,
        user_email: None,
        user_created: None,
        actor: None,
        data: json!({}),
        created_ms: issue.first_seen,
        edited_ms: None,
    });
    Ok(out)
}

/// Why a comment was not written, edited or deleted.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// Empty or too long; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// No such comment on this issue (or not in this organization).
    #[error("comment not found")]
    NotFound,
    /// Someone else's comment.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A comment's text, checked: not blank, at most [`MAX_NOTE_CHARS`] characters.
pub fn note_text(text: &str) -> Result<&str, NoteError> {
    let text = text.trim_end();
    if text.trim().is_empty() {
        return Err(NoteError::Invalid("A comment needs some text.".into()));
    }
    let n = text.chars().count();
    if n > MAX_NOTE_CHARS {
        return Err(NoteError::Invalid(format!(
            "A comment has at most {MAX_NOTE_CHARS} characters; this one has {n}."
        )));
    }
    Ok(text)
}

/// Adds a comment by `actor` to `issue`; returns it as the timeline shows it.
pub async fn add_note(
    db: &impl ConnectionTrait,
    issue: &Issue,
    actor: &Actor,
    text: &str,
    now: i64,
) -> Result<Activity, NoteError> {
    let text = note_text(text)?;
    let (user_id, label) = actor.columns();
    let row = query_one(
        db,
        "INSERT INTO issue_activity (issue_id, project_id, kind, user_id, actor, data, created_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        vec![
            issue.id.into(),
            issue.project_id.into(),
            kind::NOTE.into(),
            user_id.into(),
            label.into(),
            json!({ "text": text }).to_string().into(),
            now.into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotInserted)?;
    let id: i64 = row.try_get("", "id")?;
    get_note(db, issue.organization_id, issue.id, id)
        .await?
        .ok_or(NoteError::NotFound)
}

/// The comment `note_id` of issue `issue_id` in `organization_id`.
pub async fn get_note(
    db: &impl ConnectionTrait,
    organization_id: i64,
    issue_id: i64,
    note_id: i64,
) -> Result<Option<Activity>, DbErr> {
    query_one(
        db,
        &format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE a.id = ? AND a.issue_id = ? AND a.kind = ? \
             AND a.project_id IN (SELECT id FROM projects WHERE organization_id = ?)"
        ),
        vec![
            note_id.into(),
            issue_id.into(),
            kind::NOTE.into(),
            organization_id.into(),
        ],
    )
    .await?
    .map(|r| Activity::from_row(&r))
    .transpose()
}

/// Replaces the text of a comment; only its author may.
pub async fn edit_note(
    db: &DatabaseConnection,
    organization_id: i64,
    issue_id: i64,
    note_id: i64,
    actor: &Actor,
    text: &str,
    now: i64,
) -> Result<Activity, NoteError> {
    let text = note_text(text)?;
    let txn = begin_write(db).await?;
    let note = get_note(&txn, organization_id, issue_id, note_id)
        .await?
        .ok_or(NoteError::NotFound)?;
    if !note.written_by(actor) {
        return Err(NoteError::Forbidden(
            "Only its author can edit a comment.".into(),
        ));
    }
    execute(
        &txn,
        "UPDATE issue_activity SET data = ?, edited_ms = ? WHERE id = ?",
        vec![
            json!({ "text": text }).to_string().into(),
            now.into(),
            note_id.into(),
        ],
    )
    .await?;
    let note = get_note(&txn, organization_id, issue_id, note_id)
        .await?
        .ok_or(NoteError::NotFound)?;
    txn.commit().await?;
    Ok(note)
}

/// Deletes a comment: its author may, and so may a `moderator` (an owner or admin of the
/// organization).
pub async fn delete_note(
    db: &DatabaseConnection,
    organization_id: i64,
    issue_id: i64,
    note_id: i64,
    actor: &Actor,
    moderator: bool,
) -> Result<(), NoteError> {
    let txn = begin_write(db).await?;
    let note = get_note(&txn, organization_id, issue_id, note_id)
        .await?
        .ok_or(NoteError::NotFound)?;
    if !moderator && !note.written_by(actor) {
        return Err(NoteError::Forbidden(
            "Only its author, or an owner or admin of the organization, can delete a comment."
                .into(),
        ));
    }
    execute(
        &txn,
        "DELETE FROM issue_activity WHERE id = ?",
        vec![note_id.into()],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// How many comments the issue has (Sentry's `numComments`).
pub async fn comment_count(db: &impl ConnectionTrait, issue_id: i64) -> Result<i64, DbErr> {
    Ok(query_one(
        db,
        "SELECT COUNT(*) AS n FROM issue_activity WHERE issue_id = ? AND kind = ?",
        vec![issue_id.into(), kind::NOTE.into()],
    )
    .await?
    .map(|r| r.try_get::<i64>("", "n"))
    .transpose()?
    .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_texts_are_checked() {
        assert!(matches!(note_text(""), Err(NoteError::Invalid(_))));
        assert!(matches!(note_text(" \n\t "), Err(NoteError::Invalid(_))));
        assert_eq!(note_text("  hi  \n").ok(), Some("  hi"));
        let long = "é".repeat(MAX_NOTE_CHARS);
        assert!(note_text(&long).is_ok());
        assert!(matches!(
            note_text(&format!("{long}x")),
            Err(NoteError::Invalid(_))
        ));
    }

    #[test]
    fn status_entries_use_sentry_names() {
        let e = status_entry(1, 2, &StatusChange::ResolvedInNextRelease, Some("1.0"));
        assert_eq!(e.kind, "set_resolved_in_release");
        assert_eq!(e.data["inNextRelease"], json!(true));
        assert_eq!(e.data["current_release_version"], json!("1.0"));
        let e = status_entry(
            1,
            2,
            &StatusChange::Ignored {
                until: Some(0),
                count: Some(5),
            },
            None,
        );
        assert_eq!(e.kind, "set_ignored");
        assert_eq!(
            e.data,
            json!({"ignoreUntil": "1970-01-01T00:00:00.000Z", "ignoreCount": 5})
        );
        assert_eq!(
            status_entry(1, 2, &StatusChange::Unresolved, None).kind,
            "set_unresolved"
        );
    }
}
