//! JavaScript source maps on SQLite AND PostgreSQL: real esbuild output
//! (`tests/fixtures/sourcemaps`, regenerate with its `make.cjs`), frames from real Node
//! stack traces of that bundle, uploads written straight into `artifacts` / `blobs` the
//! way the `/api/0/` upload endpoints leave them.

use base64::Engine;
use faultline_core::db::testing;
use faultline_core::protocol::event::{Event, Frame};
use faultline_worker::pipeline::{Pipeline, prepare_event};
use faultline_worker::store;
use faultline_worker::symbolicate::{self, Status};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value};
use serde_json::json;
use sha1::{Digest, Sha1};

const APP_JS: &str = include_str!("fixtures/sourcemaps/app.min.js");
const APP_MAP: &str = include_str!("fixtures/sourcemaps/app.min.js.map");
const INDEXED_JS: &str = include_str!("fixtures/sourcemaps/indexed.min.js");
const INDEXED_MAP: &str = include_str!("fixtures/sourcemaps/indexed.min.js.map");
const DEBUG_ID: &str = "c0ffee00-1111-4222-8333-444455556666";

async fn exec(db: &DatabaseConnection, sql: &str, values: Vec<Value>) {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_owned()
    };
    db.execute_raw(Statement::from_sql_and_values(backend, &sql, values))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("integer")
}

/// An organization with one project and release `1.0`; returns (org, project).
async fn setup(db: &DatabaseConnection) -> (i64, i64) {
    exec(
        db,
        "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
        vec![],
    )
    .await;
    exec(
        db,
        "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'web', 'web', true, 90, 1000, 0, 0 FROM organizations WHERE slug = 'acme'",
        vec![],
    )
    .await;
    exec(
        db,
        "INSERT INTO releases (organization_id, version, date_created, status) \
         SELECT id, '1.0', 0, 'open' FROM organizations WHERE slug = 'acme'",
        vec![],
    )
    .await;
    (
        scalar(db, "SELECT id FROM organizations WHERE slug = 'acme'").await,
        scalar(db, "SELECT id FROM projects WHERE slug = 'web'").await,
    )
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex(&Sha1::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One uploaded file, as the upload endpoints store it.
struct Upload<'a> {
    kind: &'a str,
    name: &'a str,
    content: &'a [u8],
    debug_id: Option<&'a str>,
    release: Option<&'a str>,
    dist: Option<&'a str>,
    headers: serde_json::Value,
}

impl<'a> Upload<'a> {
    fn new(kind: &'a str, name: &'a str, content: &'a str) -> Self {
        Upload {
            kind,
            name,
            content: content.as_bytes(),
            debug_id: None,
            release: None,
            dist: None,
            headers: json!({}),
        }
    }
    fn debug_id(mut self, id: &'a str) -> Self {
        self.debug_id = Some(id);
        self
    }
    fn release(mut self, r: &'a str) -> Self {
        self.release = Some(r);
        self
    }
    fn dist(mut self, d: &'a str) -> Self {
        self.dist = Some(d);
        self
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers[k] = json!(v);
        self
    }
}

async fn upload(db: &DatabaseConnection, org: i64, u: Upload<'_>) {
    let sha1 = sha1_hex(u.content);
    let exists = scalar(
        db,
        &format!("SELECT COUNT(*) FROM blobs WHERE sha1 = '{sha1}'"),
    )
    .await;
    if exists == 0 {
        exec(
            db,
            "INSERT INTO blobs (sha1, size, data, created_at) VALUES (?, ?, ?, 0)",
            vec![
                sha1.clone().into(),
                (u.content.len() as i64).into(),
                u.content.to_vec().into(),
            ],
        )
        .await;
    }
    let release_id: Option<i64> = match u.release {
        Some(v) => Some(
            scalar(
                db,
                &format!(
                    "SELECT id FROM releases WHERE version = '{v}' AND organization_id = {org}"
                ),
            )
            .await,
        ),
        None => None,
    };
    exec(
        db,
        "INSERT INTO artifacts (organization_id, release_id, dist, name, kind, debug_id, sha1, size, headers, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        vec![
            org.into(),
            release_id.into(),
            u.dist.map(str::to_owned).into(),
            u.name.into(),
            u.kind.into(),
            u.debug_id.map(str::to_owned).into(),
            sha1.into(),
            (u.content.len() as i64).into(),
            u.headers.to_string().into(),
        ],
    )
    .await;
}

