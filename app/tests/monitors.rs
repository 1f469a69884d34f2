//! Cron monitors on SQLite and PostgreSQL: check-ins through ingest (envelope items and the
//! HTTP endpoint) and the worker into the Web API; the clock with a controllable "now"
//! (missed, timeouts, issues opened and resolved, the alert outbox, the lease and its
//! hand-over, ticks neither lost nor doubled); the monitors page with its forms.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use faultline_core::protocol::check_in::CheckIn;
use faultline_worker::monitors::{Outcome, apply_check_in, clock};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers.

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
        _ => {
            let url = fresh_postgres().await;
            spawn_app(&[("DATABASE_URL", &url)]).await
        }
    }
}

struct Resp {
    status: u16,
    body: String,
    headers: HashMap<String, String>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<String>) -> Resp {
    let (method, url) = (method.to_string(), url.to_string());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut resp = match body {
            Some(b) => agent.run(req.body(b).expect("request")),
            None => agent.run(req.body(()).expect("request")),
        }
        .expect("request sent");
        let mut out = HashMap::new();
        for (k, v) in resp.headers() {
            let v = v.to_str().unwrap_or_default().to_string();
            out.entry(k.as_str().to_ascii_lowercase())
                .and_modify(|old: &mut String| {
                    old.push('\n');
                    old.push_str(&v)
                })
                .or_insert(v);
        }
        Resp {
            status: resp.status().as_u16(),
            body: resp.body_mut().read_to_string().unwrap_or_default(),
            headers: out,
        }
    })
    .await
    .expect("request task")
}

async fn api(app: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    call(
        method,
        &format!("{}/api/0/{}", app.url, path.trim_start_matches('/')),
        &headers,
        body.map(|b| b.to_string()),
    )
    .await
}

fn envelope(items: &[(&str, String)]) -> String {
    let mut out = String::from("{}\n");
    for (ty, payload) in items {
        out.push_str(&json!({"type": ty, "length": payload.len()}).to_string());
        out.push('\n');
        out.push_str(payload);
        out.push('\n');
    }
    out
}

async fn send_envelope(app: &TestApp, body: String) -> Resp {
    let auth = app.auth_header();
    call(
        "POST",
        &app.envelope_url(),
        &[
            ("X-Sentry-Auth", auth.as_str()),
            ("Content-Type", "application/x-sentry-envelope"),
        ],
        Some(body),
    )
    .await
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("row");
    row.try_get_by_index(0).expect("integer")
}

async fn text(db: &DatabaseConnection, sql: &str) -> Option<String> {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .and_then(|r| r.try_get_by_index::<Option<String>>(0).ok().flatten())
}

