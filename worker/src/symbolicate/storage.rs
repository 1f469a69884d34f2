//! Where the bytes of uploaded files live: in the database (the embedded default), in a
//! directory, or in an S3-compatible bucket. One [`ArtifactStore`] is chosen at start from
//! the configuration ([`from_config`]) and installed for the whole process ([`install`]),
//! like the parsed-file caches: the upload endpoints write through it, symbolication and
//! the release-file API read through it, the collector deletes through it.
//!
//! Whatever the store, every blob has its row in `blobs` (SHA-1, size, upload time): the
//! row is the index that uploads ask ("which chunks are missing?") and that garbage
//! collection joins against `artifacts`. With the database store the row's `data` holds the
//! bytes; with the others `data` is empty and the bytes are an object named by the SHA-1.
//! A row with bytes is always read from the row, so blobs stored before a directory or
//! bucket was configured stay readable.
//!
//! Objects are content-addressed, so writing one is idempotent: the directory store
//! writes a temporary file and renames it into place (a reader never sees half a file, two
//! writers of the same content both succeed), a bucket overwrites an object with the same
//! bytes. Objects are checked against their SHA-1 when read, so a damaged file is reported,
//! never mapped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use faultline_core::config::{ArtifactStorage, S3Settings};
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sha1::Digest;

/// Why an object could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No object under that name.
    #[error("the object {0} is not in the artifact store")]
    NotFound(String),
    /// The object's content does not hash to its name.
    #[error("the object {name} in the artifact store is damaged (its content has SHA-1 {actual})")]
    Corrupt { name: String, actual: String },
    /// The directory or bucket could not be used.
    #[error("artifact store ({kind}): {message}")]
    Io { kind: &'static str, message: String },
}

/// An object in an external store, for the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub sha1: String,
    /// When it was last written, Unix milliseconds.
    pub modified_ms: i64,
}

/// Where blob bytes are kept. Implementations: [`DatabaseStore`], [`DirectoryStore`],
/// [`S3Store`].
#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync + fmt::Debug {
    /// `database`, `directory` or `s3`, for logs and messages.
    fn kind(&self) -> &'static str;
    /// Whether the bytes go into the `blobs` row itself (the database store); the other
    /// stores leave `data` empty.
    fn in_database(&self) -> bool {
        false
    }
    /// Stores `data` under its SHA-1 (checked by the caller). Idempotent.
    async fn put(&self, sha1: &str, data: &[u8]) -> Result<(), StoreError>;
    /// The bytes stored under `sha1`, verified against it.
    async fn get(&self, sha1: &str) -> Result<Vec<u8>, StoreError>;
    /// Deletes the object; deleting a missing one is not an error.
    async fn delete(&self, sha1: &str) -> Result<(), StoreError>;
    /// Every object in the store (the collector compares them with `blobs`).
    async fn list(&self) -> Result<Vec<StoredObject>, StoreError>;
}

fn verified(sha1: &str, data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let actual = hex::encode(sha1::Sha1::digest(&data));
    if actual.eq_ignore_ascii_case(sha1) {
        Ok(data)
    } else {
        Err(StoreError::Corrupt {
            name: sha1.to_owned(),
            actual,
        })
    }
}