/// A frame as @sentry/node or @sentry/browser sends it.
fn frame(url: &str, function: Option<&str>, line: u64, col: u64) -> serde_json::Value {
    let mut f =
        json!({"filename": url, "abs_path": url, "lineno": line, "colno": col, "in_app": true});
    if let Some(name) = function {
        f["function"] = json!(name);
    }
    f
}

/// The real stack of `runCheckout("boom")` in app.min.js (Node 20), caller first.
fn boom_frames(url: &str) -> Vec<serde_json::Value> {
    vec![
        frame(url, Some("u"), 1, 566),
        frame(url, Some("e.checkout"), 1, 483),
        frame(url, Some("i"), 1, 144),
    ]
}

/// The real stack of `runCheckout("missing-price")`: through the node_modules helper.
fn missing_price_frames(url: &str) -> Vec<serde_json::Value> {
    vec![
        frame(url, Some("u"), 1, 566),
        frame(url, Some("e.checkout"), 1, 444),
        frame(url, Some("e.total"), 1, 311),
        frame(url, Some("c"), 1, 199),
        frame(url, None, 1, 346),
        frame(url, Some("i"), 1, 144),
    ]
}

fn js_event(frames: Vec<serde_json::Value>, extra: serde_json::Value) -> Event {
    let mut v = json!({
        "event_id": uuid::Uuid::new_v4().simple().to_string(),
        "platform": "javascript",
        "exception": {"values": [{
            "type": "Error", "value": "checkout failed: boom",
            "stacktrace": {"frames": frames},
            "mechanism": {"type": "onerror", "handled": false}
        }]}
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            obj.insert(k.clone(), val.clone());
        }
    }
    Event::from_value(v).expect("an event")
}

fn frames(event: &Event) -> &[Frame] {
    &event.exceptions()[0]
        .stacktrace
        .as_ref()
        .expect("stacktrace")
        .frames
}

fn status(frame: &Frame) -> Option<&str> {
    frame.data.as_ref()?.get("symbolicator_status")?.as_str()
}

async fn symbolicate_one(db: &DatabaseConnection, project: i64, event: Event) -> Event {
    let mut batch = vec![(project, event)];
    symbolicate::symbolicate_batch(db, &mut batch).await;
    batch.pop().expect("the event").1
}

/// The checks a user would make on the `runCheckout("boom")` event.
fn assert_boom_mapped(event: &Event, label: &str) {
    let f = frames(event);
    assert_eq!(f.len(), 3, "{label}");
    let top = &f[2];
    assert_eq!(status(top), Some("symbolicated"), "{label}: {top:?}");
    assert!(
        top.filename
            .as_deref()
            .unwrap_or("")
            .ends_with("src/util.js"),
        "{label}: {top:?}"
    );
    assert_eq!(top.lineno, Some(11), "{label}");
    assert_eq!(top.colno, Some(9), "{label}");
    assert_eq!(top.function.as_deref(), Some("explode"), "{label}");
    assert_eq!(
        top.context_line.as_deref(),
        Some("  throw new Error(message);"),
        "{label}"
    );
    assert_eq!(
        top.pre_context.last().map(String::as_str),
        Some("  const message = \"checkout failed: \" + reason;"),
        "{label}"
    );
    assert_eq!(
        top.post_context.first().map(String::as_str),
        Some("}"),
        "{label}"
    );
    let checkout = &f[1];
    assert!(
        checkout
            .filename
            .as_deref()
            .unwrap_or("")
            .ends_with("src/cart.js"),
        "{label}"
    );
    assert_eq!(checkout.lineno, Some(28), "{label}: {checkout:?}");
    assert_eq!(
        checkout.context_line.as_deref(),
        Some("      explode(reason);"),
        "{label}"
    );
    let entry = &f[0];
    assert!(
        entry
            .filename
            .as_deref()
            .unwrap_or("")
            .ends_with("src/index.js"),
        "{label}"
    );
    assert_eq!(entry.function.as_deref(), Some("runCheckout"), "{label}");
    assert_eq!(entry.lineno, Some(7), "{label}");
    // The SDK's frames are kept as the raw stack trace.
    let raw = event.exceptions()[0]
        .raw_stacktrace
        .as_ref()
        .expect("raw_stacktrace kept");
    assert_eq!(raw.frames[2].function.as_deref(), Some("i"), "{label}");
    assert_eq!(raw.frames[2].colno, Some(144), "{label}");
    assert!(
        raw.frames[2]
            .abs_path
            .as_deref()
            .unwrap_or("")
            .contains(".js")
    );
    assert_eq!(raw.frames[2].lineno, Some(1), "{label}");
}

