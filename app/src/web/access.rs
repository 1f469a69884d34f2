//! Scoping: every object a page reads is looked up through the user's memberships. An
//! object of an organization the user is not a member of is [`WebError::NotFound`], the
//! same answer as a missing one, so pages never reveal what exists elsewhere.

use sea_orm::QueryResult;

use super::context::{Ctx, OrgRef};
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
