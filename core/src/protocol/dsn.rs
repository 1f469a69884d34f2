//! DSNs and project keys (PROTOCOL.md §1.1–1.2).
//!
//! A DSN (`https://<public key>@<host>/<prefix>/<project id>`) is what a user pastes into an
//! SDK; the SDK derives the ingest URLs from it and authenticates with its public key. We parse
//! the same shape the official SDKs accept so that a DSN shown on a project page works
//! everywhere, and so that an envelope header `dsn` can authenticate a request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use url::Url;
use uuid::Uuid;

/// Length of every project key; Relay rejects keys of any other length.
pub const PROJECT_KEY_LEN: usize = 32;

/// Why a string is not a [`ProjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProjectKeyError {
    /// The key (without its `.flag` suffix) does not have exactly 32 characters.
    #[error("project key must be {PROJECT_KEY_LEN} characters long, got {0}")]
    WrongLength(usize),
    /// The key contains a character outside ASCII.
    #[error("project key must consist of ASCII characters only")]
    NotAscii,
}

/// The public key of a DSN: identifies (and, as far as ingest goes, authenticates) the project
/// an SDK sends to.
///
/// Holds exactly 32 ASCII characters. Keys we issue are 32 lowercase hex digits (a dash-less
/// UUIDv4), which every SDK and every other Sentry-compatible server accepts; keys imported
/// from elsewhere only need to satisfy Relay's looser rule. Comparison is exact
/// (case-sensitive), like Relay's.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(String);

impl ProjectKey {
    /// Generates a fresh random key: 32 lowercase hex digits.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }

    /// Parses a key that must be exactly 32 ASCII characters (no `.flag` suffix).
    pub fn parse(key: &str) -> Result<Self, ProjectKeyError> {
        if !key.is_ascii() {
            return Err(ProjectKeyError::NotAscii);
        }
        // `key` is ASCII, so its byte length is its character count.
        if key.len() != PROJECT_KEY_LEN {
            return Err(ProjectKeyError::WrongLength(key.len()));
        }
        Ok(Self(key.to_owned()))
    }

