//! Settings, read once at start from the environment (and an optional `faultline.toml`),
//! validated into a [`Config`] that can only hold usable values. Every problem becomes a
//! [`ConfigError`] whose message is one line saying what to fix.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::client_ip::TrustedProxies;

/// Validated settings of a Faultline process. Its `Debug` hides every secret.
#[derive(Clone)]
pub struct Config {
    /// Where the HTTP server listens (`FAULTLINE_BIND`).
    pub bind: SocketAddr,
    /// Public base URL used in DSNs, links and emails (`FAULTLINE_URL`), without trailing slash.
    pub public_url: Url,
    /// Where the SQLite database, the queue and the secret key live (`FAULTLINE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...` (`DATABASE_URL`).
    pub database_url: String,
    /// Redis for the queue of scaled deployments (`REDIS_URL`); `None` = embedded SQLite queue.
    pub redis_url: Option<String>,
    /// Key for signing session cookies (`FAULTLINE_SECRET_KEY`, else generated into the data dir).
    pub secret_key: String,
    /// Jaeger UI base for trace links (`JAEGER_URL`).
    pub jaeger_url: String,
    pub limits: Limits,
    /// Outgoing mail (`FAULTLINE_SMTP_URL`); `None` = alerts are recorded, not sent.
    pub smtp_url: Option<String>,
    /// Sender address of alert emails (`FAULTLINE_EMAIL_FROM`).
    pub email_from: String,
    /// Throttling and retry timings of email alerts.
    pub alerts: AlertSettings,
    /// `text` (default) or `json` (`FAULTLINE_LOG_FORMAT`).
    pub log_json: bool,
    /// Export of Faultline's own traces over OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`); `None` = off.
    pub otel: Option<OtelConfig>,
    /// Bearer token `GET /metrics` requires (`FAULTLINE_METRICS_TOKEN`); `None` = open.
    pub metrics_token: Option<String>,
    /// Where a `faultline worker` serves `/metrics` and `/healthz` (`FAULTLINE_METRICS_BIND`);
    /// web processes serve them on `FAULTLINE_BIND`.
    pub metrics_bind: Option<SocketAddr>,
    /// Where uploaded files' bytes live (`FAULTLINE_ARTIFACT_DIR`, `FAULTLINE_ARTIFACT_S3_*`).
    pub artifact_storage: ArtifactStorage,
    /// Blob garbage collection: how old an unreferenced blob (or an object without a row)
    /// must be to go (`FAULTLINE_ARTIFACT_GC_GRACE_SECS`, an hour: chunks wait between
    /// upload and assembly), and how often the collector runs
    /// (`FAULTLINE_ARTIFACT_GC_INTERVAL_SECS`, 10 minutes).
    pub artifact_gc: ArtifactGc,
    /// Proxies whose `X-Forwarded-For` names the client (`FAULTLINE_TRUSTED_PROXIES`, CIDR
    /// list); empty = the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
}

/// Timings of the blob collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactGc {
    pub grace: std::time::Duration,
    pub interval: std::time::Duration,
}

impl Default for ArtifactGc {
    fn default() -> Self {
        ArtifactGc {
            grace: std::time::Duration::from_secs(60 * 60),
            interval: std::time::Duration::from_secs(10 * 60),
        }
    }
}

/// Where the bytes of uploaded files (source maps, bundles, chunks) are kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ArtifactStorage {
    /// In the database's `blobs` table (the embedded default).
    #[default]
    Database,
    /// Files in this directory (`FAULTLINE_ARTIFACT_DIR`).
    Directory(PathBuf),
    /// Objects in an S3-compatible bucket (`FAULTLINE_ARTIFACT_S3_BUCKET` and friends).
    S3(S3Settings),
}

/// An S3-compatible bucket.
#[derive(Clone, PartialEq)]
pub struct S3Settings {
    /// `FAULTLINE_ARTIFACT_S3_ENDPOINT`: `http(s)://HOST[:PORT]` of MinIO, Ceph, R2, ...;
    /// `None` = AWS itself.
    pub endpoint: Option<String>,
    /// `FAULTLINE_ARTIFACT_S3_BUCKET`.
    pub bucket: String,
    /// `FAULTLINE_ARTIFACT_S3_REGION`, default `us-east-1`.
    pub region: String,
    /// `FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `FAULTLINE_ARTIFACT_S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `FAULTLINE_ARTIFACT_S3_PATH_STYLE`: `https://host/bucket/key` instead of
    /// `https://bucket.host/key`; default on when an endpoint is set (what self-hosted
    /// servers expect), off for AWS.
    pub path_style: bool,
    /// `FAULTLINE_ARTIFACT_S3_PREFIX`: put before every object key (`faultline/`), default none.
    pub prefix: String,
}

impl std::fmt::Debug for S3Settings {
    // The secret stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Where and how Faultline sends its own traces (the standard `OTEL_*` variables).
#[derive(Clone, PartialEq)]
pub struct OtelConfig {
    /// Full URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
    pub traces_endpoint: String,
    /// `OTEL_SERVICE_NAME`, default `faultline`.
    pub service_name: String,
    /// Share of new traces recorded (`OTEL_TRACES_SAMPLER_ARG`, 0..=1, default 1); a trace
    /// continued from an incoming `traceparent` follows the caller's decision.
    pub sample_ratio: f64,
}

impl std::fmt::Debug for OtelConfig {
    // A collector URL may carry credentials (`https://user:key@collector`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelConfig")
            .field("traces_endpoint", &redact_url(&self.traces_endpoint))
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .finish()
    }
}

