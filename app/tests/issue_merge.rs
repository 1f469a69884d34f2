//! Merging and unmerging issues, on SQLite and PostgreSQL: through the Web API as Sentry's
//! clients send it, through the pages as a member clicks it, and while events keep
//! arriving for the hashes involved (every event stored once, in the issue its hash maps
//! to, counters equal to the events).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestApp, spawn_app};
use faultline_core::issues::activity::Actor;
use faultline_core::issues::merge;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

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
        .expect("postgres is running");
    let name = format!("faultline_t_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin_url).expect("url");
    url.set_path(&name);
    spawn_app(&[("DATABASE_URL", url.as_str())]).await
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
        .try_get_by_index::<i64>(0)
        .expect("integer")
}

async fn text(db: &DatabaseConnection, sql: &str) -> String {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<String>(0)
        .expect("text")
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    let (method, url) = (method.to_string(), url.to_string());
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = match body {
            Some(b) => agent.run(
                req.header("Content-Type", "application/json")
                    .body(b.to_string().into_bytes())
                    .expect("request"),
            ),
            None => agent.run(req.body(()).expect("request")),
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
        let body = resp.body_mut().read_to_vec().unwrap_or_default();
        Resp {
            status,
            body,
            headers,
        }
    })
    .await
    .expect("request task")
}

/// The application with `acme` (projects `web` and `api`), `other` (project `site`), and
/// tokens: acme's default (event:write, no event:admin), acme's read-only, other's.
struct World {
    app: TestApp,
    token: String,
    read_only: String,
    other_token: String,
    api_project: (i64, String),
}

async fn world(engine: &str) -> World {
    let app = spawn_on(engine).await;
    let token = faultline_app::accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
        .await
        .expect("token");
    let read_only = faultline_app::accounts::tokens::create_for_org(
        &app.db,
        "acme",
        &["org:read project:read event:read".to_string()],
        "ro",
    )
    .await
    .expect("token");
    let api_project =
        faultline_app::accounts::projects::create(&app.db, "acme", "api", Some("python"))
            .await
            .expect("project");
    faultline_app::accounts::orgs::create(&app.db, "other", None, None)
        .await
        .expect("org");
    faultline_app::accounts::projects::create(&app.db, "other", "site", Some("python"))
        .await
        .expect("project");
    let other_token = faultline_app::accounts::tokens::create_for_org(&app.db, "other", &[], "ci")
        .await
        .expect("token");
    World {
        app,
        token,
        read_only,
        other_token,
        api_project,
    }
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}/api/0/{}", self.app.url, path.trim_start_matches('/'))
    }
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        call(method, &self.url(path), Some(&self.token), body).await
    }

    /// Sends an event with `fingerprint` (its own group) through ingest to project `web`
    /// (or `to`) and waits until the worker stored it; returns its issue id.
    async fn send(&self, fingerprint: &str, extra: Value, to: Option<(i64, &str)>) -> i64 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut event = json!({
            "event_id": id, "level": "error", "platform": "python",
            "fingerprint": [fingerprint],
            "exception": {"values": [{"type": "Boom", "value": fingerprint}]},
        });
        if let (Some(e), Value::Object(x)) = (event.as_object_mut(), extra) {
            e.extend(x);
        }
        let event = event.to_string();
        let body = format!(
            "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
            event.len()
        );
        let (project_id, key) = to.unwrap_or((self.app.project_id, &self.app.public_key));
        let r = common::post(
            &format!("{}/api/{project_id}/envelope/", self.app.url),
            &[(
                "X-Sentry-Auth",
                &format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=test/1.0"),
            )],
            body.into_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let sql = format!("SELECT COUNT(*) FROM events WHERE event_id = '{id}'");
        while scalar(&self.app.db, &sql).await == 0 {
            assert!(std::time::Instant::now() < deadline, "event not stored");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        scalar(
            &self.app.db,
            &format!("SELECT issue_id FROM events WHERE event_id = '{id}'"),
        )
        .await
    }

    async fn count(&self, sql: &str) -> i64 {
        scalar(&self.app.db, sql).await
    }

    async fn hash_of(&self, issue: i64) -> Vec<String> {
        let rows = self
            .app
            .db
            .query_all_raw(Statement::from_string(
                self.app.db.get_database_backend(),
                format!("SELECT hash FROM issue_hashes WHERE issue_id = {issue} ORDER BY id"),
            ))
            .await
            .expect("hashes");
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("hash"))
            .collect()
    }

    /// `times_seen` and `users_seen` of an issue, and its tag value counts for `key`.
    async fn tag(&self, issue: i64, key: &str, value: &str) -> i64 {
        self.count(&format!(
            "SELECT CAST(COALESCE(SUM(times_seen), 0) AS BIGINT) FROM issue_tag_values \
             WHERE issue_id = {issue} AND key = '{key}' AND value = '{value}'"
        ))
        .await
    }
}

fn color(c: &str, user: &str) -> Value {
    json!({"tags": {"color": c}, "user": {"id": user}})
}

