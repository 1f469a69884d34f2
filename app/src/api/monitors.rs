//! Cron monitors in Sentry's Web API (PROTOCOL.md §9.3.5), so `sentry-cli monitors list`
//! and scripts work: `GET|POST /organizations/{org}/monitors/`, `GET|PUT|DELETE
//! /organizations/{org}/monitors/{monitor}/` (slug or id) and `GET .../{monitor}/checkins/`.
//! Durations are milliseconds, as Sentry answers. Reading needs `project:read`, changing
//! `project:write`; another organization's monitor is a 404 like a missing one.

use actix_web::{HttpRequest, HttpResponse, web};
use faultline_core::monitors::{self, Monitor, MonitorEnvironment, MonitorUpdate, UpdateError};
use faultline_core::protocol::check_in::{MonitorConfig, slugify};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::auth::{ApiAuth, Org, Scope};
use super::{ApiError, ApiResult, iso};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/organizations/{org}/monitors")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/organizations/{org}/monitors/{monitor}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        web::resource("/organizations/{org}/monitors/{monitor}/checkins")
            .route(web::get().to(check_ins)),
    );
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A guid (32 hex) as Sentry writes ids: a hyphenated UUID.
fn hyphenated(guid: &str) -> String {
    uuid::Uuid::parse_str(guid)
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_else(|_| guid.to_string())
}

fn opt_iso(ms: Option<i64>) -> Json {
    ms.map_or(Json::Null, |m| json!(iso(m)))
}

fn environment_json(e: &MonitorEnvironment, muted: bool) -> Json {
    json!({
        "name": e.environment,
        "status": e.status,
        "isMuted": muted,
        "dateCreated": iso(e.created_at),
        "lastCheckIn": opt_iso(e.last_checkin),
        "nextCheckIn": opt_iso(e.next_checkin),
        "nextCheckInLatest": opt_iso(e.next_checkin_latest),
        "activeIncident": e.issue_id.map(|id| json!({"groupId": id.to_string()})),
    })
}

async fn monitor_json(auth: &ApiAuth, m: &Monitor) -> ApiResult<Json> {
    let envs = monitors::environments(auth.db(), &[m.id]).await?;
    Ok(monitor_json_with(m, &envs))
}

fn monitor_json_with(m: &Monitor, envs: &[MonitorEnvironment]) -> Json {
    json!({
        "id": hyphenated(&m.guid),
        "slug": m.slug,
        "name": m.name,
        "status": m.status,
        "isMuted": m.is_muted,
        "isUpserting": false,
        "type": "cron_job",
        "owner": null,
        "config": m.config.to_sentry_json(),
        "dateCreated": iso(m.created_at),
        "project": {"id": m.project_id.to_string(), "slug": m.project_slug, "name": m.project_slug},
        "environments": envs.iter().filter(|e| e.monitor_id == m.id)
            .map(|e| environment_json(e, m.is_muted)).collect::<Vec<_>>(),
        "alertRule": null,
    })
}

#[derive(Debug, Deserialize)]
struct MonitorPath {
    org: String,
    monitor: String,
}

