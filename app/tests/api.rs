//! The Web API (`/api/0/`) against the running application, on SQLite and PostgreSQL:
//! authentication and organization scoping, chunked upload, bundle assembly, releases,
//! deploys, release files, blob garbage collection, issues and events. Requests are shaped
//! exactly as sentry-cli 2.x / 3.x sends them.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::time::Duration;

use common::{TestApp, spawn_app};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sha1::Digest;

// ---------------------------------------------------------------------------------------
// Helpers.

/// An application with an organization `acme` (project `web`), a second organization
/// `other` (project `site`), and a token for each.
struct Api {
    app: TestApp,
    token: String,
    other_token: String,
}

async fn spawn(engine: &str) -> Api {
    let app = match engine {
        "sqlite" => spawn_app(&[]).await,
        _ => {
            let url = fresh_postgres().await;
            spawn_app(&[("DATABASE_URL", &url)]).await
        }
    };
    let token = faultline_app::accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
        .await
        .expect("token");
    faultline_app::accounts::orgs::create(&app.db, "other", None, None)
        .await
        .expect("org");
    faultline_app::accounts::projects::create(&app.db, "other", "site", Some("javascript"))
        .await
        .expect("project");
    let other_token = faultline_app::accounts::tokens::create_for_org(&app.db, "other", &[], "ci")
        .await
        .expect("token");
    Api {
        app,
        token,
        other_token,
    }
}

async fn fresh_postgres() -> String {
    let admin_url = faultline_core::db::testing::postgres_admin_url();
    let admin = faultline_core::db::connect_url(&admin_url)
        .await
        .expect("postgres is running");
    let name = format!("faultline_t_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin_url).expect("url");
    url.set_path(&name);
    url.to_string()
}

struct Resp {
    status: u16,
    body: Vec<u8>,
    headers: BTreeMap<String, String>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail: {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let (method, url) = (method.to_string(), url.to_string());
    let token = token.map(str::to_string);
    let content_type = content_type.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = &content_type {
            req = req.header("Content-Type", ct);
        }
        let mut resp = if body.is_empty() {
            agent.run(req.body(()).expect("request"))
        } else {
            agent.run(req.body(body).expect("request"))
        }
        .expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(100 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        Resp {
            status,
            body,
            headers,
        }
    })
    .await
    .expect("request task")
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/0/{}", self.app.url, path.trim_start_matches('/'))
    }
    async fn get(&self, path: &str) -> Resp {
        call("GET", &self.url(path), Some(&self.token), None, vec![]).await
    }
    async fn delete(&self, path: &str) -> Resp {
        call("DELETE", &self.url(path), Some(&self.token), None, vec![]).await
    }
    async fn send_json(&self, method: &str, path: &str, body: Value) -> Resp {
        call(
            method,
            &self.url(path),
            Some(&self.token),
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.send_json("POST", path, body).await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        self.send_json("PUT", path, body).await
    }
    async fn multipart(&self, path: &str, parts: &[Part<'_>]) -> Resp {
        let (ct, body) = multipart(parts);
        call("POST", &self.url(path), Some(&self.token), Some(&ct), body).await
    }
    async fn scalar(&self, sql: &str) -> i64 {
        self.app.count(sql).await
    }
    async fn rows(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        self.app
            .db
            .query_all_raw(Statement::from_string(
                self.app.db.get_database_backend(),
                sql,
            ))
            .await
            .expect("query")
    }
}

/// One multipart part: field name, optional file name, content.
struct Part<'a>(&'a str, Option<&'a str>, &'a [u8]);

fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "------------------------faultlinetestboundary";
    let mut body = Vec::new();
    for Part(name, file, data) in parts {
        write!(body, "--{boundary}\r\n").expect("write");
        match file {
            Some(f) => write!(
                body,
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ),
            None => write!(body, "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        }
        .expect("write");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").expect("write");
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(data))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

const DEBUG_ID: &str = "c0ffee00-1111-4222-8333-444455556666";
const MINIFIED: &[u8] = b"function a(){throw new Error(\"boom\")}a();\n//# sourceMappingURL=app.min.js.map\n//# debugId=c0ffee00-1111-4222-8333-444455556666\n";
const MAP: &[u8] = br#"{"version":3,"sources":["../src/app.js"],"sourcesContent":["function explode() {\n  throw new Error('boom');\n}\nexplode();\n"],"names":["explode"],"mappings":"AAAA","debug_id":"c0ffee00-1111-4222-8333-444455556666"}"#;

/// An artifact bundle as sentry-cli writes it: `SYSB` header, zip, manifest.
fn bundle(with_debug_ids: bool, release: Option<&str>) -> Vec<u8> {
    bundle_in("static", with_debug_ids, release)
}

/// The same bundle with its files under another directory.
fn bundle_in(dir: &str, with_debug_ids: bool, release: Option<&str>) -> Vec<u8> {
    let headers = |extra: Value| {
        let mut h = json!({});
        if with_debug_ids {
            h["debug-id"] = json!(DEBUG_ID);
        }
        if let (Some(o), Value::Object(e)) = (h.as_object_mut(), extra) {
            o.extend(e);
        }
        h
    };
    let mut manifest = json!({
        "files": {
            "files/_/_/static/app.min.js": {"url": format!("~/{dir}/app.min.js"), "type": "minified_source",
                "headers": headers(json!({"sourcemap": "app.min.js.map"}))},
            "files/_/_/static/app.min.js.map": {"url": format!("~/{dir}/app.min.js.map"), "type": "source_map",
                "headers": headers(json!({}))},
        },
        "org": "acme", "project": "web",
    });
    if let Some(r) = release {
        manifest["release"] = json!(r);
    }
    let mut out = b"SYSB\x02\x00\x00\x00".to_vec();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in [
        ("manifest.json", manifest.to_string().into_bytes()),
        ("files/_/_/static/app.min.js", MINIFIED.to_vec()),
        ("files/_/_/static/app.min.js.map", MAP.to_vec()),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .expect("zip");
        w.write_all(&data).expect("zip");
    }
    out.extend(w.finish().expect("zip").into_inner());
    out
}

/// Uploads `data` in chunks of `size` the way sentry-cli does; returns the chunk ids.
async fn upload_chunks(api: &Api, data: &[u8], size: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut zipped = Vec::new();
    for chunk in data.chunks(size) {
        let id = sha1_hex(chunk);
        zipped.push((id.clone(), gzip(chunk)));
        ids.push(id);
    }
    let parts: Vec<Part> = zipped
        .iter()
        .map(|(id, z)| Part("file_gzip", Some(id), z))
        .collect();
    let r = api
        .multipart("organizations/acme/chunk-upload/", &parts)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    ids
}

fn engines() -> [&'static str; 2] {
    ["sqlite", "postgres"]
}

// ---------------------------------------------------------------------------------------
// Authentication and organization scoping.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_and_stay_inside_their_organization() {
    let api = spawn("sqlite").await;
    let root = api.url("");

    // Who am I, as `sentry-cli info` asks.
    let r = api.get("").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers["content-type"].starts_with("application/json"));
    let me = r.json();
    assert!(
        me["auth"]["scopes"]
            .as_array()
            .expect("scopes")
            .contains(&json!("project:releases"))
    );
    assert!(me["user"].is_null());

    // Missing, wrong and malformed credentials: 401 with a JSON detail.
    for token in [None, Some("sntryu_wrong")] {
        let r = call("GET", &root, token, None, vec![]).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(!r.detail().is_empty());
    }
    let r = tokio::task::spawn_blocking({
        let root = root.clone();
        move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            agent
                .get(&root)
                .header("Authorization", "Basic dXNlcjpwYXNz")
                .call()
                .expect("sent")
                .status()
                .as_u16()
        }
    })
    .await
    .expect("task");
    assert_eq!(r, 401);

    // Another organization's token sees nothing of acme: 404, as if it did not exist.
    for path in [
        "organizations/acme/",
        "organizations/acme/chunk-upload/",
        "organizations/acme/releases/",
        "organizations/acme/projects/",
        "organizations/acme/issues/",
        "projects/acme/web/issues/",
        "projects/acme/web/events/",
        "projects/acme/web/releases/",
    ] {
        let r = call("GET", &api.url(path), Some(&api.other_token), None, vec![]).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.detail().contains("not found"), "{path}: {}", r.text());
    }
    let r = call(
        "POST",
        &api.url("organizations/acme/artifactbundle/assemble/"),
        Some(&api.other_token),
        Some("application/json"),
        json!({"checksum": "0".repeat(40), "chunks": [], "projects": ["web"]})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    // Its own organization is fine.
    let r = call(
        "GET",
        &api.url("organizations/other/chunk-upload/"),
        Some(&api.other_token),
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Organization list: only the token's own.
    let orgs = api.get("organizations/").await.json();
    assert_eq!(orgs.as_array().expect("list").len(), 1);
    assert_eq!(orgs[0]["slug"], "acme");

    // A token without the scope: 403 naming it.
    let read_only = faultline_app::accounts::tokens::create_for_org(
        &api.app.db,
        "acme",
        &["org:read".into()],
        "ro",
    )
    .await
    .expect("token");
    let r = call(
        "GET",
        &api.url("organizations/acme/chunk-upload/"),
        Some(&read_only),
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.detail().contains("project:releases"));

    // Unknown endpoints and missing organizations answer JSON 404s.
    let r = api.get("no/such/endpoint/").await;
    assert_eq!(r.status, 404);
    assert!(r.detail().contains("no such endpoint"));
    let r = api.get("organizations/nope/releases/").await;
    assert_eq!(r.status, 404);
    assert!(r.detail().contains("nope"));
    let r = call(
        "PATCH",
        &api.url("organizations/acme/releases/"),
        Some(&api.token),
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 405);
    assert!(r.detail().contains("PATCH"));
    // Garbage JSON: 400 with a detail.
    let r = call(
        "POST",
        &api.url("organizations/acme/releases/"),
        Some(&api.token),
        Some("application/json"),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.detail().contains("JSON"));

    // Use is remembered.
    assert!(
        api.scalar("SELECT COUNT(*) FROM api_tokens WHERE last_used_at IS NOT NULL")
            .await
            >= 2
    );
}

// ---------------------------------------------------------------------------------------
// Chunked upload.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_upload_checks_and_stores_chunks() {
    for engine in engines() {
        let api = spawn(engine).await;
        let opts = api.get("organizations/acme/chunk-upload/").await;
        assert_eq!(opts.status, 200, "{}", opts.text());
        let opts = opts.json();
        assert_eq!(opts["hashAlgorithm"], "sha1");
        assert_eq!(opts["compression"], json!(["gzip"]));
        let chunk_size = opts["chunkSize"].as_u64().expect("chunkSize");
        assert!(chunk_size.is_power_of_two());
        for cap in [
            "release_files",
            "artifact_bundles",
            "artifact_bundles_v2",
            "sources",
        ] {
            assert!(
                opts["accept"]
                    .as_array()
                    .expect("accept")
                    .contains(&json!(cap))
            );
        }
        assert_eq!(
            opts["url"],
            format!("{}/api/0/organizations/acme/chunk-upload/", api.app.url)
        );

        // gzip and raw parts in one request; the second upload of the same chunk is harmless.
        let (a, b) = (b"first chunk".as_slice(), b"second chunk".as_slice());
        let (ga, ha, hb) = (gzip(a), sha1_hex(a), sha1_hex(b));
        for _ in 0..2 {
            let r = api
                .multipart(
                    "organizations/acme/chunk-upload/",
                    &[
                        Part("file_gzip", Some(&ha), &ga),
                        Part("file", Some(&hb), b),
                    ],
                )
                .await;
            assert_eq!(r.status, 200, "{engine}: {}", r.text());
        }
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM blobs WHERE sha1 IN ('{ha}', '{hb}')"
            ))
            .await,
            2
        );
        let stored = api
            .rows(&format!("SELECT data FROM blobs WHERE sha1 = '{ha}'"))
            .await;
        let data: Vec<u8> = stored[0].try_get_by_index(0).expect("data");
        assert_eq!(data, a, "stored uncompressed");

        // sha1 mismatch.
        let r = api
            .multipart(
                "organizations/acme/chunk-upload/",
                &[Part("file", Some(&ha), b"not what the name says")],
            )
            .await;
        assert_eq!(r.status, 400);
        assert!(r.detail().contains("Checksum mismatch"), "{}", r.text());
        // A name that is no sha1.
        let r = api
            .multipart(
                "organizations/acme/chunk-upload/",
                &[Part("file", Some("chunk.bin"), b"x")],
            )
            .await;
        assert_eq!(r.status, 400);
        // Oversize chunk (decompressed over chunkSize, though small compressed).
        let big = vec![0u8; chunk_size as usize + 1];
        let r = api
            .multipart(
                "organizations/acme/chunk-upload/",
                &[Part("file_gzip", Some(&sha1_hex(&big)), &gzip(&big))],
            )
            .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.detail().contains("Chunk size too large"));
        // A request over maxRequestSize as sent.
        let max_request = opts["maxRequestSize"].as_u64().expect("n") as usize;
        let huge = vec![7u8; max_request + 1];
        let r = api
            .multipart(
                "organizations/acme/chunk-upload/",
                &[Part("file", Some(&sha1_hex(&huge)), &huge)],
            )
            .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.detail().contains("Request too large"));
        // Garbage: not gzip, not multipart, a broken multipart body.
        let r = api
            .multipart(
                "organizations/acme/chunk-upload/",
                &[Part("file_gzip", Some(&ha), b"not gzip")],
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let r = call(
            "POST",
            &api.url("organizations/acme/chunk-upload/"),
            Some(&api.token),
            Some("application/json"),
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(r.status, 400);
        let r = call(
            "POST",
            &api.url("organizations/acme/chunk-upload/"),
            Some(&api.token),
            Some("multipart/form-data; boundary=xyz"),
            b"--xyz\r\ngarbage without headers end".to_vec(),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text());
        // Too many chunks in one request.
        let max = opts["chunksPerRequest"].as_u64().expect("n") as usize;
        let bodies: Vec<(String, Vec<u8>)> = (0..=max)
            .map(|i| {
                let d = format!("chunk {i}").into_bytes();
                (sha1_hex(&d), d)
            })
            .collect();
        let parts: Vec<Part> = bodies
            .iter()
            .map(|(h, d)| Part("file", Some(h), d))
            .collect();
        let r = api
            .multipart("organizations/acme/chunk-upload/", &parts)
            .await;
        assert_eq!(r.status, 400);
        assert!(r.detail().contains("Too many chunks"));
    }
}

