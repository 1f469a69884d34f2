//! Cron monitor check-ins: the `check_in` envelope item and the HTTP check-in endpoint's
//! body, as Relay accepts them (PROTOCOL.md §9.3).
//!
//! ```json
//! {"check_in_id":"…","monitor_slug":"nightly","status":"ok","duration":3.2,
//!  "environment":"production","release":"1.0",
//!  "monitor_config":{"schedule":{"type":"crontab","value":"0 3 * * *"},"checkin_margin":5,
//!                    "max_runtime":30,"timezone":"Europe/Vienna",
//!                    "failure_issue_threshold":2,"recovery_threshold":1}}
//! ```
//!
//! Parsing is where a bad item is refused, alone and with a reason a person can act on
//! (`unknown status "done"`, `crontab "61 * * * *" does not parse: …`): ingest drops that one
//! item and keeps the rest of the envelope. What passes is re-serialized in a normal form
//! ([`CheckIn::to_job_json`]) so the worker never parses the SDK's shape again.

use std::str::FromStr;

use chrono::{DateTime, Months, TimeZone, Timelike, Utc};
use serde_json::{Map, Value, json};

/// Longest monitor slug Relay keeps.
pub const MAX_SLUG: usize = 50;
/// Longest environment name kept.
pub const MAX_ENVIRONMENT: usize = 64;
/// Defaults and bounds from Sentry (minutes; thresholds in check-ins).
pub const DEFAULT_MARGIN_MIN: i64 = 1;
pub const DEFAULT_MAX_RUNTIME_MIN: i64 = 30;
pub const MAX_MINUTES: i64 = 40_320;
pub const MAX_THRESHOLD: i64 = 720;

/// A check-in's status, as stored. SDKs send only the first three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckInStatus {
    /// `in_progress`: the job started.
    InProgress,
    /// `ok`: the job finished.
    Ok,
    /// `error`: the job failed.
    Error,
    /// `missed`: the clock saw no check-in within schedule + margin (server only).
    Missed,
    /// `timeout`: in progress past `max_runtime` (server only).
    Timeout,
}

impl CheckInStatus {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckInStatus::InProgress => "in_progress",
            CheckInStatus::Ok => "ok",
            CheckInStatus::Error => "error",
            CheckInStatus::Missed => "missed",
            CheckInStatus::Timeout => "timeout",
        }
    }

    /// Reads a stored name.
    pub fn from_stored(s: &str) -> Option<CheckInStatus> {
        Some(match s {
            "in_progress" => CheckInStatus::InProgress,
            "ok" => CheckInStatus::Ok,
            "error" => CheckInStatus::Error,
            "missed" => CheckInStatus::Missed,
            "timeout" => CheckInStatus::Timeout,
            _ => return None,
        })
    }

    /// Reads what a client may send (`missed` and `timeout` are the server's to say).
    pub fn from_client(s: &str) -> Option<CheckInStatus> {
        match s {
            "in_progress" => Some(CheckInStatus::InProgress),
            "ok" => Some(CheckInStatus::Ok),
            "error" => Some(CheckInStatus::Error),
            _ => None,
        }
    }

    /// Counts towards opening a monitor issue.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            CheckInStatus::Error | CheckInStatus::Missed | CheckInStatus::Timeout
        )
    }
}

/// Units of an interval schedule (Sentry has no seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl IntervalUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalUnit::Minute => "minute",
            IntervalUnit::Hour => "hour",
            IntervalUnit::Day => "day",
            IntervalUnit::Week => "week",
            IntervalUnit::Month => "month",
            IntervalUnit::Year => "year",
        }
    }

    /// Reads a unit; the plural (`"hours"`) is taken too, as Sentry's validator does.
    pub fn parse(s: &str) -> Option<IntervalUnit> {
        Some(match s.trim().trim_end_matches('s') {
            "minute" => IntervalUnit::Minute,
            "hour" => IntervalUnit::Hour,
            "day" => IntervalUnit::Day,
            "week" => IntervalUnit::Week,
            "month" => IntervalUnit::Month,
            "year" => IntervalUnit::Year,
            _ => return None,
        })
    }
}

/// When a monitor expects its job: a crontab or every N units.
#[derive(Debug, Clone)]
pub enum Schedule {
    Crontab {
        text: String,
        cron: Box<croner::Cron>,
    },
    Interval {
        value: u32,
        unit: IntervalUnit,
    },
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.stored() == other.stored()
    }
}

