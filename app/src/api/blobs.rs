//! Content-addressed storage of uploaded bytes in the `blobs` table (key: lowercase hex
//! SHA-1 of the content), and its garbage collection.
//!
//! Chunks of a chunked upload and the files of an assembled bundle both live here; an
//! artifact names its content by SHA-1. A blob that no artifact names is deleted once it is
//! older than a grace period (chunks wait there between upload and assemble), or at once
//! when the artifact that named it is deleted.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value};
use sha1::Digest;

use super::{execute, query_all};
use faultline_core::entity::now_ms;

/// How long an unreferenced blob is kept: enough for sentry-cli to upload every chunk of a
/// bundle and ask for its assembly.
pub const GC_GRACE: Duration = Duration::from_secs(60 * 60);
/// How often the collector runs in a web process.
const GC_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Lowercase hex SHA-1 of `data`.
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(data))
}

/// True for a lowercase (or uppercase) 40-digit hex SHA-1.
pub fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Stores `data` under its SHA-1 (given, already checked by the caller). Storing the same
/// content again only renews its upload time, so a re-uploaded chunk gets a fresh grace
/// period.
pub async fn put(db: &impl ConnectionTrait, sha1: &str, data: &[u8]) -> Result<(), DbErr> {
    execute(
        db,
        "INSERT INTO blobs (sha1, size, data, created_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (sha1) DO UPDATE SET created_at = excluded.created_at",
        vec![
            sha1.to_string().into(),
            (data.len() as i64).into(),
            data.to_vec().into(),
            now_ms().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Which of these SHA-1s are stored.
pub async fn present(
    db: &impl ConnectionTrait,
    sha1s: &[String],
) -> Result<HashSet<String>, DbErr> {
    let mut out = HashSet::new();
    for part in sha1s.chunks(500) {
        let values: Vec<Value> = part.iter().map(|s| Value::from(s.clone())).collect();
        let (cond, values) = faultline_worker::sql::in_list(
            db.get_database_backend(),
            "sha1",
            ArrayType::String,
            values,
        );
        for row in query_all(db, &format!("SELECT sha1 FROM blobs WHERE {cond}"), values).await? {
            out.insert(row.try_get("", "sha1")?);
        }
    }
    Ok(out)
}

/// The content of a blob.
pub async fn get(db: &impl ConnectionTrait, sha1: &str) -> Result<Option<Vec<u8>>, DbErr> {
    let row = super::query_one(
        db,
        "SELECT data FROM blobs WHERE sha1 = ?",
        vec![sha1.to_string().into()],
    )
    .await?;
    row.map(|r| r.try_get("", "data")).transpose()
}

/// Deletes blobs no artifact names that were stored before `older_than_ms`; returns how
/// many went.
pub async fn collect_garbage(db: &impl ConnectionTrait, older_than_ms: i64) -> Result<u64, DbErr> {
    execute(
        db,
        "DELETE FROM blobs WHERE created_at < ? \
         AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = blobs.sha1)",
        vec![older_than_ms.into()],
    )
    .await
}

/// Deletes these blobs now if no artifact names them any more (after deleting artifacts).
pub async fn release_unreferenced(
    db: &impl ConnectionTrait,
    sha1s: &[String],
) -> Result<u64, DbErr> {
    let mut n = 0;
    for sha1 in sha1s {
        n += execute(
            db,
            "DELETE FROM blobs WHERE sha1 = ? \
             AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = blobs.sha1)",
            vec![sha1.clone().into()],
        )
        .await?;
    }
    Ok(n)
}

/// Runs the collector every few minutes for as long as the process lives.
pub fn spawn_collector(db: DatabaseConnection) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GC_INTERVAL);
        loop {
            tick.tick().await;
            let cutoff = now_ms() - GC_GRACE.as_millis() as i64;
            match collect_garbage(&db, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "unreferenced blobs collected"),
                Err(e) => tracing::warn!(error = %e, "blob garbage collection failed"),
            }
        }
    });
}