/// Ingest limits and backpressure bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// One event item (decompressed), and a `/store/` body (`FAULTLINE_MAX_EVENT_SIZE`).
    pub max_event_size: usize,
    /// A request body as sent, compressed (`FAULTLINE_MAX_ENVELOPE_SIZE`).
    pub max_envelope_size: usize,
    /// A request body after decompression (`FAULTLINE_MAX_ENVELOPE_DECOMPRESSED`).
    pub max_envelope_decompressed: usize,
    /// Queue depth above which ingest answers 429 (`FAULTLINE_MAX_QUEUE_DEPTH`).
    pub max_queue_depth: u64,
    /// Free disk below which ingest answers 429 (`FAULTLINE_MIN_FREE_DISK_MB`), in bytes.
    pub min_free_disk: u64,
    /// Bytes the worker holds for jobs between fetch and commit (`FAULTLINE_WORKER_MEMORY_MB`).
    pub worker_memory: usize,
    /// Bytes of request bodies ingest holds at once while reading, decoding and queueing
    /// them; past that it answers 429 (`FAULTLINE_INGEST_MEMORY_MB`).
    pub ingest_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_size: 1024 * 1024,
            max_envelope_size: 20 * 1024 * 1024,
            max_envelope_decompressed: 100 * 1024 * 1024,
            max_queue_depth: 1_000_000,
            min_free_disk: 512 * 1024 * 1024,
            worker_memory: 32 * 1024 * 1024,
            ingest_memory: 32 * 1024 * 1024,
        }
    }
}

/// Throttling and delivery timings of email alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// At most one email per issue within this many ms (`FAULTLINE_ALERT_COOLDOWN_SECS`).
    pub cooldown_ms: i64,
    /// Alerts mailed per project within `cap_window_ms` (`FAULTLINE_ALERT_HOURLY_CAP`).
    pub hourly_cap: i64,
    /// The cap's window, and how long after the first suppressed alert the digest goes
    /// out (`FAULTLINE_ALERT_CAP_WINDOW_SECS`, an hour; shorter in tests).
    pub cap_window_ms: i64,
    /// Wait before the first retry of a failed send; doubles per attempt up to an hour
    /// (`FAULTLINE_SMTP_RETRY_SECS`).
    pub retry_base_ms: i64,
    /// Attempts per email before it is given up (`FAULTLINE_SMTP_MAX_ATTEMPTS`).
    pub max_attempts: i64,
    /// Limit of one SMTP conversation (`FAULTLINE_SMTP_TIMEOUT_SECS`).
    pub smtp_timeout_ms: i64,
    /// How often a worker looks for alerts to deliver (`FAULTLINE_ALERT_POLL_MS`).
    pub poll_ms: i64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            cooldown_ms: 30 * 60 * 1000,
            hourly_cap: 60,
            cap_window_ms: 60 * 60 * 1000,
            retry_base_ms: 30 * 1000,
            max_attempts: 10,
            smtp_timeout_ms: 15 * 1000,
            poll_ms: 1000,
        }
    }
}

/// A setting that cannot be used; the message says which and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "data directory {path} is not writable: {reason} (set FAULTLINE_DATA_DIR to a writable directory)"
    )]
    DataDir { path: String, reason: String },
}

/// The optional `faultline.toml`: same names as the environment variables, lower-cased,
/// without the `FAULTLINE_` prefix (`bind`, `url`, `data_dir`, `database_url`, ...).
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(flatten)]
    values: HashMap<String, toml::Value>,
}

/// Where settings come from: environment variables override the file.
struct Source {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl Source {
    fn get(&self, env_name: &str) -> Option<String> {
        if let Some(v) = self.env.get(env_name) {
            return Some(v.clone()).filter(|v| !v.is_empty());
        }
        let key = env_name
            .strip_prefix("FAULTLINE_")
            .unwrap_or(env_name)
            .to_ascii_lowercase();
        self.file.get(&key).cloned().filter(|v| !v.is_empty())
    }

    fn number<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("{v:?} is not a whole number"),
            }),
        }
    }
}

