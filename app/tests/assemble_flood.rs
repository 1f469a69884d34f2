//! A flood of artifact bundle assemblies stays within the per-process bound: the ones
//! admitted wait their turn as `created` and finish once turns free up, the rest get `429`
//! with `Retry-After` and succeed when sent again.
//!
//! A test binary of its own: it occupies the process-wide assembly turns (as two long
//! assemblies would), which would stall the assemblies of any test running beside it.

mod common;

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use common::spawn_app;
use faultline_app::api::assemble::{ASSEMBLIES_ADMITTED, ASSEMBLIES_AT_ONCE, turns};
use serde_json::{Value, json};
use sha1::Digest;

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(data))
}

/// A small artifact bundle whose content differs by `n`.
fn bundle(n: usize) -> Vec<u8> {
    let debug_id = format!("c0ffee00-1111-4222-8333-{n:012}");
    let manifest = json!({"files": {"files/_/_/app.min.js": {"url": format!("~/{n}/app.min.js"),
        "type": "minified_source", "headers": {"debug-id": debug_id}}}});
    let mut out = b"SYSB\x02\x00\x00\x00".to_vec();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in [
        ("manifest.json", manifest.to_string().into_bytes()),
        (
            "files/_/_/app.min.js",
            format!("console.log({n});").into_bytes(),
        ),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip");
        w.write_all(&data).expect("zip");
    }
    out.extend(w.finish().expect("zip").into_inner());
    out
}

struct Resp {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

async fn call(url: String, token: String, content_type: String, body: Vec<u8>) -> Resp {
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut resp = agent
            .post(&url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(&body[..])
            .expect("request sent");
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Resp {
            status: resp.status().as_u16(),
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            retry_after,
        }
    })
    .await
    .expect("request task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assembly_flood_is_bounded_and_nothing_is_lost() {
    let app = spawn_app(&[]).await;
    let token = faultline_app::accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
        .await
        .expect("token");
    let base = format!("{}/api/0/organizations/acme", app.url);
    let flood = ASSEMBLIES_ADMITTED + 6;
    let files: Vec<Vec<u8>> = (0..flood).map(bundle).collect();
    // Every file is one chunk; all uploaded in two requests.
    let boundary = "floodboundary";
    for half in files.chunks(flood / 2 + 1) {
        let mut body = Vec::new();
        for f in half {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\r\n",
                sha1_hex(f)
            )
            .expect("write");
            body.extend_from_slice(f);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n").expect("write");
        let r = call(
            format!("{base}/chunk-upload/"),
            token.clone(),
            format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let assemble = |f: &Vec<u8>| {
        let request =
            json!({"checksum": sha1_hex(f), "chunks": [sha1_hex(f)], "projects": ["web"]});
        call(
            format!("{base}/artifactbundle/assemble/"),
            token.clone(),
            "application/json".into(),
            request.to_string().into_bytes(),
        )
    };

    // Two long assemblies hold every turn.
    let held = turns()
        .acquire_many(ASSEMBLIES_AT_ONCE as u32)
        .await
        .expect("turns");
    let refused_before = faultline_core::metrics::get().assemblies_refused.get();
    let answers = futures_util::future::join_all(files.iter().map(&assemble)).await;
    let mut waiting = Vec::new();
    let mut refused = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        match a.status {
            200 => {
                assert_eq!(a.body["state"], "created", "{:?}", a.body);
                waiting.push(i);
            }
            429 => {
                assert!(a.retry_after.is_some(), "429 without Retry-After");
                assert!(a.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
                refused.push(i);
            }
            other => panic!("unexpected {other}: {:?}", a.body),
        }
    }
    assert_eq!(waiting.len(), ASSEMBLIES_ADMITTED, "admitted");
    assert_eq!(refused.len(), flood - ASSEMBLIES_ADMITTED, "refused");
    assert_eq!(
        faultline_core::metrics::get().assemblies_refused.get() - refused_before,
        refused.len() as u64
    );
    // Polling a waiting one answers its state, and does not start it a second time.
    let again = assemble(&files[waiting[0]]).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["state"], "created");

    // The turns free up: every admitted assembly finishes, and the refused ones go
    // through when sent again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in waiting.iter().chain(refused.iter()) {
        loop {
            let a = assemble(&files[*i]).await;
            if a.status == 200 && a.body["state"] == "ok" {
                break;
            }
            assert!(
                a.status == 429
                    || ["created", "assembling"].contains(&a.body["state"].as_str().unwrap_or("")),
                "{}: {:?}",
                a.status,
                a.body
            );
            assert!(Instant::now() < deadline, "assembly {i} did not finish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM artifacts").await,
        flood as i64
    );
}
