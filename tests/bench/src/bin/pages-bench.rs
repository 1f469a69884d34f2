//! Page timings of the web UI with a large database (BENCHMARKS.md, "Pages").
//!
//! `pages-bench generate --data-dir D` fills `D/faultline.db` (SQLite) with one project of
//! 10,000 issues and 1,000,000 events (half spread evenly, half skewed so a few issues
//! hold thousands of events), their tag facets and a user `bench@example.com` (password
//! `bench password`). Rows are generated inside SQLite (recursive CTEs), so this takes
//! about a minute. Then start `faultline web` on that data dir and run
//! `pages-bench measure --url http://127.0.0.1:PORT`: it logs in like a browser and times
//! sequential requests of the issues list (sorts, searches, the next page, org-wide) and
//! the issue page (the hottest issue with 24 h and 30 d charts, a typical one), printing
//! p50 / p95 / max per page.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fill a data directory's SQLite database.
    Generate {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: i64,
        #[arg(long, default_value_t = 10_000)]
        issues: i64,
    },
    /// Time pages of a running `faultline web` on that data directory.
    Measure {
        #[arg(long)]
        url: String,
        /// Timed requests per page (after 5 warm-up requests).
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
}

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench password";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn exec(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> anyhow::Result<u64> {
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    Ok(db.execute_raw(stmt).await?.rows_affected())
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| anyhow!("no row"))?;
    Ok(row.try_get_by_index(0)?)
}

/// A realistic stored event (what the issue page decodes and renders).
fn rich_payload() -> anyhow::Result<Vec<u8>> {
    let frames: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            serde_json::json!({
                "filename": format!("app/handlers/module{i}.py"), "function": format!("handle_{i}"),
                "module": format!("app.handlers.module{i}"), "lineno": 40 + i, "in_app": i > 5,
                "pre_context": ["    user = load_user(request)", "    cart = user.cart", ""],
                "context_line": "    total = sum(item.price for item in cart) / len(cart)",
                "post_context": ["    return render(total)", "", "def other():"],
                "vars": {"request": "<WSGIRequest GET '/checkout'>", "cart": "[]", "i": i},
            })
        })
        .collect();
    let crumbs: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"timestamp": 1.7e9 + i as f64, "category": "http", "message": format!("GET /api/items/{i}"), "level": "info", "data": {"status": 200}}))
        .collect();
    let event = serde_json::json!({
        "event_id": "0".repeat(32), "timestamp": 1.7e9, "platform": "python", "level": "error",
        "release": "2.0.4", "environment": "production", "server_name": "web-1",
        "exception": {"values": [{"type": "ZeroDivisionError", "value": "division by zero",
            "mechanism": {"type": "django", "handled": false}, "stacktrace": {"frames": frames}}]},
        "breadcrumbs": {"values": crumbs},
        "request": {"url": "https://shop.example.com/checkout", "method": "POST",
            "headers": [["User-Agent", "Mozilla/5.0"], ["Accept", "text/html"]]},
        "user": {"id": "42", "email": "alice@example.com", "ip_address": "10.1.2.3"},
        "contexts": {"runtime": {"name": "CPython", "version": "3.12.1"}, "os": {"name": "Linux"},
            "trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}},
        "tags": {"customer": "vip"},
        "sdk": {"name": "sentry.python", "version": "2.75.0"},
    });
    Ok(faultline_core::compress::zstd(
        event.to_string().as_bytes(),
    )?)
}