/// Why a check-in (or a monitor's configuration) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckInError {
    #[error("check-in is not a JSON object: {0}")]
    NotJson(String),
    #[error("the monitor slug is empty or invalid")]
    Slug,
    #[error("unknown status {0:?} (expected in_progress, ok or error)")]
    Status(String),
    #[error("check_in_id {0:?} is not a UUID")]
    CheckInId(String),
    #[error("duration must be a non-negative number of seconds")]
    Duration,
    #[error("monitor_config: {0}")]
    Config(String),
}

impl Schedule {
    /// A crontab: five fields or `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
    /// `@hourly` (what Sentry accepts).
    pub fn crontab(text: &str) -> Result<Schedule, CheckInError> {
        use croner::parser::{CronParser, Seconds, Year};
        let text = text.trim();
        let bad =
            |why: String| CheckInError::Config(format!("crontab {text:?} does not parse: {why}"));
        if text.starts_with('@') {
            if !matches!(
                text,
                "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@hourly"
            ) {
                return Err(bad("unknown nickname".into()));
            }
        } else if text.split_whitespace().count() != 5 {
            return Err(bad("expected 5 fields".into()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Schedule::Crontab {
            text: text.to_string(),
            cron: Box::new(cron),
        })
    }

    /// Every `value` units, `value` at least 1.
    pub fn interval(value: i64, unit: &str) -> Result<Schedule, CheckInError> {
        let unit = IntervalUnit::parse(unit).ok_or_else(|| {
            CheckInError::Config(format!(
                "interval unit {unit:?} is not one of minute, hour, day, week, month, year"
            ))
        })?;
        let value = u32::try_from(value)
            .ok()
            .filter(|v| (1..=100_000).contains(v))
            .ok_or_else(|| CheckInError::Config(format!("interval {value} must be at least 1")))?;
        Ok(Schedule::Interval { value, unit })
    }

    /// `crontab` or `interval`, as stored and as Sentry's `schedule_type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Crontab { .. } => "crontab",
            Schedule::Interval { .. } => "interval",
        }
    }

    /// The stored text: the crontab, or `"2 hour"`.
    pub fn stored(&self) -> String {
        match self {
            Schedule::Crontab { text, .. } => text.clone(),
            Schedule::Interval { value, unit } => format!("{value} {}", unit.as_str()),
        }
    }

    /// Reads a stored schedule (`kind`, `stored`).
    pub fn from_stored(kind: &str, stored: &str) -> Result<Schedule, CheckInError> {
        if kind == "interval" {
            let (value, unit) = stored
                .split_once(' ')
                .ok_or_else(|| CheckInError::Config(format!("bad interval {stored:?}")))?;
            let value = value
                .parse::<i64>()
                .map_err(|_| CheckInError::Config(format!("bad interval {stored:?}")))?;
            Schedule::interval(value, unit)
        } else {
            Schedule::crontab(stored)
        }
    }

    /// Sentry's JSON: `"0 3 * * *"` or `[2, "hour"]`.
    pub fn sentry_json(&self) -> Value {
        match self {
            Schedule::Crontab { text, .. } => json!(text),
            Schedule::Interval { value, unit } => json!([value, unit.as_str()]),
        }
    }

    /// The first expected time strictly after `after_ms`, computed in `tz` (Sentry counts
    /// from the reference time cut to the minute). `None` when there is none (a crontab
    /// like `0 0 30 2 *` never fires).
    pub fn next_after(&self, tz: chrono_tz::Tz, after_ms: i64) -> Option<i64> {
        let at = Utc
            .timestamp_millis_opt(after_ms)
            .single()?
            .with_timezone(&tz);
        let minute = at.with_second(0)?.with_nanosecond(0)?;
        match self {
            Schedule::Crontab { cron, .. } => cron
                .find_next_occurrence(&minute, false)
                .ok()
                .map(|t| t.timestamp_millis()),
            Schedule::Interval { value, unit } => {
                let next = add_units(minute, *value, *unit)?;
                Some(next.timestamp_millis())
            }
        }
    }
}