/// The query of the list: `project` (ids or slugs, repeatable), `environment`, `query`.
fn query_values(req: &HttpRequest, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

async fn project_filter(
    auth: &ApiAuth,
    org: &Org,
    req: &HttpRequest,
) -> ApiResult<Option<Vec<i64>>> {
    let wanted = query_values(req, "project");
    // Sentry's "all projects" is -1.
    if wanted.is_empty() || wanted.iter().any(|p| p == "-1") {
        return Ok(None);
    }
    let projects: Vec<Json> = wanted.into_iter().map(Json::from).collect();
    Ok(Some(
        super::releases::project_ids(auth.db(), org, &projects).await?,
    ))
}

async fn list(auth: ApiAuth, path: web::Path<String>, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectRead)?;
    let org = auth.organization(&path).await?;
    let projects = project_filter(&auth, &org, &req).await?;
    let mut found = monitors::list(auth.db(), org.id, projects.as_deref()).await?;
    if let Some(q) = query_values(&req, "query")
        .first()
        .map(|q| q.to_lowercase())
        && !q.is_empty()
    {
        found.retain(|m| m.slug.contains(&q) || m.name.to_lowercase().contains(&q));
    }
    let ids: Vec<i64> = found.iter().map(|m| m.id).collect();
    let mut envs = monitors::environments(auth.db(), &ids).await?;
    let env_filter = query_values(&req, "environment");
    if !env_filter.is_empty() {
        envs.retain(|e| env_filter.contains(&e.environment));
    }
    let out: Vec<Json> = found.iter().map(|m| monitor_json_with(m, &envs)).collect();
    // One page holds them all: the links say there is nothing before or after, which is
    // where sentry-cli's pagination stops.
    let base = format!("{}{}", super::request_base(&req), req.path());
    let link = format!(
        "<{base}?cursor=0:0:1>; rel=\"previous\"; results=\"false\"; cursor=\"0:0:1\", \
         <{base}?cursor=0:{}:0>; rel=\"next\"; results=\"false\"; cursor=\"0:{}:0\"",
        out.len(),
        out.len()
    );
    Ok(HttpResponse::Ok().insert_header(("Link", link)).json(out))
}

async fn find(auth: &ApiAuth, path: &MonitorPath, req: &HttpRequest) -> ApiResult<(Org, Monitor)> {
    let org = auth.organization(&path.org).await?;
    let project = match query_values(req, "project").first() {
        Some(p) => Some(
            super::releases::project_ids(auth.db(), &org, &[Json::from(p.clone())])
                .await?
                .first()
                .copied()
                .ok_or_else(|| ApiError::not_found("project not found"))?,
        ),
        None => None,
    };
    let monitor = monitors::get_in_org(auth.db(), org.id, &path.monitor, project)
        .await?
        .ok_or_else(|| ApiError::not_found("The requested resource does not exist"))?;
    Ok((org, monitor))
}

async fn get(
    auth: ApiAuth,
    path: web::Path<MonitorPath>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectRead)?;
    let (_, monitor) = find(&auth, &path, &req).await?;
    Ok(HttpResponse::Ok().json(monitor_json(&auth, &monitor).await?))
}

/// Reads the changes of a `PUT` (or the fields of a `POST`) over the monitor's current state.
fn parse_update(body: &Json, current: Option<&MonitorConfig>) -> ApiResult<MonitorUpdate> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let mut change = MonitorUpdate::default();
    if let Some(name) = obj.get("name") {
        let name = name
            .as_str()
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.chars().count() <= 128)
            .ok_or_else(|| ApiError::bad_request("`name` must be 1 to 128 characters"))?;
        change.name = Some(name.to_string());
    }
    if let Some(slug) = obj.get("slug") {
        let slug = slug
            .as_str()
            .and_then(slugify)
            .ok_or_else(|| ApiError::bad_request("`slug` must contain letters or digits"))?;
        change.slug = Some(slug);
    }
    if let Some(status) = obj.get("status") {
        match status.as_str() {
            Some(s @ ("active" | "disabled")) => change.status = Some(s.to_string()),
            _ => return Err(ApiError::bad_request("`status` must be active or disabled")),
        }
    }
    if let Some(muted) = obj.get("isMuted") {
        change.is_muted = Some(
            muted
                .as_bool()
                .ok_or_else(|| ApiError::bad_request("`isMuted` must be true or false"))?,
        );
    }
    if let Some(config) = obj.get("config") {
        let given = config
            .as_object()
            .ok_or_else(|| ApiError::bad_request("`config` must be an object"))?;
        // Keys not given keep their current values.
        let mut merged: Map<String, Json> = current
            .map(|c| c.to_sentry_json())
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        if given.contains_key("schedule") && !given.contains_key("schedule_type") {
            merged.remove("schedule_type");
        }
        for (k, v) in given {
            merged.insert(k.clone(), v.clone());
        }
        change.config = Some(
            MonitorConfig::from_sentry(&merged)
                .map_err(|e| ApiError::bad_request(format!("invalid config: {e}")))?,
        );
    }
    Ok(change)
}