#[tokio::test]
async fn debug_ids_map_real_esbuild_frames() {
    for (label, db) in testing::both().await.expect("databases") {
        let (org, project) = setup(&db).await;
        upload(
            &db,
            org,
            Upload::new("minified_source", "~/app.min.js", APP_JS).debug_id(DEBUG_ID),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new("source_map", "~/app.min.js.map", APP_MAP).debug_id(DEBUG_ID),
        )
        .await;
        let url = "/srv/shop/dist/app.min.js";
        let event = js_event(
            boom_frames(url),
            json!({"platform": "node", "debug_meta": {"images": [
                {"type": "sourcemap", "code_file": url, "debug_id": DEBUG_ID.to_uppercase()}
            ]}}),
        );
        let event = symbolicate_one(&db, project, event).await;
        assert_boom_mapped(&event, label);
        let top = &frames(&event)[2];
        let data = top.data.as_ref().expect("data");
        assert_eq!(data["resolved_with"], "debug-id", "{label}");
        assert_eq!(data["sourcemap"], "~/app.min.js.map", "{label}");
        assert!(
            event.errors.iter().all(|e| !e.ty.starts_with("js_")),
            "{label}: {:?}",
            event.errors
        );
    }
}

#[tokio::test]
async fn release_and_url_candidates_find_the_map_by_header_and_comment() {
    for (label, db) in testing::both().await.expect("databases") {
        let (org, project) = setup(&db).await;
        // Named with `~` and a header, as `sentry-cli releases files upload-sourcemaps` does.
        upload(
            &db,
            org,
            Upload::new("minified_source", "~/static/app.min.js", APP_JS)
                .release("1.0")
                .header("Sourcemap", "app.min.js.map"),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new("source_map", "~/static/app.min.js.map", APP_MAP).release("1.0"),
        )
        .await;
        let url = "https://shop.example.com/static/app.min.js?v=3#top";
        let event = js_event(boom_frames(url), json!({"release": "1.0"}));
        let event = symbolicate_one(&db, project, event).await;
        assert_boom_mapped(&event, label);
        assert_eq!(
            frames(&event)[2].abs_path.as_deref(),
            Some("~/static/src/util.js"),
            "{label}"
        );
        assert_eq!(
            frames(&event)[2].data.as_ref().expect("data")["resolved_with"],
            "release"
        );

        // Full-URL names, a dist, and the map found through the sourceMappingURL comment
        // (no header), relative to the file's URL.
        upload(
            &db,
            org,
            Upload::new(
                "minified_source",
                "https://cdn.example.com/js/app.min.js",
                APP_JS,
            )
            .release("1.0")
            .dist("web"),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new(
                "source_map",
                "https://cdn.example.com/js/app.min.js.map",
                APP_MAP,
            )
            .release("1.0")
            .dist("web"),
        )
        .await;
        let url = "https://cdn.example.com/js/app.min.js";
        let event = js_event(boom_frames(url), json!({"release": "1.0", "dist": "web"}));
        let event = symbolicate_one(&db, project, event).await;
        assert_boom_mapped(&event, label);
        assert_eq!(
            frames(&event)[2].abs_path.as_deref(),
            Some("https://cdn.example.com/js/src/util.js"),
            "{label}"
        );
        // Another dist has no files.
        let event = js_event(boom_frames(url), json!({"release": "1.0", "dist": "ios"}));
        let event = symbolicate_one(&db, project, event).await;
        assert_eq!(
            status(&frames(&event)[2]),
            Some("no_release_artifact"),
            "{label}"
        );
    }
}

