//! Members of organizations, their roles, and invitations.
//!
//! The rules: roles are owner, admin and member; only owners make, change or remove
//! owners; an organization always keeps at least one owner. A role change or removal first
//! locks the organization's row (a no-op UPDATE: a row lock on PostgreSQL, the write lock
//! on SQLite) and then changes the member with a statement that matches only while another
//! owner remains, so two owners demoting each other at the same moment can't both succeed.

use super::{AccountError, Result, exec, get, one, token_hash};
use faultline_core::entity::now_ms;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait, Value};

/// Roles, most powerful first.
pub const ROLES: &[&str] = &["owner", "admin", "member"];

/// How long an invitation link works.
pub const INVITE_DAYS: i64 = 7;

/// Whether `role` is one of [`ROLES`].
pub fn check_role(role: &str) -> Result<()> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(AccountError::Invalid("Pick owner, admin or member.".into()))
    }
}

/// The role of member `member_id` of the organization.
async fn role_of(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    member_id: i64,
) -> Result<String> {
    let row = one(
        conn,
        "SELECT role FROM members WHERE id = ? AND organization_id = ?",
        vec![member_id.into(), organization_id.into()],
    )
    .await?
    .ok_or_else(|| AccountError::NotFound("There is no such member.".into()))?;
    get(&row, "role")
}

/// Begins a transaction holding the organization's lock (see the module's comment).
async fn lock_org(db: &DatabaseConnection, organization_id: i64) -> Result<DatabaseTransaction> {
    let txn = db.begin().await?;
    exec(
        &txn,
        "UPDATE organizations SET slug = slug WHERE id = ?",
        vec![organization_id.into()],
    )
    .await?;
    Ok(txn)
}

/// `AND` clause that keeps the statement from touching the last owner: it matches only
/// while another owner exists.
const ANOTHER_OWNER_REMAINS: &str = "AND (role <> 'owner' OR EXISTS (SELECT 1 FROM members o \
     WHERE o.organization_id = members.organization_id AND o.role = 'owner' AND o.id <> members.id))";

/// Gives member `member_id` the role `role`; `actor_role` is the role of who asks.
pub async fn change_role(
    db: &DatabaseConnection,
    organization_id: i64,
    actor_role: &str,
    member_id: i64,
    role: &str,
) -> Result<()> {
    check_role(role)?;
    let conn = lock_org(db, organization_id).await?;
    let current = role_of(&conn, organization_id, member_id).await?;
    if (role == "owner" || current == "owner") && actor_role != "owner" {
        return Err(AccountError::Forbidden(
            "Only owners can make or change owners.".into(),
        ));
    }
    if current == role {
        return Ok(());
    }
    let sql = format!(
        "UPDATE members SET role = ? WHERE id = ? AND organization_id = ? {ANOTHER_OWNER_REMAINS}"
    );
    let n = exec(
        &conn,
        &sql,
        vec![role.into(), member_id.into(), organization_id.into()],
    )
    .await?;
    if n == 0 {
        return Err(AccountError::Forbidden(
            "An organization keeps at least one owner.".into(),
        ));
    }
    conn.commit().await?;
    Ok(())
}

/// Removes member `member_id` from the organization; `actor_role` is the role of who asks.
/// Their tokens stop working at once (`api::auth` checks the membership per request).
pub async fn remove(
    db: &DatabaseConnection,
    organization_id: i64,
    actor_role: &str,
    member_id: i64,
) -> Result<()> {
    let conn = lock_org(db, organization_id).await?;
    let current = role_of(&conn, organization_id, member_id).await?;
    if current == "owner" && actor_role != "owner" {
        return Err(AccountError::Forbidden(
            "Only owners can remove owners.".into(),
        ));
    }
    let sql =
        format!("DELETE FROM members WHERE id = ? AND organization_id = ? {ANOTHER_OWNER_REMAINS}");
    let n = exec(&conn, &sql, vec![member_id.into(), organization_id.into()]).await?;
    if n == 0 {
        return Err(AccountError::Forbidden(
            "An organization keeps at least one owner.".into(),
        ));
    }
    conn.commit().await?;
    Ok(())
}