impl Config {
    /// Reads the process environment and `faultline.toml` (or `$FAULTLINE_CONFIG`).
    pub fn from_env() -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_map(env)
    }

    /// Builds a config from explicit variables (tests use this).
    pub fn from_map(env: HashMap<String, String>) -> Result<Config, ConfigError> {
        let file = match env.get("FAULTLINE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => read_file(Path::new(path), true)?,
            None => read_file(Path::new("faultline.toml"), false)?,
        };
        let src = Source { env, file };

        let bind_text = src
            .get("FAULTLINE_BIND")
            .unwrap_or_else(|| "127.0.0.1:8000".into());
        let bind = bind_text
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError::Invalid {
                name: "FAULTLINE_BIND",
                reason: format!("{bind_text:?} is not an address like 127.0.0.1:8000"),
            })?;

        let public_url = match src.get("FAULTLINE_URL") {
            Some(u) => parse_public_url(&u)?,
            None => {
                // A wildcard bind is not reachable as such; advertise localhost instead.
                let host = if bind.ip().is_unspecified() {
                    "localhost".to_string()
                } else if bind.is_ipv6() {
                    format!("[{}]", bind.ip())
                } else {
                    bind.ip().to_string()
                };
                parse_public_url(&format!("http://{host}:{}", bind.port()))?
            }
        };

        let data_dir = PathBuf::from(
            src.get("FAULTLINE_DATA_DIR")
                .unwrap_or_else(|| "./data".into()),
        );

        let database_url = match src.get("DATABASE_URL") {
            Some(u) => {
                let parsed = Url::parse(&u).map_err(|e| ConfigError::Invalid {
                    name: "DATABASE_URL",
                    reason: format!("{e} (expected sqlite://PATH or postgres://USER@HOST/DB)"),
                })?;
                match parsed.scheme() {
                    "sqlite" | "postgres" | "postgresql" => u,
                    other => {
                        return Err(ConfigError::Invalid {
                            name: "DATABASE_URL",
                            reason: format!(
                                "scheme {other:?} is not supported (use sqlite:// or postgres://)"
                            ),
                        });
                    }
                }
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("faultline.db").display()
            ),
        };

        let redis_url = match src.get("REDIS_URL") {
            Some(u) => {
                let parsed = Url::parse(&u).map_err(|e| ConfigError::Invalid {
                    name: "REDIS_URL",
                    reason: format!("{e} (expected redis://HOST:PORT)"),
                })?;
                if !matches!(parsed.scheme(), "redis" | "rediss") {
                    return Err(ConfigError::Invalid {
                        name: "REDIS_URL",
                        reason: format!(
                            "scheme {:?} is not redis:// or rediss://",
                            parsed.scheme()
                        ),
                    });
                }
                Some(u)
            }
            None => None,
        };

        let smtp_url = match src.get("FAULTLINE_SMTP_URL") {
            Some(u) => Some(check_smtp_url(&u)?),
            None => None,
        };
        let email_from = src
            .get("FAULTLINE_EMAIL_FROM")
            .unwrap_or_else(|| "faultline@localhost".into());
        check_email_from(&email_from)?;

        let ad = AlertSettings::default();
        let secs = |name: &'static str, default_ms: i64| -> Result<i64, ConfigError> {
            Ok(src.number::<u32>(name, (default_ms / 1000) as u32)? as i64 * 1000)
        };
        let alerts = AlertSettings {
            cooldown_ms: secs("FAULTLINE_ALERT_COOLDOWN_SECS", ad.cooldown_ms)?,
            hourly_cap: src.number::<u32>("FAULTLINE_ALERT_HOURLY_CAP", ad.hourly_cap as u32)?
                as i64,
            cap_window_ms: secs("FAULTLINE_ALERT_CAP_WINDOW_SECS", ad.cap_window_ms)?.max(1000),
            retry_base_ms: secs("FAULTLINE_SMTP_RETRY_SECS", ad.retry_base_ms)?.max(1000),
            max_attempts: src
                .number::<u32>("FAULTLINE_SMTP_MAX_ATTEMPTS", ad.max_attempts as u32)?
                .max(1) as i64,
            smtp_timeout_ms: secs("FAULTLINE_SMTP_TIMEOUT_SECS", ad.smtp_timeout_ms)?.max(1000),
            poll_ms: (src.number::<u32>("FAULTLINE_ALERT_POLL_MS", ad.poll_ms as u32)? as i64)
                .max(50),
        };

        let defaults = Limits::default();
        let limits = Limits {
            max_event_size: src.number("FAULTLINE_MAX_EVENT_SIZE", defaults.max_event_size)?,
            max_envelope_size: src
                .number("FAULTLINE_MAX_ENVELOPE_SIZE", defaults.max_envelope_size)?,
            max_envelope_decompressed: src.number(
                "FAULTLINE_MAX_ENVELOPE_DECOMPRESSED",
                defaults.max_envelope_decompressed,
            )?,
            max_queue_depth: src.number("FAULTLINE_MAX_QUEUE_DEPTH", defaults.max_queue_depth)?,
            min_free_disk: src.number::<u64>(
                "FAULTLINE_MIN_FREE_DISK_MB",
                defaults.min_free_disk / (1024 * 1024),
            )? * 1024
                * 1024,
            worker_memory: src
                .number::<usize>(
                    "FAULTLINE_WORKER_MEMORY_MB",
                    defaults.worker_memory / (1024 * 1024),
                )?
                .clamp(4, 4095)
                * 1024
                * 1024,
            ingest_memory: src
                .number::<usize>(
                    "FAULTLINE_INGEST_MEMORY_MB",
                    defaults.ingest_memory / (1024 * 1024),
                )?
                .clamp(2, 4095)
                * 1024
                * 1024,
        };

        let log_json = match src.get("FAULTLINE_LOG_FORMAT").as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "FAULTLINE_LOG_FORMAT",
                    reason: format!("{other:?} is neither text nor json"),
                });
            }
        };

        let otel = otel_config(&src)?;
        let artifact_storage = artifact_storage(&src)?;
        let gc = ArtifactGc::default();
        let artifact_gc = ArtifactGc {
            grace: std::time::Duration::from_secs(
                src.number("FAULTLINE_ARTIFACT_GC_GRACE_SECS", gc.grace.as_secs())?,
            ),
            interval: std::time::Duration::from_secs(
                src.number::<u64>("FAULTLINE_ARTIFACT_GC_INTERVAL_SECS", gc.interval.as_secs())?
                    .max(1),
            ),
        };
        let metrics_bind = match src.get("FAULTLINE_METRICS_BIND") {
            None => None,
            Some(text) => Some(
                text.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "FAULTLINE_METRICS_BIND",
                        reason: format!("{text:?} is not an address like 0.0.0.0:9000"),
                    })?,
            ),
        };

        let trusted_proxies = match src.get("FAULTLINE_TRUSTED_PROXIES") {
            None => TrustedProxies::default(),
            Some(text) => TrustedProxies::parse(&text).map_err(|e| ConfigError::Invalid {
                name: "FAULTLINE_TRUSTED_PROXIES",
                reason: format!(
                    "{e} (expected addresses or networks like 127.0.0.1, 10.0.0.0/8, fd00::/8)"
                ),
            })?,
        };
        let secret_key = src.get("FAULTLINE_SECRET_KEY").unwrap_or_default();
        // Sessions, unsubscribe links and the setup token are HMACs of this key; a short
        // one can be guessed. (Empty means "generate one into the data directory".)
        if !secret_key.is_empty() && secret_key.len() < MIN_SECRET_KEY {
            return Err(ConfigError::Invalid {
                name: "FAULTLINE_SECRET_KEY",
                reason: format!(
                    "it has {} bytes, at least {MIN_SECRET_KEY} are needed (use `openssl rand -hex 32`)",
                    secret_key.len()
                ),
            });
        }

        Ok(Config {
            bind,
            public_url,
            data_dir,
            database_url,
            redis_url,
            secret_key,
            jaeger_url: src
                .get("JAEGER_URL")
                .unwrap_or_else(|| "http://localhost:16686".into())
                .trim_end_matches('/')
                .to_string(),
            limits,
            smtp_url,
            email_from,
            alerts,
            log_json,
            otel,
            metrics_token: src.get("FAULTLINE_METRICS_TOKEN"),
            metrics_bind,
            artifact_storage,
            artifact_gc,
            trusted_proxies,
        })
    }

    /// Creates the data directory and makes sure it is writable; loads or creates the
    /// secret key there when none was configured.
    pub fn prepare_data_dir(&mut self) -> Result<(), ConfigError> {
        let dir_err = |e: std::io::Error| ConfigError::DataDir {
            path: self.data_dir.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&self.data_dir).map_err(dir_err)?;
        let probe = self.data_dir.join(".write-test");
        std::fs::write(&probe, b"ok").map_err(dir_err)?;
        let _ = std::fs::remove_file(&probe);
        if self.secret_key.is_empty() {
            self.secret_key =
                load_or_create_key(&self.data_dir.join("secret.key")).map_err(dir_err)?;
        }
        Ok(())
    }

    /// True when the main database is SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Path of the embedded queue's own SQLite file.
    pub fn queue_db_path(&self) -> PathBuf {
        self.data_dir.join("queue.db")
    }

    /// The DSN of a project key, as SDKs want it.
    pub fn dsn(&self, public_key: &str, project_id: i64) -> String {
        let mut url = self.public_url.clone();
        let _ = url.set_username(public_key);
        let base = url.as_str().trim_end_matches('/').to_string();
        format!("{base}/{project_id}")
    }
}

