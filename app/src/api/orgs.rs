//! `GET /api/0/` (who am I, for `sentry-cli info`), organizations and projects.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value as Json, json};

use super::auth::{Org, Scope};
use super::pagination::{Page, link_header};
use super::{ApiAuth, ApiResult, Principal, iso, query_all, query_one};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["", "/"]).route(web::get().to(index)))
        .service(web::resource("/organizations").route(web::get().to(list_orgs)))
        .service(web::resource("/organizations/{org}").route(web::get().to(get_org)))
        .service(web::resource("/organizations/{org}/projects").route(web::get().to(list_projects)))
        .service(web::resource("/projects/{org}/{project}").route(web::get().to(get_project)));
}

/// `{"version", "auth": {"scopes"}, "user"}` as sentry-cli's `AuthInfo` reads it.
async fn index(auth: ApiAuth) -> ApiResult<HttpResponse> {
    let user = match &auth.principal {
        Principal::User { id, .. } => query_one(
            auth.db(),
            "SELECT id, email FROM users WHERE id = ?",
            vec![(*id).into()],
        )
        .await?
        .map(|row| -> ApiResult<Json> {
            let email: String = row.try_get("", "email")?;
            Ok(json!({
                "id": row.try_get::<i64>("", "id")?.to_string(),
                "email": email, "username": email, "name": email,
            }))
        })
        .transpose()?,
        Principal::Token { .. } => None,
    };
    Ok(HttpResponse::Ok().json(json!({
        "version": "0",
        "auth": {"scopes": auth.scopes()},
        "user": user,
    })))
}

fn org_json(org: &Org) -> Json {
    json!({
        "id": org.id.to_string(),
        "slug": org.slug,
        "name": org.name,
        "dateCreated": iso(org.created_at),
        "isEarlyAdopter": false,
        "require2FA": false,
        "requireEmailVerification": false,
        "status": {"id": "active", "name": "active"},
        "features": [],
        "links": {"organizationUrl": null, "regionUrl": null},
        "hasAuthProvider": false,
        "avatar": {"avatarType": "letter_avatar", "avatarUuid": null},
    })
}

/// A single page (the lists are short), with Sentry's `Link` header saying so.
fn single_page<T: serde::Serialize>(req: &HttpRequest, items: Vec<T>) -> HttpResponse {
    let page = Page {
        items,
        next: None,
        prev: None,
        has_next: false,
        has_prev: false,
    };
    HttpResponse::Ok()
        .insert_header(("Link", link_header(req, &page)))
        .json(&page.items)
}

async fn list_orgs(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::OrgRead)?;
    let orgs: Vec<Json> = auth.organizations().await?.iter().map(org_json).collect();
    Ok(single_page(&req, orgs))
}

async fn get_org(auth: ApiAuth, path: web::Path<String>) -> ApiResult<HttpResponse> {
    auth.require(Scope::OrgRead)?;
    let org = auth.organization(&path).await?;
    Ok(HttpResponse::Ok().json(org_json(&org)))
}

const PROJECT_COLUMNS: &str = "p.id, p.slug, p.name, p.platform, p.created_at, \
     (SELECT MIN(i.first_seen) FROM issues i WHERE i.project_id = p.id) AS first_event";

fn project_json(org: &Org, row: &sea_orm::QueryResult) -> ApiResult<Json> {
    let platform: Option<String> = row.try_get("", "platform")?;
    let first_event: Option<i64> = row.try_get("", "first_event")?;
    let team = json!({"id": org.id.to_string(), "slug": org.slug, "name": org.name});
    Ok(json!({
        "id": row.try_get::<i64>("", "id")?.to_string(),
        "slug": row.try_get::<String>("", "slug")?,
        "name": row.try_get::<String>("", "name")?,
        "platform": platform,
        "platforms": platform.iter().collect::<Vec<_>>(),
        "dateCreated": iso(row.try_get::<i64>("", "created_at")?),
        "firstEvent": first_event.map(iso),
        "hasAccess": true,
        "isMember": true,
        "isBookmarked": false,
        "features": [],
        "status": "active",
        "team": team,
        "teams": [team],
        "organization": org_json(org),
    }))
}

async fn list_projects(
    auth: ApiAuth,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectRead)?;
    let org = auth.organization(&path).await?;
    let rows = query_all(
        auth.db(),
        &format!(
            "SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.organization_id = ? ORDER BY p.slug"
        ),
        vec![org.id.into()],
    )
    .await?;
    let projects: Vec<Json> = rows
        .iter()
        .map(|r| project_json(&org, r))
        .collect::<ApiResult<_>>()?;
    Ok(single_page(&req, projects))
}

async fn get_project(auth: ApiAuth, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    auth.require(Scope::ProjectRead)?;
    let (org, project) = path.into_inner();
    let org = auth.organization(&org).await?;
    let row = query_one(
        auth.db(),
        &format!(
            "SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.organization_id = ? AND p.slug = ?"
        ),
        vec![org.id.into(), project.clone().into()],
    )
    .await?
    .ok_or_else(|| super::ApiError::not_found(format!("project `{project}` not found")))?;
    Ok(HttpResponse::Ok().json(project_json(&org, &row)?))
}
