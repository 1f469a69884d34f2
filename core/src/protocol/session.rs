//! Release health on the wire: `session` items (one update of one session) and `sessions`
//! items (pre-aggregated request-mode sessions), read and checked the way Relay does
//! (PROTOCOL.md §9.1).
//!
//! Every check is per item: an item that fails is dropped alone with a [`Rejection`]
//! naming why (the `outcome` label of `faultline_ingest_session_items_total`), and the
//! rest of its envelope is kept. In an aggregate, each bucket whose `started` is out of
//! range is dropped, and the item only when none is left.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::event::parse_timestamp;

/// How old a session's `started`/`timestamp` may be: Relay's `max_session_secs_in_past`
/// (5 days).
pub const MAX_AGE_MS: i64 = 5 * 24 * 3600 * 1000;
/// How far in the future they may be: Relay's `max_secs_in_future` (60 s).
pub const MAX_FUTURE_MS: i64 = 60 * 1000;
/// Session items one envelope may carry (Relay's limit); more are dropped.
pub const MAX_ITEMS_PER_ENVELOPE: usize = 100;

/// A session's status as the SDK reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// `ok`: running (not ended yet).
    Ok,
    /// `exited`: ended normally.
    Exited,
    /// `crashed`: ended by an unhandled error or a crash.
    Crashed,
    /// `abnormal`: ended without a clean exit (killed, power loss, ANR).
    Abnormal,
    /// `errored`: ended with errors (some SDKs say so instead of counting `errors`).
    Errored,
    /// `unhandled`: an unhandled error that did not end the app (browser SDK).
    Unhandled,
}

impl SessionStatus {
    /// The status of a wire value; `None` for anything else (Relay's `Unknown(..)`,
    /// which a processing Relay drops).
    pub fn parse(s: &str) -> Option<SessionStatus> {
        Some(match s {
            "ok" => SessionStatus::Ok,
            "exited" => SessionStatus::Exited,
            "crashed" => SessionStatus::Crashed,
            "abnormal" => SessionStatus::Abnormal,
            "errored" => SessionStatus::Errored,
            "unhandled" => SessionStatus::Unhandled,
            _ => return None,
        })
    }
}

/// Where a session counts: its final state, worst wins. The order is the ranking (a later
/// update can only move a session to a worse state), and the number is what the database
/// stores (`session_states.status`, `session_users.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Ended (or still running) without errors.
    Healthy = 0,
    /// Saw errors (`errors > 0` or status `errored`), did not crash.
    Errored = 1,
    /// An unhandled error that did not end it: errored in the rates, counted on its own too.
    Unhandled = 2,
    /// Ended abnormally.
    Abnormal = 3,
    /// Crashed.
    Crashed = 4,
}

impl Health {
    pub const ALL: [Health; 5] = [
        Health::Healthy,
        Health::Errored,
        Health::Unhandled,
        Health::Abnormal,
        Health::Crashed,
    ];

    /// The stored number back to a state (unknown numbers read as healthy: never worse
    /// than what was written).
    pub fn from_i16(n: i16) -> Health {
        match n {
            1 => Health::Errored,
            2 => Health::Unhandled,
            3 => Health::Abnormal,
            4 => Health::Crashed,
            _ => Health::Healthy,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a session item (or an aggregate bucket) was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not JSON, or not the item's shape (a required field missing or of the wrong type).
    #[error("invalid session payload: {0}")]
    InvalidJson(String),
    /// A status Relay does not know.
    #[error("unknown session status `{0}`")]
    UnknownStatus(String),
    /// `attrs.release` missing, empty or not a valid release name.
    #[error("invalid release: {0}")]
    InvalidRelease(String),
    /// Started or updated more than 5 days before it arrived.
    #[error("session is older than 5 days")]
    TooOld,
    /// Started or updated more than a minute after it arrived.
    #[error("session is in the future")]
    InFuture,
    /// An aggregate item without any bucket left.
    #[error("no session aggregates left")]
    Empty,
    /// Past the 100 session items one envelope may carry.
    #[error("too many session items in one envelope")]
    TooMany,
}

impl Rejection {
    /// The metrics label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::UnknownStatus(_) => "unknown_status",
            Rejection::InvalidRelease(_) => "invalid_release",
            Rejection::TooOld => "too_old",
            Rejection::InFuture => "in_future",
            Rejection::Empty => "empty",
            Rejection::TooMany => "too_many",
        }
    }
}

