//! faultline-app: the `faultline` binary's library — ingest, Web API, pages, CLI, and the
//! process startup that ties them to the worker. A library so integration tests can start
//! the real application in-process on a free port.

pub mod accounts;
pub mod api;
pub mod backup;
pub mod cli;
pub mod client_ip;
pub mod first_run;
pub mod health;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod queue;
pub mod startup;
pub mod telemetry;
pub mod unsubscribe;
pub mod web;
pub mod worker_runtime;
