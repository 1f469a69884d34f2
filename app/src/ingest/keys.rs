//! DSN key lookups without a database round trip per request.
//!
//! All enabled and disabled keys are loaded into memory and reloaded every
//! [`REFRESH`], so a disabled key or project is refused within seconds, and a key created
//! anywhere (the pages, the CLI, another process) is known after the next reload at the
//! latest.
//!
//! A key that is not in the cache may have been created since the last reload, so it is
//! looked up in the database once and the answer — found or unknown — is kept until the
//! next reload (that is the negative cache: its time to live is [`REFRESH`], and the
//! reload that ends it is also what picks up a key created after the miss). Such lookups
//! are budgeted: at most [`MISS_LOOKUPS_PER_REFRESH`] between two reloads. Past the budget
//! an uncached key is refused without asking the database, so a sender cycling through
//! random keys costs the database at most that many queries per [`REFRESH`], and the
//! negative entries (32-character keys, one per lookup) stay as few.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::{DatabaseConnection, FromQueryResult, Statement};

/// How often the whole key table is reloaded.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Database lookups of keys missing from the cache allowed between two reloads. A new key
/// needs one; more than a few dozen new keys used within two seconds is not a real sender.
pub const MISS_LOOKUPS_PER_REFRESH: u32 = 32;

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
    /// Lookups of uncached keys left until the next reload.
    misses_left: Arc<AtomicU32>,
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
            misses_left: Arc::new(AtomicU32::new(MISS_LOOKUPS_PER_REFRESH)),
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
        self.misses_left
            .store(MISS_LOOKUPS_PER_REFRESH, Ordering::Relaxed);
        Ok(())
    }

    /// The key's details, or `None` when no such key exists (or, while the lookup budget is
    /// spent, when the key was not in the database at the last reload).
    pub async fn get(&self, public_key: &str) -> Result<Option<KeyInfo>, sea_orm::DbErr> {
        if let Ok(keys) = self.keys.read()
            && let Some(hit) = keys.get(public_key)
        {
            return Ok(hit.clone());
        }
        let lookups = &faultline_core::metrics::get().ingest_key_lookups;
        let outcome = |outcome| faultline_core::metrics::OutcomeLabel { outcome };
        let budget = self
            .misses_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if budget.is_err() {
            lookups.get_or_create(&outcome("skipped")).inc();
            return Ok(None);
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
        lookups
            .get_or_create(&outcome(if found.is_some() { "found" } else { "unknown" }))
            .inc();
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(public_key.to_string(), found.clone());
        }
        Ok(found)
    }
}