#[tokio::test]
async fn node_modules_frames_are_not_in_app_and_names_come_from_scopes() {
    let db = testing::sqlite().await.expect("sqlite");
    let (org, project) = setup(&db).await;
    upload(
        &db,
        org,
        Upload::new("minified_source", "~/app.min.js", APP_JS).release("1.0"),
    )
    .await;
    upload(
        &db,
        org,
        Upload::new("source_map", "~/app.min.js.map", APP_MAP).release("1.0"),
    )
    .await;
    let event = js_event(
        missing_price_frames("app:///app.min.js"),
        json!({"release": "1.0"}),
    );
    let event = symbolicate_one(&db, project, event).await;
    let f = frames(&event);
    assert!(
        f.iter().all(|f| status(f) == Some("symbolicated")),
        "{f:#?}"
    );
    let sum_by = &f[3];
    assert_eq!(
        sum_by.filename.as_deref(),
        Some("src/node_modules/tiny-lib/index.js")
    );
    assert_eq!(sum_by.function.as_deref(), Some("sumBy"));
    assert_eq!(sum_by.in_app, Some(false));
    assert_eq!(
        sum_by.context_line.as_deref(),
        Some("    total += pick(item);")
    );
    let callback = &f[4];
    assert_eq!(callback.filename.as_deref(), Some("src/cart.js"));
    assert_eq!(callback.in_app, Some(true));
    assert_eq!(
        callback.context_line.as_deref(),
        Some("        explode(\"no price for \" + item.name);")
    );
    assert_eq!(f[5].function.as_deref(), Some("explode"));
}

#[tokio::test]
async fn index_maps_with_sections_work() {
    let db = testing::sqlite().await.expect("sqlite");
    let (org, project) = setup(&db).await;
    upload(
        &db,
        org,
        Upload::new("minified_source", "~/indexed.min.js", INDEXED_JS).release("1.0"),
    )
    .await;
    upload(
        &db,
        org,
        Upload::new("source_map", "~/indexed.min.js.map", INDEXED_MAP).release("1.0"),
    )
    .await;
    let url = "http://localhost:8080/indexed.min.js";
    // `buildReport([{}])` throws in the second section; `runCheckout("x")` in the first.
    let event = js_event(
        vec![frame(url, Some("n"), 2, 30), frame(url, None, 2, 45)],
        json!({"release": "1.0"}),
    );
    let event = symbolicate_one(&db, project, event).await;
    let f = frames(&event);
    assert_eq!(f[1].filename.as_deref(), Some("src/report.js"), "{f:#?}");
    assert_eq!(f[1].lineno, Some(3));
    assert_eq!(
        f[1].context_line.as_deref(),
        Some("  const lines = rows.map((row) => row.label.toUpperCase());")
    );
    assert_eq!(f[0].function.as_deref(), Some("buildReport"));
    let event = js_event(boom_frames(url), json!({"release": "1.0"}));
    let event = symbolicate_one(&db, project, event).await;
    assert_eq!(frames(&event)[2].filename.as_deref(), Some("src/util.js"));
    assert_eq!(frames(&event)[2].lineno, Some(11));
}

#[tokio::test]
async fn inline_data_url_maps_work() {
    let db = testing::sqlite().await.expect("sqlite");
    let (org, project) = setup(&db).await;
    let inline = APP_JS.replace(
        "//# sourceMappingURL=app.min.js.map",
        &format!(
            "//# sourceMappingURL=data:application/json;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(APP_MAP)
        ),
    );
    upload(
        &db,
        org,
        Upload::new("minified_source", "~/inline.min.js", &inline).release("1.0"),
    )
    .await;
    let event = js_event(
        boom_frames("https://ex.com/inline.min.js"),
        json!({"release": "1.0"}),
    );
    let event = symbolicate_one(&db, project, event).await;
    assert_boom_mapped(&event, "inline");
    assert_eq!(frames(&event)[2].abs_path.as_deref(), Some("~/src/util.js"));
}

