//! The issues list, per project and across an organization: search, sort, keyset
//! pagination, sparklines and bulk status changes.

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;
use sea_orm::Value;

use super::access::{self, ProjectRow};
use super::charts::{self, Chart};
use super::context::{Ctx, Nav, OrgRef, safe_next};
use super::error::WebError;
use super::format;
use super::search::{self, Search, StatusFilter};
use super::sql;

/// Issues per page.
pub const PAGE_SIZE: usize = 25;

/// Sort orders of the list; each has an index `(project_id, column, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    LastSeen,
    FirstSeen,
    Events,
    Users,
}

impl Sort {
    pub fn parse(s: &str) -> Sort {
        match s {
            "new" | "first_seen" => Sort::FirstSeen,
            "freq" | "events" => Sort::Events,
            "user" | "users" => Sort::Users,
            _ => Sort::LastSeen,
        }
    }
    pub fn key(self) -> &'static str {
        match self {
            Sort::LastSeen => "date",
            Sort::FirstSeen => "new",
            Sort::Events => "freq",
            Sort::Users => "user",
        }
    }
    fn column(self) -> &'static str {
        match self {
            Sort::LastSeen => "last_seen",
            Sort::FirstSeen => "first_seen",
            Sort::Events => "times_seen",
            Sort::Users => "users_seen",
        }
    }
}

/// Where the next page starts: the sort value and id of the last issue shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub value: i64,
    pub id: i64,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (v, id) = s.split_once(':')?;
        Some(Cursor {
            value: v.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
    pub fn text(&self) -> String {
        format!("{}:{}", self.value, self.id)
    }
}

/// An issue as the list reads it.
#[derive(Debug, Clone)]
pub struct IssueSummary {
    pub id: i64,
    pub project_id: i64,
    pub project_slug: String,
    pub short_id: i64,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub status: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub times_seen: i64,
    pub users_seen: i64,
}

/// `WEB-1A`: one spelling of short ids for the pages and the Web API (what sentry-cli
/// shows), so an issue is called the same everywhere.
pub use crate::api::issues::short_id;

/// Builds and runs the list query: every filter is an indexed lookup (status and sort
/// columns on `issues`, tag terms through `issue_tag_values (key, value, issue_id)`, trace
/// ids through `events (trace_id)`); free text is matched only within the projects' issues.
pub async fn find(
    db: &sea_orm::DatabaseConnection,
    project_ids: &[i64],
    search: &Search,
    sort: Sort,
    cursor: Option<Cursor>,
    limit: usize,
) -> Result<(Vec<IssueSummary>, Option<Cursor>), WebError> {
    if project_ids.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mut sql_text = String::from(
        "SELECT i.id, i.project_id, p.slug, i.short_id, i.title, i.culprit, i.level, i.status, \
         i.first_seen, i.last_seen, i.times_seen, i.users_seen \
         FROM issues i JOIN projects p ON p.id = i.project_id WHERE ",
    );
    let mut values: Vec<Value> = Vec::new();
    let (ph, ids) = sql::id_list(project_ids);
    sql_text.push_str(&format!("i.project_id IN ({ph})"));
    values.extend(ids);
    let (condition, condition_values) = search.condition(StatusFilter::Unresolved);
    if !condition.is_empty() {
        sql_text.push_str(" AND ");
        sql_text.push_str(&condition);
        values.extend(condition_values);
    }
    let col = sort.column();
    if let Some(c) = cursor {
        sql_text.push_str(&format!(" AND (i.{col} < ? OR (i.{col} = ? AND i.id < ?))"));
        values.push(c.value.into());
        values.push(c.value.into());
        values.push(c.id.into());
    }
    sql_text.push_str(&format!(" ORDER BY i.{col} DESC, i.id DESC LIMIT ?"));
    values.push(((limit + 1) as i64).into());
    let rows = sql::all(db, &sql_text, values).await?;
    let mut issues = Vec::with_capacity(rows.len());
    for row in &rows {
        issues.push(IssueSummary {
            id: sql::get(row, "id")?,
            project_id: sql::get(row, "project_id")?,
            project_slug: sql::get(row, "slug")?,
            short_id: sql::get(row, "short_id")?,
            title: sql::get(row, "title")?,
            culprit: sql::get::<Option<String>>(row, "culprit")?.unwrap_or_default(),
            level: sql::get(row, "level")?,
            status: sql::get(row, "status")?,
            first_seen: sql::get(row, "first_seen")?,
            last_seen: sql::get(row, "last_seen")?,
            times_seen: sql::get(row, "times_seen")?,
            users_seen: sql::get(row, "users_seen")?,
        });
    }
    let next = if issues.len() > limit {
        issues.truncate(limit);
        issues.last().map(|i| Cursor {
            value: match sort {
                Sort::LastSeen => i.last_seen,
                Sort::FirstSeen => i.first_seen,
                Sort::Events => i.times_seen,
                Sort::Users => i.users_seen,
            },
            id: i.id,
        })
    } else {
        None
    };
    Ok((issues, next))
}

/// One row of the list, formatted.
pub struct IssueLine {
    pub id: i64,
    pub url: String,
    pub short_id: String,
    pub project_slug: String,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub status: String,
    pub last_seen: String,
    pub last_seen_iso: String,
    pub first_seen: String,
    pub events: String,
    pub users: String,
    pub spark: Chart,
}

/// Options of a select box.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "issues.html")]
struct IssuesPage {
    nav: Nav,
    org_slug: String,
    heading: String,
    /// The form's action (this list's URL without the query).
    base: String,
    query: String,
    error: String,
    sorts: Vec<Choice>,
    periods: Vec<Choice>,
    projects: Vec<Choice>,
    show_project_picker: bool,
    issues: Vec<IssueLine>,
    next_url: String,
    first_url: String,
    paged: bool,
    back: String,
    project_settings: String,
    project_releases: String,
    spark_label: String,
    notice: String,
}

fn list_url(base: &str, params: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if !v.is_empty() {
            ser.append_pair(k, v);
        }
    }
    let q = ser.finish();
    if q.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{q}")
    }
}