/// The parent is the issue with the most events; events, hashes, counters and tag values
/// move to it; the children's ids redirect; new events of a child's hash land in the
/// parent. Unmerge splits a hash off with its events and recounts both issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_unmerge_through_the_web_api() {
    for engine in engines() {
        let w = world(engine).await;
        let a = w.send("group-a", color("red", "u1"), None).await;
        assert_eq!(w.send("group-a", color("red", "u2"), None).await, a);
        assert_eq!(w.send("group-a", color("red", "u1"), None).await, a);
        let b = w.send("group-b", color("blue", "u3"), None).await;
        let c = w.send("group-c", color("red", "u1"), None).await;
        assert_eq!(w.send("group-c", color("green", "u4"), None).await, c);
        let hash_b = w.hash_of(b).await.remove(0);

        // Bulk PUT as Sentry's UI sends it.
        let r = w
            .api(
                "PUT",
                &format!("projects/acme/web/issues/?id={b}&id={a}&id={c}"),
                Some(json!({"merge": 1})),
            )
            .await;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        assert_eq!(
            r.json(),
            json!({"merge": {"parent": a.to_string(), "children": [c.to_string(), b.to_string()]}}),
            "{engine}: the parent has the most events, children by events"
        );
        let issue = w.api("GET", &format!("issues/{a}/"), None).await.json();
        assert_eq!(issue["count"], json!("6"), "{engine}: {issue}");
        assert_eq!(issue["userCount"], json!(4), "{engine}: {issue}");
        assert_eq!(
            w.count(&format!("SELECT COUNT(*) FROM events WHERE issue_id = {a}"))
                .await,
            6
        );
        assert_eq!(
            w.count(&format!(
                "SELECT COUNT(*) FROM issues WHERE id IN ({b}, {c})"
            ))
            .await,
            0,
            "{engine}: children are deleted"
        );
        assert_eq!(w.tag(a, "color", "red").await, 4, "{engine}");
        assert_eq!(w.tag(a, "color", "blue").await, 1, "{engine}");
        assert_eq!(
            w.tag(a, "user", "id:u1").await + w.tag(a, "user", "u1").await,
            3
        );
        assert_eq!(w.hash_of(a).await.len(), 3, "{engine}");

        // A child's id redirects to the parent (API and page).
        let r = w.api("GET", &format!("issues/{b}/"), None).await;
        assert_eq!(r.status, 302, "{engine}: {}", r.text());
        assert_eq!(r.headers["location"], format!("/api/0/issues/{a}/"));
        let r = w
            .api("GET", &format!("organizations/acme/issues/{c}/"), None)
            .await;
        assert_eq!(r.status, 302, "{engine}");
        assert_eq!(
            r.headers["location"],
            format!("/api/0/organizations/acme/issues/{a}/")
        );
        // ... but not for another organization's token.
        let r = call(
            "GET",
            &w.url(&format!("issues/{b}/")),
            Some(&w.other_token),
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{engine}");

        // Hashes: Sentry's shape, each with its newest event.
        let r = w.api("GET", &format!("issues/{a}/hashes/"), None).await;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        let list = r.json();
        let list = list.as_array().expect("list");
        assert_eq!(list.len(), 3, "{engine}");
        for h in list {
            assert!(merge::is_hash(h["id"].as_str().expect("id")), "{h}");
            assert_eq!(h["mergedBySeer"], json!(false));
            assert!(h["latestEvent"]["eventID"].is_string(), "{engine}: {h}");
        }

        // A new event of a child's hash lands in the parent.
        assert_eq!(w.send("group-b", color("blue", "u3"), None).await, a);

        // Unmerge: DELETE needs event:admin (Sentry's rule for DELETE), PUT event:write.
        let path = format!("issues/{a}/hashes/?id={hash_b}");
        assert_eq!(w.api("DELETE", &path, None).await.status, 403, "{engine}");
        let r = w.api("PUT", &path, None).await;
        assert_eq!(r.status, 202, "{engine}: {}", r.text());
        let n = w
            .count(&format!(
                "SELECT issue_id FROM issue_hashes WHERE hash = '{hash_b}'"
            ))
            .await;
        assert_ne!(n, a);
        let split = w.api("GET", &format!("issues/{n}/"), None).await.json();
        assert_eq!(split["count"], json!("2"), "{engine}: {split}");
        assert_eq!(split["userCount"], json!(1), "{engine}: {split}");
        let parent = w.api("GET", &format!("issues/{a}/"), None).await.json();
        assert_eq!(parent["count"], json!("5"), "{engine}: {parent}");
        assert_eq!(parent["userCount"], json!(3), "{engine}: {parent}");
        assert_eq!(w.tag(n, "color", "blue").await, 2, "{engine}");
        assert_eq!(w.tag(a, "color", "blue").await, 0, "{engine}");
        assert_eq!(w.tag(a, "color", "red").await, 4, "{engine}");
        assert_eq!(
            w.count(&format!(
                "SELECT COUNT(*) FROM issue_tag_values WHERE issue_id = {a} AND key = 'color' AND value = 'blue'"
            ))
            .await,
            0,
            "{engine}: a value no event of the issue has any more is gone"
        );
        assert_eq!(
            w.count(&format!("SELECT COUNT(*) FROM events WHERE issue_id = {n}"))
                .await,
            2
        );
        // The timeline says so on both sides (Sentry's activity types).
        for (issue, kind) in [
            (a, "merge"),
            (a, "unmerge_source"),
            (n, "unmerge_destination"),
        ] {
            let r = w
                .api("GET", &format!("issues/{issue}/activities/"), None)
                .await;
            assert_eq!(r.status, 200, "{engine}: {}", r.text());
            let types: Vec<String> = r.json()["activity"]
                .as_array()
                .expect("activity")
                .iter()
                .filter_map(|e| e["type"].as_str().map(str::to_string))
                .collect();
            assert!(
                types.iter().any(|t| t == kind),
                "{engine}: {issue} {types:?}"
            );
        }
        // Future events of the hash go to the new issue.
        assert_eq!(w.send("group-b", color("blue", "u3"), None).await, n);

        // Garbage and refusals.
        for (path, want) in [
            (format!("issues/{n}/hashes/?id={hash_b}"), 400), // its only hash
            (format!("issues/{a}/hashes/?id=xyz"), 400),
            (format!("issues/{a}/hashes/"), 400),
            (format!("issues/{a}/hashes/?id={}", "f".repeat(32)), 400), // not its hash
            (format!("issues/999999/hashes/?id={hash_b}"), 404),
            (format!("issues/abc/hashes/?id={hash_b}"), 404),
        ] {
            let r = w.api("PUT", &path, None).await;
            assert_eq!(r.status, want, "{engine} {path}: {}", r.text());
            assert!(r.json()["detail"].is_string(), "{engine}: {}", r.text());
        }
        let r = call(
            "PUT",
            &w.url(&format!("issues/{a}/hashes/?id={}", w.hash_of(a).await[0])),
            Some(&w.other_token),
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{engine}: another organization's issue");
        let r = call(
            "GET",
            &w.url(&format!("issues/{a}/hashes/")),
            Some(&w.other_token),
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{engine}");
        let r = call(
            "PUT",
            &w.url(&format!("issues/{a}/hashes/?id={}", w.hash_of(a).await[0])),
            Some(&w.read_only),
            None,
        )
        .await;
        assert_eq!(r.status, 403, "{engine}: event:read cannot unmerge");

        for (body, query) in [
            (json!({"merge": "yes"}), format!("?id={a}&id={n}")),
            (json!({"merge": 1}), format!("?id={a}")),
            (json!({"merge": 1}), format!("?id={a}&id=banana")),
        ] {
            let r = w
                .api(
                    "PUT",
                    &format!("projects/acme/web/issues/{query}"),
                    Some(body),
                )
                .await;
            assert_eq!(r.status, 400, "{engine} {query}: {}", r.text());
        }
        let r = call(
            "PUT",
            &w.url(&format!("projects/acme/web/issues/?id={a}&id={n}")),
            Some(&w.read_only),
            Some(json!({"merge": 1})),
        )
        .await;
        assert_eq!(r.status, 403, "{engine}");
        // Another organization: its route does not reach acme's issues.
        let r = call(
            "PUT",
            &w.url(&format!("projects/other/site/issues/?id={a}&id={n}")),
            Some(&w.other_token),
            Some(json!({"merge": 1})),
        )
        .await;
        assert_eq!(r.status, 204, "{engine}: {}", r.text());
        let r = call(
            "PUT",
            &w.url(&format!("projects/acme/web/issues/?id={a}&id={n}")),
            Some(&w.other_token),
            Some(json!({"merge": 1})),
        )
        .await;
        assert_eq!(r.status, 404, "{engine}: {}", r.text());
        // Across projects of one organization: refused, nothing changed.
        let x = w
            .send(
                "group-x",
                json!({}),
                Some((w.api_project.0, w.api_project.1.as_str())),
            )
            .await;
        let r = w
            .api(
                "PUT",
                &format!("organizations/acme/issues/?id={a}&id={x}"),
                Some(json!({"merge": 1, "status": "resolved"})),
            )
            .await;
        assert_eq!(r.status, 400, "{engine}: {}", r.text());
        assert_eq!(
            text(
                &w.app.db,
                &format!("SELECT status FROM issues WHERE id = {a}")
            )
            .await,
            "unresolved",
            "{engine}: a refused merge changes nothing"
        );
        // Merge with a status change: both apply, to the one issue left.
        let r = w
            .api(
                "PUT",
                &format!("organizations/acme/issues/?id={a}&id={n}"),
                Some(json!({"merge": true, "status": "resolved"})),
            )
            .await;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        assert_eq!(r.json()["merge"]["parent"], json!(a.to_string()));
        assert_eq!(r.json()["status"], json!("resolved"));
        let back = w.api("GET", &format!("issues/{a}/"), None).await.json();
        assert_eq!(back["count"], json!("8"), "{engine}: {back}");
        assert_eq!(back["status"], json!("resolved"));
        // A redirect to a merged-away issue follows it along.
        let r = w.api("GET", &format!("issues/{b}/"), None).await;
        assert_eq!(r.headers["location"], format!("/api/0/issues/{a}/"));
    }
}

// ---------------------------------------------------------------------------------------
// Pages.

const PASSWORD: &str = "correct horse battery";

struct Browser {
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    body: String,
    location: String,
}

impl Page {
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.body[start..].find('"').expect("token end") + start;
        self.body[start..end].to_string()
    }
}

impl Browser {
    async fn send(&mut self, path: &str, form: Option<Vec<(String, String)>>) -> Page {
        let url = format!("{}{}", self.base, path);
        let cookie = self.cookie.clone();
        let (page, set_cookie) = tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent();
            let mut resp = match form {
                None => {
                    let mut req = agent.get(&url);
                    if let Some(c) = &cookie {
                        req = req.header("Cookie", c);
                    }
                    req.call()
                }
                Some(fields) => {
                    let mut ser = url::form_urlencoded::Serializer::new(String::new());
                    for (k, v) in &fields {
                        ser.append_pair(k, v);
                    }
                    let mut req = agent
                        .post(&url)
                        .header("Content-Type", "application/x-www-form-urlencoded");
                    if let Some(c) = &cookie {
                        req = req.header("Cookie", c);
                    }
                    req.send(ser.finish().as_bytes())
                }
            }
            .expect("request");
            let header = |name: &str| -> Vec<String> {
                resp.headers()
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or_default().to_string())
                    .collect()
            };
            let location = header("location").pop().unwrap_or_default();
            let set_cookie = header("set-cookie");
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            (
                Page {
                    status,
                    body,
                    location,
                },
                set_cookie,
            )
        })
        .await
        .expect("task");
        for line in set_cookie {
            if let Some(v) = line.split(';').next()
                && v.starts_with("faultline_session=")
            {
                self.cookie = Some(v.to_string());
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send(path, Some(fields)).await
    }

    /// Logs in as a new user who is a `role` of `org`.
    async fn member(app: &TestApp, email: &str, org: &str, role: &str) -> Browser {
        let user = faultline_app::accounts::users::create(&app.db, email, PASSWORD, false)
            .await
            .expect("user");
        let backend = app.db.get_database_backend();
        app.db
            .execute_raw(faultline_core::sql::stmt(
                backend,
                "INSERT INTO members (organization_id, user_id, role, created_at) \
                 SELECT id, ?, ?, 0 FROM organizations WHERE slug = ?",
                vec![user.into(), role.into(), org.into()],
            ))
            .await
            .expect("member");
        let mut b = Browser {
            base: app.url.clone(),
            cookie: None,
        };
        let csrf = b.get("/login").await.csrf();
        let page = b
            .post(
                "/login",
                &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, 303, "login: {}", page.body);
        b
    }
}

