//! Uploads kept in a directory (`FAULTLINE_ARTIFACT_DIR`) instead of the database: sentry-cli's
//! chunked upload and bundle assembly write files named by SHA-1, the worker maps events
//! with them, a damaged or missing file leaves the frame unmapped with the reason, and the
//! collector removes files no artifact names. A test binary of its own: the artifact store
//! is chosen once per process.

mod common;

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestApp, spawn_app};
use serde_json::{Value, json};
use sha1::Digest;

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(data))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// One request as sentry-cli makes it; returns status and body.
async fn call(
    method: &str,
    url: String,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let (method, token, content_type) =
        (method.to_owned(), token.to_owned(), content_type.to_owned());
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", content_type);
        let mut resp = if body.is_empty() {
            agent.run(req.body(()).expect("request"))
        } else {
            agent.run(req.body(body).expect("request"))
        }
        .expect("request sent");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec().unwrap_or_default();
        (status, body)
    })
    .await
    .expect("request task")
}

/// A bundle of one minified file and its map, both carrying `debug_id`; `variant` makes
/// the map's bytes (so its SHA-1) differ between bundles.
fn bundle(debug_id: &str, release: &str, variant: &str) -> Vec<u8> {
    let minified = format!(
        "function a(){{throw new Error(\"boom\")}}a();\n//# sourceMappingURL=app.min.js.map\n//# debugId={debug_id}\n"
    );
    let map = json!({
        "version": 3, "sources": ["../src/app.js"], "names": ["explode"], "mappings": "AAAA",
        "sourcesContent": ["function explode() {\n  throw new Error('boom');\n}\nexplode();\n"],
        "debug_id": debug_id, "x_variant": variant,
    })
    .to_string();
    let headers = json!({"debug-id": debug_id});
    let manifest = json!({
        "files": {
            "files/_/_/app.min.js": {"url": "~/static/app.min.js", "type": "minified_source",
                "headers": {"debug-id": debug_id, "sourcemap": "app.min.js.map"}},
            "files/_/_/app.min.js.map": {"url": "~/static/app.min.js.map", "type": "source_map",
                "headers": headers},
        },
        "org": "acme", "project": "web", "release": release,
    });
    let mut out = b"SYSB\x02\x00\x00\x00".to_vec();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in [
        ("manifest.json", manifest.to_string().into_bytes()),
        ("files/_/_/app.min.js", minified.into_bytes()),
        ("files/_/_/app.min.js.map", map.into_bytes()),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip");
        w.write_all(&data).expect("zip");
    }
    out.extend(w.finish().expect("zip").into_inner());
    out
}

struct Setup {
    app: TestApp,
    token: String,
    store: PathBuf,
}

