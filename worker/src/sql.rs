//! Small helpers for writing one SQL text that runs on SQLite and PostgreSQL.

use sea_orm::{DbBackend, Statement, Value};

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
