//! Releases, deploys and release files, as `sentry-cli releases ...`, `deploys ...` and
//! `releases files ...` (2.x) call them:
//!
//! - `/organizations/{org}/releases/` (list, create), `.../releases/{version}/` (get,
//!   update/finalize, delete), and the project-scoped `/projects/{org}/{project}/releases/`;
//! - `.../releases/{version}/deploys/` (list, create);
//! - `.../releases/{version}/files/` and `.../files/{id}/` (list, upload one file, get or
//!   download, delete), organization- and project-scoped.
//!
//! Releases also appear by themselves when events name them (`worker::store`).

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::auth::{Org, Scope};
use super::bundle::{self, ArtifactKind};
use super::pagination::{self, Cursor};
use super::{ApiAuth, ApiError, ApiResult, artifacts, chunks, execute, iso, query_all, query_one};
use faultline_core::entity::now_ms;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One handler serves the organization and the project route of each resource
    // (`ReleasePath` reads the project when the route has one).
    cfg.service(
        web::resource([
            "/organizations/{org}/releases",
            "/projects/{org}/{project}/releases",
        ])
        .route(web::get().to(list))
        .route(web::post().to(create)),
    )
    .service(
        web::resource([
            "/organizations/{org}/releases/{version}",
            "/projects/{org}/{project}/releases/{version}",
        ])
        .route(web::get().to(get_release))
        .route(web::put().to(update_release))
        .route(web::delete().to(delete_release)),
    )
    .service(
        web::resource("/organizations/{org}/releases/{version}/deploys")
            .route(web::get().to(list_deploys))
            .route(web::post().to(create_deploy)),
    )
    .service(
        web::resource([
            "/organizations/{org}/releases/{version}/files",
            "/projects/{org}/{project}/releases/{version}/files",
        ])
        .route(web::get().to(list_files))
        .route(web::post().to(upload_file)),
    )
    .service(
        web::resource([
            "/organizations/{org}/releases/{version}/files/{id}",
            "/projects/{org}/{project}/releases/{version}/files/{id}",
        ])
        .route(web::get().to(get_file))
        .route(web::delete().to(delete_file)),
    )
    .service(
        web::resource([
            "/projects/{org}/{project}/files/source-maps",
            "/organizations/{org}/files/source-maps",
        ])
        .route(web::delete().to(delete_release_source_maps)),
    );
}

/// The path of a release request: the organization, the project on `/projects/{org}/
/// {project}/...` routes, the release version and the file id where the route has them.
struct ReleasePath {
    org: String,
    project: Option<String>,
    version: String,
    file: String,
}

impl actix_web::FromRequest for ReleasePath {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let m = req.match_info();
        let part = |name: &str| m.get(name).unwrap_or_default().to_string();
        std::future::ready(Ok(ReleasePath {
            org: part("org"),
            project: m.get("project").map(str::to_string),
            version: part("version"),
            file: part("id"),
        }))
    }
}

impl ReleasePath {
    /// Checks the scope, then finds the organization and, on a project route, the project
    /// (a project of another organization is 404).
    async fn scope(&self, auth: &ApiAuth, scope: Scope) -> ApiResult<(Org, Option<i64>)> {
        auth.require(scope)?;
        let org = auth.organization(&self.org).await?;
        let project = match &self.project {
            Some(slug) => Some(project_by_slug(auth.db(), &org, slug).await?.0),
            None => None,
        };
        Ok((org, project))
    }

    /// [`Self::scope`], then the release named by the path (404 when missing).
    async fn release(&self, auth: &ApiAuth, scope: Scope) -> ApiResult<(Org, Release)> {
        let (org, _) = self.scope(auth, scope).await?;
        let release = find_or_404(auth.db(), &org, &self.version).await?;
        Ok((org, release))
    }
}

// ---------------------------------------------------------------------------------------
// Shared lookups, also used by assembly.

/// A release row.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: i64,
    pub organization_id: i64,
    pub version: String,
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_created: i64,
    pub date_released: Option<i64>,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub status: String,
}

const RELEASE_COLUMNS: &str = "r.id, r.organization_id, r.version, r.ref, r.url, r.date_created, \
     r.date_released, r.first_event, r.last_event, r.status";

