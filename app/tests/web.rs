//! The web pages over real HTTP against the real application: sessions and CSRF, login
//! throttling, organization isolation (every page of another organization is a 404),
//! invitations, password changes, and garbage in URLs and forms.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use faultline_app::accounts;
use sea_orm::{ConnectionTrait, Statement};

const PASSWORD: &str = "correct horse battery";

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
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|s| s.as_str())
            .unwrap_or("")
    }
    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.body[start..].find('"').expect("token end") + start;
        self.body[start..end].to_string()
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
            let mut resp = if method == "PUT" {
                let mut req = agent.put(&url).header("Content-Type", "application/json");
                if let Some(c) = &cookie {
                    req = req.header("Cookie", c);
                }
                req.send(form.unwrap_or_default().as_bytes())
            } else if method == "GET" {
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

    /// POSTs a form with the CSRF token of the page at `from`.
    async fn submit(&mut self, from: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(from).await.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    async fn login(&mut self, email: &str, password: &str) -> Page {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
    }
}

/// A statement with `?` placeholders, numbered `$n` on PostgreSQL.
fn stmt(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let backend = app.db.get_database_backend();
    let mut text = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' && backend == sea_orm::DbBackend::Postgres {
            n += 1;
            text.push_str(&format!("${n}"));
        } else {
            text.push(c);
        }
    }
    Statement::from_sql_and_values(backend, text, values)
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

