//! Faultline's own traces: the one name every span is created under.
//!
//! Spans are created with `tracing` under [`SPAN_TARGET`]; the `faultline` binary sends them
//! to an OpenTelemetry collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and otherwise
//! switches that target off, so an unconfigured process pays one atomic load per span
//! site and nothing more. A step that talks to the outside world opens its span like:
//!
//! ```
//! let span = tracing::info_span!(target: faultline_core::telemetry::SPAN_TARGET, "smtp.send",
//!     otel.kind = "client", server.address = "mail.example.com");
//! let _entered = span.enter(); // or `.instrument(span)` on a future
//! ```

/// The `tracing` target of every span meant for OpenTelemetry.
pub const SPAN_TARGET: &str = "faultline_trace";
