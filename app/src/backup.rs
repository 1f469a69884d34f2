//! `faultline backup PATH`: an online copy of the embedded SQLite database.
//!
//! `VACUUM INTO` reads the database in one read transaction and writes a compact,
//! consistent copy: the server keeps serving and writing meanwhile (WAL mode), and the
//! copy is a plain SQLite file that `faultline` opens as `DATABASE_URL=sqlite://COPY`.
//! PostgreSQL deployments back up with `pg_dump`, which does the same job better.

use std::path::{Path, PathBuf};

use faultline_core::config::Config;
use sea_orm::ConnectionTrait;

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupReport {
    pub database: (PathBuf, u64),
    pub queue: Option<(PathBuf, u64)>,
}

/// Copies the main database to `target` (and `queue.db` next to it when `with_queue`).
pub async fn run(config: &Config, target: &Path, with_queue: bool) -> anyhow::Result<BackupReport> {
    if !config.is_sqlite() {
        anyhow::bail!(
            "DATABASE_URL is PostgreSQL: back it up with pg_dump, e.g. \
             pg_dump --format=custom --file=faultline.dump \"$DATABASE_URL\" \
             (restore with pg_restore); faultline backup copies the embedded SQLite database"
        );
    }
    check_target(target)?;
    let db = faultline_core::db::connect(config).await?;
    vacuum_into(&db, target).await?;
    let queue = if with_queue {
        let queue_target = queue_copy_path(target);
        check_target(&queue_target)?;
        let source = config.queue_db_path();
        if !source.exists() {
            anyhow::bail!("there is no embedded queue at {}", source.display());
        }
        let url = format!("sqlite://{}", source.display());
        let queue_db = faultline_core::db::connect_url(&url).await?;
        vacuum_into(&queue_db, &queue_target).await?;
        Some((queue_target.clone(), size(&queue_target)))
    } else {
        None
    };
    Ok(BackupReport {
        database: (target.to_path_buf(), size(target)),
        queue,
    })
}

/// Where `--with-queue` writes the queue's copy: `PATH.queue.db`.
pub fn queue_copy_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".queue.db");
    PathBuf::from(name)
}

fn check_target(target: &Path) -> anyhow::Result<()> {
    if target.exists() {
        anyhow::bail!(
            "{} already exists; choose a new file name (a backup never overwrites)",
            target.display()
        );
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        anyhow::bail!(
            "directory {} does not exist; create it first",
            parent.display()
        );
    }
    Ok(())
}

async fn vacuum_into(db: &sea_orm::DatabaseConnection, target: &Path) -> anyhow::Result<()> {
    let path = target
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", target.display()))?;
    // A string literal: single quotes doubled.
    let sql = format!("VACUUM INTO '{}'", path.replace('\'', "''"));
    db.execute_unprepared(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("backup to {} failed: {e}", target.display()))?;
    Ok(())
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