#[tokio::test]
async fn frames_without_a_map_say_why() {
    for (label, db) in testing::both().await.expect("databases") {
        let (org, project) = setup(&db).await;
        let url = "https://ex.com/app.min.js";
        // Nothing to look up by.
        let event = symbolicate_one(&db, project, js_event(boom_frames(url), json!({}))).await;
        assert!(
            frames(&event)
                .iter()
                .all(|f| status(f) == Some("no_debug_id")),
            "{label}"
        );
        assert_eq!(
            frames(&event)[2].function.as_deref(),
            Some("i"),
            "{label}: values kept"
        );
        assert_eq!(frames(&event)[2].colno, Some(144));
        assert!(event.exceptions()[0].raw_stacktrace.is_none());
        // A debug id nobody uploaded.
        let event = js_event(
            boom_frames(url),
            json!({"debug_meta": {"images": [{"type": "sourcemap", "code_file": url, "debug_id": DEBUG_ID}]}}),
        );
        let event = symbolicate_one(&db, project, event).await;
        assert_eq!(
            status(&frames(&event)[0]),
            Some("debug_id_not_found"),
            "{label}"
        );
        assert!(
            event.errors.iter().any(|e| e.ty == "js_no_source"),
            "{label}"
        );
        // A release without that file.
        let event = symbolicate_one(
            &db,
            project,
            js_event(boom_frames(url), json!({"release": "1.0"})),
        )
        .await;
        let top = &frames(&event)[2];
        assert_eq!(status(top), Some("no_release_artifact"), "{label}");
        let message = top.data.as_ref().expect("data")["symbolicator_message"]
            .as_str()
            .unwrap_or("");
        assert!(message.contains("~/app.min.js"), "{label}: {message}");
        // The minified file without any map reference.
        upload(
            &db,
            org,
            Upload::new(
                "minified_source",
                "~/bare.js",
                "function a(){throw new Error}a();\n",
            )
            .release("1.0"),
        )
        .await;
        let event = symbolicate_one(
            &db,
            project,
            js_event(
                vec![frame("https://ex.com/bare.js", Some("a"), 1, 14)],
                json!({"release": "1.0"}),
            ),
        )
        .await;
        assert_eq!(
            status(&frames(&event)[0]),
            Some("missing_sourcemap"),
            "{label}"
        );
        // A map named but never uploaded.
        upload(
            &db,
            org,
            Upload::new(
                "minified_source",
                "~/named.js",
                "function a(){throw new Error}a();\n//# sourceMappingURL=named.js.map\n",
            )
            .release("1.0"),
        )
        .await;
        let event = symbolicate_one(
            &db,
            project,
            js_event(
                vec![frame("https://ex.com/named.js", Some("a"), 1, 14)],
                json!({"release": "1.0"}),
            ),
        )
        .await;
        let f = &frames(&event)[0];
        assert_eq!(status(f), Some("missing_sourcemap"), "{label}");
        assert!(
            f.data.as_ref().expect("data")["symbolicator_message"]
                .as_str()
                .unwrap_or("")
                .contains("~/named.js.map")
        );
    }
}

/// Garbage maps and positions: the event is still prepared and stored, frames unmapped
/// with the reason, never a panic.
#[tokio::test]
async fn garbage_maps_leave_frames_unmapped_with_the_reason() {
    let db = testing::sqlite().await.expect("sqlite");
    let (org, project) = setup(&db).await;
    let truncated = &APP_MAP[..APP_MAP.len() / 2];
    // Mappings shifted by junk still decode, but point nowhere the frame is.
    let shifted = APP_MAP.replacen("\"mappings\": \"", "\"mappings\": \"!!!@@", 1);
    let bad_segment = r#"{"version":3,"sources":["a.js"],"names":[],"mappings":"AA"}"#;
    let vlq_overflow =
        r#"{"version":3,"sources":["a.js"],"names":[],"mappings":"gggggggggggggggggggA"}"#;
    let bad_source_ref = r#"{"version":3,"sources":["a.js"],"names":[],"mappings":"AAAA,CCAA"}"#;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let unresolved_section =
        r#"{"version":3,"sections":[{"offset":{"line":0,"column":0},"url":"other.map"}]}"#;
    let corpus: Vec<(&str, String, &str)> = vec![
        (
            "not-json",
            "<html>502 Bad Gateway</html>".into(),
            "malformed_sourcemap",
        ),
        ("truncated", truncated.into(), "malformed_sourcemap"),
        ("shifted-mappings", shifted, "invalid_location"),
        ("bad-segment", bad_segment.into(), "malformed_sourcemap"),
        ("vlq-overflow", vlq_overflow.into(), "malformed_sourcemap"),
        (
            "bad-source-ref",
            bad_source_ref.into(),
            "malformed_sourcemap",
        ),
        ("empty-object", "{}".into(), "malformed_sourcemap"),
        ("deep-json", deep, "malformed_sourcemap"),
        (
            "binary",
            String::from_utf8_lossy(&[0xff, 0xfe, 0, 1, 2, 0x80]).into_owned(),
            "malformed_sourcemap",
        ),
        (
            "unresolved-section",
            unresolved_section.into(),
            "malformed_sourcemap",
        ),
        (
            "no-sources-content",
            APP_MAP.replace("\"sourcesContent\"", "\"x_ignored\""),
            "symbolicated",
        ),
    ];
    for (name, map, expected) in corpus {
        let js = format!("{APP_JS}// {name}\n");
        upload(
            &db,
            org,
            Upload::new("minified_source", &format!("~/{name}.js"), &js)
                .release("1.0")
                .header("Sourcemap", &format!("{name}.js.map")),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new("source_map", &format!("~/{name}.js.map"), &map).release("1.0"),
        )
        .await;
        let url = format!("https://ex.com/{name}.js");
        let mut event = js_event(boom_frames(&url), json!({"release": "1.0"}));
        event = symbolicate_one(&db, project, event).await;
        let top = &frames(&event)[2];
        assert_eq!(status(top), Some(expected), "{name}: {top:?}");
        if expected != "symbolicated" {
            assert_eq!(
                top.function.as_deref(),
                Some("i"),
                "{name}: minified values kept"
            );
            assert!(
                event.errors.iter().any(|e| e.ty == "js_invalid_source" || e.ty == "js_invalid_sourcemap_location"),
                "{name}: {:?}",
                event.errors
            );
        } else {
            assert_eq!(top.lineno, Some(11), "{name}");
            assert_eq!(top.context_line, None, "{name}: no source lines to show");
        }
        let prepared = prepare_event(project, &mut event).expect("prepared");
        store::store_batch(&db, &[prepared]).await.expect("stored");
    }
    // Positions outside the file or the map.
    upload(
        &db,
        org,
        Upload::new("minified_source", "~/app.min.js", APP_JS).release("1.0"),
    )
    .await;
    upload(
        &db,
        org,
        Upload::new("source_map", "~/app.min.js.map", APP_MAP).release("1.0"),
    )
    .await;
    let url = "https://ex.com/app.min.js";
    for (line, col) in [(50, 1), (1, 100_000), (u64::MAX, u64::MAX), (2, 1)] {
        let event = js_event(
            vec![frame(url, Some("i"), line, col)],
            json!({"release": "1.0"}),
        );
        let event = symbolicate_one(&db, project, event).await;
        let f = &frames(&event)[0];
        assert_eq!(status(f), Some("invalid_location"), "{line}:{col}: {f:?}");
        assert_eq!(f.lineno, Some(line));
        assert!(
            event
                .errors
                .iter()
                .any(|e| e.ty == "js_invalid_sourcemap_location")
        );
    }
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM events").await, 11);
}

