//! Scoping: every object a page reads is looked up through the user's memberships. An
//! object of an organization the user is not a member of is [`WebError::NotFound`], the
//! same answer as a missing one, so pages never reveal what exists elsewhere.

use sea_orm::QueryResult;

use super::context::{Ctx, Form, OrgRef};
use super::error::WebError;
use super::sql;

/// A project as the pages show it.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: i64,
    pub organization_id: i64,
    pub slug: String,
    pub name: String,
    pub platform: String,
    pub retention_days: i32,
    pub created_at: i64,
}

const PROJECT_COLS: &str = "id, organization_id, slug, name, platform, retention_days, created_at";

fn project_row(row: &QueryResult) -> Result<ProjectRow, WebError> {
    Ok(ProjectRow {
        id: sql::get(row, "id")?,
        organization_id: sql::get(row, "organization_id")?,
        slug: sql::get(row, "slug")?,
        name: sql::get(row, "name")?,
        platform: sql::get::<Option<String>>(row, "platform")?.unwrap_or_default(),
        retention_days: sql::get(row, "retention_days")?,
        created_at: sql::get(row, "created_at")?,
    })
}

/// The organization `slug`, if the logged-in user is a member.
pub fn org(ctx: &Ctx, slug: &str) -> Result<OrgRef, WebError> {
    ctx.user()?;
    ctx.orgs
        .iter()
        .find(|o| o.slug == slug)
        .cloned()
        .ok_or(WebError::NotFound)
}

/// The organization, for pages only owners and admins may use.
pub fn managed_org(ctx: &Ctx, slug: &str) -> Result<OrgRef, WebError> {
    let org = org(ctx, slug)?;
    if !org.can_manage() {
        return Err(WebError::Forbidden(
            "Only owners and admins of this organization can do this.".into(),
        ));
    }
    Ok(org)
}

/// Who may post a form: owners and admins, or any member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poster {
    Manager,
    Member,
}

/// A form posted to a project's settings: the organization (the user must be a member, or
/// a manager), then the form (refused without the session's CSRF token), then the project
/// — in this order, so another organization's project is a 404 whatever the form holds.
pub async fn project_form(
    ctx: &Ctx,
    org_slug: &str,
    project_slug: &str,
    body: &[u8],
    poster: Poster,
) -> Result<(OrgRef, ProjectRow, Form), WebError> {
    let (org, form) = org_form(ctx, org_slug, body, poster)?;
    let project = project(ctx, &org, project_slug).await?;
    Ok((org, project, form))
}

/// A form posted to an organization's pages: the organization (the user must be a member,
/// or a manager), then the form (refused without the session's CSRF token).
pub fn org_form(
    ctx: &Ctx,
    org_slug: &str,
    body: &[u8],
    poster: Poster,
) -> Result<(OrgRef, Form), WebError> {
    let org = match poster {
        Poster::Manager => managed_org(ctx, org_slug)?,
        Poster::Member => org(ctx, org_slug)?,
    };
    let form = ctx.form(body)?;
    Ok((org, form))
}

/// The id of an object named in a path (member, invite, token, key, rule): anything but a
/// number names nothing, so it is a 404 like a missing object.
pub fn path_id(text: &str) -> Result<i64, WebError> {
    text.parse().map_err(|_| WebError::NotFound)
}

/// Every project of an organization, by slug.
pub async fn projects(ctx: &Ctx, org: &OrgRef) -> Result<Vec<ProjectRow>, WebError> {
    sql::all(
        &ctx.app.db,
        &format!("SELECT {PROJECT_COLS} FROM projects WHERE organization_id = ? ORDER BY slug"),
        vec![org.id.into()],
    )
    .await?
    .iter()
    .map(project_row)
    .collect()
}

/// The project `slug` of the organization.
pub async fn project(ctx: &Ctx, org: &OrgRef, slug: &str) -> Result<ProjectRow, WebError> {
    let row = sql::one(
        &ctx.app.db,
        &format!("SELECT {PROJECT_COLS} FROM projects WHERE organization_id = ? AND slug = ?"),
        vec![org.id.into(), slug.into()],
    )
    .await?
    .ok_or(WebError::NotFound)?;
    project_row(&row)
}

/// The ids of every project of every organization the user is a member of.
pub async fn all_project_ids(ctx: &Ctx) -> Result<Vec<i64>, WebError> {
    let user = ctx.user()?;
    let rows = sql::all(
        &ctx.app.db,
        "SELECT p.id FROM projects p JOIN members m ON m.organization_id = p.organization_id \
         WHERE m.user_id = ?",
        vec![user.id.into()],
    )
    .await?;
    rows.iter().map(|r| sql::get(r, "id")).collect()
}
