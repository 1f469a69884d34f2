//! Content-addressed storage of uploaded bytes (key: lowercase hex SHA-1 of the content),
//! and its garbage collection. Every blob has a row in the `blobs` table; its bytes are in
//! the row or, when a directory or bucket is configured, an object in that store
//! (`faultline_worker::symbolicate::storage`, installed once at start).
//!
//! Chunks of a chunked upload and the files of an assembled bundle both live here; an
//! artifact names its content by SHA-1. The bytes are shared between organizations (one
//! row per content), but a chunk belongs to the organizations that uploaded it
//! (`chunk_owners`): [`owned_chunks`] and [`get_chunk`] answer only for the caller's own
//! uploads, so one organization can neither learn which chunks another uploaded nor
//! assemble a file from them. Ownership expires with the grace period below. A blob that no artifact names is deleted once it is
//! older than a grace period (chunks wait there between upload and assemble), or at once
//! when the artifact that named it is deleted. Objects in a directory or bucket go with
//! their row in the collector; objects without a row (their row was deleted in a
//! transaction, or a transaction that wrote one rolled back) are swept once they are older
//! than the grace period.

use std::collections::HashSet;

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value};
use sha1::Digest;

use super::{execute, query_all};
use faultline_core::entity::now_ms;
use faultline_worker::symbolicate::storage::{self, ArtifactStore, StoreError};

