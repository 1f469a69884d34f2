//! The database side of symbolication: which uploaded files exist for a batch of frames,
//! and their bytes. A handful of queries per batch, whatever its number of frames.
//!
//! What uploads leave behind (written by the `/api/0/` upload endpoints): one `artifacts`
//! row per file, named by its URL (`~/static/app.min.js`), of kind `minified_source`,
//! `source_map` or `source`, with a `debug_id` (lowercase, hyphenated) and/or a release
//! (+ dist), and `sha1` naming its bytes: a `blobs` row, whose `data` holds them or, when
//! a directory or bucket is configured, is empty (`storage`).

use std::collections::HashMap;

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

use crate::sql::{in_list, stmt};

/// One uploaded file.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub kind: String,
    pub name: String,
    pub debug_id: Option<String>,
    /// The release's version string, when the file belongs to one.
    pub release: Option<String>,
    pub dist: Option<String>,
    pub sha1: String,
    /// Upload headers (`Sourcemap: app.js.map`), keys lower-cased.
    pub headers: HashMap<String, String>,
}

impl Artifact {
    /// The source map this file names in its upload headers.
    pub fn sourcemap_header(&self) -> Option<&str> {
        self.headers
            .get("sourcemap")
            .or_else(|| self.headers.get("x-sourcemap"))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether it belongs to `dist` (no dist and an empty one are the same).
    pub fn has_dist(&self, dist: Option<&str>) -> bool {
        self.dist.as_deref().unwrap_or("") == dist.unwrap_or("")
    }
}

const COLUMNS: &str = "a.kind, a.name, a.debug_id, a.dist, a.sha1, a.headers, r.version";

fn read(row: &QueryResult) -> Result<Artifact, DbErr> {
    let headers: Option<String> = row.try_get("", "headers")?;
    let headers = headers
        .and_then(|h| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&h).ok())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Artifact {
        kind: row.try_get("", "kind")?,
        name: row.try_get("", "name")?,
        debug_id: row
            .try_get::<Option<String>>("", "debug_id")?
            .map(|d| d.to_ascii_lowercase()),
        release: row.try_get("", "version")?,
        dist: row.try_get("", "dist")?,
        sha1: row.try_get("", "sha1")?,
        headers,
    })
}

fn texts(values: &[String]) -> Vec<Value> {
    values.iter().map(|v| Value::from(v.clone())).collect()
}

/// Organization of each project.
pub async fn project_organizations(
    db: &impl ConnectionTrait,
    projects: &[i64],
) -> Result<HashMap<i64, i64>, DbErr> {
    let backend = db.get_database_backend();
    let (cond, values) = in_list(
        backend,
        "id",
        ArrayType::BigInt,
        projects.iter().map(|p| Value::from(*p)).collect(),
    );
    let sql = format!("SELECT id, organization_id FROM projects WHERE {cond}");
    let mut out = HashMap::new();
    for row in db.query_all_raw(stmt(backend, &sql, values)).await? {
        out.insert(row.try_get("", "id")?, row.try_get("", "organization_id")?);
    }
    Ok(out)
}

/// The organization's files carrying any of `debug_ids`.
pub async fn by_debug_ids(
    db: &impl ConnectionTrait,
    organization_id: i64,
    debug_ids: &[String],
) -> Result<Vec<Artifact>, DbErr> {
    if debug_ids.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let (cond, mut values) = in_list(backend, "a.debug_id", ArrayType::String, texts(debug_ids));
    values.insert(0, Value::from(organization_id));
    let sql = format!(
        "SELECT {COLUMNS} FROM artifacts a LEFT JOIN releases r ON r.id = a.release_id \
         WHERE a.organization_id = ? AND {cond} ORDER BY a.id DESC"
    );
    db.query_all_raw(stmt(backend, &sql, values))
        .await?
        .iter()
        .map(read)
        .collect()
}

/// The files named any of `names` in any of the organization's releases `versions`.
pub async fn by_release_and_name(
    db: &impl ConnectionTrait,
    organization_id: i64,
    versions: &[String],
    names: &[String],
) -> Result<Vec<Artifact>, DbErr> {
    if versions.is_empty() || names.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let (vcond, vvalues) = in_list(backend, "r.version", ArrayType::String, texts(versions));
    let (ncond, nvalues) = in_list(backend, "a.name", ArrayType::String, texts(names));
    let mut values = vec![Value::from(organization_id)];
    values.extend(vvalues);
    values.extend(nvalues);
    // Newest upload first: a re-upload of the same name wins.
    let sql = format!(
        "SELECT {COLUMNS} FROM artifacts a JOIN releases r ON r.id = a.release_id \
         WHERE r.organization_id = ? AND {vcond} AND {ncond} ORDER BY a.id DESC"
    );
    db.query_all_raw(stmt(backend, &sql, values))
        .await?
        .iter()
        .map(read)
        .collect()
}

/// A `blobs` row: its bytes when the database holds them (else `data` is empty and the
/// bytes are in the configured artifact store).
pub struct BlobRow {
    pub size: i64,
    pub data: Vec<u8>,
}

impl BlobRow {
    /// Whether the bytes came with the row.
    pub fn holds_bytes(&self) -> bool {
        !self.data.is_empty() || self.size == 0
    }
}

/// The row of each blob in `sha1s` that exists.
pub async fn blobs(
    db: &impl ConnectionTrait,
    sha1s: &[String],
) -> Result<HashMap<String, BlobRow>, DbErr> {
    if sha1s.is_empty() {
        return Ok(HashMap::new());
    }
    let backend = db.get_database_backend();
    let (cond, values) = in_list(backend, "sha1", ArrayType::String, texts(sha1s));
    let sql = format!("SELECT sha1, size, data FROM blobs WHERE {cond}");
    let mut out = HashMap::new();
    for row in db.query_all_raw(stmt(backend, &sql, values)).await? {
        out.insert(
            row.try_get("", "sha1")?,
            BlobRow {
                size: row.try_get("", "size")?,
                data: row.try_get("", "data")?,
            },
        );
    }
    Ok(out)
}