fn release_from_row(row: &sea_orm::QueryResult) -> Result<Release, sea_orm::DbErr> {
    Ok(Release {
        id: row.try_get("", "id")?,
        organization_id: row.try_get("", "organization_id")?,
        version: row.try_get("", "version")?,
        git_ref: row.try_get("", "ref")?,
        url: row.try_get("", "url")?,
        date_created: row.try_get("", "date_created")?,
        date_released: row.try_get("", "date_released")?,
        first_event: row.try_get("", "first_event")?,
        last_event: row.try_get("", "last_event")?,
        status: row.try_get("", "status")?,
    })
}

/// Refuses versions sentry-cli and Sentry refuse (empty, `/`, too long, `.`/`..`).
pub fn check_version(v: &str) -> ApiResult<()> {
    if v.trim().is_empty()
        || v.contains('/')
        || v == "."
        || v == ".."
        || v.len() > 200
        || v.chars().any(char::is_control)
        || v.contains('\u{fffd}')
    {
        return Err(ApiError::bad_request(format!(
            "`{v}` is not a valid release version (no `/`, not empty, at most 200 characters)"
        )));
    }
    Ok(())
}

/// The release of an organization by version.
pub async fn find(
    db: &impl ConnectionTrait,
    org_id: i64,
    version: &str,
) -> ApiResult<Option<Release>> {
    let row = query_one(
        db,
        &format!(
            "SELECT {RELEASE_COLUMNS} FROM releases r WHERE r.organization_id = ? AND r.version = ?"
        ),
        vec![org_id.into(), version.to_string().into()],
    )
    .await?;
    Ok(row.as_ref().map(release_from_row).transpose()?)
}

async fn find_or_404(db: &impl ConnectionTrait, org: &Org, version: &str) -> ApiResult<Release> {
    find(db, org.id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("release `{version}` not found")))
}

/// Creates the release if missing and links it to the projects; returns its id. Starts
/// with a write, so a SQLite transaction takes the write lock at once.
pub async fn ensure(
    db: &impl ConnectionTrait,
    org_id: i64,
    version: &str,
    project_ids: &[i64],
) -> Result<i64, sea_orm::DbErr> {
    execute(
        db,
        "INSERT INTO releases (organization_id, version, date_created, status) VALUES (?, ?, ?, 'open') \
         ON CONFLICT (organization_id, version) DO NOTHING",
        vec![org_id.into(), version.to_string().into(), now_ms().into()],
    )
    .await?;
    let id: i64 = query_one(
        db,
        "SELECT id FROM releases WHERE organization_id = ? AND version = ?",
        vec![org_id.into(), version.to_string().into()],
    )
    .await?
    .ok_or_else(|| sea_orm::DbErr::Custom("release vanished".into()))?
    .try_get("", "id")?;
    for p in project_ids {
        execute(
            db,
            "INSERT INTO release_projects (release_id, project_id, new_issues) VALUES (?, ?, 0) \
             ON CONFLICT (release_id, project_id) DO NOTHING",
            vec![id.into(), (*p).into()],
        )
        .await?;
    }
    Ok(id)
}

/// A project of the organization by slug.
pub async fn project_by_slug(
    db: &impl ConnectionTrait,
    org: &Org,
    slug: &str,
) -> ApiResult<(i64, String)> {
    let row = query_one(
        db,
        "SELECT id, slug FROM projects WHERE organization_id = ? AND slug = ?",
        vec![org.id.into(), slug.to_string().into()],
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("project `{slug}` not found")))?;
    Ok((row.try_get("", "id")?, row.try_get("", "slug")?))
}

/// Project ids for a request's `projects` (slugs, or ids as numbers or digit strings).
pub async fn project_ids(
    db: &DatabaseConnection,
    org: &Org,
    projects: &[Json],
) -> ApiResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(projects.len());
    for p in projects {
        let (sql, value): (&str, Value) = match p {
            Json::Number(n) => (
                "SELECT id FROM projects WHERE organization_id = ? AND id = ?",
                n.as_i64().unwrap_or(-1).into(),
            ),
            Json::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => (
                "SELECT id FROM projects WHERE organization_id = ? AND (id = ? OR slug = ?)",
                s.parse::<i64>().unwrap_or(-1).into(),
            ),
            Json::String(s) => (
                "SELECT id FROM projects WHERE organization_id = ? AND slug = ?",
                s.clone().into(),
            ),
            _ => {
                return Err(ApiError::bad_request(
                    "`projects` must list project slugs or ids",
                ));
            }
        };
        let mut values = vec![org.id.into(), value];
        if sql.contains("OR slug") {
            values.push(p.as_str().unwrap_or_default().to_string().into());
        }
        let row = query_one(db, sql, values).await?.ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid project: `{}` is not a project of this organization",
                p.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| p.to_string())
            ))
        })?;
        let id: i64 = row.try_get("", "id")?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn parse_time(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|_| {
                ApiError::bad_request(format!("`{field}` must be an RFC 3339 time, got `{s}`"))
            }),
    }
}