/// Waits until `sql` counts at least `n`.
async fn wait_count(db: &DatabaseConnection, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if scalar(db, sql).await >= n {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const NIGHTLY_ID: &str = "d4a0c8c4a6b14c4c8b35f0b6b2a8b3a1";

// ---------------------------------------------------------------------------------------
// Ingest -> worker -> Web API.

#[tokio::test]
async fn check_ins_reach_the_web_api_on_sqlite() {
    check_ins_reach_the_web_api("sqlite").await;
}

#[tokio::test]
async fn check_ins_reach_the_web_api_on_postgres() {
    check_ins_reach_the_web_api("postgres").await;
}

async fn check_ins_reach_the_web_api(engine: &str) {
    let app = spawn(engine).await;
    let db = &app.db;
    let token = faultline_app::accounts::tokens::create_for_org(db, "acme", &[], "ci")
        .await
        .expect("token");
    faultline_app::accounts::orgs::create(db, "other", None, None)
        .await
        .expect("org");
    faultline_app::accounts::projects::create(db, "other", "site", None)
        .await
        .expect("project");
    let other_token = faultline_app::accounts::tokens::create_for_org(db, "other", &[], "ci")
        .await
        .expect("token");

    // sentry-python's @monitor: in_progress with the config, in one envelope with an event,
    // a check-in whose crontab does not parse and one with an unknown status.
    let opening = json!({
        "check_in_id": NIGHTLY_ID, "monitor_slug": "nightly", "status": "in_progress",
        "environment": "production", "release": "1.0",
        "monitor_config": {"schedule": {"type": "crontab", "value": "0 3 * * *"},
            "checkin_margin": 5, "max_runtime": 10, "timezone": "Europe/Vienna",
            "failure_issue_threshold": 2, "recovery_threshold": 1}
    });
    let bad_crontab = json!({"monitor_slug": "broken", "status": "ok",
        "monitor_config": {"schedule": {"type": "crontab", "value": "61 * * * *"}}});
    let bad_status = json!({"monitor_slug": "nightly", "status": "done"});
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let resp = send_envelope(
        &app,
        envelope(&[
            ("check_in", opening.to_string()),
            ("check_in", bad_crontab.to_string()),
            ("check_in", bad_status.to_string()),
            ("check_in", "not json".into()),
            (
                "event",
                json!({"event_id": event_id, "message": "next to check-ins"}).to_string(),
            ),
        ]),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // The rest of the envelope is kept.
    wait_count(
        db,
        &format!("SELECT COUNT(*) FROM events WHERE event_id = '{event_id}'"),
        1,
    )
    .await;
    wait_count(db, "SELECT COUNT(*) FROM monitor_checkins", 1).await;
    assert_eq!(
        scalar(db, "SELECT COUNT(*) FROM monitors WHERE slug = 'broken'").await,
        0
    );

    // The closing check-in carries no config: it finds the monitor the opening one made
    // and updates that one row.
    let closing = json!({"check_in_id": NIGHTLY_ID, "monitor_slug": "nightly", "status": "ok",
        "duration": 2.5, "environment": "production"});
    let resp = send_envelope(&app, envelope(&[("check_in", closing.to_string())])).await;
    assert_eq!(resp.status, 200);
    wait_count(
        db,
        "SELECT COUNT(*) FROM monitor_checkins WHERE status = 'ok'",
        1,
    )
    .await;
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM monitor_checkins").await, 1);

    // The Web API as sentry-cli reads it.
    let list = api(&app, "GET", "organizations/acme/monitors/", &token, None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.headers
            .get("link")
            .is_some_and(|l| l.contains("results=\"false\""))
    );
    let list = list.json();
    let m = &list[0];
    assert_eq!(m["slug"], "nightly");
    assert_eq!(m["status"], "active");
    assert_eq!(m["config"]["schedule"], "0 3 * * *");
    assert_eq!(m["config"]["schedule_type"], "crontab");
    assert_eq!(m["config"]["timezone"], "Europe/Vienna");
    assert_eq!(m["config"]["checkin_margin"], 5);
    assert_eq!(m["environments"][0]["name"], "production");
    assert_eq!(m["environments"][0]["status"], "ok");
    assert!(m["environments"][0]["nextCheckIn"].is_string());
    let id = m["id"].as_str().expect("id").to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let by_id = api(
        &app,
        "GET",
        &format!("organizations/acme/monitors/{id}/"),
        &token,
        None,
    )
    .await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.json()["slug"], "nightly");

    let check_ins = api(
        &app,
        "GET",
        "organizations/acme/monitors/nightly/checkins/",
        &token,
        None,
    )
    .await;
    assert_eq!(check_ins.status, 200, "{}", check_ins.body);
    let check_ins = check_ins.json();
    assert_eq!(check_ins.as_array().map(Vec::len), Some(1));
    assert_eq!(check_ins[0]["status"], "ok");
    assert_eq!(check_ins[0]["duration"], 2500, "milliseconds");
    assert_eq!(
        check_ins[0]["id"].as_str().map(|s| s.replace('-', "")),
        Some(NIGHTLY_ID.to_string())
    );

    // The HTTP endpoint, as curl calls it.
    let cron = |slug: &str, query: &str| {
        format!(
            "{}/api/{}/cron/{slug}/{}/{query}",
            app.url, app.project_id, app.public_key
        )
    };
    let resp = call(
        "GET",
        &cron("nightly", "?status=in_progress&environment=staging"),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let json_body = json!({"status": "ok", "duration": 1,
        "monitor_config": {"schedule": {"type": "interval", "value": 2, "unit": "hour"}}});
    let resp = call(
        "POST",
        &cron("hourly-sync", ""),
        &[("Content-Type", "application/json")],
        Some(json_body.to_string()),
    )
    .await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let resp = call("POST", &cron("nightly", "?status=done"), &[], None).await;
    assert_eq!(resp.status, 400);
    assert!(resp.body.contains("unknown status"), "{}", resp.body);
    let resp = call(
        "POST",
        &cron("nightly", ""),
        &[("Content-Type", "application/json")],
        Some("[1,2".into()),
    )
    .await;
    assert_eq!(resp.status, 400);
    let resp = call(
        "GET",
        &format!(
            "{}/api/{}/cron/nightly/{}/?status=ok",
            app.url,
            app.project_id,
            "0".repeat(32)
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status, 403, "unknown key");
    // An unknown monitor without config is accepted and dropped by the worker.
    let resp = call("GET", &cron("ghost", "?status=in_progress"), &[], None).await;
    assert_eq!(resp.status, 202);
    wait_count(
        db,
        "SELECT COUNT(*) FROM monitors WHERE slug = 'hourly-sync'",
        1,
    )
    .await;
    wait_count(
        db,
        "SELECT COUNT(*) FROM monitor_environments WHERE environment = 'staging'",
        1,
    )
    .await;
    assert_eq!(
        scalar(db, "SELECT COUNT(*) FROM monitors WHERE slug = 'ghost'").await,
        0
    );
    let hourly = api(
        &app,
        "GET",
        "organizations/acme/monitors/hourly-sync/",
        &token,
        None,
    )
    .await
    .json();
    assert_eq!(hourly["config"]["schedule"], json!([2, "hour"]));
    assert_eq!(hourly["config"]["schedule_type"], "interval");

    // Updates, scopes, isolation, missing rows.
    let put = api(
        &app,
        "PUT",
        "organizations/acme/monitors/nightly/",
        &token,
        Some(json!({"name": "Nightly backup", "isMuted": true,
            "config": {"schedule": "30 4 * * *", "max_runtime": 60}})),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let put = put.json();
    assert_eq!(put["name"], "Nightly backup");
    assert_eq!(put["isMuted"], true);
    assert_eq!(put["config"]["schedule"], "30 4 * * *");
    assert_eq!(put["config"]["max_runtime"], 60);
    assert_eq!(put["config"]["checkin_margin"], 5, "kept");
    for bad in [
        json!({"config": {"schedule": "every day"}}),
        json!({"config": {"schedule": [0, "hour"]}}),
        json!({"config": {"timezone": "Nowhere/Land"}}),
        json!({"status": "paused"}),
        json!({"name": ""}),
        json!([1]),
    ] {
        let r = api(
            &app,
            "PUT",
            "organizations/acme/monitors/nightly/",
            &token,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    for (method, path) in [
        ("GET", "organizations/acme/monitors/nightly/"),
        ("PUT", "organizations/acme/monitors/nightly/"),
        ("DELETE", "organizations/acme/monitors/nightly/"),
        ("GET", "organizations/acme/monitors/nightly/checkins/"),
        ("GET", "organizations/acme/monitors/"),
    ] {
        let body = (method == "PUT").then(|| json!({"name": "x"}));
        let r = api(&app, method, path, &other_token, body).await;
        assert_eq!(r.status, 404, "{method} {path} from another organization");
    }
    let r = api(
        &app,
        "GET",
        "organizations/acme/monitors/nope/",
        &token,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = api(
        &app,
        "GET",
        "organizations/acme/monitors/nope/checkins/",
        &token,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let read_only =
        faultline_app::accounts::tokens::create_for_org(db, "acme", &["project:read".into()], "ro")
            .await
            .expect("token");
    let r = api(
        &app,
        "GET",
        "organizations/acme/monitors/",
        &read_only,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = api(
        &app,
        "PUT",
        "organizations/acme/monitors/nightly/",
        &read_only,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = api(
        &app,
        "DELETE",
        "organizations/acme/monitors/nightly/",
        &read_only,
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let org_only =
        faultline_app::accounts::tokens::create_for_org(db, "acme", &["org:read".into()], "org")
            .await
            .expect("token");
    let r = api(&app, "GET", "organizations/acme/monitors/", &org_only, None).await;
    assert_eq!(r.status, 403);
    let r = api(
        &app,
        "GET",
        "organizations/acme/monitors/",
        "not-a-token",
        None,
    )
    .await;
    assert_eq!(r.status, 401);

    let del = api(
        &app,
        "DELETE",
        "organizations/acme/monitors/nightly/",
        &token,
        None,
    )
    .await;
    assert_eq!(del.status, 202);
    let r = api(
        &app,
        "GET",
        "organizations/acme/monitors/nightly/",
        &token,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM monitor_checkins WHERE guid = 'd4a0c8c4a6b14c4c8b35f0b6b2a8b3a1'"
        )
        .await,
        0
    );
}

// ---------------------------------------------------------------------------------------
// The worker's rules and the clock, with the time passed in.

/// A whole minute, far from any schedule's edge: 2026-12-07 10:00:00 UTC.
const T0: i64 = 1_796_637_600_000;
const MIN: i64 = 60_000;

fn check_in(v: Value) -> CheckIn {
    CheckIn::parse(v.to_string().as_bytes()).expect("check-in parses")
}

async fn setup_project(engine: &str) -> (DatabaseConnection, i64) {
    let db = match engine {
        "sqlite" => faultline_core::db::testing::sqlite().await,
        _ => faultline_core::db::testing::postgres().await,
    }
    .expect("database");
    faultline_app::accounts::orgs::create(&db, "acme", None, None)
        .await
        .expect("org");
    let (project, _) = faultline_app::accounts::projects::create(&db, "acme", "jobs", None)
        .await
        .expect("project");
    (db, project)
}

#[tokio::test]
async fn the_clock_marks_missed_and_timeouts_and_alerts_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let (db, project) = setup_project(engine).await;
        let every10 = json!({"schedule": {"type": "interval", "value": 10, "unit": "minute"},
            "checkin_margin": 1, "max_runtime": 5, "failure_issue_threshold": 2,
            "recovery_threshold": 1});
        let ok =
            check_in(json!({"monitor_slug": "sync", "status": "ok", "monitor_config": every10}));
        assert_eq!(
            apply_check_in(&db, project, &ok, T0, T0)
                .await
                .expect("apply"),
            Outcome::Stored
        );
        assert_eq!(
            scalar(&db, "SELECT next_checkin_latest FROM monitor_environments").await,
            T0 + 11 * MIN,
            "{engine}: next at +10 min, latest one minute later"
        );
        assert!(clock::acquire(&db, "a", T0).await.expect("lease"));
        assert_eq!(
            clock::run_due(&db, "a", T0 + 5 * MIN).await.expect("tick"),
            clock::TickReport {
                ticks: 1,
                missed: 0,
                timeouts: 0
            }
        );
        // Six whole minutes later, each run once: the one at +11 finds the miss.
        let r = clock::run_due(&db, "a", T0 + 11 * MIN + 30_000)
            .await
            .expect("tick");
        assert_eq!((r.ticks, r.missed), (6, 1), "{engine}");
        assert_eq!(
            text(&db, "SELECT status FROM monitor_environments")
                .await
                .as_deref(),
            Some("error")
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM issues").await,
            0,
            "threshold is 2"
        );
        // The same minute again does nothing: no tick is doubled.
        let again = clock::run_due(&db, "a", T0 + 11 * MIN + 50_000)
            .await
            .expect("tick");
        assert_eq!(again, clock::TickReport::default());
        // The second miss opens the issue, with its alert in the outbox.
        let r = clock::run_due(&db, "a", T0 + 21 * MIN).await.expect("tick");
        assert_eq!(r.missed, 1, "{engine}");
        assert_eq!(
            text(&db, "SELECT title FROM issues").await.as_deref(),
            Some("Monitor failure: sync missed")
        );
        assert_eq!(
            text(&db, "SELECT kind FROM alert_outbox").await.as_deref(),
            Some("monitor_failure")
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM monitor_checkins WHERE status = 'missed'"
            )
            .await,
            2
        );
        // The alert dispatches through the project's default rule, which takes the new
        // trigger: one queued email.
        db.execute_unprepared("UPDATE alert_rules SET extra_recipients = 'ops@example.com'")
            .await
            .expect("recipient");
        let dispatched = faultline_worker::alerts::dispatch::dispatch_pending(
            &db,
            &faultline_core::config::AlertSettings::default(),
            true,
        )
        .await
        .expect("dispatch");
        assert_eq!(dispatched, 1, "{engine}");
        assert_eq!(
            text(
                &db,
                "SELECT kind || '/' || status || '/' || recipient FROM notifications"
            )
            .await
            .as_deref(),
            Some("monitor_failure/queued/ops@example.com"),
            "{engine}"
        );
        // A third miss counts on the open issue instead of opening another.
        clock::run_due(&db, "a", T0 + 31 * MIN).await.expect("tick");
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM issues").await, 1);
        assert_eq!(scalar(&db, "SELECT times_seen FROM issues").await, 2);
        // One OK resolves it (recovery_threshold 1).
        let ok = check_in(json!({"monitor_slug": "sync", "status": "ok"}));
        apply_check_in(&db, project, &ok, T0 + 32 * MIN, T0 + 32 * MIN)
            .await
            .expect("apply");
        assert_eq!(
            text(&db, "SELECT status FROM issues").await.as_deref(),
            Some("resolved"),
            "{engine}"
        );
        assert_eq!(
            text(&db, "SELECT status FROM monitor_environments")
                .await
                .as_deref(),
            Some("ok")
        );

        // A run that never ends times out after max_runtime (5 min).
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let start = check_in(
            json!({"monitor_slug": "sync", "status": "in_progress", "check_in_id": run_id}),
        );
        apply_check_in(&db, project, &start, T0 + 33 * MIN, T0 + 33 * MIN)
            .await
            .expect("apply");
        let r = clock::run_due(&db, "a", T0 + 38 * MIN).await.expect("tick");
        assert_eq!(r.timeouts, 1, "{engine}");
        assert_eq!(
            text(
                &db,
                &format!("SELECT status FROM monitor_checkins WHERE guid = '{run_id}'")
            )
            .await
            .as_deref(),
            Some("timeout")
        );
        // Its late close keeps `timeout` but records the duration.
        let late = check_in(
            json!({"monitor_slug": "sync", "status": "ok", "check_in_id": run_id, "duration": 420}),
        );
        apply_check_in(&db, project, &late, T0 + 40 * MIN, T0 + 40 * MIN)
            .await
            .expect("apply");
        assert_eq!(
            text(
                &db,
                &format!("SELECT status FROM monitor_checkins WHERE guid = '{run_id}'")
            )
            .await
            .as_deref(),
            Some("timeout")
        );
        assert_eq!(
            scalar(
                &db,
                &format!("SELECT duration_ms FROM monitor_checkins WHERE guid = '{run_id}'")
            )
            .await,
            420_000
        );
    }
}

#[tokio::test]
async fn one_clock_acts_and_hands_over_without_losing_ticks_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let (db, project) = setup_project(engine).await;
        let every_minute = json!({"schedule": {"type": "crontab", "value": "* * * * *"},
            "checkin_margin": 1, "failure_issue_threshold": 100});
        let ok = check_in(
            json!({"monitor_slug": "beat", "status": "ok", "monitor_config": every_minute}),
        );
        apply_check_in(&db, project, &ok, T0, T0)
            .await
            .expect("apply");
        assert!(clock::acquire(&db, "a", T0).await.expect("lease"));
        assert!(
            !clock::acquire(&db, "b", T0).await.expect("lease"),
            "{engine}: a holds it"
        );
        assert_eq!(
            clock::run_due(&db, "b", T0 + 3 * MIN).await.expect("tick"),
            clock::TickReport::default(),
            "b may not tick"
        );
        assert_eq!(
            clock::run_due(&db, "a", T0 + MIN)
                .await
                .expect("tick")
                .ticks,
            1
        );
        // a stops and hands over; b continues from a's last tick: +2, +3, +4.
        clock::release(&db, "a").await.expect("release");
        assert!(clock::acquire(&db, "b", T0 + 4 * MIN).await.expect("lease"));
        let r = clock::run_due(&db, "b", T0 + 4 * MIN).await.expect("tick");
        assert_eq!(r.ticks, 3, "{engine}: no tick lost");
        assert!(!clock::acquire(&db, "a", T0 + 4 * MIN).await.expect("lease"));
        // b dies without releasing: a takes over once the lease expired.
        assert!(
            clock::acquire(&db, "a", T0 + 4 * MIN + clock::LEASE_MS + 1)
                .await
                .expect("lease")
        );
        let r = clock::run_due(&db, "a", T0 + 6 * MIN).await.expect("tick");
        assert_eq!(r.ticks, 2, "{engine}");
        // Every expected minute from +2 on was reported missed exactly once (+1 is the
        // first expected; its latest is +2).
        let missed = scalar(
            &db,
            "SELECT COUNT(*) FROM monitor_checkins WHERE status = 'missed'",
        )
        .await;
        let distinct = scalar(
            &db,
            "SELECT COUNT(DISTINCT expected_time) FROM monitor_checkins WHERE status = 'missed'",
        )
        .await;
        assert_eq!(missed, distinct, "{engine}: no missed check-in doubled");
        assert_eq!(
            missed, 5,
            "{engine}: +1 .. +5 expected, each missed once by +6"
        );
        assert_eq!(
            scalar(&db, "SELECT last_tick FROM monitor_clock").await,
            T0 + 6 * MIN
        );
    }
}

#[tokio::test]
async fn check_ins_apply_in_order_and_unknown_monitors_are_a_clear_outcome() {
    for engine in ["sqlite", "postgres"] {
        let (db, project) = setup_project(engine).await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        // The close of a run whose opening check-in (with the config) is not applied yet:
        // young, so the queue retries it; old, it is an unknown monitor.
        let close = check_in(
            json!({"monitor_slug": "backup", "status": "ok", "check_in_id": id, "duration": 3}),
        );
        assert_eq!(
            apply_check_in(&db, project, &close, T0, T0 + 1_000)
                .await
                .expect("apply"),
            Outcome::NotYet
        );
        assert_eq!(
            apply_check_in(&db, project, &close, T0, T0 + 5 * MIN)
                .await
                .expect("apply"),
            Outcome::UnknownMonitor
        );
        let open_no_config = check_in(json!({"monitor_slug": "backup", "status": "in_progress"}));
        assert_eq!(
            apply_check_in(&db, project, &open_no_config, T0, T0)
                .await
                .expect("apply"),
            Outcome::UnknownMonitor
        );
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM monitors").await, 0);
        // sentry-cli's pair, in order: one row, closed.
        let cfg = json!({"schedule": {"type": "crontab", "value": "0 3 * * *"}, "timezone": "Europe/Vienna"});
        let open = check_in(
            json!({"monitor_slug": "backup", "status": "in_progress", "check_in_id": id, "monitor_config": cfg}),
        );
        apply_check_in(&db, project, &open, T0, T0)
            .await
            .expect("apply");
        apply_check_in(&db, project, &close, T0 + 3_000, T0 + 3_000)
            .await
            .expect("apply");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM monitor_checkins").await,
            1
        );
        assert_eq!(
            text(&db, "SELECT status FROM monitor_checkins")
                .await
                .as_deref(),
            Some("ok")
        );
        // 03:00 in Vienna on 2026-12-08 is 02:00 UTC.
        assert_eq!(
            scalar(&db, "SELECT next_checkin FROM monitor_environments").await,
            1_796_695_200_000,
            "{engine}"
        );
        // A redelivered opening check-in does not reopen the closed run.
        apply_check_in(&db, project, &open, T0, T0 + 10_000)
            .await
            .expect("apply");
        assert_eq!(
            text(&db, "SELECT status FROM monitor_checkins")
                .await
                .as_deref(),
            Some("ok")
        );
        // The other order (close first): the close wins, the late opening changes nothing.
        let id2 = uuid::Uuid::new_v4().simple().to_string();
        let close2 =
            check_in(json!({"monitor_slug": "backup", "status": "error", "check_in_id": id2}));
        let open2 = check_in(
            json!({"monitor_slug": "backup", "status": "in_progress", "check_in_id": id2}),
        );
        apply_check_in(&db, project, &close2, T0 + MIN, T0 + MIN)
            .await
            .expect("apply");
        assert_eq!(
            apply_check_in(&db, project, &open2, T0 + MIN, T0 + MIN)
                .await
                .expect("apply"),
            Outcome::Unchanged
        );
        assert_eq!(
            text(
                &db,
                &format!("SELECT status FROM monitor_checkins WHERE guid = '{id2}'")
            )
            .await
            .as_deref(),
            Some("error")
        );
        // A nil id closes the newest open run of the environment.
        let open3 = check_in(json!({"monitor_slug": "backup", "status": "in_progress"}));
        apply_check_in(&db, project, &open3, T0 + 2 * MIN, T0 + 2 * MIN)
            .await
            .expect("apply");
        let nil_close = check_in(json!({"monitor_slug": "backup", "status": "ok",
            "check_in_id": "00000000-0000-0000-0000-000000000000"}));
        apply_check_in(&db, project, &nil_close, T0 + 3 * MIN, T0 + 3 * MIN)
            .await
            .expect("apply");
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM monitor_checkins WHERE status = 'in_progress'"
            )
            .await,
            0,
            "{engine}"
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT MAX(duration_ms) FROM monitor_checkins WHERE date_added = 1796637720000"
            )
            .await,
            MIN,
            "duration from the times when the SDK sends none"
        );
        // A disabled monitor drops check-ins.
        db.execute_unprepared("UPDATE monitors SET status = 'disabled'")
            .await
            .expect("disable");
        assert_eq!(
            apply_check_in(&db, project, &open3, T0 + 4 * MIN, T0 + 4 * MIN)
                .await
                .expect("apply"),
            Outcome::Disabled
        );
    }
}

// ---------------------------------------------------------------------------------------
// The monitors page.

struct Browser {
    base: String,
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, method: &str, path: &str, form: Option<String>) -> Resp {
        let url = format!("{}{}", self.base, path);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        let cookie = self.cookie.clone().unwrap_or_default();
        if self.cookie.is_some() {
            headers.push(("Cookie", cookie.as_str()));
        }
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let resp = call(method, &url, &headers, form).await;
        if let Some(set) = resp.headers.get("set-cookie") {
            for line in set.lines() {
                if let Some(v) = line.split(';').next()
                    && v.starts_with("faultline_session=")
                {
                    self.cookie = Some(v.to_string());
                }
            }
        }
        resp
    }

    fn csrf(body: &str) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = body.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = body[start..].find('"').expect("token end") + start;
        body[start..end].to_string()
    }

    async fn submit(&mut self, from: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
        let page = self.send("GET", from, None).await;
        let token = Self::csrf(&page.body);
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        ser.append_pair("csrf", &token);
        for (k, v) in fields {
            ser.append_pair(k, v);
        }
        self.send("POST", action, Some(ser.finish())).await
    }

    async fn login(app: &TestApp, email: &str, role: &str) -> Browser {
        let user =
            faultline_app::accounts::users::create(&app.db, email, "correct horse battery", false)
                .await
                .expect("user");
        app.db
            .execute_raw(Statement::from_sql_and_values(
                app.db.get_database_backend(),
                if app.db.get_database_backend() == sea_orm::DbBackend::Postgres {
                    "INSERT INTO members (organization_id, user_id, role, created_at) \
                     SELECT id, $1, $2, 0 FROM organizations WHERE slug = 'acme'"
                } else {
                    "INSERT INTO members (organization_id, user_id, role, created_at) \
                     SELECT id, ?, ?, 0 FROM organizations WHERE slug = 'acme'"
                },
                [user.into(), role.into()],
            ))
            .await
            .expect("member");
        let mut b = Browser {
            base: app.url.clone(),
            cookie: None,
        };
        let r = b
            .submit(
                "/login",
                "/login",
                &[("email", email), ("password", "correct horse battery")],
            )
            .await;
        assert_eq!(r.status, 303, "login");
        b
    }
}

