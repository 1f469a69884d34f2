//! An issue's timeline and comments through Sentry's Web API:
//! `GET /issues/{id}/activities/`, `POST /issues/{id}/comments/`,
//! `PUT|DELETE /issues/{id}/comments/{note_id}/` (also under `/organizations/{org}/`).
//!
//! Reading needs `event:read`, commenting `event:write` (Sentry's group permission);
//! editing is for the comment's author, deleting for its author or an owner or admin
//! (`event:admin`). The domain (`faultline_core::issues::activity`) decides; this file
//! parses, authorizes and writes Sentry's JSON.

use actix_web::{HttpRequest, HttpResponse, web};
use faultline_core::entity::now_ms;
use faultline_core::issues::activity::{self, Activity, NoteError};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::auth::{Org, Scope};
use super::issues::{actor_of, issue_row};
use super::{ApiAuth, ApiError, ApiResult, iso};
use faultline_core::issues::Issue;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource([
            "/issues/{id}/activities",
            "/organizations/{org}/issues/{id}/activities",
        ])
        .route(web::get().to(list)),
    )
    .service(
        web::resource([
            "/issues/{id}/comments",
            "/organizations/{org}/issues/{id}/comments",
        ])
        .route(web::post().to(create)),
    )
    .service(
        web::resource([
            "/issues/{id}/comments/{note_id}",
            "/organizations/{org}/issues/{id}/comments/{note_id}",
        ])
        .route(web::put().to(update))
        .route(web::delete().to(delete)),
    );
}

/// The body of a comment: `{"text": "..."}` (Markdown).
#[derive(Debug, Deserialize)]
struct NoteBody {
    text: String,
}

/// Sentry's user object for the author of an entry, or null (the system, an organization
/// token, a deleted user).
fn user_json(a: &Activity) -> Json {
    match (a.user_id, &a.user_email) {
        (Some(id), Some(email)) => json!({
            "id": id.to_string(),
            "name": email,
            "username": email,
            "email": email,
            "avatarUrl": null,
            "isActive": true,
            "hasPasswordAuth": true,
            "isManaged": false,
            "dateJoined": a.user_created.map(iso),
            "lastLogin": null,
            "has2fa": false,
            "lastActive": null,
            "isSuperuser": false,
            "isStaff": false,
            "experiments": {},
            "emails": [{"id": id.to_string(), "email": email, "is_verified": true}],
            "avatar": {"avatarType": "letter_avatar", "avatarUuid": null},
        }),
        _ => Json::Null,
    }
}

/// An entry as Sentry's activity serializer writes it. Entries made by an organization
/// token without an owner carry its label in `actor` (Sentry has no such field; clients
/// ignore it).
pub fn activity_json(a: &Activity) -> Json {
    let mut out = json!({
        "id": a.id.to_string(),
        "type": a.kind,
        "data": a.data,
        "user": user_json(a),
        "sentry_app": null,
        "dateCreated": iso(a.created_ms),
    });
    if let Some(label) = &a.actor {
        out["actor"] = json!({"type": "organization", "name": label});
    }
    if let Some(t) = a.edited_ms {
        out["dateUpdated"] = json!(iso(t));
    }
    out
}

/// A comment failure as the API answers it.
fn note_error(e: NoteError) -> ApiError {
    match e {
        NoteError::Invalid(m) => ApiError::bad_request(m),
        NoteError::NotFound => ApiError::not_found("comment not found"),
        NoteError::Forbidden(m) => ApiError::forbidden(m),
        NoteError::Db(e) => e.into(),
    }
}

/// The issue of `{id}` (and `{org}`) the caller may see; else 404.
async fn issue_of(auth: &ApiAuth, req: &HttpRequest) -> ApiResult<(Issue, Org)> {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let org = req.match_info().get("org").map(str::to_string);
    issue_row(auth, &id, org.as_deref()).await
}

/// `{note_id}`: a number, else no such comment.
fn note_id(req: &HttpRequest) -> ApiResult<i64> {
    req.match_info()
        .get("note_id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::not_found("comment not found"))
}

async fn list(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (issue, _) = issue_of(&auth, &req).await?;
    let entries = activity::list(auth.db(), &issue).await?;
    Ok(HttpResponse::Ok()
        .json(json!({"activity": entries.iter().map(activity_json).collect::<Vec<_>>()})))
}

async fn create(
    auth: ApiAuth,
    req: HttpRequest,
    body: web::Json<NoteBody>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventWrite)?;
    let (issue, org) = issue_of(&auth, &req).await?;
    let actor = actor_of(&auth, &org).await?;
    let note = activity::add_note(auth.db(), &issue, &actor, &body.text, now_ms())
        .await
        .map_err(note_error)?;
    Ok(HttpResponse::Created().json(activity_json(&note)))
}

async fn update(
    auth: ApiAuth,
    req: HttpRequest,
    body: web::Json<NoteBody>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventWrite)?;
    let (issue, org) = issue_of(&auth, &req).await?;
    let note_id = note_id(&req)?;
    let actor = actor_of(&auth, &org).await?;
    let note = activity::edit_note(
        auth.db(),
        org.id,
        issue.id,
        note_id,
        &actor,
        &body.text,
        now_ms(),
    )
    .await
    .map_err(note_error)?;
    Ok(HttpResponse::Ok().json(activity_json(&note)))
}

async fn delete(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventWrite)?;
    let (issue, org) = issue_of(&auth, &req).await?;
    let note_id = note_id(&req)?;
    let actor = actor_of(&auth, &org).await?;
    // After the organization was checked, so a session user's role there decides.
    let moderator = auth.require(Scope::EventAdmin).is_ok();
    activity::delete_note(auth.db(), org.id, issue.id, note_id, &actor, moderator)
        .await
        .map_err(note_error)?;
    Ok(HttpResponse::NoContent().finish())
}
