//! Issues through Sentry's Web API: search lists per project and per organization, one
//! issue (get, status change, delete), bulk status changes as `sentry-cli issues
//! resolve|mute|unresolve` send them, and the grouping hashes merged into an issue.
//!
//! Everything an issue does happens in the issue domain (`faultline_core::issues`: the
//! search grammar, the list query, status changes, deletion), exactly as on the pages;
//! this file parses Sentry's parameters and bodies, checks the token, calls the domain
//! and writes Sentry's JSON.

use actix_web::{HttpRequest, HttpResponse, web};
use faultline_core::issues::activity::Actor;
use faultline_core::issues::search::{self, Search, StatusFilter};
use faultline_core::issues::{
    self, Filter, Issue, Sort, StatusChange, StatusDetails, Window, assign, status,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::auth::{Org, Principal, Scope};
use super::pagination::{self, Cursor};
use super::{ApiAuth, ApiError, ApiResult, events, iso, query_all, query_one};
use faultline_core::entity::now_ms;

pub use faultline_core::issues::short_id;

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

// ---------------------------------------------------------------------------------------
// Parsing.

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
    /// `"<user id | user:<id> | email | username>"`, or `""` / `null` for nobody.
    #[serde(default, deserialize_with = "present")]
    pub assigned_to: Option<Json>,
}

/// A field that is there, even as `null` (absent stays `None` through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

/// The member an update assigns to (`Some(None)`: nobody), if it assigns at all;
/// a non-member is refused.
async fn assignee_of(
    auth: &ApiAuth,
    org: &Org,
    u: &IssueUpdate,
) -> ApiResult<Option<Option<assign::Member>>> {
    let text = match &u.assigned_to {
        None => return Ok(None),
        Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`assignedTo` must be a user id, user:<id>, an email or \"\"",
            ));
        }
    };
    let who = assign::Assignee::parse(&text).map_err(domain_error)?;
    Ok(Some(
        assign::find_member(auth.db(), org.id, &who)
            .await
            .map_err(domain_error)?,
    ))
}

/// A domain error as the API answers it.
fn domain_error(e: issues::Error) -> ApiError {
    match e {
        issues::Error::Invalid(m) => ApiError::bad_request(m),
        issues::Error::Db(e) => e.into(),
    }
}

/// The user a request acts as (`assigned:me`): the session's user, or the user who made
/// the token (an organization token from the CLI has none).
async fn acting_user(auth: &ApiAuth) -> ApiResult<Option<i64>> {
    Ok(match &auth.principal {
        Principal::User { id, .. } => Some(*id),
        Principal::Token { id, .. } => query_one(
            auth.db(),
            "SELECT user_id FROM api_tokens WHERE id = ?",
            vec![(*id).into()],
        )
        .await?
        .map(|r| r.try_get::<Option<i64>>("", "user_id"))
        .transpose()?
        .flatten(),
    })
}

/// Who a request acts as on an issue's timeline: its user (the session's, or whoever made
/// the token on the settings page), else — an organization token from the CLI — the
/// organization, shown by its name.
pub async fn actor_of(auth: &ApiAuth, org: &Org) -> ApiResult<Actor> {
    Ok(match acting_user(auth).await? {
        Some(id) => Actor::User(id),
        None => Actor::Organization(org.name.clone()),
    })
}

/// Sentry's `assignedTo` object.
fn assigned_json(user_id: Option<i64>, email: Option<&str>) -> Json {
    match user_id {
        Some(id) => json!({"type": "user", "id": id.to_string(), "name": email, "email": email}),
        None => Json::Null,
    }
}

