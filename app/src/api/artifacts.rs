//! The `artifacts` index: one row per uploaded file, which the worker's symbolication
//! reads (ARCHITECTURE.md, "Artifacts"). Every upload path (artifact bundles, release
//! bundles, single release files) writes rows through [`store`], so the contract holds in
//! one place:
//!
//! - `kind`: `minified_source` | `source_map` | `source` (| `indexed_ram_bundle`);
//! - `name`: the file's URL exactly as uploaded (`~/static/app.min.js`);
//! - `debug_id`: lowercase hyphenated UUID or NULL;
//! - `release_id` / `dist`: the release row and dist the upload named, or NULL;
//! - `sha1`: SHA-1 of the file's own (uncompressed) content, which is in `blobs.data`;
//! - `headers`: JSON object of the file's headers, keys lower-cased (`sourcemap`).
//!
//! A file uploaded again under the same identity (name, release, dist, debug id) replaces
//! the older row, so lookups never have to choose between duplicates.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DbErr};

use super::bundle::ArtifactKind;
use super::{blobs, execute, query_all};
use faultline_core::entity::now_ms;

/// A file to index.
pub struct NewArtifact<'a> {
    pub organization_id: i64,
    pub release_id: Option<i64>,
    pub dist: Option<&'a str>,
    pub name: &'a str,
    pub kind: ArtifactKind,
    pub debug_id: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    pub content: &'a [u8],
}

/// Stores the content as a blob and indexes it; returns the artifact's id. Replaced rows'
/// blobs are released if nothing else names them.
pub async fn store(db: &impl ConnectionTrait, a: NewArtifact<'_>) -> Result<i64, DbErr> {
    let sha1 = blobs::sha1_hex(a.content);
    blobs::put(db, &sha1, a.content).await?;
    let is = if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        "IS"
    } else {
        "IS NOT DISTINCT FROM"
    };
    let identity = format!(
        "organization_id = ? AND name = ? AND release_id {is} ? AND dist {is} ? AND debug_id {is} ?"
    );
    let identity_values = || {
        vec![
            a.organization_id.into(),
            a.name.to_string().into(),
            a.release_id.into(),
            a.dist.map(str::to_string).into(),
            a.debug_id.map(str::to_string).into(),
        ]
    };
    let replaced: Vec<String> = query_all(
        db,
        &format!("SELECT sha1 FROM artifacts WHERE {identity}"),
        identity_values(),
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "sha1"))
    .collect::<Result<_, _>>()?;
    if !replaced.is_empty() {
        execute(
            db,
            &format!("DELETE FROM artifacts WHERE {identity}"),
            identity_values(),
        )
        .await?;
    }
    let headers = serde_json::to_string(a.headers).unwrap_or_else(|_| "{}".into());
    let row = super::query_one(
        db,
        "INSERT INTO artifacts (organization_id, release_id, dist, name, kind, debug_id, sha1, size, headers, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        vec![
            a.organization_id.into(),
            a.release_id.into(),
            a.dist.map(str::to_string).into(),
            a.name.to_string().into(),
            a.kind.as_str().to_string().into(),
            a.debug_id.map(str::to_string).into(),
            sha1.clone().into(),
            (a.content.len() as i64).into(),
            headers.into(),
            now_ms().into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::Custom("artifact insert returned no id".into()))?;
    let stale: Vec<String> = replaced.into_iter().filter(|s| *s != sha1).collect();
    blobs::release_unreferenced(db, &stale).await?;
    row.try_get("", "id")
}

/// Deletes artifacts by a condition and releases their blobs; returns how many went.
pub async fn delete_where(
    db: &impl ConnectionTrait,
    condition: &str,
    values: Vec<sea_orm::Value>,
) -> Result<u64, DbErr> {
    let sha1s: Vec<String> = query_all(
        db,
        &format!("SELECT DISTINCT sha1 FROM artifacts WHERE {condition}"),
        values.clone(),
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "sha1"))
    .collect::<Result<_, _>>()?;
    let n = execute(
        db,
        &format!("DELETE FROM artifacts WHERE {condition}"),
        values,
    )
    .await?;
    blobs::release_unreferenced(db, &sha1s).await?;
    Ok(n)
}