#[tokio::test]
async fn a_hot_map_is_parsed_once() {
    let db = testing::sqlite().await.expect("sqlite");
    let (org, project) = setup(&db).await;
    // Content of its own, so no other test has cached it.
    let map = APP_MAP.replacen("{", "{\"x_hot_map_test\": 1,", 1);
    upload(
        &db,
        org,
        Upload::new("minified_source", "~/hot.js", APP_JS)
            .release("1.0")
            .header("Sourcemap", "hot.js.map"),
    )
    .await;
    upload(
        &db,
        org,
        Upload::new("source_map", "~/hot.js.map", &map).release("1.0"),
    )
    .await;
    let url = "https://ex.com/hot.js";
    let mut batch: Vec<(i64, Event)> = (0..50)
        .map(|_| {
            (
                project,
                js_event(boom_frames(url), json!({"release": "1.0"})),
            )
        })
        .collect();
    symbolicate::symbolicate_batch(&db, &mut batch).await;
    assert!(batch.iter().all(|(_, e)| frames(e)[2].lineno == Some(11)));
    // With the stored bytes gone, only the cache can still map the next batch.
    exec(
        &db,
        "DELETE FROM blobs WHERE sha1 = ?",
        vec![sha1_hex(map.as_bytes()).into()],
    )
    .await;
    let event = symbolicate_one(
        &db,
        project,
        js_event(boom_frames(url), json!({"release": "1.0"})),
    )
    .await;
    assert_boom_mapped(&event, "cached");
}