/// A member merges from the issues list and unmerges on the issue page, with the CSRF
/// token; a child's link leads to the parent; another organization's member and garbage
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_merge_and_unmerge_on_the_pages() {
    for engine in engines() {
        let w = world(engine).await;
        let a = w.send("page-a", color("red", "u1"), None).await;
        w.send("page-a", color("red", "u2"), None).await;
        let b = w.send("page-b", color("blue", "u3"), None).await;
        let c = w.send("page-c", json!({}), None).await;
        let mut kim = Browser::member(&w.app, "kim@example.com", "acme", "member").await;
        let list = kim.get("/organizations/acme/issues?query=").await;
        assert_eq!(list.status, 200, "{engine}");
        assert!(
            list.body.contains("value=\"merge\""),
            "{engine}: a Merge button"
        );
        let csrf = list.csrf();
        let (a_s, b_s, c_s) = (a.to_string(), b.to_string(), c.to_string());

        // Without the CSRF token nothing happens.
        let page = kim
            .post(
                "/organizations/acme/issues/bulk",
                &[("action", "merge"), ("issue", &a_s), ("issue", &b_s)],
            )
            .await;
        assert_eq!(page.status, 403, "{engine}");
        assert_eq!(
            w.count(&format!("SELECT COUNT(*) FROM issues WHERE id = {b}"))
                .await,
            1
        );
        // One issue is not a merge.
        let page = kim
            .post(
                "/organizations/acme/issues/bulk",
                &[("csrf", &csrf), ("action", "merge"), ("issue", &a_s)],
            )
            .await;
        assert_eq!(page.status, 400, "{engine}");
        assert!(
            page.body.contains("at least two"),
            "{engine}: {}",
            page.body
        );

        let page = kim
            .post(
                "/organizations/acme/issues/bulk",
                &[
                    ("csrf", &csrf),
                    ("action", "merge"),
                    ("issue", &b_s),
                    ("issue", &a_s),
                    ("issue", &c_s),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{engine}: {}", page.body);
        assert_eq!(
            page.location,
            format!("/organizations/acme/issues/{a}?done=merge")
        );
        assert_eq!(
            w.count(&format!("SELECT times_seen FROM issues WHERE id = {a}"))
                .await,
            4
        );
        // The child's page leads to the parent.
        let page = kim.get(&format!("/organizations/acme/issues/{b}")).await;
        assert_eq!(page.status, 303, "{engine}");
        assert_eq!(page.location, format!("/organizations/acme/issues/{a}"));

        // The issue page lists the fingerprints with checkboxes.
        let page = kim.get(&format!("/organizations/acme/issues/{a}")).await;
        assert_eq!(page.status, 200, "{engine}");
        assert!(page.body.contains("Merged fingerprints"), "{engine}");
        assert!(
            page.body.contains("merged 2 issues into this one"),
            "{engine}: the timeline shows the merge"
        );
        assert_eq!(page.body.matches("name=\"hash\"").count(), 3, "{engine}");
        let hash_b = text(
            &w.app.db,
            &format!(
                "SELECT primary_hash FROM events WHERE issue_id = {a} AND title LIKE '%page-b%'"
            ),
        )
        .await;
        let csrf = page.csrf();
        let unmerge = format!("/organizations/acme/issues/{a}/unmerge");
        for (bad, want) in [("xyz", 400), (&"0".repeat(32)[..], 400)] {
            let page = kim.post(&unmerge, &[("csrf", &csrf), ("hash", bad)]).await;
            assert_eq!(page.status, want, "{engine} {bad}");
        }
        let page = kim.post(&unmerge, &[("csrf", &csrf)]).await;
        assert_eq!(page.status, 400, "{engine}: nothing checked");
        let page = kim.post(&unmerge, &[("hash", &hash_b)]).await;
        assert_eq!(page.status, 403, "{engine}: no CSRF token");
        let page = kim
            .post(
                "/organizations/acme/issues/999999/unmerge",
                &[("csrf", &csrf), ("hash", &hash_b)],
            )
            .await;
        assert_eq!(page.status, 404, "{engine}");

        // Someone of another organization sees none of it.
        let mut eve = Browser::member(&w.app, "eve@example.com", "other", "owner").await;
        let eve_csrf = eve.get("/organizations/other/issues").await.csrf();
        let page = eve
            .post(&unmerge, &[("csrf", &eve_csrf), ("hash", &hash_b)])
            .await;
        assert_eq!(page.status, 404, "{engine}");
        let page = eve
            .post(
                "/organizations/acme/issues/bulk",
                &[
                    ("csrf", &eve_csrf),
                    ("action", "merge"),
                    ("issue", &a_s),
                    ("issue", &c_s),
                ],
            )
            .await;
        assert_eq!(page.status, 404, "{engine}");
        let page = eve.get(&format!("/organizations/acme/issues/{b}")).await;
        assert_eq!(
            page.status, 404,
            "{engine}: no redirect into another organization"
        );

        let page = kim
            .post(&unmerge, &[("csrf", &csrf), ("hash", &hash_b)])
            .await;
        assert_eq!(page.status, 303, "{engine}: {}", page.body);
        let n = w
            .count(&format!(
                "SELECT issue_id FROM issue_hashes WHERE hash = '{hash_b}'"
            ))
            .await;
        assert_ne!(n, a);
        assert_eq!(
            page.location,
            format!("/organizations/acme/issues/{n}?done=unmerged")
        );
        assert_eq!(
            w.count(&format!("SELECT times_seen FROM issues WHERE id = {n}"))
                .await,
            1
        );
        assert_eq!(
            w.count(&format!("SELECT times_seen FROM issues WHERE id = {a}"))
                .await,
            3
        );
        let page = kim.get(&page.location).await;
        assert_eq!(page.status, 200, "{engine}");
        assert!(page.body.contains("split off"), "{engine}");
    }
}

// ---------------------------------------------------------------------------------------
// Exact under concurrency.

/// Two writers keep storing batches of events for six hashes through the worker's store
/// (the same function the pipeline calls) while merges and unmerges of those hashes run.
/// Afterwards: every sent event is stored exactly once, in the issue its primary hash maps
/// to; every issue's counters equal its events; tag counts equal the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_and_unmerge_are_exact_while_events_arrive() {
    for (engine, db) in faultline_core::db::testing::both()
        .await
        .expect("databases")
    {
        let db = Arc::new(db);
        db.execute_unprepared(
            "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
        )
        .await
        .expect("org");
        db.execute_unprepared(
            "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, \
             max_events_per_issue, issue_counter, created_at) \
             SELECT id, 'web', 'web', true, 90, 100000, 0, 0 FROM organizations",
        )
        .await
        .expect("project");
        let org = scalar(&db, "SELECT id FROM organizations").await;
        let project = scalar(&db, "SELECT id FROM projects").await;
        let hashes: Vec<String> = (0..6).map(|i| format!("{:032x}", 0xabc0 + i)).collect();
        let event = move |hash: &str, n: usize| {
            let mut e = faultline_core::protocol::event::Event {
                event_id: Some(uuid::Uuid::new_v4()),
                timestamp: Some(chrono::Utc::now()),
                level: Some(faultline_core::protocol::event::Level::Error),
                platform: Some("python".into()),
                tags: vec![("n".into(), (n % 3).to_string())],
                ..Default::default()
            };
            e.fingerprint = Some(vec![hash.to_string()]);
            let mut p =
                faultline_worker::pipeline::prepare_event(project, &mut e).expect("prepare");
            p.hashes = vec![hash.to_string()];
            p
        };
        // One issue per hash to start with.
        let seed: Vec<_> = hashes.iter().map(|h| event(h, 0)).collect();
        faultline_worker::store::store_batch(&db, &seed)
            .await
            .expect("seed");
        let mut sent: HashMap<String, String> = seed
            .iter()
            .map(|e| (e.event_id.clone(), e.hashes[0].clone()))
            .collect();

        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..2 {
            let (db, stop, hashes) = (db.clone(), stop.clone(), hashes.clone());
            writers.push(tokio::spawn(async move {
                let mut mine: Vec<(String, String)> = Vec::new();
                let mut retries = 0;
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<_> = (0..10)
                        .map(|k| event(&hashes[(i + k + w) % hashes.len()], i + k))
                        .collect();
                    i += 10;
                    // A failed batch is retried as the pipeline would (the queue
                    // redelivers); exactly-once storage makes that safe.
                    loop {
                        match faultline_worker::store::store_batch(&db, &batch).await {
                            Ok(_) => break,
                            Err(e) => {
                                retries += 1;
                                assert!(retries < 50, "store keeps failing: {e}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    mine.extend(
                        batch
                            .iter()
                            .map(|e| (e.event_id.clone(), e.hashes[0].clone())),
                    );
                }
                (mine, retries)
            }));
        }

        let issue_of_hash = |h: String| {
            let db = db.clone();
            async move {
                scalar(
                    &db,
                    &format!("SELECT issue_id FROM issue_hashes WHERE hash = '{h}'"),
                )
                .await
            }
        };
        let tags = faultline_worker::tags::stored_event_tags;
        let mut merges = 0;
        let mut unmerges = 0;
        let started = std::time::Instant::now();
        for round in 0..6 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            // Merge the issues of hashes 0..3, then of all six.
            let mut ids: Vec<i64> = Vec::new();
            for h in &hashes[..3 + (round % 2) * 3] {
                ids.push(issue_of_hash(h.clone()).await);
            }
            ids.sort();
            ids.dedup();
            if ids.len() >= 2 {
                merge::merge(&db, org, &ids, &Actor::System)
                    .await
                    .expect("merge");
                merges += 1;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            // Split each hash off again, one at a time (an issue keeps its last one).
            for h in &hashes {
                let issue = issue_of_hash(h.clone()).await;
                let owned = scalar(
                    &db,
                    &format!("SELECT COUNT(*) FROM issue_hashes WHERE issue_id = {issue}"),
                )
                .await;
                if owned > 1 {
                    merge::unmerge(
                        &db,
                        org,
                        issue,
                        std::slice::from_ref(h),
                        &Actor::System,
                        &tags,
                    )
                    .await
                    .expect("unmerge")
                    .expect("issue exists");
                    unmerges += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut retries = 0;
        for w in writers {
            let (mine, r) = w.await.expect("writer");
            retries += r;
            sent.extend(mine);
        }
        let elapsed = started.elapsed();

        // Exactly once, in the issue its hash maps to.
        let total = scalar(&db, "SELECT COUNT(*) FROM events").await;
        assert_eq!(total as usize, sent.len(), "{engine}: every event once");
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT e.event_id, e.primary_hash, e.issue_id, h.issue_id AS mapped \
                 FROM events e LEFT JOIN issue_hashes h ON h.project_id = e.project_id AND h.hash = e.primary_hash",
            ))
            .await
            .expect("events");
        let mut seen = HashSet::new();
        for r in &rows {
            let id: String = r.try_get("", "event_id").expect("id");
            let hash: String = r.try_get("", "primary_hash").expect("hash");
            let issue: i64 = r.try_get("", "issue_id").expect("issue");
            let mapped: Option<i64> = r.try_get("", "mapped").expect("mapped");
            assert_eq!(
                sent.get(&id),
                Some(&hash),
                "{engine}: {id} was sent with its hash"
            );
            assert_eq!(Some(issue), mapped, "{engine}: {id} is where its hash maps");
            seen.insert(id);
        }
        assert_eq!(seen.len(), sent.len(), "{engine}");
        // Counters and tag counts equal the events.
        let mismatched = scalar(
            &db,
            "SELECT COUNT(*) FROM issues i WHERE i.times_seen <> (SELECT COUNT(*) FROM events e WHERE e.issue_id = i.id) \
             OR i.first_seen <> (SELECT MIN(timestamp) FROM events e WHERE e.issue_id = i.id) \
             OR i.last_seen <> (SELECT MAX(timestamp) FROM events e WHERE e.issue_id = i.id) \
             OR (SELECT COALESCE(SUM(times_seen), 0) FROM issue_tag_values t WHERE t.issue_id = i.id AND t.key = 'level') \
                <> (SELECT COUNT(*) FROM events e WHERE e.issue_id = i.id) \
             OR (SELECT COALESCE(SUM(times_seen), 0) FROM issue_tag_values t WHERE t.issue_id = i.id AND t.key = 'n') \
                <> (SELECT COUNT(*) FROM events e WHERE e.issue_id = i.id)",
        )
        .await;
        assert_eq!(mismatched, 0, "{engine}: counters equal the events");
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM issues i WHERE NOT EXISTS (SELECT 1 FROM issue_hashes h WHERE h.issue_id = i.id)"
            )
            .await,
            0,
            "{engine}: no issue without a hash"
        );
        assert!(
            merges >= 6 && unmerges >= 6,
            "{engine}: {merges} merges, {unmerges} unmerges"
        );
        println!(
            "{engine}: {} events stored during {merges} merges and {unmerges} unmerges in {elapsed:?}, {retries} batch retries",
            sent.len()
        );
    }
}

/// Numbers for ARCHITECTURE.md (run by hand: `cargo test -p faultline-app --test
/// issue_merge -- --ignored --nocapture`): how long a merge and an unmerge of issues with
/// many events take (the project's ingest waits that long), and what the store's lock
/// statement costs per batch on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn merge_cost() {
    use sea_orm::TransactionTrait;
    for (engine, db) in faultline_core::db::testing::both()
        .await
        .expect("databases")
    {
        db.execute_unprepared(
            "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
        )
        .await
        .expect("org");
        db.execute_unprepared(
            "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, \
             max_events_per_issue, issue_counter, created_at) \
             SELECT id, 'web', 'web', true, 90, 100000, 0, 0 FROM organizations",
        )
        .await
        .expect("project");
        let org = scalar(&db, "SELECT id FROM organizations").await;
        let project = scalar(&db, "SELECT id FROM projects").await;
        let per_issue = 10_000;
        for (i, hash) in ["a", "b"].iter().enumerate() {
            let hash = hash.repeat(32);
            for chunk in 0..per_issue / 2000 {
                let batch: Vec<_> = (0..2000)
                    .map(|k| {
                        let mut e = faultline_core::protocol::event::Event {
                            event_id: Some(uuid::Uuid::new_v4()),
                            timestamp: Some(chrono::Utc::now()),
                            level: Some(faultline_core::protocol::event::Level::Error),
                            tags: vec![("n".into(), ((chunk * 2000 + k) % 50).to_string())],
                            user: Some(faultline_core::protocol::event::User {
                                id: Some(format!("u{}", k % 100 + i * 100)),
                                ..Default::default()
                            }),
                            ..Default::default()
                        };
                        let mut p =
                            faultline_worker::pipeline::prepare_event(project, &mut e).expect("p");
                        p.hashes = vec![hash.clone()];
                        p
                    })
                    .collect();
                faultline_worker::store::store_batch(&db, &batch)
                    .await
                    .expect("store");
            }
        }
        let ids: Vec<i64> = vec![
            scalar(
                &db,
                &format!(
                    "SELECT issue_id FROM issue_hashes WHERE hash = '{}'",
                    "a".repeat(32)
                ),
            )
            .await,
            scalar(
                &db,
                &format!(
                    "SELECT issue_id FROM issue_hashes WHERE hash = '{}'",
                    "b".repeat(32)
                ),
            )
            .await,
        ];
        let t = std::time::Instant::now();
        let merged = merge::merge(&db, org, &ids, &Actor::System)
            .await
            .expect("merge");
        let merge_time = t.elapsed();
        let t = std::time::Instant::now();
        merge::unmerge(
            &db,
            org,
            merged.parent,
            &["b".repeat(32)],
            &Actor::System,
            &faultline_worker::tags::stored_event_tags,
        )
        .await
        .expect("unmerge")
        .expect("issue");
        let unmerge_time = t.elapsed();
        // The lock statement alone: empty transactions with and without it, interleaved.
        let rounds = 1000u32;
        let (mut bare, mut locked) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let t = std::time::Instant::now();
            let txn = db.begin().await.expect("begin");
            txn.commit().await.expect("commit");
            bare += t.elapsed();
            let t = std::time::Instant::now();
            let txn = db.begin().await.expect("begin");
            merge::lock_projects_for_store(&txn, &[project])
                .await
                .expect("lock");
            txn.commit().await.expect("commit");
            locked += t.elapsed();
        }
        println!(
            "{engine}: merge of 2 x {per_issue} events {merge_time:?}, unmerge of {per_issue} events {unmerge_time:?}, \
             empty transaction {:?}, with the store's lock statement {:?}",
            bare / rounds,
            locked / rounds
        );
    }
}