    /// Parses a key as SDKs and Relays may send it, `<key>[.<flag>]*` (e.g. `<key>.no-cache`),
    /// and returns the key plus the flags. Flags carry no meaning for us but must not make a
    /// valid key fail.
    pub fn parse_with_flags(key: &str) -> Result<(Self, Vec<&str>), ProjectKeyError> {
        let mut parts = key.split('.');
        // `split` always yields at least one part, even for an empty string.
        let key = Self::parse(parts.next().unwrap_or_default())?;
        Ok((key, parts.collect()))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectKey({:?})", self.0)
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ProjectKey {
    type Err = ProjectKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ProjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ProjectKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// URL scheme of a DSN; SDKs only speak HTTP(S).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`
    Http,
    /// `https`
    Https,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a usable DSN. The messages are shown to users (a DSN pasted into a
/// command, a bad envelope header), so they say what shape was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DsnError {
    /// Not parseable as a URL at all.
    #[error("DSN is not a valid URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    /// A scheme other than `http`/`https`.
    #[error("unsupported DSN scheme `{0}` (expected http or https)")]
    UnsupportedScheme(String),
    /// No `<key>@` before the host.
    #[error("DSN has no public key (expected {{scheme}}://{{public_key}}@{{host}}/{{project_id}})")]
    MissingPublicKey,
    /// The part before `@` is not a valid project key.
    #[error("invalid DSN public key: {0}")]
    InvalidPublicKey(#[source] ProjectKeyError),
    /// No host after `@`.
    #[error("DSN has no host")]
    MissingHost,
    /// The path has no final segment to read the project id from.
    #[error("DSN has no project id (expected it as the last path segment)")]
    MissingProjectId,
    /// The last path segment is not a decimal number.
    #[error("DSN project id `{0}` is not a number")]
    InvalidProjectId(String),
    /// A `?query` or `#fragment`, which no SDK expects in a DSN.
    #[error("DSN must not contain a query string or fragment")]
    UnexpectedQueryOrFragment,
}

/// A parsed Data Source Name:
/// `{scheme}://{public_key}[:{secret_key}]@{host}[:{port}]{/path/prefix}/{project_id}`.
///
/// Invariants: the public key is a valid [`ProjectKey`], the project id is numeric (the JS SDK
/// refuses anything else), and the path prefix starts and ends with `/` (`/` when the DSN has
/// none). The deprecated secret key is kept only so that `Display` reproduces the input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dsn {
    scheme: Scheme,
    public_key: ProjectKey,
    secret_key: Option<String>,
    host: String,
    port: Option<u16>,
    path_prefix: String,
    project_id: u64,
}

impl Dsn {
    /// Builds the DSN of a project from the server's public base URL (`https://errors.example.com`
    /// or with a path prefix, `https://example.com/faultline`), its key and its id. This is the
    /// DSN to show users.
    pub fn for_project(
        base_url: &str,
        public_key: ProjectKey,
        project_id: u64,
    ) -> Result<Self, DsnError> {
        let url = Url::parse(base_url)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(DsnError::UnexpectedQueryOrFragment);
        }
        let mut path_prefix = url.path().to_owned();
        if !path_prefix.ends_with('/') {
            path_prefix.push('/');
        }
        Ok(Self {
            scheme: scheme_of(&url)?,
            public_key,
            secret_key: None,
            host: host_of(&url)?,
            port: url.port(),
            path_prefix,
            project_id,
        })
    }

    /// Parses a DSN string; see the type documentation for the accepted shape.
    pub fn parse(dsn: &str) -> Result<Self, DsnError> {
        let url = Url::parse(dsn.trim())?;
        let scheme = scheme_of(&url)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(DsnError::UnexpectedQueryOrFragment);
        }
        if url.username().is_empty() {
            return Err(DsnError::MissingPublicKey);
        }
        let public_key = ProjectKey::parse(url.username()).map_err(DsnError::InvalidPublicKey)?;
        // `https://key:@host/1` (an empty secret, as Relay writes DSNs) counts as no secret.
        let secret_key = url
            .password()
            .filter(|secret| !secret.is_empty())
            .map(str::to_owned);
        let host = host_of(&url)?;

        // A trailing slash (`.../42/`) is tolerated: SDKs strip it too.
        let path = url.path();
        let path = path.strip_suffix('/').unwrap_or(path);
        let (prefix, project_id) = match path.rfind('/') {
            Some(slash) => (&path[..=slash], &path[slash + 1..]),
            None => ("/", path),
        };
        if project_id.is_empty() {
            return Err(DsnError::MissingProjectId);
        }
        let project_id = parse_project_id(project_id)
            .ok_or_else(|| DsnError::InvalidProjectId(project_id.to_owned()))?;

        Ok(Self {
            scheme,
            public_key,
            secret_key,
            host,
            port: url.port(),
            path_prefix: prefix.to_owned(),
            project_id,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The public key SDKs authenticate with.
    pub fn public_key(&self) -> &ProjectKey {
        &self.public_key
    }

    /// The deprecated secret key, if the DSN carried one (never needed for ingest).
    pub fn secret_key(&self) -> Option<&str> {
        self.secret_key.as_deref()
    }

    /// Host name or IP literal (IPv6 in brackets), lowercased.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, or `None` when the scheme's default is used.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path between host and project id, starting and ending with `/` (`/a/b/` for
    /// `https://k@h/a/b/42`).
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// The numeric project id.
    pub fn project_id(&self) -> u64 {
        self.project_id
    }

    /// The URL SDKs post envelopes to: `{scheme}://{host}[:{port}]{prefix}api/{id}/envelope/`.
    pub fn envelope_url(&self) -> String {
        self.api_url("envelope")
    }

    /// The legacy store URL: `{scheme}://{host}[:{port}]{prefix}api/{id}/store/`.
    pub fn store_url(&self) -> String {
        self.api_url("store")
    }

    fn api_url(&self, endpoint: &str) -> String {
        // The trailing slash is mandatory: SDKs always send it, and so should we when we act
        // as a client (`faultline send-test-event`).
        format!(
            "{}{}api/{}/{}/",
            self.origin(),
            self.path_prefix,
            self.project_id,
            endpoint
        )
    }

    fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{}", self.scheme, self.host, port),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.public_key)?;
        if let Some(secret) = &self.secret_key {
            write!(f, ":{secret}")?;
        }
        write!(f, "@{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}{}", self.path_prefix, self.project_id)
    }
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Dsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Parses a project id the way SDKs and Relay's routes accept it: decimal digits only (no sign,
/// no whitespace), fitting a `u64`.
pub fn parse_project_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn scheme_of(url: &Url) -> Result<Scheme, DsnError> {
    match url.scheme() {
        "http" => Ok(Scheme::Http),
        "https" => Ok(Scheme::Https),
        other => Err(DsnError::UnsupportedScheme(other.to_owned())),
    }
}

fn host_of(url: &Url) -> Result<String, DsnError> {
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(host.to_owned()),
        _ => Err(DsnError::MissingHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn dsn(s: &str) -> Dsn {
        match Dsn::parse(s) {
            Ok(dsn) => dsn,
            Err(err) => panic!("{s}: {err}"),
        }
    }

    #[test]
    fn generated_keys_are_32_lowercase_hex_and_distinct() {
        let a = ProjectKey::generate();
        let b = ProjectKey::generate();
        assert_ne!(a, b);
        for key in [&a, &b] {
            assert_eq!(key.as_str().len(), 32);
            assert!(
                key.as_str()
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "{key}"
            );
            assert_eq!(ProjectKey::parse(key.as_str()).as_ref(), Ok(key));
        }
    }

    #[test]
    fn project_key_requires_32_ascii_chars() {
        assert!(ProjectKey::parse(KEY).is_ok());
        // Relay only asks for 32 ASCII characters, not hex.
        assert!(ProjectKey::parse("ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ").is_ok());
        assert_eq!(
            ProjectKey::parse("abc"),
            Err(ProjectKeyError::WrongLength(3))
        );
        assert_eq!(ProjectKey::parse(""), Err(ProjectKeyError::WrongLength(0)));
        assert_eq!(
            ProjectKey::parse(&format!("{KEY}0")),
            Err(ProjectKeyError::WrongLength(33))
        );
        // 32 characters but more bytes: must not be accepted (nor panic on slicing).
        assert_eq!(
            ProjectKey::parse(&"é".repeat(16)),
            Err(ProjectKeyError::NotAscii)
        );
        assert_eq!(
            ProjectKey::parse(&"é".repeat(32)),
            Err(ProjectKeyError::NotAscii)
        );
    }

    #[test]
    fn project_key_flags_are_split_off() {
        let with_flag = format!("{KEY}.no-cache");
        let (key, flags) = ProjectKey::parse_with_flags(&with_flag).unwrap();
        assert_eq!(key.as_str(), KEY);
        assert_eq!(flags, vec!["no-cache"]);

        let (key, flags) = ProjectKey::parse_with_flags(KEY).unwrap();
        assert_eq!(key.as_str(), KEY);
        assert!(flags.is_empty());

        assert!(ProjectKey::parse_with_flags(".no-cache").is_err());
        assert!(ProjectKey::parse_with_flags("").is_err());
    }

    #[test]
    fn project_key_serde_validates() {
        let key: ProjectKey = serde_json::from_str(&format!("\"{KEY}\"")).unwrap();
        assert_eq!(serde_json::to_string(&key).unwrap(), format!("\"{KEY}\""));
        assert!(serde_json::from_str::<ProjectKey>("\"short\"").is_err());
    }

    #[test]
    fn parses_plain_dsn() {
        let d = dsn(&format!("https://{KEY}@o1.ingest.example.com/42"));
        assert_eq!(d.scheme(), Scheme::Https);
        assert_eq!(d.public_key().as_str(), KEY);
        assert_eq!(d.secret_key(), None);
        assert_eq!(d.host(), "o1.ingest.example.com");
        assert_eq!(d.port(), None);
        assert_eq!(d.path_prefix(), "/");
        assert_eq!(d.project_id(), 42);
        assert_eq!(
            d.envelope_url(),
            "https://o1.ingest.example.com/api/42/envelope/"
        );
        assert_eq!(d.store_url(), "https://o1.ingest.example.com/api/42/store/");
        assert_eq!(
            d.to_string(),
            format!("https://{KEY}@o1.ingest.example.com/42")
        );
    }

    #[test]
    fn keeps_port_and_path_prefix() {
        let d = dsn(&format!("http://{KEY}@localhost:8000/a/b/7"));
        assert_eq!(d.scheme(), Scheme::Http);
        assert_eq!(d.port(), Some(8000));
        assert_eq!(d.path_prefix(), "/a/b/");
        assert_eq!(
            d.envelope_url(),
            "http://localhost:8000/a/b/api/7/envelope/"
        );
        assert_eq!(d.store_url(), "http://localhost:8000/a/b/api/7/store/");
        assert_eq!(d.to_string(), format!("http://{KEY}@localhost:8000/a/b/7"));
    }

    #[test]
    fn secret_is_accepted_and_kept_for_display() {
        let d = dsn(&format!("https://{KEY}:s3cr3t@example.com/1"));
        assert_eq!(d.secret_key(), Some("s3cr3t"));
        assert_eq!(d.to_string(), format!("https://{KEY}:s3cr3t@example.com/1"));

        // Relay writes DSNs with an empty secret (`key:@host`).
        let d = dsn(&format!("https://{KEY}:@example.com/1"));
        assert_eq!(d.secret_key(), None);
        assert_eq!(d.to_string(), format!("https://{KEY}@example.com/1"));
    }

    #[test]
    fn default_port_is_dropped_and_ipv6_kept_in_brackets() {
        let d = dsn(&format!("https://{KEY}@Example.COM:443/1"));
        assert_eq!(d.port(), None);
        assert_eq!(d.host(), "example.com");
        let d = dsn(&format!("http://{KEY}@[::1]:9000/5"));
        assert_eq!(d.host(), "[::1]");
        assert_eq!(d.envelope_url(), "http://[::1]:9000/api/5/envelope/");
    }

    #[test]
    fn trailing_slash_after_project_id_is_tolerated() {
        let d = dsn(&format!("https://{KEY}@example.com/prefix/9/"));
        assert_eq!(d.project_id(), 9);
        assert_eq!(d.path_prefix(), "/prefix/");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            format!("https://{KEY}@example.com/1"),
            format!("http://{KEY}@127.0.0.1:8080/sub/dir/18446744073709551615"),
            format!("https://{KEY}:secret@example.com/1"),
        ] {
            assert_eq!(dsn(&s).to_string(), s);
            assert_eq!(dsn(&dsn(&s).to_string()), dsn(&s));
        }
    }

    #[test]
    fn rejects_bad_dsns() {
        let cases: Vec<(String, DsnError)> = vec![
            (
                format!("ftp://{KEY}@example.com/1"),
                DsnError::UnsupportedScheme("ftp".into()),
            ),
            ("https://example.com/1".into(), DsnError::MissingPublicKey),
            (
                "https://short@example.com/1".into(),
                DsnError::InvalidPublicKey(ProjectKeyError::WrongLength(5)),
            ),
            (
                format!("https://{KEY}@example.com"),
                DsnError::MissingProjectId,
            ),
            (
                format!("https://{KEY}@example.com/"),
                DsnError::MissingProjectId,
            ),
            (
                format!("https://{KEY}@example.com/abc"),
                DsnError::InvalidProjectId("abc".into()),
            ),
            (
                format!("https://{KEY}@example.com/+5"),
                DsnError::InvalidProjectId("+5".into()),
            ),
            (
                format!("https://{KEY}@example.com/99999999999999999999"),
                DsnError::InvalidProjectId("99999999999999999999".into()),
            ),
            (
                format!("https://{KEY}@example.com/1?x=1"),
                DsnError::UnexpectedQueryOrFragment,
            ),
            (
                format!("https://{KEY}@example.com/1#frag"),
                DsnError::UnexpectedQueryOrFragment,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Dsn::parse(&input), Err(expected), "{input}");
        }
        assert!(matches!(
            Dsn::parse("not a dsn"),
            Err(DsnError::InvalidUrl(_))
        ));
        assert!(matches!(Dsn::parse(""), Err(DsnError::InvalidUrl(_))));
    }

    #[test]
    fn error_messages_say_what_was_expected() {
        let err = Dsn::parse("https://example.com/1").unwrap_err();
        assert!(err.to_string().contains("{public_key}@{host}"), "{err}");
        let err = Dsn::parse(&format!("https://{KEY}@example.com/x")).unwrap_err();
        assert_eq!(err.to_string(), "DSN project id `x` is not a number");
    }

    #[test]
    fn builds_project_dsn_from_base_url() {
        let key = ProjectKey::parse(KEY).unwrap();
        let d = Dsn::for_project("https://errors.example.com", key.clone(), 3).unwrap();
        assert_eq!(d.to_string(), format!("https://{KEY}@errors.example.com/3"));
        let d = Dsn::for_project("http://localhost:8000/faultline", key.clone(), 3).unwrap();
        assert_eq!(
            d.to_string(),
            format!("http://{KEY}@localhost:8000/faultline/3")
        );
        assert_eq!(
            d.envelope_url(),
            "http://localhost:8000/faultline/api/3/envelope/"
        );
        assert_eq!(dsn(&d.to_string()), d);
        assert!(Dsn::for_project("mailto:x@example.com", key, 3).is_err());
    }

    #[test]
    fn dsn_serde_is_a_string() {
        let s = format!("https://{KEY}@example.com/1");
        let d: Dsn = serde_json::from_value(serde_json::Value::String(s.clone())).unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::Value::String(s)
        );
    }

    #[test]
    fn project_ids_are_digits_only() {
        assert_eq!(parse_project_id("42"), Some(42));
        assert_eq!(parse_project_id("007"), Some(7));
        assert_eq!(parse_project_id(""), None);
        assert_eq!(parse_project_id("-1"), None);
        assert_eq!(parse_project_id("+1"), None);
        assert_eq!(parse_project_id(" 1"), None);
        assert_eq!(parse_project_id("1a"), None);
        assert_eq!(parse_project_id("18446744073709551616"), None);
    }
}