fn add_units(
    t: DateTime<chrono_tz::Tz>,
    value: u32,
    unit: IntervalUnit,
) -> Option<DateTime<chrono_tz::Tz>> {
    let v = i64::from(value);
    match unit {
        IntervalUnit::Minute => t.checked_add_signed(chrono::Duration::minutes(v)),
        IntervalUnit::Hour => t.checked_add_signed(chrono::Duration::hours(v)),
        // Days and weeks on the wall clock: a daily job stays at 03:00 across DST.
        IntervalUnit::Day | IntervalUnit::Week => {
            let days = if unit == IntervalUnit::Week { v * 7 } else { v };
            let naive = t
                .naive_local()
                .checked_add_signed(chrono::Duration::days(days))?;
            local(t.timezone(), naive)
        }
        IntervalUnit::Month | IntervalUnit::Year => {
            let months = if unit == IntervalUnit::Year {
                value.checked_mul(12)?
            } else {
                value
            };
            let naive = t.naive_local().checked_add_months(Months::new(months))?;
            local(t.timezone(), naive)
        }
    }
}

/// A wall-clock time in `tz`; in a DST gap the instant an hour later, in an overlap the
/// earlier one.
fn local(tz: chrono_tz::Tz, naive: chrono::NaiveDateTime) -> Option<DateTime<chrono_tz::Tz>> {
    tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&naive.checked_add_signed(chrono::Duration::hours(1))?)
            .earliest()
    })
}

/// A monitor's configuration as a check-in (or the Web API, or the page) sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub schedule: Schedule,
    /// Minutes after the expected time before a check-in counts as missed.
    pub checkin_margin: i64,
    /// Minutes an `in_progress` check-in may last before it times out.
    pub max_runtime: i64,
    /// IANA name; the crontab is read on this zone's wall clock.
    pub timezone: chrono_tz::Tz,
    pub failure_issue_threshold: i64,
    pub recovery_threshold: i64,
}

impl MonitorConfig {
    /// Reads `monitor_config` as SDKs send it (`schedule: {type, value, unit}`).
    pub fn from_sdk(v: &Value) -> Result<MonitorConfig, CheckInError> {
        let obj = v
            .as_object()
            .ok_or_else(|| CheckInError::Config("not an object".into()))?;
        let schedule = obj
            .get("schedule")
            .ok_or_else(|| CheckInError::Config("schedule is missing".into()))?;
        let schedule = match schedule {
            // Some clients send the crontab as a plain string.
            Value::String(s) => Schedule::crontab(s)?,
            Value::Object(s) => {
                let ty = s.get("type").and_then(Value::as_str).unwrap_or("crontab");
                match ty {
                    "crontab" => Schedule::crontab(
                        s.get("value").and_then(Value::as_str).ok_or_else(|| {
                            CheckInError::Config("schedule.value must be a crontab string".into())
                        })?,
                    )?,
                    "interval" => Schedule::interval(
                        s.get("value").and_then(int).ok_or_else(|| {
                            CheckInError::Config("schedule.value must be an integer".into())
                        })?,
                        s.get("unit").and_then(Value::as_str).unwrap_or(""),
                    )?,
                    other => {
                        return Err(CheckInError::Config(format!(
                            "schedule type {other:?} is not crontab or interval"
                        )));
                    }
                }
            }
            _ => return Err(CheckInError::Config("schedule must be an object".into())),
        };
        Self::with_options(schedule, obj)
    }

