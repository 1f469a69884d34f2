//! The main database connection (SQLite or PostgreSQL) and its migrations.

use std::time::Duration;

use crate::config::Config;
use faultline_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

/// Opens the configured database, tuned for Faultline's write pattern.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    connect_url(&config.database_url).await
}

/// Opens a database by URL. SQLite gets WAL, a busy timeout and foreign keys, so that the
/// worker's batched writes and the pages' reads do not block each other, and
/// `synchronous = FULL`: the worker acknowledges a job once the transaction with its event
/// commits, so that commit must survive a power loss too (NORMAL keeps it only across a
/// process crash). It costs one fsync per batch of up to 2,000 events.
pub async fn connect_url(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // Connections idle for 30 s close (sqlx's default is 10 min): each SQLite connection
        // keeps its page cache and compiled statements, so after a spike the memory of the
        // extra connections comes back within a minute.
        opts.max_connections(8)
            .min_connections(1)
            .idle_timeout(Duration::from_secs(30));
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", "-65536")
                .pragma("soft_heap_limit", SQLITE_SOFT_HEAP_LIMIT.to_string())
                // Prepared statements kept per connection (sqlx's default is 100). Bulk
                // inserts and `IN` lists make a new text for every row count, each a
                // compiled program of up to a few hundred KB in SQLite's heap: 8
                // connections x 100 of them held ~100 MB under load. The statements every
                // batch runs stay in 32; the odd sizes are compiled again, ~tens of µs each.
                .statement_cache_capacity(32)
                .pragma("temp_store", "memory")
                // Checkpoints run beside the commits (`checkpointer`), not inside them.
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", WAL_RESTART_BYTES.to_string())
        });
    } else {
        opts.max_connections(16).min_connections(1);
    }
    let db = Database::connect(opts).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open database {}: {}",
            redact(url),
            first_line(&e.to_string())
        )
    })?;
    // Fail now, with the reason, rather than at the first request.
    db.execute_unprepared("SELECT 1").await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach database {}: {}",
            redact(url),
            first_line(&e.to_string())
        )
    })?;
    if db.get_database_backend() == DbBackend::Sqlite {
        tokio::spawn(checkpointer(
            db.get_sqlite_connection_pool().clone(),
            WAL_RESTART_BYTES,
        ));
    }
    Ok(db)
}

/// What all of SQLite in this process may keep on the heap (page caches above all) before it
/// reuses its least recently used pages instead of growing: `PRAGMA soft_heap_limit`,
/// process-wide, set by every connection we open (main database and queue alike).
///
/// Why: each of the main pool's 8 connections may cache 64 MiB (the storer's batches touch
/// thousands of index pages, and a page it finds in its cache costs no read), and the
/// bundled SQLite (built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`) keeps one cache for all
/// connections: without a limit that cache only grew with the database, which was most of
/// `faultline serve`'s 600-850 MB under load (issue 25). A page read again comes from the
/// OS page cache, which the kernel can reclaim; our heap it cannot.
pub const SQLITE_SOFT_HEAP_LIMIT: i64 = 24 * 1024 * 1024;

/// Once a WAL is this large, the checkpointer restarts it.
pub const WAL_RESTART_BYTES: u64 = 64 * 1024 * 1024;

/// Copies a SQLite database's WAL into the database file in the background, for pools
/// whose connections do not checkpoint in their commits (`wal_autocheckpoint = 0`): the
/// main database and the embedded queue's producers.
///
/// Why: SQLite's automatic checkpoint runs inside the commit that crossed 1,000 WAL pages,
/// and the writer waits for it. The worker's batch of 2,000 events dirties ~5,000 pages
/// (random event ids and trace ids land on a different index page each), so nearly every
/// batch commit also copied ~20 MB into the database file and synced it: ~50 ms of the
/// ~165 ms a batch took on the storer, the pipeline's critical path. Here that work runs on
/// another connection (another thread) while the storer writes the next batch.
///
/// Every 100 ms a PASSIVE checkpoint copies what is committed, waiting for no one and
/// blocking no writer. Under steady load it may never quite catch up, so the WAL would only
/// grow (and every commit would extend the file, which costs fdatasync a metadata write);
/// once it passes `restart_bytes` a RESTART checkpoint, right after a PASSIVE one has left
/// it little to copy, holds writers for that remainder and makes the next commit start the
/// WAL over. Runs until the pool closes.
pub async fn checkpointer(pool: sea_orm::sqlx::SqlitePool, restart_bytes: u64) {
    use sea_orm::sqlx::{self, Connection};
    let wal = {
        let mut name = pool.connect_options().get_filename().as_os_str().to_owned();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    // A connection of its own with a short busy timeout: a RESTART holds writers while it
    // waits for readers, and a long reader (`faultline backup`'s `VACUUM INTO`) must not
    // stall the writers for the pool's 10 s at every attempt. Giving up early is harmless.
    let options = (*pool.connect_options())
        .clone()
        .busy_timeout(Duration::from_millis(100));
    let mut conn: Option<sqlx::SqliteConnection> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match sqlx::SqliteConnection::connect_with(&options).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, wal = %wal.display(), "checkpointer cannot connect; retrying");
                    continue;
                }
            },
        };
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *c)
            .await
        {
            tracing::debug!(error = %e, wal = %wal.display(), "checkpoint failed; retrying");
            continue;
        }
        let wal_bytes = tokio::fs::metadata(&wal).await.map_or(0, |m| m.len());
        if wal_bytes > restart_bytes
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&mut *c)
                .await
        {
            tracing::debug!(error = %e, wal = %wal.display(), "WAL restart failed; retrying");
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {}", first_line(&e.to_string())))
}