fn is_sha1(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The embedded default: the bytes are the `blobs` row's `data`, written and read with the
/// row in the caller's transaction, so this store itself holds nothing.
#[derive(Debug, Default)]
pub struct DatabaseStore;

#[async_trait::async_trait]
impl ArtifactStore for DatabaseStore {
    fn kind(&self) -> &'static str {
        "database"
    }
    fn in_database(&self) -> bool {
        true
    }
    async fn put(&self, _sha1: &str, _data: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get(&self, sha1: &str) -> Result<Vec<u8>, StoreError> {
        // Only reached for a row without bytes, written while another store was configured.
        Err(StoreError::NotFound(format!(
            "{sha1} (uploaded while a directory or bucket was configured)"
        )))
    }
    async fn delete(&self, _sha1: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        Ok(Vec::new())
    }
}

/// Objects as files `<dir>/<first two hex digits>/<sha1>` (a fan-out keeps directories
/// small); temporary files in `<dir>/tmp/`.
#[derive(Debug)]
pub struct DirectoryStore {
    root: PathBuf,
}

impl DirectoryStore {
    /// Creates the directory if needed and checks that it is writable.
    pub fn open(root: &Path) -> Result<DirectoryStore, StoreError> {
        let io = |e: std::io::Error| StoreError::Io {
            kind: "directory",
            message: format!("{}: {e}", root.display()),
        };
        std::fs::create_dir_all(root.join("tmp")).map_err(io)?;
        let probe = root.join("tmp").join(".write-test");
        std::fs::write(&probe, b"ok").map_err(io)?;
        let _ = std::fs::remove_file(&probe);
        Ok(DirectoryStore {
            root: root.to_path_buf(),
        })
    }

    /// The file of a blob.
    pub fn path_of(&self, sha1: &str) -> PathBuf {
        let sha1 = sha1.to_ascii_lowercase();
        self.root.join(&sha1[..2.min(sha1.len())]).join(&sha1)
    }

    fn io(&self, what: &str, e: std::io::Error) -> StoreError {
        StoreError::Io {
            kind: "directory",
            message: format!("{what} in {}: {e}", self.root.display()),
        }
    }
}

#[async_trait::async_trait]
impl ArtifactStore for DirectoryStore {
    fn kind(&self) -> &'static str {
        "directory"
    }

    async fn put(&self, sha1: &str, data: &[u8]) -> Result<(), StoreError> {
        if !is_sha1(sha1) {
            return Err(StoreError::NotFound(sha1.to_owned()));
        }
        let target = self.path_of(sha1);
        let temp = self.root.join("tmp").join(format!(
            "{}.{:016x}",
            sha1.to_ascii_lowercase(),
            rand::random::<u64>()
        ));
        let data = data.to_vec();
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&temp, &data)?;
            // Renaming over an existing file with the same content is harmless and gives
            // it a fresh time, which the collector's orphan sweep looks at.
            std::fs::rename(&temp, &target).inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io(&format!("writing {sha1}"), e)),
            Err(e) => Err(StoreError::Io {
                kind: "directory",
                message: format!("writing {sha1}: {e}"),
            }),
        }
    }

    async fn get(&self, sha1: &str) -> Result<Vec<u8>, StoreError> {
        if !is_sha1(sha1) {
            return Err(StoreError::NotFound(sha1.to_owned()));
        }
        match tokio::fs::read(self.path_of(sha1)).await {
            Ok(data) => verified(sha1, data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(sha1.to_owned()))
            }
            Err(e) => Err(self.io(&format!("reading {sha1}"), e)),
        }
    }

    async fn delete(&self, sha1: &str) -> Result<(), StoreError> {
        if !is_sha1(sha1) {
            return Ok(());
        }
        match tokio::fs::remove_file(self.path_of(sha1)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&format!("deleting {sha1}"), e)),
        }
    }

    async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let root = self.root.clone();
        let listed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<StoredObject>> {
            let mut out = Vec::new();
            for fan in std::fs::read_dir(&root)? {
                let fan = fan?;
                let name = fan.file_name();
                let name = name.to_string_lossy();
                if name.len() != 2 || !fan.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(fan.path())? {
                    let entry = entry?;
                    let file = entry.file_name().to_string_lossy().into_owned();
                    if !is_sha1(&file) {
                        continue;
                    }
                    let modified = entry.metadata()?.modified()?;
                    out.push(StoredObject {
                        sha1: file,
                        modified_ms: unix_ms(modified),
                    });
                }
            }
            Ok(out)
        })
        .await;
        match listed {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.io("listing objects", e)),
            Err(e) => Err(StoreError::Io {
                kind: "directory",
                message: format!("listing objects: {e}"),
            }),
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Objects `<prefix><sha1>` in an S3-compatible bucket (AWS, MinIO, Ceph, R2, ...), through
/// the `object_store` crate's S3 client.
#[derive(Debug)]
pub struct S3Store {
    store: object_store::aws::AmazonS3,
    prefix: String,
    bucket: String,
}