/// The status change an update body asks for, if it asks for one at all.
pub fn status_change(u: &IssueUpdate, now: i64) -> ApiResult<Option<StatusChange>> {
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

/// `status` and `statusDetails` as Sentry shows them.
fn status_json(stored: &str, details: Option<&str>) -> (&'static str, Json) {
    let details = StatusDetails::read(details);
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

/// An issue object with Sentry's fields.
pub fn issue_json(issue: &Issue, org_slug: &str, base_url: &str) -> Json {
    let id = issue.id;
    let (status, status_details) = status_json(&issue.status, issue.status_details.as_deref());
    let title = issue.title.clone();
    let culprit = issue.culprit.clone();
    let is_error = issue.exception_type.is_some();
    let metadata = if is_error {
        json!({"type": issue.exception_type, "value": issue.exception_value, "title": title, "filename": culprit, "in_app_frame_mix": "mixed"})
    } else {
        json!({"title": title, "value": issue.exception_value})
    };
    let release = |v: Option<String>| v.map(|v| json!({"version": v, "shortVersion": v}));
    json!({
        "id": id.to_string(),
        "shortId": issue.short_id_text(),
        "title": title,
        "culprit": culprit,
        "permalink": format!("{}/organizations/{org_slug}/issues/{id}/", base_url.trim_end_matches('/')),
        "logger": null,
        "level": issue.level,
        "status": status,
        "statusDetails": status_details,
        "substatus": match status {
            "unresolved" => "ongoing",
            "ignored" if status_details.as_object().is_some_and(|d| !d.is_empty()) => "archived_until_condition_met",
            "ignored" => "archived_forever",
            _ => "resolved",
        },
        "isPublic": false,
        "platform": issue.platform,
        "project": {
            "id": issue.project_id.to_string(),
            "name": issue.project_name,
            "slug": issue.project_slug,
            "platform": issue.project_platform,
        },
        "type": if is_error { "error" } else { "default" },
        "issueType": "error",
        "issueCategory": "error",
        "metadata": metadata,
        "numComments": 0,
        "assignedTo": assigned_json(issue.assignee_id, issue.assignee_email.as_deref()),
        "isBookmarked": false,
        "isSubscribed": false,
        "subscriptionDetails": null,
        "hasSeen": false,
        "annotations": [],
        "isUnhandled": false,
        "count": issue.times_seen.to_string(),
        "userCount": issue.users_seen,
        "firstSeen": iso(issue.first_seen),
        "lastSeen": iso(issue.last_seen),
        "firstRelease": release(issue.first_release.clone()),
        "lastRelease": release(issue.last_release.clone()),
    })
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// An issue the caller may see, with its organization.
pub async fn issue_row(
    auth: &ApiAuth,
    id: &str,
    org_slug: Option<&str>,
) -> ApiResult<(Issue, Org)> {
    let not_found = || ApiError::not_found(format!("issue `{id}` not found"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let issue = issues::get(auth.db(), id).await?.ok_or_else(not_found)?;
    if !auth.can_access(auth.db(), issue.organization_id).await? {
        return Err(not_found());
    }
    let org = query_one(
        auth.db(),
        "SELECT id, slug, name, created_at FROM organizations WHERE id = ?",
        vec![issue.organization_id.into()],
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
    Ok((issue, org))
}

/// The base URL of links to pages (`FAULTLINE_URL`).
pub fn page_base(auth: &ApiAuth) -> String {
    auth.public_url.clone()
}

/// `{id}` or `{org}/{id}` from the two routes of one issue.
async fn issue_from(auth: &ApiAuth, req: &HttpRequest) -> ApiResult<(Issue, Org)> {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let org = req.match_info().get("org").map(str::to_string);
    issue_row(auth, &id, org.as_deref()).await
}

async fn get_issue(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (issue, org) = issue_from(&auth, &req).await?;
    let mut out = issue_json(&issue, &org.slug, &page_base(&auth));
    // One issue counts its comments; lists keep 0 rather than a count per row.
    out["numComments"] = json!(issues::activity::comment_count(auth.db(), issue.id).await?);
    Ok(HttpResponse::Ok().json(out))
}

async fn update_issue(
    auth: ApiAuth,
    req: HttpRequest,
    body: web::Json<IssueUpdate>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventWrite)?;
    let (issue, org) = issue_from(&auth, &req).await?;
    let now = now_ms();
    let change = status_change(&body, now)?;
    let assignee = assignee_of(&auth, &org, &body).await?;
    let actor = actor_of(&auth, &org).await?;
    if let Some(change) = change {
        issues::set_status(auth.db(), org.id, &[issue.id], &change, &actor, now).await?;
    }
    if let Some(member) = assignee {
        assign::assign(auth.db(), org.id, &[issue.id], member.as_ref(), &actor).await?;
    }
    let (issue, _) = issue_row(&auth, &issue.id.to_string(), None).await?;
    Ok(HttpResponse::Ok().json(issue_json(&issue, &org.slug, &page_base(&auth))))
}

/// Deletes an issue with its events, hashes and tag values (a later event with one of its
/// hashes starts a new issue).
async fn delete_issue(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventAdmin)?;
    let (issue, org) = issue_from(&auth, &req).await?;
    issues::delete(auth.db(), org.id, issue.id).await?;
    Ok(HttpResponse::Accepted().finish())
}

async fn hashes(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (issue, _) = issue_from(&auth, &req).await?;
    let id = issue.id;
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
    let sort = Sort::parse_sentry(params.sort.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = Filter {
        projects,
        search,
        default_status: Some(default_status),
        ids: params.ids.clone(),
        viewer: acting_user(auth).await?,
    };
    let window = params.cursor.map(|c| {
        if c.is_prev {
            Window::AtLeast {
                value: c.value,
                offset: c.offset,
            }
        } else {
            Window::AtMost {
                value: c.value,
                offset: c.offset,
            }
        }
    });
    let found = issues::list::list(auth.db(), &filter, sort, window, params.limit + 1).await?;
    let base = page_base(auth);
    let items = found
        .iter()
        .map(|i| (sort.value(i), issue_json(i, &org.slug, &base)))
        .collect();
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
const BULK_LIMIT: u64 = 1000;

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
    let now = now_ms();
    let change = status_change(&body, now)?;
    let assignee = assignee_of(auth, &org, &body).await?;
    if change.is_none() && assignee.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give a `status` or `assignedTo`",
        ));
    }
    let filter = if !params.ids.is_empty() {
        Filter {
            projects,
            ids: params.ids.clone(),
            ..Filter::default()
        }
    } else {
        // Without ids every issue matching the filter changes; no `query` = all of them.
        let (search, default_status) = search_of(&params, StatusFilter::All)?;
        Filter {
            projects,
            search,
            default_status: Some(default_status),
            ids: vec![],
            viewer: acting_user(auth).await?,
        }
    };
    let ids = issues::list::select_ids(auth.db(), &filter, BULK_LIMIT).await?;
    if ids.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    let actor = actor_of(auth, &org).await?;
    // Sentry answers with the fields that changed.
    let mut answer = json!({});
    if let Some(change) = &change {
        issues::set_status(auth.db(), org.id, &ids, change, &actor, now).await?;
        let (status, details) = match change {
            StatusChange::Unresolved => ("unresolved", json!({})),
            StatusChange::Resolved => ("resolved", json!({})),
            StatusChange::ResolvedInNextRelease => ("resolved", json!({"inNextRelease": true})),
            StatusChange::Ignored { until, count } => (
                "ignored",
                json!({"ignoreUntil": until.map(iso), "ignoreCount": count}),
            ),
        };
        answer["status"] = json!(status);
        answer["statusDetails"] = details;
    }
    if let Some(member) = &assignee {
        assign::assign(auth.db(), org.id, &ids, member.as_ref(), &actor).await?;
        answer["assignedTo"] = assigned_json(
            member.as_ref().map(|m| m.user_id),
            member.as_ref().map(|m| m.email.as_str()),
        );
    }
    Ok(HttpResponse::Ok().json(answer))
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
    fn status_changes_parse() {
        let u = |v: Json| serde_json::from_value::<IssueUpdate>(v).expect("body");
        assert_eq!(
            status_change(&u(json!({"status": "resolved", "snoozeDuration": null})), 0).unwrap(),
            Some(StatusChange::Resolved)
        );
        assert_eq!(
            status_change(
                &u(json!({"status": "resolved", "statusDetails": {"inNextRelease": true}})),
                0
            )
            .unwrap(),
            Some(StatusChange::ResolvedInNextRelease)
        );
        assert_eq!(
            status_change(&u(json!({"status": "resolvedInNextRelease"})), 0).unwrap(),
            Some(StatusChange::ResolvedInNextRelease)
        );
        assert_eq!(
            status_change(&u(json!({"status": "muted", "snoozeDuration": 10})), 1000).unwrap(),
            Some(StatusChange::Ignored {
                until: Some(1000 + 600_000),
                count: None
            })
        );
        assert_eq!(
            status_change(
                &u(json!({"status": "ignored", "statusDetails": {"ignoreCount": 5}})),
                0
            )
            .unwrap(),
            Some(StatusChange::Ignored {
                until: None,
                count: Some(5)
            })
        );
        assert!(status_change(&u(json!({"status": "sideways"})), 0).is_err());
        assert_eq!(status_change(&u(json!({})), 0).unwrap(), None);
    }
}