/// Shortest `FAULTLINE_SECRET_KEY` accepted, in bytes.
pub const MIN_SECRET_KEY: usize = 32;

/// Reads the data directory's secret key, or creates it. Processes starting together on
/// one data directory agree on one key: each writes a complete candidate to a private
/// temporary file (mode 0600) and hard-links it to `secret.key`, which fails for all but
/// the first; the others read the winner's key. Nobody ever sees a half-written key.
fn load_or_create_key(path: &Path) -> std::io::Result<String> {
    if let Some(key) = read_key(path)? {
        return Ok(key);
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    write_private(&tmp, key.as_bytes())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_key(path)? {
            Some(winner) => Ok(winner),
            // A damaged key (an empty file left by a crash of an older version): replace
            // it in one step, and use whatever is there afterwards.
            None => {
                let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
                write_private(&tmp, key.as_bytes())?;
                std::fs::rename(&tmp, path)?;
                read_key(path)?.ok_or_else(|| {
                    std::io::Error::other(format!("{} holds no usable key", path.display()))
                })
            }
        },
        Err(e) => Err(e),
    }
}

/// The key in `path`, if it holds one; tightens a key file others could read to 0600.
fn read_key(path: &Path) -> std::io::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let key = text.trim();
    if key.len() < MIN_SECRET_KEY {
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(Some(key.to_string()))
}

/// Creates `path` (which must not exist) readable by its owner only, with `contents`.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// `url` with its password (and a `password=` query parameter) replaced by `***`, for
/// `Debug` and messages.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = Url::parse(url) else {
        // Config only holds URLs it parsed; anything else is not shown at all.
        return "<unparsable URL>".into();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query_pairs().any(|(k, _)| is_secret_param(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|s| name.contains(s))
}

impl std::fmt::Debug for Config {
    // Settings are logged and shown in errors; keys, tokens and passwords in URLs are not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<redacted>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("public_url", &redact_url(self.public_url.as_str()))
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("secret_key", &hidden(!self.secret_key.is_empty()))
            .field("jaeger_url", &redact_url(&self.jaeger_url))
            .field("limits", &self.limits)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("email_from", &self.email_from)
            .field("alerts", &self.alerts)
            .field("log_json", &self.log_json)
            .field("otel", &self.otel)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| hidden(true)),
            )
            .field("metrics_bind", &self.metrics_bind)
            .field("artifact_storage", &self.artifact_storage)
            .field("artifact_gc", &self.artifact_gc)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// `smtp://[user:password@]host[:port][?tls=required|opportunistic]` (STARTTLS) or