async fn update(
    auth: ApiAuth,
    path: web::Path<MonitorPath>,
    req: HttpRequest,
    body: web::Json<Json>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectWrite)?;
    let (org, monitor) = find(&auth, &path, &req).await?;
    let change = parse_update(&body, Some(&monitor.config))?;
    monitors::update(auth.db(), org.id, &monitor, &change)
        .await
        .map_err(|e| match e {
            UpdateError::SlugTaken => ApiError::bad_request(e.to_string()),
            UpdateError::Db(e) => e.into(),
        })?;
    let monitor = monitors::by_id(auth.db(), monitor.id)
        .await?
        .ok_or_else(|| ApiError::not_found("The requested resource does not exist"))?;
    Ok(HttpResponse::Ok().json(monitor_json(&auth, &monitor).await?))
}

async fn create(
    auth: ApiAuth,
    path: web::Path<String>,
    body: web::Json<Json>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectWrite)?;
    let org = auth.organization(&path).await?;
    let project = body
        .get("project")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("`project` is required"))?;
    let project_id = super::releases::project_ids(auth.db(), &org, &[project])
        .await?
        .first()
        .copied()
        .ok_or_else(|| ApiError::bad_request("`project` is not a project of this organization"))?;
    let change = parse_update(&body, None)?;
    let name = change
        .name
        .clone()
        .ok_or_else(|| ApiError::bad_request("`name` is required"))?;
    let slug = change
        .slug
        .clone()
        .or_else(|| slugify(&name))
        .ok_or_else(|| ApiError::bad_request("`slug` is required"))?;
    let config = change
        .config
        .clone()
        .ok_or_else(|| ApiError::bad_request("`config` is required"))?;
    if !monitors::create(auth.db(), project_id, &slug, &name, &config, now_ms()).await? {
        return Err(ApiError::bad_request(
            "a monitor with this slug already exists in the project",
        ));
    }
    let monitor = monitors::by_slug(auth.db(), project_id, &slug)
        .await?
        .ok_or_else(|| ApiError::internal("monitor vanished after create"))?;
    if change.status.is_some() || change.is_muted.is_some() {
        monitors::update(auth.db(), org.id, &monitor, &change)
            .await
            .map_err(ApiError::internal)?;
    }
    let monitor = monitors::by_id(auth.db(), monitor.id)
        .await?
        .ok_or_else(|| ApiError::internal("monitor vanished after create"))?;
    Ok(HttpResponse::Created().json(monitor_json(&auth, &monitor).await?))
}

async fn delete(
    auth: ApiAuth,
    path: web::Path<MonitorPath>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectWrite)?;
    let (org, monitor) = find(&auth, &path, &req).await?;
    monitors::delete(auth.db(), org.id, monitor.id).await?;
    Ok(HttpResponse::Accepted().finish())
}

async fn check_ins(
    auth: ApiAuth,
    path: web::Path<MonitorPath>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectRead)?;
    let (_, monitor) = find(&auth, &path, &req).await?;
    let environment = query_values(&req, "environment").into_iter().next();
    let limit =
        super::pagination::per_page(query_values(&req, "per_page").first().map(String::as_str))?;
    let since = match query_values(&req, "statsPeriod").first() {
        Some(p) => Some(now_ms() - period_ms(p)?),
        None => None,
    };
    let rows = monitors::check_ins(
        auth.db(),
        monitor.id,
        environment.as_deref(),
        since,
        None,
        limit,
    )
    .await?;
    let config = monitor.config.to_sentry_json();
    let out: Vec<Json> = rows
        .iter()
        .map(|c| {
            json!({
                "id": hyphenated(&c.guid),
                "environment": c.environment,
                "status": c.status,
                "duration": c.duration_ms,
                "dateCreated": iso(c.date_added),
                "dateAdded": iso(c.date_added),
                "expectedTime": opt_iso(c.expected_time),
                "monitorConfig": config,
                "groups": [],
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// `statsPeriod` (`24h`, `14d`, `30m`, `2w`) in milliseconds.
fn period_ms(p: &str) -> ApiResult<i64> {
    let bad = || ApiError::bad_request(format!("invalid statsPeriod {p:?}"));
    let (num, unit) = p.split_at(p.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).filter(|v| *v >= 0).ok_or_else(bad)
}
