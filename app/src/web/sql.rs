//! Running one SQL text on either engine and reading rows by column name.

use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Value};

use super::error::WebError;

// One SQL text for both engines: `?` placeholders, numbered `$n` for PostgreSQL by the
// shared helper (the texts here never contain a literal `?`).
pub use faultline_core::sql::placeholders;
use faultline_core::sql::stmt;

/// All rows of a query with `?` placeholders.
pub async fn all(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, WebError> {
    let stmt = stmt(db.get_database_backend(), sql, values);
    Ok(db.query_all_raw(stmt).await?)
}

/// The first row of a query, if any.
pub async fn one(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<Option<QueryResult>, WebError> {
    let stmt = stmt(db.get_database_backend(), sql, values);
    Ok(db.query_one_raw(stmt).await?)
}

/// Runs a statement; returns the rows it changed.
pub async fn exec(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Result<u64, WebError> {
    let stmt = stmt(db.get_database_backend(), sql, values);
    Ok(db.execute_raw(stmt).await?.rows_affected())
}

/// A column of a row, typed; a missing or mistyped column is a server error.
pub fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<T, WebError> {
    row.try_get::<T>("", col)
        .map_err(|e| WebError::Internal(format!("column {col}: {e}")))
}

/// `?, ?` placeholders and the values for an `IN` list of ids.
pub fn id_list(ids: &[i64]) -> (String, Vec<Value>) {
    (
        placeholders(ids.len().max(1)),
        if ids.is_empty() {
            vec![Value::from(-1i64)]
        } else {
            ids.iter().map(|i| Value::from(*i)).collect()
        },
    )
}