/// `attrs` of both item kinds, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAttributes {
    pub release: String,
    /// `None` when absent or invalid (an invalid environment is removed, the session kept).
    pub environment: Option<String>,
}

/// One update of one session, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUpdate {
    /// 32 lowercase hex digits.
    pub sid: String,
    /// The distinct id (user), if any.
    pub did: Option<String>,
    pub seq: u64,
    pub init: bool,
    pub started: DateTime<Utc>,
    pub timestamp: DateTime<Utc>,
    /// Seconds.
    pub duration: Option<f64>,
    pub status: SessionStatus,
    pub errors: u64,
    pub attrs: SessionAttributes,
}

impl SessionUpdate {
    /// The state this update puts its session in.
    pub fn health(&self) -> Health {
        match self.status {
            SessionStatus::Crashed => Health::Crashed,
            SessionStatus::Abnormal => Health::Abnormal,
            SessionStatus::Unhandled => Health::Unhandled,
            SessionStatus::Errored => Health::Errored,
            SessionStatus::Ok | SessionStatus::Exited if self.errors > 0 => Health::Errored,
            SessionStatus::Ok | SessionStatus::Exited => Health::Healthy,
        }
    }
}

/// One bucket of a `sessions` item: sessions started in one minute, by how they ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateBucket {
    pub started: DateTime<Utc>,
    pub did: Option<String>,
    /// Sessions per [`Health`], in its order: exited, errored, unhandled, abnormal, crashed.
    pub counts: [u64; 5],
}

impl AggregateBucket {
    /// The worst state any of the bucket's sessions reached (the user's, when `did` is set).
    pub fn worst(&self) -> Option<Health> {
        Health::ALL
            .iter()
            .rev()
            .find(|h| self.counts[h.index()] > 0)
            .copied()
    }
}

/// A `sessions` item, checked: its buckets that are within the time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAggregates {
    pub buckets: Vec<AggregateBucket>,
    pub attrs: SessionAttributes,
    /// Buckets dropped for their age (each counted as an outcome by ingest).
    pub dropped: Vec<Rejection>,
}

#[derive(Deserialize)]
struct RawAttrs {
    release: Option<String>,
    environment: Option<String>,
}

#[derive(Deserialize)]
struct RawUpdate {
    sid: Option<String>,
    did: Option<String>,
    seq: Option<u64>,
    #[serde(default)]
    init: bool,
    timestamp: Option<Value>,
    started: Value,
    duration: Option<f64>,
    status: Option<String>,
    #[serde(default)]
    errors: u64,
    attrs: RawAttrs,
}

#[derive(Deserialize)]
struct RawBucket {
    started: Value,
    did: Option<String>,
    #[serde(default)]
    exited: u32,
    #[serde(default)]
    errored: u32,
    #[serde(default)]
    abnormal: u32,
    #[serde(default)]
    unhandled: u32,
    #[serde(default)]
    crashed: u32,
}

#[derive(Deserialize)]
struct RawAggregates {
    aggregates: Vec<RawBucket>,
    attrs: RawAttrs,
}

/// Smallest difference between the envelope's `sent_at` and our clock that counts as a
/// wrong client clock (Relay's 55 minutes).
pub const MINIMUM_CLOCK_DRIFT_MS: i64 = 55 * 60 * 1000;

/// How far to move a client's times (`received - sent_at`) when its clock is off by at
/// least [`MINIMUM_CLOCK_DRIFT_MS`]; 0 otherwise (and without `sent_at`).
pub fn clock_drift_ms(sent_at_ms: Option<i64>, received_ms: i64) -> i64 {
    match sent_at_ms {
        Some(sent) if received_ms.saturating_sub(sent).abs() >= MINIMUM_CLOCK_DRIFT_MS => {
            received_ms.saturating_sub(sent)
        }
        _ => 0,
    }
}

/// Reads a `session` item received at `received_ms` (Unix ms).
pub fn parse_update(payload: &[u8], received_ms: i64) -> Result<SessionUpdate, Rejection> {
    parse_update_drifted(payload, received_ms, 0)
}