    /// The options beside the schedule, with Sentry's defaults and bounds; shared by the
    /// SDK's `monitor_config` and the Web API's `config`.
    pub fn with_options(
        schedule: Schedule,
        obj: &Map<String, Value>,
    ) -> Result<MonitorConfig, CheckInError> {
        let bounded = |key: &str, default: i64, max: i64| -> Result<i64, CheckInError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => int(v).filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    CheckInError::Config(format!("{key} must be a whole number from 1 to {max}"))
                }),
            }
        };
        let timezone = match obj.get("timezone") {
            None | Some(Value::Null) => chrono_tz::UTC,
            Some(Value::String(s)) if s.is_empty() => chrono_tz::UTC,
            Some(Value::String(s)) => chrono_tz::Tz::from_str(s)
                .map_err(|_| CheckInError::Config(format!("unknown timezone {s:?}")))?,
            Some(_) => return Err(CheckInError::Config("timezone must be a string".into())),
        };
        Ok(MonitorConfig {
            schedule,
            checkin_margin: bounded("checkin_margin", DEFAULT_MARGIN_MIN, MAX_MINUTES)?,
            max_runtime: bounded("max_runtime", DEFAULT_MAX_RUNTIME_MIN, MAX_MINUTES)?,
            timezone,
            failure_issue_threshold: bounded("failure_issue_threshold", 1, MAX_THRESHOLD)?,
            recovery_threshold: bounded("recovery_threshold", 1, MAX_THRESHOLD)?,
        })
    }

    /// Reads the Web API's `config` (`schedule_type` + `schedule` as `"0 3 * * *"` or
    /// `[2, "hour"]`).
    pub fn from_sentry(obj: &Map<String, Value>) -> Result<MonitorConfig, CheckInError> {
        let schedule = match (
            obj.get("schedule_type").and_then(Value::as_str),
            obj.get("schedule"),
        ) {
            (Some("interval") | None, Some(Value::Array(parts))) if parts.len() == 2 => {
                Schedule::interval(
                    parts[0]
                        .as_i64()
                        .or_else(|| parts[0].as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| {
                            CheckInError::Config("schedule[0] must be an integer".into())
                        })?,
                    parts[1].as_str().unwrap_or(""),
                )?
            }
            (Some("crontab") | None, Some(Value::String(text))) => Schedule::crontab(text)?,
            (Some(other), _) if other != "crontab" && other != "interval" => {
                return Err(CheckInError::Config(format!(
                    "schedule_type {other:?} is not crontab or interval"
                )));
            }
            (_, None) => return Err(CheckInError::Config("schedule is required".into())),
            _ => {
                return Err(CheckInError::Config(
                    "schedule must be a crontab string, or [number, unit] for an interval".into(),
                ));
            }
        };
        Self::with_options(schedule, obj)
    }

    /// The Web API's `config`, as Sentry's serializer writes it.
    pub fn to_sentry_json(&self) -> Value {
        json!({
            "schedule_type": self.schedule.kind(),
            "schedule": self.schedule.sentry_json(),
            "checkin_margin": self.checkin_margin,
            "max_runtime": self.max_runtime,
            "timezone": self.timezone.name(),
            "failure_issue_threshold": self.failure_issue_threshold,
            "recovery_threshold": self.recovery_threshold,
            "alert_rule_id": null,
        })
    }

    /// The normal form that travels on the queue (SDK shape, every field present).
    pub fn to_json(&self) -> Value {
        let schedule = match &self.schedule {
            Schedule::Crontab { text, .. } => json!({"type": "crontab", "value": text}),
            Schedule::Interval { value, unit } => {
                json!({"type": "interval", "value": value, "unit": unit.as_str()})
            }
        };
        json!({
            "schedule": schedule,
            "checkin_margin": self.checkin_margin,
            "max_runtime": self.max_runtime,
            "timezone": self.timezone.name(),
            "failure_issue_threshold": self.failure_issue_threshold,
            "recovery_threshold": self.recovery_threshold,
        })
    }
}

/// A whole number, also from `5.0` (JSON from some clients) but not from `5.5`.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// Sentry's slug rules for monitor slugs: lower-case letters, digits, `-` and `_`;
/// anything else becomes `-`; at most 50 characters; no leading or trailing `-`.
pub fn slugify(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len().min(MAX_SLUG));
    let mut dash = false;
    for c in raw.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    let mut out: String = out.chars().take(MAX_SLUG).collect();
    while out.ends_with('-') {
        out.pop();
    }
    (!out.is_empty()).then_some(out)
}

/// One check-in as the worker receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckIn {
    /// `None` for the nil UUID or none at all: "the latest in-progress check-in" when
    /// closing, a new one when opening.
    pub check_in_id: Option<uuid::Uuid>,
    pub monitor_slug: String,
    pub status: CheckInStatus,
    /// Milliseconds (SDKs send seconds).
    pub duration_ms: Option<i64>,
    pub environment: String,
    pub release: Option<String>,
    pub monitor_config: Option<MonitorConfig>,
    pub trace_id: Option<String>,
}

impl CheckIn {
    /// Reads a `check_in` item's payload (or a JSON body of the HTTP endpoint).
    pub fn parse(payload: &[u8]) -> Result<CheckIn, CheckInError> {
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| CheckInError::NotJson(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| CheckInError::NotJson("not an object".into()))?;
        Self::from_object(obj)
    }