/// `GET /organizations/{org}/projects/{project}`: one project's issues.
pub async fn project_issues(
    ctx: Ctx,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let project = access::project(&ctx, &org, &project_slug).await?;
    let base = format!("/organizations/{}/projects/{}", org.slug, project.slug);
    render_list(&ctx, &org, vec![project.clone()], Some(project), base).await
}

/// `GET /organizations/{org}/issues`: issues of every project (or `?project=slug`).
pub async fn org_issues(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, WebError> {
    let org = access::org(&ctx, &path)?;
    let projects = access::projects(&ctx, &org).await?;
    let base = format!("/organizations/{}/issues", org.slug);
    render_list(&ctx, &org, projects, None, base).await
}

async fn render_list(
    ctx: &Ctx,
    org: &OrgRef,
    projects: Vec<ProjectRow>,
    single: Option<ProjectRow>,
    base: String,
) -> Result<HttpResponse, WebError> {
    let raw_query = ctx
        .query
        .get("query")
        .cloned()
        .unwrap_or_else(|| "is:unresolved".to_string());
    let sort = Sort::parse(ctx.q("sort"));
    let period = if ctx.q("period") == "14d" {
        "14d"
    } else {
        "24h"
    };
    let project_filter = ctx.q("project").to_string();
    let selected: Vec<i64> = projects
        .iter()
        .filter(|p| single.is_some() || project_filter.is_empty() || p.slug == project_filter)
        .map(|p| p.id)
        .collect();
    let cursor = Cursor::parse(ctx.q("cursor"));
    let (search, error) = match search::parse(&raw_query) {
        Ok(s) => (s, String::new()),
        Err(e) => (Search::default(), e.to_string()),
    };
    let (found, next) = if error.is_empty() {
        find(&ctx.app.db, &selected, &search, sort, cursor, PAGE_SIZE).await?
    } else {
        (Vec::new(), None)
    };
    let now = now_ms();
    let (buckets, bucket_ms) = if period == "14d" {
        (14usize, 86_400_000i64)
    } else {
        (24usize, 3_600_000i64)
    };
    let start = (now / bucket_ms + 1) * bucket_ms - buckets as i64 * bucket_ms;
    let ids: Vec<i64> = found.iter().map(|i| i.id).collect();
    let counts = charts::issue_buckets(&ctx.app.db, &ids, start, bucket_ms, buckets).await?;
    let issues = found
        .iter()
        .map(|i| IssueLine {
            id: i.id,
            url: format!("/organizations/{}/issues/{}", org.slug, i.id),
            short_id: short_id(&i.project_slug, i.short_id),
            project_slug: i.project_slug.clone(),
            title: format::truncate(&i.title, 300),
            culprit: format::truncate(&i.culprit, 300),
            level: i.level.clone(),
            status: i.status.clone(),
            last_seen: format::ago(i.last_seen, now),
            last_seen_iso: format::datetime(i.last_seen),
            first_seen: format::ago(i.first_seen, now),
            events: format::count(i.times_seen),
            users: format::count(i.users_seen),
            spark: charts::layout(
                counts.get(&i.id).map(|v| v.as_slice()).unwrap_or(&[]),
                start,
                bucket_ms,
                if period == "14d" { 70.0 } else { 72.0 },
                22.0,
            ),
        })
        .collect();
    let params = |cursor: &str| {
        list_url(
            &base,
            &[
                ("query", raw_query.as_str()),
                (
                    "sort",
                    if sort == Sort::LastSeen {
                        ""
                    } else {
                        sort.key()
                    },
                ),
                ("period", if period == "24h" { "" } else { period }),
                ("project", project_filter.as_str()),
                ("cursor", cursor),
            ],
        )
    };
    let next_url = next.map(|c| params(&c.text())).unwrap_or_default();
    let sorts = [
        (Sort::LastSeen, "Last seen"),
        (Sort::FirstSeen, "First seen"),
        (Sort::Events, "Events"),
        (Sort::Users, "Users"),
    ]
    .iter()
    .map(|(s, label)| Choice {
        value: s.key().into(),
        label: (*label).into(),
        selected: *s == sort,
    })
    .collect();
    let periods = [("24h", "24 hours"), ("14d", "14 days")]
        .iter()
        .map(|(v, l)| Choice {
            value: (*v).into(),
            label: (*l).into(),
            selected: *v == period,
        })
        .collect();
    let mut project_choices = vec![Choice {
        value: String::new(),
        label: "All projects".into(),
        selected: project_filter.is_empty(),
    }];
    project_choices.extend(projects.iter().map(|p| Choice {
        value: p.slug.clone(),
        label: p.slug.clone(),
        selected: p.slug == project_filter,
    }));
    let notice = match ctx.q("done") {
        "resolve" => "Resolved.",
        "ignore" => "Ignored.",
        "unresolve" => "Reopened.",
        _ => "",
    };
    let heading = match &single {
        Some(p) => p.name.clone(),
        None => format!("{} · all issues", org.name),
    };
    ctx.page(&IssuesPage {
        nav: ctx.nav(&org.slug, "issues"),
        org_slug: org.slug.clone(),
        heading,
        base: base.clone(),
        query: raw_query.clone(),
        error,
        sorts,
        periods,
        projects: project_choices,
        show_project_picker: single.is_none(),
        issues,
        next_url,
        first_url: params(""),
        paged: cursor.is_some(),
        back: ctx.here.clone(),
        project_settings: single
            .as_ref()
            .map(|p| format!("/organizations/{}/projects/{}/settings", org.slug, p.slug))
            .unwrap_or_default(),
        project_releases: single
            .as_ref()
            .map(|p| format!("/organizations/{}/projects/{}/releases", org.slug, p.slug))
            .unwrap_or_default(),
        spark_label: if period == "14d" {
            "14 days".into()
        } else {
            "24 hours".into()
        },
        notice: notice.into(),
    })
}

/// The status change of a status action, as stored (see `worker::store::status`).
pub struct StatusChange {
    pub status: &'static str,
    pub details: Option<String>,
    pub resolved_at: Option<i64>,
}

/// `POST /organizations/{org}/issues/bulk`: resolve, ignore or reopen the checked issues.
pub async fn bulk(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let org = access::org(&ctx, &path)?;
    let form = ctx.form(&body)?;
    let change = match form.get("action") {
        "resolve" => StatusChange {
            status: "resolved",
            details: None,
            resolved_at: Some(now_ms()),
        },
        "ignore" => StatusChange {
            status: "ignored",
            details: None,
            resolved_at: None,
        },
        "unresolve" => StatusChange {
            status: "unresolved",
            details: None,
            resolved_at: None,
        },
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use resolve, ignore or unresolve."
            )));
        }
    };
    let ids: Vec<i64> = form
        .all("issue")
        .iter()
        .filter_map(|s| s.parse().ok())
        .take(1000)
        .collect();
    if ids.is_empty() {
        return Err(WebError::BadRequest(
            "Select at least one issue (the boxes in the first column).".into(),
        ));
    }
    apply_status(&ctx, &org, &ids, &change).await?;
    let back = strip_param(safe_next(form.get("back")).unwrap_or("/"), "done");
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(ctx.redirect(&format!("{back}{sep}done={}", form.get("action"))))
}