/// An event stored before its map was uploaded is mapped when viewed.
#[tokio::test]
async fn resymbolicate_maps_events_stored_before_the_upload() {
    for (label, db) in testing::both().await.expect("databases") {
        let (org, project) = setup(&db).await;
        let pipeline = Pipeline::start(db.clone());
        let url = "https://shop.example.com/assets/late.min.js";
        let payload = json!({
            "event_id": uuid::Uuid::new_v4().simple().to_string(),
            "platform": "javascript",
            "release": "1.0",
            "exception": {"values": [{"type": "Error", "value": "checkout failed: boom",
                "stacktrace": {"frames": boom_frames(url)}}]}
        });
        let job = faultline_core::jobs::EventJob {
            project_id: project,
            event_id: payload["event_id"].as_str().unwrap_or_default().to_owned(),
            received_ms: chrono::Utc::now().timestamp_millis(),
            client_ip: None,
            sent_at: None,
            envelope_sdk: None,
            kind: faultline_core::jobs::PayloadKind::Event,
            payload: Some(serde_json::value::to_raw_value(&payload).expect("raw")),
            payload_zstd: None,
            traceparent: None,
            payload_lz4: None,
            decode_error: None,
        };
        pipeline.process(job).await.expect("stored");
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT payload FROM events",
            ))
            .await
            .expect("query")
            .expect("the event");
        let stored: Vec<u8> = row.try_get_by_index(0).expect("payload");
        let stored = zstd::decode_all(&stored[..]).expect("zstd");
        let event: Event =
            Event::from_value(serde_json::from_slice(&stored).expect("json")).expect("event");
        assert_eq!(
            status(&frames(&event)[2]),
            Some("no_release_artifact"),
            "{label}"
        );
        assert!(symbolicate::has_unmapped_frames(&event));

        upload(
            &db,
            org,
            Upload::new("minified_source", "~/assets/late.min.js", APP_JS)
                .release("1.0")
                .header("Sourcemap", "late.min.js.map"),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new("source_map", "~/assets/late.min.js.map", APP_MAP).release("1.0"),
        )
        .await;
        let (json, reports) = symbolicate::resymbolicate_json(&db, org, &stored).await;
        let event = Event::from_value(serde_json::from_slice(&json).expect("json")).expect("event");
        assert_boom_mapped(&event, label);
        assert!(!symbolicate::has_unmapped_frames(&event));
        assert_eq!(reports.len(), 3);
        assert!(
            reports.iter().all(|r| r.status == Status::Symbolicated),
            "{reports:?}"
        );
        assert_eq!(reports[2].path, "exception.values.0.stacktrace.frames.2");
        // Twice is harmless: it starts again from the raw frames.
        let mut again = event.clone();
        let reports = symbolicate::resymbolicate(&db, org, &mut again).await;
        assert_eq!(again, event);
        assert_eq!(reports.len(), 3);
        // Another organization's uploads are not used.
        let mut other =
            Event::from_value(serde_json::from_slice(&stored).expect("json")).expect("event");
        let reports = symbolicate::resymbolicate(&db, org + 1000, &mut other).await;
        assert!(
            reports
                .iter()
                .all(|r| r.status == Status::NoReleaseArtifact),
            "{reports:?}"
        );
        // Not an event at all.
        let (same, reports) = symbolicate::resymbolicate_json(&db, org, b"not json").await;
        assert_eq!(same, b"not json");
        assert!(reports.is_empty());
    }
}

/// Events without JavaScript frames never reach the lookup.
#[test]
fn only_javascript_frames_want_symbolication() {
    let python = Event::from_value(
        json!({"platform": "python", "exception": {"values": [{"type": "E",
        "stacktrace": {"frames": [{"filename": "a.py", "abs_path": "/a.py", "lineno": 3}]}}]}}),
    )
    .expect("event");
    assert!(!symbolicate::wants(&python));
    let message =
        Event::from_value(json!({"platform": "javascript", "message": "hi"})).expect("event");
    assert!(!symbolicate::wants(&message));
    let native = js_event(
        vec![
            json!({"filename": "native", "lineno": 1}),
            json!({"abs_path": "node:internal/x", "lineno": 3}),
        ],
        json!({}),
    );
    assert!(!symbolicate::wants(&native));
    assert!(symbolicate::wants(&js_event(
        boom_frames("https://ex.com/a.js"),
        json!({})
    )));
}

const SCOPES_JS: &str = include_str!("fixtures/sourcemaps/scopes.min.js");
const SCOPES_MAP: &str = include_str!("fixtures/sourcemaps/scopes.min.js.map");
const SCOPES_STACK: &str = include_str!("fixtures/sourcemaps/scopes.stack.json");

