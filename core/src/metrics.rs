//! Faultline's own metrics, served as Prometheus text on `GET /metrics`.
//!
//! One process-wide set of counters that any part of Faultline bumps directly:
//! `metrics::get().events_stored.inc_by(n)`, or the small helpers below for the steps other
//! modules own (`metrics::email_sent()`, `metrics::symbolication(hit)`). The web process
//! renders them with [`render`].
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: typed metrics
//! registered once, counters and gauges that are plain atomics, no global macro registry
//! and no HTTP server of its own (we already have actix). Ingest's hot path touches only
//! atomics and, for the per-project counter, a shared read lock on a map that changes
//! only when a project sends its first event.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `project` label: the id of the project an event was sent to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectLabel {
    pub project: i64,
}

/// Why ingest refused a request, and for which project. `project` is empty until the DSN
/// key was checked: a path's project id is whatever the sender wrote, and labelling by it
/// would let anyone mint new time series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: &'static str,
    pub project: String,
}

/// `outcome` label for two-way results (hit/miss, sent/failed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// `thread` label of request bodies decompressed by ingest: `event_loop` (small bodies,
/// decoded where they arrived) or `blocking_pool` (large ones, moved off the event loop).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThreadLabel {
    pub thread: &'static str,
}

/// `item` (`session` or `sessions`) and `outcome` (`accepted`, or why it was dropped) of
/// release-health items ingest read.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionItemLabels {
    pub item: &'static str,
    pub outcome: &'static str,
}

/// `state` label of database pool connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub state: &'static str,
}

