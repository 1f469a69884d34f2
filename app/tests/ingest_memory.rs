//! Ingest's memory budget for request bodies: bytes being read, decoded and queued count
//! against `FAULTLINE_INGEST_MEMORY_MB`; a request that does not fit is answered `429`
//! with `Retry-After` at once instead of being buffered, and the budget comes back when
//! the bodies holding it are done (or their senders go away).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{post, spawn_app};

fn envelope(event_id: &str) -> Vec<u8> {
    padded_envelope(event_id, 0)
}

/// An envelope whose event carries `pad` bytes of extra data.
fn padded_envelope(event_id: &str, pad: usize) -> Vec<u8> {
    let event = serde_json::json!({
        "event_id": event_id, "message": "budget", "level": "error",
        "extra": {"pad": "x".repeat(pad)},
    })
    .to_string();
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
        event.len()
    )
    .into_bytes()
}

/// Starts a request whose body arrives only partly: `sent` bytes of an announced
/// `announced`, then the sender stalls with the connection open.
fn stalled_upload(
    url: &str,
    path: &str,
    auth: &str,
    announced: usize,
    sent: usize,
) -> std::net::TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-Sentry-Auth: {auth}\r\nContent-Type: application/x-sentry-envelope\r\nContent-Length: {announced}\r\n\r\n"
    )
    .expect("head");
    let chunk = vec![b' '; 64 * 1024];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).expect("body");
        left -= n;
    }
    s.flush().expect("flush");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_ingest_memory_budget_get_429_and_the_budget_comes_back() {
    let app = spawn_app(&[("FAULTLINE_INGEST_MEMORY_MB", "2")]).await;
    let path = format!("/api/{}/envelope/", app.project_id);
    let auth = app.auth_header();

    // An announced length alone holds nothing: a sender that says 20 MiB and sends
    // nothing does not keep others out.
    let announced_only = stalled_upload(&app.url, &path, &auth, 20 * 1024 * 1024, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let ok = post(
        &app.envelope_url(),
        &[("X-Sentry-Auth", &auth)],
        envelope(&id),
    )
    .await;
    assert_eq!(
        ok.status, 200,
        "an announced length took the budget: {}",
        ok.body
    );
    app.wait_for_event(&id).await;

    // 1.9 MiB that really arrived (and the sender stalls): the next body does not fit.
    let holding = stalled_upload(&app.url, &path, &auth, 3 * 1024 * 1024, 1900 * 1024);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let body = padded_envelope(&id, 200 * 1024);
        let answer = post(&app.envelope_url(), &[("X-Sentry-Auth", &auth)], body).await;
        if answer.status == 429 {
            break answer;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            Instant::now() < deadline,
            "the held bytes never filled the budget"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        refused.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    let limits = refused
        .headers
        .get("x-sentry-rate-limits")
        .cloned()
        .unwrap_or_default();
    assert!(
        limits.contains("memory_full"),
        "X-Sentry-Rate-Limits: {limits:?}"
    );

    // The stalled sender goes away: its bytes come back and events are accepted again.
    drop(holding);
    drop(announced_only);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let answer = post(
            &app.envelope_url(),
            &[("X-Sentry-Auth", &auth)],
            envelope(&id),
        )
        .await;
        if answer.status == 200 {
            app.wait_for_event(&id).await;
            break;
        }
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert!(Instant::now() < deadline, "the budget never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Garbage and wrong keys are still answered as before while the budget has room (400,
/// 401/403), and an over-long body is 413, not a budget refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_other_than_memory_are_unchanged() {
    let app = spawn_app(&[("FAULTLINE_INGEST_MEMORY_MB", "2")]).await;
    let auth = app.auth_header();
    let garbage = post(
        &app.envelope_url(),
        &[("X-Sentry-Auth", &auth)],
        b"\x00\x01not an envelope".to_vec(),
    )
    .await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    let wrong_key = "Sentry sentry_key=00000000000000000000000000000000, sentry_version=7";
    let id = uuid::Uuid::new_v4().simple().to_string();
    let unknown = post(
        &app.envelope_url(),
        &[("X-Sentry-Auth", wrong_key)],
        envelope(&id),
    )
    .await;
    assert!(
        matches!(unknown.status, 401 | 403),
        "{} {}",
        unknown.status,
        unknown.body
    );
    let too_large = post(
        &format!("{}/api/{}/store/", app.url, app.project_id),
        &[
            ("X-Sentry-Auth", &auth),
            ("Content-Type", "application/json"),
        ],
        vec![b' '; 2 * 1024 * 1024],
    )
    .await;
    assert_eq!(too_large.status, 413, "{}", too_large.body);
}
