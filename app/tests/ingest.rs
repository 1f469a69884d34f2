//! Ingest against the running application: every accepted form of request stores its
//! event; every bad one gets the right status and a JSON `detail`, never a 5xx, and the
//! server keeps serving.

mod common;

use std::io::Write;

use common::{post, request, spawn_app};
use sea_orm::ConnectionTrait;

fn event_json(event_id: &str, message: &str) -> String {
    serde_json::json!({
        "event_id": event_id,
        "level": "error",
        "platform": "python",
        "message": message,
        "exception": {"values": [{"type": "RuntimeError", "value": message,
            "stacktrace": {"frames": [{"function": "handler", "module": "app", "filename": "app.py", "lineno": 3, "in_app": true}]}}]},
    })
    .to_string()
}

/// An envelope as the Python SDK writes it: `length` on every item, trailing newline.
fn python_envelope(event_id: &str, message: &str) -> Vec<u8> {
    let event = event_json(event_id, message);
    format!(
        "{{\"event_id\":\"{event_id}\",\"sent_at\":\"2026-11-22T00:00:00Z\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
        event.len()
    )
    .into_bytes()
}

/// An envelope as the JS SDK writes it: no `length`, no trailing newline.
fn js_envelope(event_id: &str, message: &str) -> Vec<u8> {
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{}",
        event_json(event_id, message)
    )
    .into_bytes()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_forms_are_stored() {
    let app = spawn_app(&[]).await;
    let auth = app.auth_header();

    // X-Sentry-Auth + Python-style envelope.
    let id = new_id();
    let a = post(
        &app.envelope_url(),
        &[("X-Sentry-Auth", &auth)],
        python_envelope(&id, "python style"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&a.body).expect("json")["id"],
        id
    );
    assert_eq!(
        app.wait_for_event(&id).await["title"],
        "RuntimeError: python style"
    );

    // Query-string auth (browser/Node), JS-style envelope, no content type, gzip.
    let id = new_id();
    let url = format!(
        "{}?sentry_key={}&sentry_version=7",
        app.envelope_url(),
        app.public_key
    );
    let a = post(
        &url,
        &[("Content-Encoding", "gzip")],
        gzip(&js_envelope(&id, "js style")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("*")
    );
    app.wait_for_event(&id).await;

    // Envelope-header DSN only, brotli, folded slashes, no trailing slash.
    let id = new_id();
    let body = format!(
        "{{\"event_id\":\"{id}\",\"dsn\":\"{}\"}}\n{{\"type\":\"event\"}}\n{}",
        app.dsn,
        event_json(&id, "dsn auth")
    );
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 4, 22);
        w.write_all(body.as_bytes()).expect("brotli");
    }
    let url = format!("{}//api/{}/envelope", app.url, app.project_id);
    let a = post(&url, &[("Content-Encoding", "br")], br).await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.wait_for_event(&id).await;

    // Legacy /store/ with a JSON event and Authorization: Sentry.
    let id = new_id();
    let url = format!("{}/api/{}/store/", app.url, app.project_id);
    let a = post(
        &url,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        event_json(&id, "store").into_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.wait_for_event(&id).await;

    // CSP report through /security/ with ?sentry_key=.
    let url = format!(
        "{}/api/{}/security/?sentry_key={}",
        app.url, app.project_id, app.public_key
    );
    let report = br#"{"csp-report":{"document-uri":"https://shop.example/","violated-directive":"script-src","effective-directive":"script-src","blocked-uri":"https://evil.example/x.js"}}"#;
    let a = post(
        &url,
        &[("Content-Type", "application/csp-report")],
        report.to_vec(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = serde_json::from_str::<serde_json::Value>(&a.body).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let csp = app.wait_for_event(&id).await;
    assert_eq!(csp["type"], "csp");

    // Unknown and unsupported item types are dropped with 200.
    let body = "{}\n{\"type\":\"no_such_type\"}\nabc\n{\"type\":\"session\"}\n{\"sid\":\"x\"}\n"
        .to_string();
    let a = post(
        &app.envelope_url(),
        &[("X-Sentry-Auth", &auth)],
        body.into_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The same event id twice is stored once.
    let id = new_id();
    for _ in 0..2 {
        let a = post(
            &app.envelope_url(),
            &[("X-Sentry-Auth", &auth)],
            python_envelope(&id, "twice"),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    app.wait_for_event(&id).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM events WHERE event_id = '{id}'"
        ))
        .await,
        1
    );

    // CORS preflight.
    let a = request(
        "OPTIONS",
        &app.envelope_url(),
        &[
            ("Origin", "https://shop.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        vec![],
    )
    .await;
    assert!(a.status == 200 || a.status == 204, "{}", a.status);
    assert!(
        a.headers
            .get("access-control-allow-headers")
            .is_some_and(|h| h.contains("x-sentry-auth"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let app = spawn_app(&[]).await;
    let auth = app.auth_header();
    let url = app.envelope_url();
    let id = new_id();
    let good = python_envelope(&id, "good");

    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        bomb.write_all(&zeros).expect("bomb");
    }
    let bomb = bomb.finish().expect("bomb");
    let huge_event = {
        let big = "x".repeat(1_100_000);
        let event = format!("{{\"message\":\"{big}\"}}");
        format!(
            "{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
            event.len()
        )
        .into_bytes()
    };
    let other_key = "0123456789abcdef0123456789abcdef";
    // (what, URL, headers, body, expected status)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "truncated envelope",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            good[..good.len() - 30].to_vec(),
            400,
        ),
        (
            "length past the end",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\",\"length\":500}\n{}\n".to_vec(),
            400,
        ),
        (
            "invalid JSON header",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{not json\n".to_vec(),
            400,
        ),
        (
            "invalid JSON event",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\"}\n{\"broken\": \n".to_vec(),
            400,
        ),
        (
            "event nested deeper than the worker reads",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            format!(
                "{{}}\n{{\"type\":\"event\"}}\n{{\"exception\": {}{}}}\n",
                "[".repeat(200),
                "]".repeat(200)
            )
            .into_bytes(),
            400,
        ),
        // The next four got a 200 and then died in the worker, whose parser refuses them:
        // ingest's probe skipped strings and numbers without reading them.
        (
            "event with a lone UTF-16 surrogate",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\"}\n{\"extra\":{\"x\":\"\\ud800\"}}\n".to_vec(),
            400,
        ),
        (
            "event with a number out of range",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\"}\n{\"extra\":{\"x\":1e400}}\n".to_vec(),
            400,
        ),
        (
            "event with bytes that are not UTF-8",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\"}\n{\"message\":\"bad \xff byte\"}\n".to_vec(),
            400,
        ),
        (
            "event that is an empty array",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\"}\n[]\n".to_vec(),
            400,
        ),
        (
            "event that is not an object",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{}\n{\"type\":\"event\"}\n[1,2,3]\n".to_vec(),
            400,
        ),
        (
            "empty body",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            vec![],
            400,
        ),
        (
            "garbage gzip",
            url.clone(),
            vec![
                ("X-Sentry-Auth", auth.clone()),
                ("Content-Encoding", "gzip".into()),
            ],
            b"definitely not gzip".to_vec(),
            400,
        ),
        (
            "decompression bomb",
            url.clone(),
            vec![
                ("X-Sentry-Auth", auth.clone()),
                ("Content-Encoding", "gzip".into()),
            ],
            bomb,
            413,
        ),
        (
            "oversize event item",
            url.clone(),
            vec![("X-Sentry-Auth", auth.clone())],
            huge_event,
            413,
        ),
        (
            "unknown encoding",
            url.clone(),
            vec![
                ("X-Sentry-Auth", auth.clone()),
                ("Content-Encoding", "lzma".into()),
            ],
            good.clone(),
            415,
        ),
        ("missing auth", url.clone(), vec![], good.clone(), 401),
        (
            "two auth sources",
            format!("{url}?sentry_key={}", app.public_key),
            vec![("X-Sentry-Auth", auth.clone())],
            good.clone(),
            401,
        ),
        (
            "auth without key",
            url.clone(),
            vec![("X-Sentry-Auth", "Sentry sentry_version=7".into())],
            good.clone(),
            401,
        ),
        (
            "short key",
            url.clone(),
            vec![("X-Sentry-Auth", "Sentry sentry_key=abc".into())],
            good.clone(),
            400,
        ),
        (
            "future protocol",
            url.clone(),
            vec![(
                "X-Sentry-Auth",
                format!("Sentry sentry_key={}, sentry_version=8", app.public_key),
            )],
            good.clone(),
            400,
        ),
        (
            "unknown key",
            url.clone(),
            vec![("X-Sentry-Auth", format!("Sentry sentry_key={other_key}"))],
            good.clone(),
            403,
        ),
        (
            "wrong project",
            format!("{}/api/999999/envelope/", app.url),
            vec![("X-Sentry-Auth", auth.clone())],
            good.clone(),
            403,
        ),
        (
            "non-numeric project",
            format!("{}/api/abc/envelope/", app.url),
            vec![("X-Sentry-Auth", auth.clone())],
            good.clone(),
            400,
        ),
        (
            "store event with a lone UTF-16 surrogate",
            format!("{}/api/{}/store/", app.url, app.project_id),
            vec![("X-Sentry-Auth", auth.clone())],
            b"{\"message\":\"\\udc00\"}".to_vec(),
            400,
        ),
        (
            "store garbage",
            format!("{}/api/{}/store/", app.url, app.project_id),
            vec![("X-Sentry-Auth", auth.clone())],
            b"%%%garbage%%%".to_vec(),
            400,
        ),
    ];
    for (name, url, headers, body, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = post(&url, &headers, body).await;
        assert_eq!(a.status, expected, "{name}: {}", a.body);
        let json: serde_json::Value = serde_json::from_str(&a.body)
            .unwrap_or_else(|_| panic!("{name}: body is not JSON: {}", a.body));
        assert!(
            json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: no detail in {}",
            a.body
        );
    }

    // Still serving, and still storing.
    let a = post(&app.envelope_url(), &[("X-Sentry-Auth", &auth)], good).await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.wait_for_event(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_keys_and_rate_limits_are_enforced_within_seconds() {
    let app = spawn_app(&[]).await;
    let auth = app.auth_header();

    // A per-key limit of 2 events per minute: the third gets 429 with integer Retry-After
    // and X-Sentry-Rate-Limits.
    app.db
        .execute_unprepared(&format!(
            "UPDATE project_keys SET rate_limit_per_minute = 2 WHERE public_key = '{}'",
            app.public_key
        ))
        .await
        .expect("update");

    let mut limited = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while limited.is_none() && std::time::Instant::now() < deadline {
        let a = post(
            &app.envelope_url(),
            &[("X-Sentry-Auth", &auth)],
            python_envelope(&new_id(), "limited"),
        )
        .await;
        if a.status == 429 {
            limited = Some(a);
        } else {
            assert_eq!(a.status, 200, "{}", a.body);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let a = limited.expect("rate limit applied within seconds");
    let retry: u64 = a
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("integer seconds");
    assert!((1..=60).contains(&retry));
    let limits = a
        .headers
        .get("x-sentry-rate-limits")
        .expect("X-Sentry-Rate-Limits");
    assert!(
        limits.starts_with(&format!("{retry}:")) && limits.contains(":key"),
        "{limits}"
    );

    // Disabling the key is seen within seconds.
    app.db
        .execute_unprepared(&format!("UPDATE project_keys SET enabled = false, rate_limit_per_minute = NULL WHERE public_key = '{}'", app.public_key))
        .await
        .expect("update");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = post(
            &app.envelope_url(),
            &[("X-Sentry-Auth", &auth)],
            python_envelope(&new_id(), "disabled"),
        )
        .await;
        if a.status == 403 {
            assert!(a.body.contains("detail"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "disabled key still accepted: {}",
            a.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentry_rust_crate_sends_to_faultline() {
    let app = spawn_app(&[]).await;
    let dsn = app.dsn.clone();
    let event_id = tokio::task::spawn_blocking(move || {
        let mut options = sentry::ClientOptions::default();
        options.release = Some("rusty@0.1.0".into());
        let _guard = sentry::init((dsn, options));
        let err = "not a number".parse::<i32>().expect_err("parse fails");
        let id = sentry::capture_error(&err);
        sentry::Hub::current()
            .client()
            .map(|c| c.flush(Some(std::time::Duration::from_secs(5))));
        id
    })
    .await
    .expect("sdk thread");
    let event = app.wait_for_event(&event_id.simple().to_string()).await;
    assert_eq!(event["release"], "rusty@0.1.0");
    assert_eq!(event["exception"]["values"][0]["type"], "ParseIntError");
}
