//! First run: a fresh install can only be set up with the setup link it printed, setup
//! creates exactly one administrator however many posts race, on both engines, and the
//! link dies with the first administrator.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use sea_orm::ConnectionTrait;

const PASSWORD: &str = "correct horse battery";

struct Page {
    status: u16,
    body: String,
    headers: HashMap<String, String>,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(String::as_str)
            .unwrap_or("")
    }
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').expect("value end") + start;
        self.body[start..end].to_string()
    }
}

/// A browser without JavaScript: keeps the session cookie, never follows redirects.
struct Browser {
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            cookie: None,
        }
    }

    async fn send(&mut self, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let url = format!("{}{}", self.base, path);
        let cookie = self.cookie.clone();
        let body = form.map(|fields| {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                ser.append_pair(k, v);
            }
            ser.finish()
        });
        let page = tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent();
            let mut resp = match body {
                None => {
                    let mut req = agent.get(&url);
                    if let Some(c) = &cookie {
                        req = req.header("Cookie", c);
                    }
                    req.call()
                }
                Some(body) => {
                    let mut req = agent
                        .post(&url)
                        .header("Content-Type", "application/x-www-form-urlencoded");
                    if let Some(c) = &cookie {
                        req = req.header("Cookie", c);
                    }
                    req.send(body.as_bytes())
                }
            }
            .expect("request");
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            Page {
                status: resp.status().as_u16(),
                body: resp.body_mut().read_to_string().unwrap_or_default(),
                headers,
            }
        })
        .await
        .expect("task");
        if let Some(set) = page.headers.get("set-cookie")
            && let Some(v) = set.split(';').next()
            && v.starts_with("faultline_session=")
        {
            self.cookie = Some(v.to_string());
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(path, Some(fields)).await
    }
}

/// The token of the link the app wrote to `<data dir>/setup-token`.
fn setup_token(app: &TestApp) -> String {
    let link = std::fs::read_to_string(app.data_dir.join("setup-token")).expect("setup-token");
    link.trim()
        .split_once("/setup?token=")
        .expect("a setup link")
        .1
        .to_string()
}

fn admin_form<'a>(
    csrf: &'a str,
    token: &'a str,
    email: &'a str,
    org: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("token", token),
        ("email", email),
        ("password", PASSWORD),
        ("password2", PASSWORD),
        ("org_name", org),
    ]
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

