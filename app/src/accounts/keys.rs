//! DSN keys (client keys) of projects. Ingest reads them from its key cache, which reloads
//! every 2 s: a change here reaches every web process within that time.

use faultline_core::entity::now_ms;
use faultline_core::protocol::dsn::ProjectKey;
use sea_orm::ConnectionTrait;

use super::{AccountError, Result, exec};

/// Reads a rate limit as the forms give it: empty for none, else events per minute.
pub fn parse_rate_limit(s: &str) -> Result<Option<i32>> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<i32>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(Some(n)),
        _ => Err(AccountError::Invalid(format!(
            "{s:?} is not a rate limit: use a number of events per minute (1 to 10000000), or leave it empty for none."
        ))),
    }
}

/// Creates an enabled key for the project; returns its public part.
pub async fn create(
    conn: &impl ConnectionTrait,
    project_id: i64,
    label: &str,
    rate_limit_per_minute: Option<i32>,
) -> Result<String> {
    let label: String = label.trim().chars().take(100).collect();
    let key = ProjectKey::generate().to_string();
    exec(
        conn,
        "INSERT INTO project_keys (project_id, public_key, label, enabled, rate_limit_per_minute, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            project_id.into(),
            key.clone().into(),
            label.into(),
            true.into(),
            rate_limit_per_minute.into(),
            now_ms().into(),
        ],
    )
    .await?;
    Ok(key)
}

fn found(n: u64) -> Result<()> {
    if n == 0 {
        Err(AccountError::NotFound(
            "This project has no such key.".into(),
        ))
    } else {
        Ok(())
    }
}

/// Enables or disables a key of the project.
pub async fn set_enabled(
    conn: &impl ConnectionTrait,
    project_id: i64,
    key_id: i64,
    enabled: bool,
) -> Result<()> {
    found(
        exec(
            conn,
            "UPDATE project_keys SET enabled = ? WHERE id = ? AND project_id = ?",
            vec![enabled.into(), key_id.into(), project_id.into()],
        )
        .await?,
    )
}

/// Sets (or clears) a key's rate limit, events per minute.
pub async fn set_rate_limit(
    conn: &impl ConnectionTrait,
    project_id: i64,
    key_id: i64,
    rate_limit_per_minute: Option<i32>,
) -> Result<()> {
    found(
        exec(
            conn,
            "UPDATE project_keys SET rate_limit_per_minute = ? WHERE id = ? AND project_id = ?",
            vec![
                rate_limit_per_minute.into(),
                key_id.into(),
                project_id.into(),
            ],
        )
        .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        assert_eq!(parse_rate_limit("").ok(), Some(None));
        assert_eq!(parse_rate_limit("600").ok(), Some(Some(600)));
        for bad in ["0", "-5", "lots", "10000001"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad}");
        }
    }
}