/// Uploads `data` in chunks of `size` as organization `other` (its own token).
async fn upload_chunks_as_other(api: &Api, data: &[u8], size: usize) -> Vec<String> {
    let zipped: Vec<(String, Vec<u8>)> =
        data.chunks(size).map(|c| (sha1_hex(c), gzip(c))).collect();
    let parts: Vec<Part> = zipped
        .iter()
        .map(|(id, z)| Part("file_gzip", Some(id), z))
        .collect();
    let (ct, body) = multipart(&parts);
    let r = call(
        "POST",
        &api.url("organizations/other/chunk-upload/"),
        Some(&api.other_token),
        Some(&ct),
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    zipped.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_belong_to_the_organization_that_uploaded_them() {
    for engine in engines() {
        let api = spawn(engine).await;
        let file = bundle(true, None);
        let checksum = sha1_hex(&file);
        let chunk_ids = upload_chunks(&api, &file, 300).await;
        let other_assemble = |request: Value| {
            let url = api.url("organizations/other/artifactbundle/assemble/");
            let token = api.other_token.clone();
            async move {
                call(
                    "POST",
                    &url,
                    Some(&token),
                    Some("application/json"),
                    request.to_string().into_bytes(),
                )
                .await
            }
        };
        let request = json!({"checksum": checksum, "chunks": chunk_ids, "projects": ["site"]});

        // `other` asks with acme's chunk ids: every one is missing for it, and nothing is
        // assembled from acme's bytes.
        let r = other_assemble(request.clone()).await;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        let answer = r.json();
        assert_eq!(answer["state"], "not_found", "{engine}: {answer}");
        assert_eq!(answer["missingChunks"], json!(chunk_ids), "{engine}");
        let other_org = api
            .scalar("SELECT id FROM organizations WHERE slug = 'other'")
            .await;
        let other_artifacts =
            format!("SELECT COUNT(*) FROM artifacts WHERE organization_id = {other_org}");
        assert_eq!(api.scalar(&other_artifacts).await, 0, "{engine}");

        // acme assembles its own upload.
        let r = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                json!({"checksum": checksum, "chunks": chunk_ids, "projects": ["web"]}),
            )
            .await;
        assert_eq!(r.json()["state"], "ok", "{engine}: {}", r.text());
        // Still missing for `other`, though acme's bytes are stored and even assembled.
        let r = other_assemble(request.clone()).await;
        assert_eq!(r.json()["state"], "not_found", "{engine}: {}", r.text());
        assert_eq!(r.json()["missingChunks"], json!(chunk_ids), "{engine}");

        // Once `other` uploads the same bytes itself they are its chunks too.
        let other_ids = upload_chunks_as_other(&api, &file, 300).await;
        assert_eq!(other_ids, chunk_ids);
        let r = other_assemble(request.clone()).await;
        assert_eq!(r.json()["state"], "ok", "{engine}: {}", r.text());
        assert_eq!(api.scalar(&other_artifacts).await, 2, "{engine}");
        // One copy of the bytes, two owners.
        let ids = chunk_ids
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            api.scalar(&format!("SELECT COUNT(*) FROM blobs WHERE sha1 IN ({ids})"))
                .await,
            chunk_ids.len() as i64
        );
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM chunk_owners WHERE sha1 IN ({ids})"
            ))
            .await,
            2 * chunk_ids.len() as i64
        );

        // Half uploaded by `other`, half only by acme: only acme's half is missing.
        let fresh = bundle_in("half", true, None);
        let fresh_ids: Vec<String> = fresh.chunks(300).map(sha1_hex).collect();
        upload_chunks(&api, &fresh, 300).await;
        let (mine, _) = fresh.split_at(600);
        upload_chunks_as_other(&api, mine, 300).await;
        let r = other_assemble(
            json!({"checksum": sha1_hex(&fresh), "chunks": fresh_ids, "projects": ["site"]}),
        )
        .await;
        let answer = r.json();
        assert_eq!(answer["state"], "not_found", "{engine}: {answer}");
        assert_eq!(answer["missingChunks"], json!(fresh_ids[2..]), "{engine}");

        // Wrong credentials: no token, acme's token for other's organization, garbage.
        let url = api.url("organizations/other/artifactbundle/assemble/");
        let body = request.to_string().into_bytes();
        let r = call("POST", &url, None, Some("application/json"), body.clone()).await;
        assert_eq!(r.status, 401, "{engine}: {}", r.text());
        let r = call(
            "POST",
            &url,
            Some(&api.token),
            Some("application/json"),
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 404, "{engine}: {}", r.text());
        let r = call(
            "POST",
            &url,
            Some("not-a-token"),
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!(r.status, 401, "{engine}: {}", r.text());
        let r = call(
            "POST",
            &api.url("organizations/other/chunk-upload/"),
            Some(&api.token),
            Some("multipart/form-data; boundary=x"),
            b"--x--\r\n".to_vec(),
        )
        .await;
        assert_eq!(r.status, 404, "{engine}: {}", r.text());
        let r = call(
            "POST",
            &url,
            Some(&api.other_token),
            Some("application/json"),
            b"{\"checksum\": 5".to_vec(),
        )
        .await;
        assert_eq!(r.status, 400, "{engine}: {}", r.text());
    }
}

