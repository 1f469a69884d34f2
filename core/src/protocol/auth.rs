//! Client authentication of ingest requests (PROTOCOL.md §1.3–1.4).
//!
//! SDKs put their DSN public key in one of several places: the `X-Sentry-Auth` header (Python
//! and most server SDKs), `Authorization: Sentry ...` or `Authorization: Basic ...`, the query
//! string (browser JS, to avoid a CORS preflight), or — for envelopes forwarded by tunnels — the
//! envelope header `dsn`. This module finds the credentials the way Relay does, including its
//! refusal of requests that carry more than one, and its exact error messages, so SDKs and
//! tooling see the responses they were written against.

use std::borrow::Cow;

use base64::Engine as _;
use thiserror::Error;
use url::form_urlencoded;

use super::dsn::{Dsn, DsnError, ProjectKey, ProjectKeyError, parse_project_id};

/// The newest protocol version (`sentry_version`) we speak; newer ones are refused.
pub const PROTOCOL_VERSION: u16 = 7;

/// Credentials of an ingest request, as extracted from headers, query string or envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// The DSN public key (32 ASCII characters, any `.flag` suffix removed). Look it up to find
    /// the project; the request is rejected (403) if it is unknown or belongs to another one.
    pub public_key: String,
    /// Protocol version the client speaks (`sentry_version`; 7 when absent).
    pub version: u16,
    /// Free-form `name/version` of the SDK (`sentry_client`), informational only.
    pub client: Option<String>,
}

impl ClientAuth {
    /// Credentials from a DSN already parsed (the envelope header `dsn`, or a DSN given to the
    /// `send-test-event` command). The protocol version is the current one.
    pub fn from_dsn(dsn: &Dsn) -> Self {
        Self {
            public_key: dsn.public_key().as_str().to_owned(),
            version: PROTOCOL_VERSION,
            client: None,
        }
    }

    /// Credentials from the envelope header `dsn`, used by the envelope endpoint only when the
    /// request itself carries none. Any problem with the DSN is Relay's 401
    /// `bad envelope authentication header`. Callers that must check the DSN's project id
    /// against the URL parse it with [`Dsn::parse`] and use [`ClientAuth::from_dsn`].
    pub fn from_dsn_str(dsn: &str) -> Result<Self, AuthError> {
        Dsn::parse(dsn)
            .map(|dsn| Self::from_dsn(&dsn))
            .map_err(AuthError::BadEnvelopeAuth)
    }

    /// The `X-Sentry-Auth` header value an SDK would send with these credentials.
    pub fn to_header_value(&self) -> String {
        let mut header = format!(
            "Sentry sentry_key={}, sentry_version={}",
            self.public_key, self.version
        );
        if let Some(client) = &self.client {
            header.push_str(", sentry_client=");
            header.push_str(client);
        }
        header
    }
}

/// Why an ingest request's credentials were refused. [`AuthError::status`] and
/// [`AuthError::detail`] give the HTTP status and the `detail` of the JSON error body, with the
/// exact wording Relay uses; the `source` (if any) says more and belongs in `causes`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No credentials anywhere (the caller decides: this module returns `Ok(None)` for that,
    /// because the envelope endpoint still has the envelope header to look at).
    #[error("missing authorization information")]
    Missing,
    /// Credentials in more than one place (e.g. `X-Sentry-Auth` and `?sentry_key=`).
    #[error("multiple authorization payloads detected")]
    Multiple,
    /// A `Sentry ...` header or a `sentry_*` query string without a key or with a bad version.
    #[error("bad x-sentry-auth header")]
    BadAuthHeader(#[source] BadAuthHeader),
    /// The envelope header `dsn` is not a usable DSN.
    #[error("bad envelope authentication header")]
    BadEnvelopeAuth(#[source] DsnError),
    /// `sentry_version` newer than [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version ({0})")]
    UnsupportedProtocolVersion(u16),
    /// The public key is not 32 ASCII characters.
    #[error("bad sentry DSN public key")]
    BadPublicKey(#[source] ProjectKeyError),
    /// The `{project_id}` segment of the URL is not a number.
    #[error("bad project path parameter")]
    BadProjectPath,
}

impl AuthError {
    /// HTTP status Relay answers with: 401 for missing or unreadable credentials, 400 for
    /// credentials that were read but are invalid.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing
            | AuthError::Multiple
            | AuthError::BadAuthHeader(_)
            | AuthError::BadEnvelopeAuth(_) => 401,
            AuthError::UnsupportedProtocolVersion(_)
            | AuthError::BadPublicKey(_)
            | AuthError::BadProjectPath => 400,
        }
    }

    /// The `detail` of the JSON error body (and `X-Sentry-Error` header), worded as Relay does.
    pub fn detail(&self) -> Cow<'static, str> {
        match self {
            AuthError::Missing => Cow::Borrowed("missing authorization information"),
            AuthError::Multiple => Cow::Borrowed("multiple authorization payloads detected"),
            AuthError::BadAuthHeader(_) => Cow::Borrowed("bad x-sentry-auth header"),
            AuthError::BadEnvelopeAuth(_) => Cow::Borrowed("bad envelope authentication header"),
            AuthError::UnsupportedProtocolVersion(version) => {
                Cow::Owned(format!("unsupported protocol version ({version})"))
            }
            AuthError::BadPublicKey(_) => Cow::Borrowed("bad sentry DSN public key"),
            AuthError::BadProjectPath => Cow::Borrowed("bad project path parameter"),
        }
    }
}