// ---------------------------------------------------------------------------------------
// Serialization.

async fn release_json(db: &impl ConnectionTrait, r: &Release) -> ApiResult<Json> {
    let projects = query_all(
        db,
        "SELECT p.id, p.slug, p.name, p.platform, rp.new_issues FROM release_projects rp \
         JOIN projects p ON p.id = rp.project_id WHERE rp.release_id = ? ORDER BY p.slug",
        vec![r.id.into()],
    )
    .await?;
    let mut new_groups = 0i64;
    let mut project_list = Vec::new();
    for p in &projects {
        let n: i64 = p.try_get("", "new_issues")?;
        new_groups += n;
        let platform: Option<String> = p.try_get("", "platform")?;
        project_list.push(json!({
            "id": p.try_get::<i64>("", "id")?,
            "slug": p.try_get::<String>("", "slug")?,
            "name": p.try_get::<String>("", "name")?,
            "newGroups": n,
            "platform": platform,
            "platforms": platform.iter().collect::<Vec<_>>(),
            "hasHealthData": false,
        }));
    }
    let deploys = query_one(
        db,
        "SELECT COUNT(*) AS n FROM deploys WHERE release_id = ?",
        vec![r.id.into()],
    )
    .await?
    .map(|row| row.try_get::<i64>("", "n"))
    .transpose()?
    .unwrap_or(0);
    let last_deploy = query_one(
        db,
        "SELECT id, environment, name, url, date_started, date_finished FROM deploys \
         WHERE release_id = ? ORDER BY date_finished DESC, id DESC LIMIT 1",
        vec![r.id.into()],
    )
    .await?
    .as_ref()
    .map(deploy_json)
    .transpose()?;
    Ok(json!({
        "id": r.id,
        "version": r.version,
        "shortVersion": r.version,
        "versionInfo": {"version": {"raw": r.version}, "description": r.version, "package": null, "buildHash": null},
        "ref": r.git_ref,
        "url": r.url,
        "status": r.status,
        "dateCreated": iso(r.date_created),
        "dateReleased": r.date_released.map(iso),
        "firstEvent": r.first_event.map(iso),
        "lastEvent": r.last_event.map(iso),
        "newGroups": new_groups,
        "projects": project_list,
        "deployCount": deploys,
        "lastDeploy": last_deploy,
        "commitCount": 0,
        "lastCommit": null,
        "authors": [],
        "owner": null,
        "data": {},
    }))
}

fn deploy_json(row: &sea_orm::QueryResult) -> ApiResult<Json> {
    Ok(json!({
        "id": row.try_get::<i64>("", "id")?.to_string(),
        "environment": row.try_get::<String>("", "environment")?,
        "name": row.try_get::<Option<String>>("", "name")?,
        "url": row.try_get::<Option<String>>("", "url")?,
        "dateStarted": row.try_get::<Option<i64>>("", "date_started")?.map(iso),
        "dateFinished": iso(row.try_get::<i64>("", "date_finished")?),
    }))
}

// ---------------------------------------------------------------------------------------
// Releases.

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    per_page: Option<String>,
    #[serde(default)]
    query: Option<String>,
    /// Project id filter (Sentry's `?project=`).
    #[serde(default)]
    project: Option<String>,
}