/// `smtps://...` (TLS from the first byte), the forms lettre's `from_url` reads.
fn check_smtp_url(u: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "FAULTLINE_SMTP_URL",
        reason,
    };
    let parsed = Url::parse(u).map_err(|e| {
        invalid(format!(
            "{e} (expected smtp://HOST:PORT, smtp://USER:PASSWORD@HOST:587?tls=required or smtps://HOST:465)"
        ))
    })?;
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err(invalid(format!(
            "scheme {:?} is not smtp:// or smtps://",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL names no host".into()));
    }
    if !parsed.username().is_empty() && parsed.password().is_none() {
        return Err(invalid(
            "a user needs a password (smtp://USER:PASSWORD@HOST)".into(),
        ));
    }
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("tls", "required" | "opportunistic") => {}
            ("tls", other) => {
                return Err(invalid(format!(
                    "tls={other:?}: use tls=required or tls=opportunistic"
                )));
            }
            ("ehlo_name", _) => {}
            (other, _) => {
                return Err(invalid(format!(
                    "unknown parameter {other:?} (known: tls, ehlo_name)"
                )));
            }
        }
    }
    Ok(u.to_string())
}

/// An address like `alerts@example.com` or `Faultline <alerts@example.com>`.
fn check_email_from(from: &str) -> Result<(), ConfigError> {
    let addr = match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    };
    let ok = !from.chars().any(char::is_control)
        && addr
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !addr.contains(' '));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name: "FAULTLINE_EMAIL_FROM",
            reason: format!("{from:?} is not an address like alerts@example.com"),
        })
    }
}

/// `FAULTLINE_ARTIFACT_DIR` or the `FAULTLINE_ARTIFACT_S3_*` settings (not both); neither
/// keeps uploads in the database.
fn artifact_storage(src: &Source) -> Result<ArtifactStorage, ConfigError> {
    const S3_NAMES: [&str; 7] = [
        "FAULTLINE_ARTIFACT_S3_BUCKET",
        "FAULTLINE_ARTIFACT_S3_ENDPOINT",
        "FAULTLINE_ARTIFACT_S3_REGION",
        "FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID",
        "FAULTLINE_ARTIFACT_S3_SECRET_ACCESS_KEY",
        "FAULTLINE_ARTIFACT_S3_PATH_STYLE",
        "FAULTLINE_ARTIFACT_S3_PREFIX",
    ];
    let any_s3 = S3_NAMES.iter().find(|n| src.get(n).is_some());
    let dir = src.get("FAULTLINE_ARTIFACT_DIR");
    match (dir, any_s3) {
        (Some(_), Some(s3)) => Err(ConfigError::Invalid {
            name: "FAULTLINE_ARTIFACT_DIR",
            reason: format!(
                "is set together with {s3}: store uploads in a directory or in a bucket, not both"
            ),
        }),
        (Some(dir), None) => Ok(ArtifactStorage::Directory(PathBuf::from(dir))),
        (None, None) => Ok(ArtifactStorage::Database),
        (None, Some(_)) => {
            let required = |name: &'static str| {
                src.get(name).ok_or_else(|| ConfigError::Invalid {
                    name,
                    reason: "is required when artifacts are stored in S3 \
                             (FAULTLINE_ARTIFACT_S3_* settings are set)"
                        .into(),
                })
            };
            let bucket = required("FAULTLINE_ARTIFACT_S3_BUCKET")?;
            // S3's own rules, loosely: what a path-style or virtual-host URL can carry.
            if bucket.len() < 3
                || bucket.len() > 63
                || !bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                return Err(ConfigError::Invalid {
                    name: "FAULTLINE_ARTIFACT_S3_BUCKET",
                    reason: format!(
                        "{bucket:?} is not a bucket name (3-63 lowercase letters, digits, '-', '.')"
                    ),
                });
            }
            let endpoint = match src.get("FAULTLINE_ARTIFACT_S3_ENDPOINT") {
                None => None,
                Some(raw) => {
                    let name = "FAULTLINE_ARTIFACT_S3_ENDPOINT";
                    let url = Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid {
                        name,
                        reason: format!("{raw:?}: {e} (expected http://HOST:9000)"),
                    })?;
                    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                        return Err(ConfigError::Invalid {
                            name,
                            reason: format!(
                                "{raw:?} must be an http:// or https:// URL with a host"
                            ),
                        });
                    }
                    if url.path() != "/" || url.query().is_some() {
                        return Err(ConfigError::Invalid {
                            name,
                            reason: format!(
                                "{raw:?} must be the server's address only, without a path (the bucket is FAULTLINE_ARTIFACT_S3_BUCKET)"
                            ),
                        });
                    }
                    Some(url.as_str().trim_end_matches('/').to_string())
                }
            };
            let path_style = match src.get("FAULTLINE_ARTIFACT_S3_PATH_STYLE") {
                None => endpoint.is_some(),
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: "FAULTLINE_ARTIFACT_S3_PATH_STYLE",
                            reason: format!("{v:?} is neither true nor false"),
                        });
                    }
                },
            };
            let mut prefix = src
                .get("FAULTLINE_ARTIFACT_S3_PREFIX")
                .unwrap_or_default()
                .trim_matches('/')
                .to_string();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            Ok(ArtifactStorage::S3(S3Settings {
                endpoint,
                bucket,
                region: src
                    .get("FAULTLINE_ARTIFACT_S3_REGION")
                    .unwrap_or_else(|| "us-east-1".into()),
                access_key_id: required("FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID")?,
                secret_access_key: required("FAULTLINE_ARTIFACT_S3_SECRET_ACCESS_KEY")?,
                path_style,
                prefix,
            }))
        }
    }
}

