//! Issues through Sentry's Web API: search lists per project and per organization, one
//! issue (get, status change, delete), bulk status changes as `sentry-cli issues
//! resolve|mute|unresolve` send them, and the grouping hashes merged into an issue.
//!
//! Searches use the pages' grammar and SQL (`web::search`: Sentry's syntax). The pure parts
//! here are reusable by the pages: [`StatusChange::parse`] and [`apply_status`] change
//! statuses the way the worker expects them (`worker::store::StatusDetails`), [`short_id`]
//! spells `WEB-1A`.

use actix_web::{HttpRequest, HttpResponse, web};
use faultline_worker::store::{StatusDetails, status};
use sea_orm::{ConnectionTrait, Value};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::auth::{Org, Scope};
use super::pagination::{self, Cursor};
use super::{ApiAuth, ApiError, ApiResult, events, execute, iso, query_all, query_one};
use crate::web::search::{self, Search, StatusFilter};
use faultline_core::entity::now_ms;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/projects/{org}/{project}/issues")
            .route(web::get().to(list_project))
            .route(web::put().to(bulk_update_project)),
    )
    .service(
        web::resource("/organizations/{org}/issues")
            .route(web::get().to(list_org))
            .route(web::put().to(bulk_update_org)),
    )
    .service(
        web::resource(["/issues/{id}", "/organizations/{org}/issues/{id}"])
            .route(web::get().to(get_issue))
            .route(web::put().to(update_issue))
            .route(web::delete().to(delete_issue)),
    )
    .service(
        web::resource([
            "/issues/{id}/hashes",
            "/organizations/{org}/issues/{id}/hashes",
        ])
        .route(web::get().to(hashes)),
    );
}

/// How a list is sorted: Sentry's `sort` values and the column each uses.
pub fn sort_column(sort: Option<&str>) -> ApiResult<&'static str> {
    Ok(match sort.unwrap_or("date") {
        "date" | "" | "priority" | "trends" | "recommended" => "i.last_seen",
        "new" => "i.first_seen",
        "freq" => "i.times_seen",
        "user" => "i.users_seen",
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown sort `{other}`; use date, new, freq or user"
            )));
        }
    })
}

/// Sentry's short id: the project slug upper-cased, a dash, the project's issue number in
/// Crockford base32 (`WEB-1A`).
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

// ---------------------------------------------------------------------------------------
// Status changes (pure parsing, shared application).

/// A requested status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    Unresolved,
    Resolved,
    ResolvedInNextRelease,
    Ignored {
        until: Option<i64>,
        count: Option<i64>,
    },
}

/// The body of an issue update (`PUT /issues/{id}/`, bulk `PUT .../issues/`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueUpdate {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_details: Option<Json>,
    /// Minutes (sentry-cli's `issues mute`), also `ignoreDuration`.
    #[serde(default)]
    pub snooze_duration: Option<i64>,
    #[serde(default)]
    pub ignore_duration: Option<i64>,
    #[serde(default)]
    pub ignore_count: Option<i64>,
    #[serde(default)]
    pub ignore_until: Option<String>,
}

impl StatusChange {
    /// What an update body asks for, if it asks for a status at all.
    pub fn parse(u: &IssueUpdate, now: i64) -> ApiResult<Option<StatusChange>> {
        let details = u.status_details.as_ref();
        let detail = |k: &str| details.and_then(|d| d.get(k));
        let Some(s) = u.status.as_deref() else {
            return Ok(None);
        };
        Ok(Some(match s {
            "unresolved" => StatusChange::Unresolved,
            "resolved" if detail("inNextRelease").and_then(Json::as_bool) == Some(true) => {
                StatusChange::ResolvedInNextRelease
            }
            "resolved" => StatusChange::Resolved,
            "resolvedInNextRelease" => StatusChange::ResolvedInNextRelease,
            "ignored" | "muted" | "archived" => {
                let minutes = u
                    .snooze_duration
                    .or(u.ignore_duration)
                    .or_else(|| detail("ignoreDuration").and_then(Json::as_i64));
                let until_text = u.ignore_until.clone().or_else(|| {
                    detail("ignoreUntil")
                        .and_then(Json::as_str)
                        .map(str::to_string)
                });
                let until = match (minutes, until_text) {
                    (Some(m), _) if m > 0 => Some(now + m.min(10_000_000) * 60_000),
                    (_, Some(t)) => Some(
                        chrono::DateTime::parse_from_rfc3339(&t)
                            .map_err(|_| {
                                ApiError::bad_request(format!(
                                    "`ignoreUntil` must be an RFC 3339 time, got `{t}`"
                                ))
                            })?
                            .timestamp_millis(),
                    ),
                    _ => None,
                };
                let count = u
                    .ignore_count
                    .or_else(|| detail("ignoreCount").and_then(Json::as_i64))
                    .filter(|n| *n > 0);
                StatusChange::Ignored { until, count }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown status `{other}`; use resolved, resolvedInNextRelease, unresolved or ignored"
                )));
            }
        }))
    }
}