/// Every table keyed by issue follows a merge as ARCHITECTURE.md says: pending alerts and
/// the notification log move to the parent, the busiest child's assignee is kept when the
/// parent has none, redirects follow a parent that is merged again, and nothing is left
/// pointing at a deleted issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_moves_every_row_keyed_by_issue() {
    for (engine, db) in faultline_core::db::testing::both()
        .await
        .expect("databases")
    {
        db.execute_unprepared(
            "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
        )
        .await
        .expect("org");
        db.execute_unprepared(
            "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, \
             max_events_per_issue, issue_counter, created_at) \
             SELECT id, 'web', 'web', true, 90, 1000, 0, 0 FROM organizations",
        )
        .await
        .expect("project");
        db.execute_unprepared(
            "INSERT INTO users (email, password_hash, is_superuser, created_at) VALUES ('kim@example.com', 'x', false, 0)",
        )
        .await
        .expect("user");
        let org = scalar(&db, "SELECT id FROM organizations").await;
        let project = scalar(&db, "SELECT id FROM projects").await;
        let kim = scalar(&db, "SELECT id FROM users").await;
        let store = |hash: &'static str, n: usize| {
            let db = &db;
            async move {
                let batch: Vec<_> = (0..n)
                    .map(|_| {
                        let mut e = faultline_core::protocol::event::Event {
                            event_id: Some(uuid::Uuid::new_v4()),
                            timestamp: Some(chrono::Utc::now()),
                            level: Some(faultline_core::protocol::event::Level::Error),
                            ..Default::default()
                        };
                        let mut p =
                            faultline_worker::pipeline::prepare_event(project, &mut e).expect("p");
                        p.hashes = vec![hash.repeat(32)];
                        p
                    })
                    .collect();
                faultline_worker::store::store_batch(db, &batch)
                    .await
                    .expect("store");
                scalar(
                    db,
                    &format!(
                        "SELECT issue_id FROM issue_hashes WHERE hash = '{}'",
                        hash.repeat(32)
                    ),
                )
                .await
            }
        };
        let a = store("a", 3).await;
        let b = store("b", 2).await;
        let c = store("c", 1).await;
        // A new issue writes its alert to the outbox; one child also has a log entry and
        // the busiest child an assignee.
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM alert_outbox").await, 3);
        db.execute_unprepared(&format!(
            "INSERT INTO notifications (project_id, issue_id, kind, recipient, status, created_at) \
             VALUES ({project}, {c}, 'new_issue', 'x@example.com', 'sent', 0)"
        ))
        .await
        .expect("notification");
        db.execute_unprepared(&format!(
            "UPDATE issues SET assignee_id = {kim} WHERE id = {b}"
        ))
        .await
        .expect("assign");

        let merged = merge::merge(&db, org, &[c, a, b], &Actor::User(kim))
            .await
            .expect("merge");
        assert_eq!(merged.parent, a, "{engine}");
        assert_eq!(merged.children, vec![b, c], "{engine}");
        assert_eq!(merged.actor, Actor::User(kim));
        for (sql, want) in [
            (
                format!("SELECT COUNT(*) FROM alert_outbox WHERE issue_id = {a}"),
                3,
            ),
            (
                format!("SELECT COUNT(*) FROM notifications WHERE issue_id = {a}"),
                1,
            ),
            (
                format!("SELECT assignee_id FROM issues WHERE id = {a}"),
                kim,
            ),
            (format!("SELECT times_seen FROM issues WHERE id = {a}"), 6),
            (
                format!("SELECT issue_id FROM issue_redirects WHERE from_id = {b}"),
                a,
            ),
            (
                format!("SELECT issue_id FROM issue_redirects WHERE from_id = {c}"),
                a,
            ),
            (
                format!(
                    "SELECT COUNT(*) FROM issue_activity WHERE issue_id = {a} AND kind = 'merge' AND user_id = {kim}"
                ),
                1,
            ),
        ] {
            assert_eq!(scalar(&db, &sql).await, want, "{engine}: {sql}");
        }
        for table in [
            "events",
            "issue_hashes",
            "issue_tag_values",
            "alert_outbox",
            "notifications",
            "issue_redirects",
            "issue_activity",
        ] {
            assert_eq!(
                scalar(
                    &db,
                    &format!(
                        "SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS \
                         (SELECT 1 FROM issues i WHERE i.id = t.issue_id)"
                    ),
                )
                .await,
                0,
                "{engine}: {table} points at deleted issues"
            );
        }
        // The parent merged into a bigger issue: old redirects follow.
        let d = store("d", 10).await;
        let again = merge::merge(&db, org, &[a, d], &Actor::System)
            .await
            .expect("merge");
        assert_eq!(again.parent, d);
        assert_eq!(
            merge::redirect(&db, org, b).await.expect("redirect"),
            Some(d)
        );
        assert_eq!(
            merge::redirect(&db, org, a).await.expect("redirect"),
            Some(d)
        );
        assert_eq!(
            merge::redirect(&db, org + 1, a).await.expect("redirect"),
            None
        );
        // Refusals: fewer than two, missing, another organization.
        for (ids, o) in [
            (vec![d], org),
            (vec![d, d], org),
            (vec![d, 999_999], org),
            (vec![d, a], org),
            (vec![d, c], org + 1),
        ] {
            let r = merge::merge(&db, o, &ids, &Actor::System).await;
            assert!(
                matches!(r, Err(faultline_core::issues::Error::Invalid(_))),
                "{engine}: {ids:?} in {o}: {r:?}"
            );
        }
        // Unmerge of an issue of another organization: not found.
        let r = merge::unmerge(
            &db,
            org + 1,
            d,
            &["d".repeat(32)],
            &Actor::System,
            &faultline_worker::tags::stored_event_tags,
        )
        .await
        .expect("no error");
        assert!(r.is_none(), "{engine}");
        // Deleting the final issue takes the redirects with it.
        assert!(
            faultline_core::issues::delete(&db, org, d)
                .await
                .expect("delete")
        );
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM issue_redirects").await, 0);
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM alert_outbox").await, 0);
    }
}