/// What is wrong with a `Sentry ...` auth header or `sentry_*` query string.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadAuthHeader {
    /// No `sentry_key`, or an empty one.
    #[error("missing sentry_key")]
    MissingKey,
    /// `sentry_version` is not a number (after cutting at the first `.`).
    #[error("invalid sentry_version `{0}`")]
    InvalidVersion(String),
}

/// Finds the client's credentials in the request, in Relay's order: `X-Sentry-Auth: Sentry ...`,
/// `Authorization: Sentry ...`, `Authorization: Basic base64(key:)`, then the query string (only
/// if it contains `sentry_`). Pass header values as received and the raw query string (without
/// `?`).
///
/// Returns `Ok(None)` when there are no credentials at all: the envelope endpoint then falls
/// back to the envelope header `dsn` ([`ClientAuth::from_dsn_str`]); every other endpoint
/// answers [`AuthError::Missing`]. Headers that are not Sentry or Basic auth (say, a proxy's
/// `Authorization: Bearer ...`) are ignored, as is a Basic header that does not decode.
pub fn extract_client_auth(
    x_sentry_auth: Option<&str>,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Result<Option<ClientAuth>, AuthError> {
    let mut found: Option<ClientAuth> = None;
    // Each source is parsed as soon as it is seen: a malformed first source is reported as
    // such even when a second one is present, as in Relay.
    let mut add = |auth: ClientAuth| {
        if found.is_some() {
            return Err(AuthError::Multiple);
        }
        found = Some(auth);
        Ok(())
    };

    if let Some(params) = x_sentry_auth.and_then(sentry_auth_params) {
        add(from_pairs(split_header_params(params))?)?;
    }
    if let Some(params) = authorization.and_then(sentry_auth_params) {
        add(from_pairs(split_header_params(params))?)?;
    }
    if let Some(key) = authorization.and_then(basic_auth_key) {
        add(ClientAuth {
            public_key: key,
            version: PROTOCOL_VERSION,
            client: None,
        })?;
    }
    if let Some(query) = query.map(|q| q.strip_prefix('?').unwrap_or(q))
        && query.contains("sentry_")
    {
        add(from_pairs(form_urlencoded::parse(query.as_bytes()))?)?;
    }

    match found {
        Some(auth) => validate(auth).map(Some),
        None => Ok(None),
    }
}

/// Parses the `{project_id}` URL segment of an ingest route (digits only).
pub fn parse_project_path(segment: &str) -> Result<u64, AuthError> {
    parse_project_id(segment).ok_or(AuthError::BadProjectPath)
}

/// Checks what Relay checks once the credentials are found: a 32-character key (a `.flag`
/// suffix is allowed and dropped) and a protocol version we understand.
fn validate(mut auth: ClientAuth) -> Result<ClientAuth, AuthError> {
    let (key, _flags) =
        ProjectKey::parse_with_flags(&auth.public_key).map_err(AuthError::BadPublicKey)?;
    if auth.version > PROTOCOL_VERSION {
        return Err(AuthError::UnsupportedProtocolVersion(auth.version));
    }
    auth.public_key = key.as_str().to_owned();
    Ok(auth)
}

/// The parameter part of a `Sentry k=v, ...` header value, or `None` if the value is not Sentry
/// auth (the scheme is matched case-insensitively and must be followed by a space).
fn sentry_auth_params(header: &str) -> Option<&str> {
    let header = header.trim_start();
    match header.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sentry ") => header.get(7..),
        _ => None,
    }
}

