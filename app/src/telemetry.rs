//! Logs and Faultline's own traces.
//!
//! Logs: human-readable lines on stderr, or one JSON object per line with
//! `FAULTLINE_LOG_FORMAT=json`. Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans
//! created under [`SPAN_TARGET`] (HTTP requests, queue enqueue, job processing, database
//! batches, SMTP) go to an OpenTelemetry collector over OTLP/HTTP (protobuf). When it is
//! not set no OpenTelemetry layer is installed and the span target is switched off, so
//! every span site costs one atomic load.
//!
//! The trace of an event crosses the queue: ingest writes its request span's W3C
//! `traceparent` into the job, and the worker's span for that job continues it, so one
//! trace shows the request, the enqueue, the job and its database batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faultline_core::config::{Config, OtelConfig};
pub use faultline_core::telemetry::SPAN_TARGET;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True when spans are exported (an OpenTelemetry layer is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Flushes and stops the trace exporter when dropped (at the end of `main`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: flushing traces at exit failed: {e}");
        }
    }
}

/// Installs the log subscriber, and the OpenTelemetry layer when configured.
/// `level` is the default log level when `FAULTLINE_LOG` is not set.
pub fn init(config: &Config, level: &str) -> anyhow::Result<TelemetryGuard> {
    let provider = match &config.otel {
        Some(otel) => Some(tracer_provider(otel)?),
        None => None,
    };
    let _ = subscriber(config, level, provider.as_ref()).try_init();
    if provider.is_some() {
        ENABLED.store(true, Ordering::Relaxed);
    }
    Ok(TelemetryGuard { provider })
}

/// The process's subscriber: the log layer, plus the OpenTelemetry layer with a provider.
///
/// Without a provider there is no OpenTelemetry layer at all, not an `Option` of one
/// that is `None`: tracing-subscriber gives a `None` layer the interest "always", and
/// beside the log layer's per-layer filter (which switches the span target off) that
/// makes every span site's interest "sometimes" — each span macro then asks every filter
/// again (`EnvFilter::enabled`), per request. With the log layer alone, the target's
/// sites are "never" and cost one atomic load.
fn subscriber(
    config: &Config,
    level: &str,
    provider: Option<&SdkTracerProvider>,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let mut filter = EnvFilter::try_from_env("FAULTLINE_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,apalis=warn,sea_orm_migration=warn"
        ))
    });
    // Without an exporter the spans are off for everyone (no cost); with one, the log
    // layer sees them too, so JSON lines carry the trace id of the span they were logged in.
    let span_directive = if provider.is_some() {
        format!("{SPAN_TARGET}=info")
    } else {
        format!("{SPAN_TARGET}=off")
    };
    if let Ok(d) = span_directive.parse() {
        filter = filter.add_directive(d);
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if config.log_json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            // The root span (request or job) holds `trace_id`; nested ones list it too.
            .with_span_list(true)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let logs = tracing_subscriber::registry().with(fmt);
    match provider {
        None => Box::new(logs),
        Some(p) => {
            let otel = tracing_opentelemetry::layer()
                .with_tracer(p.tracer("faultline"))
                .with_threads(false)
                .with_location(false)
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target(SPAN_TARGET, tracing::Level::INFO),
                );
            Box::new(logs.with(otel))
        }
    }
}

fn tracer_provider(otel: &OtelConfig) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(UreqClient::new())
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(otel.traces_endpoint.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT is not usable: {e}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(otel.sample_ratio)));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(otel.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

/// The OTLP exporter's HTTP client: ureq, which the binary already has. The exporter's
/// batch processor runs on its own thread, so a blocking request is fine there.
#[derive(Debug)]
struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        UreqClient { agent }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let request = ureq::http::Request::from_parts(parts, body.to_vec());
        let mut response = self.agent.run(request)?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(4 * 1024 * 1024)
            .read_to_vec()?;
        Ok(opentelemetry_http::Response::builder()
            .status(status)
            .body(bytes::Bytes::from(body))?)
    }
}