/// The standard OpenTelemetry exporter variables; tracing is on when an endpoint is set.
fn otel_config(src: &Source) -> Result<Option<OtelConfig>, ConfigError> {
    if src
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(None);
    }
    let endpoint = |name: &'static str, suffix: &str| -> Result<Option<String>, ConfigError> {
        let Some(raw) = src.get(name) else {
            return Ok(None);
        };
        let url = Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid {
            name,
            reason: format!("{raw:?}: {e} (expected http://HOST:4318)"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{raw:?} must be an http:// or https:// URL with a host"),
            });
        }
        Ok(Some(format!(
            "{}{suffix}",
            url.as_str().trim_end_matches('/')
        )))
    };
    let traces_endpoint = match endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")? {
        Some(e) => e,
        None => match endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces")? {
            Some(e) => e,
            None => return Ok(None),
        },
    };
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = src.get(name).filter(|p| p != "http/protobuf") {
            return Err(ConfigError::Invalid {
                name,
                reason: format!(
                    "{p:?} is not supported: Faultline exports OTLP as http/protobuf (collector port 4318)"
                ),
            });
        }
    }
    let sample_ratio = match src.get("OTEL_TRACES_SAMPLER_ARG") {
        None => 1.0,
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| ConfigError::Invalid {
                name: "OTEL_TRACES_SAMPLER_ARG",
                reason: format!("{v:?} is not a ratio between 0 and 1"),
            })?,
    };
    Ok(Some(OtelConfig {
        traces_endpoint,
        service_name: src
            .get("OTEL_SERVICE_NAME")
            .unwrap_or_else(|| "faultline".into()),
        sample_ratio,
    }))
}