/// The key of `Basic base64("{key}:{anything}")`, or `None` if this is not a decodable Basic
/// header with a non-empty user part.
fn basic_auth_key(header: &str) -> Option<String> {
    let header = header.trim();
    let encoded = match header.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("basic ") => header.get(6..)?.trim(),
        _ => return None,
    };
    let engine = &base64::engine::general_purpose::STANDARD;
    let decoded = engine
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (key, _password) = decoded.split_once(':')?;
    (!key.is_empty()).then(|| key.to_owned())
}

/// Splits `k=v, k=v` into trimmed pairs; items without `=` are skipped.
fn split_header_params(params: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    params.split(',').filter_map(|item| {
        let (key, value) = item.split_once('=')?;
        Some((Cow::Borrowed(key.trim()), Cow::Borrowed(value.trim())))
    })
}

/// Builds credentials from `sentry_*` pairs. Unknown keys and the deprecated `sentry_secret` and
/// `sentry_timestamp` are ignored; for repeated keys the last one wins.
fn from_pairs<'a, I>(pairs: I) -> Result<ClientAuth, AuthError>
where
    I: IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
{
    let mut key = String::new();
    let mut version = PROTOCOL_VERSION;
    let mut client = None;
    for (name, value) in pairs {
        match name.as_ref() {
            "sentry_key" => key = value.trim().to_owned(),
            "sentry_version" => version = parse_version(value.trim())?,
            "sentry_client" => client = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    if key.is_empty() {
        return Err(AuthError::BadAuthHeader(BadAuthHeader::MissingKey));
    }
    Ok(ClientAuth {
        public_key: key,
        version,
        client,
    })
}

/// `7` and `7.0` are both version 7: only the text before the first `.` counts.
fn parse_version(value: &str) -> Result<u16, AuthError> {
    let major = value.split('.').next().unwrap_or_default();
    major
        .parse()
        .map_err(|_| AuthError::BadAuthHeader(BadAuthHeader::InvalidVersion(value.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn auth(key: &str, version: u16, client: Option<&str>) -> Option<ClientAuth> {
        Some(ClientAuth {
            public_key: key.to_owned(),
            version,
            client: client.map(str::to_owned),
        })
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn python_sdk_x_sentry_auth_header() {
        let header = format!(
            "Sentry sentry_key={KEY}, sentry_version=7, sentry_client=sentry.python/2.19.0"
        );
        assert_eq!(
            extract_client_auth(Some(&header), None, None),
            Ok(auth(KEY, 7, Some("sentry.python/2.19.0")))
        );
    }

    #[test]
    fn header_scheme_is_case_insensitive_and_whitespace_tolerated() {
        let header = format!("sentry  sentry_key = {KEY} ,sentry_version=7.0 ,  junk, x=y");
        assert_eq!(
            extract_client_auth(Some(&header), None, None),
            Ok(auth(KEY, 7, None))
        );
        let header = format!("SENTRY sentry_key={KEY}");
        assert_eq!(
            extract_client_auth(None, Some(&header), None),
            Ok(auth(KEY, 7, None))
        );
    }

    #[test]
    fn legacy_headers_with_secret_and_timestamp() {
        // raven-python style: secret and timestamp are deprecated and ignored.
        let header = format!(
            "Sentry sentry_version=5, sentry_client=raven-python/6.10.0, \
             sentry_timestamp=1700000000.5, sentry_key={KEY}, sentry_secret=abc"
        );
        assert_eq!(
            extract_client_auth(Some(&header), None, None),
            Ok(auth(KEY, 5, Some("raven-python/6.10.0")))
        );
    }

    #[test]
    fn value_containing_equals_sign_is_kept_whole() {
        let header = format!("Sentry sentry_key={KEY}, sentry_client=my=sdk/1");
        assert_eq!(
            extract_client_auth(Some(&header), None, None),
            Ok(auth(KEY, 7, Some("my=sdk/1")))
        );
    }

    #[test]
    fn browser_js_query_string() {
        let query = format!(
            "sentry_version=7&sentry_key={KEY}&sentry_client=sentry.javascript.browser%2F9.0.0"
        );
        assert_eq!(
            extract_client_auth(None, None, Some(&query)),
            Ok(auth(KEY, 7, Some("sentry.javascript.browser/9.0.0")))
        );
        // A leading `?` is tolerated.
        assert_eq!(
            extract_client_auth(None, None, Some(&format!("?{query}"))),
            Ok(auth(KEY, 7, Some("sentry.javascript.browser/9.0.0")))
        );
    }

    #[test]
    fn query_without_sentry_params_is_not_a_source() {
        assert_eq!(
            extract_client_auth(None, None, Some("foo=bar&baz=1")),
            Ok(None)
        );
        let header = format!("Sentry sentry_key={KEY}");
        assert_eq!(
            extract_client_auth(Some(&header), None, Some("utm_source=x")),
            Ok(auth(KEY, 7, None))
        );
    }

    #[test]
    fn query_with_sentry_params_but_no_key_is_bad() {
        assert_eq!(
            extract_client_auth(None, None, Some("sentry_version=7")),
            Err(AuthError::BadAuthHeader(BadAuthHeader::MissingKey))
        );
        assert_eq!(
            extract_client_auth(None, None, Some("sentry_key=")),
            Err(AuthError::BadAuthHeader(BadAuthHeader::MissingKey))
        );
    }

    #[test]
    fn basic_auth_user_is_the_key() {
        assert_eq!(
            extract_client_auth(None, Some(&basic(&format!("{KEY}:"))), None),
            Ok(auth(KEY, 7, None))
        );
        assert_eq!(
            extract_client_auth(None, Some(&basic(&format!("{KEY}:ignored"))), None),
            Ok(auth(KEY, 7, None))
        );
        // Unpadded base64 is tolerated.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("{KEY}:"));
        assert_eq!(
            extract_client_auth(None, Some(&format!("basic {unpadded}")), None),
            Ok(auth(KEY, 7, None))
        );
    }

    #[test]
    fn undecodable_basic_and_foreign_schemes_are_ignored() {
        for header in [
            "Basic !!!not-base64!!!".to_owned(),
            basic("no-colon-here"),
            basic(":password-only"),
            "Bearer abcdef".to_owned(),
            "Sentry".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                extract_client_auth(None, Some(&header), None),
                Ok(None),
                "{header}"
            );
        }
        // A non-Sentry X-Sentry-Auth value is not a source either.
        assert_eq!(extract_client_auth(Some("Bearer x"), None, None), Ok(None));
    }

    #[test]
    fn nothing_anywhere_is_none() {
        assert_eq!(extract_client_auth(None, None, None), Ok(None));
        assert_eq!(extract_client_auth(None, None, Some("")), Ok(None));
    }

    #[test]
    fn two_sources_are_rejected() {
        let header = format!("Sentry sentry_key={KEY}");
        let query = format!("sentry_key={KEY}");
        let cases = [
            (Some(header.as_str()), Some(header.as_str()), None),
            (Some(header.as_str()), None, Some(query.as_str())),
            (None, Some(header.as_str()), Some(query.as_str())),
        ];
        for (x, a, q) in cases {
            let err = extract_client_auth(x, a, q).unwrap_err();
            assert_eq!(err, AuthError::Multiple);
            assert_eq!(err.status(), 401);
            assert_eq!(err.detail(), "multiple authorization payloads detected");
        }
        let basic = basic(&format!("{KEY}:"));
        assert_eq!(
            extract_client_auth(Some(&header), Some(&basic), None),
            Err(AuthError::Multiple)
        );
        assert_eq!(
            extract_client_auth(None, Some(&basic), Some(&query)),
            Err(AuthError::Multiple)
        );
    }

    #[test]
    fn version_handling() {
        let with_version = |v: &str| format!("Sentry sentry_key={KEY}, sentry_version={v}");
        assert_eq!(
            extract_client_auth(Some(&with_version("7.0")), None, None),
            Ok(auth(KEY, 7, None))
        );
        assert_eq!(
            extract_client_auth(Some(&with_version("1")), None, None),
            Ok(auth(KEY, 1, None))
        );
        let err = extract_client_auth(Some(&with_version("8")), None, None).unwrap_err();
        assert_eq!(err, AuthError::UnsupportedProtocolVersion(8));
        assert_eq!(err.status(), 400);
        assert_eq!(err.detail(), "unsupported protocol version (8)");
        assert_eq!(err.to_string(), "unsupported protocol version (8)");

        for bad in ["", "seven", "-1", "99999"] {
            let err = extract_client_auth(Some(&with_version(bad)), None, None).unwrap_err();
            assert_eq!(
                err,
                AuthError::BadAuthHeader(BadAuthHeader::InvalidVersion(bad.to_owned())),
                "{bad}"
            );
            assert_eq!(err.status(), 401);
            assert_eq!(err.detail(), "bad x-sentry-auth header");
        }
    }

    #[test]
    fn bad_public_key_is_400() {
        let header = "Sentry sentry_key=tooshort, sentry_version=7";
        let err = extract_client_auth(Some(header), None, None).unwrap_err();
        assert!(matches!(err, AuthError::BadPublicKey(_)));
        assert_eq!(err.status(), 400);
        assert_eq!(err.detail(), "bad sentry DSN public key");
        // Relay checks the key before the version.
        let header = "Sentry sentry_key=tooshort, sentry_version=9";
        assert!(matches!(
            extract_client_auth(Some(header), None, None),
            Err(AuthError::BadPublicKey(_))
        ));
        assert!(matches!(
            extract_client_auth(None, Some(&basic("short:")), None),
            Err(AuthError::BadPublicKey(_))
        ));
    }

    #[test]
    fn key_flags_are_dropped() {
        let header = format!("Sentry sentry_key={KEY}.no-cache");
        assert_eq!(
            extract_client_auth(Some(&header), None, None),
            Ok(auth(KEY, 7, None))
        );
    }

    #[test]
    fn missing_key_in_header_is_401() {
        let err = extract_client_auth(Some("Sentry sentry_version=7, sentry_client=x"), None, None)
            .unwrap_err();
        assert_eq!(err, AuthError::BadAuthHeader(BadAuthHeader::MissingKey));
        assert_eq!(err.status(), 401);
        assert_eq!(err.detail(), "bad x-sentry-auth header");
    }

    #[test]
    fn malformed_first_source_wins_over_multiple() {
        let query = format!("sentry_key={KEY}");
        assert_eq!(
            extract_client_auth(Some("Sentry sentry_version=7"), None, Some(&query)),
            Err(AuthError::BadAuthHeader(BadAuthHeader::MissingKey))
        );
    }

    #[test]
    fn non_ascii_input_does_not_panic() {
        for header in [
            "Sentré x",
            "Sentry sentry_key=ééééééééééééééééééééééééééééééé",
            "é",
        ] {
            let _ = extract_client_auth(Some(header), Some(header), Some(header));
        }
        assert!(matches!(
            extract_client_auth(
                Some(&format!("Sentry sentry_key={}", "é".repeat(16))),
                None,
                None
            ),
            Err(AuthError::BadPublicKey(ProjectKeyError::NotAscii))
        ));
    }

    #[test]
    fn envelope_header_dsn() {
        let dsn = format!("https://{KEY}@example.com/42");
        assert_eq!(
            ClientAuth::from_dsn_str(&dsn),
            Ok(ClientAuth {
                public_key: KEY.to_owned(),
                version: 7,
                client: None
            })
        );
        for bad in [
            "not a dsn".to_owned(),
            "https://short@example.com/42".to_owned(),
            format!("https://{KEY}@example.com/notanumber"),
        ] {
            let err = ClientAuth::from_dsn_str(&bad).unwrap_err();
            assert!(matches!(err, AuthError::BadEnvelopeAuth(_)), "{bad}");
            assert_eq!(err.status(), 401);
            assert_eq!(err.detail(), "bad envelope authentication header");
        }
    }

    #[test]
    fn header_value_round_trips() {
        let original = ClientAuth {
            public_key: KEY.to_owned(),
            version: 7,
            client: Some("faultline/0.1.0".to_owned()),
        };
        assert_eq!(
            extract_client_auth(Some(&original.to_header_value()), None, None),
            Ok(Some(original))
        );
    }

    #[test]
    fn statuses_and_details_match_relay() {
        let cases = [
            (AuthError::Missing, 401, "missing authorization information"),
            (
                AuthError::Multiple,
                401,
                "multiple authorization payloads detected",
            ),
            (
                AuthError::BadAuthHeader(BadAuthHeader::MissingKey),
                401,
                "bad x-sentry-auth header",
            ),
            (
                AuthError::BadEnvelopeAuth(DsnError::MissingHost),
                401,
                "bad envelope authentication header",
            ),
            (
                AuthError::UnsupportedProtocolVersion(9),
                400,
                "unsupported protocol version (9)",
            ),
            (
                AuthError::BadPublicKey(ProjectKeyError::WrongLength(3)),
                400,
                "bad sentry DSN public key",
            ),
            (AuthError::BadProjectPath, 400, "bad project path parameter"),
        ];
        for (err, status, detail) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.detail(), detail);
            assert_eq!(err.to_string(), detail);
        }
    }

    #[test]
    fn project_path_segment() {
        assert_eq!(parse_project_path("42"), Ok(42));
        assert_eq!(parse_project_path("abc"), Err(AuthError::BadProjectPath));
        assert_eq!(parse_project_path(""), Err(AuthError::BadProjectPath));
    }
}