async fn list(
    auth: ApiAuth,
    path: ReleasePath,
    q: web::Query<ListQuery>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (org, project_id) = path.scope(&auth, Scope::ProjectRead).await?;
    let db = auth.db();
    let cursor = Cursor::parse(q.cursor.as_deref().unwrap_or(""))?;
    let limit = pagination::per_page(q.per_page.as_deref())?;
    let page = pagination::page_query(cursor, "r.date_created", "r.id", limit);
    let mut sql = format!("SELECT {RELEASE_COLUMNS} FROM releases r WHERE r.organization_id = ?");
    let mut values: Vec<Value> = vec![org.id.into()];
    let project_id = match (project_id, q.project.as_deref()) {
        (Some(p), _) => Some(p),
        (None, Some(p)) if !p.is_empty() && p != "-1" => Some(
            p.parse::<i64>()
                .map_err(|_| ApiError::bad_request("`project` must be a project id"))?,
        ),
        _ => None,
    };
    if let Some(p) = project_id {
        sql.push_str(" AND EXISTS (SELECT 1 FROM release_projects rp WHERE rp.release_id = r.id AND rp.project_id = ?)");
        values.push(p.into());
    }
    if let Some(text) = q.query.as_deref().filter(|t| !t.is_empty()) {
        sql.push_str(" AND r.version LIKE ?");
        values.push(format!("%{}%", text.replace(['%', '_'], "")).into());
    }
    sql.push_str(&page.condition);
    values.extend(page.values);
    sql.push_str(&format!(
        " ORDER BY {} LIMIT {} OFFSET {}",
        page.order_by, page.fetch, page.offset
    ));
    let rows = query_all(db, &sql, values).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let r = release_from_row(row)?;
        items.push((r.date_created, r));
    }
    let page = pagination::finish_page(items, cursor, limit);
    let mut out = Vec::with_capacity(page.items.len());
    for r in &page.items {
        out.push(release_json(db, r).await?);
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Link", pagination::link_header(&req, &page)))
        .json(out))
}

/// The body of create and update (`NewRelease`, `UpdatedRelease`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReleaseBody {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    projects: Option<Vec<Json>>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    date_started: Option<String>,
    #[serde(default)]
    date_released: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// Creates a release (208 when it exists); on a project route it belongs to that project.
async fn create(
    auth: ApiAuth,
    path: ReleasePath,
    body: web::Json<ReleaseBody>,
) -> ApiResult<HttpResponse> {
    let (org, implicit_project) = path.scope(&auth, Scope::ProjectReleases).await?;
    let org = &org;
    let body = body.into_inner();
    let db = auth.db();
    let version = body
        .version
        .clone()
        .ok_or_else(|| ApiError::bad_request("`version` is required"))?;
    check_version(&version)?;
    let mut projects = project_ids(db, org, body.projects.as_deref().unwrap_or(&[])).await?;
    if let Some(p) = implicit_project
        && !projects.contains(&p)
    {
        projects.push(p);
    }
    let existed = find(db, org.id, &version).await?.is_some();
    let txn = super::begin_write(db).await?;
    let id = ensure(&txn, org.id, &version, &projects).await?;
    apply_update(&txn, id, &body).await?;
    txn.commit().await?;
    let release = find_or_404(db, org, &version).await?;
    // Sentry answers 208 for a release that already existed; sentry-cli accepts both.
    let status = if existed {
        StatusCode::ALREADY_REPORTED
    } else {
        StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(release_json(db, &release).await?))
}

async fn apply_update(db: &impl ConnectionTrait, id: i64, body: &ReleaseBody) -> ApiResult<()> {
    let mut sets: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(url) = &body.url {
        sets.push("url = ?");
        values.push(Some(url.clone()).filter(|u| !u.is_empty()).into());
    }
    if let Some(r) = &body.git_ref {
        sets.push("ref = ?");
        values.push(Some(r.clone()).filter(|u| !u.is_empty()).into());
    }
    if let Some(t) = parse_time("dateReleased", &body.date_released)? {
        sets.push("date_released = ?");
        values.push(t.into());
    }
    if let Some(t) = parse_time("dateStarted", &body.date_started)? {
        // The release's start: when it was created, unless the client knows better.
        sets.push("date_created = ?");
        values.push(t.into());
    }
    if let Some(s) = &body.status {
        let s = match s.as_str() {
            "open" | "archived" => s.clone(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "`status` must be `open` or `archived`, not `{other}`"
                )));
            }
        };
        sets.push("status = ?");
        values.push(s.into());
    }
    if sets.is_empty() {
        return Ok(());
    }
    values.push(id.into());
    execute(
        db,
        &format!("UPDATE releases SET {} WHERE id = ?", sets.join(", ")),
        values,
    )
    .await?;
    Ok(())
}

