//! Running one SQL text on either engine and reading rows by column name.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement, Value};

use super::error::WebError;

/// `?, ?, ?` for an `IN (...)` list of `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A statement with `?` placeholders, numbered `$n` for PostgreSQL. The texts here never
/// contain a literal `?`.
fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Statement::from_sql_and_values(backend, out, values)
    } else {
        Statement::from_sql_and_values(backend, sql, values)
    }
}

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