impl S3Store {
    /// Builds the client; nothing is sent yet (a start does not wait for the bucket).
    pub fn open(s: &S3Settings) -> Result<S3Store, StoreError> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key)
            .with_virtual_hosted_style_request(!s.path_style)
            .with_http_connector(ureq_http::UreqConnector)
            // A store that is down must not hold up a batch of events for minutes: a few
            // quick retries, then the frame is left unmapped (the event page retries).
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &s.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| StoreError::Io {
            kind: "s3",
            message: e.to_string(),
        })?;
        Ok(S3Store {
            store,
            prefix: s.prefix.clone(),
            bucket: s.bucket.clone(),
        })
    }

    /// The object key of a blob.
    pub fn key_of(&self, sha1: &str) -> String {
        format!("{}{}", self.prefix, sha1.to_ascii_lowercase())
    }

    fn path(&self, sha1: &str) -> object_store::path::Path {
        object_store::path::Path::from(self.key_of(sha1))
    }

    fn err(&self, what: &str, e: object_store::Error) -> StoreError {
        StoreError::Io {
            kind: "s3",
            message: format!("{what} in bucket {}: {e}", self.bucket),
        }
    }
}

#[async_trait::async_trait]
impl ArtifactStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, sha1: &str, data: &[u8]) -> Result<(), StoreError> {
        if !is_sha1(sha1) {
            return Err(StoreError::NotFound(sha1.to_owned()));
        }
        self.store
            .put(&self.path(sha1), Bytes::copy_from_slice(data).into())
            .await
            .map_err(|e| self.err(&format!("writing {sha1}"), e))?;
        Ok(())
    }

    async fn get(&self, sha1: &str) -> Result<Vec<u8>, StoreError> {
        if !is_sha1(sha1) {
            return Err(StoreError::NotFound(sha1.to_owned()));
        }
        let result = match self.store.get(&self.path(sha1)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NotFound(self.key_of(sha1)));
            }
            Err(e) => return Err(self.err(&format!("reading {sha1}"), e)),
        };
        let data = result
            .bytes()
            .await
            .map_err(|e| self.err(&format!("reading {sha1}"), e))?;
        verified(sha1, data.to_vec())
    }

    async fn delete(&self, sha1: &str) -> Result<(), StoreError> {
        if !is_sha1(sha1) {
            return Ok(());
        }
        match self.store.delete(&self.path(sha1)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(&format!("deleting {sha1}"), e)),
        }
    }

    async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let prefix = self.prefix.trim_end_matches('/');
        let prefix = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
        let mut stream = self.store.list(prefix.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.err("listing objects", e))?;
            let name = meta.location.filename().unwrap_or_default();
            if is_sha1(name) && meta.location.as_ref() == self.key_of(name) {
                out.push(StoredObject {
                    sha1: name.to_ascii_lowercase(),
                    modified_ms: meta.last_modified.timestamp_millis(),
                });
            }
        }
        Ok(out)
    }
}

/// `object_store`'s HTTP requests over ureq, the client the binary already has (one TLS
/// stack, rustls with ring; no reqwest or hyper client). ureq blocks, so each request runs
/// on a blocking thread.
mod ureq_http {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use object_store::client::{
        ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
        HttpResponse, HttpResponseBody, HttpService,
    };
    use std::time::Duration;

    /// The largest response read (a blob is at most a bundle: 256 MiB).
    const MAX_RESPONSE: u64 = 300 * 1024 * 1024;

    #[derive(Debug, Default)]
    pub struct UreqConnector;

