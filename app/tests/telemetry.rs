//! What request spans carry: the route template, never the tokens in paths and queries.
//! (Its own test binary: a subscriber set here must not change the span interest that
//! the library's own telemetry tests measure.)

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, test, web};
use faultline_app::telemetry::http::RequestSpans;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

/// Every field value of every span and event, as `name=value`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl tracing::field::Visit for Recorder {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(format!("{}={value:?}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        attrs.record(&mut self.clone());
    }
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut self.clone());
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        event.record(&mut self.clone());
    }
}

#[actix_web::test]
async fn request_spans_carry_the_route_template_not_tokens() {
    let recorder = Recorder::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let app = test::init_service(
        App::new()
            .wrap(RequestSpans)
            .route(
                "/invite/{token}",
                web::get().to(|| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/unsubscribe/{token}",
                web::post().to(|| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/setup",
                web::get().to(|| async { HttpResponse::Forbidden().finish() }),
            ),
    )
    .await;
    for req in [
        test::TestRequest::get().uri("/invite/SECRETinvite0123"),
        test::TestRequest::post().uri("/unsubscribe/SECRETunsub4567.sig"),
        test::TestRequest::get().uri("/setup?token=SECRETsetup89ab"),
        test::TestRequest::get().uri("/nowhere/SECRETunmatched?key=SECRETquery"),
    ] {
        test::call_service(&app, req.to_request()).await;
    }
    let seen = recorder.0.lock().expect("recorded").clone();
    for route in [
        "/invite/{token}",
        "/unsubscribe/{token}",
        "/setup",
        "unmatched",
    ] {
        assert!(
            seen.contains(&format!("http.route={route}")),
            "no span for {route}: {seen:?}"
        );
    }
    let leaked: Vec<_> = seen.iter().filter(|v| v.contains("SECRET")).collect();
    assert!(leaked.is_empty(), "tokens in spans: {leaked:?}");
}
