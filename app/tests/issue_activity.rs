//! An issue's timeline and comments, on SQLite and PostgreSQL, against the real
//! application over HTTP: status changes and assignments with who made them (a user's
//! session or token, or an organization token shown as the organization), regressions
//! found by the worker with their release, comments through Sentry's Web API and the issue
//! page (author edits, author or owner/admin deletes), isolation between organizations,
//! garbage and oversize input, and an XSS corpus rendered inert.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use faultline_app::accounts;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn engines() -> [&'static str; 2] {
    ["sqlite", "postgres"]
}

async fn spawn_on(engine: &str) -> TestApp {
    if engine == "sqlite" {
        return spawn_app(&[]).await;
    }
    let admin_url = faultline_core::db::testing::postgres_admin_url();
    let admin = faultline_core::db::connect_url(&admin_url)
        .await
        .expect("postgres");
    let name = format!("faultline_t_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin_url).expect("url");
    url.set_path(&name);
    spawn_app(&[("DATABASE_URL", url.as_str())]).await
}

/// A statement with `?` placeholders, numbered `$n` on PostgreSQL.
fn stmt(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    faultline_core::sql::stmt(app.db.get_database_backend(), sql, values)
}

async fn scalar(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
    app.db
        .query_one_raw(stmt(app, sql, values))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("number")
}

async fn user(app: &TestApp, email: &str) -> i64 {
    accounts::users::create(&app.db, email, PASSWORD, false)
        .await
        .expect("user")
}

async fn add_member(app: &TestApp, org: &str, user_id: i64, role: &str) {
    app.db
        .execute_raw(stmt(
            app,
            "INSERT INTO members (organization_id, user_id, role, created_at) \
             SELECT id, ?, ?, 0 FROM organizations WHERE slug = ?",
            vec![user_id.into(), role.into(), org.into()],
        ))
        .await
        .expect("member");
}

async fn org_id(app: &TestApp, slug: &str) -> i64 {
    scalar(
        app,
        "SELECT id FROM organizations WHERE slug = ?",
        vec![slug.into()],
    )
    .await
}

/// A token made on the settings page by `user_id` (acts as that user).
async fn user_token(app: &TestApp, org: &str, user_id: i64, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    accounts::tokens::create(&app.db, org_id(app, org).await, Some(user_id), &scopes, "t")
        .await
        .expect("token")
}

/// Sends an event through the store endpoint and waits until it is stored; returns the
/// issue id. Events with the same message group into one issue.
async fn send_event(app: &TestApp, message: &str, release: &str) -> i64 {
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({
        "event_id": event_id, "platform": "python", "level": "error",
        "release": release, "message": message,
    });
    let auth = format!("Sentry sentry_key={}, sentry_version=7", app.public_key);
    let answer = common::post(
        &format!("{}/api/{}/store/", app.url, app.project_id),
        &[
            ("X-Sentry-Auth", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = app
            .db
            .query_one_raw(stmt(
                app,
                "SELECT issue_id FROM events WHERE event_id = ?",
                vec![event_id.clone().into()],
            ))
            .await
            .expect("query");
        if let Some(row) = row {
            return row.try_get_by_index(0).expect("issue id");
        }
        assert!(Instant::now() < deadline, "event {event_id} was not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// A Web API call with a bearer token.
async fn api(app: &TestApp, method: &str, path: &str, token: &str, body: Option<&str>) -> Resp {
    let url = format!("{}/api/0/{}", app.url, path.trim_start_matches('/'));
    let (method, token) = (method.to_string(), token.to_string());
    let body = body.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json");
        let mut resp = match body {
            Some(b) => agent.run(req.body(b).expect("request")),
            None => agent.run(req.body(()).expect("request")),
        }
        .expect("sent");
        Resp {
            status: resp.status().as_u16(),
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        }
    })
    .await
    .expect("task")
}

async fn activities(app: &TestApp, issue: i64, token: &str) -> Vec<Value> {
    let r = api(
        app,
        "GET",
        &format!("issues/{issue}/activities/"),
        token,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["activity"].as_array().expect("activity").clone()
}

fn types(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|a| a["type"].as_str().expect("type").to_string())
        .collect()
}

/// Status changes and assignments are on the timeline, newest first, each with who did
/// it: a user's token acts as the user, an organization token (CLI) as the organization;
/// "first seen" closes the list; repeating a status adds nothing; bulk changes record one
/// entry per issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_records_status_changes_and_assignments_with_their_actor() {
    for engine in engines() {
        let app = spawn_on(engine).await;
        let kim = user(&app, "kim@example.com").await;
        add_member(&app, "acme", kim, "member").await;
        let kims = user_token(&app, "acme", kim, &["event:write"]).await;
        let ci = accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
            .await
            .expect("org token");
        let issue = send_event(&app, "timeline problem", "1.0").await;

        let put = |token: &str, body: Value| {
            let (app, token) = (&app, token.to_string());
            async move {
                let r = api(
                    app,
                    "PUT",
                    &format!("issues/{issue}/"),
                    &token,
                    Some(&body.to_string()),
                )
                .await;
                assert_eq!(r.status, 200, "{engine}: {}", r.body);
            }
        };
        put(&kims, json!({"status": "resolved"})).await;
        put(&kims, json!({"status": "resolved"})).await; // no change, no entry
        put(
            &ci,
            json!({"status": "ignored", "statusDetails": {"ignoreCount": 5}}),
        )
        .await;
        put(&kims, json!({"status": "unresolved"})).await;
        put(&kims, json!({"assignedTo": "kim@example.com"})).await;
        put(&ci, json!({"status": "resolvedInNextRelease"})).await;
        put(&ci, json!({"assignedTo": ""})).await;

        let list = activities(&app, issue, &kims).await;
        assert_eq!(
            types(&list),
            [
                "unassigned",
                "set_resolved_in_release",
                "assigned",
                "set_unresolved",
                "set_ignored",
                "set_resolved",
                "first_seen"
            ],
            "{engine}: {list:?}"
        );
        // Who: the organization token shows as the organization, the user's token as the user.
        assert!(list[0]["user"].is_null(), "{engine}");
        assert_eq!(list[0]["actor"]["name"], "acme", "{engine}: {}", list[0]);
        assert_eq!(list[1]["data"]["inNextRelease"], true, "{engine}");
        assert_eq!(
            list[1]["data"]["current_release_version"], "1.0",
            "{engine}"
        );
        assert_eq!(list[2]["user"]["email"], "kim@example.com", "{engine}");
        assert_eq!(list[2]["user"]["id"], kim.to_string(), "{engine}");
        assert_eq!(list[2]["data"]["assignee"], kim.to_string(), "{engine}");
        assert_eq!(list[2]["data"]["assigneeEmail"], "kim@example.com");
        assert_eq!(list[4]["data"]["ignoreCount"], 5, "{engine}");
        assert_eq!(list[5]["user"]["username"], "kim@example.com", "{engine}");
        // Sentry's shape: string ids, RFC 3339 times; the synthesized first seen is id 0.
        for a in &list {
            assert!(a["id"].is_string(), "{a}");
            assert!(
                a["dateCreated"].as_str().expect("date").ends_with('Z'),
                "{a}"
            );
            assert!(a["data"].is_object(), "{a}");
        }
        assert_eq!(list[6]["id"], "0");
        assert!(list[6]["user"].is_null());

        // Bulk: one entry per issue that changed.
        let second = send_event(&app, "another problem", "1.0").await;
        let r = api(
            &app,
            "PUT",
            &format!("projects/acme/web/issues/?id={issue}&id={second}"),
            &kims,
            Some(&json!({"status": "resolved"}).to_string()),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            types(&activities(&app, second, &kims).await)[0],
            "set_resolved"
        );
        assert_eq!(
            types(&activities(&app, issue, &kims).await)[0],
            "set_resolved"
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT COUNT(*) FROM issue_activity WHERE kind = 'set_resolved'",
                vec![]
            )
            .await,
            3,
            "{engine}"
        );
    }
}

/// A regression found by the worker's store is on the timeline with the release of the
/// event that reopened the issue, made by nobody (Faultline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regressions_from_the_worker_are_on_the_timeline() {
    for engine in engines() {
        let app = spawn_on(engine).await;
        let ci = accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
            .await
            .expect("org token");
        let issue = send_event(&app, "regressing problem", "1.0").await;
        let r = api(
            &app,
            "PUT",
            &format!("issues/{issue}/"),
            &ci,
            Some(r#"{"status": "resolved"}"#),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(send_event(&app, "regressing problem", "2.0").await, issue);
        let list = activities(&app, issue, &ci).await;
        assert_eq!(
            types(&list),
            ["set_regression", "set_resolved", "first_seen"],
            "{engine}"
        );
        assert_eq!(list[0]["data"]["version"], "2.0", "{engine}: {}", list[0]);
        assert!(list[0]["user"].is_null());
        assert!(list[0].get("actor").is_none(), "{}", list[0]);
        // More events of the now unresolved issue: no second regression.
        send_event(&app, "regressing problem", "2.0").await;
        assert_eq!(activities(&app, issue, &ci).await.len(), 3, "{engine}");
    }
}

/// Comments through Sentry's API: create (201, the activity JSON), edit by the author,
/// delete by the author or an admin but not another member; scopes, another
/// organization's issue (404), garbage and oversize bodies (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_through_the_web_api() {
    for engine in engines() {
        let app = spawn_on(engine).await;
        let (kim, lee, ada) = (
            user(&app, "kim@example.com").await,
            user(&app, "lee@example.com").await,
            user(&app, "ada@example.com").await,
        );
        add_member(&app, "acme", kim, "member").await;
        add_member(&app, "acme", lee, "member").await;
        add_member(&app, "acme", ada, "admin").await;
        let kims = user_token(&app, "acme", kim, &["event:write"]).await;
        let lees = user_token(&app, "acme", lee, &["event:write"]).await;
        let adas = user_token(&app, "acme", ada, &["event:admin"]).await;
        let reader = user_token(&app, "acme", kim, &["event:read"]).await;
        let releaser = user_token(&app, "acme", kim, &["project:releases"]).await;
        let ci = accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
            .await
            .expect("org token");
        accounts::orgs::create(&app.db, "other", None, None)
            .await
            .expect("org");
        let outsider = accounts::tokens::create_for_org(&app.db, "other", &[], "ci")
            .await
            .expect("token");
        let issue = send_event(&app, "commented problem", "1.0").await;
        let comments = format!("issues/{issue}/comments/");

        // Create.
        let r = api(
            &app,
            "POST",
            &comments,
            &kims,
            Some(r#"{"text": "Looking **into** it"}"#),
        )
        .await;
        assert_eq!(r.status, 201, "{engine}: {}", r.body);
        let note = r.json();
        assert_eq!(note["type"], "note");
        assert_eq!(note["data"]["text"], "Looking **into** it");
        assert_eq!(note["user"]["email"], "kim@example.com");
        let note_id = note["id"].as_str().expect("id").to_string();
        let one = format!("issues/{issue}/comments/{note_id}/");
        let list = activities(&app, issue, &reader).await;
        assert_eq!(types(&list), ["note", "first_seen"], "{engine}");
        assert_eq!(list[0]["id"], note_id.as_str());
        let r = api(&app, "GET", &format!("issues/{issue}/"), &reader, None).await;
        assert_eq!(r.json()["numComments"], 1, "{}", r.body);
        // The organization path works too.
        let r = api(
            &app,
            "GET",
            &format!("organizations/acme/issues/{issue}/activities/"),
            &reader,
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);

        // Garbage and limits: 400 with a detail, nothing stored.
        for body in [
            "{not json",
            "[]",
            "{}",
            r#"{"text": 5}"#,
            r#"{"text": null}"#,
            r#"{"text": ""}"#,
            r#"{"text": "  \n "}"#,
        ] {
            let r = api(&app, "POST", &comments, &kims, Some(body)).await;
            assert_eq!(r.status, 400, "{engine}: {body}: {}", r.body);
            assert!(r.json()["detail"].is_string(), "{}", r.body);
        }
        let max = "x".repeat(10_000);
        let r = api(
            &app,
            "POST",
            &comments,
            &kims,
            Some(&json!({"text": format!("{max}y")}).to_string()),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("10000"), "{}", r.body);
        let r = api(
            &app,
            "POST",
            &comments,
            &kims,
            Some(&json!({"text": max}).to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let long_id = r.json()["id"].as_str().expect("id").to_string();

        // Scopes: reading needs event:read, commenting event:write.
        let r = api(&app, "POST", &comments, &reader, Some(r#"{"text": "hi"}"#)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = api(
            &app,
            "GET",
            &format!("issues/{issue}/activities/"),
            &releaser,
            None,
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = api(
            &app,
            "GET",
            &format!("issues/{issue}/activities/"),
            "nope",
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.body);

        // Another organization's token: the issue and its comments do not exist.
        for (method, path, body) in [
            ("GET", format!("issues/{issue}/activities/"), None),
            ("POST", comments.clone(), Some(r#"{"text": "hi"}"#)),
            ("PUT", one.clone(), Some(r#"{"text": "hi"}"#)),
            ("DELETE", one.clone(), None),
            (
                "GET",
                format!("organizations/other/issues/{issue}/activities/"),
                None,
            ),
        ] {
            let r = api(&app, method, &path, &outsider, body).await;
            assert_eq!(r.status, 404, "{engine}: {method} {path}: {}", r.body);
        }
        // Missing rows: 404.
        for path in [
            format!("issues/{issue}/comments/999999/"),
            format!("issues/{issue}/comments/abc/"),
            "issues/999999/comments/1/".to_string(),
        ] {
            let r = api(&app, "PUT", &path, &kims, Some(r#"{"text": "hi"}"#)).await;
            assert_eq!(r.status, 404, "{path}: {}", r.body);
            let r = api(&app, "DELETE", &path, &adas, None).await;
            assert_eq!(r.status, 404, "{path}: {}", r.body);
        }
        let r = api(&app, "GET", "issues/999999/activities/", &kims, None).await;
        assert_eq!(r.status, 404, "{}", r.body);
        // A comment named under another issue of the organization: 404.
        let other_issue = send_event(&app, "second problem", "1.0").await;
        let r = api(
            &app,
            "DELETE",
            &format!("issues/{other_issue}/comments/{note_id}/"),
            &adas,
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.body);

        // Edit: the author only.
        let r = api(&app, "PUT", &one, &lees, Some(r#"{"text": "mine now"}"#)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = api(&app, "PUT", &one, &adas, Some(r#"{"text": "mine now"}"#)).await;
        assert_eq!(
            r.status, 403,
            "admins do not edit others' words: {}",
            r.body
        );
        let r = api(&app, "PUT", &one, &kims, Some(r#"{"text": ""}"#)).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let r = api(&app, "PUT", &one, &kims, Some("{garbage")).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let r = api(
            &app,
            "PUT",
            &one,
            &kims,
            Some(r#"{"text": "Fixed in 1.1"}"#),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["data"]["text"], "Fixed in 1.1");
        assert!(r.json()["dateUpdated"].is_string(), "{}", r.body);

        // Delete: not another member; the author; an admin any.
        let r = api(&app, "DELETE", &one, &lees, None).await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = api(&app, "DELETE", &one, &kims, None).await;
        assert_eq!(r.status, 204, "{}", r.body);
        let r = api(&app, "DELETE", &one, &kims, None).await;
        assert_eq!(r.status, 404, "gone: {}", r.body);
        let r = api(
            &app,
            "DELETE",
            &format!("issues/{issue}/comments/{long_id}/"),
            &adas,
            None,
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.body);
        assert_eq!(types(&activities(&app, issue, &kims).await), ["first_seen"]);

        // An organization token comments as the organization and may edit that comment.
        let r = api(
            &app,
            "POST",
            &comments,
            &ci,
            Some(r#"{"text": "deployed"}"#),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let note = r.json();
        assert!(note["user"].is_null());
        assert_eq!(note["actor"]["name"], "acme");
        let ci_one = format!(
            "issues/{issue}/comments/{}/",
            note["id"].as_str().expect("id")
        );
        let r = api(
            &app,
            "PUT",
            &ci_one,
            &ci,
            Some(r#"{"text": "deployed to prod"}"#),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = api(&app, "PUT", &ci_one, &kims, Some(r#"{"text": "no"}"#)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        // Deleting the issue deletes its timeline.
        let r = api(&app, "DELETE", &format!("issues/{issue}/"), &adas, None).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(
            scalar(
                &app,
                "SELECT COUNT(*) FROM issue_activity WHERE issue_id = ?",
                vec![issue.into()]
            )
            .await,
            0
        );
    }
}

// ---------------------------------------------------------------------------------------
// The issue page.

/// A browser without JavaScript: keeps the session cookie, never follows redirects.
struct Browser {
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    body: String,
    headers: HashMap<String, String>,
}

impl Page {
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.body[start..].find('"').expect("token end") + start;
        self.body[start..end].to_string()
    }
    /// The rendered comments (the HTML inside each `note-body`).
    fn notes(&self) -> Vec<&str> {
        self.body
            .split("<div class=\"note-body\">")
            .skip(1)
            .map(|s| s.split("</div>").next().unwrap_or(""))
            .collect()
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.url.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<String>) -> Page {
        let url = format!("{}{}", self.base, path);
        let cookie = self.cookie.clone();
        let method = method.to_string();
        let page = tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent();
            let mut resp = if method == "GET" {
                let mut req = agent.get(&url);
                if let Some(c) = &cookie {
                    req = req.header("Cookie", c);
                }
                req.call()
            } else {
                let mut req = agent
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded");
                if let Some(c) = &cookie {
                    req = req.header("Cookie", c);
                }
                req.send(form.unwrap_or_default().as_bytes())
            }
            .expect("request");
            let mut headers = HashMap::new();
            for (k, v) in resp.headers() {
                let v = v.to_str().unwrap_or_default().to_string();
                headers
                    .entry(k.as_str().to_string())
                    .and_modify(|old: &mut String| {
                        old.push('\n');
                        old.push_str(&v)
                    })
                    .or_insert(v);
            }
            Page {
                status: resp.status().as_u16(),
                body: resp.body_mut().read_to_string().unwrap_or_default(),
                headers,
            }
        })
        .await
        .expect("task");
        if let Some(set) = page.headers.get("set-cookie") {
            for line in set.lines() {
                if let Some(v) = line.split(';').next()
                    && v.starts_with("faultline_session=")
                {
                    self.cookie = Some(v.to_string());
                }
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            ser.append_pair(k, v);
        }
        self.send("POST", path, Some(ser.finish())).await
    }

    /// POSTs a form with this session's CSRF token.
    async fn submit(&mut self, action: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get("/account").await.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// A page script's call to the Web API with this session (writes carry the session's
    /// CSRF token in `X-CSRFToken` when given).
    async fn api(&mut self, method: &str, path: &str, csrf: Option<&str>, body: &str) -> Resp {
        let url = format!("{}/api/0/{}", self.base, path);
        let (method, body) = (method.to_string(), body.to_string());
        let cookie = self.cookie.clone();
        let csrf = csrf.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut req = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(&url)
                .header("Content-Type", "application/json");
            if let Some(c) = &cookie {
                req = req.header("Cookie", c);
            }
            if let Some(t) = &csrf {
                req = req.header("X-CSRFToken", t);
            }
            let mut resp = agent.run(req.body(body).expect("request")).expect("sent");
            Resp {
                status: resp.status().as_u16(),
                body: resp.body_mut().read_to_string().unwrap_or_default(),
            }
        })
        .await
        .expect("task")
    }

    async fn login(app: &TestApp, email: &str) -> Browser {
        let mut b = Browser::new(app);
        let token = b.get("/login").await.csrf();
        let page = b
            .post(
                "/login",
                &[("csrf", &token), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, 303, "login: {}", page.body);
        b
    }
}

/// The tags of an HTML fragment (`<a href="...">`, `</a>`).
fn tags(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .map_or(rest.len(), |e| start + e + 1);
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// The last comment's id on an issue.
async fn last_note(app: &TestApp, issue: i64) -> i64 {
    scalar(
        app,
        "SELECT MAX(id) FROM issue_activity WHERE issue_id = ? AND kind = 'note'",
        vec![issue.into()],
    )
    .await
}

/// The issue page shows the timeline with who did what; members comment, edit their own
/// comments and delete them; another member cannot, an admin can delete; CSRF-less and
/// another organization's posts are refused; hostile Markdown is rendered inert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_on_the_issue_page() {
    for engine in engines() {
        let app = spawn_on(engine).await;
        let (kim, lee, ada, eve) = (
            user(&app, "kim@example.com").await,
            user(&app, "lee@example.com").await,
            user(&app, "ada@example.com").await,
            user(&app, "eve@example.com").await,
        );
        add_member(&app, "acme", kim, "member").await;
        add_member(&app, "acme", lee, "member").await;
        add_member(&app, "acme", ada, "admin").await;
        accounts::orgs::create(&app.db, "other", None, None)
            .await
            .expect("org");
        add_member(&app, "other", eve, "owner").await;
        let issue = send_event(&app, "page problem", "1.0").await;
        let page_url = format!("/organizations/acme/issues/{issue}");
        let comments = format!("{page_url}/comments");

        let mut kims = Browser::login(&app, "kim@example.com").await;
        let r = kims
            .submit(&format!("{page_url}/status"), &[("action", "resolve")])
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let r = kims
            .submit(&comments, &[("text", "On it: **today**")])
            .await;
        assert_eq!(r.status, 303, "{engine}: {}", r.body);
        let page = kims.get(&page_url).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("id=\"activity\""), "timeline section");
        assert!(
            page.body
                .contains("<strong>kim@example.com</strong> resolved this issue"),
            "{engine}: {}",
            page.body
        );
        assert!(page.body.contains("first saw this issue"));
        assert_eq!(
            page.notes(),
            ["<p>On it: <strong>today</strong></p>\n"],
            "{engine}"
        );
        let note = last_note(&app, issue).await;
        assert!(
            page.body.contains(&format!("{comments}/{note}/edit")),
            "edit form"
        );
        assert!(
            page.body.contains(&format!("{comments}/{note}/delete")),
            "delete form"
        );

        // A page script's API call with the session acts as the session's user; without
        // the CSRF token it is anonymous.
        let csrf = kims.get("/account").await.csrf();
        let r = kims
            .api(
                "POST",
                &format!("issues/{issue}/comments/"),
                Some(&csrf),
                r#"{"text": "via the API"}"#,
            )
            .await;
        assert_eq!(r.status, 201, "{engine}: {}", r.body);
        assert_eq!(r.json()["user"]["email"], "kim@example.com");
        let via_api = r.json()["id"].as_str().expect("id").to_string();
        let r = kims
            .api(
                "POST",
                &format!("issues/{issue}/comments/"),
                None,
                r#"{"text": "x"}"#,
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
        let r = kims
            .api(
                "DELETE",
                &format!("issues/{issue}/comments/{via_api}/"),
                Some(&csrf),
                "",
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        // A visitor is sent to log in; nothing is posted.
        let mut visitor = Browser::new(&app);
        let token = visitor.get("/login").await.csrf();
        let r = visitor
            .post(&comments, &[("csrf", &token), ("text", "anon")])
            .await;
        assert_ne!(r.status, 200, "{}", r.body);
        assert!(
            r.status == 303
                && r.headers
                    .get("location")
                    .is_some_and(|l| l.starts_with("/login")),
            "{} {:?}",
            r.status,
            r.headers.get("location")
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT COUNT(*) FROM issue_activity WHERE kind = 'note'",
                vec![]
            )
            .await,
            1,
            "{engine}"
        );
        // Without the CSRF token nothing is posted.
        let r = kims.post(&comments, &[("text", "forged")]).await;
        assert_eq!(r.status, 403, "{}", r.body);
        // Empty and oversize comments are refused with a message.
        let r = kims.submit(&comments, &[("text", "   ")]).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let long = "x".repeat(10_001);
        let r = kims.submit(&comments, &[("text", &long)]).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("10000"), "{}", r.body);

        // Another member sees no edit or delete form and is refused if they post anyway.
        let mut lees = Browser::login(&app, "lee@example.com").await;
        let page = lees.get(&page_url).await;
        assert!(!page.body.contains(&format!("{comments}/{note}/edit")));
        assert!(!page.body.contains(&format!("{comments}/{note}/delete")));
        let r = lees
            .submit(&format!("{comments}/{note}/edit"), &[("text", "x")])
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = lees.submit(&format!("{comments}/{note}/delete"), &[]).await;
        assert_eq!(r.status, 403, "{}", r.body);
        // Another organization's owner: 404 for the page and every form.
        let mut eves = Browser::login(&app, "eve@example.com").await;
        assert_eq!(eves.get(&page_url).await.status, 404);
        for (action, fields) in [
            (comments.clone(), vec![("text", "hi")]),
            (format!("{comments}/{note}/edit"), vec![("text", "hi")]),
            (format!("{comments}/{note}/delete"), vec![]),
            (
                format!("/organizations/other/issues/{issue}/comments"),
                vec![("text", "hi")],
            ),
        ] {
            let r = eves.submit(&action, &fields).await;
            assert_eq!(r.status, 404, "{engine}: {action}: {}", r.body);
        }
        // Missing or garbage ids: 404.
        for action in [
            format!("{comments}/999999/edit"),
            format!("{comments}/abc/delete"),
            "/organizations/acme/issues/999999/comments".to_string(),
            "/organizations/acme/issues/abc/comments".to_string(),
        ] {
            let r = kims.submit(&action, &[("text", "hi")]).await;
            assert_eq!(r.status, 404, "{action}: {}", r.body);
        }

        // The author edits.
        let r = kims
            .submit(
                &format!("{comments}/{note}/edit"),
                &[("text", "Done in 1.1")],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let page = kims.get(&page_url).await;
        assert_eq!(page.notes(), ["<p>Done in 1.1</p>\n"]);
        assert!(page.body.contains("(edited)"));
        // An admin deletes it.
        let mut adas = Browser::login(&app, "ada@example.com").await;
        assert!(
            adas.get(&page_url)
                .await
                .body
                .contains(&format!("{comments}/{note}/delete"))
        );
        let r = adas.submit(&format!("{comments}/{note}/delete"), &[]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(kims.get(&page_url).await.notes().is_empty());

        // XSS corpus: every comment is shown, none does anything.
        let corpus = [
            "[x](javascript:alert(1))",
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "![y](x\" onerror=\"alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "[x](JaVaScRiPt:alert(1))",
            "<svg onload=alert(1)>",
            "<iframe src=\"https://evil.example\"></iframe>",
        ];
        for text in corpus {
            let r = kims.submit(&comments, &[("text", text)]).await;
            assert_eq!(r.status, 303, "{text}: {}", r.body);
        }
        let page = kims.get(&page_url).await;
        let notes = page.notes();
        assert_eq!(notes.len(), corpus.len(), "{engine}");
        // Raw HTML shows as text; no tag has a handler or a script URL, and only formatting
        // tags and links are left.
        for html in &notes {
            for tag in tags(html) {
                let lower = tag.to_lowercase();
                for bad in ["onerror", "onload", "javascript:", "data:", "src="] {
                    assert!(!lower.contains(bad), "{engine}: {bad} in {tag} of {html}");
                }
                let name: String = lower
                    .trim_start_matches(['<', '/'])
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                assert!(
                    ["p", "a", "code", "em", "strong"].contains(&name.as_str()),
                    "{tag} in {html}"
                );
            }
        }
        assert!(
            notes
                .iter()
                .any(|n| n.contains("&lt;script&gt;alert(1)&lt;/script&gt;")),
            "{notes:?}"
        );
        assert!(!page.body.contains("<script>alert(1)"));
        assert!(!page.body.contains("<img src=x"));
        // The CSP forbids inline script on this page too.
        let csp = page.headers.get("content-security-policy").expect("csp");
        assert!(csp.contains("script-src 'self'"), "{csp}");
    }
}
