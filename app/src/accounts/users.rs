//! Users: creating them and changing their passwords.

use faultline_core::entity::{now_ms, user};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{AccountError, Result, exec};

/// Shortest password accepted, everywhere (pages, invitations, CLI).
pub const MIN_PASSWORD: usize = 8;

/// Hashes a password with argon2id (PHC string with its own salt). Slow on purpose: the
/// pages call it through their bounded password gate (`web::passwords`).
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::{Argon2, PasswordHasher};
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Internal(format!("cannot hash the password: {e}")))
}

/// Longest password accepted: argon2 hashes any length, but nobody needs more and a
/// megabyte "password" would only cost us time.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Whether a new password is acceptable.
pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::Invalid(format!(
            "The password must have at least {MIN_PASSWORD} characters."
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "The password is too long (at most {MAX_PASSWORD_BYTES} bytes)."
        )));
    }
    Ok(())
}

/// An email address as accounts store it: trimmed, lowercase, plausible.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_control) {
        return Err(AccountError::Invalid(format!(
            "{email:?} is not an email address."
        )));
    }
    Ok(email)
}

/// Creates a user from a plain password (the CLI's path).
pub async fn create(
    conn: &impl ConnectionTrait,
    email: &str,
    password: &str,
    superuser: bool,
) -> Result<i64> {
    check_password(password)?;
    create_hashed(conn, email, &hash_password(password)?, superuser).await
}

/// Creates a user whose password was already hashed ([`hash_password`]); returns the id.
pub async fn create_hashed(
    conn: &impl ConnectionTrait,
    email: &str,
    password_hash: &str,
    superuser: bool,
) -> Result<i64> {
    let email = normalize_email(email)?;
    if user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(conn)
        .await?
        .is_some()
    {
        return Err(AccountError::Conflict(format!(
            "A user with email {email} already exists."
        )));
    }
    let model = user::ActiveModel {
        email: Set(email),
        password_hash: Set(password_hash.to_string()),
        is_superuser: Set(superuser),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(model.id)
}

/// The user with this email, if any.
pub async fn find_by_email(
    conn: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(conn)
        .await?)
}

/// Sets a user's password hash. Ending their other sessions is the caller's business
/// (`web::session::end_all`): the pages keep the current browser logged in.
pub async fn set_password_hash(
    conn: &impl ConnectionTrait,
    user_id: i64,
    password_hash: &str,
) -> Result<()> {
    let n = exec(
        conn,
        "UPDATE users SET password_hash = ? WHERE id = ?",
        vec![password_hash.into(), user_id.into()],
    )
    .await?;
    if n == 0 {
        return Err(AccountError::NotFound(format!(
            "There is no user {user_id}."
        )));
    }
    Ok(())
}