/// Makes a user a member with `role` unless they already are one (then nothing changes).
pub async fn add(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    user_id: i64,
    role: &str,
) -> Result<()> {
    check_role(role)?;
    exec(
        conn,
        "INSERT INTO members (organization_id, user_id, role, created_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (organization_id, user_id) DO NOTHING",
        vec![
            organization_id.into(),
            user_id.into(),
            role.into(),
            now_ms().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Creates an invitation; returns the secret token of its link (shown once, stored hashed).
pub async fn create_invite(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    actor: (i64, &str),
    role: &str,
    email: &str,
) -> Result<String> {
    let (actor_id, actor_role) = actor;
    check_role(role)?;
    if role == "owner" && actor_role != "owner" {
        return Err(AccountError::Forbidden(
            "Only owners can invite owners.".into(),
        ));
    }
    let email: String = email.trim().chars().take(254).collect();
    let token = hex::encode(rand::random::<[u8; 24]>());
    let now = now_ms();
    exec(
        conn,
        "INSERT INTO invites (organization_id, token_hash, role, email, created_by, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        vec![
            organization_id.into(),
            token_hash(&token).into(),
            role.into(),
            email.into(),
            actor_id.into(),
            now.into(),
            (now + INVITE_DAYS * 86_400_000).into(),
        ],
    )
    .await?;
    Ok(token)
}

/// Deletes an invitation of the organization.
pub async fn revoke_invite(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    invite_id: i64,
) -> Result<()> {
    let n = exec(
        conn,
        "DELETE FROM invites WHERE id = ? AND organization_id = ?",
        vec![invite_id.into(), organization_id.into()],
    )
    .await?;
    if n == 0 {
        return Err(AccountError::NotFound(
            "There is no such invitation.".into(),
        ));
    }
    Ok(())
}

/// An open invitation, found by its link's token.
#[derive(Debug, Clone)]
pub struct Invite {
    pub id: i64,
    pub organization_id: i64,
    pub org_name: String,
    pub org_slug: String,
    pub role: String,
}

/// The open (unused, unexpired) invitation with this token.
pub async fn find_invite(conn: &impl ConnectionTrait, token: &str) -> Result<Invite> {
    let missing =
        || AccountError::NotFound("This invitation does not exist, was used, or expired.".into());
    if token.len() > 100 {
        return Err(missing());
    }
    let row = one(
        conn,
        "SELECT i.id, i.organization_id, i.role, o.name, o.slug FROM invites i \
         JOIN organizations o ON o.id = i.organization_id \
         WHERE i.token_hash = ? AND i.accepted_at IS NULL AND i.expires_at > ?",
        vec![token_hash(token).into(), now_ms().into()],
    )
    .await?
    .ok_or_else(missing)?;
    Ok(Invite {
        id: get(&row, "id")?,
        organization_id: get(&row, "organization_id")?,
        role: get(&row, "role")?,
        org_name: get(&row, "name")?,
        org_slug: get(&row, "slug")?,
    })
}

/// Accepts an invitation for `user_id`: claims it first, so a link works exactly once,
/// then makes the user a member (a member already keeps their role).
pub async fn accept_invite(
    conn: &impl ConnectionTrait,
    invite: &Invite,
    user_id: i64,
) -> Result<()> {
    let claimed = exec(
        conn,
        "UPDATE invites SET accepted_at = ?, accepted_by = ? WHERE id = ? AND accepted_at IS NULL",
        vec![now_ms().into(), user_id.into(), invite.id.into()],
    )
    .await?;
    if claimed == 1 {
        add(conn, invite.organization_id, user_id, &invite.role).await?;
    }
    Ok(())
}

/// Number of owners of an organization.
pub async fn owner_count(conn: &impl ConnectionTrait, organization_id: i64) -> Result<i64> {
    let row = one(
        conn,
        "SELECT COUNT(*) AS n FROM members WHERE organization_id = ? AND role = 'owner'",
        vec![Value::from(organization_id)],
    )
    .await?;
    match row {
        Some(r) => get(&r, "n"),
        None => Ok(0),
    }
}