async fn spawn(engine: &str) -> TestApp {
    match engine {
        "sqlite" => spawn_app(&[]).await,
        _ => spawn_app(&[("DATABASE_URL", &fresh_postgres().await)]).await,
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_setup_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(&[]).await;
    let meta = std::fs::metadata(app.data_dir.join("setup-token")).expect("written at start");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(setup_token(&app).len(), 32);
}

#[tokio::test]
async fn a_stranger_cannot_set_up_without_the_token() {
    let app = spawn_app(&[]).await;
    let token = setup_token(&app);
    let mut stranger = Browser::new(&app.url);
    assert_eq!(stranger.get("/").await.location(), "/setup");
    for path in [
        "/setup".to_string(),
        "/setup?token=".to_string(),
        "/setup?token=0123456789abcdef0123456789abcdef".to_string(),
        format!("/setup?token={}", &token[..31]),
        format!("/setup?token={token}%00"),
        "/setup?token=%FF%FE".to_string(),
    ] {
        let page = stranger.get(&path).await;
        assert_eq!(page.status, 403, "{path}");
        // Says where the link is, never what it is.
        assert!(page.body.contains("setup-token"), "{path}: {}", page.body);
        assert!(page.body.contains("docker compose logs web"), "{path}");
        assert!(!page.body.contains(&token), "{path} reveals the token");
    }
    // A form of this session (CSRF is per session; the token is separate), posted without
    // the token or with a wrong one.
    let csrf = stranger
        .get(&format!("/setup?token={token}"))
        .await
        .field("csrf");
    for wrong in ["", "nope", &"0".repeat(32), &token.to_uppercase()] {
        let page = stranger
            .post(
                "/setup",
                &admin_form(&csrf, wrong, "evil@example.com", "Evil"),
            )
            .await;
        assert_eq!(page.status, 403, "token {wrong:?}");
        assert!(!page.body.contains(&token));
    }
    // Garbage bodies: still refused, nothing created.
    for body in [
        &[("csrf", csrf.as_str())][..],
        &[("token", token.as_str())][..],
    ] {
        assert_eq!(stranger.post("/setup", body).await.status, 403);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM setup_claims").await, 0);
}

#[tokio::test]
async fn the_operator_sets_up_once_with_the_token_and_it_dies_then() {
    let app = spawn_app(&[]).await;
    let token = setup_token(&app);
    let mut op = Browser::new(&app.url);
    let page = op.get(&format!("/setup?token={token}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.field("token"), token);
    let csrf = page.field("csrf");
    // A validation error keeps the token in the form.
    let mut bad = admin_form(&csrf, &token, "root@example.com", "Root Org");
    bad[4] = ("password2", "other password");
    let page = op.post("/setup", &bad).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("do not match"));
    assert_eq!(page.field("token"), token);
    let mut bad = admin_form(&csrf, &token, "not-an-address", "Root Org");
    bad.push(("org_slug", "Bad Slug!"));
    assert_eq!(op.post("/setup", &bad).await.status, 400);
    // The organization `acme` exists already: its slug is refused, nothing is kept.
    let page = op
        .post(
            "/setup",
            &admin_form(&csrf, &token, "root@example.com", "Acme"),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("already exists"), "{}", page.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM setup_claims").await, 0);

    let page = op
        .post(
            "/setup",
            &admin_form(&csrf, &token, "Root@Example.com", "Root Org"),
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location(),
        "/organizations/root-org/projects?welcome=1"
    );
    assert_eq!(op.get("/organizations/root-org/projects").await.status, 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE email = 'root@example.com' AND is_superuser")
            .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM members m JOIN organizations o ON o.id = m.organization_id \
             WHERE o.slug = 'root-org' AND m.role = 'owner'"
        )
        .await,
        1
    );
    assert!(
        !app.data_dir.join("setup-token").exists(),
        "the link is removed once used"
    );

    // The token is worthless now: the page sends to the login, posts are refused.
    let mut late = Browser::new(&app.url);
    assert_eq!(
        late.get(&format!("/setup?token={token}")).await.location(),
        "/login"
    );
    let csrf = late.get("/login").await.field("csrf");
    let page = late
        .post(
            "/setup",
            &admin_form(&csrf, &token, "evil@example.com", "Evil"),
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    // Even with every account gone, setup stays closed (the CLI remains the way in).
    app.db
        .execute_unprepared("DELETE FROM members")
        .await
        .expect("delete");
    app.db
        .execute_unprepared("DELETE FROM users")
        .await
        .expect("delete");
    let page = late.get(&format!("/setup?token={token}")).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("faultline user create"), "{}", page.body);
    let page = late
        .post(
            "/setup",
            &admin_form(&csrf, &token, "evil@example.com", "Evil"),
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn an_administrator_made_on_the_command_line_closes_setup() {
    let app = spawn_app(&[]).await;
    let token = setup_token(&app);
    faultline_app::accounts::users::create(&app.db, "ops@example.com", PASSWORD, true)
        .await
        .expect("user");
    let mut b = Browser::new(&app.url);
    assert_eq!(
        b.get(&format!("/setup?token={token}")).await.location(),
        "/login"
    );
    let csrf = b.get("/login").await.field("csrf");
    let page = b
        .post(
            "/setup",
            &admin_form(&csrf, &token, "evil@example.com", "Evil"),
        )
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn concurrent_setups_create_exactly_one_administrator() {
    for engine in ["sqlite", "postgres"] {
        let app = spawn(engine).await;
        let token = setup_token(&app);
        // Ten operators with their own sessions, each with a filled-in form.
        let mut racers = Vec::new();
        for i in 0..10 {
            let mut b = Browser::new(&app.url);
            let csrf = b.get(&format!("/setup?token={token}")).await.field("csrf");
            racers.push((b, csrf, i));
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(racers.len()));
        let tasks: Vec<_> = racers
            .into_iter()
            .map(|(mut b, csrf, i)| {
                let (token, barrier) = (token.clone(), barrier.clone());
                tokio::spawn(async move {
                    let email = format!("admin{i}@example.com");
                    let org = format!("Org {i}");
                    barrier.wait().await;
                    b.post("/setup", &admin_form(&csrf, &token, &email, &org))
                        .await
                        .status
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.expect("task"));
        }
        statuses.sort();
        assert_eq!(
            statuses.iter().filter(|s| **s == 303).count(),
            1,
            "{engine}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 303 || *s == 403),
            "{engine}: {statuses:?}"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1, "{engine}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM organizations").await,
            2,
            "{engine}: acme and the winner's"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM members").await,
            1,
            "{engine}"
        );
    }
}

/// Kills the server when the test ends, passed or failed.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary, as an operator starts it on a public interface: only the link it
/// printed sets it up.
#[tokio::test]
async fn faultline_web_on_every_interface_needs_the_printed_link() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data_dir = std::env::temp_dir().join(format!(
        "faultline-first-run-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("web")
            .current_dir(std::env::temp_dir())
            .env("FAULTLINE_BIND", format!("0.0.0.0:{port}"))
            .env("FAULTLINE_DATA_DIR", &data_dir)
            .env("FAULTLINE_MIN_FREE_DISK_MB", "0")
            .env_remove("FAULTLINE_CONFIG")
            .env_remove("FAULTLINE_SECRET_KEY")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("faultline starts"),
    );
    let stdout = server.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (link, token) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the setup link is printed on stdout");
            if let Some((_, token)) = line.trim().split_once("/setup?token=") {
                return (line.trim().to_string(), token.to_string());
            }
        }
    })
    .await
    .expect("reader");
    assert_eq!(link, format!("http://localhost:{port}/setup?token={token}"));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = tokio::task::spawn_blocking({
            let url = format!("{base}/readyz");
            move || ureq::get(&url).call().is_ok()
        })
        .await
        .unwrap_or(false);
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "faultline web did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stranger = Browser::new(&base);
    let page = stranger.get("/setup").await;
    assert_eq!(page.status, 403);
    assert!(!page.body.contains(&token));
    let file = std::fs::read_to_string(data_dir.join("setup-token")).expect("token file");
    assert_eq!(file.trim(), link);
    let page = stranger.get(&format!("/setup?token={token}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.field("csrf");
    let page = stranger
        .post(
            "/setup",
            &admin_form(&csrf, &token, "op@example.com", "Ops"),
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}