    /// Reads the fields of a check-in object.
    pub fn from_object(obj: &Map<String, Value>) -> Result<CheckIn, CheckInError> {
        let monitor_slug = obj
            .get("monitor_slug")
            .and_then(Value::as_str)
            .and_then(slugify)
            .ok_or(CheckInError::Slug)?;
        let status = match obj.get("status") {
            Some(Value::String(s)) => {
                CheckInStatus::from_client(s).ok_or_else(|| CheckInError::Status(s.clone()))?
            }
            Some(other) => return Err(CheckInError::Status(other.to_string())),
            None => return Err(CheckInError::Status(String::new())),
        };
        let check_in_id = match obj.get("check_in_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let id =
                    uuid::Uuid::parse_str(s).map_err(|_| CheckInError::CheckInId(s.clone()))?;
                (!id.is_nil()).then_some(id)
            }
            Some(other) => return Err(CheckInError::CheckInId(other.to_string())),
        };
        let duration_ms = match obj.get("duration") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let secs = v
                    .as_f64()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e10)
                    .ok_or(CheckInError::Duration)?;
                Some((secs * 1000.0).round() as i64)
            }
        };
        let text = |key: &str, max: usize| {
            obj.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(max).collect::<String>())
        };
        let environment =
            text("environment", MAX_ENVIRONMENT).unwrap_or_else(|| "production".into());
        let release = text("release", 200);
        let monitor_config = match obj.get("monitor_config") {
            None | Some(Value::Null) => None,
            Some(c) => Some(MonitorConfig::from_sdk(c)?),
        };
        let trace_id = obj
            .get("contexts")
            .and_then(|c| c.get("trace"))
            .and_then(|t| t.get("trace_id"))
            .and_then(Value::as_str)
            .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        Ok(CheckIn {
            check_in_id,
            monitor_slug,
            status,
            duration_ms,
            environment,
            release,
            monitor_config,
            trace_id,
        })
    }

    /// The normal form that travels on the queue; [`CheckIn::parse`] reads it back to the
    /// same check-in.
    pub fn to_job_json(&self) -> Vec<u8> {
        let mut v = json!({
            "monitor_slug": self.monitor_slug,
            "status": self.status.as_str(),
            "environment": self.environment,
        });
        if let Some(id) = self.check_in_id {
            v["check_in_id"] = json!(id.simple().to_string());
        }
        if let Some(ms) = self.duration_ms {
            v["duration"] = json!(ms as f64 / 1000.0);
        }
        if let Some(r) = &self.release {
            v["release"] = json!(r);
        }
        if let Some(c) = &self.monitor_config {
            v["monitor_config"] = c.to_json();
        }
        if let Some(t) = &self.trace_id {
            v["contexts"] = json!({"trace": {"trace_id": t}});
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_millis()
    }

    #[test]
    fn sentry_python_check_ins_parse() {
        let c = CheckIn::parse(
            br#"{"type":"check_in","monitor_slug":"Nightly Backup","check_in_id":"d4a0c8c4a6b14c4c8b35f0b6b2a8b3a1",
                 "status":"in_progress","environment":"prod","release":"1.0",
                 "monitor_config":{"schedule":{"type":"crontab","value":"0 3 * * *"},"checkin_margin":5,
                   "max_runtime":10,"timezone":"Europe/Vienna","failure_issue_threshold":2,"recovery_threshold":3},
                 "contexts":{"trace":{"trace_id":"0AF7651916CD43DD8448EB211C80319C","span_id":"b7ad6b7169203331"}}}"#,
        )
        .expect("parses");
        assert_eq!(c.monitor_slug, "nightly-backup");
        assert_eq!(c.status, CheckInStatus::InProgress);
        assert_eq!(c.environment, "prod");
        let cfg = c.monitor_config.clone().expect("config");
        assert_eq!(cfg.checkin_margin, 5);
        assert_eq!(cfg.timezone, chrono_tz::Europe::Vienna);
        assert_eq!(cfg.failure_issue_threshold, 2);
        assert_eq!(
            c.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        // The queue's normal form reads back to the same check-in.
        assert_eq!(CheckIn::parse(&c.to_job_json()).expect("again"), c);

        let closing = CheckIn::parse(
            br#"{"monitor_slug":"nightly-backup","check_in_id":"00000000-0000-0000-0000-000000000000","status":"ok","duration":1.5}"#,
        )
        .expect("parses");
        assert_eq!(
            closing.check_in_id, None,
            "nil means the latest in progress"
        );
        assert_eq!(closing.duration_ms, Some(1500));
        assert_eq!(closing.environment, "production");
    }

    #[test]
    fn bad_check_ins_say_what_is_wrong() {
        let cases: [(&[u8], &str); 9] = [
            (b"[1]", "not a JSON object"),
            (br#"{"monitor_slug":"","status":"ok"}"#, "slug"),
            (br#"{"monitor_slug":"a","status":"done"}"#, "unknown status \"done\""),
            (br#"{"monitor_slug":"a","status":"missed"}"#, "unknown status"),
            (br#"{"monitor_slug":"a"}"#, "unknown status"),
            (br#"{"monitor_slug":"a","status":"ok","check_in_id":"nope"}"#, "not a UUID"),
            (br#"{"monitor_slug":"a","status":"ok","duration":-1}"#, "duration"),
            (
                br#"{"monitor_slug":"a","status":"ok","monitor_config":{"schedule":{"type":"crontab","value":"61 * * * *"}}}"#,
                "crontab \"61 * * * *\" does not parse",
            ),
            (
                br#"{"monitor_slug":"a","status":"ok","monitor_config":{"schedule":{"type":"crontab","value":"* * * * *"},"timezone":"Mars/Base"}}"#,
                "unknown timezone",
            ),
        ];
        for (payload, want) in cases {
            let err = CheckIn::parse(payload).expect_err("refused").to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
        for bad in ["* * * *", "@every_minute", "* * * * * *", "a b c d e"] {
            assert!(Schedule::crontab(bad).is_err(), "{bad}");
        }
        assert!(Schedule::interval(0, "hour").is_err());
        assert!(Schedule::interval(1, "second").is_err());
        let cfg = serde_json::json!({"schedule":{"type":"interval","value":2,"unit":"hour"},"checkin_margin":0});
        assert!(MonitorConfig::from_sdk(&cfg).is_err(), "margin 0");
    }

    #[test]
    fn next_expected_times_follow_the_monitors_time_zone() {
        let daily = Schedule::crontab("0 3 * * *").expect("crontab");
        // 03:00 in Vienna is 02:00 UTC in winter.
        assert_eq!(
            daily.next_after(chrono_tz::Europe::Vienna, ms("2026-12-05T10:00:00Z")),
            Some(ms("2026-12-06T02:00:00Z"))
        );
        assert_eq!(
            daily.next_after(chrono_tz::UTC, ms("2026-12-05T02:59:30Z")),
            Some(ms("2026-12-05T03:00:00Z"))
        );
        // Strictly after: a check-in at 03:00:20 expects the next day's.
        assert_eq!(
            daily.next_after(chrono_tz::UTC, ms("2026-12-05T03:00:20Z")),
            Some(ms("2026-12-06T03:00:00Z"))
        );
        let hourly = Schedule::crontab("@hourly").expect("nickname");
        assert_eq!(
            hourly.next_after(chrono_tz::UTC, ms("2026-12-05T10:10:00Z")),
            Some(ms("2026-12-05T11:00:00Z"))
        );
        let every2h = Schedule::interval(2, "hours").expect("interval");
        assert_eq!(
            every2h.next_after(chrono_tz::UTC, ms("2026-12-05T10:10:42Z")),
            Some(ms("2026-12-05T12:10:00Z"))
        );
        // A daily interval keeps the wall-clock time across the DST change in Vienna.
        let every_day = Schedule::interval(1, "day").expect("interval");
        assert_eq!(
            every_day.next_after(chrono_tz::Europe::Vienna, ms("2026-03-28T02:00:00Z")),
            Some(ms("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            Schedule::from_stored("interval", "2 hour").expect("stored"),
            every2h
        );
    }

    #[test]
    fn slugs_are_sentrys() {
        assert_eq!(
            slugify("Nightly Backup!").as_deref(),
            Some("nightly-backup")
        );
        assert_eq!(slugify("a_b-c").as_deref(), Some("a_b-c"));
        assert_eq!(slugify("---"), None);
        assert_eq!(slugify(&"x".repeat(80)).map(|s| s.len()), Some(MAX_SLUG));
    }
}