/// The W3C `traceparent` of the current span, when traces are exported.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span named by a W3C `traceparent`
/// (from a request header or a job). Invalid values are ignored.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent else { return };
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert("traceparent".into(), tp.to_string());
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// Records the span's trace id in its `trace_id` field, so log lines written inside it
/// carry it.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// The span of one job in the worker, continuing the trace of the request that queued it.
pub fn job_span(project_id: i64, event_id: &str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "job.process",
        otel.kind = "consumer",
        messaging.system = "apalis",
        messaging.destination.name = faultline_core::jobs::EVENT_QUEUE,
        faultline.project_id = project_id,
        faultline.event_id = event_id,
        trace_id = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        continue_trace(&span, traceparent);
        record_trace_id(&span);
    }
    span
}

pub mod http {
    //! An actix middleware that opens one server span per HTTP request.

    use std::future::{Future, Ready, ready};
    use std::pin::Pin;

    use actix_web::Error;
    use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
    use tracing::Instrument;

    use super::SPAN_TARGET;

    /// Wrap the app with `Condition::new(telemetry::enabled(), RequestSpans)`.
    pub struct RequestSpans;

    impl<S, B> Transform<S, ServiceRequest> for RequestSpans
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
        B: 'static,
    {
        type Response = ServiceResponse<B>;
        type Error = Error;
        type Transform = RequestSpansMiddleware<S>;
        type InitError = ();
        type Future = Ready<Result<Self::Transform, Self::InitError>>;

        fn new_transform(&self, service: S) -> Self::Future {
            ready(Ok(RequestSpansMiddleware { service }))
        }
    }

    pub struct RequestSpansMiddleware<S> {
        service: S,
    }

    impl<S, B> Service<ServiceRequest> for RequestSpansMiddleware<S>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
        B: 'static,
    {
        type Response = ServiceResponse<B>;
        type Error = Error;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

        forward_ready!(service);

        fn call(&self, req: ServiceRequest) -> Self::Future {
            // The route template (`/invite/{token}`), never the path or the query: paths
            // carry invitation and unsubscribe tokens, queries the setup token, and spans
            // go to a collector that more people can read than the database.
            let route = req
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_string());
            let method = req.method().as_str().to_string();
            let span = tracing::info_span!(
                target: SPAN_TARGET,
                "http.request",
                otel.name = format!("{method} {route}"),
                otel.kind = "server",
                http.request.method = %method,
                http.route = %route,
                http.response.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            let parent = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok());
            super::continue_trace(&span, parent);
            super::record_trace_id(&span);
            let fut = self.service.call(req).instrument(span.clone());
            Box::pin(async move {
                let started = std::time::Instant::now();
                let result = fut.await;
                let status = match &result {
                    Ok(resp) => resp.status().as_u16(),
                    Err(e) => e.as_response_error().status_code().as_u16(),
                };
                span.record("http.response.status_code", i64::from(status));
                if status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
                // An access log line (debug level), inside the span: it carries the trace id.
                let _inside = span.enter();
                tracing::debug!(
                    status,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "request finished"
                );
                result
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interest a fresh span site under [`SPAN_TARGET`] gets from `subscriber`.
    fn span_site_interest(
        subscriber: Box<dyn tracing::Subscriber + Send + Sync>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::with_default(subscriber, || {
            let site = tracing::callsite! {
                name: "probe",
                kind: tracing::metadata::Kind::SPAN,
                target: SPAN_TARGET,
                level: tracing::Level::INFO,
                fields: []
            };
            site.register();
            site.interest()
        })
    }

    #[test]
    fn span_sites_cost_nothing_without_an_exporter() {
        let config = Config::from_map(HashMap::new()).expect("config");
        // "never" is cached in the site: a span macro is one atomic load. It was
        // "sometimes" (every filter asked at every span) with a `None` OpenTelemetry layer.
        assert!(span_site_interest(subscriber(&config, "info", None)).is_never());
        let provider = SdkTracerProvider::builder().build();
        assert!(!span_site_interest(subscriber(&config, "info", Some(&provider))).is_never());
    }
}