/// [`parse_update`] for a client whose clock is `drift_ms` behind ours ([`clock_drift_ms`]):
/// its times are moved by that much before they are checked, as Relay does.
pub fn parse_update_drifted(
    payload: &[u8],
    received_ms: i64,
    drift_ms: i64,
) -> Result<SessionUpdate, Rejection> {
    let raw: RawUpdate =
        serde_json::from_slice(payload).map_err(|e| Rejection::InvalidJson(e.to_string()))?;
    let status = match raw.status.as_deref() {
        None => SessionStatus::Ok,
        Some(s) => SessionStatus::parse(s).ok_or_else(|| Rejection::UnknownStatus(s.into()))?,
    };
    let sid = match raw.sid.as_deref() {
        None => uuid::Uuid::new_v4(),
        Some(s) => uuid::Uuid::parse_str(s.trim())
            .map_err(|e| Rejection::InvalidJson(format!("sid: {e}")))?,
    };
    let attrs = attributes(raw.attrs)?;
    let started = shift(time(&raw.started, "started")?, drift_ms);
    // A missing update time is the time it arrived; one before the start is the start.
    let timestamp = match &raw.timestamp {
        None | Some(Value::Null) => ms_to_time(received_ms),
        Some(v) => shift(time(v, "timestamp")?, drift_ms),
    }
    .max(started);
    within_limits(started, received_ms)?;
    within_limits(timestamp, received_ms)?;
    Ok(SessionUpdate {
        sid: sid.simple().to_string(),
        did: distinct_id(raw.did),
        seq: raw.seq.unwrap_or(received_ms.max(0) as u64),
        init: raw.init,
        started,
        timestamp,
        duration: raw.duration.filter(|d| d.is_finite() && *d >= 0.0),
        status,
        errors: raw.errors,
        attrs,
    })
}

/// Reads a `sessions` item received at `received_ms` (Unix ms).
pub fn parse_aggregates(payload: &[u8], received_ms: i64) -> Result<SessionAggregates, Rejection> {
    parse_aggregates_drifted(payload, received_ms, 0)
}

/// [`parse_aggregates`] for a client whose clock is `drift_ms` behind ours.
pub fn parse_aggregates_drifted(
    payload: &[u8],
    received_ms: i64,
    drift_ms: i64,
) -> Result<SessionAggregates, Rejection> {
    let raw: RawAggregates =
        serde_json::from_slice(payload).map_err(|e| Rejection::InvalidJson(e.to_string()))?;
    let attrs = attributes(raw.attrs)?;
    let mut buckets = Vec::with_capacity(raw.aggregates.len());
    let mut dropped = Vec::new();
    for b in raw.aggregates {
        let started = shift(time(&b.started, "aggregates.started")?, drift_ms);
        if let Err(why) = within_limits(started, received_ms) {
            dropped.push(why);
            continue;
        }
        buckets.push(AggregateBucket {
            started,
            did: distinct_id(b.did),
            counts: [
                b.exited.into(),
                b.errored.into(),
                b.unhandled.into(),
                b.abnormal.into(),
                b.crashed.into(),
            ],
        });
    }
    if buckets.is_empty() {
        return Err(dropped.pop().unwrap_or(Rejection::Empty));
    }
    Ok(SessionAggregates {
        buckets,
        attrs,
        dropped,
    })
}

fn time(value: &Value, field: &str) -> Result<DateTime<Utc>, Rejection> {
    parse_timestamp(value).ok_or_else(|| Rejection::InvalidJson(format!("{field} is not a time")))
}

fn shift(t: DateTime<Utc>, drift_ms: i64) -> DateTime<Utc> {
    t.checked_add_signed(chrono::Duration::milliseconds(drift_ms))
        .unwrap_or(t)
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}

fn within_limits(t: DateTime<Utc>, received_ms: i64) -> Result<(), Rejection> {
    let ms = t.timestamp_millis();
    if ms < received_ms.saturating_sub(MAX_AGE_MS) {
        Err(Rejection::TooOld)
    } else if ms > received_ms.saturating_add(MAX_FUTURE_MS) {
        Err(Rejection::InFuture)
    } else {
        Ok(())
    }
}