/// True when the connection is SQLite.
pub fn is_sqlite(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Sqlite
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Fresh, migrated databases for tests: every storage test runs on both engines.
pub mod testing {
    use super::*;

    /// The PostgreSQL server tests create their databases on.
    pub fn postgres_admin_url() -> String {
        std::env::var("FAULTLINE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A new SQLite database file in a fresh temporary directory.
    pub async fn sqlite() -> anyhow::Result<DatabaseConnection> {
        let dir =
            std::env::temp_dir().join(format!("faultline-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("faultline.db").display());
        let db = connect_url(&url).await?;
        migrate(&db).await?;
        Ok(db)
    }

    /// A new PostgreSQL database (`faultline_t_<random>`) on the test server. Tests fail
    /// rather than skip when the server is missing, so "both engines" is never a lie.
    pub async fn postgres() -> anyhow::Result<DatabaseConnection> {
        let admin_url = postgres_admin_url();
        let admin = connect_url(&admin_url).await?;
        let name = format!("faultline_t_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        let mut url = url::Url::parse(&admin_url)?;
        url.set_path(&name);
        let db = connect_url(url.as_str()).await?;
        migrate(&db).await?;
        Ok(db)
    }

    /// Both engines, labelled, for tests that loop over them.
    pub async fn both() -> anyhow::Result<Vec<(&'static str, DatabaseConnection)>> {
        Ok(vec![
            ("sqlite", sqlite().await?),
            ("postgres", postgres().await?),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored event whose job was acknowledged must survive a power loss: every
    /// connection of the pool commits with `synchronous = FULL` (2) in WAL mode.
    #[tokio::test]
    async fn sqlite_commits_are_durable_before_jobs_are_acknowledged() {
        let db = testing::sqlite().await.expect("sqlite");
        for _ in 0..3 {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT synchronous, journal_mode FROM pragma_synchronous, pragma_journal_mode",
                ))
                .await
                .expect("pragma")
                .expect("a row");
            assert_eq!(row.try_get_by_index::<i64>(0).expect("synchronous"), 2);
            assert_eq!(row.try_get_by_index::<String>(1).expect("journal"), "wal");
        }
    }

    /// Commits never checkpoint (a batch commit used to wait ~50 ms for one): the
    /// background checkpointer copies committed pages into the database file instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_checkpoints_run_beside_the_commits() {
        let db = testing::sqlite().await.expect("sqlite");
        let sql = |s: &str| sea_orm::Statement::from_string(DbBackend::Sqlite, s);
        for _ in 0..3 {
            let row = db
                .query_one_raw(sql("PRAGMA wal_autocheckpoint"))
                .await
                .expect("pragma")
                .expect("a row");
            assert_eq!(row.try_get_by_index::<i64>(0).expect("pages"), 0);
        }
        let file = std::path::PathBuf::from(
            db.get_sqlite_connection_pool()
                .connect_options()
                .get_filename(),
        );
        let before = std::fs::metadata(&file).expect("database file").len();
        db.execute_unprepared("CREATE TABLE filler (data BLOB)")
            .await
            .expect("create");
        // 8 MB over 64 commits: with no checkpoint at all it would all stay in the WAL.
        for _ in 0..64 {
            db.execute_unprepared("INSERT INTO filler SELECT randomblob(131072)")
                .await
                .expect("insert");
        }
        let mut copied = 0;
        for _ in 0..50 {
            copied = std::fs::metadata(&file).expect("database file").len();
            if copied >= before + 8 * 1024 * 1024 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            copied >= before + 8 * 1024 * 1024,
            "the checkpointer copied the WAL into the database ({before} -> {copied} bytes)"
        );
    }
}