fn store_err(e: StoreError) -> DbErr {
    DbErr::Custom(e.to_string())
}

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
/// period. With a directory or bucket the object is written first and the row (without
/// bytes) after, so a row never names an object that was not written.
pub async fn put(db: &impl ConnectionTrait, sha1: &str, data: &[u8]) -> Result<(), DbErr> {
    let store = storage::current();
    let in_row: &[u8] = if store.in_database() || data.is_empty() {
        data
    } else {
        store.put(sha1, data).await.map_err(store_err)?;
        &[]
    };
    execute(
        db,
        "INSERT INTO blobs (sha1, size, data, created_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (sha1) DO UPDATE SET created_at = excluded.created_at",
        vec![
            sha1.to_string().into(),
            (data.len() as i64).into(),
            in_row.to_vec().into(),
            now_ms().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Stores an uploaded chunk and records that `organization_id` uploaded it (again: the
/// ownership's time is renewed, like the blob's).
pub async fn put_chunk(
    db: &impl ConnectionTrait,
    organization_id: i64,
    sha1: &str,
    data: &[u8],
) -> Result<(), DbErr> {
    put(db, sha1, data).await?;
    execute(
        db,
        "INSERT INTO chunk_owners (organization_id, sha1, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (organization_id, sha1) DO UPDATE SET created_at = excluded.created_at",
        vec![
            organization_id.into(),
            sha1.to_string().into(),
            now_ms().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Which of these chunks `organization_id` uploaded and are still stored.
pub async fn owned_chunks(
    db: &impl ConnectionTrait,
    organization_id: i64,
    sha1s: &[String],
) -> Result<HashSet<String>, DbErr> {
    let mut out = HashSet::new();
    for part in sha1s.chunks(500) {
        let values: Vec<Value> = part.iter().map(|s| Value::from(s.clone())).collect();
        let (cond, values) = faultline_core::sql::in_list(
            db.get_database_backend(),
            "c.sha1",
            ArrayType::String,
            values,
        );
        let mut args = vec![Value::from(organization_id)];
        args.extend(values);
        let sql = format!(
            "SELECT c.sha1 FROM chunk_owners c JOIN blobs b ON b.sha1 = c.sha1 \
             WHERE c.organization_id = ? AND {cond}"
        );
        for row in query_all(db, &sql, args).await? {
            out.insert(row.try_get("", "sha1")?);
        }
    }
    Ok(out)
}

/// The content of a chunk `organization_id` uploaded: `None` when it did not upload it (or
/// the blob is gone), whoever else did.
pub async fn get_chunk(
    db: &impl ConnectionTrait,
    organization_id: i64,
    sha1: &str,
) -> Result<Option<Vec<u8>>, DbErr> {
    let owned = super::query_one(
        db,
        "SELECT sha1 FROM chunk_owners WHERE organization_id = ? AND sha1 = ?",
        vec![organization_id.into(), sha1.to_string().into()],
    )
    .await?;
    if owned.is_none() {
        return Ok(None);
    }
    get(db, sha1).await
}

/// Which of these SHA-1s are stored.
pub async fn present(
    db: &impl ConnectionTrait,
    sha1s: &[String],
) -> Result<HashSet<String>, DbErr> {
    let mut out = HashSet::new();
    for part in sha1s.chunks(500) {
        let values: Vec<Value> = part.iter().map(|s| Value::from(s.clone())).collect();
        let (cond, values) = faultline_core::sql::in_list(
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

/// The content of a blob: `None` when it has no row, or its object is missing.
pub async fn get(db: &impl ConnectionTrait, sha1: &str) -> Result<Option<Vec<u8>>, DbErr> {
    let row = super::query_one(
        db,
        "SELECT size, data FROM blobs WHERE sha1 = ?",
        vec![sha1.to_string().into()],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let size: i64 = row.try_get("", "size")?;
    let data: Vec<u8> = row.try_get("", "data")?;
    if !data.is_empty() || size == 0 {
        return Ok(Some(data));
    }
    match storage::current().get(sha1).await {
        Ok(data) => Ok(Some(data)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(store_err(e)),
    }
}

/// Deletes blobs no artifact names that were stored before `older_than_ms`, and objects of
/// the configured directory or bucket that have no row and were written before then;
/// returns how many blobs went.
pub async fn collect_garbage(db: &impl ConnectionTrait, older_than_ms: i64) -> Result<u64, DbErr> {
    collect_garbage_in(db, storage::current().as_ref(), older_than_ms).await
}

/// [`collect_garbage`] with an explicit store.
pub async fn collect_garbage_in(
    db: &impl ConnectionTrait,
    store: &dyn ArtifactStore,
    older_than_ms: i64,
) -> Result<u64, DbErr> {
    // Ownership first: a blob is at least as new as its newest owner (every upload renews
    // both), so a blob old enough to go has no owner left after this.
    execute(
        db,
        "DELETE FROM chunk_owners WHERE created_at < ?",
        vec![older_than_ms.into()],
    )
    .await?;
    if store.in_database() {
        return execute(
            db,
            "DELETE FROM blobs WHERE created_at < ? \
             AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = blobs.sha1)",
            vec![older_than_ms.into()],
        )
        .await;
    }
    // Rows first, each deleted only if still unreferenced and old (an upload of the same
    // content in between renews it), then the object of each row that went.
    let candidates = query_all(
        db,
        "SELECT sha1 FROM blobs WHERE created_at < ? \
         AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = blobs.sha1)",
        vec![older_than_ms.into()],
    )
    .await?;
    let mut deleted = 0;
    for row in candidates {
        let sha1: String = row.try_get("", "sha1")?;
        let n = execute(
            db,
            "DELETE FROM blobs WHERE sha1 = ? AND created_at < ? \
             AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = blobs.sha1)",
            vec![sha1.clone().into(), older_than_ms.into()],
        )
        .await?;
        if n > 0 {
            store.delete(&sha1).await.map_err(store_err)?;
            deleted += n;
        }
    }
    // Objects without a row: left by deleted artifacts (their rows go inside the
    // deleting transaction, the object cannot) or by uploads whose transaction failed.
    let old: Vec<String> = store
        .list()
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|o| o.modified_ms < older_than_ms)
        .map(|o| o.sha1)
        .collect();
    let known = present(db, &old).await?;
    for sha1 in old.iter().filter(|s| !known.contains(*s)) {
        store.delete(sha1).await.map_err(store_err)?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Deletes these blobs' rows now if no artifact names them any more and no organization
/// holds them as an uploaded chunk (after deleting artifacts, in the same transaction). Objects in a directory or bucket stay until the
/// collector's sweep: the transaction may still roll back.
pub async fn release_unreferenced(
    db: &impl ConnectionTrait,
    sha1s: &[String],
) -> Result<u64, DbErr> {
    let mut n = 0;
    for sha1 in sha1s {
        n += execute(
            db,
            "DELETE FROM blobs WHERE sha1 = ? \
             AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = blobs.sha1) \
             AND NOT EXISTS (SELECT 1 FROM chunk_owners c WHERE c.sha1 = blobs.sha1)",
            vec![sha1.clone().into()],
        )
        .await?;
    }
    Ok(n)
}

/// Runs the collector every few minutes for as long as the process lives.
pub fn spawn_collector(db: DatabaseConnection, gc: faultline_core::config::ArtifactGc) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(gc.interval);
        loop {
            tick.tick().await;
            let cutoff = now_ms() - gc.grace.as_millis() as i64;
            match collect_garbage(&db, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "unreferenced blobs collected"),
                Err(e) => tracing::warn!(error = %e, "blob garbage collection failed"),
            }
        }
    });
}