async fn generate(data_dir: std::path::PathBuf, events: i64, issues: i64) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("faultline.db").display()
    );
    let db = faultline_core::db::connect_url(&url).await?;
    faultline_core::db::migrate(&db).await?;
    if scalar(&db, "SELECT COUNT(*) FROM issues").await? > 0 {
        bail!(
            "{} already has issues; use a fresh directory",
            data_dir.display()
        );
    }
    let t0 = Instant::now();
    let now = now_ms();
    let hash = {
        use argon2::{Argon2, PasswordHasher};
        Argon2::default()
            .hash_password(PASSWORD.as_bytes())
            .map_err(|e| anyhow!("{e}"))?
            .to_string()
    };
    exec(&db, "INSERT INTO users (id, email, password_hash, is_superuser, created_at) VALUES (1, ?, ?, 1, ?)", vec![EMAIL.into(), hash.into(), now.into()]).await?;
    exec(
        &db,
        "INSERT INTO organizations (id, slug, name, created_at) VALUES (1, 'bench', 'Bench', ?)",
        vec![now.into()],
    )
    .await?;
    exec(&db, "INSERT INTO members (organization_id, user_id, role, created_at) VALUES (1, 1, 'owner', ?)", vec![now.into()]).await?;
    exec(&db, "INSERT INTO projects (id, organization_id, slug, name, platform, enabled, retention_days, max_events_per_issue, issue_counter, created_at) VALUES (1, 1, 'load', 'load', 'python', 1, 90, 1000000, ?, ?)", vec![issues.into(), now.into()]).await?;
    exec(
        &db,
        "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?) \
         INSERT INTO issues (id, project_id, short_id, title, culprit, exception_type, exception_value, level, platform, status, first_seen, last_seen, times_seen, users_seen, first_release, last_release) \
         SELECT k, 1, k, \
           CASE k % 4 WHEN 0 THEN 'TypeError' WHEN 1 THEN 'ValueError' WHEN 2 THEN 'KeyError' ELSE 'ZeroDivisionError' END || ': failure number ' || k, \
           'app.handlers.module' || (k % 97) || ' in handle_' || k, 'ValueError', 'failure', \
           CASE k % 7 WHEN 0 THEN 'warning' WHEN 1 THEN 'fatal' ELSE 'error' END, 'python', \
           CASE k % 10 WHEN 0 THEN 'resolved' WHEN 1 THEN 'ignored' ELSE 'unresolved' END, \
           0, 0, 0, 0, '2.0.0', '2.0.4' FROM n",
        vec![issues.into()],
    )
    .await?;
    println!("issues: {:.1}s", t0.elapsed().as_secs_f64());
    // Events, in chunks so progress shows. Even i: evenly over the issues; odd i: skewed
    // towards low issue ids (issue 1 gets ~1% of all events). Newest first, 2.592 s apart
    // (1,000,000 events span 30 days). The newest 20,000 carry a full realistic payload.
    let rich = rich_payload()?;
    let small =
        faultline_core::compress::zstd(br#"{"platform":"python","level":"error","message":"x"}"#)?;
    let chunk = 100_000;
    let mut start = 0;
    while start < events {
        let end = (start + chunk).min(events) - 1;
        let payload = if start < 20_000 {
            rich.clone()
        } else {
            small.clone()
        };
        exec(
            &db,
            "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
             INSERT INTO events (project_id, issue_id, event_id, timestamp, received, level, release, environment, platform, trace_id, user_ident, title, culprit, payload) \
             SELECT 1, CASE WHEN i % 2 = 0 THEN (i / 2) % ? ELSE ((i / 2) % ?) * ((i / 2) % ?) / ? END + 1, \
               printf('%032x', i), ? - i * 2592, ? - i * 2592, 'error', '2.0.' || (i % 5), 'production', 'python', \
               CASE WHEN i % 50 = 0 THEN printf('%032x', i / 50) END, 'id:' || (i % 997), 'event', NULL, \
               CASE WHEN i < 20000 THEN ? ELSE ? END FROM n",
            vec![
                start.into(), end.into(), issues.into(), issues.into(), issues.into(), issues.into(),
                now.into(), now.into(), payload.clone().into(), payload.into(),
            ],
        )
        .await?;
        start = end + 1;
        println!("events: {start} ({:.1}s)", t0.elapsed().as_secs_f64());
    }
    exec(
        &db,
        "UPDATE issues SET \
           times_seen = (SELECT COUNT(*) FROM events e WHERE e.issue_id = issues.id), \
           first_seen = COALESCE((SELECT MIN(timestamp) FROM events e WHERE e.issue_id = issues.id), 0), \
           last_seen = COALESCE((SELECT MAX(timestamp) FROM events e WHERE e.issue_id = issues.id), 0)",
        vec![],
    )
    .await?;
    exec(
        &db,
        "UPDATE issues SET users_seen = MIN(times_seen, 997)",
        vec![],
    )
    .await?;
    println!("issue counters: {:.1}s", t0.elapsed().as_secs_f64());
    exec(
        &db,
        "WITH t(key, value, share) AS (VALUES \
           ('release','2.0.0',1),('release','2.0.1',1),('release','2.0.2',2),('release','2.0.3',3),('release','2.0.4',3), \
           ('environment','production',8),('environment','staging',2),('level','error',10), \
           ('browser','Chrome 120',6),('browser','Firefox 121',3),('browser','Safari 17',1), \
           ('os','Windows 11',5),('os','macOS 14',5),('server_name','web-1',5),('server_name','web-2',5), \
           ('user','id:1',2),('user','id:2',2),('user','id:3',2),('handled','yes',7),('handled','no',3)) \
         INSERT INTO issue_tag_values (issue_id, key, value, times_seen, first_seen, last_seen) \
         SELECT i.id, t.key, t.value, MAX(1, i.times_seen * t.share / 10), i.first_seen, i.last_seen \
         FROM issues i CROSS JOIN t",
        vec![],
    )
    .await?;
    exec(&db, "ANALYZE", vec![]).await?;
    println!(
        "done in {:.1}s: {} issues, {} events, {} tag values; busiest issue has {} events",
        t0.elapsed().as_secs_f64(),
        scalar(&db, "SELECT COUNT(*) FROM issues").await?,
        scalar(&db, "SELECT COUNT(*) FROM events").await?,
        scalar(&db, "SELECT COUNT(*) FROM issue_tag_values").await?,
        scalar(&db, "SELECT MAX(times_seen) FROM issues").await?,
    );
    Ok(())
}

