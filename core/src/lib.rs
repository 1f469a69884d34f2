//! Faultline's shared domain: what both the `faultline` web process and the event
//! pipeline need — the Sentry wire protocol as types, configuration, the storage
//! entities, the job definitions, the issue domain (`issues`: statuses, search, the list
//! query, actions) and the portable SQL helpers both halves write with. It never depends
//! on an HTTP framework or a job runner's runtime, so both halves can use it without
//! pulling in the other.

pub mod body;
pub mod client_ip;
pub mod compress;
pub mod config;
#[cfg(feature = "storage")]
pub mod db;
#[cfg(feature = "storage")]
pub mod entity;
#[cfg(feature = "storage")]
pub mod health;
#[cfg(feature = "storage")]
pub mod issues;
pub mod jobs;
pub mod metrics;
#[cfg(feature = "storage")]
pub mod monitors;
pub mod protocol;
#[cfg(feature = "storage")]
pub mod sql;
pub mod telemetry;
