//! Small helpers for writing one SQL text that runs on SQLite and PostgreSQL, shared by
//! the worker's store, the issue domain, the pages and the Web API.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};

/// A SQL statement with `?` placeholders, numbered `$n` for PostgreSQL.
pub fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
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

/// `?, ?, ?` for an `IN (...)` list of `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `max(a, b)` / `min(a, b)` spelled for the engine.
pub fn greatest(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres {
        "GREATEST"
    } else {
        "MAX"
    }
}
pub fn least(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres {
        "LEAST"
    } else {
        "MIN"
    }
}

/// A PostgreSQL array parameter built from values of one type (NULLs allowed).
pub fn array(ty: sea_orm::sea_query::ArrayType, values: Vec<Value>) -> Value {
    Value::Array(ty, Some(Box::new(values)))
}

/// `column IN (?, ?, …)` on SQLite; `column = ANY(?)` with one array on PostgreSQL, so the
/// statement text (and its prepared plan) is the same whatever the list's length.
pub fn in_list(
    backend: DbBackend,
    column: &str,
    ty: sea_orm::sea_query::ArrayType,
    values: Vec<Value>,
) -> (String, Vec<Value>) {
    if backend == DbBackend::Postgres {
        (format!("{column} = ANY(?)"), vec![array(ty, values)])
    } else {
        (
            format!("{column} IN ({})", placeholders(values.len())),
            values,
        )
    }
}

/// A column of a bulk insert: its PostgreSQL type and the matching array element type.
pub struct Col(pub &'static str, pub sea_orm::sea_query::ArrayType);

impl Col {
    /// Text columns that may be NULL. sea-query binds arrays without NULL elements, so on
    /// PostgreSQL these travel as `''` and come back as NULL through `NULLIF` (an empty
    /// release, culprit or trace id means the same as none).
    fn nullable_text(&self) -> bool {
        self.0 == "text?"
    }

    fn pg_type(&self) -> &'static str {
        if self.nullable_text() { "text" } else { self.0 }
    }
}

/// Statements inserting `rows` (values in `cols` order) with `insert` (`INSERT INTO t (a, b)`)
/// and an optional `tail` (`ON CONFLICT ...`). SQLite gets multi-row `VALUES` in chunks
/// (cheap in-process); PostgreSQL gets ONE statement over `UNNEST` of one array per column,
/// whose text is the same for any number of rows: one round trip, one prepared plan.
pub fn bulk_insert(
    backend: DbBackend,
    insert: &str,
    cols: &[Col],
    rows: Vec<Vec<Value>>,
    tail: &str,
    sqlite_chunk: usize,
) -> Vec<Statement> {
    if rows.is_empty() {
        return Vec::new();
    }
    if backend == DbBackend::Postgres {
        let mut columns: Vec<Vec<Value>> = cols
            .iter()
            .map(|_| Vec::with_capacity(rows.len()))
            .collect();
        for row in rows {
            for ((column, value), col) in columns.iter_mut().zip(row).zip(cols) {
                match value {
                    Value::String(None) if col.nullable_text() => {
                        column.push(Value::String(Some(String::new())))
                    }
                    other => column.push(other),
                }
            }
        }
        let unnest: Vec<String> = cols
            .iter()
            .map(|c| format!("?::{}[]", c.pg_type()))
            .collect();
        let names: Vec<String> = (1..=cols.len()).map(|i| format!("c{i}")).collect();
        let select: Vec<String> = cols
            .iter()
            .zip(&names)
            .map(|(c, n)| {
                if c.nullable_text() {
                    format!("NULLIF({n}, '')")
                } else {
                    n.clone()
                }
            })
            .collect();
        let sql = format!(
            "{insert} SELECT {} FROM UNNEST({}) AS u({}) {tail}",
            select.join(", "),
            unnest.join(", "),
            names.join(", ")
        );
        let values = cols
            .iter()
            .zip(columns)
            .map(|(c, v)| array(c.1.clone(), v))
            .collect();
        return vec![stmt(backend, &sql, values)];
    }
    let row = format!("({})", placeholders(cols.len()));
    let chunk = sqlite_chunk.max(1);
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::new();
    // The values are moved into the statements, not cloned: a batch's rows hold every
    // event's payload, and a second copy of them was ~12 MB at the peak of a large batch.
    while rows.peek().is_some() {
        let mut sql = format!("{insert} VALUES ");
        let mut values = Vec::with_capacity(chunk.min(rows.len()) * cols.len());
        for (i, r) in rows.by_ref().take(chunk).enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&row);
            values.extend(r);
        }
        sql.push(' ');
        sql.push_str(tail);
        out.push(stmt(backend, &sql, values));
    }
    out
}

/// [`in_list`] for 64-bit ids.
pub fn in_ids(backend: DbBackend, column: &str, ids: &[i64]) -> (String, Vec<Value>) {
    in_list(
        backend,
        column,
        sea_orm::sea_query::ArrayType::BigInt,
        ids.iter().map(|id| Value::from(*id)).collect(),
    )
}

/// Runs one portable SQL statement (`?` placeholders) and returns its rows.
pub async fn query_all(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(stmt(db.get_database_backend(), sql, values))
        .await
}

/// Runs one portable SQL statement and returns its first row, if any.
pub async fn query_one(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Option<QueryResult>, DbErr> {
    db.query_one_raw(stmt(db.get_database_backend(), sql, values))
        .await
}

/// Runs one portable SQL statement for its effect; returns the rows affected.
pub async fn execute(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, DbErr> {
    Ok(db
        .execute_raw(stmt(db.get_database_backend(), sql, values))
        .await?
        .rows_affected())
}

/// Begins a transaction that holds the write lock from its first statement on SQLite: a
/// deferred transaction that reads first and writes later fails at once (SQLITE_BUSY)
/// when another writer committed in between, instead of waiting its turn.
pub async fn begin_write(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        execute(
            &txn,
            "UPDATE organizations SET id = id WHERE id = -1",
            vec![],
        )
        .await?;
    }
    Ok(txn)
}
