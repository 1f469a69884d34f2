//! Faultline's event pipeline: every queued raw event goes through
//! normalize -> symbolicate (JavaScript source maps) -> grouping -> store, in that order, one module a step.
//! It runs inside `faultline serve` or as `faultline worker`.

pub mod alerts;
pub mod budget;
pub mod grouping;
pub mod monitors;
pub mod normalize;
pub mod pipeline;
pub mod retention;
pub mod sessions;
pub mod sql;
pub mod store;
pub mod symbolicate;
pub mod tags;