/// Applies a status change to issues (already checked to be the caller's), as the worker
/// reads it back: resolved issues regress on their next event, resolved-in-next-release
/// ones on an event of a release made after the resolution, ignored ones wake up after a
/// time or a number of further events.
pub async fn apply_status(
    db: &impl ConnectionTrait,
    ids: &[i64],
    change: &StatusChange,
) -> ApiResult<()> {
    let now = now_ms();
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let id_values = || chunk.iter().map(|id| Value::from(*id)).collect::<Vec<_>>();
        let per_issue = matches!(
            change,
            StatusChange::ResolvedInNextRelease | StatusChange::Ignored { count: Some(_), .. }
        );
        if !per_issue {
            let (stored, details, resolved_at) = match change {
                StatusChange::Unresolved => (status::UNRESOLVED, None, None),
                StatusChange::Resolved => (status::RESOLVED, None, Some(now)),
                StatusChange::Ignored { until, .. } => {
                    let d = StatusDetails {
                        ignore_until: *until,
                        ..Default::default()
                    };
                    (status::IGNORED, serde_json::to_string(&d).ok(), None)
                }
                _ => unreachable!("per-issue changes are handled below"),
            };
            let mut values: Vec<Value> = vec![stored.into(), details.into(), resolved_at.into()];
            values.extend(id_values());
            execute(
                db,
                &format!("UPDATE issues SET status = ?, status_details = ?, resolved_at = ? WHERE id IN ({marks})"),
                values,
            )
            .await?;
            continue;
        }
        // The details depend on each issue: the release current at resolution (its last
        // release), or the count ignored events are counted from (its times_seen).
        let rows = query_all(
            db,
            &format!("SELECT id, last_release, times_seen FROM issues WHERE id IN ({marks})"),
            id_values(),
        )
        .await?;
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let (stored, details, resolved_at) = match change {
                StatusChange::ResolvedInNextRelease => {
                    let d = StatusDetails {
                        resolved_release: row.try_get("", "last_release")?,
                        ..Default::default()
                    };
                    (status::RESOLVED_IN_NEXT_RELEASE, d, Some(now))
                }
                StatusChange::Ignored { until, count } => {
                    let d = StatusDetails {
                        ignore_until: *until,
                        ignore_count: *count,
                        ignore_count_base: Some(row.try_get("", "times_seen")?),
                        ..Default::default()
                    };
                    (status::IGNORED, d, None)
                }
                _ => unreachable!("only per-issue changes reach here"),
            };
            execute(
                db,
                "UPDATE issues SET status = ?, status_details = ?, resolved_at = ? WHERE id = ?",
                vec![
                    stored.into(),
                    serde_json::to_string(&details).ok().into(),
                    resolved_at.into(),
                    id.into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// `status` and `statusDetails` as Sentry shows them.
fn status_json(stored: &str, details: Option<&str>) -> (&'static str, Json) {
    let details: StatusDetails = details
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    match stored {
        status::RESOLVED => ("resolved", json!({})),
        status::RESOLVED_IN_NEXT_RELEASE => ("resolved", json!({"inNextRelease": true})),
        status::IGNORED => {
            let mut d = json!({});
            if let Some(t) = details.ignore_until {
                d["ignoreUntil"] = json!(iso(t));
            }
            if let Some(n) = details.ignore_count {
                d["ignoreCount"] = json!(n);
            }
            ("ignored", d)
        }
        _ => ("unresolved", json!({})),
    }
}

// ---------------------------------------------------------------------------------------
// Serialization.

/// Columns of `issues i` joined with `projects p` that [`issue_json`] reads.
pub const ISSUE_COLUMNS: &str = "i.id, i.project_id, i.short_id, i.title, i.culprit, i.exception_type, \
     i.exception_value, i.level, i.platform, i.status, i.status_details, i.first_seen, i.last_seen, \
     i.times_seen, i.users_seen, i.first_release, i.last_release, \
     p.slug AS project_slug, p.name AS project_name, p.platform AS project_platform, p.organization_id";

/// An issue object with Sentry's fields.
pub fn issue_json(row: &sea_orm::QueryResult, org_slug: &str, base_url: &str) -> ApiResult<Json> {
    let id: i64 = row.try_get("", "id")?;
    let project_slug: String = row.try_get("", "project_slug")?;
    let stored: String = row.try_get("", "status")?;
    let details: Option<String> = row.try_get("", "status_details")?;
    let (status, status_details) = status_json(&stored, details.as_deref());
    let exc_type: Option<String> = row.try_get("", "exception_type")?;
    let exc_value: Option<String> = row.try_get("", "exception_value")?;
    let title: String = row.try_get("", "title")?;
    let culprit: Option<String> = row.try_get("", "culprit")?;
    let is_error = exc_type.is_some();
    let metadata = if is_error {
        json!({"type": exc_type, "value": exc_value, "title": title, "filename": culprit, "in_app_frame_mix": "mixed"})
    } else {
        json!({"title": title, "value": exc_value})
    };
    let release = |v: Option<String>| v.map(|v| json!({"version": v, "shortVersion": v}));
    Ok(json!({
        "id": id.to_string(),
        "shortId": short_id(&project_slug, row.try_get("", "short_id")?),
        "title": title,
        "culprit": culprit,
        "permalink": format!("{}/organizations/{org_slug}/issues/{id}/", base_url.trim_end_matches('/')),
        "logger": null,
        "level": row.try_get::<String>("", "level")?,
        "status": status,
        "statusDetails": status_details,
        "substatus": match status {
            "unresolved" => "ongoing",
            "ignored" if status_details.as_object().is_some_and(|d| !d.is_empty()) => "archived_until_condition_met",
            "ignored" => "archived_forever",
            _ => "resolved",
        },
        "isPublic": false,
        "platform": row.try_get::<Option<String>>("", "platform")?,
        "project": {
            "id": row.try_get::<i64>("", "project_id")?.to_string(),
            "name": row.try_get::<String>("", "project_name")?,
            "slug": project_slug,
            "platform": row.try_get::<Option<String>>("", "project_platform")?,
        },
        "type": if is_error { "error" } else { "default" },
        "issueType": "error",
        "issueCategory": "error",
        "metadata": metadata,
        "numComments": 0,
        "assignedTo": null,
        "isBookmarked": false,
        "isSubscribed": false,
        "subscriptionDetails": null,
        "hasSeen": false,
        "annotations": [],
        "isUnhandled": false,
        "count": row.try_get::<i64>("", "times_seen")?.to_string(),
        "userCount": row.try_get::<i64>("", "users_seen")?,
        "firstSeen": iso(row.try_get("", "first_seen")?),
        "lastSeen": iso(row.try_get("", "last_seen")?),
        "firstRelease": release(row.try_get("", "first_release")?),
        "lastRelease": release(row.try_get("", "last_release")?),
    }))
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// An issue the caller may see, with its organization.
pub async fn issue_row(
    auth: &ApiAuth,
    id: &str,
    org_slug: Option<&str>,
) -> ApiResult<(sea_orm::QueryResult, Org)> {
    let not_found = || ApiError::not_found(format!("issue `{id}` not found"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let row = query_one(
        auth.db(),
        &format!("SELECT {ISSUE_COLUMNS} FROM issues i JOIN projects p ON p.id = i.project_id WHERE i.id = ?"),
        vec![id.into()],
    )
    .await?
    .ok_or_else(not_found)?;
    let org_id: i64 = row.try_get("", "organization_id")?;
    if !auth.can_access(auth.db(), org_id).await? {
        return Err(not_found());
    }
    let org = query_one(
        auth.db(),
        "SELECT id, slug, name, created_at FROM organizations WHERE id = ?",
        vec![org_id.into()],
    )
    .await?
    .ok_or_else(not_found)?;
    let org = Org {
        id: org.try_get("", "id")?,
        slug: org.try_get("", "slug")?,
        name: org.try_get("", "name")?,
        created_at: org.try_get("", "created_at")?,
    };
    if org_slug.is_some_and(|s| s != org.slug) {
        return Err(not_found());
    }
    Ok((row, org))
}

/// The base URL of links to pages (`FAULTLINE_URL`).
pub fn page_base(auth: &ApiAuth) -> String {
    auth.public_url.clone()
}

/// `{id}` or `{org}/{id}` from the two routes of one issue.
async fn issue_from(auth: &ApiAuth, req: &HttpRequest) -> ApiResult<(sea_orm::QueryResult, Org)> {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let org = req.match_info().get("org").map(str::to_string);
    issue_row(auth, &id, org.as_deref()).await
}

async fn get_issue(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (row, org) = issue_from(&auth, &req).await?;
    Ok(HttpResponse::Ok().json(issue_json(&row, &org.slug, &page_base(&auth))?))
}

async fn update_issue(
    auth: ApiAuth,
    req: HttpRequest,
    body: web::Json<IssueUpdate>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventWrite)?;
    let (row, org) = issue_from(&auth, &req).await?;
    let id: i64 = row.try_get("", "id")?;
    if let Some(change) = StatusChange::parse(&body, now_ms())? {
        apply_status(auth.db(), &[id], &change).await?;
    }
    let (row, _) = issue_row(&auth, &id.to_string(), None).await?;
    Ok(HttpResponse::Ok().json(issue_json(&row, &org.slug, &page_base(&auth))?))
}

/// Deletes an issue with its events, hashes and tag values (a later event with one of its
/// hashes starts a new issue).
async fn delete_issue(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventAdmin)?;
    let (row, _) = issue_from(&auth, &req).await?;
    let id: i64 = row.try_get("", "id")?;
    let txn = super::begin_write(auth.db()).await?;
    for table in ["issue_tag_values", "issue_hashes", "events"] {
        execute(
            &txn,
            &format!("DELETE FROM {table} WHERE issue_id = ?"),
            vec![id.into()],
        )
        .await?;
    }
    execute(&txn, "DELETE FROM issues WHERE id = ?", vec![id.into()]).await?;
    txn.commit().await?;
    Ok(HttpResponse::Accepted().finish())
}

async fn hashes(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (row, _) = issue_from(&auth, &req).await?;
    let id: i64 = row.try_get("", "id")?;
    let rows = query_all(
        auth.db(),
        "SELECT hash FROM issue_hashes WHERE issue_id = ? ORDER BY id",
        vec![id.into()],
    )
    .await?;
    let latest = events::latest_event_json(&auth, id).await?;
    let out: Vec<Json> = rows
        .iter()
        .map(|r| -> ApiResult<Json> {
            Ok(json!({"id": r.try_get::<String>("", "hash")?, "latestEvent": latest, "mergedBySeer": false}))
        })
        .collect::<ApiResult<_>>()?;
    Ok(HttpResponse::Ok().json(out))
}

/// Query parameters of the issue lists.
struct ListParams {
    query: Option<String>,
    cursor: Option<Cursor>,
    sort: Option<String>,
    limit: u64,
    projects: Vec<i64>,
    ids: Vec<i64>,
    status: Option<String>,
}

fn list_params(req: &HttpRequest) -> ApiResult<ListParams> {
    let mut p = ListParams {
        query: None,
        cursor: None,
        sort: None,
        limit: 100,
        projects: vec![],
        ids: vec![],
        status: None,
    };
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "query" => p.query = Some(v.into_owned()),
            "cursor" => p.cursor = Cursor::parse(&v)?,
            "sort" => p.sort = Some(v.into_owned()),
            "limit" | "per_page" => p.limit = pagination::per_page(Some(&v))?,
            "project" if v != "-1" && !v.is_empty() => p.projects.push(
                v.parse()
                    .map_err(|_| ApiError::bad_request("`project` must be a project id"))?,
            ),
            "id" => {
                p.ids.push(v.parse().map_err(|_| {
                    ApiError::bad_request(format!("issue id `{v}` is not a number"))
                })?)
            }
            "status" if !v.is_empty() => p.status = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(p)
}

/// The project ids a list covers: the one in the path, else the `project` parameters (each
/// checked), else every project of the organization.
async fn list_scope(
    auth: &ApiAuth,
    org: &Org,
    project: Option<&str>,
    params: &ListParams,
) -> ApiResult<Vec<i64>> {
    if let Some(slug) = project {
        return Ok(vec![
            super::releases::project_by_slug(auth.db(), org, slug)
                .await?
                .0,
        ]);
    }
    let rows = query_all(
        auth.db(),
        "SELECT id FROM projects WHERE organization_id = ?",
        vec![org.id.into()],
    )
    .await?;
    let all: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    if params.projects.is_empty() {
        return Ok(all);
    }
    for p in &params.projects {
        if !all.contains(p) {
            return Err(ApiError::forbidden(format!(
                "project {p} is not a project of this organization"
            )));
        }
    }
    Ok(params.projects.clone())
}

/// The search of a list request and the status it lists when the query has no `is:`:
/// Sentry lists only unresolved issues unless `query` says otherwise (an empty `query=`
/// means every status). `?status=` applies when the query names none.
fn search_of(
    params: &ListParams,
    default_status: StatusFilter,
) -> ApiResult<(Search, StatusFilter)> {
    let (search, default_status) = match params.query.as_deref() {
        Some(q) => (search::parse(q), StatusFilter::All),
        None => (Ok(Search::default()), default_status),
    };
    let mut search = search.map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(s) = &params.status
        && search.status.is_none()
    {
        search.status =
            Some(search::status_filter(s).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    Ok((search, default_status))
}

async fn list(
    auth: &ApiAuth,
    req: &HttpRequest,
    org_slug: &str,
    project: Option<&str>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let org = auth.organization(org_slug).await?;
    let params = list_params(req)?;
    let projects = list_scope(auth, &org, project, &params).await?;
    let (search, default_status) = search_of(&params, StatusFilter::Unresolved)?;
    let key = sort_column(params.sort.as_deref())?;
    let page = pagination::page_query(params.cursor, key, "i.id", params.limit);
    let (cond, mut values) = search.condition(default_status);
    let mut sql = format!(
        "SELECT {ISSUE_COLUMNS}, {key} AS sort_key FROM issues i JOIN projects p ON p.id = i.project_id WHERE i.project_id IN ({})",
        if projects.is_empty() {
            "NULL".to_string()
        } else {
            vec!["?"; projects.len()].join(", ")
        }
    );
    let mut all_values: Vec<Value> = projects.iter().map(|p| Value::from(*p)).collect();
    if !cond.is_empty() {
        sql.push_str(" AND ");
        sql.push_str(&cond);
        all_values.append(&mut values);
    }
    if !params.ids.is_empty() {
        sql.push_str(&format!(
            " AND i.id IN ({})",
            vec!["?"; params.ids.len()].join(", ")
        ));
        all_values.extend(params.ids.iter().map(|i| Value::from(*i)));
    }
    sql.push_str(&page.condition);
    all_values.extend(page.values);
    sql.push_str(&format!(
        " ORDER BY {} LIMIT {} OFFSET {}",
        page.order_by, page.fetch, page.offset
    ));
    let rows = query_all(auth.db(), &sql, all_values).await?;
    let base = page_base(auth);
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push((
            row.try_get::<i64>("", "sort_key")?,
            issue_json(row, &org.slug, &base)?,
        ));
    }
    let page = pagination::finish_page(items, params.cursor, params.limit);
    Ok(HttpResponse::Ok()
        .insert_header(("Link", pagination::link_header(req, &page)))
        .json(&page.items))
}

async fn list_project(
    auth: ApiAuth,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (org, project) = path.into_inner();
    list(&auth, &req, &org, Some(&project)).await
}

async fn list_org(
    auth: ApiAuth,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    list(&auth, &req, &path, None).await
}

/// Most issues one bulk update changes (Sentry's limit is similar).
const BULK_LIMIT: i64 = 1000;

/// Bulk status change: the issues named by `?id=` (any number), else those matching
/// `?status=` / `?query=`, in the project or organization.
async fn bulk_update(
    auth: &ApiAuth,
    req: &HttpRequest,
    org_slug: &str,
    project: Option<&str>,
    body: IssueUpdate,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventWrite)?;
    let org = auth.organization(org_slug).await?;
    let params = list_params(req)?;
    let projects = list_scope(auth, &org, project, &params).await?;
    let change = StatusChange::parse(&body, now_ms())?
        .ok_or_else(|| ApiError::bad_request("nothing to change: give a `status`"))?;
    if projects.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    let marks = vec!["?"; projects.len()].join(", ");
    let mut values: Vec<Value> = projects.iter().map(|p| Value::from(*p)).collect();
    let mut sql = format!("SELECT i.id FROM issues i WHERE i.project_id IN ({marks})");
    if !params.ids.is_empty() {
        sql.push_str(&format!(
            " AND i.id IN ({})",
            vec!["?"; params.ids.len()].join(", ")
        ));
        values.extend(params.ids.iter().map(|i| Value::from(*i)));
    } else {
        // Without ids every issue matching the filter changes; no `query` = all of them.
        let (search, default_status) = search_of(&params, StatusFilter::All)?;
        let (cond, v) = search.condition(default_status);
        if !cond.is_empty() {
            sql.push_str(" AND ");
            sql.push_str(&cond);
            values.extend(v);
        }
    }
    sql.push_str(&format!(" ORDER BY i.last_seen DESC LIMIT {BULK_LIMIT}"));
    let ids: Vec<i64> = query_all(auth.db(), &sql, values)
        .await?
        .iter()
        .map(|r| r.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    apply_status(auth.db(), &ids, &change).await?;
    let (status, details) = match &change {
        StatusChange::Unresolved => ("unresolved", json!({})),
        StatusChange::Resolved => ("resolved", json!({})),
        StatusChange::ResolvedInNextRelease => ("resolved", json!({"inNextRelease": true})),
        StatusChange::Ignored { until, count } => (
            "ignored",
            json!({"ignoreUntil": until.map(iso), "ignoreCount": count}),
        ),
    };
    Ok(HttpResponse::Ok().json(json!({"status": status, "statusDetails": details})))
}

async fn bulk_update_project(
    auth: ApiAuth,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Json<IssueUpdate>,
) -> ApiResult<HttpResponse> {
    let (org, project) = path.into_inner();
    bulk_update(&auth, &req, &org, Some(&project), body.into_inner()).await
}

async fn bulk_update_org(
    auth: ApiAuth,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Json<IssueUpdate>,
) -> ApiResult<HttpResponse> {
    bulk_update(&auth, &req, &path, None, body.into_inner()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_as_sentry_spells_them() {
        assert_eq!(short_id("web", 1), "WEB-1");
        assert_eq!(short_id("web", 42), "WEB-1A");
        assert_eq!(short_id("api-server", 32 * 32), "API-SERVER-100");
    }

    #[test]
    fn status_changes_parse() {
        let u = |v: Json| serde_json::from_value::<IssueUpdate>(v).expect("body");
        assert_eq!(
            StatusChange::parse(&u(json!({"status": "resolved", "snoozeDuration": null})), 0)
                .unwrap(),
            Some(StatusChange::Resolved)
        );
        assert_eq!(
            StatusChange::parse(
                &u(json!({"status": "resolved", "statusDetails": {"inNextRelease": true}})),
                0
            )
            .unwrap(),
            Some(StatusChange::ResolvedInNextRelease)
        );
        assert_eq!(
            StatusChange::parse(&u(json!({"status": "resolvedInNextRelease"})), 0).unwrap(),
            Some(StatusChange::ResolvedInNextRelease)
        );
        assert_eq!(
            StatusChange::parse(&u(json!({"status": "muted", "snoozeDuration": 10})), 1000)
                .unwrap(),
            Some(StatusChange::Ignored {
                until: Some(1000 + 600_000),
                count: None
            })
        );
        assert_eq!(
            StatusChange::parse(
                &u(json!({"status": "ignored", "statusDetails": {"ignoreCount": 5}})),
                0
            )
            .unwrap(),
            Some(StatusChange::Ignored {
                until: None,
                count: Some(5)
            })
        );
        assert!(StatusChange::parse(&u(json!({"status": "sideways"})), 0).is_err());
        assert_eq!(StatusChange::parse(&u(json!({})), 0).unwrap(), None);
    }
}