/// Relay's release rule: trimmed, 1..=200 bytes, not `.`, `..` or `latest`, none of `/`,
/// CR, LF, TAB, form feed. The environment: same characters, at most 64 bytes, not `.`,
/// `..` or `none`; an invalid one is dropped and the session kept.
fn attributes(raw: RawAttrs) -> Result<SessionAttributes, Rejection> {
    let release = raw.release.as_deref().map(str::trim).unwrap_or_default();
    if release.is_empty() {
        return Err(Rejection::InvalidRelease("attrs.release is missing".into()));
    }
    if release.len() > 200
        || matches!(release, "." | "..")
        || release.eq_ignore_ascii_case("latest")
        || release.contains(forbidden)
    {
        return Err(Rejection::InvalidRelease(format!(
            "`{}` is not a valid release name",
            release.chars().take(64).collect::<String>()
        )));
    }
    let environment = raw.environment.map(|e| e.trim().to_string()).filter(|e| {
        !e.is_empty()
            && e.len() <= 64
            && !matches!(e.as_str(), "." | "..")
            && !e.eq_ignore_ascii_case("none")
            && !e.contains(forbidden)
    });
    Ok(SessionAttributes {
        release: release.to_string(),
        environment,
    })
}

fn forbidden(c: char) -> bool {
    matches!(c, '/' | '\r' | '\n' | '\t' | '\x0c')
}