    impl HttpConnector for UreqConnector {
        fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(60)))
                .timeout_connect(Some(Duration::from_secs(5)))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent();
            Ok(HttpClient::new(UreqService { agent }))
        }
    }

    #[derive(Debug)]
    struct UreqService {
        agent: ureq::Agent,
    }

    fn failed(kind: HttpErrorKind, e: impl std::error::Error + Send + Sync + 'static) -> HttpError {
        HttpError::new(kind, e)
    }

    #[async_trait::async_trait]
    impl HttpService for UreqService {
        async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| failed(HttpErrorKind::Request, e))?
                .to_bytes();
            let agent = self.agent.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let with_body = !body.is_empty()
                    || matches!(
                        parts.method,
                        ureq::http::Method::PUT | ureq::http::Method::POST
                    );
                let mut response = if with_body {
                    agent.run(ureq::http::Request::from_parts(parts, body.to_vec()))
                } else {
                    agent.run(ureq::http::Request::from_parts(parts, ()))
                }
                .map_err(classify)?;
                let data = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_RESPONSE)
                    .read_to_vec()
                    .map_err(classify)?;
                let (parts, _) = response.into_parts();
                Ok::<_, HttpError>((parts, data))
            })
            .await
            .map_err(|e| failed(HttpErrorKind::Unknown, e))??;
            let (parts, data) = answer;
            Ok(HttpResponse::from_parts(
                parts,
                HttpResponseBody::from(Bytes::from(data)),
            ))
        }
    }

    /// Connection problems and timeouts are retried by object_store; the rest is not.
    fn classify(e: ureq::Error) -> HttpError {
        let kind = match &e {
            ureq::Error::Timeout(_) => HttpErrorKind::Timeout,
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => HttpErrorKind::Connect,
            ureq::Error::Io(_) => HttpErrorKind::Interrupted,
            _ => HttpErrorKind::Unknown,
        };
        failed(kind, e)
    }
}

/// The store the configuration asks for. A directory is created (and probed for writing)
/// now; a bucket is checked on first use.
pub fn from_config(storage: &ArtifactStorage) -> Result<Arc<dyn ArtifactStore>, StoreError> {
    Ok(match storage {
        ArtifactStorage::Database => Arc::new(DatabaseStore),
        ArtifactStorage::Directory(dir) => Arc::new(DirectoryStore::open(dir)?),
        ArtifactStorage::S3(s) => Arc::new(S3Store::open(s)?),
    })
}

fn slot() -> &'static RwLock<Option<Arc<dyn ArtifactStore>>> {
    static STORE: RwLock<Option<Arc<dyn ArtifactStore>>> = RwLock::new(None);
    &STORE
}

/// Makes `store` the process's artifact store (done once at start).
pub fn install(store: Arc<dyn ArtifactStore>) {
    *slot().write().unwrap_or_else(|p| p.into_inner()) = Some(store);
}

/// The process's artifact store; the database until [`install`] chose another.
pub fn current() -> Arc<dyn ArtifactStore> {
    slot()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| Arc::new(DatabaseStore))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn directory_store_round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("faultline-store-{}", uuid::Uuid::new_v4()));
        let store = DirectoryStore::open(&dir).unwrap();
        let data = b"console.log(1)";
        let sha1 = hex::encode(sha1::Sha1::digest(data));
        store.put(&sha1, data).await.unwrap();
        // Idempotent: the same content again.
        store.put(&sha1, data).await.unwrap();
        assert_eq!(store.get(&sha1).await.unwrap(), data);
        assert!(store.path_of(&sha1).is_file());
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].sha1, sha1);
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

        std::fs::write(store.path_of(&sha1), b"tampered").unwrap();
        assert!(matches!(
            store.get(&sha1).await,
            Err(StoreError::Corrupt { .. })
        ));
        store.delete(&sha1).await.unwrap();
        store.delete(&sha1).await.unwrap();
        assert!(matches!(
            store.get(&sha1).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.get("../../etc/passwd").await,
            Err(StoreError::NotFound(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
