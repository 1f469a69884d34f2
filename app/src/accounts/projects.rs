//! Projects.

use faultline_core::entity::{now_ms, project, project_key};
use faultline_core::protocol::dsn::ProjectKey;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set, TransactionTrait,
};

use super::{AccountError, Result, exec, orgs};

/// Creates a project of the organization `org_slug` with one DSN key and the default
/// alert rule; returns the project id and the key's public part.
pub async fn create(
    db: &DatabaseConnection,
    org_slug: &str,
    slug: &str,
    platform: Option<&str>,
) -> Result<(i64, String)> {
    orgs::valid_slug(slug)?;
    let org = orgs::find(db, org_slug).await?;
    if project::Entity::find()
        .filter(project::Column::OrganizationId.eq(org.id))
        .filter(project::Column::Slug.eq(slug))
        .one(db)
        .await?
        .is_some()
    {
        return Err(AccountError::Conflict(format!(
            "Organization {org_slug} already has a project {slug}."
        )));
    }
    let txn = db.begin().await?;
    let project = project::ActiveModel {
        organization_id: Set(org.id),
        slug: Set(slug.to_string()),
        name: Set(slug.to_string()),
        platform: Set(platform.map(str::to_string)),
        enabled: Set(true),
        retention_days: Set(90),
        max_events_per_issue: Set(1000),
        issue_counter: Set(0),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let key = ProjectKey::generate().to_string();
    project_key::ActiveModel {
        project_id: Set(project.id),
        public_key: Set(key.clone()),
        label: Set("Default".into()),
        enabled: Set(true),
        rate_limit_per_minute: Set(None),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    faultline_worker::alerts::rules::create_default(&txn, project.id).await?;
    txn.commit().await?;
    Ok((project.id, key))
}

/// The general settings of a project.
pub struct General<'a> {
    pub name: &'a str,
    pub platform: &'a str,
    pub retention_days: i32,
}

/// Saves a project's general settings.
pub async fn save_general(
    conn: &impl ConnectionTrait,
    project_id: i64,
    general: General<'_>,
) -> Result<()> {
    let name = general.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AccountError::Invalid(
            "The name must have 1 to 100 characters.".into(),
        ));
    }
    if !(1..=3650).contains(&general.retention_days) {
        return Err(AccountError::Invalid(
            "Retention is a number of days between 1 and 3650.".into(),
        ));
    }
    let n = exec(
        conn,
        "UPDATE projects SET name = ?, platform = ?, retention_days = ? WHERE id = ?",
        vec![
            name.into(),
            general.platform.into(),
            general.retention_days.into(),
            project_id.into(),
        ],
    )
    .await?;
    if n == 0 {
        return Err(AccountError::NotFound("There is no such project.".into()));
    }
    Ok(())
}