/// Sends an event through the legacy store endpoint and waits until it is stored;
/// returns (issue id, event id).
async fn send_event(app: &TestApp, project_id: i64, key: &str, message: &str) -> (i64, String) {
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::json!({
        "event_id": event_id,
        "platform": "python",
        "level": "error",
        "release": "1.0.0",
        "message": message,
        "tags": {"customer": "vip"},
        "contexts": {"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}},
    });
    let auth = format!("Sentry sentry_key={key}, sentry_version=7");
    let answer = common::post(
        &format!("{}/api/{project_id}/store/", app.url),
        &[
            ("X-Sentry-Auth", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
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
            break row;
        }
        assert!(Instant::now() < deadline, "event {event_id} was not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (row.try_get_by_index(0).expect("issue id"), event_id)
}

async fn issue_status(app: &TestApp, issue_id: i64) -> String {
    let row = app
        .db
        .query_one_raw(stmt(
            app,
            "SELECT status FROM issues WHERE id = ?",
            vec![issue_id.into()],
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index(0).expect("status")
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = spawn_app(&[]).await;
    let mut b = Browser::new(&app);
    for path in [
        "/login",
        "/static/app.css",
        "/organizations/acme/issues",
        "/nope",
    ] {
        let page = b.get(path).await;
        let csp = page
            .headers
            .get("content-security-policy")
            .cloned()
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            page.headers
                .get("x-content-type-options")
                .map(|s| s.as_str()),
            Some("nosniff")
        );
        assert_eq!(
            page.headers.get("x-frame-options").map(|s| s.as_str()),
            Some("DENY")
        );
        assert!(page.headers.contains_key("referrer-policy"), "{path}");
    }
    // The session cookie is HttpOnly and SameSite=Lax.
    let page = Browser::new(&app).get("/login").await;
    let cookie = page.headers.get("set-cookie").cloned().unwrap_or_default();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
}

#[tokio::test]
async fn first_run_setup_creates_the_admin_once() {
    let app = spawn_app(&[]).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.get("/").await.location(), "/setup");
    // The operator's link, as the start printed it (app/tests/first_run.rs has the rest).
    let link = std::fs::read_to_string(app.data_dir.join("setup-token")).expect("setup link");
    let token = link.trim().rsplit('=').next().expect("token").to_string();
    let form_page = format!("/setup?token={token}");
    // Mismatched passwords: the form again, nothing created.
    let page = b
        .submit(
            &form_page,
            "/setup",
            &[
                ("token", &token),
                ("email", "root@example.com"),
                ("password", PASSWORD),
                ("password2", "other pass"),
                ("org_name", "Root Org"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("do not match"));
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    let page = b
        .submit(
            &form_page,
            "/setup",
            &[
                ("token", &token),
                ("email", "root@example.com"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
                ("org_name", "Root Org"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location(),
        "/organizations/root-org/projects?welcome=1"
    );
    assert_eq!(b.get("/organizations/root-org/projects").await.status, 200);
    // A second setup is refused, and the page sends people to the login.
    let mut other = Browser::new(&app);
    assert_eq!(other.get("/setup").await.location(), "/login");
    let csrf = other.get("/login").await.csrf();
    let page = other
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("email", "evil@example.com"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
                ("org_name", "Evil"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn csrf_less_posts_are_refused() {
    let app = spawn_app(&[]).await;
    let uid = user(&app, "ann@example.com").await;
    add_member(&app, "acme", uid, "owner").await;
    let (issue, _) = send_event(&app, app.project_id, &app.public_key, "boom").await;

    // Login without a token, with a made-up one, and with another session's token.
    let mut b = Browser::new(&app);
    b.get("/login").await;
    let page = b
        .post(
            "/login",
            &[("email", "ann@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403);
    let page = b
        .post(
            "/login",
            &[
                ("csrf", "00"),
                ("email", "ann@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    let foreign = Browser::new(&app).get("/login").await.csrf();
    let page = b
        .post(
            "/login",
            &[
                ("csrf", &foreign),
                ("email", "ann@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(b.login("ann@example.com", PASSWORD).await.status, 303);

    // Logged in: state-changing forms without the token change nothing.
    let path = format!("/organizations/acme/issues/{issue}/status");
    assert_eq!(b.post(&path, &[("action", "resolve")]).await.status, 403);
    let page = b
        .post(
            "/organizations/acme/issues/bulk",
            &[("action", "resolve"), ("issue", &issue.to_string())],
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(b.post("/logout", &[]).await.status, 403);
    assert_eq!(issue_status(&app, issue).await, "unresolved");
    // With the token it works; the token of the anonymous session before login does not.
    let page = b
        .submit(
            &format!("/organizations/acme/issues/{issue}"),
            &path,
            &[("action", "resolve")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(issue_status(&app, issue).await, "resolved");
}

#[tokio::test]
async fn wrong_passwords_are_throttled() {
    let app = spawn_app(&[]).await;
    user(&app, "bob@example.com").await;
    let mut b = Browser::new(&app);
    for _ in 0..faultline_app::web::throttle::MAX_PER_ACCOUNT_AND_ADDRESS {
        let page = b.login("bob@example.com", "wrong password").await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("Wrong email or password"));
    }
    // Locked: even the right password is refused for now.
    let page = b.login("bob@example.com", PASSWORD).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.body.contains("Too many failed logins"));
    // Unknown accounts are answered like wrong passwords (no account probing).
    let mut c = Browser::new(&app);
    let page = c.login("nobody@example.com", PASSWORD).await;
    assert_eq!(page.status, 401);
}

#[tokio::test]
async fn members_of_one_organization_get_404_for_everything_of_another() {
    let app = spawn_app(&[]).await;
    // Alice: member of acme (from spawn_app). Bob: owner of beta with a project and an issue.
    let alice = user(&app, "alice@example.com").await;
    add_member(&app, "acme", alice, "owner").await;
    let bob = user(&app, "bob@example.com").await;
    accounts::orgs::create(&app.db, "beta", Some("Beta"), Some("bob@example.com"))
        .await
        .expect("org");
    let (beta_project, beta_key) =
        accounts::projects::create(&app.db, "beta", "secret", Some("python"))
            .await
            .expect("project");
    let (beta_issue, beta_event) = send_event(&app, beta_project, &beta_key, "beta secret").await;
    let (acme_issue, _) = send_event(&app, app.project_id, &app.public_key, "acme boom").await;
    let _ = bob;

    let mut a = Browser::new(&app);
    assert_eq!(a.login("alice@example.com", PASSWORD).await.status, 303);
    // Her own pages work.
    for path in [
        "/organizations/acme/issues".to_string(),
        format!("/organizations/acme/issues/{acme_issue}"),
        "/organizations/acme/projects/web".into(),
    ] {
        assert_eq!(a.get(&path).await.status, 200, "{path}");
    }
    let beta_pages = [
        "/organizations/beta".to_string(),
        "/organizations/beta/issues".into(),
        format!("/organizations/beta/issues/{beta_issue}"),
        format!("/organizations/beta/issues/{beta_issue}/events/{beta_event}/json"),
        "/organizations/beta/projects".into(),
        "/organizations/beta/projects/secret".into(),
        "/organizations/beta/projects/secret/settings".into(),
        "/organizations/beta/projects/secret/releases".into(),
        "/organizations/beta/release?version=1.0.0".into(),
        "/organizations/beta/settings".into(),
        "/organizations/beta/traces/4bf92f3577b34da6a3ce929d0e0e4736".into(),
        // Beta's objects through her own organization's URLs.
        format!("/organizations/acme/issues/{beta_issue}"),
        format!("/organizations/acme/issues/{beta_issue}/events/{beta_event}/json"),
        "/organizations/acme/projects/secret".into(),
        "/organizations/acme/projects/secret/settings".into(),
        "/organizations/acme/projects/secret/releases".into(),
    ];
    for path in &beta_pages {
        let page = a.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(!page.body.contains("beta secret"), "{path} leaked");
    }
    // The Web API through her session: beta's objects are 404 too.
    for path in [
        format!("/api/0/issues/{beta_issue}/"),
        format!("/api/0/issues/{beta_issue}/events/"),
        "/api/0/projects/beta/secret/issues/".to_string(),
        format!("/api/0/projects/beta/secret/events/{beta_event}/"),
    ] {
        assert_eq!(a.get(&path).await.status, 404, "{path}");
    }
    // Forms aimed at beta's objects: 404 and nothing changes.
    let token = a.get("/organizations/acme/issues").await.csrf();
    for (path, fields) in [
        (
            format!("/organizations/beta/issues/{beta_issue}/status"),
            vec![("action", "resolve")],
        ),
        (
            format!("/organizations/acme/issues/{beta_issue}/status"),
            vec![("action", "resolve")],
        ),
        (
            "/organizations/beta/issues/bulk".to_string(),
            vec![("action", "resolve"), ("issue", "0")],
        ),
        (
            "/organizations/beta/projects".to_string(),
            vec![("slug", "x"), ("platform", "python")],
        ),
        (
            "/organizations/beta/projects/secret/keys".to_string(),
            vec![("label", "mine")],
        ),
        (
            "/organizations/acme/projects/secret/keys".to_string(),
            vec![("label", "mine")],
        ),
        (
            "/organizations/beta/tokens".to_string(),
            vec![("scope", "org:read")],
        ),
        (
            "/organizations/beta/invites".to_string(),
            vec![("role", "owner")],
        ),
        (
            "/organizations/beta/members/1".to_string(),
            vec![("action", "remove")],
        ),
    ] {
        let mut all = vec![("csrf", token.as_str())];
        all.extend(fields);
        assert_eq!(a.post(&path, &all).await.status, 404, "POST {path}");
    }
    // Bulk actions through her own organization skip beta's issue ids.
    let page = a
        .post(
            "/organizations/acme/issues/bulk",
            &[
                ("csrf", &token),
                ("action", "resolve"),
                ("issue", &beta_issue.to_string()),
                ("back", "/"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(issue_status(&app, beta_issue).await, "unresolved");
    assert_eq!(app.count("SELECT COUNT(*) FROM project_keys").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM api_tokens").await, 0);
    // Searches and traces only show her own events.
    let page = a
        .get("/organizations/acme/issues?query=is:all%20beta")
        .await;
    assert!(!page.body.contains("beta secret"));
    let page = a
        .get("/organizations/acme/traces/4bf92f3577b34da6a3ce929d0e0e4736")
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("acme boom") && !page.body.contains("beta secret"));
    // Not logged in: a redirect to the login page, for every page.
    let mut anon = Browser::new(&app);
    for path in beta_pages.iter().take(5) {
        let page = anon.get(path).await;
        assert_eq!(page.status, 303, "{path}");
        assert!(page.location().starts_with("/login?next="), "{path}");
    }
}

#[tokio::test]
async fn members_cannot_manage_but_can_triage() {
    let app = spawn_app(&[]).await;
    let m = user(&app, "member@example.com").await;
    add_member(&app, "acme", m, "member").await;
    let (issue, _) = send_event(&app, app.project_id, &app.public_key, "boom").await;
    let mut b = Browser::new(&app);
    b.login("member@example.com", PASSWORD).await;
    let page = b
        .submit(
            "/organizations/acme/projects",
            "/organizations/acme/projects",
            &[("slug", "mine"), ("platform", "python")],
        )
        .await;
    assert_eq!(page.status, 403);
    let page = b
        .submit(
            "/organizations/acme/settings",
            "/organizations/acme/invites",
            &[("role", "owner")],
        )
        .await;
    assert_eq!(page.status, 403);
    let page = b
        .submit(
            &format!("/organizations/acme/issues/{issue}"),
            &format!("/organizations/acme/issues/{issue}/status"),
            &[("action", "ignore"), ("count", "100")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(issue_status(&app, issue).await, "ignored");
}

#[tokio::test]
async fn invitations_work_once_and_password_changes_end_other_sessions() {
    let app = spawn_app(&[]).await;
    let owner = user(&app, "owner@example.com").await;
    add_member(&app, "acme", owner, "owner").await;
    let mut o = Browser::new(&app);
    o.login("owner@example.com", PASSWORD).await;
    let page = o
        .submit(
            "/organizations/acme/settings",
            "/organizations/acme/invites",
            &[("role", "admin"), ("email", "new person")],
        )
        .await;
    assert_eq!(page.status, 200);
    let start = page.body.find("/invite/").expect("invite link shown");
    let link: String = page.body[start..]
        .chars()
        .take_while(|c| *c != '<')
        .collect();
    // A visitor accepts it by creating an account.
    let mut n = Browser::new(&app);
    assert_eq!(n.get(&link).await.status, 200);
    let page = n
        .submit(
            &link,
            &link,
            &[
                ("email", "new@example.com"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(n.get("/organizations/acme/settings").await.status, 200);
    // Used up.
    assert_eq!(Browser::new(&app).get(&link).await.status, 404);
    assert_eq!(Browser::new(&app).get("/invite/garbage").await.status, 404);

    // Two sessions of the owner; changing the password in one ends the other.
    let mut second = Browser::new(&app);
    second.login("owner@example.com", PASSWORD).await;
    assert_eq!(second.get("/account").await.status, 200);
    let page = o
        .submit(
            "/account",
            "/account/password",
            &[
                ("current", "wrong one"),
                ("password", "new password 1"),
                ("password2", "new password 1"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    let page = o
        .submit(
            "/account",
            "/account/password",
            &[
                ("current", PASSWORD),
                ("password", "new password 1"),
                ("password2", "new password 1"),
            ],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        o.get("/account").await.status,
        200,
        "the changing session stays"
    );
    assert_eq!(
        second.get("/account").await.status,
        303,
        "the other session ended"
    );
    assert_eq!(
        Browser::new(&app)
            .login("owner@example.com", "new password 1")
            .await
            .status,
        303
    );
}

#[tokio::test]
async fn garbage_in_urls_queries_and_forms_gets_clear_answers() {
    let app = spawn_app(&[]).await;
    let u = user(&app, "gina@example.com").await;
    add_member(&app, "acme", u, "owner").await;
    let (issue, _) = send_event(&app, app.project_id, &app.public_key, "boom").await;
    let mut b = Browser::new(&app);
    b.login("gina@example.com", PASSWORD).await;
    let long = "x".repeat(5000);
    for (path, status, text) in [
        (
            "/organizations/acme/issues?query=is:sleeping".to_string(),
            200,
            "is:sleeping",
        ),
        (
            format!("/organizations/acme/issues?query={long}"),
            200,
            "too long",
        ),
        (
            "/organizations/acme/issues?query=trace:nothex".into(),
            200,
            "not a trace id",
        ),
        (
            "/organizations/acme/issues?cursor=garbage&sort=%00".into(),
            200,
            "boom",
        ),
        (
            "/organizations/acme/issues?query=%27%20OR%201%3D1%20--".into(),
            200,
            "No issues match",
        ),
        ("/organizations/acme/issues/notanumber".into(), 404, ""),
        (
            "/organizations/acme/issues/99999999999999999999".into(),
            404,
            "",
        ),
        (
            format!("/organizations/acme/issues/{issue}?event=zzz"),
            200,
            "32 hexadecimal",
        ),
        (
            format!("/organizations/acme/issues/{issue}?event=00000000000000000000000000000000"),
            200,
            "no stored event with that id",
        ),
        (
            format!("/organizations/acme/issues/{issue}/events/nothex/json"),
            404,
            "",
        ),
        ("/organizations/acme/traces/xyz".into(), 404, ""),
        ("/organizations/acme/release?version=".into(), 404, ""),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, status, "{path}");
        assert!(page.body.contains(text), "{path}: expected {text:?}");
    }
    let status_path = format!("/organizations/acme/issues/{issue}/status");
    let from = format!("/organizations/acme/issues/{issue}");
    for fields in [
        vec![("action", "explode")],
        vec![("action", "ignore"), ("until", "5y")],
        vec![("action", "ignore"), ("count", "-3")],
    ] {
        assert_eq!(
            b.submit(&from, &status_path, &fields).await.status,
            400,
            "{fields:?}"
        );
    }
    assert_eq!(issue_status(&app, issue).await, "unresolved");
    let page = b
        .submit(
            "/organizations/acme/projects/web/settings",
            "/organizations/acme/projects/web/settings/general",
            &[
                ("name", "Web"),
                ("platform", "python"),
                ("retention_days", "0"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("between 1 and 3650"));
    let page = b
        .submit(
            "/organizations/acme/projects",
            "/organizations/acme/projects",
            &[("slug", "Bad Slug!"), ("platform", "python")],
        )
        .await;
    assert_eq!(page.status, 400);
    // An oversize form body is refused without harm.
    let token = b.get("/account").await.csrf();
    let huge = format!("csrf={token}&current={}", "a".repeat(2 * 1024 * 1024));
    let page = b.send("POST", "/account/password", Some(huge)).await;
    assert!(page.status == 413 || page.status == 400, "{}", page.status);
    // A forged session cookie is a visitor.
    let mut forged = Browser::new(&app);
    forged.cookie = Some(format!(
        "faultline_session={u}.0.{}.x.{}",
        "a".repeat(32),
        "0".repeat(64)
    ));
    assert_eq!(forged.get("/organizations/acme/issues").await.status, 303);
}

#[tokio::test]
async fn issue_workflow_and_keys_over_http() {
    issue_workflow(spawn_app(&[]).await).await;
}

/// The same pages on PostgreSQL (one SQL text for both engines).
#[tokio::test]
async fn issue_workflow_and_keys_over_http_on_postgres() {
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
    issue_workflow(spawn_app(&[("DATABASE_URL", url.as_str())]).await).await;
}

async fn issue_workflow(app: TestApp) {
    let u = user(&app, "kim@example.com").await;
    add_member(&app, "acme", u, "admin").await;
    let (issue, event_id) =
        send_event(&app, app.project_id, &app.public_key, "checkout failed").await;
    let mut b = Browser::new(&app);
    b.login("kim@example.com", PASSWORD).await;
    // Search by tag, release, trace and text.
    for q in [
        "customer:vip",
        "release:1.0.0",
        "trace:4bf92f3577b34da6a3ce929d0e0e4736",
        "checkout",
        "has:customer",
    ] {
        let page = b
            .get(&format!("/organizations/acme/issues?query={}", urlenc(q)))
            .await;
        assert!(page.body.contains("checkout failed"), "{q}");
    }
    for q in [
        "customer:nobody",
        "!customer:vip",
        "level:fatal",
        "is:resolved",
    ] {
        let page = b
            .get(&format!("/organizations/acme/issues?query={}", urlenc(q)))
            .await;
        assert!(!page.body.contains("checkout failed"), "{q}");
    }
    // The trace page and the other lists.
    let page = b
        .get("/organizations/acme/traces/4bf92f3577b34da6a3ce929d0e0e4736")
        .await;
    assert!(page.body.contains("checkout failed"));
    for path in [
        "/organizations/acme/projects",
        "/organizations/acme/settings",
        "/account",
        "/organizations/acme/projects/web/settings",
    ] {
        assert_eq!(b.get(path).await.status, 200, "{path}");
    }
    for sort in ["new", "freq", "user"] {
        let page = b
            .get(&format!(
                "/organizations/acme/projects/web?sort={sort}&period=14d"
            ))
            .await;
        assert!(page.body.contains("checkout failed"), "{sort}");
    }
    // Releases: the list and the detail page count the release's issue and event.
    let page = b.get("/organizations/acme/projects/web/releases").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("1.0.0"), "the release is listed");
    let page = b
        .get("/organizations/acme/release?version=1.0.0&project=web")
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("checkout failed"),
        "its new issue is listed"
    );
    assert_eq!(
        b.get("/organizations/acme/release?version=9.9.9")
            .await
            .status,
        404
    );
    // The raw JSON download.
    let page = b
        .get(&format!(
            "/organizations/acme/issues/{issue}/events/{event_id}/json"
        ))
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.headers.get("content-type").map(|s| s.as_str()),
        Some("application/json")
    );
    let json: serde_json::Value = serde_json::from_str(&page.body).expect("json");
    assert_eq!(
        json["event_id"].as_str().map(|s| s.replace('-', "")),
        Some(event_id.clone())
    );
    // Issue page: trace link into Jaeger.
    let page = b.get(&format!("/organizations/acme/issues/{issue}")).await;
    assert!(
        page.body
            .contains("http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736")
    );
    // Resolve in next release, then ignore until, then reopen.
    let from = format!("/organizations/acme/issues/{issue}");
    let path = format!("{from}/status");
    b.submit(&from, &path, &[("action", "resolve_next")]).await;
    assert_eq!(issue_status(&app, issue).await, "resolved_in_next_release");
    b.submit(&from, &path, &[("action", "ignore"), ("until", "2h")])
        .await;
    assert_eq!(issue_status(&app, issue).await, "ignored");
    assert!(b.get(&from).await.body.contains("Ignored until"));
    b.submit(&from, &path, &[("action", "unresolve")]).await;
    assert_eq!(issue_status(&app, issue).await, "unresolved");
    // Bulk.
    let page = b
        .submit(
            "/organizations/acme/issues",
            "/organizations/acme/issues/bulk",
            &[
                ("action", "ignore"),
                ("issue", &issue.to_string()),
                ("back", "/organizations/acme/issues"),
            ],
        )
        .await;
    assert_eq!(page.location(), "/organizations/acme/issues?done=ignore");
    assert_eq!(issue_status(&app, issue).await, "ignored");

    // Keys: a new one with a rate limit, then disabled; ingest refuses it within seconds.
    let settings = "/organizations/acme/projects/web/settings";
    let page = b
        .submit(
            settings,
            "/organizations/acme/projects/web/keys",
            &[("label", "frontend"), ("rate_limit", "600")],
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM project_keys WHERE rate_limit_per_minute = 600")
            .await,
        1
    );
    let key_id = app
        .count("SELECT id FROM project_keys WHERE label = 'Default'")
        .await;
    let page = b
        .submit(
            settings,
            &format!("/organizations/acme/projects/web/keys/{key_id}"),
            &[("action", "disable")],
        )
        .await;
    assert_eq!(page.status, 303);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = common::post(
            &format!("{}/api/{}/store/", app.url, app.project_id),
            &[(
                "X-Sentry-Auth",
                &format!("Sentry sentry_key={}, sentry_version=7", app.public_key),
            )],
            b"{\"message\":\"x\"}".to_vec(),
        )
        .await;
        if answer.status == 403 || answer.status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the disabled key still ingests: {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An API token, shown once, stored hashed.
    let page = b
        .submit(
            "/organizations/acme/settings",
            "/organizations/acme/tokens",
            &[
                ("name", "ci"),
                ("scope", "project:releases"),
                ("scope", "org:read"),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    let start = page.body.find("sntryu_").expect("token shown");
    let token: String = page.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert_eq!(token.len(), 7 + 64);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_tokens WHERE scopes = 'project:releases org:read'")
            .await,
        1
    );
    assert!(
        !b.get("/organizations/acme/settings")
            .await
            .body
            .contains(&token)
    );
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_web_api_accepts_the_session_of_a_logged_in_user() {
    let app = spawn_app(&[]).await;
    let u = user(&app, "api@example.com").await;
    add_member(&app, "acme", u, "member").await;
    let (issue, _) = send_event(&app, app.project_id, &app.public_key, "api boom").await;
    let mut b = Browser::new(&app);
    // Without a session the API wants credentials.
    assert_eq!(b.get("/api/0/organizations/").await.status, 401);
    b.login("api@example.com", PASSWORD).await;
    let page = b.get("/api/0/organizations/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("\"slug\":\"acme\""), "{}", page.body);
    let page = b.get(&format!("/api/0/issues/{issue}/")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("api boom"));
    // A write through the session without the CSRF header stays anonymous.
    let page = b
        .send(
            "PUT",
            &format!("/api/0/issues/{issue}/"),
            Some("{\"status\":\"resolved\"}".into()),
        )
        .await;
    assert_ne!(page.status, 200);
    assert_eq!(issue_status(&app, issue).await, "unresolved");
}

// ---------------------------------------------------------------------------------------
// Sessions end for good, and roles count on every request.

/// The application on `engine` (`sqlite` or a fresh PostgreSQL database).
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

impl Browser {
    /// A browser script's call to the Web API with this session (and, for writes, the
    /// session's CSRF token in `X-CSRFToken`): (status, body).
    async fn api(
        &mut self,
        method: &str,
        path: &str,
        csrf: Option<&str>,
        body: &str,
    ) -> (u16, String) {
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
            let mut resp = if body.is_empty() {
                agent.run(req.body(()).expect("request"))
            } else {
                agent.run(req.body(body).expect("request"))
            }
            .expect("sent");
            (
                resp.status().as_u16(),
                resp.body_mut().read_to_string().unwrap_or_default(),
            )
        })
        .await
        .expect("task")
    }

    /// The CSRF token of this session (from the account page).
    async fn token(&mut self) -> String {
        self.get("/account").await.csrf()
    }
}

async fn issue_exists(app: &TestApp, issue_id: i64) -> bool {
    app.count(&format!(
        "SELECT COUNT(*) FROM issues WHERE id = {issue_id}"
    ))
    .await
        == 1
}

async fn set_role(app: &TestApp, user_id: i64, role: &str) {
    app.db
        .execute_raw(stmt(
            app,
            "UPDATE members SET role = ? WHERE user_id = ?",
            vec![role.into(), user_id.into()],
        ))
        .await
        .expect("role");
}

#[tokio::test]
async fn a_logged_out_cookie_replayed_is_a_visitor_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let app = spawn_on(engine).await;
        let u = user(&app, "lou@example.com").await;
        add_member(&app, "acme", u, "member").await;
        let (issue, _) = send_event(&app, app.project_id, &app.public_key, "replayed").await;
        let mut b = Browser::new(&app);
        b.login("lou@example.com", PASSWORD).await;
        assert_eq!(b.get("/account").await.status, 200, "{engine}");
        assert_eq!(
            b.api("GET", "organizations/", None, "").await.0,
            200,
            "{engine}"
        );
        let csrf = b.token().await;
        let stolen = b.cookie.clone();

        // Logging out needs the session's token: a forged form ends nothing.
        let page = b.post("/logout", &[("csrf", "forged")]).await;
        assert_eq!(page.status, 403, "{engine}");
        assert_eq!(b.get("/account").await.status, 200, "{engine}");
        let page = b.submit("/account", "/logout", &[]).await;
        assert_eq!(page.location(), "/login", "{engine}");
        assert_eq!(b.get("/account").await.status, 303, "{engine}");

        // The old cookie, replayed: the pages send it to the login, the API wants
        // credentials, and a write with the old CSRF token changes nothing.
        let mut replay = Browser::new(&app);
        replay.cookie = stolen.clone();
        let page = replay.get("/account").await;
        assert_eq!(page.status, 303, "{engine}");
        assert!(page.location().starts_with("/login"), "{engine}");
        let mut replay = Browser::new(&app);
        replay.cookie = stolen.clone();
        assert_eq!(
            replay.api("GET", "organizations/", None, "").await.0,
            401,
            "{engine}"
        );
        let (status, _) = replay
            .api(
                "PUT",
                &format!("issues/{issue}/"),
                Some(&csrf),
                "{\"status\":\"resolved\"}",
            )
            .await;
        assert_eq!(status, 401, "{engine}");
        assert_eq!(issue_status(&app, issue).await, "unresolved", "{engine}");
        // Logging in again works, in a new session.
        let mut again = Browser::new(&app);
        assert_eq!(again.login("lou@example.com", PASSWORD).await.status, 303);
        assert_eq!(again.get("/account").await.status, 200, "{engine}");
        assert_ne!(again.cookie, stolen, "{engine}");
    }
}

#[tokio::test]
async fn log_out_everywhere_ends_every_session_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let app = spawn_on(engine).await;
        let u = user(&app, "eve@example.com").await;
        add_member(&app, "acme", u, "member").await;
        let other = user(&app, "other@example.com").await;
        add_member(&app, "acme", other, "member").await;
        let mut laptop = Browser::new(&app);
        laptop.login("eve@example.com", PASSWORD).await;
        let mut phone = Browser::new(&app);
        phone.login("eve@example.com", PASSWORD).await;
        let mut someone = Browser::new(&app);
        someone.login("other@example.com", PASSWORD).await;
        let page = laptop.get("/account").await;
        assert!(
            page.body.contains("logged in in 2 places"),
            "{engine}: {}",
            page.body
        );
        assert!(page.body.contains("Log out everywhere"), "{engine}");

        // Without the session's token, or without a session: nothing ends.
        let page = laptop
            .post("/account/sessions/end", &[("csrf", "nope")])
            .await;
        assert_eq!(page.status, 403, "{engine}");
        let page = Browser::new(&app)
            .submit("/login", "/account/sessions/end", &[])
            .await;
        assert_eq!(page.status, 303, "{engine}");
        assert!(page.location().starts_with("/login"), "{engine}");
        assert_eq!(phone.get("/account").await.status, 200, "{engine}");

        let page = laptop
            .submit("/account", "/account/sessions/end", &[])
            .await;
        assert_eq!(page.status, 303, "{engine}");
        assert_eq!(page.location(), "/login", "{engine}");
        // Both of eve's sessions are over, pages and API alike; someone else's is not.
        assert_eq!(laptop.get("/account").await.status, 303, "{engine}");
        assert_eq!(phone.get("/account").await.status, 303, "{engine}");
        assert_eq!(
            phone.api("GET", "organizations/", None, "").await.0,
            401,
            "{engine}"
        );
        assert_eq!(someone.get("/account").await.status, 200, "{engine}");
        let mut back = Browser::new(&app);
        back.login("eve@example.com", PASSWORD).await;
        let page = back.get("/account").await;
        assert!(
            page.body.contains("logged in in 1 place"),
            "{engine}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn api_sessions_get_the_scopes_of_the_role_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let app = spawn_on(engine).await;
        let m = user(&app, "mia@example.com").await;
        add_member(&app, "acme", m, "member").await;
        let a = user(&app, "ada@example.com").await;
        add_member(&app, "acme", a, "admin").await;
        let root = accounts::users::create(&app.db, "root@example.com", PASSWORD, true)
            .await
            .expect("superuser");
        let _ = root;
        let (first, _) = send_event(&app, app.project_id, &app.public_key, "one").await;
        let (second, _) = send_event(&app, app.project_id, &app.public_key, "two").await;
        let (third, _) = send_event(&app, app.project_id, &app.public_key, "three").await;

        // A member triages through the API but cannot delete: the pages forbid it too.
        let mut member = Browser::new(&app);
        member.login("mia@example.com", PASSWORD).await;
        let csrf = member.token().await;
        let (status, body) = member.api("GET", "", None, "").await;
        assert_eq!(status, 200, "{engine}: {body}");
        assert!(!body.contains("event:admin"), "{engine}: {body}");
        assert!(body.contains("event:write"), "{engine}: {body}");
        let (status, body) = member
            .api("DELETE", &format!("issues/{first}/"), Some(&csrf), "")
            .await;
        assert_eq!(status, 403, "{engine}: {body}");
        assert!(body.contains("event:admin"), "{engine}: {body}");
        assert!(issue_exists(&app, first).await, "{engine}");
        let (status, body) = member
            .api(
                "PUT",
                &format!("issues/{first}/"),
                Some(&csrf),
                "{\"status\":\"resolved\"}",
            )
            .await;
        assert_eq!(status, 200, "{engine}: {body}");
        // Garbage and missing rows: 404 before any scope question about them.
        for path in ["issues/999999/", "issues/garbage/", "issues/-1/"] {
            let (status, body) = member.api("GET", path, None, "").await;
            assert_eq!(status, 404, "{engine} {path}: {body}");
        }

        // An admin deletes.
        let mut admin = Browser::new(&app);
        admin.login("ada@example.com", PASSWORD).await;
        let csrf = admin.token().await;
        let (status, body) = admin
            .api("DELETE", &format!("issues/{first}/"), Some(&csrf), "")
            .await;
        assert_eq!(status, 202, "{engine}: {body}");
        assert!(!issue_exists(&app, first).await, "{engine}");

        // Demoted: the very next request counts the new role (pages and API).
        set_role(&app, a, "member").await;
        let (status, body) = admin
            .api("DELETE", &format!("issues/{second}/"), Some(&csrf), "")
            .await;
        assert_eq!(status, 403, "{engine}: {body}");
        assert!(issue_exists(&app, second).await, "{engine}");
        let page = admin
            .submit(
                "/organizations/acme/settings",
                "/organizations/acme/invites",
                &[("role", "member")],
            )
            .await;
        assert_eq!(page.status, 403, "{engine}");
        // Promoted again: allowed again, with no new login.
        set_role(&app, a, "admin").await;
        let (status, _) = admin
            .api("DELETE", &format!("issues/{second}/"), Some(&csrf), "")
            .await;
        assert_eq!(status, 202, "{engine}");
        // Removed from the organization: its pages and objects are gone for them at once.
        app.db
            .execute_raw(stmt(
                &app,
                "DELETE FROM members WHERE user_id = ?",
                vec![a.into()],
            ))
            .await
            .expect("remove");
        assert_eq!(
            admin.get("/organizations/acme/issues").await.status,
            404,
            "{engine}"
        );
        let (status, _) = admin
            .api("GET", &format!("issues/{third}/"), None, "")
            .await;
        assert_eq!(status, 404, "{engine}");
        let (status, _) = admin.api("GET", "organizations/acme/", None, "").await;
        assert_eq!(status, 404, "{engine}");

        // A superuser keeps every scope, member or not.
        let mut su = Browser::new(&app);
        su.login("root@example.com", PASSWORD).await;
        let csrf = su.token().await;
        let (status, body) = su.api("GET", "", None, "").await;
        assert!(
            status == 200 && body.contains("org:admin"),
            "{engine}: {body}"
        );
        let (status, body) = su
            .api("DELETE", &format!("issues/{third}/"), Some(&csrf), "")
            .await;
        assert_eq!(status, 202, "{engine}: {body}");
    }
}

/// Assignment on the issue page: the organization's members to pick from, nobody to clear,
/// "Assigned to me" lists the user's issues; non-members and garbage are refused, and a
/// member of another organization cannot reach the form (404).
#[tokio::test]
async fn issues_are_assigned_on_the_issue_page() {
    assigned_on_pages(spawn_app(&[]).await).await;
}

#[tokio::test]
async fn issues_are_assigned_on_the_issue_page_on_postgres() {
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
    assigned_on_pages(spawn_app(&[("DATABASE_URL", url.as_str())]).await).await;
}

async fn assignee(app: &TestApp, issue_id: i64) -> Option<i64> {
    let row = app
        .db
        .query_one_raw(stmt(
            app,
            "SELECT assignee_id FROM issues WHERE id = ?",
            vec![issue_id.into()],
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index(0).expect("assignee")
}

async fn assigned_on_pages(app: TestApp) {
    let kim = user(&app, "kim@example.com").await;
    add_member(&app, "acme", kim, "member").await;
    let lee = user(&app, "lee@example.com").await;
    add_member(&app, "acme", lee, "member").await;
    let bob = user(&app, "bob@example.com").await;
    accounts::orgs::create(&app.db, "beta", Some("Beta"), None)
        .await
        .expect("org");
    add_member(&app, "beta", bob, "owner").await;
    let (issue, _) = send_event(&app, app.project_id, &app.public_key, "checkout failed").await;
    let page_url = format!("/organizations/acme/issues/{issue}");
    let assign_url = format!("{page_url}/assign");

    let mut b = Browser::new(&app);
    b.login("kim@example.com", PASSWORD).await;
    let page = b.get(&page_url).await;
    assert!(page.body.contains("lee@example.com"), "members are offered");
    assert!(
        !page.body.contains("bob@example.com"),
        "only this organization's"
    );
    let page = b
        .submit(&page_url, &assign_url, &[("assignee", &kim.to_string())])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(assignee(&app, issue).await, Some(kim));
    let page = b.get(&page_url).await;
    assert!(
        page.body
            .contains(&format!("<option value=\"{kim}\" selected>"))
    );
    // "Assigned to me" lists it for Kim, not for Lee.
    let list = b.get("/organizations/acme/issues").await;
    assert!(list.body.contains("Assigned to me"));
    let mine = "/organizations/acme/issues?query=is%3Aunresolved+assigned%3Ame";
    assert!(list.body.contains(&mine.replace("&", "&amp;")) || list.body.contains(mine));
    assert!(b.get(mine).await.body.contains("checkout failed"));
    let mut b2 = Browser::new(&app);
    b2.login("lee@example.com", PASSWORD).await;
    assert!(!b2.get(mine).await.body.contains("checkout failed"));
    assert!(
        b2.get("/organizations/acme/issues?query=assigned%3Akim%40example.com")
            .await
            .body
            .contains("checkout failed")
    );

    // Non-members and garbage are refused; nothing changes.
    for bad in [
        bob.to_string(),
        "abc".into(),
        "-1".into(),
        "99999999".into(),
    ] {
        let page = b
            .submit(&page_url, &assign_url, &[("assignee", &bad)])
            .await;
        assert_eq!(page.status, 400, "{bad}");
        assert_eq!(assignee(&app, issue).await, Some(kim), "{bad}");
    }
    // Without a CSRF token.
    let page = b.post(&assign_url, &[("assignee", "")]).await;
    assert_eq!(page.status, 403);
    // Another organization's member: 404.
    let mut outsider = Browser::new(&app);
    outsider.login("bob@example.com", PASSWORD).await;
    let token = outsider.get("/organizations/beta/issues").await.csrf();
    let page = outsider
        .post(&assign_url, &[("csrf", &token), ("assignee", "")])
        .await;
    assert_eq!(page.status, 404);
    assert_eq!(assignee(&app, issue).await, Some(kim));
    // Nobody.
    let page = b.submit(&page_url, &assign_url, &[("assignee", "")]).await;
    assert_eq!(page.status, 303);
    assert_eq!(assignee(&app, issue).await, None);
}
