//! DSN key lookups without a database round trip per request.
//!
//! All enabled and disabled keys are loaded into memory and reloaded every
//! [`REFRESH`], so a disabled key or project is refused within seconds. A key that is
//! not in the cache (just created) is looked up once in the database; unknown keys are
//! remembered as unknown until the next reload, so garbage keys cannot hammer the
//! database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::{DatabaseConnection, FromQueryResult, Statement};

/// How often the whole key table is reloaded.
pub const REFRESH: Duration = Duration::from_secs(2);

/// What ingest needs to know about a DSN key.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct KeyInfo {
    pub key_id: i64,
    pub public_key: String,
    pub project_id: i64,
    pub key_enabled: bool,
    pub project_enabled: bool,
    pub rate_limit_per_minute: Option<i32>,
}

/// The in-memory key cache.
#[derive(Clone)]
pub struct KeyCache {
    db: DatabaseConnection,
    keys: Arc<RwLock<HashMap<String, Option<KeyInfo>>>>,
}

const SELECT: &str = "SELECT k.id AS key_id, k.public_key, k.project_id, k.enabled AS key_enabled, \
     p.enabled AS project_enabled, k.rate_limit_per_minute \
     FROM project_keys k JOIN projects p ON p.id = k.project_id";

impl KeyCache {
    /// Loads every key and starts the periodic reload.
    pub async fn start(db: DatabaseConnection) -> anyhow::Result<KeyCache> {
        let cache = KeyCache {
            db,
            keys: Arc::new(RwLock::new(HashMap::new())),
        };
        cache.reload().await?;
        let bg = cache.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            loop {
                tick.tick().await;
                if let Err(e) = bg.reload().await {
                    tracing::warn!(error = %e, "reloading DSN keys failed; keeping the previous set");
                }
            }
        });
        Ok(cache)
    }

    async fn reload(&self) -> anyhow::Result<()> {
        let backend = self.db.get_database_backend();
        let rows = KeyInfo::find_by_statement(Statement::from_string(backend, SELECT))
            .all(&self.db)
            .await?;
        let fresh: HashMap<String, Option<KeyInfo>> = rows
            .into_iter()
            .map(|k| (k.public_key.clone(), Some(k)))
            .collect();
        if let Ok(mut keys) = self.keys.write() {
            *keys = fresh;
        }
        Ok(())
    }

    /// The key's details, or `None` when no such key exists.
    pub async fn get(&self, public_key: &str) -> Result<Option<KeyInfo>, sea_orm::DbErr> {
        if let Ok(keys) = self.keys.read()
            && let Some(hit) = keys.get(public_key)
        {
            return Ok(hit.clone());
        }
        let backend = self.db.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => format!("{SELECT} WHERE k.public_key = $1"),
            _ => format!("{SELECT} WHERE k.public_key = ?"),
        };
        let found = KeyInfo::find_by_statement(Statement::from_sql_and_values(
            backend,
            sql,
            [public_key.into()],
        ))
        .one(&self.db)
        .await?;
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(public_key.to_string(), found.clone());
        }
        Ok(found)
    }
}