async fn get_release(auth: ApiAuth, path: ReleasePath) -> ApiResult<HttpResponse> {
    let (_, release) = path.release(&auth, Scope::ProjectRead).await?;
    Ok(HttpResponse::Ok().json(release_json(auth.db(), &release).await?))
}

async fn update_release(
    auth: ApiAuth,
    path: ReleasePath,
    body: web::Json<ReleaseBody>,
) -> ApiResult<HttpResponse> {
    let (org, release) = path.release(&auth, Scope::ProjectReleases).await?;
    let body = body.into_inner();
    let projects = project_ids(auth.db(), &org, body.projects.as_deref().unwrap_or(&[])).await?;
    let txn = super::begin_write(auth.db()).await?;
    apply_update(&txn, release.id, &body).await?;
    ensure(&txn, org.id, &release.version, &projects).await?;
    txn.commit().await?;
    let release = find_or_404(auth.db(), &org, &path.version).await?;
    Ok(HttpResponse::Ok().json(release_json(auth.db(), &release).await?))
}

/// Deletes a release with its deploys and files. Events keep their version string; a new
/// event naming it creates the release again.
async fn delete_release(auth: ApiAuth, path: ReleasePath) -> ApiResult<HttpResponse> {
    let (_, release) = path.release(&auth, Scope::ProjectReleases).await?;
    let txn = super::begin_write(auth.db()).await?;
    artifacts::delete_where(&txn, "release_id = ?", vec![release.id.into()]).await?;
    execute(
        &txn,
        "DELETE FROM deploys WHERE release_id = ?",
        vec![release.id.into()],
    )
    .await?;
    execute(
        &txn,
        "DELETE FROM release_projects WHERE release_id = ?",
        vec![release.id.into()],
    )
    .await?;
    execute(
        &txn,
        "DELETE FROM releases WHERE id = ?",
        vec![release.id.into()],
    )
    .await?;
    txn.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------------------------------
// Deploys.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployBody {
    environment: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    date_started: Option<String>,
    #[serde(default)]
    date_finished: Option<String>,
    #[serde(default)]
    projects: Option<Vec<Json>>,
}

async fn create_deploy(
    auth: ApiAuth,
    path: ReleasePath,
    body: web::Json<DeployBody>,
) -> ApiResult<HttpResponse> {
    let (org, release) = path.release(&auth, Scope::ProjectReleases).await?;
    let body = body.into_inner();
    let environment = body
        .environment
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("`environment` is required"))?;
    if environment.len() > 64
        || environment.contains('/')
        || environment.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "`environment` must be at most 64 characters, without `/`",
        ));
    }
    let started = parse_time("dateStarted", &body.date_started)?;
    let finished = parse_time("dateFinished", &body.date_finished)?.unwrap_or_else(now_ms);
    let projects = project_ids(auth.db(), &org, body.projects.as_deref().unwrap_or(&[])).await?;
    let txn = super::begin_write(auth.db()).await?;
    let row = query_one(
        &txn,
        "INSERT INTO deploys (release_id, environment, name, url, date_started, date_finished) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id, environment, name, url, date_started, date_finished",
        vec![
            release.id.into(),
            environment.into(),
            body.name.filter(|n| !n.is_empty()).into(),
            body.url.filter(|u| !u.is_empty()).into(),
            started.into(),
            finished.into(),
        ],
    )
    .await?
    .ok_or_else(|| ApiError::internal("deploy insert returned no row"))?;
    ensure(&txn, org.id, &release.version, &projects).await?;
    txn.commit().await?;
    Ok(HttpResponse::Created().json(deploy_json(&row)?))
}

async fn list_deploys(auth: ApiAuth, path: ReleasePath) -> ApiResult<HttpResponse> {
    let (_, release) = path.release(&auth, Scope::ProjectRead).await?;
    let rows = query_all(
        auth.db(),
        "SELECT id, environment, name, url, date_started, date_finished FROM deploys \
         WHERE release_id = ? ORDER BY date_finished DESC, id DESC",
        vec![release.id.into()],
    )
    .await?;
    let out: Vec<Json> = rows.iter().map(deploy_json).collect::<ApiResult<_>>()?;
    Ok(HttpResponse::Ok().json(out))
}

// ---------------------------------------------------------------------------------------
// Release files (2.x's per-file upload and its listing).

