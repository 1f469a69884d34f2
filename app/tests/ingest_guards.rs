//! What ingest spends on senders without a valid DSN key: no decompression at all, and a
//! bounded number of database lookups however many random keys they try; and that a key
//! created after a miss still works within one key-cache reload.
//!
//! A test binary of its own: these tests read the process-wide metrics (decompressions,
//! key lookups), which the other ingest tests would move if they ran alongside. The tests
//! here take [`SERIAL`] so they do not move each other's counters either.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{TestApp, post, spawn_app};
use faultline_app::ingest::{decode, keys};
use faultline_core::metrics::{self, OutcomeLabel, ThreadLabel};
use sea_orm::{ConnectionTrait, Statement};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn decompressed_bytes() -> u64 {
    metrics::get().ingest_decompressed_bytes.get()
}

fn decompressions(thread: &'static str) -> u64 {
    metrics::get()
        .ingest_decompressions
        .get_or_create(&ThreadLabel { thread })
        .get()
}

fn key_lookups(outcome: &'static str) -> u64 {
    metrics::get()
        .ingest_key_lookups
        .get_or_create(&OutcomeLabel { outcome })
        .get()
}

fn random_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn envelope(message: &str) -> Vec<u8> {
    let event = serde_json::json!({"message": message, "level": "error"}).to_string();
    format!(
        "{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
        event.len()
    )
    .into_bytes()
}

/// `size` bytes after `head`, all zeros, gzip-compressed as they stream through the encoder.
fn gzip_bomb(head: &[u8], size: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(head).expect("gzip");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        enc.write_all(&zeros).expect("gzip");
    }
    enc.finish().expect("gzip")
}

fn zstd_bomb(size: usize) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("zstd");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        enc.write_all(&zeros).expect("zstd");
    }
    enc.finish().expect("zstd")
}

fn brotli_bomb(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..size >> 20 {
            w.write_all(&zeros).expect("brotli");
        }
    }
    out
}