struct Client {
    agent: ureq::Agent,
    base: String,
    cookie: String,
}

impl Client {
    fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut resp = self
            .agent
            .get(&format!("{}{}", self.base, path))
            .header("Cookie", &self.cookie)
            .call()?;
        Ok((resp.status().as_u16(), resp.body_mut().read_to_string()?))
    }
}

fn session_cookie(resp: &ureq::http::Response<ureq::Body>) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("faultline_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

fn login(base: &str) -> anyhow::Result<Client> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut resp = agent.get(&format!("{base}/login")).call()?;
    let cookie = session_cookie(&resp).context("no session cookie")?;
    let body = resp.body_mut().read_to_string()?;
    let marker = "name=\"csrf\" value=\"";
    let at = body.find(marker).context("no csrf")? + marker.len();
    let csrf = &body[at..at + 64];
    let form = format!(
        "csrf={csrf}&email={}&password={}",
        EMAIL.replace('@', "%40"),
        PASSWORD.replace(' ', "+")
    );
    let resp = agent
        .post(&format!("{base}/login"))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form.as_bytes())?;
    if resp.status().as_u16() != 303 {
        bail!("login failed: HTTP {}", resp.status());
    }
    let cookie = session_cookie(&resp).context("no session after login")?;
    Ok(Client {
        agent,
        base: base.to_string(),
        cookie,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn measure(url: &str, requests: usize) -> anyhow::Result<()> {
    let client = login(url.trim_end_matches('/'))?;
    let list = "/organizations/bench/projects/load";
    let (_, first) = client.get(list)?;
    let next = first
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|h| h.contains("cursor=")))
        .map(|h| h.replace("&amp;", "&"))
        .context("no next page link")?;
    let pages: Vec<(&str, String)> = vec![
        ("issues list (unresolved, last seen)", list.to_string()),
        ("issues list, sort by events", format!("{list}?sort=freq")),
        (
            "issues list, sort by users, 14 d graphs",
            format!("{list}?sort=user&period=14d"),
        ),
        (
            "issues list, tag search release:2.0.3 browser:\"Safari 17\"",
            format!("{list}?query=is%3Aunresolved+release%3A2.0.3+browser%3A%22Safari+17%22"),
        ),
        (
            "issues list, free text",
            format!("{list}?query=is%3Aall+ZeroDivisionError+module42"),
        ),
        ("issues list, second page", next),
        (
            "issues list, whole organization",
            "/organizations/bench/issues".into(),
        ),
        (
            "issue page, busiest issue (24 h chart)",
            "/organizations/bench/issues/1".into(),
        ),
        (
            "issue page, busiest issue (30 d chart)",
            "/organizations/bench/issues/1?period=30d".into(),
        ),
        (
            "issue page, typical issue",
            "/organizations/bench/issues/5000".into(),
        ),
    ];
    println!("| page | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|");
    for (name, path) in pages {
        for _ in 0..5 {
            let (status, _) = client.get(&path)?;
            if status != 200 {
                bail!("{path}: HTTP {status}");
            }
        }
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let (status, body) = client.get(&path)?;
            times.push(t.elapsed());
            if status != 200 || body.len() < 1000 {
                bail!("{path}: HTTP {status}");
            }
        }
        times.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            percentile(&times, 1.0)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Generate {
            data_dir,
            events,
            issues,
        } => generate(data_dir, events, issues).await,
        Command::Measure { url, requests } => {
            tokio::task::spawn_blocking(move || measure(&url, requests)).await?
        }
    }
}