/// The distinct id: trimmed; empty or the nil UUID means none; long ids are cut (at a
/// character boundary) so a row's key stays small.
fn distinct_id(did: Option<String>) -> Option<String> {
    let did = did?;
    let did = did.trim();
    if did.is_empty() || uuid::Uuid::parse_str(did).is_ok_and(|u| u.is_nil()) {
        return None;
    }
    let mut end = did.len().min(128);
    while !did.is_char_boundary(end) {
        end -= 1;
    }
    Some(did[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

    fn update(json: &str) -> Result<SessionUpdate, Rejection> {
        parse_update(json.as_bytes(), NOW)
    }

    #[test]
    fn reads_a_python_sdk_update() {
        let u = update(
            r#"{"sid":"7c7b6585-f06b-4f1e-8a9c-7d5e3b2a1f00","did":"42","init":true,
                "started":"2026-01-01T09:59:55.000000Z","timestamp":"2026-01-01T10:00:00Z",
                "status":"exited","errors":0,"duration":4.9,
                "attrs":{"release":"app@1.0.0","environment":"production","ip_address":"{{auto}}"}}"#,
        )
        .expect("valid");
        assert_eq!(u.sid, "7c7b6585f06b4f1e8a9c7d5e3b2a1f00");
        assert_eq!(u.did.as_deref(), Some("42"));
        assert!(u.init);
        assert_eq!(u.status, SessionStatus::Exited);
        assert_eq!(u.health(), Health::Healthy);
        assert_eq!(u.attrs.release, "app@1.0.0");
        assert_eq!(u.attrs.environment.as_deref(), Some("production"));
        assert_eq!(u.duration, Some(4.9));
    }

    #[test]
    fn defaults_like_relay() {
        // No sid (a random one), no status (ok), no timestamp (receive time), unix
        // seconds for started, a nil did (none).
        let u = update(
            r#"{"started":1767261590.5,"did":"00000000-0000-0000-0000-000000000000",
                "attrs":{"release":"  r1  "}}"#,
        )
        .expect("valid");
        assert_eq!(u.sid.len(), 32);
        assert_eq!(u.status, SessionStatus::Ok);
        assert_eq!(u.timestamp.timestamp_millis(), NOW);
        assert_eq!(u.started.timestamp_millis(), NOW - 9_500);
        assert_eq!(u.did, None);
        assert_eq!(u.attrs.release, "r1");
        assert_eq!(u.attrs.environment, None);
        assert!(!u.init);
    }

    #[test]
    fn a_timestamp_before_the_start_is_the_start() {
        let u = update(
            r#"{"started":"2026-01-01T09:59:00Z","timestamp":"2026-01-01T09:00:00Z","attrs":{"release":"r"}}"#,
        )
        .expect("valid");
        assert_eq!(u.timestamp, u.started);
    }

    #[test]
    fn health_is_the_worst_of_status_and_errors() {
        let cases = [
            (r#""status":"ok""#, Health::Healthy),
            (r#""status":"exited""#, Health::Healthy),
            (r#""status":"ok","errors":1"#, Health::Errored),
            (r#""status":"exited","errors":3"#, Health::Errored),
            (r#""status":"errored""#, Health::Errored),
            (r#""status":"unhandled","errors":1"#, Health::Unhandled),
            (r#""status":"abnormal""#, Health::Abnormal),
            (r#""status":"crashed","errors":1"#, Health::Crashed),
        ];
        for (fields, health) in cases {
            let json = format!(
                r#"{{{fields},"started":"2026-01-01T09:59:00Z","attrs":{{"release":"r"}}}}"#
            );
            assert_eq!(update(&json).expect(&json).health(), health, "{json}");
        }
        assert!(Health::Crashed > Health::Abnormal && Health::Abnormal > Health::Unhandled);
        assert!(Health::Unhandled > Health::Errored && Health::Errored > Health::Healthy);
        for h in Health::ALL {
            assert_eq!(Health::from_i16(h as i16), h);
        }
    }

    #[test]
    fn bad_updates_are_refused_with_their_reason() {
        let ok_start = r#""started":"2026-01-01T09:59:00Z""#;
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "invalid_json"),
            ("[]".into(), "invalid_json"),
            (r#"{"attrs":{"release":"r"}}"#.into(), "invalid_json"),
            (format!(r#"{{{ok_start}}}"#), "invalid_json"),
            (format!(r#"{{{ok_start},"attrs":{{}}}}"#), "invalid_release"),
            (
                format!(r#"{{{ok_start},"attrs":{{"release":" "}}}}"#),
                "invalid_release",
            ),
            (
                format!(r#"{{{ok_start},"attrs":{{"release":"latest"}}}}"#),
                "invalid_release",
            ),
            (
                format!(r#"{{{ok_start},"attrs":{{"release":"a/b"}}}}"#),
                "invalid_release",
            ),
            (
                format!(
                    r#"{{{ok_start},"attrs":{{"release":"{}"}}}}"#,
                    "x".repeat(201)
                ),
                "invalid_release",
            ),
            (
                format!(r#"{{{ok_start},"status":"sleeping","attrs":{{"release":"r"}}}}"#),
                "unknown_status",
            ),
            (
                format!(r#"{{{ok_start},"status":"Crashed","attrs":{{"release":"r"}}}}"#),
                "unknown_status",
            ),
            (
                format!(r#"{{{ok_start},"sid":"not-a-uuid","attrs":{{"release":"r"}}}}"#),
                "invalid_json",
            ),
            (
                format!(r#"{{{ok_start},"errors":-1,"attrs":{{"release":"r"}}}}"#),
                "invalid_json",
            ),
            (
                r#"{"started":"yesterday","attrs":{"release":"r"}}"#.into(),
                "invalid_json",
            ),
            (
                r#"{"started":"2025-12-27T09:59:00Z","attrs":{"release":"r"}}"#.into(),
                "too_old",
            ),
            (
                r#"{"started":"2026-01-01T10:01:01Z","attrs":{"release":"r"}}"#.into(),
                "in_future",
            ),
            (
                format!(
                    r#"{{{ok_start},"timestamp":"2026-01-01T11:00:00Z","attrs":{{"release":"r"}}}}"#
                ),
                "in_future",
            ),
        ];
        for (json, outcome) in cases {
            let got = update(&json).expect_err(&json);
            assert_eq!(got.outcome(), outcome, "{json}: {got}");
        }
        // Just inside both limits.
        update(r#"{"started":"2026-01-01T10:00:59Z","attrs":{"release":"r"}}"#).expect("future ok");
        update(r#"{"started":"2025-12-27T10:00:01Z","attrs":{"release":"r"}}"#).expect("old ok");
    }

    #[test]
    fn an_invalid_environment_is_removed_and_the_session_kept() {
        for env in [
            "none",
            "None",
            ".",
            "..",
            "a/b",
            "tab\there",
            &"e".repeat(65),
        ] {
            let json = format!(
                r#"{{"started":"2026-01-01T09:59:00Z","attrs":{{"release":"r","environment":{}}}}}"#,
                serde_json::to_string(env).expect("string")
            );
            assert_eq!(update(&json).expect(&json).attrs.environment, None, "{env}");
        }
    }

    #[test]
    fn reads_aggregates_and_drops_buckets_out_of_range() {
        let a = parse_aggregates(
            br#"{"aggregates":[
                {"started":"2026-01-01T09:58:00Z","exited":12,"errored":1,"crashed":2},
                {"started":"2026-01-01T09:59:00Z","did":"u1","abnormal":1,"unhandled":4},
                {"started":"2025-01-01T09:59:00Z","exited":5},
                {"started":"2027-01-01T09:59:00Z","exited":5}],
              "attrs":{"release":"api@2.3.0","environment":"production"}}"#,
            NOW,
        )
        .expect("valid");
        assert_eq!(a.buckets.len(), 2);
        assert_eq!(a.buckets[0].counts, [12, 1, 0, 0, 2]);
        assert_eq!(a.buckets[0].worst(), Some(Health::Crashed));
        assert_eq!(a.buckets[1].counts, [0, 0, 4, 1, 0]);
        assert_eq!(a.buckets[1].did.as_deref(), Some("u1"));
        assert_eq!(a.dropped, vec![Rejection::TooOld, Rejection::InFuture]);
        assert_eq!(a.attrs.release, "api@2.3.0");
    }

    #[test]
    fn bad_aggregates_are_refused_whole() {
        let cases = [
            (&br#"{"aggregates":[{"started":"2025-01-01T00:00:00Z","exited":1}],"attrs":{"release":"r"}}"#[..], "too_old"),
            (br#"{"aggregates":[],"attrs":{"release":"r"}}"#, "empty"),
            (br#"{"aggregates":[{"exited":1}],"attrs":{"release":"r"}}"#, "invalid_json"),
            (br#"{"aggregates":[{"started":"2026-01-01T09:59:00Z","exited":-1}],"attrs":{"release":"r"}}"#, "invalid_json"),
            (br#"{"aggregates":[{"started":"2026-01-01T09:59:00Z","exited":5000000000}],"attrs":{"release":"r"}}"#, "invalid_json"),
            (br#"{"aggregates":[{"started":"2026-01-01T09:59:00Z","exited":1}]}"#, "invalid_json"),
            (br#"{"aggregates":[{"started":"2026-01-01T09:59:00Z","exited":1}],"attrs":{"release":".."}}"#, "invalid_release"),
            (b"\xff\xfe", "invalid_json"),
        ];
        for (json, outcome) in cases {
            let got = parse_aggregates(json, NOW).expect_err(&String::from_utf8_lossy(json));
            assert_eq!(got.outcome(), outcome, "{}", String::from_utf8_lossy(json));
        }
    }

    #[test]
    fn a_client_clock_off_by_an_hour_or_more_is_corrected() {
        // Sent by a device whose clock is 2 days behind: its session is from just now.
        let two_days = 2 * 24 * 3600 * 1000;
        let drift = clock_drift_ms(Some(NOW - two_days), NOW);
        assert_eq!(drift, two_days);
        let u = parse_update_drifted(
            br#"{"started":"2025-12-30T09:59:00Z","timestamp":"2025-12-30T09:59:30Z","attrs":{"release":"r"}}"#,
            NOW,
            drift,
        )
        .expect("corrected");
        assert_eq!(u.started.timestamp_millis(), NOW - 60_000);
        assert_eq!(u.timestamp.timestamp_millis(), NOW - 30_000);
        let a = parse_aggregates_drifted(
            br#"{"aggregates":[{"started":"2026-01-06T10:00:00Z","exited":1}],"attrs":{"release":"r"}}"#,
            NOW,
            clock_drift_ms(Some(NOW + 5 * 24 * 3600 * 1000), NOW),
        )
        .expect("corrected");
        assert_eq!(a.buckets[0].started.timestamp_millis(), NOW);
        // Under 55 minutes off: not drift, and no sent_at: nothing to correct.
        assert_eq!(clock_drift_ms(Some(NOW - 54 * 60 * 1000), NOW), 0);
        assert_eq!(clock_drift_ms(None, NOW), 0);
    }

    #[test]
    fn long_distinct_ids_are_cut_at_a_character_boundary() {
        let did = "é".repeat(100);
        let json = format!(
            r#"{{"started":"2026-01-01T09:59:00Z","did":"{did}","attrs":{{"release":"r"}}}}"#
        );
        let u = update(&json).expect("valid");
        assert!(
            u.did
                .as_ref()
                .is_some_and(|d| d.len() <= 128 && d.starts_with('é'))
        );
    }
}