impl Setup {
    /// Uploads the bundle in one chunk and assembles it; returns the chunk's SHA-1.
    async fn upload(&self, file: &[u8], release: &str) -> String {
        let chunk = sha1_hex(file);
        let boundary = "faultlinestoreboundary";
        let mut body = Vec::new();
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file_gzip\"; filename=\"{chunk}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .expect("write");
        body.extend(gzip(file));
        write!(body, "\r\n--{boundary}--\r\n").expect("write");
        let (status, text) = call(
            "POST",
            format!("{}/api/0/organizations/acme/chunk-upload/", self.app.url),
            &self.token,
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&text));
        let (status, text) = call(
            "POST",
            format!(
                "{}/api/0/organizations/acme/artifactbundle/assemble/",
                self.app.url
            ),
            &self.token,
            "application/json",
            json!({"checksum": chunk, "chunks": [chunk], "projects": ["web"], "version": release})
                .to_string()
                .into_bytes(),
        )
        .await;
        let answer: Value = serde_json::from_slice(&text).expect("json");
        assert_eq!((status, &answer["state"]), (200, &json!("ok")), "{answer}");
        chunk
    }

    fn object(&self, sha1: &str) -> PathBuf {
        self.store.join(&sha1[..2]).join(sha1)
    }

    /// The SHA-1 of the uploaded file named `name` of `release`.
    async fn artifact_sha1(&self, release: &str, kind: &str) -> String {
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &self.app.db,
            sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                "SELECT a.sha1 FROM artifacts a JOIN releases r ON r.id = a.release_id \
                 WHERE r.version = ? AND a.kind = ?",
                [release.into(), kind.into()],
            ),
        )
        .await
        .expect("query")
        .expect("artifact row");
        row.try_get("", "sha1").expect("sha1")
    }

    /// Sends a JavaScript error from the bundle with `debug_id`; returns its stored frame.
    async fn frame_of_event(&self, debug_id: &str) -> Value {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let file = "https://app.example.com/static/app.min.js";
        let event = json!({
            "event_id": id, "platform": "javascript", "level": "error",
            "exception": {"values": [{"type": "Error", "value": "boom",
                "stacktrace": {"frames": [{"abs_path": file, "filename": file, "function": "a",
                    "lineno": 1, "colno": 13, "in_app": true}]}}]},
            "debug_meta": {"images": [{"type": "sourcemap", "code_file": file, "debug_id": debug_id}]},
        })
        .to_string();
        let body = format!(
            "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
            event.len()
        );
        let r = common::post(
            &self.app.envelope_url(),
            &[("X-Sentry-Auth", &self.app.auth_header())],
            body.into_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let stored = self.app.wait_for_event(&id).await;
        stored["exception"]["values"][0]["stacktrace"]["frames"][0].clone()
    }
}

