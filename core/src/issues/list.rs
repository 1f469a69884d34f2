//! The issue list query of the pages and the Web API: which issues (projects, a search,
//! ids), in which order, from where. Every filter is an indexed lookup (status and sort
//! columns on `issues (project_id, <column>, id)`, tag terms through `issue_tag_values`,
//! trace ids through `events (trace_id)`); free text is matched only within the projects'
//! issues. Pages are keyset windows on (sort value, id), never large OFFSETs.

use sea_orm::{ConnectionTrait, DbErr, Value};

use super::search::{Search, StatusFilter};
use super::{COLUMNS, FROM, Invalid, Issue};
use crate::sql::{placeholders, query_all};

/// Sort orders of the list, newest (largest) first; each has an index
/// `(project_id, column, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    LastSeen,
    FirstSeen,
    Events,
    Users,
}

impl Sort {
    /// The pages' `?sort=`: anything unknown is the default order.
    pub fn parse(s: &str) -> Sort {
        match s {
            "new" | "first_seen" => Sort::FirstSeen,
            "freq" | "events" => Sort::Events,
            "user" | "users" => Sort::Users,
            _ => Sort::LastSeen,
        }
    }

    /// Sentry's `sort` values (`date` when missing); orders Faultline does not have
    /// (`priority`, `trends`, `recommended`) are the date order.
    pub fn parse_sentry(s: Option<&str>) -> Result<Sort, Invalid> {
        Ok(match s.unwrap_or("date") {
            "date" | "" | "priority" | "trends" | "recommended" => Sort::LastSeen,
            "new" => Sort::FirstSeen,
            "freq" => Sort::Events,
            "user" => Sort::Users,
            other => {
                return Err(Invalid(format!(
                    "unknown sort `{other}`; use date, new, freq or user"
                )));
            }
        })
    }

    /// The name in URLs (Sentry's).
    pub fn key(self) -> &'static str {
        match self {
            Sort::LastSeen => "date",
            Sort::FirstSeen => "new",
            Sort::Events => "freq",
            Sort::Users => "user",
        }
    }

    /// The column of `issues`.
    pub fn column(self) -> &'static str {
        match self {
            Sort::LastSeen => "last_seen",
            Sort::FirstSeen => "first_seen",
            Sort::Events => "times_seen",
            Sort::Users => "users_seen",
        }
    }

    /// An issue's value in this order (what cursors carry).
    pub fn value(self, issue: &Issue) -> i64 {
        match self {
            Sort::LastSeen => issue.last_seen,
            Sort::FirstSeen => issue.first_seen,
            Sort::Events => issue.times_seen,
            Sort::Users => issue.users_seen,
        }
    }
}

/// Where a page of the list starts (the first page has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// After the issue with this sort value and id, newest first (the pages' cursor).
    After { value: i64, id: i64 },
    /// Sort values at most `value`, newest first, the first `offset` rows skipped (Sentry's
    /// "next" cursor).
    AtMost { value: i64, offset: u64 },
    /// Sort values at least `value`, OLDEST first, the first `offset` rows skipped
    /// (Sentry's "previous" cursor; the caller turns the rows round).
    AtLeast { value: i64, offset: u64 },
}

/// Which issues a list or a bulk action covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The projects searched (already checked to be the caller's); none selects nothing.
    pub projects: Vec<i64>,
    pub search: Search,
    /// The status listed when the search has no `is:` term.
    pub default_status: Option<StatusFilter>,
    /// Only these issues, if any are given.
    pub ids: Vec<i64>,
    /// Who is looking (`assigned:me`); without a user, `assigned:me` matches nothing.
    pub viewer: Option<i64>,
}

impl Filter {
    /// The condition on `issues i` and its values.
    fn condition(&self) -> (String, Vec<Value>) {
        let mut sql = format!(
            "i.project_id IN ({})",
            placeholders(self.projects.len().max(1))
        );
        let mut values: Vec<Value> = if self.projects.is_empty() {
            vec![Value::from(-1i64)]
        } else {
            self.projects.iter().map(|p| Value::from(*p)).collect()
        };
        let (cond, more) = self.search.condition(
            self.default_status.unwrap_or(StatusFilter::All),
            self.viewer,
        );
        if !cond.is_empty() {
            sql.push_str(" AND ");
            sql.push_str(&cond);
            values.extend(more);
        }
        if !self.ids.is_empty() {
            sql.push_str(&format!(" AND i.id IN ({})", placeholders(self.ids.len())));
            values.extend(self.ids.iter().map(|i| Value::from(*i)));
        }
        (sql, values)
    }
}

/// One page of issues: at most `fetch` rows of `filter` in `sort` order from `window`.
/// Ask for one more than you show to know whether more follow.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &Filter,
    sort: Sort,
    window: Option<Window>,
    fetch: u64,
) -> Result<Vec<Issue>, DbErr> {
    if filter.projects.is_empty() {
        return Ok(Vec::new());
    }
    let (cond, mut values) = filter.condition();
    let col = format!("i.{}", sort.column());
    let mut sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE {cond}");
    let (mut order, mut offset) = (format!("{col} DESC, i.id DESC"), 0);
    match window {
        None => {}
        Some(Window::After { value, id }) => {
            sql.push_str(&format!(" AND ({col} < ? OR ({col} = ? AND i.id < ?))"));
            values.extend([value.into(), value.into(), id.into()]);
        }
        Some(Window::AtMost { value, offset: o }) => {
            sql.push_str(&format!(" AND {col} <= ?"));
            values.push(value.into());
            offset = o;
        }
        Some(Window::AtLeast { value, offset: o }) => {
            sql.push_str(&format!(" AND {col} >= ?"));
            values.push(value.into());
            order = format!("{col} ASC, i.id ASC");
            offset = o;
        }
    }
    sql.push_str(&format!(" ORDER BY {order} LIMIT {fetch} OFFSET {offset}"));
    query_all(db, &sql, values)
        .await?
        .iter()
        .map(Issue::from_row)
        .collect()
}

/// The ids of at most `limit` issues of `filter`, most recently seen first (what a bulk
/// action changes).
pub async fn select_ids(
    db: &impl ConnectionTrait,
    filter: &Filter,
    limit: u64,
) -> Result<Vec<i64>, DbErr> {
    if filter.projects.is_empty() {
        return Ok(Vec::new());
    }
    let (cond, values) = filter.condition();
    query_all(
        db,
        &format!("SELECT i.id FROM issues i WHERE {cond} ORDER BY i.last_seen DESC LIMIT {limit}"),
        values,
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "id"))
    .collect()
}