// ---------------------------------------------------------------------------------------
// Artifact bundle assembly.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_bundles_assemble_into_the_artifacts_index() {
    for engine in engines() {
        let api = spawn(engine).await;
        let file = bundle(true, None);
        let checksum = sha1_hex(&file);
        let chunk_ids: Vec<String> = file.chunks(300).map(sha1_hex).collect();
        let request = json!({"checksum": checksum, "chunks": chunk_ids, "projects": ["web"],
            "version": "1.0", "dist": "web"});

        // 3.x asks first: every chunk is missing.
        let r = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                request.clone(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let state = r.json();
        assert_eq!(state["state"], "not_found");
        assert_eq!(state["missingChunks"], json!(chunk_ids));
        // Half uploaded: exactly the rest is missing.
        let half: Vec<u8> = file[..300 * 2].to_vec();
        upload_chunks(&api, &half, 300).await;
        let state = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                request.clone(),
            )
            .await
            .json();
        assert_eq!(state["state"], "not_found");
        assert_eq!(state["missingChunks"], json!(chunk_ids[2..]));
        // All uploaded: assembled.
        upload_chunks(&api, &file, 300).await;
        let state = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                request.clone(),
            )
            .await
            .json();
        assert_eq!(state["state"], "ok", "{state}");
        assert_eq!(state["missingChunks"], json!([]));
        // Asking again (polling) answers ok without indexing twice.
        let state = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                request.clone(),
            )
            .await
            .json();
        assert_eq!(state["state"], "ok");

        let rows = api
            .rows(
                "SELECT a.name, a.kind, a.debug_id, a.dist, a.sha1, a.size, a.headers, r.version, b.data \
                 FROM artifacts a JOIN releases r ON r.id = a.release_id JOIN blobs b ON b.sha1 = a.sha1 ORDER BY a.name",
            )
            .await;
        assert_eq!(rows.len(), 2, "{engine}");
        let get = |i: usize, c: &str| -> Option<String> { rows[i].try_get("", c).expect(c) };
        assert_eq!(get(0, "name").as_deref(), Some("~/static/app.min.js"));
        assert_eq!(get(0, "kind").as_deref(), Some("minified_source"));
        assert_eq!(get(1, "name").as_deref(), Some("~/static/app.min.js.map"));
        assert_eq!(get(1, "kind").as_deref(), Some("source_map"));
        for i in 0..2 {
            assert_eq!(get(i, "debug_id").as_deref(), Some(DEBUG_ID));
            assert_eq!(get(i, "dist").as_deref(), Some("web"));
            assert_eq!(get(i, "version").as_deref(), Some("1.0"));
        }
        let data: Vec<u8> = rows[0].try_get("", "data").expect("data");
        assert_eq!(data, MINIFIED);
        assert_eq!(get(0, "sha1"), Some(sha1_hex(MINIFIED)));
        let headers: Value =
            serde_json::from_str(&get(0, "headers").expect("headers")).expect("json");
        assert_eq!(headers["sourcemap"], "app.min.js.map");
        assert_eq!(headers["debug-id"], DEBUG_ID);
        // The release exists and belongs to the project.
        let rel = api.get("organizations/acme/releases/1.0/").await.json();
        assert_eq!(rel["projects"][0]["slug"], "web");

        // The same files uploaded again in a new bundle replace, never duplicate, the rows.
        let again = bundle(true, Some("1.0"));
        let ids = upload_chunks(&api, &again, 1 << 20).await;
        let state = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                json!({"checksum": sha1_hex(&again), "chunks": ids, "projects": ["web"], "version": "1.0", "dist": "web"}),
            )
            .await
            .json();
        assert_eq!(state["state"], "ok", "{state}");
        assert_eq!(api.scalar("SELECT COUNT(*) FROM artifacts").await, 2);

        // Without a release: indexed by debug id only, release and dist NULL.
        let no_release = bundle_in("other", true, None);
        let ids = upload_chunks(&api, &no_release, 1 << 20).await;
        let state = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                json!({"checksum": sha1_hex(&no_release), "chunks": ids, "projects": ["web"]}),
            )
            .await
            .json();
        assert_eq!(state["state"], "ok", "{state}");
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM artifacts WHERE name LIKE '~/other/%' AND release_id IS NULL \
                 AND dist IS NULL AND debug_id = '{DEBUG_ID}'"
            ))
            .await,
            2
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assembly_failures_are_reported_as_error_states() {
    for engine in engines() {
        let api = spawn(engine).await;
        let assemble = |body: Value| {
            let api = &api;
            async move {
                api.post("organizations/acme/artifactbundle/assemble/", body)
                    .await
            }
        };

        // A corrupt zip.
        let corrupt = b"SYSB\x02\x00\x00\x00this is not a zip archive at all".to_vec();
        let ids = upload_chunks(&api, &corrupt, 1 << 20).await;
        let r = assemble(json!({"checksum": sha1_hex(&corrupt), "chunks": ids, "projects": ["web"], "version": "1"})).await;
        assert_eq!(r.status, 200);
        let s = r.json();
        assert_eq!(s["state"], "error", "{s}");
        assert!(
            s["detail"]
                .as_str()
                .expect("detail")
                .contains("not a valid zip"),
            "{s}"
        );

        // Chunks that do not add up to the checksum.
        let file = bundle(true, None);
        let ids = upload_chunks(&api, &file, 1 << 20).await;
        let s = assemble(json!({"checksum": "f".repeat(40), "chunks": ids, "projects": ["web"]}))
            .await
            .json();
        assert_eq!(s["state"], "error");
        assert!(
            s["detail"]
                .as_str()
                .expect("detail")
                .contains("checksum mismatch")
        );

        // Neither debug ids nor a release: nothing could ever find the files.
        let plain = bundle(false, None);
        let ids = upload_chunks(&api, &plain, 1 << 20).await;
        let s = assemble(json!({"checksum": sha1_hex(&plain), "chunks": ids, "projects": ["web"]}))
            .await
            .json();
        assert_eq!(s["state"], "error");
        assert!(s["detail"].as_str().expect("detail").contains("debug ids"));

        // Bad requests: 400 with a detail.
        for (body, expect) in [
            (
                json!({"checksum": "nope", "chunks": [], "projects": ["web"]}),
                "checksum",
            ),
            (
                json!({"checksum": "a".repeat(40), "chunks": ["x"], "projects": ["web"]}),
                "chunks",
            ),
            (
                json!({"checksum": "a".repeat(40), "chunks": [], "projects": []}),
                "project",
            ),
            (
                json!({"checksum": "a".repeat(40), "chunks": [], "projects": ["nope"]}),
                "nope",
            ),
            (
                json!({"checksum": "a".repeat(40), "chunks": [], "projects": ["site"]}),
                "site",
            ),
            (
                json!({"checksum": "a".repeat(40), "chunks": [], "projects": ["web"], "dist": "x"}),
                "dist",
            ),
            (
                json!({"checksum": "a".repeat(40), "chunks": [], "projects": ["web"], "version": "a/b"}),
                "version",
            ),
            (json!({"chunks": []}), "JSON"),
        ] {
            let r = assemble(body.clone()).await;
            assert_eq!(r.status, 400, "{body}: {}", r.text());
            assert!(r.detail().contains(expect), "{body}: {}", r.text());
        }
        // An oversize JSON body: 413.
        let r = assemble(json!({"checksum": "a".repeat(40), "chunks": vec!["a".repeat(40); 200_000], "projects": ["web"]})).await;
        assert_eq!(r.status, 413, "{}", r.text());
        // Nothing was indexed by any of it.
        assert_eq!(api.scalar("SELECT COUNT(*) FROM artifacts").await, 0);
        // An unknown checksum with no chunks: not found (sentry-cli polls like this).
        let s = assemble(json!({"checksum": "a".repeat(40), "chunks": [], "projects": ["web"]}))
            .await
            .json();
        assert_eq!(s["state"], "not_found");
    }
}