fn strip_param(url: &str, name: &str) -> String {
    match url.split_once('?') {
        None => url.to_string(),
        Some((path, q)) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|kv| kv.split('=').next() != Some(name))
                .collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
    }
}

/// Changes the status of issues, only those of the organization's projects.
pub async fn apply_status(
    ctx: &Ctx,
    org: &OrgRef,
    ids: &[i64],
    change: &StatusChange,
) -> Result<u64, WebError> {
    let (ph, id_values) = sql::id_list(ids);
    let mut values: Vec<Value> = vec![
        change.status.into(),
        change.details.clone().into(),
        change.resolved_at.into(),
    ];
    values.extend(id_values);
    values.push(org.id.into());
    sql::exec(
        &ctx.app.db,
        &format!(
            "UPDATE issues SET status = ?, status_details = ?, resolved_at = ? \
             WHERE id IN ({ph}) AND project_id IN (SELECT id FROM projects WHERE organization_id = ?)"
        ),
        values,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_spell_short_ids_as_the_api_and_sentry_cli_do() {
        // The pages once counted in base 36 (`WEB-16` for the API's `WEB-1A`).
        assert_eq!(short_id("web", 1), "WEB-1");
        assert_eq!(short_id("web", 32), "WEB-10");
        assert_eq!(short_id("api-2", 42), "API-2-1A");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { value: 17, id: 3 };
        assert_eq!(Cursor::parse(&c.text()), Some(c));
        assert_eq!(Cursor::parse("x:1"), None);
        assert_eq!(Cursor::parse("1"), None);
    }

    #[test]
    fn done_markers_do_not_pile_up() {
        assert_eq!(strip_param("/x?a=1&done=resolve", "done"), "/x?a=1");
        assert_eq!(strip_param("/x?done=resolve", "done"), "/x");
    }
}
