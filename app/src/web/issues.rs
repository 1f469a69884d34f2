//! The issues list, per project and across an organization: search, sort, keyset
//! pagination, sparklines and bulk status changes. The query and the status changes are
//! the issue domain's (`faultline_core::issues`), shared with the Web API; this file reads
//! the page's parameters and form, and renders.

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;
use faultline_core::issues::search::{self, Search, StatusFilter};
use faultline_core::issues::{self, Filter, Sort, StatusChange, Window};

use super::access::{self, ProjectRow};
use super::charts::{self, Chart};
use super::context::{Ctx, Nav, OrgRef, safe_next};
use super::error::WebError;
use super::format;

/// Issues per page.
pub const PAGE_SIZE: usize = 25;

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

/// `WEB-1A`: one spelling of short ids for the pages and the Web API (what sentry-cli
/// shows), so an issue is called the same everywhere.
pub use faultline_core::issues::short_id;

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
    /// This list filtered to the viewer's unresolved issues.
    mine_url: String,
    /// A project's page: its current releases' health (sessions in the last 24 hours).
    health: Vec<super::releases::HealthLine>,
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
        let filter = Filter {
            projects: selected,
            search,
            default_status: Some(StatusFilter::Unresolved),
            ids: vec![],
            viewer: ctx.user.as_ref().map(|u| u.id),
        };
        let window = cursor.map(|c| Window::After {
            value: c.value,
            id: c.id,
        });
        let mut found =
            issues::list::list(&ctx.app.db, &filter, sort, window, PAGE_SIZE as u64 + 1).await?;
        let next = if found.len() > PAGE_SIZE {
            found.truncate(PAGE_SIZE);
            found.last().map(|i| Cursor {
                value: sort.value(i),
                id: i.id,
            })
        } else {
            None
        };
        (found, next)
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
            culprit: format::truncate(i.culprit.as_deref().unwrap_or_default(), 300),
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
        "merge" => "Merged into one issue (the one with the most events).",
        _ => "",
    };
    // Current releases: those with sessions in the last 24 hours, most adopted first.
    let health = match &single {
        Some(p) => {
            let mut lines =
                super::releases::health_lines(ctx, &org.slug, &[(p.id, p.slug.clone())], &[])
                    .await?;
            lines.retain(|h| h.adoption != "-" && h.adoption != "0.0%");
            lines.truncate(5);
            lines
        }
        None => Vec::new(),
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
        mine_url: list_url(&base, &[("query", "is:unresolved assigned:me")]),
        health,
    })
}

/// `POST /organizations/{org}/issues/bulk`: resolve, ignore, reopen or merge the checked
/// issues. Members may do all of it (they triage), as in the Web API (`event:write`).
pub async fn bulk(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let org = access::org(&ctx, &path)?;
    let form = ctx.form(&body)?;
    if form.get("action") == "merge" {
        return merge(&ctx, &org, &form).await;
    }
    let change = match form.get("action") {
        "resolve" => StatusChange::Resolved,
        "ignore" => StatusChange::Ignored {
            until: None,
            count: None,
        },
        "unresolve" => StatusChange::Unresolved,
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use resolve, ignore, unresolve or merge."
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
    let actor = issues::activity::Actor::User(ctx.user()?.id);
    issues::set_status(&ctx.app.db, org.id, &ids, &change, &actor, now_ms()).await?;
    let back = strip_param(safe_next(form.get("back")).unwrap_or("/"), "done");
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(ctx.redirect(&format!("{back}{sep}done={}", form.get("action"))))
}

/// The "Merge" button: the checked issues (of one project) become the one with the most
/// events; the page then shows it.
async fn merge(
    ctx: &Ctx,
    org: &super::context::OrgRef,
    form: &super::context::Form,
) -> Result<HttpResponse, WebError> {
    let ids: Vec<i64> = form
        .all("issue")
        .iter()
        .filter_map(|s| s.parse().ok())
        .take(issues::merge::MAX_MERGE + 1)
        .collect();
    let actor = issues::activity::Actor::User(ctx.user()?.id);
    let merged = issues::merge::merge(&ctx.app.db, org.id, &ids, &actor)
        .await
        .map_err(|e| match e {
            issues::Error::Invalid(m) => WebError::BadRequest(format!("Cannot merge: {m}.")),
            issues::Error::Db(e) => e.into(),
        })?;
    Ok(ctx.redirect(&format!(
        "/organizations/{}/issues/{}?done=merge",
        org.slug, merged.parent
    )))
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