#[tokio::test]
async fn the_monitors_page_shows_and_manages_monitors() {
    let app = spawn_app(&[]).await;
    let page = "/organizations/acme/projects/web/monitors";
    let mut admin = Browser::login(&app, "admin@example.com", "admin").await;
    let empty = admin.send("GET", page, None).await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("No cron monitors yet"));

    // Create, with garbage first.
    for (fields, why) in [
        (
            vec![("name", "Nightly"), ("schedule", "61 * * * *")],
            "does not parse",
        ),
        (
            vec![("name", ""), ("schedule", "0 3 * * *")],
            "needs a name",
        ),
        (
            vec![
                ("name", "N"),
                ("schedule", "0 3 * * *"),
                ("timezone", "Mars/Base"),
            ],
            "unknown timezone",
        ),
        (
            vec![
                ("name", "N"),
                ("schedule_type", "interval"),
                ("schedule", "two hours"),
            ],
            "interval",
        ),
        (
            vec![
                ("name", "N"),
                ("schedule", "0 3 * * *"),
                ("checkin_margin", "-3"),
            ],
            "checkin_margin",
        ),
    ] {
        let r = admin.submit(page, page, &fields).await;
        assert_eq!(r.status, 400, "{why}");
        assert!(r.body.contains(why), "{why}: {}", r.body);
    }
    let r = admin
        .submit(
            page,
            page,
            &[
                ("name", "Nightly backup"),
                ("schedule", "0 3 * * *"),
                ("timezone", "Europe/Vienna"),
                ("checkin_margin", "5"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let r = admin
        .submit(
            page,
            page,
            &[("name", "Nightly backup"), ("schedule", "0 3 * * *")],
        )
        .await;
    assert_eq!(r.status, 400, "slug taken");

    // A check-in shows up with its duration.
    let ok = check_in(json!({"monitor_slug": "nightly-backup", "status": "ok", "duration": 12.5}));
    let now = chrono::Utc::now().timestamp_millis();
    apply_check_in(&app.db, app.project_id, &ok, now, now)
        .await
        .expect("apply");
    let shown = admin.send("GET", page, None).await;
    assert!(shown.body.contains("nightly-backup"));
    assert!(shown.body.contains("Europe/Vienna"));
    assert!(shown.body.contains("12.5 s"), "duration in the timeline");
    assert!(shown.body.contains("status-ok"));

    // A failed run opens an issue (threshold 1), linked from the page; its page renders
    // without any event.
    let failed = check_in(json!({"monitor_slug": "nightly-backup", "status": "error"}));
    apply_check_in(&app.db, app.project_id, &failed, now + 1_000, now + 1_000)
        .await
        .expect("apply");
    let shown = admin.send("GET", page, None).await;
    assert!(shown.body.contains("status-error"));
    let issue_id = scalar(&app.db, "SELECT issue_id FROM monitor_environments").await;
    let issue_url = format!("/organizations/acme/issues/{issue_id}");
    assert!(shown.body.contains(&issue_url), "link to the open issue");
    let issue = admin.send("GET", &issue_url, None).await;
    assert_eq!(issue.status, 200);
    assert!(
        issue
            .body
            .contains("Monitor failure: nightly-backup failed")
    );

    // Edit, mute, CSRF, members, other organizations, missing monitors.
    let edit = format!("{page}/nightly-backup");
    let r = admin
        .submit(
            page,
            &edit,
            &[
                ("name", "Backup"),
                ("schedule_type", "interval"),
                ("schedule", "2 hour"),
                ("status", "active"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        text(&app.db, "SELECT schedule FROM monitors")
            .await
            .as_deref(),
        Some("2 hour")
    );
    let r = admin
        .submit(page, &format!("{edit}/mute"), &[("muted", "on")])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        scalar(&app.db, "SELECT COUNT(*) FROM monitors WHERE is_muted").await,
        1
    );
    let r = admin
        .send("POST", &format!("{edit}/mute"), Some("muted=off".into()))
        .await;
    assert_eq!(r.status, 403, "no CSRF token");
    let r = admin
        .submit(page, &format!("{page}/nope/delete"), &[])
        .await;
    assert_eq!(r.status, 404);
    let mut member = Browser::login(&app, "member@example.com", "member").await;
    assert_eq!(member.send("GET", page, None).await.status, 200);
    let r = member.submit(page, &format!("{edit}/delete"), &[]).await;
    assert_eq!(r.status, 403, "members do not manage monitors");
    faultline_app::accounts::orgs::create(&app.db, "other", None, None)
        .await
        .expect("org");
    faultline_app::accounts::projects::create(&app.db, "other", "site", None)
        .await
        .expect("project");
    let r = admin
        .send("GET", "/organizations/other/projects/site/monitors", None)
        .await;
    assert_eq!(r.status, 404);
    let r = admin
        .submit(
            page,
            "/organizations/other/projects/site/monitors",
            &[("name", "x"), ("schedule", "* * * * *")],
        )
        .await;
    assert_eq!(r.status, 404);

    let r = admin.submit(page, &format!("{edit}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(scalar(&app.db, "SELECT COUNT(*) FROM monitors").await, 0);
    assert_eq!(
        scalar(&app.db, "SELECT COUNT(*) FROM monitor_checkins").await,
        0
    );
}

/// Not a timed test: how many check-ins one worker process applies per second when the
/// queue hands them over concurrently, as apalis does (debug build; `cargo test -p
/// faultline-app --test monitors -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn check_in_apply_rate() {
    for engine in ["sqlite", "postgres"] {
        let (db, project) = setup_project(engine).await;
        let monitors = faultline_worker::monitors::Monitors::start(db.clone());
        let n: i64 = 5_000;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let payload = json!({"monitor_slug": format!("job-{}", i % 50), "status": "ok",
                "monitor_config": {"schedule": {"type": "crontab", "value": "*/5 * * * *"}}});
            let job = faultline_core::jobs::EventJob {
                project_id: project,
                event_id: uuid::Uuid::new_v4().simple().to_string(),
                received_ms: T0 + i,
                kind: faultline_core::jobs::PayloadKind::CheckIn,
                payload: Some(
                    serde_json::value::RawValue::from_string(payload.to_string()).expect("raw"),
                ),
                ..Default::default()
            };
            let m = monitors.clone();
            tasks.spawn(async move { m.process(job).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task").expect("applied");
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM monitor_checkins").await,
            n
        );
        println!(
            "{engine}: {n} check-ins in {secs:.2} s = {:.0}/s",
            n as f64 / secs
        );
    }
}
