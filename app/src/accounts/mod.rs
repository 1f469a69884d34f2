//! Accounts: users, organizations, members and invitations, projects and their DSN keys,
//! API tokens. Every account operation has one implementation here, called by the pages
//! (`web/`), the Web API (`api/`) and the CLI (`cli.rs`); those parse, authorize, call one
//! of these functions and render what it returns.
//!
//! Authorization of the *caller* (is this user an admin of the organization?) stays with
//! the handler, which knows who is asking; the rules of the domain itself (an organization
//! keeps an owner, only owners make owners, slugs are unique) live here, so no caller can
//! skip them.
//!
//! This lives in the app crate rather than `core` because only the app's front doors use
//! it, and creating a project also writes its default alert rule (`faultline_worker::
//! alerts::rules`), which `core` cannot reach.

pub mod keys;
pub mod members;
pub mod orgs;
pub mod projects;
pub mod tokens;
pub mod users;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

/// Why an account operation did not happen. The messages are for people: the pages show
/// them next to the form, the CLI prints them.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Input the caller can correct (a bad slug, an unknown role, a short password).
    #[error("{0}")]
    Invalid(String),
    /// The name is taken (a user's email, an organization's or project's slug).
    #[error("{0}")]
    Conflict(String),
    /// What the operation names does not exist (or is not the caller's to see).
    #[error("{0}")]
    NotFound(String),
    /// A domain rule forbids it (the last owner leaving, a non-owner making owners).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Db(#[from] DbErr),
    /// Not the caller's fault (hashing failed).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, AccountError>;

/// SHA-256 hex of a secret token: invitations and API tokens are stored this way, so a
/// leaked database holds no usable link or token.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Runs one statement with `?` placeholders; the rows it changed.
async fn exec(conn: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<u64> {
    let stmt = faultline_core::sql::stmt(conn.get_database_backend(), sql, values);
    Ok(conn.execute_raw(stmt).await?.rows_affected())
}

/// The first row of a query with `?` placeholders.
async fn one(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Option<QueryResult>> {
    let stmt = faultline_core::sql::stmt(conn.get_database_backend(), sql, values);
    Ok(conn.query_one_raw(stmt).await?)
}

/// A column of a row.
fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<T> {
    Ok(row.try_get::<T>("", col)?)
}
