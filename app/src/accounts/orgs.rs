//! Organizations.

use faultline_core::entity::{member, now_ms, organization};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};

use super::{AccountError, Result, users};

/// Whether `slug` may name an organization or a project: lowercase letters, digits, `-`
/// and `_`, not only digits (Sentry's API takes ids and slugs in the same place), at most 50.
pub fn valid_slug(slug: &str) -> Result<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 50
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !slug.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(AccountError::Invalid(format!(
            "{slug:?} is not a valid slug: use lowercase letters, digits, '-' and '_' (not only digits), at most 50."
        )));
    }
    Ok(())
}

/// The organization with this slug.
pub async fn find(conn: &impl ConnectionTrait, slug: &str) -> Result<organization::Model> {
    organization::Entity::find()
        .filter(organization::Column::Slug.eq(slug))
        .one(conn)
        .await?
        .ok_or_else(|| {
            AccountError::NotFound(format!(
                "No organization with slug {slug}; create it with `faultline org create {slug}`."
            ))
        })
}

/// Creates an organization, owned by the user with email `owner` if given; returns its id.
pub async fn create(
    db: &DatabaseConnection,
    slug: &str,
    name: Option<&str>,
    owner: Option<&str>,
) -> Result<i64> {
    let owner_id = match owner {
        Some(email) => Some(
            users::find_by_email(db, email)
                .await?
                .ok_or_else(|| {
                    AccountError::NotFound(format!(
                        "No user with email {email}; create it first with `faultline user create`."
                    ))
                })?
                .id,
        ),
        None => None,
    };
    // The write lock from the first statement: `insert` reads (is the slug free?) before
    // it writes, and on SQLite a read-then-write transaction fails at once when another
    // writer got in between.
    let txn = faultline_core::sql::begin_write(db).await?;
    let id = insert(&txn, slug, name, owner_id).await?;
    txn.commit().await?;
    Ok(id)
}

/// Creates an organization (named `name`, else its slug) and makes `owner_id` its owner,
/// on a connection the caller holds: setup creates the first administrator and their
/// organization in one transaction.
pub async fn insert(
    conn: &impl ConnectionTrait,
    slug: &str,
    name: Option<&str>,
    owner_id: Option<i64>,
) -> Result<i64> {
    valid_slug(slug)?;
    let name = name.unwrap_or(slug).trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AccountError::Invalid(
            "Name the organization (at most 100 characters).".into(),
        ));
    }
    if organization::Entity::find()
        .filter(organization::Column::Slug.eq(slug))
        .one(conn)
        .await?
        .is_some()
    {
        return Err(AccountError::Conflict(format!(
            "An organization with slug {slug} already exists; choose another slug."
        )));
    }
    let org = organization::ActiveModel {
        slug: Set(slug.to_string()),
        name: Set(name.to_string()),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    if let Some(user_id) = owner_id {
        member::ActiveModel {
            organization_id: Set(org.id),
            user_id: Set(user_id),
            role: Set("owner".into()),
            created_at: Set(now_ms()),
            ..Default::default()
        }
        .insert(conn)
        .await?;
    }
    Ok(org.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(valid_slug("acme-web_2").is_ok());
        for bad in ["", "Acme", "a b", "123", "a/b", &"x".repeat(51)] {
            assert!(valid_slug(bad).is_err(), "{bad:?}");
        }
    }
}