fn file_json(row: &sea_orm::QueryResult) -> ApiResult<Json> {
    let headers: String = row.try_get("", "headers")?;
    let headers: Json = serde_json::from_str(&headers).unwrap_or_else(|_| json!({}));
    Ok(json!({
        "id": row.try_get::<i64>("", "id")?.to_string(),
        "name": row.try_get::<String>("", "name")?,
        "dist": row.try_get::<Option<String>>("", "dist")?,
        "headers": headers,
        "size": row.try_get::<i64>("", "size")?,
        "sha1": row.try_get::<String>("", "sha1")?,
        "dateCreated": iso(row.try_get::<i64>("", "created_at")?),
    }))
}

const FILE_COLUMNS: &str = "id, name, dist, headers, size, sha1, created_at";

#[derive(Debug)]
struct FilesQuery {
    cursor: Option<Cursor>,
    checksums: Vec<String>,
    query: Option<String>,
}

fn files_query(req: &HttpRequest) -> ApiResult<FilesQuery> {
    let mut q = FilesQuery {
        cursor: None,
        checksums: vec![],
        query: None,
    };
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "cursor" => q.cursor = Cursor::parse(&v)?,
            "checksum" => q.checksums.push(v.to_ascii_lowercase()),
            "query" if !v.is_empty() => q.query = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(q)
}

async fn list_files(auth: ApiAuth, path: ReleasePath, req: HttpRequest) -> ApiResult<HttpResponse> {
    let (_, release) = path.release(&auth, Scope::ProjectRead).await?;
    let q = files_query(&req)?;
    let limit = 100;
    let page = pagination::page_query(q.cursor, "id", "id", limit);
    let mut sql = format!("SELECT {FILE_COLUMNS} FROM artifacts WHERE release_id = ?");
    let mut values: Vec<Value> = vec![release.id.into()];
    if !q.checksums.is_empty() {
        sql.push_str(&format!(
            " AND sha1 IN ({})",
            faultline_core::sql::placeholders(q.checksums.len())
        ));
        values.extend(q.checksums.iter().map(|c| Value::from(c.clone())));
    }
    if let Some(text) = &q.query {
        sql.push_str(" AND name LIKE ?");
        values.push(format!("%{}%", text.replace(['%', '_'], "")).into());
    }
    sql.push_str(&page.condition);
    values.extend(page.values);
    sql.push_str(&format!(
        " ORDER BY {} LIMIT {} OFFSET {}",
        page.order_by, page.fetch, page.offset
    ));
    let rows = query_all(auth.db(), &sql, values).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push((row.try_get::<i64>("", "id")?, file_json(row)?));
    }
    let page = pagination::finish_page(items, q.cursor, limit);
    Ok(HttpResponse::Ok()
        .insert_header(("Link", pagination::link_header(&req, &page)))
        .json(&page.items))
}