/// What other processes see while an assembly runs, and what happens to one whose
/// process died: `assembling` while it is fresh, assembled anew once it is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assembly_in_progress_elsewhere_and_abandoned_assemblies() {
    for engine in engines() {
        let api = spawn(engine).await;
        let file = bundle(true, Some("p1"));
        let checksum = sha1_hex(&file);
        let ids = upload_chunks(&api, &file, 1 << 20).await;
        let body =
            json!({"checksum": checksum, "chunks": ids, "projects": ["web"], "version": "p1"});
        let now = chrono::Utc::now().timestamp_millis();
        // Another process claimed it a moment ago and is still assembling.
        api.app
            .db
            .execute_unprepared(&format!(
                "INSERT INTO assemble_tasks (organization_id, checksum, kind, state, detail, created_at, updated_at) \
                 SELECT id, '{checksum}', 'artifact_bundle', 'assembling', NULL, {now}, {now} FROM organizations WHERE slug = 'acme'"
            ))
            .await
            .expect("insert");
        let s = api
            .post("organizations/acme/artifactbundle/assemble/", body.clone())
            .await
            .json();
        assert_eq!(s["state"], "assembling", "{s}");
        assert_eq!(api.scalar("SELECT COUNT(*) FROM artifacts").await, 0);
        // That process died: after the stale period the next request assembles it.
        api.app
            .db
            .execute_unprepared(&format!(
                "UPDATE assemble_tasks SET updated_at = {} WHERE checksum = '{checksum}'",
                now - 3_600_000
            ))
            .await
            .expect("update");
        let s = api
            .post("organizations/acme/artifactbundle/assemble/", body.clone())
            .await
            .json();
        assert_eq!(s["state"], "ok", "{s}");
        assert_eq!(api.scalar("SELECT COUNT(*) FROM artifacts").await, 2);
        // The polls of sentry-cli (no chunks) see the result too.
        let s = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                json!({"checksum": checksum, "chunks": [], "projects": ["web"]}),
            )
            .await
            .json();
        assert_eq!(s["state"], "ok", "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_bundles_assemble_for_an_existing_release() {
    for engine in engines() {
        let api = spawn(engine).await;
        let file = bundle(false, None);
        let ids = upload_chunks(&api, &file, 1 << 20).await;
        let body = json!({"checksum": sha1_hex(&file), "chunks": ids});
        let r = api
            .post("organizations/acme/releases/2.0/assemble/", body.clone())
            .await;
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.detail().contains("2.0"));
        let r = api
            .post(
                "organizations/acme/releases/",
                json!({"version": "2.0", "projects": ["web"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let s = api
            .post("organizations/acme/releases/2.0/assemble/", body)
            .await
            .json();
        assert_eq!(s["state"], "ok", "{s}");
        let rows = api
            .rows("SELECT a.name, a.debug_id, r.version FROM artifacts a JOIN releases r ON r.id = a.release_id ORDER BY a.name")
            .await;
        assert_eq!(rows.len(), 2);
        let name: String = rows[0].try_get("", "name").expect("name");
        let debug_id: Option<String> = rows[0].try_get("", "debug_id").expect("debug_id");
        let version: String = rows[0].try_get("", "version").expect("version");
        assert_eq!(
            (name.as_str(), debug_id, version.as_str()),
            ("~/static/app.min.js", None, "2.0")
        );
        // The release's file list shows them, as `sentry-cli releases files 2.0 list` reads it.
        let files = api.get("organizations/acme/releases/2.0/files/").await;
        assert_eq!(files.status, 200);
        let files = files.json();
        assert_eq!(files.as_array().expect("list").len(), 2);
    }
}

// ---------------------------------------------------------------------------------------
// Releases, deploys and release files.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_and_deploys_as_sentry_cli_manages_them() {
    for engine in engines() {
        let api = spawn(engine).await;
        // `releases new` (3.x: organization endpoint; 2.x: project endpoint).
        let r = api
            .post(
                "organizations/acme/releases/",
                json!({"version": "r1", "projects": ["web"], "dateStarted": "2026-11-20T10:00:00Z"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let rel = r.json();
        assert_eq!(rel["version"], "r1");
        assert_eq!(rel["dateCreated"], "2026-11-20T10:00:00.000Z");
        assert!(rel["dateReleased"].is_null());
        // Creating it again: 208 with the same release.
        let r = api
            .post(
                "organizations/acme/releases/",
                json!({"version": "r1", "projects": ["web"]}),
            )
            .await;
        assert_eq!(r.status, 208);
        let r = api
            .post(
                "projects/acme/web/releases/",
                json!({"version": "r2", "projects": ["web"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        // `releases finalize`.
        let r = api
            .put(
                "organizations/acme/releases/r1/",
                json!({"projects": ["web"], "dateReleased": "2026-11-21T10:00:00Z"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["dateReleased"], "2026-11-21T10:00:00.000Z");
        // Archive / restore.
        let r = api
            .put(
                "organizations/acme/releases/r1/",
                json!({"status": "archived"}),
            )
            .await;
        assert_eq!(r.json()["status"], "archived");
        let r = api
            .put(
                "organizations/acme/releases/r1/",
                json!({"status": "sideways"}),
            )
            .await;
        assert_eq!(r.status, 400);
        // List: org-wide and per project, newest first, with a Link header.
        let r = api.get("organizations/acme/releases/").await;
        assert_eq!(r.status, 200);
        assert!(r.headers["link"].contains("rel=\"next\"; results=\"false\""));
        let versions: Vec<String> = r
            .json()
            .as_array()
            .expect("list")
            .iter()
            .map(|x| x["version"].as_str().expect("v").to_string())
            .collect();
        assert_eq!(versions, ["r2", "r1"]);
        let r = api.get("projects/acme/web/releases/").await.json();
        assert_eq!(r.as_array().expect("list").len(), 2);
        let r = api.get("projects/acme/nope/releases/").await;
        assert_eq!(r.status, 404);
        // Pages of one.
        let r = api.get("organizations/acme/releases/?per_page=1").await;
        assert_eq!(r.json()[0]["version"], "r2");
        let link = r.headers["link"].clone();
        let next = link
            .split(", ")
            .find(|l| l.contains("rel=\"next\""))
            .expect("next");
        assert!(next.contains("results=\"true\""), "{link}");
        let cursor = next
            .split("cursor=\"")
            .nth(1)
            .expect("cursor")
            .trim_end_matches('"');
        let r = api
            .get(&format!(
                "organizations/acme/releases/?per_page=1&cursor={cursor}"
            ))
            .await;
        assert_eq!(r.json()[0]["version"], "r1");
        let r = api.get("organizations/acme/releases/?cursor=garbage").await;
        assert_eq!(r.status, 400);

        // Deploys.
        let r = api
            .post(
                "organizations/acme/releases/r1/deploys/",
                json!({"environment": "production", "name": "d1"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["environment"], "production");
        let r = api
            .post(
                "organizations/acme/releases/r1/deploys/",
                json!({"name": "no env"}),
            )
            .await;
        assert_eq!(r.status, 400);
        let r = api
            .post(
                "organizations/acme/releases/nope/deploys/",
                json!({"environment": "x"}),
            )
            .await;
        assert_eq!(r.status, 404);
        let r = api
            .get("organizations/acme/releases/r1/deploys/")
            .await
            .json();
        assert_eq!(r[0]["name"], "d1");
        let rel = api.get("organizations/acme/releases/r1/").await.json();
        assert_eq!(rel["deployCount"], 1);
        assert_eq!(rel["lastDeploy"]["environment"], "production");

        // Bad versions; missing releases.
        let r = api
            .post(
                "organizations/acme/releases/",
                json!({"version": "", "projects": ["web"]}),
            )
            .await;
        assert_eq!(r.status, 400);
        let r = api
            .post(
                "organizations/acme/releases/",
                json!({"version": "ok", "projects": ["site"]}),
            )
            .await;
        assert_eq!(r.status, 400, "another organization's project");
        let r = api.get("organizations/acme/releases/nope/").await;
        assert_eq!(r.status, 404);
        let r = api
            .put("organizations/acme/releases/nope/", json!({}))
            .await;
        assert_eq!(r.status, 404);

        // Delete, with its deploys.
        let r = api.delete("organizations/acme/releases/r1/").await;
        assert_eq!(r.status, 204);
        assert_eq!(api.get("organizations/acme/releases/r1/").await.status, 404);
        assert_eq!(api.scalar("SELECT COUNT(*) FROM deploys").await, 0);
        assert_eq!(
            api.delete("organizations/acme/releases/r1/").await.status,
            404
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_files_upload_list_download_delete_and_blobs_go_with_them() {
    for engine in engines() {
        let api = spawn(engine).await;
        api.post(
            "projects/acme/web/releases/",
            json!({"version": "v1", "projects": ["web"]}),
        )
        .await;
        let path = "projects/acme/web/releases/v1/files/";
        // As 2.x uploads one file: file, name, dist, header.
        let r = api
            .multipart(
                path,
                &[
                    Part("file", Some("app.min.js"), MINIFIED),
                    Part("name", None, b"~/static/app.min.js"),
                    Part("dist", None, b"d1"),
                    Part("header", None, b"Sourcemap:app.min.js.map"),
                ],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let file = r.json();
        assert_eq!(file["name"], "~/static/app.min.js");
        assert_eq!(file["sha1"], sha1_hex(MINIFIED));
        assert_eq!(file["headers"]["sourcemap"], "app.min.js.map");
        let r = api
            .multipart(
                "organizations/acme/releases/v1/files/",
                &[
                    Part("file", Some("app.min.js.map"), MAP),
                    Part("name", None, b"~/static/app.min.js.map"),
                    Part("dist", None, b"d1"),
                ],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let map_id = r.json()["id"].as_str().expect("id").to_string();
        // Again: 409, which sentry-cli ignores.
        let r = api
            .multipart(
                path,
                &[
                    Part("file", Some("app.min.js"), MINIFIED),
                    Part("name", None, b"~/static/app.min.js"),
                    Part("dist", None, b"d1"),
                ],
            )
            .await;
        assert_eq!(r.status, 409);
        // Garbage.
        let r = api.multipart(path, &[Part("name", None, b"~/x.js")]).await;
        assert_eq!(r.status, 400);
        let r = api
            .multipart(
                path,
                &[
                    Part("file", Some("x.js"), b"x"),
                    Part("header", None, b"no colon"),
                ],
            )
            .await;
        assert_eq!(r.status, 400);
        let r = api
            .multipart(
                "projects/acme/web/releases/nope/files/",
                &[Part("file", Some("x.js"), b"x")],
            )
            .await;
        assert_eq!(r.status, 404);

        let rows = api
            .rows("SELECT name, kind, dist, debug_id FROM artifacts ORDER BY name")
            .await;
        let kinds: Vec<(String, String, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("", "name").expect("n"),
                    r.try_get("", "kind").expect("k"),
                    r.try_get("", "dist").expect("d"),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "~/static/app.min.js".into(),
                    "minified_source".into(),
                    Some("d1".into())
                ),
                (
                    "~/static/app.min.js.map".into(),
                    "source_map".into(),
                    Some("d1".into())
                ),
            ]
        );

        // Listing, by checksum as 2.x does before uploading.
        let list = api.get(path).await.json();
        assert_eq!(list.as_array().expect("list").len(), 2);
        let list = api
            .get(&format!("{path}?cursor=&checksum={}", sha1_hex(MAP)))
            .await
            .json();
        assert_eq!(list.as_array().expect("list").len(), 1);
        assert_eq!(list[0]["name"], "~/static/app.min.js.map");
        // Download.
        let r = api.get(&format!("{path}{map_id}/?download=1")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, MAP);
        assert_eq!(api.get(&format!("{path}999999/")).await.status, 404);
        assert_eq!(api.get(&format!("{path}abc/")).await.status, 404);

        // Delete: the row and its blob go.
        let map_sha1 = sha1_hex(MAP);
        let r = api.delete(&format!("{path}{map_id}/")).await;
        assert_eq!(r.status, 204);
        assert_eq!(api.delete(&format!("{path}{map_id}/")).await.status, 404);
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM blobs WHERE sha1 = '{map_sha1}'"
            ))
            .await,
            0
        );
        // `releases files v1 delete --all` (2.x): every file of the release.
        assert_eq!(
            api.delete("projects/acme/web/files/source-maps/")
                .await
                .status,
            400
        );
        assert_eq!(
            api.delete("projects/acme/web/files/source-maps/?name=nope")
                .await
                .status,
            404
        );
        assert_eq!(
            api.delete("projects/acme/web/files/source-maps/?name=v1")
                .await
                .status,
            204
        );
        assert_eq!(api.scalar("SELECT COUNT(*) FROM artifacts").await, 0);
        assert_eq!(api.scalar("SELECT COUNT(*) FROM blobs").await, 0);
        // Deleting the release takes its files and their blobs.
        api.multipart(
            path,
            &[
                Part("file", Some("app.min.js"), MINIFIED),
                Part("name", None, b"~/static/app.min.js"),
            ],
        )
        .await;
        assert_eq!(api.scalar("SELECT COUNT(*) FROM blobs").await, 1);
        assert_eq!(
            api.delete("organizations/acme/releases/v1/").await.status,
            204
        );
        assert_eq!(api.scalar("SELECT COUNT(*) FROM artifacts").await, 0);
        assert_eq!(api.scalar("SELECT COUNT(*) FROM blobs").await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_blobs_are_garbage_collected() {
    for engine in engines() {
        let api = spawn(engine).await;
        // Chunks of an assembled bundle, and a stray chunk never assembled.
        let file = bundle(true, Some("g1"));
        let ids = upload_chunks(&api, &file, 1 << 20).await;
        let stray = upload_chunks(&api, b"stray chunk", 1 << 20).await;
        let s = api
            .post(
                "organizations/acme/artifactbundle/assemble/",
                json!({"checksum": sha1_hex(&file), "chunks": ids, "projects": ["web"], "version": "g1"}),
            )
            .await
            .json();
        assert_eq!(s["state"], "ok");
        assert_eq!(api.scalar("SELECT COUNT(*) FROM blobs").await, 4);
        // Within the grace period nothing goes.
        let now = chrono::Utc::now().timestamp_millis();
        let n = faultline_app::api::blobs::collect_garbage(&api.app.db, now - 3_600_000)
            .await
            .expect("gc");
        assert_eq!(n, 0);
        // After it, the chunks go and the files artifacts name stay.
        let n = faultline_app::api::blobs::collect_garbage(&api.app.db, now + 1)
            .await
            .expect("gc");
        assert_eq!(n, 2);
        // Their ownership went with them: uploading again starts a fresh grace period.
        assert_eq!(api.scalar("SELECT COUNT(*) FROM chunk_owners").await, 0);
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM blobs WHERE sha1 IN ('{}', '{}')",
                ids[0], stray[0]
            ))
            .await,
            0
        );
        assert_eq!(
            api.scalar("SELECT COUNT(*) FROM blobs b WHERE EXISTS (SELECT 1 FROM artifacts a WHERE a.sha1 = b.sha1)").await,
            2
        );
        // Deleting the release leaves nothing behind.
        assert_eq!(
            api.delete("organizations/acme/releases/g1/").await.status,
            204
        );
        assert_eq!(api.scalar("SELECT COUNT(*) FROM blobs").await, 0);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Issues and events.

/// Sends one error event through ingest and waits until the worker stored it.
async fn send_event(api: &Api, message: &str, ty: &str, extra: Value) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = json!({
        "event_id": id, "level": "error", "platform": "python",
        "exception": {"values": [{"type": ty, "value": message,
            "stacktrace": {"frames": [{"function": "handler", "module": "app", "filename": "app.py",
                "abs_path": "/srv/app.py", "lineno": 3, "in_app": true,
                "pre_context": ["def handler():"], "context_line": "    raise Boom()", "post_context": [""]}]}}]},
    });
    if let (Some(e), Value::Object(x)) = (event.as_object_mut(), extra) {
        e.extend(x);
    }
    let event = event.to_string();
    let body = format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
        event.len()
    );
    let r = common::post(
        &api.app.envelope_url(),
        &[("X-Sentry-Auth", &api.app.auth_header())],
        body.into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // (common's wait_for_event speaks SQLite's placeholders only.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while api
        .scalar(&format!(
            "SELECT COUNT(*) FROM events WHERE event_id = '{id}'"
        ))
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "event {id} was not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    id
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_and_events_through_the_web_api() {
    for engine in engines() {
        let api = spawn(engine).await;
        let a1 = send_event(&api, "first problem", "RuntimeError", json!({})).await;
        let b1 = send_event(
            &api,
            "second problem",
            "ValueError",
            json!({"level": "warning", "release": "1.0", "environment": "prod", "user": {"id": "u1"}}),
        )
        .await;
        let a2 = send_event(&api, "first problem", "RuntimeError", json!({})).await;

        // The project's list: unresolved by default, newest first, Sentry's fields.
        let r = api.get("projects/acme/web/issues/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.headers["link"].contains("rel=\"next\"; results=\"false\""));
        let list = r.json();
        assert_eq!(list.as_array().expect("list").len(), 2, "{list}");
        let a = list[0].clone();
        let b = list[1].clone();
        assert_eq!(a["title"], "RuntimeError: first problem");
        assert_eq!(a["count"], "2");
        assert_eq!(a["status"], "unresolved");
        assert_eq!(a["level"], "error");
        assert_eq!(a["project"]["slug"], "web");
        assert_eq!(a["metadata"]["type"], "RuntimeError");
        assert_eq!(a["metadata"]["value"], "first problem");
        assert_eq!(a["shortId"], "WEB-1");
        let (a_id, b_id) = (
            a["id"].as_str().expect("id").to_string(),
            b["id"].as_str().expect("id").to_string(),
        );
        assert!(
            a["permalink"]
                .as_str()
                .expect("permalink")
                .ends_with(&format!("/organizations/acme/issues/{a_id}/"))
        );
        assert!(a["firstSeen"].as_str().expect("time").ends_with('Z'));
        assert_eq!(b["userCount"], 1);
        assert_eq!(b["level"], "warning");

        // Search.
        for (q, expect) in [
            ("level:warning", vec![b_id.clone()]),
            ("release:1.0", vec![b_id.clone()]),
            ("environment:prod level:warning", vec![b_id.clone()]),
            ("!environment:prod", vec![a_id.clone()]),
            ("first", vec![a_id.clone()]),
            ("\"second problem\"", vec![b_id.clone()]),
            ("user:u1", vec![b_id.clone()]),
            ("has:user", vec![b_id.clone()]),
            ("is:resolved", vec![]),
            ("nothing-matches-this", vec![]),
        ] {
            let url = format!(
                "projects/acme/web/issues/?query={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let r = api.get(&url).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            assert_eq!(ids_of(&r.json()), expect, "{q}");
        }
        for bad in ["is:sideways", ""] {
            let url = format!("projects/acme/web/issues/?query={bad}&cursor=garbage");
            assert_eq!(api.get(&url).await.status, 400, "{bad}");
        }
        assert_eq!(
            api.get("projects/acme/web/issues/?sort=sideways")
                .await
                .status,
            400
        );
        // Sorted by events; pages of one, following the Link header as sentry-cli does.
        let r = api
            .get("projects/acme/web/issues/?query=&sort=freq&per_page=1")
            .await;
        assert_eq!(ids_of(&r.json()), vec![a_id.clone()]);
        let link = r.headers["link"].clone();
        let next = link
            .split(", ")
            .find(|l| l.contains("rel=\"next\""))
            .expect("next");
        assert!(next.contains("results=\"true\""), "{link}");
        let cursor = next
            .split("cursor=\"")
            .nth(1)
            .expect("cursor")
            .trim_end_matches('"');
        let r = api
            .get(&format!(
                "projects/acme/web/issues/?query=&sort=freq&per_page=1&cursor={cursor}"
            ))
            .await;
        assert_eq!(ids_of(&r.json()), vec![b_id.clone()]);
        assert!(r.headers["link"].contains("rel=\"next\"; results=\"false\""));
        // Organization-wide, and limited to one project (of this organization only).
        let r = api.get("organizations/acme/issues/?query=").await;
        assert_eq!(ids_of(&r.json()).len(), 2);
        let r = api
            .get(&format!(
                "organizations/acme/issues/?project={}",
                api.app.project_id
            ))
            .await;
        assert_eq!(ids_of(&r.json()).len(), 2);
        let other_project = api
            .scalar("SELECT id FROM projects WHERE slug = 'site'")
            .await;
        assert_eq!(
            api.get(&format!(
                "organizations/acme/issues/?project={other_project}"
            ))
            .await
            .status,
            403
        );
        assert_eq!(api.get("projects/acme/nope/issues/").await.status, 404);

        // One issue; other organizations and missing ones are 404.
        let r = api.get(&format!("issues/{a_id}/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["id"], a_id);
        let r = api.get(&format!("organizations/acme/issues/{a_id}/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            api.get(&format!("organizations/other/issues/{a_id}/"))
                .await
                .status,
            404
        );
        let r = call(
            "GET",
            &api.url(&format!("issues/{a_id}/")),
            Some(&api.other_token),
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(api.get("issues/999999/").await.status, 404);
        assert_eq!(api.get("issues/abc/").await.status, 404);

        // Status changes.
        let r = api
            .put(&format!("issues/{a_id}/"), json!({"status": "resolved"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "resolved");
        assert_eq!(
            ids_of(&api.get("projects/acme/web/issues/").await.json()),
            vec![b_id.clone()]
        );
        assert_eq!(
            ids_of(
                &api.get("projects/acme/web/issues/?query=is:resolved")
                    .await
                    .json()
            ),
            vec![a_id.clone()]
        );
        let r = api
            .put(
                &format!("issues/{b_id}/"),
                json!({"status": "resolvedInNextRelease"}),
            )
            .await;
        assert_eq!(r.json()["status"], "resolved");
        assert_eq!(r.json()["statusDetails"]["inNextRelease"], true);
        let details = api
            .rows(&format!(
                "SELECT status, status_details FROM issues WHERE id = {b_id}"
            ))
            .await;
        let stored: String = details[0].try_get("", "status").expect("status");
        let d: String = details[0].try_get("", "status_details").expect("details");
        assert_eq!(stored, "resolved_in_next_release");
        assert_eq!(
            serde_json::from_str::<Value>(&d).expect("json")["resolved_release"],
            "1.0"
        );
        let r = api
            .put(
                &format!("issues/{b_id}/"),
                json!({"status": "ignored", "statusDetails": {"ignoreCount": 5}}),
            )
            .await;
        assert_eq!(r.json()["status"], "ignored");
        assert_eq!(r.json()["statusDetails"]["ignoreCount"], 5);
        let r = api
            .put(&format!("issues/{b_id}/"), json!({"status": "sideways"}))
            .await;
        assert_eq!(r.status, 400);
        let r = call(
            "PUT",
            &api.url(&format!("issues/{b_id}/")),
            Some(&api.token),
            Some("application/json"),
            b"[1,2".to_vec(),
        )
        .await;
        assert_eq!(r.status, 400);
        // A resolved issue regresses when a new event arrives (the worker reads our status).
        send_event(&api, "first problem", "RuntimeError", json!({})).await;
        assert_eq!(
            api.get(&format!("issues/{a_id}/")).await.json()["status"],
            "unresolved"
        );

        // Bulk, as `sentry-cli issues resolve -i A -i B`, `unresolve -s resolved`, `mute --all`.
        let r = api
            .put(
                &format!("projects/acme/web/issues/?id={a_id}&id={b_id}"),
                json!({"status": "resolved", "snoozeDuration": null}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            api.scalar("SELECT COUNT(*) FROM issues WHERE status = 'resolved'")
                .await,
            2
        );
        let r = api
            .put(
                "projects/acme/web/issues/?status=resolved",
                json!({"status": "unresolved", "snoozeDuration": null}),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            api.scalar("SELECT COUNT(*) FROM issues WHERE status = 'unresolved'")
                .await,
            2
        );
        let r = api
            .put(
                "projects/acme/web/issues/",
                json!({"status": "muted", "snoozeDuration": 60}),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            api.scalar("SELECT COUNT(*) FROM issues WHERE status = 'ignored'")
                .await,
            2
        );
        let r = api
            .put(
                "projects/acme/web/issues/?id=999999",
                json!({"status": "resolved"}),
            )
            .await;
        assert_eq!(r.status, 204);
        let r = api
            .put("projects/acme/web/issues/", json!({"snoozeDuration": null}))
            .await;
        assert_eq!(r.status, 400);
        let r = call(
            "PUT",
            &api.url("projects/acme/web/issues/"),
            Some(&api.other_token),
            Some("application/json"),
            json!({"status": "resolved"}).to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(
            api.scalar("SELECT COUNT(*) FROM issues WHERE status = 'ignored'")
                .await,
            2
        );

        // Events of an issue: summaries, full, latest, oldest, one by id.
        let r = api.get(&format!("issues/{a_id}/events/")).await;
        assert_eq!(r.status, 200);
        let events = r.json();
        assert_eq!(events.as_array().expect("list").len(), 3);
        assert_eq!(events[0]["groupID"], a_id);
        assert!(
            events
                .as_array()
                .expect("list")
                .iter()
                .any(|e| e["eventID"] == a1)
        );
        let full = api
            .get(&format!("issues/{a_id}/events/?full=true"))
            .await
            .json();
        assert_eq!(full[0]["entries"][0]["type"], "exception");
        let latest = api
            .get(&format!("issues/{a_id}/events/latest/"))
            .await
            .json();
        assert_eq!(latest["groupID"], a_id);
        let oldest = api
            .get(&format!("issues/{a_id}/events/oldest/"))
            .await
            .json();
        assert_eq!(oldest["eventID"], a1);
        assert_eq!(oldest["nextEventID"], a2);
        assert!(oldest["previousEventID"].is_null());
        let frame = &oldest["entries"][0]["data"]["values"][0]["stacktrace"]["frames"][0];
        assert_eq!(frame["function"], "handler");
        assert_eq!(frame["lineNo"], 3);
        assert_eq!(frame["inApp"], true);
        assert_eq!(
            frame["context"],
            json!([[2, "def handler():"], [3, "    raise Boom()"], [4, ""]])
        );
        assert_eq!(
            api.get(&format!("issues/{a_id}/events/{a2}/")).await.json()["eventID"],
            a2
        );
        assert_eq!(
            api.get(&format!("issues/{a_id}/events/{b1}/")).await.status,
            404
        );

        // One event of the project, with its issue.
        let r = api.get(&format!("projects/acme/web/events/{b1}/")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let e = r.json();
        assert_eq!(e["groupID"], b_id);
        assert_eq!(e["release"]["version"], "1.0");
        assert!(
            e["tags"]
                .as_array()
                .expect("tags")
                .contains(&json!({"key": "environment", "value": "prod"}))
        );
        let hyphenated = uuid::Uuid::parse_str(&b1)
            .expect("uuid")
            .hyphenated()
            .to_string();
        assert_eq!(
            api.get(&format!("projects/acme/web/events/{hyphenated}/"))
                .await
                .status,
            200
        );
        assert_eq!(
            api.get(&format!("projects/acme/web/events/{}/", "0".repeat(32)))
                .await
                .status,
            404
        );
        assert_eq!(
            api.get("projects/acme/web/events/not-an-id/").await.status,
            404
        );
        let r = call(
            "GET",
            &api.url(&format!("projects/acme/web/events/{b1}/")),
            Some(&api.other_token),
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(
            api.get("projects/acme/web/events/")
                .await
                .json()
                .as_array()
                .expect("list")
                .len(),
            4
        );

        // The grouping hashes merged into the issue.
        let hashes = api.get(&format!("issues/{a_id}/hashes/")).await.json();
        let h = hashes[0]["id"].as_str().expect("hash");
        assert_eq!(h.len(), 32);
        assert_eq!(hashes[0]["latestEvent"]["groupID"], a_id);

        // Delete: needs event:admin; then the issue and its events are gone.
        assert_eq!(api.delete(&format!("issues/{a_id}/")).await.status, 403);
        let admin = faultline_app::accounts::tokens::create_for_org(
            &api.app.db,
            "acme",
            &["event:admin".into()],
            "admin",
        )
        .await
        .expect("token");
        let r = call(
            "DELETE",
            &api.url(&format!("issues/{a_id}/")),
            Some(&admin),
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(api.get(&format!("issues/{a_id}/")).await.status, 404);
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM events WHERE issue_id = {a_id}"
            ))
            .await,
            0
        );
        let r = call(
            "DELETE",
            &api.url(&format!("issues/{a_id}/")),
            Some(&admin),
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 404);
    }
}

// ---------------------------------------------------------------------------------------
// Tokens follow their owner's membership; organization tokens live until revoked.

/// Runs a statement with `?` placeholders on either engine.
async fn exec(api: &Api, sql: &str, values: Vec<sea_orm::Value>) {
    let stmt = faultline_core::sql::stmt(api.app.db.get_database_backend(), sql, values);
    api.app.db.execute_raw(stmt).await.expect("statement");
}

/// The id of the issue of a stored event.
async fn issue_of(api: &Api, event_id: &str) -> i64 {
    api.scalar(&format!(
        "SELECT issue_id FROM events WHERE event_id = '{event_id}'"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_lose_what_their_owner_loses_and_organization_tokens_live_until_revoked() {
    for engine in engines() {
        let api = spawn(engine).await;
        let db = &api.app.db;
        let org_id = api
            .scalar("SELECT id FROM organizations WHERE slug = 'acme'")
            .await;
        let kim =
            faultline_app::accounts::users::create(db, "kim@example.com", "correct horse", false)
                .await
                .expect("user");
        exec(
            &api,
            "INSERT INTO members (organization_id, user_id, role, created_at) VALUES (?, ?, 'admin', 0)",
            vec![org_id.into(), kim.into()],
        )
        .await;
        let scopes: Vec<String> = [
            "org:read",
            "project:read",
            "event:read",
            "event:write",
            "event:admin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let kims = faultline_app::accounts::tokens::create(db, org_id, Some(kim), &scopes, "kim's")
            .await
            .expect("token");
        let as_kim = |method: &'static str, path: String| {
            let url = api.url(&path);
            let token = kims.clone();
            async move { call(method, &url, Some(&token), None, vec![]).await }
        };
        let first = issue_of(
            &api,
            &send_event(&api, "first", "RuntimeError", json!({})).await,
        )
        .await;
        let second = issue_of(
            &api,
            &send_event(&api, "second", "ValueError", json!({})).await,
        )
        .await;

        // An admin's token deletes issues.
        let r = as_kim("DELETE", format!("issues/{first}/")).await;
        assert_eq!(r.status, 202, "{engine}: {}", r.text());
        let me = as_kim("GET", String::new()).await.json();
        assert!(
            me["auth"]["scopes"]
                .as_array()
                .expect("scopes")
                .contains(&json!("event:admin")),
            "{engine}: {me}"
        );

        // Demoted to member: from the next request on, the token reads and triages but no
        // longer deletes, and says so.
        exec(
            &api,
            "UPDATE members SET role = 'member' WHERE user_id = ?",
            vec![kim.into()],
        )
        .await;
        let r = as_kim("DELETE", format!("issues/{second}/")).await;
        assert_eq!(r.status, 403, "{engine}: {}", r.text());
        assert!(r.detail().contains("event:admin"), "{engine}: {}", r.text());
        assert_eq!(
            api.scalar(&format!("SELECT COUNT(*) FROM issues WHERE id = {second}"))
                .await,
            1,
            "{engine}: the issue is still there"
        );
        let r = as_kim("GET", format!("issues/{second}/")).await;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        let r = call(
            "PUT",
            &api.url(&format!("issues/{second}/")),
            Some(&kims),
            Some("application/json"),
            json!({"status": "resolved"}).to_string().into_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        let me = as_kim("GET", String::new()).await.json();
        let reported = me["auth"]["scopes"].as_array().expect("scopes").clone();
        assert!(!reported.contains(&json!("event:admin")), "{engine}: {me}");
        assert!(reported.contains(&json!("event:write")), "{engine}: {me}");

        // Removed from the organization: the token stops working at once.
        exec(
            &api,
            "DELETE FROM members WHERE user_id = ?",
            vec![kim.into()],
        )
        .await;
        for path in [
            String::new(),
            format!("issues/{second}/"),
            "organizations/acme/".into(),
        ] {
            let r = as_kim("GET", path.clone()).await;
            assert_eq!(r.status, 401, "{engine} {path}: {}", r.text());
            assert!(
                r.detail().contains("no longer a member"),
                "{engine}: {}",
                r.text()
            );
        }
        // Joining again (say, a new invitation) makes it work again, with the new role.
        exec(
            &api,
            "INSERT INTO members (organization_id, user_id, role, created_at) VALUES (?, ?, 'member', 0)",
            vec![org_id.into(), kim.into()],
        )
        .await;
        assert_eq!(as_kim("GET", format!("issues/{second}/")).await.status, 200);

        // An organization token (no owner, as `faultline token create` makes for CI) keeps
        // its scopes whoever comes and goes...
        let ci = faultline_app::accounts::tokens::create_for_org(
            db,
            "acme",
            &["event:read".into(), "event:admin".into()],
            "ci",
        )
        .await
        .expect("token");
        let r = call(
            "DELETE",
            &api.url(&format!("issues/{second}/")),
            Some(&ci),
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 202, "{engine}: {}", r.text());
        // ... until it is revoked; `token list` shows it, a wrong id or organization is a
        // clear error.
        let listed = faultline_app::accounts::tokens::list(db, "acme")
            .await
            .expect("list");
        let ci_row = listed
            .iter()
            .find(|t| t.name == "ci" && t.scopes.contains("event:admin"))
            .expect("listed")
            .clone();
        assert_eq!(ci_row.owner, None, "{engine}");
        assert_eq!(
            listed
                .iter()
                .find(|t| t.name == "kim's")
                .and_then(|t| t.owner.clone())
                .as_deref(),
            Some("kim@example.com")
        );
        for (org, id) in [("acme", 999_999), ("other", ci_row.id), ("nope", ci_row.id)] {
            assert!(
                faultline_app::accounts::tokens::revoke_in_org(db, org, id)
                    .await
                    .is_err(),
                "{engine}: {org} {id}"
            );
        }
        faultline_app::accounts::tokens::revoke_in_org(db, "acme", ci_row.id)
            .await
            .expect("revoked");
        let r = call("GET", &api.url(""), Some(&ci), None, vec![]).await;
        assert_eq!(r.status, 401, "{engine}: {}", r.text());
        assert!(
            faultline_app::accounts::tokens::list(db, "acme")
                .await
                .expect("list")
                .iter()
                .all(|t| t.id != ci_row.id)
        );
    }
}

/// Assignment through Sentry's API: `assignedTo` as a user id, `user:<id>` or email, `""`
/// to clear, non-members refused; the issue JSON's `assignedTo`; `assigned:` and
/// `is:assigned` searches; the bulk update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_are_assigned_to_members_through_the_web_api() {
    for engine in engines() {
        let api = spawn(engine).await;
        let db = &api.app.db;
        let kim =
            faultline_app::accounts::users::create(db, "kim@example.com", "pw-123456789", false)
                .await
                .expect("user");
        let outsider =
            faultline_app::accounts::users::create(db, "out@example.com", "pw-123456789", false)
                .await
                .expect("user");
        db.execute_unprepared(&format!(
            "INSERT INTO members (organization_id, user_id, role, created_at) \
             SELECT id, {kim}, 'member', 0 FROM organizations WHERE slug = 'acme'"
        ))
        .await
        .expect("member");
        db.execute_unprepared(&format!(
            "INSERT INTO members (organization_id, user_id, role, created_at) \
             SELECT id, {outsider}, 'member', 0 FROM organizations WHERE slug = 'other'"
        ))
        .await
        .expect("member");
        let acme = api
            .scalar("SELECT id FROM organizations WHERE slug = 'acme'")
            .await;
        let kims_token = faultline_app::accounts::tokens::create(
            db,
            acme,
            Some(kim),
            &["event:write".to_string()],
            "kim",
        )
        .await
        .expect("token");
        send_event(&api, "first problem", "RuntimeError", json!({})).await;
        send_event(&api, "second problem", "ValueError", json!({})).await;
        let list = api.get("projects/acme/web/issues/").await.json();
        let ids = ids_of(&list);
        assert_eq!(ids.len(), 2, "{list}");
        assert_eq!(list[0]["assignedTo"], Value::Null);
        let (a, b) = (ids[0].clone(), ids[1].clone());

        // By email, by id, by `user:<id>`; the issue shows Sentry's object.
        for who in [
            json!("KIM@example.com"),
            json!(kim),
            json!(format!("user:{kim}")),
        ] {
            let r = api
                .put(&format!("issues/{a}/"), json!({"assignedTo": who}))
                .await;
            assert_eq!(r.status, 200, "{who}: {}", r.text());
            let j = r.json();
            assert_eq!(j["assignedTo"]["type"], "user", "{j}");
            assert_eq!(j["assignedTo"]["id"], kim.to_string());
            assert_eq!(j["assignedTo"]["email"], "kim@example.com");
        }
        let j = api.get(&format!("issues/{a}/")).await.json();
        assert_eq!(j["assignedTo"]["name"], "kim@example.com");

        // A member of another organization, an unknown user, teams and garbage: refused,
        // nothing changes.
        for who in [
            json!(format!("user:{outsider}")),
            json!("out@example.com"),
            json!("nobody@example.com"),
            json!(987654),
            json!("team:1"),
            json!(["kim@example.com"]),
            json!({"id": kim}),
        ] {
            let r = api
                .put(&format!("issues/{a}/"), json!({"assignedTo": who}))
                .await;
            assert_eq!(r.status, 400, "{who}: {}", r.text());
            assert!(!r.detail().is_empty());
        }
        let j = api.get(&format!("issues/{a}/")).await.json();
        assert_eq!(j["assignedTo"]["id"], kim.to_string());

        // Wrong credentials and missing issues.
        let body = json!({"assignedTo": ""}).to_string().into_bytes();
        for (token, status) in [(None, 401), (Some(api.other_token.as_str()), 404)] {
            let r = call(
                "PUT",
                &api.url(&format!("issues/{a}/")),
                token,
                Some("application/json"),
                body.clone(),
            )
            .await;
            assert_eq!(r.status, status, "{}", r.text());
        }
        assert_eq!(
            api.put("issues/99999999/", json!({"assignedTo": ""}))
                .await
                .status,
            404
        );

        // Searches.
        let search = |q: &str, token: &str| {
            let url = api.url(&format!(
                "projects/acme/web/issues/?query={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            ));
            let token = token.to_string();
            async move {
                let r = call("GET", &url, Some(&token), None, vec![]).await;
                assert_eq!(r.status, 200, "{}", r.text());
                ids_of(&r.json())
            }
        };
        assert_eq!(
            search("assigned:kim@example.com", &api.token).await,
            vec![a.clone()]
        );
        assert_eq!(
            search(&format!("assigned:{kim}"), &api.token).await,
            vec![a.clone()]
        );
        assert_eq!(search("is:assigned", &api.token).await, vec![a.clone()]);
        assert_eq!(search("is:unassigned", &api.token).await, vec![b.clone()]);
        assert_eq!(search("assigned:none", &api.token).await, vec![b.clone()]);
        // An organization token acts as nobody; Kim's token is Kim.
        assert!(search("assigned:me", &api.token).await.is_empty());
        assert_eq!(search("assigned:me", &kims_token).await, vec![a.clone()]);
        let r = api
            .get("projects/acme/web/issues/?query=assigned:%23team")
            .await;
        assert_eq!(r.status, 400, "{}", r.text());

        // Bulk: assign both, then clear both.
        let r = api
            .put(
                &format!("projects/acme/web/issues/?id={a}&id={b}"),
                json!({"assignedTo": kim.to_string()}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["assignedTo"]["id"], kim.to_string());
        assert_eq!(
            api.scalar(&format!(
                "SELECT COUNT(*) FROM issues WHERE assignee_id = {kim}"
            ))
            .await,
            2
        );
        let r = api
            .put(
                &format!("projects/acme/web/issues/?id={a}&id={b}"),
                json!({"assignedTo": ""}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["assignedTo"], Value::Null);
        assert_eq!(
            api.scalar("SELECT COUNT(*) FROM issues WHERE assignee_id IS NOT NULL")
                .await,
            0
        );
        let r = api
            .put(
                &format!("projects/acme/web/issues/?id={a}"),
                json!({"assignedTo": format!("user:{outsider}")}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let r = api
            .put(&format!("projects/acme/web/issues/?id={a}"), json!({}))
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
    }
}