async fn insert_key(app: &TestApp, public_key: &str) {
    app.db
        .execute_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "INSERT INTO project_keys (project_id, public_key, label, enabled, rate_limit_per_minute, created_at) \
             VALUES (?, ?, 'new', ?, NULL, ?)",
            [
                app.project_id.into(),
                public_key.to_string().into(),
                true.into(),
                chrono::Utc::now().timestamp_millis().into(),
            ],
        ))
        .await
        .expect("insert key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_with_bogus_keys_cost_no_decompression() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app(&[]).await;
    let url = app.envelope_url();
    let bogus = random_key();
    // 1 GiB of zeros in about a megabyte; past the 100 MiB limit for a valid key.
    let gzip = gzip_bomb(b"", 1 << 30);
    let zstd = zstd_bomb(128 << 20);
    let brotli = brotli_bomb(128 << 20);
    let bogus_auth = format!("Sentry sentry_key={bogus}, sentry_version=7");
    let (bytes, event_loop, pool) = (
        decompressed_bytes(),
        decompressions("event_loop"),
        decompressions("blocking_pool"),
    );
    for (encoding, body) in [("gzip", &gzip), ("zstd", &zstd), ("br", &brotli)] {
        // Every place a key can come from, all with the bogus key.
        let query_url = format!("{url}?sentry_key={bogus}&sentry_version=7");
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{bogus}:")
            )
        );
        for (url, headers) in [
            (&url, vec![("X-Sentry-Auth", bogus_auth.as_str())]),
            (&url, vec![("Authorization", bogus_auth.as_str())]),
            (&url, vec![("Authorization", basic.as_str())]),
            (&query_url, vec![]),
        ] {
            let mut headers = headers.clone();
            headers.push(("Content-Encoding", encoding));
            let started = Instant::now();
            let a = post(url, &headers, body.clone()).await;
            assert_eq!(a.status, 403, "{encoding} {headers:?}: {}", a.body);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{encoding}: refusing took {:?}",
                started.elapsed()
            );
        }
    }
    assert_eq!(
        decompressed_bytes(),
        bytes,
        "a bogus key made ingest decompress"
    );
    assert_eq!(decompressions("event_loop"), event_loop);
    assert_eq!(decompressions("blocking_pool"), pool);

    // The same with the key only in the envelope header (a tunnel): its first line is all
    // that is decompressed before the key is refused.
    let head = format!(
        "{{\"dsn\":\"http://{bogus}@127.0.0.1/{}\"}}\n",
        app.project_id
    );
    let dsn_bomb = gzip_bomb(head.as_bytes(), 128 << 20);
    let a = post(&url, &[("Content-Encoding", "gzip")], dsn_bomb.clone()).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let spent = decompressed_bytes() - bytes;
    assert!(
        spent <= decode::HEADER_LINE_MAX as u64,
        "{spent} bytes decompressed for a bogus dsn"
    );
    assert_eq!(decompressions("blocking_pool"), pool);

    // With the right key the bomb is decompressed — off the event loop — up to the limit.
    let good_head = format!("{{\"dsn\":\"{}\"}}\n", app.dsn);
    let good_bomb = gzip_bomb(good_head.as_bytes(), 128 << 20);
    let a = post(&url, &[("Content-Encoding", "gzip")], good_bomb).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(decompressions("blocking_pool"), pool + 1);
    let a = post(
        &url,
        &[
            ("X-Sentry-Auth", &app.auth_header()),
            ("Content-Encoding", "gzip"),
        ],
        gzip,
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(decompressions("blocking_pool"), pool + 2);

    // A small event still decodes where it arrived, and is stored.
    let small = gzip_bomb(&envelope("small and gzipped"), 0);
    let a = post(
        &url,
        &[
            ("X-Sentry-Auth", &app.auth_header()),
            ("Content-Encoding", "gzip"),
        ],
        small,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(decompressions("event_loop"), event_loop + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_headers_without_a_key_get_clear_errors() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app(&[]).await;
    let url = app.envelope_url();
    let long_header = format!(
        "{{\"dsn\":\"{}\",\"x\":\"{}\"}}\n",
        app.dsn,
        "a".repeat(decode::HEADER_LINE_MAX)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage header", gzip_bomb(b"{not json\n", 0), 400),
        ("header is not an object", gzip_bomb(b"[1]\n", 0), 400),
        ("header without dsn", gzip_bomb(b"{}\n", 0), 401),
        (
            "dsn that is not a DSN",
            gzip_bomb(b"{\"dsn\":\"not a dsn\"}\n", 0),
            401,
        ),
        (
            "dsn of another project",
            gzip_bomb(
                format!(
                    "{{\"dsn\":\"http://{}@127.0.0.1/999999\"}}\n",
                    app.public_key
                )
                .as_bytes(),
                0,
            ),
            400,
        ),
        (
            "header past the first-line limit",
            gzip_bomb(long_header.as_bytes(), 0),
            400,
        ),
        ("corrupt gzip", b"\x1f\x8b garbage".to_vec(), 400),
    ];
    for (name, body, expected) in cases {
        let a = post(&url, &[("Content-Encoding", "gzip")], body).await;
        assert_eq!(a.status, expected, "{name}: {}", a.body);
        let json: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
        assert!(
            json["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
    }
    // A tunnelled envelope with a valid dsn and a compressed body is stored.
    let id = uuid::Uuid::new_v4().simple().to_string();
    let body = format!(
        "{{\"event_id\":\"{id}\",\"dsn\":\"{}\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"tunnelled\"}}",
        app.dsn
    );
    let a = post(
        &url,
        &[("Content-Encoding", "gzip")],
        gzip_bomb(body.as_bytes(), 0),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.wait_for_event(&id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_unknown_keys_reach_the_database_a_bounded_number_of_times() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app(&[]).await;
    let url = app.envelope_url();
    let body = envelope("from a stranger");
    let looked_up = || key_lookups("found") + key_lookups("unknown");
    let before = looked_up();
    let skipped_before = key_lookups("skipped");
    let started = Instant::now();
    let requests = 300;
    let repeated = random_key();
    for i in 0..requests {
        // Every other request repeats one key: after its first miss it costs nothing.
        let key = if i % 2 == 0 {
            random_key()
        } else {
            repeated.clone()
        };
        let auth = format!("Sentry sentry_key={key}, sentry_version=7");
        let a = post(&url, &[("X-Sentry-Auth", &auth)], body.clone()).await;
        assert_eq!(a.status, 403, "{}", a.body);
    }
    let reloads = started.elapsed().as_secs() / keys::REFRESH.as_secs() + 1;
    let lookups = looked_up() - before;
    assert!(
        lookups <= u64::from(keys::MISS_LOOKUPS_PER_REFRESH) * reloads,
        "{lookups} database lookups for {requests} requests over {reloads} reload periods"
    );
    assert!(
        lookups < requests / 2,
        "{lookups} database lookups for {} distinct unknown keys",
        requests / 2 + 1
    );
    assert!(key_lookups("skipped") > skipped_before);

    // The known key keeps working all along.
    let a = post(&url, &[("X-Sentry-Auth", &app.auth_header())], body).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_after_a_miss_works_within_one_reload() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app(&[]).await;
    let url = app.envelope_url();
    let body = envelope("new key");
    let send = |key: String| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let auth = format!("Sentry sentry_key={key}, sentry_version=7");
            post(&url, &[("X-Sentry-Auth", &auth)], body).await
        }
    };

    // A key nobody asked about yet works at once (looked up on its first request).
    let fresh = random_key();
    insert_key(&app, &fresh).await;
    let a = send(fresh).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A key that missed is remembered as unknown until the next reload, then works.
    let late = random_key();
    let a = send(late.clone()).await;
    assert_eq!(a.status, 403, "{}", a.body);
    insert_key(&app, &late).await;
    let created = Instant::now();
    loop {
        let a = send(late.clone()).await;
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            created.elapsed() < keys::REFRESH + Duration::from_millis(1500),
            "the key created after a miss still fails after {:?}",
            created.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