#[tokio::test]
async fn arrow_and_anonymous_functions_get_their_original_scope_names() {
    let db = testing::sqlite().await.expect("sqlite");
    let (org, project) = setup(&db).await;
    upload(
        &db,
        org,
        Upload::new("minified_source", "~/scopes.min.js", SCOPES_JS).release("1.0"),
    )
    .await;
    upload(
        &db,
        org,
        Upload::new("source_map", "~/scopes.min.js.map", SCOPES_MAP).release("1.0"),
    )
    .await;
    // Node's stack of the bundle (innermost first) as an SDK sends it (caller first).
    let stack: Vec<serde_json::Value> = serde_json::from_str(SCOPES_STACK).expect("stack");
    let url = "app:///scopes.min.js";
    let sent: Vec<serde_json::Value> = stack
        .iter()
        .rev()
        .map(|f| {
            frame(
                url,
                f["function"].as_str(),
                f["lineno"].as_u64().expect("line"),
                f["colno"].as_u64().expect("column"),
            )
        })
        .collect();
    let minified: Vec<Option<String>> = stack
        .iter()
        .rev()
        .map(|f| f["function"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        minified,
        [Some("Object.n"), Some("o.handleOrder"), Some("r")].map(|n| n.map(str::to_owned)),
        "the fixture's minified names (regenerated fixture?)"
    );
    // The caller frames alone: no call site below the top frame to borrow a name from.
    for frames_sent in [sent.clone(), vec![sent[1].clone()], vec![sent[2].clone()]] {
        let event = symbolicate_one(
            &db,
            project,
            js_event(frames_sent, json!({"release": "1.0"})),
        )
        .await;
        for f in frames(&event) {
            assert_eq!(status(f), Some("symbolicated"), "{f:?}");
            let expected = match f.lineno {
                Some(5) => "applyDiscount",
                Some(12) => "registry.handleOrder",
                Some(17) => "runScopes",
                other => panic!("unexpected line {other:?}: {f:?}"),
            };
            assert_eq!(f.function.as_deref(), Some(expected), "{f:?}");
        }
    }
}

#[tokio::test]
async fn uploaded_sources_give_context_when_the_map_has_no_sources_content() {
    for (engine, db) in [
        ("sqlite", testing::sqlite().await.expect("sqlite")),
        ("postgres", testing::postgres().await.expect("postgres")),
    ] {
        let (org, project) = setup(&db).await;
        // The same map without `sourcesContent` (as `esbuild --sources-content=false` writes).
        let mut map: serde_json::Value = serde_json::from_str(SCOPES_MAP).expect("map");
        map.as_object_mut()
            .expect("object")
            .remove("sourcesContent");
        let map = map.to_string();
        upload(
            &db,
            org,
            Upload::new("minified_source", "~/scopes.min.js", SCOPES_JS).release("1.0"),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new("source_map", "~/scopes.min.js.map", &map).release("1.0"),
        )
        .await;
        let stack: Vec<serde_json::Value> = serde_json::from_str(SCOPES_STACK).expect("stack");
        let top = &stack[0];
        let event = || {
            js_event(
                vec![frame(
                    "app:///scopes.min.js",
                    top["function"].as_str(),
                    top["lineno"].as_u64().expect("line"),
                    top["colno"].as_u64().expect("column"),
                )],
                json!({"release": "1.0"}),
            )
        };
        // Mapped, but no source line to show yet.
        let mapped = symbolicate_one(&db, project, event()).await;
        let f = &frames(&mapped)[0];
        assert_eq!(status(f), Some("symbolicated"), "{engine}: {f:?}");
        assert_eq!(f.lineno, Some(5), "{engine}");
        assert_eq!(f.context_line, None, "{engine}");

        // A `source` file of the same release, named as the frame's file, fills them in.
        // A source of another release must not.
        exec(
            &db,
            "INSERT INTO releases (organization_id, version, date_created, status) \
             SELECT id, '2.0', 0, 'open' FROM organizations WHERE slug = 'acme'",
            vec![],
        )
        .await;
        let text = include_str!("fixtures/sourcemaps/src/scopes.js");
        upload(
            &db,
            org,
            Upload::new(
                "source",
                "~/src/scopes.js",
                "wrong release\n".repeat(20).as_str(),
            )
            .release("2.0"),
        )
        .await;
        upload(
            &db,
            org,
            Upload::new("source", "~/src/scopes.js", text).release("1.0"),
        )
        .await;
        let mapped = symbolicate_one(&db, project, event()).await;
        let f = &frames(&mapped)[0];
        assert_eq!(status(f), Some("symbolicated"), "{engine}: {f:?}");
        assert_eq!(
            f.context_line.as_deref(),
            Some("    throw new Error(`discount too large for ${order.total}`);"),
            "{engine}: {f:?}"
        );
        assert_eq!(
            f.pre_context.last().map(String::as_str),
            Some("  if (order.total > 100) {"),
            "{engine}"
        );
        assert_eq!(
            f.post_context.first().map(String::as_str),
            Some("  }"),
            "{engine}"
        );
    }
}
