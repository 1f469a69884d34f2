//! Normalization of real SDK payloads (captured from sentry-python, @sentry/node and the
//! `sentry` Rust crate, see `tests/payloads/README.md`), hand-written browser, legacy and
//! security report shapes, and garbage. Assertions are on what a user would see.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use faultline_core::protocol::event::{Event, Exception, Level};
use faultline_worker::normalize::{
    NormalizeContext, NormalizeError, normalize, normalize_security_report,
    normalize_security_reports,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// The sender's address as the ingest would see it.
const CLIENT_IP: &str = "198.51.100.7";

fn payload(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ts(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().expect("test timestamp")
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("test uuid")
}

/// All captures were made a few seconds before this.
fn received() -> DateTime<Utc> {
    ts("2026-11-22T02:53:00Z")
}

fn context() -> NormalizeContext {
    NormalizeContext {
        client_ip: Some(CLIENT_IP.to_owned()),
        ..NormalizeContext::received_at(received())
    }
}

/// The context the ingest passes for a captured envelope: its header's id, `sent_at`, sdk.
fn envelope_context(name: &str) -> NormalizeContext {
    let headers: Value =
        serde_json::from_slice(&payload("envelope_headers.json")).expect("headers json");
    let header = &headers[name];
    NormalizeContext {
        envelope_event_id: header["event_id"].as_str().map(uuid),
        sent_at: header["sent_at"].as_str().map(ts),
        envelope_sdk: header.get("sdk").cloned(),
        ..context()
    }
}

fn fixture(name: &str) -> Event {
    normalize(&payload(name), &envelope_context(name)).expect("fixture normalizes")
}

fn json_event(value: Value) -> Event {
    normalize(value.to_string().as_bytes(), &context()).expect("event normalizes")
}

fn chain(event: &Event) -> Vec<(&str, &str)> {
    event
        .exceptions()
        .iter()
        .map(|e| {
            (
                e.ty.as_deref().unwrap_or(""),
                e.value.as_deref().unwrap_or(""),
            )
        })
        .collect()
}

/// `(filename, function, lineno, in_app)` of each frame, caller first.
fn frames(exception: &Exception) -> Vec<(&str, &str, u64, bool)> {
    exception
        .stacktrace
        .iter()
        .flat_map(|s| &s.frames)
        .map(|f| {
            (
                f.filename.as_deref().unwrap_or(""),
                f.function.as_deref().unwrap_or(""),
                f.lineno.unwrap_or(0),
                f.in_app.unwrap_or(false),
            )
        })
        .collect()
}

fn tags(event: &Event) -> Vec<(&str, &str)> {
    event
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// `(category, message, level)` of each breadcrumb, oldest first.
fn crumbs(event: &Event) -> Vec<(&str, &str, Level)> {
    event
        .breadcrumbs()
        .iter()
        .map(|c| {
            (
                c.category.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
                c.level.unwrap_or_default(),
            )
        })
        .collect()
}

fn error_names(event: &Event) -> Vec<&str> {
    event
        .errors
        .iter()
        .filter_map(|e| e.name.as_deref())
        .collect()
}

fn context_type<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.contexts.as_ref()?.get(key)?.get("type")?.as_str()
}

// ---------------------------------------------------------------------------------------
// sentry-python 2.75
// ---------------------------------------------------------------------------------------

#[test]
fn python_chained_exception() {
    let event = fixture("sentry-python/chained_exception.json");

    assert_eq!(
        event.event_id,
        Some(uuid("f8d900c1cf3b4da789624fcca1a15886"))
    );
    assert_eq!(event.ty.as_deref(), Some("error"));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.platform.as_deref(), Some("python"));
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:52:20.855501Z")));
    assert_eq!(event.received, Some(received()));
    assert_eq!(event.release.as_deref(), Some("shop@1.4.2"));
    assert_eq!(event.environment.as_deref(), Some("staging"));
    assert_eq!(event.server_name.as_deref(), Some("web-01"));
    assert_eq!(event.trace_id(), Some("32de58feaa0e471db599951be9651995"));

    // Cause first, the exception the user caught last.
    assert_eq!(
        chain(&event),
        [
            (
                "ValueError",
                "invalid literal for int() with base 10: '12.50 EUR'"
            ),
            ("PaymentError", "cannot charge order 1001"),
        ]
    );
    let main = event.main_exception().expect("main exception");
    assert_eq!(main.module.as_deref(), Some("shop.payments"));
    let mechanism = main.mechanism.as_ref().expect("mechanism");
    assert_eq!(mechanism.ty.as_deref(), Some("generic"));
    assert_eq!(mechanism.handled, Some(true));
    assert_eq!(
        frames(&event.exceptions()[0]),
        [
            ("shop/payments.py", "charge", 16, true),
            ("shop/payments.py", "parse_amount", 11, true),
        ]
    );
    assert_eq!(
        frames(main),
        [
            ("app.py", "<module>", 26, true),
            ("shop/payments.py", "charge", 18, true)
        ]
    );
    let crashing = &event.exceptions()[0]
        .stacktrace
        .as_ref()
        .expect("trace")
        .frames[1];
    assert_eq!(
        crashing.abs_path.as_deref(),
        Some("/srv/shop/shop/payments.py")
    );
    assert_eq!(
        crashing.context_line.as_deref(),
        Some("    return int(raw)")
    );
    assert_eq!(crashing.pre_context.len(), 5);
    assert_eq!(crashing.vars, Some(json!({"raw": "'12.50 EUR'"})));

    assert_eq!(
        tags(&event),
        [
            ("customer_tier", "gold"),
            ("region", "eu-west-1"),
            ("server_name", "web-01")
        ]
    );
    let user = event.user.as_ref().expect("user");
    assert_eq!(user.id.as_deref(), Some("42"));
    assert_eq!(user.email.as_deref(), Some("ada@example.com"));
    assert_eq!(user.username.as_deref(), Some("ada"));
    // Python is not a platform whose sender address stands for the user.
    assert_eq!(user.ip_address, None);
    assert_eq!(user.identifier().as_deref(), Some("id:42"));

    assert_eq!(
        crumbs(&event),
        [
            ("auth", "user logged in", Level::Info),
            ("cart", "added 3 items", Level::Info),
            (
                "shop.checkout",
                "slow payment provider: 1234 ms",
                Level::Warning
            ),
        ]
    );
    let types: Vec<_> = event
        .breadcrumbs()
        .iter()
        .map(|c| c.ty.as_deref())
        .collect();
    assert_eq!(types, [Some("default"), Some("default"), Some("log")]);
    assert_eq!(
        event.breadcrumbs()[0].timestamp,
        Some(ts("2026-11-22T02:52:20.854413Z"))
    );

    assert_eq!(context_type(&event, "runtime"), Some("runtime"));
    assert_eq!(context_type(&event, "trace"), Some("trace"));
    assert_eq!(
        event.sdk.as_ref().and_then(|s| s.name.as_deref()),
        Some("sentry.python")
    );
    assert!(event.other.contains_key("transaction_info"));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn python_capture_message() {
    let event = fixture("sentry-python/capture_message.json");

    assert_eq!(event.ty.as_deref(), Some("default"));
    assert_eq!(event.level, Some(Level::Warning));
    assert_eq!(
        event.message(),
        Some("Inventory sync finished with warnings")
    );
    let entry = event.logentry.as_ref().expect("logentry");
    assert_eq!(entry.message, None);
    assert!(event.exception.is_none());
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:52:20.871224Z")));
    assert_eq!(crumbs(&event).len(), 3);
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn python_logging_error_keeps_template_and_params() {
    let event = fixture("sentry-python/logging_error.json");

    assert_eq!(event.ty.as_deref(), Some("default"));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.logger.as_deref(), Some("shop.payments"));
    let entry = event.logentry.as_ref().expect("logentry");
    assert_eq!(
        entry.message.as_deref(),
        Some("refund failed for order %s: %s")
    );
    assert_eq!(
        entry.formatted.as_deref(),
        Some("refund failed for order 1002: provider timeout")
    );
    assert_eq!(entry.params, Some(json!([1002, "provider timeout"])));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn python_wsgi_unhandled_error_with_request() {
    let event = fixture("sentry-python/wsgi_unhandled.json");

    assert_eq!(chain(&event), [("ZeroDivisionError", "division by zero")]);
    let main = event.main_exception().expect("main exception");
    let mechanism = main.mechanism.as_ref().expect("mechanism");
    assert_eq!(mechanism.ty.as_deref(), Some("wsgi"));
    assert_eq!(mechanism.handled, Some(false));
    assert_eq!(
        frames(main),
        [
            ("wsgi_app.py", "app", 19, true),
            ("wsgi_app.py", "average", 15, true)
        ]
    );
    assert_eq!(event.environment.as_deref(), Some("production"));

    let request = event.request.as_ref().expect("request");
    assert_eq!(
        request.url.as_deref(),
        Some("http://127.0.0.1:35361/reports/ratio")
    );
    assert_eq!(request.method.as_deref(), Some("GET"));
    assert_eq!(
        request.query_string,
        Some(json!([["team", "7"], ["period", "week"]]))
    );
    assert_eq!(request.header("user-agent"), Some("curl/8.5.0"));
    // `[Filtered]` is not a cookie list: the header stays as sent.
    assert_eq!(request.header("Cookie"), Some("[Filtered]"));
    assert_eq!(request.cookies, None);
    let env = request.env.as_ref().expect("env");
    assert_eq!(env.get("REMOTE_ADDR"), Some(&json!("127.0.0.1")));

    let user = event.user.as_ref().expect("user");
    assert_eq!(user.ip_address.as_deref(), Some("127.0.0.1"));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

// ---------------------------------------------------------------------------------------
// @sentry/node 11.12
// ---------------------------------------------------------------------------------------

#[test]
fn node_handled_error_with_cause() {
    let event = fixture("sentry-node/handled_error_with_cause.json");

    assert_eq!(
        event.event_id,
        Some(uuid("3f129e1a1dcc4d6c8b77621b4329563c"))
    );
    assert_eq!(event.ty.as_deref(), Some("error"));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.platform.as_deref(), Some("node"));
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:52:28.465Z")));
    assert_eq!(event.release.as_deref(), Some("api@2.3.0"));
    assert_eq!(event.environment.as_deref(), Some("production"));
    assert_eq!(event.trace_id(), Some("0e3d27bffdff47b59a5b0426e4505079"));

    assert_eq!(
        chain(&event),
        [
            (
                "TypeError",
                "Cannot read properties of undefined (reading 'total')"
            ),
            ("Error", "cannot load order 17"),
        ]
    );
    let cause = &event.exceptions()[0];
    let link = cause.mechanism.as_ref().expect("mechanism");
    assert_eq!(link.ty.as_deref(), Some("chained"));
    assert_eq!(link.source.as_deref(), Some("cause"));
    assert_eq!((link.exception_id, link.parent_id), (Some(1), Some(0)));

    let cause_frames = frames(cause);
    assert_eq!(cause_frames.len(), 10);
    // Node's anonymous top-level frame names its function `?`: removed.
    assert_eq!(
        cause_frames[0],
        ("node:internal/main/run_main_module", "", 28, false)
    );
    assert_eq!(
        cause_frames[7..],
        [
            ("/srv/api/src/server.js", "handleRequest", 20, true),
            ("/srv/api/src/orders.js", "orderTotal", 9, true),
            ("/srv/api/src/orders.js", "loadOrder", 5, true),
        ]
    );
    let crashing = cause
        .stacktrace
        .as_ref()
        .expect("trace")
        .frames
        .last()
        .expect("frame");
    // Node sends only `filename`; it becomes `abs_path` too.
    assert_eq!(crashing.abs_path.as_deref(), Some("/srv/api/src/orders.js"));
    assert_eq!(crashing.colno, Some(27));
    assert_eq!(
        crashing.context_line.as_deref(),
        Some("  return { id, total: row.total };")
    );
    let main_frames = frames(event.main_exception().expect("main"));
    assert_eq!(
        main_frames[6],
        ("/srv/api/src/server.js", "Object.?", 29, true)
    );

    assert_eq!(
        tags(&event),
        [("feature", "checkout"), ("server_name", "api-7f9c")]
    );
    let user = event.user.as_ref().expect("user");
    assert_eq!(user.id.as_deref(), Some("u-981"));
    assert_eq!(user.ip_address, None);
    assert_eq!(
        crumbs(&event),
        [("db", "SELECT * FROM orders WHERE id = $1", Level::Info)]
    );
    assert_eq!(event.breadcrumbs()[0].ty.as_deref(), Some("default"));
    assert_eq!(
        event.breadcrumbs()[0].timestamp,
        Some(ts("2026-11-22T02:52:28.463Z"))
    );
    for (key, ty) in [
        ("os", "os"),
        ("runtime", "runtime"),
        ("device", "device"),
        ("app", "app"),
    ] {
        assert_eq!(context_type(&event, key), Some(ty), "{key}");
    }
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn node_uncaught_exception() {
    let event = fixture("sentry-node/uncaught_exception.json");

    assert_eq!(event.level, Some(Level::Fatal));
    assert_eq!(
        chain(&event),
        [("SyntaxError", "Unexpected end of JSON input")]
    );
    let main = event.main_exception().expect("main");
    let mechanism = main.mechanism.as_ref().expect("mechanism");
    assert_eq!(
        mechanism.ty.as_deref(),
        Some("auto.node.onuncaughtexception")
    );
    assert_eq!(mechanism.handled, Some(false));
    assert_eq!(
        frames(main)[2..],
        [
            ("/srv/api/src/server.js", "Timeout._onTimeout", 33, true),
            ("<anonymous>", "JSON.parse", 0, false),
        ]
    );
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

// ---------------------------------------------------------------------------------------
// sentry (Rust) 0.34
// ---------------------------------------------------------------------------------------

#[test]
fn rust_capture_error_without_level() {
    let event = fixture("sentry-rust/capture_error.json");

    // The envelope header spells the id with dashes.
    assert_eq!(
        event.event_id,
        Some(uuid("da5c4a2d2ef84a1f82608e27ea68ba99"))
    );
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.platform.as_deref(), Some("native"));
    assert_eq!(
        chain(&event),
        [("ParseIntError", "invalid digit found in string")]
    );
    assert_eq!(event.release.as_deref(), Some("inventory-sync@0.3.1"));
    assert_eq!(
        tags(&event),
        [("warehouse", "ams-2"), ("server_name", "vm")]
    );
    assert_eq!(context_type(&event, "rust"), Some("runtime"));
    assert_eq!(
        crumbs(&event),
        [("sync", "fetched 120 stock levels", Level::Info)]
    );

    // Legacy `symbolic` images name their file and id `name` and `id`.
    let images = &event.debug_meta.as_ref().expect("debug_meta").images;
    assert_eq!(images.len(), 5);
    assert_eq!(
        images[0].code_file.as_deref(),
        Some("/srv/inventory-sync/target/debug/inventory-sync")
    );
    assert!(
        images
            .iter()
            .all(|i| i.debug_id.is_some() && i.code_file.is_some())
    );
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn rust_panic() {
    let event = fixture("sentry-rust/panic.json");

    assert_eq!(event.level, Some(Level::Fatal));
    assert_eq!(event.ty.as_deref(), Some("error"));
    assert_eq!(
        chain(&event),
        [("panic", "called `Option::unwrap()` on a `None` value")]
    );
    let main = event.main_exception().expect("main");
    assert_eq!(main.mechanism.as_ref().and_then(|m| m.handled), Some(false));
    let all = frames(main);
    assert_eq!(all.len(), 28);
    assert_eq!(
        all[27],
        ("panicking.rs", "core::panicking::panic", 150, false)
    );
    let in_app: Vec<_> = all
        .iter()
        .filter(|f| f.1.starts_with("inventory_sync::"))
        .collect();
    assert_eq!(
        in_app,
        [
            &("main.rs", "inventory_sync::main", 62, true),
            &("main.rs", "inventory_sync::main::{{closure}}", 62, true),
            &("main.rs", "inventory_sync::reserve", 25, true),
        ]
    );
    let trace = main.stacktrace.as_ref().expect("trace");
    let reserve = trace
        .frames
        .iter()
        .find(|f| f.function.as_deref() == Some("inventory_sync::reserve"))
        .expect("reserve frame");
    assert_eq!(
        reserve.abs_path.as_deref(),
        Some("/srv/inventory-sync/src/main.rs")
    );
    assert_eq!(reserve.package.as_deref(), Some("inventory_sync"));
    assert_eq!(reserve.instruction_addr.as_deref(), Some("0x5632a461f6c8"));
    // Float seconds keep microseconds.
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:52:16.087288Z")));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

// ---------------------------------------------------------------------------------------
// @sentry/browser (hand-written from the SDK's event shape)
// ---------------------------------------------------------------------------------------

#[test]
fn browser_error_with_url_frames_and_source_map_images() {
    let event =
        normalize(&payload("sentry-browser/unhandled_error.json"), &context()).expect("normalizes");

    assert_eq!(event.platform.as_deref(), Some("javascript"));
    assert_eq!(
        chain(&event),
        [(
            "TypeError",
            "Cannot read properties of null (reading 'price')"
        )]
    );
    let main = event.main_exception().expect("main");
    // Browser frames carry only the full URL: it becomes `abs_path`, its path `filename`.
    assert_eq!(
        frames(main),
        [
            (
                "/static/js/vendor.3b1c9f.js",
                "HTMLButtonElement.r",
                2,
                true
            ),
            ("/static/js/main.8f2a1c.js", "onCheckoutClick", 1, true),
            ("/static/js/main.8f2a1c.js", "computeTotal", 1, true),
        ]
    );
    let last = main
        .stacktrace
        .as_ref()
        .expect("trace")
        .frames
        .last()
        .expect("frame");
    assert_eq!(
        last.abs_path.as_deref(),
        Some("https://shop.example.com/static/js/main.8f2a1c.js")
    );
    assert_eq!(last.colno, Some(9871));

    let images = &event.debug_meta.as_ref().expect("debug_meta").images;
    let sourcemaps: Vec<_> = images
        .iter()
        .map(|i| {
            (
                i.ty.as_deref(),
                i.code_file.as_deref(),
                i.debug_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        sourcemaps[0],
        (
            Some("sourcemap"),
            Some("https://shop.example.com/static/js/main.8f2a1c.js"),
            Some("1f3c5e7a-9b2d-4f60-8a1c-3e5f7a9b1d2c")
        )
    );
    assert_eq!(sourcemaps.len(), 2);

    let request = event.request.as_ref().expect("request");
    assert_eq!(
        request.url.as_deref(),
        Some("https://shop.example.com/checkout")
    );
    assert_eq!(request.query_string, Some(json!([["step", "2"]])));
    assert_eq!(request.fragment.as_deref(), Some("payment"));
    // JavaScript events without a user IP take the sender's.
    assert_eq!(
        event.user.as_ref().and_then(|u| u.ip_address.as_deref()),
        Some(CLIENT_IP)
    );
    assert_eq!(event.trace_id(), Some("4b1f6e2a9c8d47e3b0a5f1c2d3e4f5a6"));
    let types: Vec<_> = event
        .breadcrumbs()
        .iter()
        .map(|c| c.ty.as_deref())
        .collect();
    assert_eq!(types, [Some("default"), Some("http"), Some("default")]);
    assert_eq!(
        event.breadcrumbs()[2].message.as_deref(),
        Some("main#checkout > button.pay")
    );
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

// ---------------------------------------------------------------------------------------
// Legacy shapes
// ---------------------------------------------------------------------------------------

#[test]
fn raven_python_with_interfaces_nan_and_pair_tags() {
    let event = normalize(&payload("legacy/raven_python.json"), &context()).expect("normalizes");

    assert_eq!(
        event.event_id,
        Some(uuid("8ad5e2a4f6c94c74a7d0b8e4d2c1a9f0"))
    );
    // A timestamp without zone is UTC; level 40 is Python's ERROR.
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:50:00Z")));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.ty.as_deref(), Some("error"));
    assert_eq!(event.message(), Some("ZeroDivisionError: division by zero"));
    assert_eq!(chain(&event), [("ZeroDivisionError", "division by zero")]);
    let frame = &event
        .main_exception()
        .expect("main")
        .stacktrace
        .as_ref()
        .expect("trace")
        .frames[0];
    assert_eq!(frame.lineno, Some(57));
    assert_eq!(
        frame.pre_context,
        ["def charge(invoice):", "", "    due = invoice.due"]
    );
    assert_eq!(
        frame.context_line.as_deref(),
        Some("    ratio = paid / due")
    );

    // NaN and Infinity from old Python clients read as null.
    let extra = event.extra.as_ref().expect("extra");
    assert_eq!(extra.get("ratio"), Some(&Value::Null));
    assert_eq!(extra.get("limit"), Some(&Value::Null));
    assert_eq!(
        extra.get("note"),
        Some(&json!("NaN is fine inside strings"))
    );

    assert_eq!(
        tags(&event),
        [
            ("celery_task", "billing.charge"),
            ("shard", "3"),
            ("server_name", "worker-3")
        ]
    );
    // A legacy `environment` tag becomes the environment.
    assert_eq!(event.environment.as_deref(), Some("billing-prod"));

    let user = event.user.as_ref().expect("user");
    assert_eq!(user.id.as_deref(), Some("1234"));
    assert_eq!(user.data, Some(json!({"is_staff": false})));
    assert_eq!(user.ip_address.as_deref(), Some("203.0.113.9"));

    let request = event.request.as_ref().expect("request");
    assert_eq!(request.method.as_deref(), Some("POST"));
    assert_eq!(
        request.url.as_deref(),
        Some("https://billing.example.com/invoices/77/charge")
    );
    assert_eq!(request.query_string, Some(json!([["retry", "1"]])));
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    assert_eq!(request.header("Cookie"), None);
    assert_eq!(
        request.cookies,
        Some(json!([["sessionid", "abc"], ["csrftoken", "xyz"]]))
    );

    // Client culprits are recomputed by the pipeline.
    assert_eq!(event.culprit, None);
    assert_eq!(event.other.get("project"), Some(&json!("42")));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn raven_js_single_exception_without_type() {
    let event = normalize(&payload("legacy/raven_js.json"), &context()).expect("normalizes");

    // `Type: value` in the value with an empty type is split.
    assert_eq!(chain(&event), [("ReferenceError", "chart is not defined")]);
    let main = event.main_exception().expect("main");
    assert_eq!(
        frames(main),
        [
            ("/static/app.min.js", "", 1, true),
            ("/static/app.min.js", "renderDashboard", 1, true),
        ]
    );
    assert_eq!(
        event.message(),
        Some("ReferenceError: chart is not defined")
    );
    assert_eq!(
        event.user.as_ref().and_then(|u| u.ip_address.as_deref()),
        Some(CLIENT_IP)
    );
    assert_eq!(
        crumbs(&event),
        [
            ("navigation", "", Level::Info),
            ("console", "chart lib not loaded", Level::Warning),
        ]
    );
    assert_eq!(event.timestamp, Some(received()));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn legacy_scalars_numeric_timestamps_and_levels() {
    let event = json_event(json!({
        "message": "disk almost full",
        "timestamp": 1795315900,
        "level": 30,
        "tags": [["mount", "/var"], ["pct", 93.5]],
        "sentry.interfaces.Breadcrumbs": {"values": [
            {"timestamp": 1795315890.25, "message": "checked", "level": "critical"}
        ]},
        "sentry.interfaces.Stacktrace": {"frames": [{"function": "check", "lineno": 3}]},
    }));
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:51:40Z")));
    assert_eq!(event.level, Some(Level::Warning));
    assert_eq!(event.ty.as_deref(), Some("default"));
    assert_eq!(event.message(), Some("disk almost full"));
    assert_eq!(tags(&event), [("mount", "/var"), ("pct", "93.5")]);
    assert_eq!(crumbs(&event), [("", "checked", Level::Fatal)]);
    assert_eq!(
        event.breadcrumbs()[0].timestamp,
        Some(ts("2026-11-22T02:51:30.250Z"))
    );
    assert_eq!(event.stacktrace.as_ref().map(|s| s.frames.len()), Some(1));
}

#[test]
fn single_exception_takes_the_top_level_stacktrace() {
    let event = json_event(json!({
        "exception": {"type": "E", "value": "v"},
        "stacktrace": {"frames": [{"function": "f", "filename": "a.py", "lineno": 1}]},
    }));
    assert!(event.stacktrace.is_none());
    assert_eq!(frames(&event.exceptions()[0]), [("a.py", "f", 1, false)]);
}

#[test]
fn message_with_params_is_formatted() {
    let event = json_event(json!({
        "logentry": {"message": "user %s paid %d", "params": ["ada", 5]},
    }));
    let entry = event.logentry.as_ref().expect("logentry");
    assert_eq!(entry.formatted.as_deref(), Some("user ada paid 5"));
    assert_eq!(entry.message.as_deref(), Some("user %s paid %d"));

    let event = json_event(json!({"logentry": {"message": "Hello {0}", "params": ["world"]}}));
    assert_eq!(event.message(), Some("Hello world"));

    let event = json_event(json!({"logentry": {"params": [1]}}));
    assert!(event.logentry.is_none());
    assert_eq!(error_names(&event), ["logentry"]);
}

// ---------------------------------------------------------------------------------------
// Normalization rules
// ---------------------------------------------------------------------------------------

#[test]
fn event_id_from_envelope_then_payload_then_generated() {
    let payload = json!({"event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0"}).to_string();
    let envelope_id = uuid("0123456789abcdef0123456789abcdef");
    let ctx = NormalizeContext {
        envelope_event_id: Some(envelope_id),
        ..context()
    };
    let event = normalize(payload.as_bytes(), &ctx).expect("event");
    assert_eq!(event.event_id, Some(envelope_id));

    let event = normalize(payload.as_bytes(), &context()).expect("event");
    assert_eq!(
        event.event_id,
        Some(uuid("fc6d8c0c43fc4630ad850ee518f1b9d0"))
    );

    let a = json_event(json!({}));
    let b = json_event(json!({}));
    assert!(a.event_id.is_some());
    assert_ne!(a.event_id, b.event_id);
}

#[test]
fn defaults_for_an_empty_event() {
    let event = json_event(json!({}));
    assert_eq!(event.timestamp, Some(received()));
    assert_eq!(event.received, Some(received()));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.platform.as_deref(), Some("other"));
    assert_eq!(event.ty.as_deref(), Some("default"));
    assert!(event.user.is_none());
    assert!(event.errors.is_empty());

    let event = json_event(json!({"type": "transaction"}));
    assert_eq!(event.level, Some(Level::Info));
    assert_eq!(event.ty.as_deref(), Some("transaction"));
}

#[test]
fn clock_drift_moves_event_and_breadcrumbs() {
    let sent = ts("2026-11-22T00:53:00Z");
    let body = json!({
        "timestamp": "2026-11-22T00:52:59Z",
        "breadcrumbs": [{"timestamp": "2026-11-22T00:52:00Z", "message": "m"}],
    })
    .to_string();
    let ctx = NormalizeContext {
        sent_at: Some(sent),
        ..context()
    };
    let event = normalize(body.as_bytes(), &ctx).expect("event");
    // The client's clock was two hours behind.
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:52:59Z")));
    assert_eq!(
        event.breadcrumbs()[0].timestamp,
        Some(ts("2026-11-22T02:52:00Z"))
    );
    assert_eq!(event.errors.len(), 1);
    assert_eq!(event.errors[0].ty, "clock_drift");
    assert_eq!(
        event.errors[0].value,
        Some(json!({
            "sdk_time": "2026-11-22T00:53:00+00:00",
            "server_time": "2026-11-22T02:53:00+00:00",
        }))
    );

    // Less than 55 minutes is latency, not drift.
    let ctx = NormalizeContext {
        sent_at: Some(received() - Duration::minutes(54)),
        ..context()
    };
    let event = normalize(br#"{"timestamp": "2026-11-22T02:00:00Z"}"#, &ctx).expect("event");
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:00:00Z")));
    assert!(event.errors.is_empty());
}

#[test]
fn future_and_ancient_timestamps_are_clamped() {
    let event = json_event(json!({
        "timestamp": "2026-11-23T02:53:00Z",
        "breadcrumbs": [{"timestamp": "2026-11-23T02:52:00Z"}],
    }));
    assert_eq!(event.timestamp, Some(received()));
    assert_eq!(
        event.breadcrumbs()[0].timestamp,
        Some(received() - Duration::minutes(1))
    );
    assert_eq!(event.errors[0].ty, "future_timestamp");

    let event = json_event(json!({"timestamp": "2020-01-01T00:00:00Z"}));
    assert_eq!(event.timestamp, Some(received()));
    assert_eq!(event.errors[0].ty, "past_timestamp");

    // Within a minute ahead is tolerated.
    let event = json_event(json!({"timestamp": "2026-11-22T02:53:30Z"}));
    assert_eq!(event.timestamp, Some(ts("2026-11-22T02:53:30Z")));
}

#[test]
fn platform_release_dist_environment() {
    let event = json_event(json!({
        "platform": "dart",
        "release": "  shop@1.0  ",
        "dist": " ",
        "environment": "",
        "transaction": " /checkout ",
    }));
    assert_eq!(event.platform.as_deref(), Some("other"));
    assert_eq!(event.release.as_deref(), Some("shop@1.0"));
    assert_eq!(event.dist, None);
    assert_eq!(event.environment, None);
    assert_eq!(event.transaction.as_deref(), Some("/checkout"));
    assert!(event.errors.is_empty(), "{:?}", event.errors);

    let event = json_event(json!({"release": "latest", "environment": "None", "dist": "a b"}));
    assert_eq!(
        (event.release.as_deref(), event.environment.as_deref()),
        (None, None)
    );
    assert_eq!(event.dist, None);
    assert_eq!(error_names(&event), ["release", "dist", "environment"]);

    let event = json_event(json!({"release": 12, "dist": 345}));
    assert_eq!(event.release.as_deref(), Some("12"));
    assert_eq!(event.dist.as_deref(), Some("345"));
}

#[test]
fn event_type_inference() {
    let event = json_event(json!({"type": "error", "message": "no exception"}));
    assert_eq!(event.ty.as_deref(), Some("default"));
    let event = json_event(json!({"type": "default", "exception": [{"type": "E"}]}));
    assert_eq!(event.ty.as_deref(), Some("error"));
    let event = json_event(json!({"type": "feedback"}));
    assert_eq!(event.ty.as_deref(), Some("feedback"));
    let event = json_event(json!({"sentry.interfaces.Csp": {"blocked_uri": "x"}}));
    assert_eq!(event.ty.as_deref(), Some("csp"));
}

#[test]
fn exceptions_without_type_or_value_are_removed() {
    let event = json_event(json!({"exception": {"values": [
        {"type": "", "value": ""},
        {"value": "ValueError: bad input"},
        {"value": "Something: with\nnewline"},
        {"type": "E", "mechanism": {"handled": true}},
    ]}}));
    assert_eq!(
        chain(&event),
        [
            ("ValueError", "bad input"),
            ("", "Something: with\nnewline"),
            ("E", ""),
        ]
    );
    assert_eq!(
        event.exceptions()[2]
            .mechanism
            .as_ref()
            .and_then(|m| m.ty.as_deref()),
        Some("generic")
    );
    assert_eq!(event.errors.len(), 1);
    assert_eq!(event.errors[0].ty, "missing_attribute");
    assert_eq!(event.errors[0].name.as_deref(), Some("exception.values.0"));

    let event = json_event(json!({"exception": [{}]}));
    assert!(event.exception.is_none());
    assert_eq!(event.ty.as_deref(), Some("default"));
}

#[test]
fn frames_paths_functions_and_context() {
    let event = json_event(
        json!({"exception": [{"type": "E", "stacktrace": {"frames": [
            {"filename": "https://example.com/", "function": "?"},
            {"abs_path": "file:///Users/ada/app/index.html"},
            {"abs_path": "app:///main.jsbundle", "filename": ""},
            {"filename": "a.js", "abs_path": "https://x.example/a.js", "pre_context": ["x"]},
            {"filename": "b.js", "post_context": [null, "y"], "context_line": "z"},
        ]}}]}),
    );
    let trace = event.exceptions()[0].stacktrace.as_ref().expect("trace");
    let paths: Vec<_> = trace
        .frames
        .iter()
        .map(|f| (f.filename.as_deref(), f.abs_path.as_deref()))
        .collect();
    assert_eq!(
        paths,
        [
            (Some("https://example.com/"), Some("https://example.com/")),
            (
                Some("/Users/ada/app/index.html"),
                Some("file:///Users/ada/app/index.html")
            ),
            (Some("app:///main.jsbundle"), Some("app:///main.jsbundle")),
            (Some("a.js"), Some("https://x.example/a.js")),
            (Some("b.js"), Some("b.js")),
        ]
    );
    assert_eq!(trace.frames[0].function, None);
    assert_eq!(trace.frames[3].context_line.as_deref(), Some(""));
    assert_eq!(trace.frames[4].post_context, ["", "y"]);
    assert_eq!(trace.frames[4].context_line.as_deref(), Some("z"));
}

#[test]
fn user_ips_and_unknown_user_fields() {
    let ctx = context();
    let auto = br#"{"platform": "python", "user": {"ip_address": "{{auto}}", "plan": "pro"}}"#;
    let event = normalize(auto, &ctx).expect("event");
    let user = event.user.as_ref().expect("user");
    assert_eq!(user.ip_address.as_deref(), Some(CLIENT_IP));
    assert_eq!(user.data, Some(json!({"plan": "pro"})));
    assert!(user.other.is_empty());

    let remote = br#"{"request": {"env": {"REMOTE_ADDR": "{{auto}}"}}}"#;
    let event = normalize(remote, &ctx).expect("event");
    assert_eq!(
        event.user.as_ref().and_then(|u| u.ip_address.as_deref()),
        Some(CLIENT_IP)
    );

    for platform in ["cocoa", "objc", "javascript"] {
        let body = json!({"platform": platform}).to_string();
        let event = normalize(body.as_bytes(), &ctx).expect("event");
        assert_eq!(
            event.user.as_ref().and_then(|u| u.ip_address.as_deref()),
            Some(CLIENT_IP),
            "{platform}"
        );
    }
    let event = normalize(br#"{"platform": "java"}"#, &ctx).expect("event");
    assert!(event.user.is_none());

    // An explicit user IP is never overwritten.
    let body = br#"{"platform": "javascript", "user": {"ip_address": "10.0.0.1"}}"#;
    let event = normalize(body, &ctx).expect("event");
    assert_eq!(
        event.user.as_ref().and_then(|u| u.ip_address.as_deref()),
        Some("10.0.0.1")
    );
}

#[test]
fn tags_are_cleaned() {
    let event = json_event(json!({
        "server_name": "web-9",
        "site": "eu",
        "tags": {
            "release": "x", "user": "y", "function": "f", "filename": "g", "dist": "d",
            "ok": "1", " padded ": "v", "empty": "", "multi": "a\nb",
        },
    }));
    // Object keys arrive sorted (" padded " first).
    assert_eq!(
        tags(&event),
        [
            ("padded", "v"),
            ("ok", "1"),
            ("server_name", "web-9"),
            ("site", "eu")
        ]
    );
    assert_eq!(error_names(&event), ["tags.2", "tags.5"]);

    let event = json_event(json!({"tags": [["a", "1"], ["a", "2"]]}));
    assert_eq!(tags(&event), [("a", "1")]);
}

#[test]
fn contexts_get_types_and_lose_reprocessing() {
    let event = json_event(json!({"contexts": {
        "os": {"name": "Linux"},
        "my_state": {"step": 3},
        "gpu": {"type": "gpu", "name": "X"},
        "reprocessing": {"original_issue_id": 1},
    }}));
    assert_eq!(context_type(&event, "os"), Some("os"));
    assert_eq!(context_type(&event, "my_state"), Some("my_state"));
    assert_eq!(context_type(&event, "gpu"), Some("gpu"));
    assert!(
        !event
            .contexts
            .as_ref()
            .expect("contexts")
            .contains_key("reprocessing")
    );
}

#[test]
fn sdk_from_envelope_header_when_payload_has_none() {
    let ctx = NormalizeContext {
        envelope_sdk: Some(json!({"name": "sentry.javascript.node", "version": "11.12.0"})),
        ..context()
    };
    let event = normalize(b"{}", &ctx).expect("event");
    let sdk = event.sdk.as_ref().expect("sdk");
    assert_eq!(sdk.name.as_deref(), Some("sentry.javascript.node"));

    let event = normalize(br#"{"sdk": {"name": "mine"}}"#, &ctx).expect("event");
    assert_eq!(
        event.sdk.as_ref().and_then(|s| s.name.as_deref()),
        Some("mine")
    );
}

#[test]
fn unknown_debug_images_are_dropped() {
    let event = json_event(json!({"debug_meta": {"images": [
        {"type": "apple", "name": "/usr/lib/libA.dylib", "uuid": "3ab2c1d0-1111-2222-3333-444455556666"},
        {"type": "mystery"},
        {"type": "elf", "code_file": "/app", "debug_id": "d"},
    ]}}));
    let images = &event.debug_meta.as_ref().expect("debug_meta").images;
    let kinds: Vec<_> = images.iter().map(|i| i.ty.as_deref()).collect();
    assert_eq!(kinds, [Some("macho"), Some("elf")]);
    assert_eq!(images[0].code_file.as_deref(), Some("/usr/lib/libA.dylib"));
    assert_eq!(error_names(&event), ["debug_meta.images.1"]);
}

#[test]
fn normalizing_a_stored_event_changes_nothing() {
    for name in [
        "sentry-python/chained_exception.json",
        "sentry-python/wsgi_unhandled.json",
        "sentry-node/handled_error_with_cause.json",
        "sentry-rust/panic.json",
    ] {
        let first = fixture(name);
        let stored = serde_json::to_vec(&first).expect("serialize");
        let again = normalize(&stored, &envelope_context(name)).expect("renormalize");
        assert_eq!(again, first, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Security reports
// ---------------------------------------------------------------------------------------

#[test]
fn csp_report_becomes_a_csp_event() {
    let event =
        normalize_security_report(&payload("csp/csp_report.json"), &context()).expect("report");

    assert_eq!(event.ty.as_deref(), Some("csp"));
    assert_eq!(event.logger.as_deref(), Some("csp"));
    assert_eq!(
        event.message(),
        Some("Blocked 'script' from 'evil.example.net'")
    );
    assert_eq!(event.culprit.as_deref(), Some("script-src-elem"));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.timestamp, Some(received()));
    assert!(event.event_id.is_some());
    assert_eq!(
        tags(&event),
        [
            ("effective-directive", "script-src-elem"),
            ("blocked-uri", "https://evil.example.net/inject.js"),
            ("blocked-host", "evil.example.net"),
        ]
    );
    let request = event.request.as_ref().expect("request");
    assert_eq!(
        request.url.as_deref(),
        Some("https://shop.example.com/checkout")
    );
    assert_eq!(
        request.header("Referer"),
        Some("https://shop.example.com/cart")
    );
    assert_eq!(
        event.user.as_ref().and_then(|u| u.ip_address.as_deref()),
        Some(CLIENT_IP)
    );
    let csp = event.other.get("csp").expect("csp data");
    assert_eq!(csp["effective_directive"], json!("script-src-elem"));
    assert_eq!(
        csp["blocked_uri"],
        json!("https://evil.example.net/inject.js")
    );
    assert_eq!(csp["line_number"], json!(14));
    assert_eq!(csp["status_code"], json!(200));
    assert!(event.errors.is_empty(), "{:?}", event.errors);
}

#[test]
fn reporting_api_batch_keeps_csp_violations() {
    let events = normalize_security_reports(&payload("csp/reporting_api.json"), &context())
        .expect("reports");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.ty.as_deref(), Some("csp"));
    assert_eq!(
        event.message(),
        Some("Blocked 'image' from 'tracker.example.org'")
    );
    assert_eq!(event.tag("blocked-host"), Some("tracker.example.org"));
    let request = event.request.as_ref().expect("request");
    assert_eq!(
        request.url.as_deref(),
        Some("https://shop.example.com/account")
    );
    assert_eq!(request.header("Referer"), None);
    assert_eq!(
        event.other["csp"]["source_file"],
        json!("https://shop.example.com/static/js/main.8f2a1c.js")
    );
}

#[test]
fn csp_messages_for_inline_and_self() {
    let report = |body: Value| {
        let raw = json!({"csp-report": body}).to_string();
        normalize_security_report(raw.as_bytes(), &context()).expect("report")
    };
    let event = report(json!({"effective-directive": "script-src", "blocked-uri": "inline"}));
    assert_eq!(event.message(), Some("Blocked unsafe inline 'script'"));
    let event = report(json!({"violated-directive": "style-src 'self'", "blocked-uri": ""}));
    assert_eq!(event.message(), Some("Blocked inline 'style'"));
    let event = report(json!({
        "document-uri": "https://a.example/page",
        "violated-directive": "img-src https://a.example data:",
        "blocked-uri": "data",
    }));
    assert_eq!(event.message(), Some("Blocked 'image' from 'data:'"));
    assert_eq!(event.culprit.as_deref(), Some("img-src 'self' data:"));
}

#[test]
fn unusable_security_reports_are_errors() {
    let ctx = context();
    assert!(matches!(
        normalize_security_report(
            br#"{"csp-report": {"effective-directive": "nonsense"}}"#,
            &ctx
        ),
        Err(NormalizeError::InvalidSecurityReport)
    ));
    assert!(matches!(
        normalize_security_report(br#"{"expect-ct-report": {}}"#, &ctx),
        Err(NormalizeError::UnsupportedSecurityReport)
    ));
    assert!(matches!(
        normalize_security_report(br#"[{"type": "deprecation", "body": {}}]"#, &ctx),
        Err(NormalizeError::UnsupportedSecurityReport)
    ));
    assert!(matches!(
        normalize_security_report(b"12", &ctx),
        Err(NormalizeError::NotAnObject)
    ));
}

// ---------------------------------------------------------------------------------------
// Garbage
// ---------------------------------------------------------------------------------------

#[test]
fn wrong_types_everywhere_still_make_an_event() {
    let event =
        normalize(&payload("garbage/wrong_types.json"), &context()).expect("still an event");

    assert!(event.event_id.is_some());
    assert_eq!(event.timestamp, Some(received()));
    assert_eq!(event.level, Some(Level::Error));
    assert_eq!(event.platform.as_deref(), Some("other"));
    assert_eq!(event.logger, None);
    assert_eq!(event.release, None);
    assert_eq!(event.dist, None);
    assert_eq!(event.environment, None);
    assert_eq!(event.server_name, None);
    assert_eq!(event.logentry, None);
    assert!(event.tags.is_empty());
    assert_eq!(event.extra, None);
    assert_eq!(event.sdk, None);
    assert_eq!(event.fingerprint, None);
    assert_eq!(event.modules, None);
    assert!(event.threads.is_none());

    let user = event.user.as_ref().expect("user");
    assert_eq!(
        (user.id.as_deref(), user.ip_address.as_deref()),
        (None, None)
    );
    assert_eq!(user.data, Some(json!({"plan": "gold"})));

    let request = event.request.as_ref().expect("request");
    assert_eq!(
        (request.url.as_deref(), request.method.as_deref()),
        (None, None)
    );
    assert!(request.headers.is_empty());

    assert_eq!(context_type(&event, "runtime"), Some("runtime"));
    let contexts = event.contexts.as_ref().expect("contexts");
    assert_eq!(contexts.len(), 1);

    assert_eq!(chain(&event), [("Error", "ok")]);
    let main = event.main_exception().expect("main");
    let frame = &main.stacktrace.as_ref().expect("trace").frames;
    assert_eq!(frame.len(), 1);
    assert_eq!(
        (
            frame[0].function.as_deref(),
            frame[0].lineno,
            frame[0].in_app
        ),
        (None, None, None)
    );
    let mechanism = main.mechanism.as_ref().expect("mechanism");
    assert_eq!(
        (mechanism.ty.as_deref(), mechanism.handled),
        (Some("generic"), None)
    );

    assert_eq!(event.breadcrumbs().len(), 1);
    assert_eq!(event.breadcrumbs()[0].level, Some(Level::Info));
    let images = &event.debug_meta.as_ref().expect("debug_meta").images;
    assert_eq!(images.len(), 1);

    let names = error_names(&event);
    for expected in [
        "event_id",
        "timestamp",
        "level",
        "platform",
        "logger",
        "release",
        "dist",
        "environment",
        "server_name",
        "message",
        "tags",
        "extra",
        "user.id",
        "user.ip_address",
        "user.email",
        "request.url",
        "request.method",
        "request.headers",
        "request.query_string",
        "request.cookies",
        "request.env",
        "contexts.os",
        "contexts.device",
        "exception.values.0.type",
        "exception.values.1.stacktrace.frames.0.function",
        "exception.values.1.stacktrace.frames.0.lineno",
        "exception.values.1.stacktrace.frames.0.colno",
        "exception.values.1.stacktrace.frames.0.in_app",
        "exception.values.1.stacktrace.frames.0.instruction_addr",
        "exception.values.1.stacktrace.frames.0.pre_context",
        "exception.values.1.stacktrace.frames.1",
        "exception.values.1.mechanism.handled",
        "exception.values.1.mechanism.exception_id",
        "exception.values.2",
        "threads",
        "breadcrumbs.values.0.timestamp",
        "breadcrumbs.values.0.level",
        "breadcrumbs.values.0.data",
        "breadcrumbs.values.1",
        "sdk",
        "fingerprint",
        "modules",
        "debug_meta.images.2",
        "errors",
        "exception.values.0",
        "debug_meta.images.0",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:#?}"
        );
    }
}

#[test]
fn non_objects_are_rejected() {
    let ctx = context();
    for raw in [&b"[1, 2]"[..], b"\"event\"", b"null", b"42"] {
        assert!(
            matches!(normalize(raw, &ctx), Err(NormalizeError::NotAnObject)),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    for raw in [&b""[..], b"{", b"not json", b"{\"a\": NaN"] {
        assert!(
            matches!(normalize(raw, &ctx), Err(NormalizeError::InvalidJson(_))),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn random_mutations_never_panic() {
    // Every value of a real payload replaced, one at a time, by values of other types.
    let base: Value = serde_json::from_slice(&payload("sentry-node/handled_error_with_cause.json"))
        .expect("json");
    let replacements = [
        json!(null),
        json!(-1),
        json!(1.5e300),
        json!("x"),
        json!([]),
        json!({}),
        json!([null, {"a": 1}]),
        json!(true),
    ];
    let mut paths = Vec::new();
    collect_paths(&base, &mut Vec::new(), &mut paths);
    let ctx = context();
    for path in &paths {
        for replacement in &replacements {
            let mut mutated = base.clone();
            if let Some(slot) = pointer_mut(&mut mutated, path) {
                *slot = replacement.clone();
            }
            let raw = serde_json::to_vec(&mutated).expect("serialize");
            let event = normalize(&raw, &ctx).expect("an object is always an event");
            assert!(event.event_id.is_some());
        }
    }
    assert!(paths.len() > 100);
}

fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                out.push(prefix.clone());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(i.to_string());
                out.push(prefix.clone());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// Speed
// ---------------------------------------------------------------------------------------

/// Prints parse + normalize time per event (`--nocapture` to see it). Debug builds are
/// several times slower than release; the figure is informative, not asserted.
#[test]
fn parse_and_normalize_speed() {
    for name in [
        "sentry-python/chained_exception.json",
        "sentry-node/handled_error_with_cause.json",
        "sentry-rust/panic.json",
    ] {
        let pretty = payload(name);
        let value: Value = serde_json::from_slice(&pretty).expect("json");
        let compact = serde_json::to_vec(&value).expect("compact");
        let ctx = envelope_context(name);
        let rounds = 300;
        let start = Instant::now();
        for _ in 0..rounds {
            let event = normalize(&compact, &ctx).expect("event");
            std::hint::black_box(event);
        }
        let per_event = start.elapsed() / rounds;
        println!(
            "{name}: {} bytes, {:.1} µs per parse + normalize",
            compact.len(),
            per_event.as_secs_f64() * 1e6
        );
    }
}

/// Every captured SDK payload (and the legacy and garbage ones) reads the same whether it is
/// streamed from its JSON text, as the pipeline now reads it, or taken apart from a `Value`
/// tree, as before: same fields, same unknown fields kept, same problems recorded.
#[test]
fn sdk_payloads_read_the_same_streamed_as_through_a_value() {
    let mut read = 0;
    for dir in [
        "sentry-python",
        "sentry-node",
        "sentry-browser",
        "sentry-rust",
        "legacy",
        "garbage",
    ] {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/payloads")
            .join(dir);
        for file in common::json_files(&folder) {
            let raw = std::fs::read(&file).expect("payload");
            let sorted = |mut e: Event| {
                e.errors.sort_by_key(|e| e.name.clone());
                e
            };
            let Ok(value) = serde_json::from_slice::<Value>(&raw) else {
                // Bare NaN (old Python clients): both readers refuse it alike, and
                // `normalize` retries with `null`s (tested above).
                assert!(Event::from_json(&raw).is_err(), "{}", file.display());
                continue;
            };
            let by_value = Event::from_value(value).map(sorted).expect("an object");
            let streamed = Event::from_json(&raw)
                .expect("json")
                .map(sorted)
                .expect("an object");
            assert_eq!(streamed, by_value, "{}", file.display());
            assert!(
                streamed.exception.is_some() || streamed.logentry.is_some() || dir == "garbage",
                "{} read as an error or a message",
                file.display()
            );
            read += 1;
        }
    }
    assert!(read >= 10, "only {read} payloads found");
}

/// Ingest answers 200 only for payloads `json_check` passes; each of those must then read in
/// the worker, or the event is lost after the client was told it arrived. Real SDK payloads,
/// broken at random places, and nesting at the limit inside every streamed interface.
#[test]
fn what_ingest_accepts_the_worker_reads() {
    use faultline_core::protocol::json_check;

    let ctx = context();
    let accepted = |raw: &[u8]| json_check::check(raw).is_ok_and(|c| c.is_object);
    for depth in 120..135 {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        for shape in [
            r#"{"extra":{"a":X}}"#,
            r#"{"exception":{"values":[{"type":"E","stacktrace":{"frames":[{"vars":{"v":X}}]}}]}}"#,
            r#"{"exception":[{"type":"E","mechanism":{"data":{"d":X}}}]}"#,
            r#"{"breadcrumbs":{"values":[{"message":"m","data":{"d":X}}]}}"#,
            r#"{"contexts":{"c":{"x":X}}}"#,
            r#"{"tags":X}"#,
            r#"{"sdk":{"name":"s","integrations":X}}"#,
            r#"{"request":{"data":X}}"#,
        ] {
            let json = shape.replace('X', &nested);
            assert_eq!(
                accepted(json.as_bytes()),
                normalize(json.as_bytes(), &ctx).is_ok(),
                "depth {depth} in {shape}"
            );
        }
    }

    let replacements: &[u8] = b"\"\\{}[]:,-.e09 \x01\xc3\xffnu";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut passed, mut refused) = (0, 0);
    for dir in [
        "sentry-python",
        "sentry-node",
        "sentry-browser",
        "sentry-rust",
    ] {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/payloads")
            .join(dir);
        for file in common::json_files(&folder) {
            let raw = std::fs::read(&file).expect("payload");
            for _ in 0..400 {
                let mut mutated = raw.clone();
                let position = (next() % raw.len() as u64) as usize;
                let pick = replacements[(next() % replacements.len() as u64) as usize];
                match next() % 3 {
                    0 => mutated[position] = pick,
                    1 => mutated.insert(position, pick),
                    _ => {
                        mutated.remove(position);
                    }
                }
                if accepted(&mutated) {
                    passed += 1;
                    if let Err(e) = normalize(&mutated, &ctx) {
                        panic!(
                            "ingest accepts, the worker refuses ({e}): {}",
                            String::from_utf8_lossy(&mutated)
                        );
                    }
                } else {
                    refused += 1;
                }
            }
        }
    }
    assert!(
        passed > 500 && refused > 500,
        "{passed} passed, {refused} refused"
    );
}
