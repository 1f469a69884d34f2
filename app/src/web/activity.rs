//! The issue page's timeline and its comment forms: `POST .../comments` (new),
//! `.../comments/{note_id}/edit` (the author's own) and `.../comments/{note_id}/delete` (the
//! author, or an owner or admin). The domain (`faultline_core::issues::activity`) decides
//! who may; these handlers parse the form (CSRF checked by `Ctx::form`), call it and go
//! back to the issue.

use actix_web::{HttpResponse, web};
use faultline_core::entity::now_ms;
use faultline_core::issues::activity::{self, Activity, Actor, NoteError, kind};
use serde_json::Value as Json;

use super::access;
use super::context::{Ctx, OrgRef};
use super::error::WebError;
use super::format;
use super::issue_page::load_issue;
use super::markdown;

/// One entry of the timeline as the template shows it.
pub struct TimelineEntry {
    pub anchor: String,
    pub who: String,
    pub what: String,
    pub when: String,
    pub when_at: String,
    pub is_note: bool,
    /// A note's Markdown as sanitized HTML (`markdown::render`).
    pub html: String,
    /// A note's Markdown, for its edit form.
    pub text: String,
    pub edited: bool,
    pub can_edit: bool,
    pub can_delete: bool,
    pub edit_url: String,
    pub delete_url: String,
}

/// What an entry says happened, after who did it.
fn what(a: &Activity) -> String {
    let s = |k: &str| a.data.get(k).and_then(Json::as_str).unwrap_or("");
    match a.kind.as_str() {
        kind::FIRST_SEEN => "first saw this issue".into(),
        kind::SET_RESOLVED => "resolved this issue".into(),
        kind::SET_RESOLVED_IN_RELEASE => match s("current_release_version") {
            "" => "resolved this issue in the next release".into(),
            r => format!("resolved this issue in the release after {r}"),
        },
        kind::SET_UNRESOLVED if s("reason") == "ignore_condition_met" => {
            "unresolved this issue: its ignore condition was met".into()
        }
        kind::SET_UNRESOLVED => "reopened this issue".into(),
        kind::SET_IGNORED => {
            let mut parts = Vec::new();
            let until = s("ignoreUntil");
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(until) {
                parts.push(format!("until {}", format::datetime(t.timestamp_millis())));
            }
            if let Some(n) = a.data.get("ignoreCount").and_then(Json::as_i64) {
                parts.push(format!("until {n} more events"));
            }
            if parts.is_empty() {
                "ignored this issue".into()
            } else {
                format!("ignored this issue {}", parts.join(" or "))
            }
        }
        kind::SET_REGRESSION => match s("version") {
            "" => "marked this issue as a regression: a new event arrived after it was resolved"
                .into(),
            v => format!("marked this issue as a regression in release {v}"),
        },
        kind::ASSIGNED => format!("assigned this issue to {}", s("assigneeEmail")),
        kind::UNASSIGNED => "unassigned this issue".into(),
        kind::NOTE => "commented".into(),
        kind::MERGE => "merged issues into this one".into(),
        other => other.replace('_', " "),
    }
}

/// The issue's timeline for the page; `actor` is the viewer, `moderator` whether they may
/// delete anyone's comments.
pub async fn timeline(
    ctx: &Ctx,
    org: &OrgRef,
    issue: &faultline_core::issues::Issue,
    actor: &Actor,
) -> Result<Vec<TimelineEntry>, WebError> {
    let now = now_ms();
    let base = format!("/organizations/{}/issues/{}/comments", org.slug, issue.id);
    let moderator = org.can_manage();
    Ok(activity::list(&ctx.app.db, issue)
        .await?
        .into_iter()
        .map(|a| {
            let is_note = a.kind == kind::NOTE;
            let mine = is_note && a.written_by(actor);
            TimelineEntry {
                anchor: format!("activity-{}", a.id),
                who: a.who(),
                what: what(&a),
                when: format::ago(a.created_ms, now),
                when_at: format::datetime(a.created_ms),
                is_note,
                html: if is_note {
                    markdown::render(a.text())
                } else {
                    String::new()
                },
                text: a.text().to_string(),
                edited: a.edited_ms.is_some(),
                can_edit: mine,
                can_delete: is_note && (mine || moderator),
                edit_url: format!("{base}/{}/edit", a.id),
                delete_url: format!("{base}/{}/delete", a.id),
            }
        })
        .collect())
}

/// A comment failure as the pages show it.
fn note_error(e: NoteError) -> WebError {
    match e {
        NoteError::Invalid(m) => WebError::BadRequest(m),
        NoteError::NotFound => WebError::NotFound,
        NoteError::Forbidden(m) => WebError::Forbidden(m),
        NoteError::Db(e) => e.into(),
    }
}

fn back(org: &OrgRef, issue_id: i64, done: &str) -> String {
    format!(
        "/organizations/{}/issues/{issue_id}?done={done}#activity",
        org.slug
    )
}

/// `POST .../comments`: a new comment (`text`, Markdown).
pub async fn add(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let form = ctx.form(&body)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let actor = Actor::User(ctx.user()?.id);
    activity::add_note(&ctx.app.db, &issue, &actor, form.raw("text"), now_ms())
        .await
        .map_err(note_error)?;
    Ok(ctx.redirect(&back(&org, issue.id, "comment")))
}

/// `POST .../comments/{note_id}/edit`: new text for one's own comment.
pub async fn edit(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id, note_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let form = ctx.form(&body)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let note_id = access::path_id(&note_id)?;
    let actor = Actor::User(ctx.user()?.id);
    activity::edit_note(
        &ctx.app.db,
        org.id,
        issue.id,
        note_id,
        &actor,
        form.raw("text"),
        now_ms(),
    )
    .await
    .map_err(note_error)?;
    Ok(ctx.redirect(&back(&org, issue.id, "comment_edited")))
}

/// `POST .../comments/{note_id}/delete`: one's own comment, or any for owners and admins.
pub async fn delete(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id, note_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    ctx.form(&body)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let note_id = access::path_id(&note_id)?;
    let actor = Actor::User(ctx.user()?.id);
    activity::delete_note(
        &ctx.app.db,
        org.id,
        issue.id,
        note_id,
        &actor,
        org.can_manage(),
    )
    .await
    .map_err(note_error)?;
    Ok(ctx.redirect(&back(&org, issue.id, "comment_deleted")))
}