fn parse_public_url(u: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(u).map_err(|e| ConfigError::Invalid {
        name: "FAULTLINE_URL",
        reason: format!("{u:?}: {e} (expected http://HOST:PORT)"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::Invalid {
            name: "FAULTLINE_URL",
            reason: format!("{u:?} must be an http:// or https:// URL with a host"),
        });
    }
    Ok(url)
}

fn read_file(path: &Path, required: bool) -> Result<HashMap<String, String>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HashMap::new());
        }
        Err(e) => {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
    })?;
    Ok(parsed
        .values
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Never pick up a developer's faultline.toml in tests.
        m.entry("FAULTLINE_CONFIG".into())
            .or_insert_with(|| "/nonexistent/faultline.toml".into());
        m
    }

    #[test]
    fn defaults_derive_url_and_sqlite_path() {
        let mut e = env(&[]);
        e.remove("FAULTLINE_CONFIG");
        let c = Config::from_map(e).expect("defaults are valid");
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8000/");
        assert!(c.database_url.starts_with("sqlite://./data/faultline.db"));
        assert!(c.is_sqlite());
        assert_eq!(
            c.dsn("0123456789abcdef0123456789abcdef", 7),
            "http://0123456789abcdef0123456789abcdef@127.0.0.1:8000/7"
        );
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let err = Config::from_map(env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/faultline.toml"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("FAULTLINE_BIND", "not an address", "FAULTLINE_BIND"),
            ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
            ("DATABASE_URL", "::::", "DATABASE_URL"),
            ("FAULTLINE_URL", "ftp://x", "FAULTLINE_URL"),
            ("REDIS_URL", "http://x", "REDIS_URL"),
            (
                "FAULTLINE_MAX_EVENT_SIZE",
                "big",
                "FAULTLINE_MAX_EVENT_SIZE",
            ),
            ("FAULTLINE_LOG_FORMAT", "xml", "FAULTLINE_LOG_FORMAT"),
            ("FAULTLINE_SMTP_URL", "http://mail", "FAULTLINE_SMTP_URL"),
            ("FAULTLINE_SMTP_URL", "smtp://", "FAULTLINE_SMTP_URL"),
            (
                "FAULTLINE_SMTP_URL",
                "smtp://h?tls=maybe",
                "FAULTLINE_SMTP_URL",
            ),
            ("FAULTLINE_SMTP_URL", "smtp://user@h", "FAULTLINE_SMTP_URL"),
            ("FAULTLINE_EMAIL_FROM", "nobody", "FAULTLINE_EMAIL_FROM"),
            (
                "FAULTLINE_EMAIL_FROM",
                "a@b\r\nBcc: x@y",
                "FAULTLINE_EMAIL_FROM",
            ),
            (
                "FAULTLINE_ALERT_COOLDOWN_SECS",
                "-1",
                "FAULTLINE_ALERT_COOLDOWN_SECS",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "collector:4318",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            ("FAULTLINE_METRICS_BIND", "nine", "FAULTLINE_METRICS_BIND"),
        ];
        for (k, v, name) in cases {
            let dir = std::env::temp_dir();
            let path = dir.join(format!("faultline-test-{}.toml", std::process::id()));
            std::fs::write(&path, "").expect("temp file");
            let e = env(&[
                (k, v),
                ("FAULTLINE_CONFIG", path.to_str().unwrap_or_default()),
            ]);
            let err = Config::from_map(e).expect_err(k);
            assert!(err.to_string().starts_with(name), "{k}={v}: {err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn smtp_url_forms_are_accepted() {
        for u in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pa%40ss@mail.example.com:587?tls=required",
            "smtp://mail.example.com?tls=opportunistic",
            "smtps://user:secret@mail.example.com:465",
        ] {
            let c = Config::from_map(env(&[("FAULTLINE_CONFIG", ""), ("FAULTLINE_SMTP_URL", u)]))
                .expect(u);
            assert_eq!(c.smtp_url.as_deref(), Some(u));
        }
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_ALERT_COOLDOWN_SECS", "0"),
            ("FAULTLINE_EMAIL_FROM", "Faultline <alerts@example.com>"),
        ]))
        .expect("valid");
        assert_eq!(c.alerts.cooldown_ms, 0);
        assert_eq!(c.alerts.hourly_cap, 60);
    }

    #[test]
    fn otel_is_off_unless_an_endpoint_is_set() {
        let c = Config::from_map(env(&[("FAULTLINE_CONFIG", "")])).expect("valid");
        assert_eq!(c.otel, None);
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"),
            ("OTEL_SERVICE_NAME", "faultline-web"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]))
        .expect("valid");
        let otel = c.otel.expect("on");
        assert_eq!(otel.traces_endpoint, "http://jaeger:4318/v1/traces");
        assert_eq!(otel.service_name, "faultline-web");
        assert_eq!(otel.sample_ratio, 0.25);
        for (k, v) in [
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ] {
            let err = Config::from_map(env(&[
                ("FAULTLINE_CONFIG", ""),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318"),
                (k, v),
            ]))
            .expect_err(v);
            assert!(err.to_string().starts_with(k), "{err}");
        }
    }

    #[test]
    fn file_values_apply_and_env_wins() {
        let path = std::env::temp_dir().join(format!("faultline-file-{}.toml", std::process::id()));
        std::fs::write(&path, "bind = \"127.0.0.1:9100\"\nurl = \"https://errors.example.com\"\nmax_event_size = 2048\n")
            .expect("temp file");
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", path.to_str().unwrap_or_default()),
            ("FAULTLINE_URL", "http://override:1"),
        ]))
        .expect("valid");
        assert_eq!(c.bind.port(), 9100);
        assert_eq!(c.public_url.as_str(), "http://override:1/");
        assert_eq!(c.limits.max_event_size, 2048);
    }

    #[test]
    fn unwritable_data_dir_is_reported() {
        let path =
            std::env::temp_dir().join(format!("faultline-file-{}-blocker", std::process::id()));
        std::fs::write(&path, "i am a file").expect("temp file");
        let mut c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            (
                "FAULTLINE_DATA_DIR",
                path.join("sub").to_str().unwrap_or_default(),
            ),
        ]))
        .expect("valid");
        let err = c.prepare_data_dir().unwrap_err();
        assert!(err.to_string().contains("not writable"), "{err}");
    }

    #[test]
    fn artifact_storage_is_chosen_and_checked() {
        let c = Config::from_map(env(&[("FAULTLINE_CONFIG", "")])).unwrap();
        assert_eq!(c.artifact_storage, ArtifactStorage::Database);
        assert_eq!(c.artifact_gc, ArtifactGc::default());
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_ARTIFACT_GC_GRACE_SECS", "5"),
            ("FAULTLINE_ARTIFACT_GC_INTERVAL_SECS", "0"),
        ]))
        .unwrap();
        assert_eq!(c.artifact_gc.grace.as_secs(), 5);
        assert_eq!(c.artifact_gc.interval.as_secs(), 1, "at least a second");
        assert!(
            Config::from_map(env(&[
                ("FAULTLINE_CONFIG", ""),
                ("FAULTLINE_ARTIFACT_GC_GRACE_SECS", "soon")
            ]))
            .unwrap_err()
            .to_string()
            .contains("FAULTLINE_ARTIFACT_GC_GRACE_SECS")
        );
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_ARTIFACT_DIR", "/srv/artifacts"),
        ]))
        .unwrap();
        assert_eq!(
            c.artifact_storage,
            ArtifactStorage::Directory("/srv/artifacts".into())
        );
        let s3 = [
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_ARTIFACT_S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("FAULTLINE_ARTIFACT_S3_BUCKET", "maps"),
            ("FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID", "key"),
            ("FAULTLINE_ARTIFACT_S3_SECRET_ACCESS_KEY", "very-secret"),
            ("FAULTLINE_ARTIFACT_S3_PREFIX", "/faultline/"),
        ];
        let c = Config::from_map(env(&s3)).unwrap();
        let ArtifactStorage::S3(settings) = &c.artifact_storage else {
            panic!("not S3: {:?}", c.artifact_storage);
        };
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(settings.region, "us-east-1");
        assert!(settings.path_style, "an endpoint defaults to path style");
        assert_eq!(settings.prefix, "faultline/");
        assert!(!format!("{:?}", c.artifact_storage).contains("very-secret"));

        let bad = |pairs: &[(&str, &str)], name: &str| {
            let mut all = s3.to_vec();
            all.extend_from_slice(pairs);
            let err = Config::from_map(env(&all)).unwrap_err().to_string();
            assert!(err.contains(name), "{pairs:?}: {err}");
        };
        bad(
            &[("FAULTLINE_ARTIFACT_DIR", "/x")],
            "FAULTLINE_ARTIFACT_DIR",
        );
        bad(
            &[("FAULTLINE_ARTIFACT_S3_ENDPOINT", "ftp://h")],
            "FAULTLINE_ARTIFACT_S3_ENDPOINT",
        );
        bad(
            &[("FAULTLINE_ARTIFACT_S3_ENDPOINT", "http://h:9000/maps")],
            "FAULTLINE_ARTIFACT_S3_ENDPOINT",
        );
        bad(
            &[("FAULTLINE_ARTIFACT_S3_BUCKET", "Bad_Bucket")],
            "FAULTLINE_ARTIFACT_S3_BUCKET",
        );
        bad(
            &[("FAULTLINE_ARTIFACT_S3_PATH_STYLE", "maybe")],
            "FAULTLINE_ARTIFACT_S3_PATH_STYLE",
        );
        let err = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_ARTIFACT_S3_BUCKET", "maps"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_parsed_and_bad_ones_refused() {
        let c = Config::from_map(env(&[("FAULTLINE_CONFIG", "")])).expect("valid");
        assert!(
            c.trusted_proxies.is_empty(),
            "no proxy is trusted by default"
        );
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            (
                "FAULTLINE_TRUSTED_PROXIES",
                "127.0.0.1, 172.16.0.0/12 fd00::/8",
            ),
        ]))
        .expect("valid");
        assert!(
            c.trusted_proxies
                .contains("172.20.0.5".parse().expect("ip"))
        );
        assert!(c.trusted_proxies.contains("fd00::7".parse().expect("ip")));
        for bad in ["10.0.0.0/40", "proxy.internal", "10.0.0.1/8"] {
            let err = Config::from_map(env(&[
                ("FAULTLINE_CONFIG", ""),
                ("FAULTLINE_TRUSTED_PROXIES", bad),
            ]))
            .expect_err(bad)
            .to_string();
            assert!(
                err.starts_with("FAULTLINE_TRUSTED_PROXIES is not valid"),
                "{err}"
            );
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn a_short_secret_key_is_refused_in_one_line() {
        let err = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_SECRET_KEY", "hunter2-too-short"),
        ]))
        .expect_err("17 bytes");
        let msg = err.to_string();
        assert!(msg.starts_with("FAULTLINE_SECRET_KEY"), "{msg}");
        assert!(msg.contains("at least 32"), "{msg}");
        assert!(!msg.contains("hunter2"), "the key is not echoed: {msg}");
        assert!(!msg.contains('\n'));
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_SECRET_KEY", &"k".repeat(32)),
        ]))
        .expect("32 bytes are enough");
        assert_eq!(c.secret_key.len(), 32);
    }

    #[test]
    fn debug_shows_no_secret() {
        let secrets = [
            "sekrit-key-0123456789abcdef0123456789",
            "pg-pass",
            "pg-query-pass",
            "redis-pass",
            "smtp-pass",
            "metrics-tok",
            "otel-pass",
            "s3-secret",
            "s3-endpoint-pass",
        ];
        let c = Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_SECRET_KEY", secrets[0]),
            (
                "DATABASE_URL",
                "postgres://faultline:pg-pass@db.internal/faultline?sslmode=require&password=pg-query-pass",
            ),
            ("REDIS_URL", "redis://:redis-pass@redis.internal:6379"),
            (
                "FAULTLINE_SMTP_URL",
                "smtp://alerts%40example.com:smtp-pass@mail.example.com:587?tls=required",
            ),
            ("FAULTLINE_METRICS_TOKEN", "metrics-tok"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:otel-pass@collector:4318"),
            ("FAULTLINE_ARTIFACT_S3_ENDPOINT", "http://minio:s3-endpoint-pass@minio:9000"),
            ("FAULTLINE_ARTIFACT_S3_BUCKET", "maps"),
            ("FAULTLINE_ARTIFACT_S3_ACCESS_KEY_ID", "key-id"),
            ("FAULTLINE_ARTIFACT_S3_SECRET_ACCESS_KEY", "s3-secret"),
        ]))
        .expect("valid");
        let shown = format!("{c:?}");
        for s in secrets {
            assert!(!shown.contains(s), "{s} shows in {shown}");
        }
        // What helps debugging stays.
        assert!(shown.contains("db.internal"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        assert!(shown.contains("redis.internal"), "{shown}");
        assert!(shown.contains("mail.example.com"), "{shown}");
        assert!(shown.contains("secret_key: \"<redacted>\""), "{shown}");
    }

    fn fresh_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "faultline-key-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn config_in(dir: &Path) -> Config {
        Config::from_map(env(&[
            ("FAULTLINE_CONFIG", ""),
            ("FAULTLINE_DATA_DIR", dir.to_str().unwrap_or_default()),
        ]))
        .expect("valid")
    }

    #[test]
    fn processes_starting_together_agree_on_one_private_key() {
        for _ in 0..20 {
            let dir = fresh_dir();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let keys: Vec<String> = (0..8)
                .map(|_| {
                    let (dir, barrier) = (dir.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut c = config_in(&dir);
                        barrier.wait();
                        c.prepare_data_dir().expect("prepared");
                        c.secret_key
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().expect("thread"))
                .collect();
            let on_disk = std::fs::read_to_string(dir.join("secret.key")).expect("key file");
            assert_eq!(on_disk.len(), 64);
            for k in &keys {
                assert_eq!(k, &on_disk, "every process uses the key on disk");
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.join("secret.key"))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            let left: Vec<_> = std::fs::read_dir(&dir)
                .expect("list")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "secret.key")
                .collect();
            assert!(left.is_empty(), "temporary files left: {left:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn an_existing_key_is_kept_and_a_damaged_one_replaced() {
        let dir = fresh_dir();
        let path = dir.join("secret.key");
        let key = "a".repeat(64);
        std::fs::write(&path, format!("{key}\n")).expect("key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let mut c = config_in(&dir);
        c.prepare_data_dir().expect("prepared");
        assert_eq!(c.secret_key, key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a readable key file is tightened");
        }
        std::fs::write(&path, "").expect("damage");
        let mut c = config_in(&dir);
        c.prepare_data_dir().expect("prepared");
        assert_eq!(c.secret_key.len(), 64);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), c.secret_key);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