/// Every metric Faultline exports.
pub struct Metrics {
    registry: Registry,
    /// Events accepted by ingest (answered 200 with an id), per project.
    pub ingest_accepted: Family<ProjectLabel, Counter>,
    /// Requests ingest refused, per reason and project.
    pub ingest_rejected: Family<RejectLabels, Counter>,
    /// Request body bytes read by ingest, as sent (before decompression).
    pub ingest_bytes: Counter,
    /// Request bodies ingest decompressed, by where the work ran.
    pub ingest_decompressions: Family<ThreadLabel, Counter>,
    /// Bytes of decompressed output ingest produced (whole bodies and envelope header lines).
    pub ingest_decompressed_bytes: Counter,
    /// DSN keys missing from ingest's cache: looked up in the database (`found`,
    /// `unknown`) or refused without a lookup because the lookup budget was spent (`skipped`).
    pub ingest_key_lookups: Family<OutcomeLabel, Counter>,
    /// Artifact bundle assemblies refused because every slot and queue place was taken.
    pub assemblies_refused: Counter,
    /// Jobs waiting or running on the queue.
    pub queue_depth: Gauge,
    /// Age of the oldest job still waiting, in seconds (0 when none waits).
    pub queue_oldest_age: Gauge<f64, AtomicU64>,
    /// From ingest accepting an event to its transaction committing, per event.
    pub processing_seconds: Histogram,
    /// Duration of one batch's storage transaction.
    pub store_batch_seconds: Histogram,
    /// Events stored (duplicates of stored events are not counted).
    pub events_stored: Counter,
    /// Events dropped because an event with the same id was already stored.
    pub events_duplicate: Counter,
    /// Issues created.
    pub issues_created: Counter,
    /// Jobs that failed (invalid payload or storage error); apalis retries them.
    pub jobs_failed: Counter,
    /// Stack frames resolved through a source map (`hit`) or not (`miss`).
    pub symbolication: Family<OutcomeLabel, Counter>,
    /// Alert emails `sent` or `failed`.
    pub emails: Family<OutcomeLabel, Counter>,
    /// Main database pool connections by state (`idle`, `in_use`).
    pub db_pool_connections: Family<PoolLabel, Gauge>,
    /// Main database pool size limit.
    pub db_pool_max: Gauge,
    /// Passwords checked against a stored argon2 hash (logins, password changes).
    pub password_verifications: Counter,
    /// Cron check-ins by outcome: `accepted` (queued), `invalid` (refused by ingest, per
    /// item), `stored`, `unknown_monitor`, `disabled` (dropped by the worker).
    pub check_ins: Family<OutcomeLabel, Counter>,
    /// Release-health items read by ingest, per kind and outcome (accepted or dropped).
    pub session_items: Family<SessionItemLabels, Counter>,
    /// Session updates and aggregate buckets the worker counted.
    pub sessions_counted: Counter,
    /// Bytes the worker's pipeline holds for jobs between fetch and commit (charged
    /// against `FAULTLINE_WORKER_MEMORY_MB`).
    pub worker_inflight_bytes: Gauge,
    /// Bytes of request bodies ingest holds while reading, decoding and queueing them
    /// (charged against `FAULTLINE_INGEST_MEMORY_MB`).
    pub ingest_inflight_bytes: Gauge,
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Counts one frame resolved (`true`) or not resolved (`false`) through a source map.
pub fn symbolication(hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    get()
        .symbolication
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
}

/// Counts frames resolved (`hits`) and not resolved (`misses`) through source maps.
pub fn symbolication_frames(hits: u64, misses: u64) {
    let m = &get().symbolication;
    if hits > 0 {
        m.get_or_create(&OutcomeLabel { outcome: "hit" })
            .inc_by(hits);
    }
    if misses > 0 {
        m.get_or_create(&OutcomeLabel { outcome: "miss" })
            .inc_by(misses);
    }
}

/// Counts one alert email handed to the SMTP server.
pub fn email_sent() {
    get()
        .emails
        .get_or_create(&OutcomeLabel { outcome: "sent" })
        .inc();
}

/// Counts one alert email that could not be sent.
pub fn email_failed() {
    get()
        .emails
        .get_or_create(&OutcomeLabel { outcome: "failed" })
        .inc();
}

/// Counts one cron check-in outcome (see [`Metrics::check_ins`]).
pub fn check_in(outcome: &'static str) {
    get()
        .check_ins
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
}

/// The metrics in Prometheus' text exposition format (OpenMetrics 1.0 text, which
/// Prometheus scrapes natively).
pub fn render() -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &get().registry);
    out
}

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("faultline"),
            ingest_accepted: Family::default(),
            ingest_rejected: Family::default(),
            ingest_bytes: Counter::default(),
            ingest_decompressions: Family::default(),
            ingest_decompressed_bytes: Counter::default(),
            ingest_key_lookups: Family::default(),
            assemblies_refused: Counter::default(),
            queue_depth: Gauge::default(),
            queue_oldest_age: Gauge::default(),
            // 1 ms .. ~65 s.
            processing_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            store_batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            events_stored: Counter::default(),
            events_duplicate: Counter::default(),
            issues_created: Counter::default(),
            jobs_failed: Counter::default(),
            symbolication: Family::default(),
            emails: Family::default(),
            db_pool_connections: Family::default(),
            db_pool_max: Gauge::default(),
            password_verifications: Counter::default(),
            check_ins: Family::default(),
            session_items: Family::default(),
            sessions_counted: Counter::default(),
            worker_inflight_bytes: Gauge::default(),
            ingest_inflight_bytes: Gauge::default(),
        };
        // Both outcomes exist from the start, so dashboards show 0 rather than no data.
        for outcome in ["hit", "miss"] {
            let _ = m.symbolication.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["sent", "failed"] {
            let _ = m.emails.get_or_create(&OutcomeLabel { outcome });
        }
        let r = &mut m.registry;
        r.register(
            "ingest_accepted_events",
            "Events accepted by ingest (answered 200), per project",
            m.ingest_accepted.clone(),
        );
        r.register(
            "ingest_rejected_requests",
            "Requests refused by ingest, per reason and project",
            m.ingest_rejected.clone(),
        );
        r.register_with_unit(
            "ingest_received",
            "Request body bytes read by ingest, as sent",
            Unit::Bytes,
            m.ingest_bytes.clone(),
        );
        r.register(
            "ingest_decompressions",
            "Request bodies ingest decompressed, by thread (event_loop or blocking_pool)",
            m.ingest_decompressions.clone(),
        );
        r.register_with_unit(
            "ingest_decompressed",
            "Decompressed bytes ingest produced",
            Unit::Bytes,
            m.ingest_decompressed_bytes.clone(),
        );
        r.register(
            "ingest_key_lookups",
            "DSN keys not in the cache: looked up (found, unknown) or refused unlooked (skipped)",
            m.ingest_key_lookups.clone(),
        );
        r.register(
            "assemblies_refused",
            "Artifact bundle assemblies refused with 429 because all slots were taken",
            m.assemblies_refused.clone(),
        );
        r.register_with_unit(
            "worker_inflight",
            "Bytes the worker holds for jobs between fetch and commit",
            Unit::Bytes,
            m.worker_inflight_bytes.clone(),
        );
        r.register_with_unit(
            "ingest_inflight",
            "Bytes of request bodies ingest holds while reading, decoding and queueing them",
            Unit::Bytes,
            m.ingest_inflight_bytes.clone(),
        );
        r.register(
            "queue_depth",
            "Jobs waiting or running on the queue",
            m.queue_depth.clone(),
        );
        r.register_with_unit(
            "queue_oldest_job_age",
            "Age of the oldest job waiting on the queue",
            Unit::Seconds,
            m.queue_oldest_age.clone(),
        );
        r.register_with_unit(
            "event_processing",
            "Time from ingest accepting an event to its storage committing",
            Unit::Seconds,
            m.processing_seconds.clone(),
        );
        r.register_with_unit(
            "store_batch",
            "Duration of one batch's storage transaction",
            Unit::Seconds,
            m.store_batch_seconds.clone(),
        );
        r.register("events_stored", "Events stored", m.events_stored.clone());
        r.register(
            "events_duplicate",
            "Events dropped because their id was already stored",
            m.events_duplicate.clone(),
        );
        r.register("issues_created", "Issues created", m.issues_created.clone());
        r.register(
            "jobs_failed",
            "Event jobs that failed an attempt",
            m.jobs_failed.clone(),
        );
        r.register(
            "symbolication_frames",
            "Stack frames resolved through a source map (hit) or not (miss)",
            m.symbolication.clone(),
        );
        r.register("emails", "Alert emails sent or failed", m.emails.clone());
        r.register(
            "db_pool_connections",
            "Main database pool connections by state",
            m.db_pool_connections.clone(),
        );
        r.register(
            "db_pool_max_connections",
            "Main database pool size limit",
            m.db_pool_max.clone(),
        );
        r.register(
            "password_verifications",
            "Passwords checked against a stored argon2 hash",
            m.password_verifications.clone(),
        );
        r.register(
            "check_ins",
            "Cron check-ins by outcome",
            m.check_ins.clone(),
        );
        r.register(
            "ingest_session_items",
            "Release-health items (session, sessions) read by ingest, by outcome: accepted or why dropped",
            m.session_items.clone(),
        );
        r.register(
            "sessions_counted",
            "Session updates and aggregate buckets counted by the worker",
            m.sessions_counted.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_counters_and_labels() {
        get()
            .ingest_accepted
            .get_or_create(&ProjectLabel { project: 42 })
            .inc_by(3);
        email_failed();
        let text = render();
        assert!(
            text.contains("faultline_ingest_accepted_events_total{project=\"42\"} 3"),
            "{text}"
        );
        assert!(text.contains("faultline_emails_total{outcome=\"sent\"} 0"));
        assert!(text.contains("# TYPE faultline_event_processing_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }
}