/// The same through the real doors: senders post envelopes to ingest (the worker batches
/// them as it likes) while the Web API merges and unmerges the issues of those
/// fingerprints. Once the queue drained, every event is stored once, where its hash maps,
/// and the counters equal the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_and_unmerge_while_events_flow_through_ingest() {
    for engine in engines() {
        let w = Arc::new(world(engine).await);
        let fingerprints = ["flow-0", "flow-1", "flow-2", "flow-3"];
        let mut hashes = Vec::new();
        for f in fingerprints {
            let issue = w.send(f, json!({"tags": {"k": "0"}}), None).await;
            hashes.push(w.hash_of(issue).await.remove(0));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for s in 0..2 {
            let (w, stop) = (w.clone(), stop.clone());
            senders.push(tokio::spawn(async move {
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    let event = json!({
                        "event_id": id, "level": "error",
                        "fingerprint": [fingerprints[(sent + s) % fingerprints.len()]],
                        "message": "flowing", "tags": {"k": (sent % 3).to_string()},
                    })
                    .to_string();
                    let body = format!(
                        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
                        event.len()
                    );
                    let r = common::post(
                        &w.app.envelope_url(),
                        &[("X-Sentry-Auth", &w.app.auth_header())],
                        body.into_bytes(),
                    )
                    .await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    sent += 1;
                }
                sent
            }));
        }
        let issue_of = |h: &String| {
            let (w, h) = (w.clone(), h.clone());
            async move {
                w.count(&format!(
                    "SELECT issue_id FROM issue_hashes WHERE hash = '{h}'"
                ))
                .await
            }
        };
        let (mut merges, mut unmerges) = (0, 0);
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut ids = Vec::new();
            for h in &hashes {
                ids.push(issue_of(h).await.to_string());
            }
            let query: Vec<String> = ids.iter().map(|i| format!("id={i}")).collect();
            let r = w
                .api(
                    "PUT",
                    &format!("projects/acme/web/issues/?{}", query.join("&")),
                    Some(json!({"merge": 1})),
                )
                .await;
            assert_eq!(r.status, 200, "{engine}: {}", r.text());
            merges += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
            for h in &hashes[1..] {
                let issue = issue_of(h).await;
                let r = w
                    .api("PUT", &format!("issues/{issue}/hashes/?id={h}"), None)
                    .await;
                assert_eq!(r.status, 202, "{engine}: {}", r.text());
                unmerges += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut sent = fingerprints.len();
        for s in senders {
            sent += s.await.expect("sender");
        }
        // Wait for the queue to drain.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let stored = w.count("SELECT COUNT(*) FROM events").await as usize;
            if stored == sent {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{engine}: {stored} of {sent} events stored"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            w.count("SELECT COUNT(*) FROM events").await as usize,
            sent,
            "{engine}: no event twice"
        );
        assert_eq!(
            w.count(
                "SELECT COUNT(*) FROM events e JOIN issue_hashes h \
                 ON h.project_id = e.project_id AND h.hash = e.primary_hash WHERE h.issue_id <> e.issue_id"
            )
            .await,
            0,
            "{engine}: every event is where its hash maps"
        );
        assert_eq!(
            w.count(
                "SELECT COUNT(*) FROM issues i WHERE i.times_seen <> (SELECT COUNT(*) FROM events e WHERE e.issue_id = i.id) \
                 OR (SELECT COALESCE(SUM(times_seen), 0) FROM issue_tag_values t WHERE t.issue_id = i.id AND t.key = 'k') \
                    <> (SELECT COUNT(*) FROM events e WHERE e.issue_id = i.id)"
            )
            .await,
            0,
            "{engine}: counters equal the events"
        );
        // Each hash is its own issue again, with its events.
        let mut issues = HashSet::new();
        for h in &hashes {
            issues.insert(issue_of(h).await);
        }
        assert_eq!(issues.len(), hashes.len(), "{engine}");
        println!(
            "{engine}: {sent} events through ingest during {merges} merges and {unmerges} unmerges"
        );
    }
}
