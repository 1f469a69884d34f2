//! The issue domain: one home for everything that reads or changes issues, whichever door
//! the request came through (the pages, the Web API, the CLI) — and for the rules the
//! worker's store applies when events arrive.
//!
//! - [`state`]: statuses, `status_details`, the change someone asks for
//!   ([`StatusChange`]) and what new events do to an issue ([`IssueState::reopened_by`]:
//!   regressions, ignored issues waking up).
//! - [`search`]: the search grammar (Sentry's syntax) and its one SQL condition.
//! - [`list`]: the issue list query (filter, sort, keyset windows) and bulk selection.
//! - [`actions`]: status changes and deletion.
//! - [`assign`]: assignment to a member of the organization, or nobody.
//! - [`activity`]: the timeline every change above writes to, and comments.
//!
//! Callers authorize first (which organization's issues the caller may touch); every
//! function here also takes that organization or its projects, so a mistake upstream
//! cannot reach another organization's issues.

pub mod actions;
pub mod activity;
pub mod assign;
pub mod list;
pub mod search;
pub mod state;

pub use actions::{delete, set_status};
pub use list::{Filter, Sort, Window};
pub use state::{IssueState, Reopening, StatusChange, StatusDetails, status};

use sea_orm::{ConnectionTrait, DbErr, QueryResult};

use crate::sql::query_one;

/// Input that names no valid operation; the message says what was wrong and what to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Why an operation did not happen: the caller's input (tell them), or the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// An issue with its project, as lists and pages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub id: i64,
    pub project_id: i64,
    pub project_slug: String,
    pub project_name: String,
    pub project_platform: Option<String>,
    pub organization_id: i64,
    /// The project's issue number (see [`short_id`]).
    pub short_id: i64,
    pub title: String,
    pub culprit: Option<String>,
    pub exception_type: Option<String>,
    pub exception_value: Option<String>,
    pub level: String,
    pub platform: Option<String>,
    /// One of [`status`].
    pub status: String,
    /// [`StatusDetails`] as stored (JSON).
    pub status_details: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub times_seen: i64,
    pub users_seen: i64,
    pub first_release: Option<String>,
    pub last_release: Option<String>,
    /// The member it is assigned to (user id and email), if any.
    pub assignee_id: Option<i64>,
    pub assignee_email: Option<String>,
}

/// Columns of `issues i` joined with `projects p` that [`Issue::from_row`] reads.
pub(crate) const COLUMNS: &str = "i.id, i.project_id, i.short_id, i.title, i.culprit, \
     i.exception_type, i.exception_value, i.level, i.platform, i.status, i.status_details, \
     i.first_seen, i.last_seen, i.times_seen, i.users_seen, i.first_release, i.last_release, \
     p.slug AS project_slug, p.name AS project_name, p.platform AS project_platform, \
     p.organization_id, i.assignee_id, u.email AS assignee_email";

/// The tables [`COLUMNS`] reads.
pub(crate) const FROM: &str =
    "issues i JOIN projects p ON p.id = i.project_id LEFT JOIN users u ON u.id = i.assignee_id";

impl Issue {
    fn from_row(row: &QueryResult) -> Result<Issue, DbErr> {
        Ok(Issue {
            id: row.try_get("", "id")?,
            project_id: row.try_get("", "project_id")?,
            project_slug: row.try_get("", "project_slug")?,
            project_name: row.try_get("", "project_name")?,
            project_platform: row.try_get("", "project_platform")?,
            organization_id: row.try_get("", "organization_id")?,
            short_id: row.try_get("", "short_id")?,
            title: row.try_get("", "title")?,
            culprit: row.try_get("", "culprit")?,
            exception_type: row.try_get("", "exception_type")?,
            exception_value: row.try_get("", "exception_value")?,
            level: row.try_get("", "level")?,
            platform: row.try_get("", "platform")?,
            status: row.try_get("", "status")?,
            status_details: row.try_get("", "status_details")?,
            first_seen: row.try_get("", "first_seen")?,
            last_seen: row.try_get("", "last_seen")?,
            times_seen: row.try_get("", "times_seen")?,
            users_seen: row.try_get("", "users_seen")?,
            first_release: row.try_get("", "first_release")?,
            last_release: row.try_get("", "last_release")?,
            assignee_id: row.try_get("", "assignee_id")?,
            assignee_email: row.try_get("", "assignee_email")?,
        })
    }

    /// Its `status_details`, read.
    pub fn details(&self) -> StatusDetails {
        StatusDetails::read(self.status_details.as_deref())
    }

    /// `WEB-1A`.
    pub fn short_id_text(&self) -> String {
        short_id(&self.project_slug, self.short_id)
    }
}

/// The issue `id`, whatever its organization: the caller checks `organization_id`
/// against what its user or token may see, and answers "not found" alike for both.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<Issue>, DbErr> {
    query_one(
        db,
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE i.id = ?"),
        vec![id.into()],
    )
    .await?
    .map(|r| Issue::from_row(&r))
    .transpose()
}

/// The issue `id` if it belongs to a project of `organization_id`.
pub async fn get_in(
    db: &impl ConnectionTrait,
    organization_id: i64,
    id: i64,
) -> Result<Option<Issue>, DbErr> {
    Ok(get(db, id)
        .await?
        .filter(|i| i.organization_id == organization_id))
}

/// Sentry's short id: the project slug upper-cased, a dash, the project's issue number in
/// Crockford base32 (`WEB-1A`) — one spelling for the pages, the Web API and sentry-cli.
pub fn short_id(project_slug: &str, n: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut n = n.max(0) as u64;
    let mut digits = Vec::new();
    loop {
        digits.push(ALPHABET[(n % 32) as usize]);
        n /= 32;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    format!(
        "{}-{}",
        project_slug.to_uppercase(),
        String::from_utf8_lossy(&digits)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_as_sentry_spells_them() {
        assert_eq!(short_id("web", 1), "WEB-1");
        assert_eq!(short_id("web", 32), "WEB-10");
        assert_eq!(short_id("web", 42), "WEB-1A");
        assert_eq!(short_id("api-server", 32 * 32), "API-SERVER-100");
    }
}