fn objects_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(dir).expect("store dir").flatten() {
        if fan.file_name().len() == 2 {
            for f in std::fs::read_dir(fan.path()).expect("fan dir").flatten() {
                out.push(f.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_live_in_the_directory_and_are_collected() {
    let store = std::env::temp_dir().join(format!(
        "faultline-artifacts-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let app = spawn_app(&[("FAULTLINE_ARTIFACT_DIR", &store.display().to_string())]).await;
    let token = faultline_app::accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
        .await
        .expect("token");
    let s = Setup { app, token, store };

    // Upload: the chunk and both files are files on disk, the rows hold no bytes.
    let good_id = "c0ffee00-1111-4222-8333-444455556666";
    let file = bundle(good_id, "r1", "good");
    let chunk = s.upload(&file, "r1").await;
    let map = s.artifact_sha1("r1", "source_map").await;
    let minified = s.artifact_sha1("r1", "minified_source").await;
    for sha1 in [&chunk, &map, &minified] {
        assert!(s.object(sha1).is_file(), "{sha1} is not on disk");
    }
    assert_eq!(
        std::fs::read(s.object(&chunk)).expect("chunk file"),
        file,
        "the chunk file holds the uploaded bytes"
    );
    assert_eq!(
        s.app
            .count("SELECT COUNT(*) FROM blobs WHERE length(data) > 0")
            .await,
        0,
        "no bytes in the database"
    );

    // The worker maps an event with the files from the directory.
    let frame = s.frame_of_event(good_id).await;
    assert_eq!(
        frame["data"]["symbolicator_status"], "symbolicated",
        "{frame}"
    );
    assert_eq!(frame["context_line"], "function explode() {", "{frame}");
    assert!(
        frame["abs_path"]
            .as_str()
            .unwrap_or("")
            .ends_with("src/app.js"),
        "{frame}"
    );

    // The release-file API reads through the store too.
    let (status, listed) = call(
        "GET",
        format!("{}/api/0/organizations/acme/releases/r1/files/", s.app.url),
        &s.token,
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&listed).expect("json");
    let map_file = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|f| f["name"] == "~/static/app.min.js.map")
        .unwrap_or_else(|| panic!("map not listed: {listed}"))
        .clone();
    let (status, body) = call(
        "GET",
        format!(
            "{}/api/0/organizations/acme/releases/r1/files/{}/?download=1",
            s.app.url,
            map_file["id"].as_str().expect("id")
        ),
        &s.token,
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sha1_hex(&body), map);

    // A damaged map file: the event is stored, the frame unmapped with the reason.
    let damaged_id = "c0ffee00-2222-4222-8333-444455556666";
    s.upload(&bundle(damaged_id, "r2", "damaged"), "r2").await;
    let damaged = s.artifact_sha1("r2", "source_map").await;
    std::fs::write(s.object(&damaged), b"{\"version\":3,\"mappings\":\"AAAA\"").expect("damage");
    let frame = s.frame_of_event(damaged_id).await;
    assert_eq!(
        frame["data"]["symbolicator_status"], "storage_error",
        "{frame}"
    );
    let message = frame["data"]["symbolicator_message"].as_str().unwrap_or("");
    assert!(message.contains("damaged"), "{message}");
    assert_eq!(
        frame["abs_path"],
        "https://app.example.com/static/app.min.js"
    );

    // A missing minified file and map: the same, saying the object is not there.
    let missing_id = "c0ffee00-3333-4222-8333-444455556666";
    s.upload(&bundle(missing_id, "r3", "missing"), "r3").await;
    let gone = s.artifact_sha1("r3", "source_map").await;
    std::fs::remove_file(s.object(&gone)).expect("remove");
    let frame = s.frame_of_event(missing_id).await;
    assert_eq!(
        frame["data"]["symbolicator_status"], "storage_error",
        "{frame}"
    );
    let message = frame["data"]["symbolicator_message"].as_str().unwrap_or("");
    assert!(message.contains("not in the artifact store"), "{message}");

    // Garbage collection: within the grace period nothing goes; after it the chunks
    // (named by no artifact) go, row and file, and the artifacts' files stay.
    let now = chrono::Utc::now().timestamp_millis();
    let n = faultline_app::api::blobs::collect_garbage(&s.app.db, now - 3_600_000)
        .await
        .expect("gc");
    assert_eq!(n, 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = chrono::Utc::now().timestamp_millis();
    let n = faultline_app::api::blobs::collect_garbage(&s.app.db, now)
        .await
        .expect("gc");
    assert_eq!(n, 3, "the three bundles' chunks");
    assert!(!s.object(&chunk).exists(), "the chunk's file was collected");
    assert!(s.object(&map).is_file() && s.object(&minified).is_file());

    // Once the release is deleted its files are unreferenced: the next collection
    // removes them from the directory too.
    for release in ["r1", "r2", "r3"] {
        let (status, body) = call(
            "DELETE",
            format!("{}/api/0/organizations/acme/releases/{release}/", s.app.url),
            &s.token,
            "application/json",
            vec![],
        )
        .await;
        assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    }
    assert!(s.object(&map).is_file(), "files wait for the collector");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = chrono::Utc::now().timestamp_millis();
    faultline_app::api::blobs::collect_garbage(&s.app.db, now)
        .await
        .expect("gc");
    assert_eq!(objects_in(&s.store), Vec::<String>::new());
    assert_eq!(s.app.count("SELECT COUNT(*) FROM blobs").await, 0);
    let _ = std::fs::remove_dir_all(&s.store);
}

#[tokio::test]
async fn an_unwritable_directory_stops_the_start() {
    let file = std::env::temp_dir().join(format!(
        "faultline-not-a-dir-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, b"x").expect("file");
    let mut env = std::collections::HashMap::new();
    env.insert("FAULTLINE_BIND".to_string(), "127.0.0.1:0".to_string());
    env.insert(
        "FAULTLINE_DATA_DIR".to_string(),
        std::env::temp_dir()
            .join(format!("faultline-data-{}", uuid::Uuid::new_v4().simple()))
            .display()
            .to_string(),
    );
    env.insert(
        "FAULTLINE_ARTIFACT_DIR".to_string(),
        file.join("sub").display().to_string(),
    );
    let config = faultline_core::config::Config::from_map(env).expect("config");
    let err = faultline_app::startup::Application::build(
        config,
        faultline_app::startup::Roles {
            web: false,
            worker: false,
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("artifact store"), "{err}");
    let _ = std::fs::remove_file(&file);
}