/// One uploaded release file: `file` (content), `name` (its URL), `dist`, and repeated
/// `header` fields of `Key:Value`.
async fn upload_file(
    auth: ApiAuth,
    path: ReleasePath,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let (org, release) = path.release(&auth, Scope::ProjectReleases).await?;
    let is_multipart = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::bad_request(
            "expected multipart/form-data with a `file` part",
        ));
    }
    let mut form = Multipart::new(req.headers(), payload);
    let mut content: Option<Vec<u8>> = None;
    let mut file_name: Option<String> = None;
    let mut name: Option<String> = None;
    let mut dist: Option<String> = None;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut received = 0usize;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let field_name = field.name().unwrap_or_default().to_string();
        if field_name == "file" {
            file_name = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .map(str::to_string);
        }
        let mut data = Vec::new();
        while let Some(part) = field.next().await {
            let part =
                part.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
            received += part.len();
            if received > chunks::MAX_REQUEST_SIZE {
                return Err(ApiError::too_large(format!(
                    "the file is larger than {} bytes; use chunked upload (sentry-cli does)",
                    chunks::MAX_REQUEST_SIZE
                )));
            }
            data.extend_from_slice(&part);
        }
        let text = || String::from_utf8_lossy(&data).trim().to_string();
        match field_name.as_str() {
            "file" => content = Some(data),
            "name" => name = Some(text()),
            "dist" => dist = Some(text()).filter(|d| !d.is_empty()),
            "header" => {
                let t = text();
                let (k, v) = t.split_once(':').ok_or_else(|| {
                    ApiError::bad_request(format!("header `{t}` is not `Key:Value`"))
                })?;
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
            _ => {}
        }
    }
    let content = content.ok_or_else(|| ApiError::bad_request("the `file` part is missing"))?;
    let name = name
        .filter(|n| !n.is_empty())
        .or(file_name)
        .ok_or_else(|| ApiError::bad_request("`name` is required"))?;
    if name.len() > 2000 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`name` must be a URL of at most 2000 characters",
        ));
    }
    let db = auth.db();
    let is = if faultline_core::db::is_sqlite(db) {
        "IS"
    } else {
        "IS NOT DISTINCT FROM"
    };
    let exists = query_one(
        db,
        &format!("SELECT id FROM artifacts WHERE release_id = ? AND name = ? AND dist {is} ?"),
        vec![release.id.into(), name.clone().into(), dist.clone().into()],
    )
    .await?;
    if exists.is_some() {
        return Err(ApiError::conflict(
            "A file matching this name already exists for the given release",
        ));
    }
    let debug_id = headers
        .get("debug-id")
        .and_then(|d| bundle::normalize_debug_id(d));
    let kind = if headers.contains_key("sourcemap") || headers.contains_key("x-sourcemap") {
        ArtifactKind::MinifiedSource
    } else {
        ArtifactKind::guess(&name, &content)
    };
    let txn = super::begin_write(db).await?;
    let id = artifacts::store(
        &txn,
        artifacts::NewArtifact {
            organization_id: org.id,
            release_id: Some(release.id),
            dist: dist.as_deref(),
            name: &name,
            kind,
            debug_id: debug_id.as_deref(),
            headers: &headers,
            content: &content,
        },
    )
    .await?;
    txn.commit().await?;
    let row = query_one(
        db,
        &format!("SELECT {FILE_COLUMNS} FROM artifacts WHERE id = ?"),
        vec![id.into()],
    )
    .await?
    .ok_or_else(|| ApiError::internal("stored artifact vanished"))?;
    Ok(HttpResponse::Created().json(file_json(&row)?))
}

async fn file_row(auth: &ApiAuth, release: &Release, id: &str) -> ApiResult<sea_orm::QueryResult> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("release file `{id}` not found")))?;
    query_one(
        auth.db(),
        &format!("SELECT {FILE_COLUMNS} FROM artifacts WHERE id = ? AND release_id = ?"),
        vec![id.into(), release.id.into()],
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("release file `{id}` not found")))
}

async fn get_file(auth: ApiAuth, path: ReleasePath, req: HttpRequest) -> ApiResult<HttpResponse> {
    let (_, release) = path.release(&auth, Scope::ProjectRead).await?;
    let row = file_row(&auth, &release, &path.file).await?;
    let download = url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "download" && (v == "1" || v == "true"));
    if !download {
        return Ok(HttpResponse::Ok().json(file_json(&row)?));
    }
    let sha1: String = row.try_get("", "sha1")?;
    let name: String = row.try_get("", "name")?;
    let data = super::blobs::get(auth.db(), &sha1)
        .await?
        .ok_or_else(|| ApiError::not_found("the file's content is gone"))?;
    let base = name.rsplit('/').next().unwrap_or("file").replace('"', "");
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{base}\""),
        ))
        .body(data))
}

async fn delete_file(auth: ApiAuth, path: ReleasePath) -> ApiResult<HttpResponse> {
    let (_, release) = path.release(&auth, Scope::ProjectReleases).await?;
    let row = file_row(&auth, &release, &path.file).await?;
    let id: i64 = row.try_get("", "id")?;
    let txn = super::begin_write(auth.db()).await?;
    artifacts::delete_where(&txn, "id = ?", vec![id.into()]).await?;
    txn.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `sentry-cli releases files R delete --all` (2.x): every file of release `?name=`.
async fn delete_release_source_maps(
    auth: ApiAuth,
    mut path: ReleasePath,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    path.version = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::bad_request("`name` (the release version) is required"))?;
    let (_, release) = path.release(&auth, Scope::ProjectReleases).await?;
    let txn = super::begin_write(auth.db()).await?;
    artifacts::delete_where(&txn, "release_id = ?", vec![release.id.into()]).await?;
    txn.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
