//! Release health end to end, on SQLite and PostgreSQL: `session` and `sessions` items
//! posted in envelopes to the real ingest, counted by the real worker, read back through
//! `GET /api/0/organizations/{org}/sessions/` and the releases pages.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, post, spawn_app};
use serde_json::{Value, json};

async fn spawn(engine: &str) -> TestApp {
    match engine {
        "sqlite" => spawn_app(&[]).await,
        _ => {
            let admin_url = faultline_core::db::testing::postgres_admin_url();
            let admin = faultline_core::db::connect_url(&admin_url)
                .await
                .expect("postgres is running");
            let name = format!("faultline_t_{}", uuid::Uuid::new_v4().simple());
            use sea_orm::ConnectionTrait;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            let mut url = url::Url::parse(&admin_url).expect("url");
            url.set_path(&name);
            spawn_app(&[("DATABASE_URL", url.as_str())]).await
        }
    }
}

fn iso(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn envelope(items: &[(&str, String)]) -> Vec<u8> {
    let mut out = b"{}\n".to_vec();
    for (ty, payload) in items {
        out.extend_from_slice(
            format!("{{\"type\":\"{ty}\",\"length\":{}}}\n", payload.len()).as_bytes(),
        );
        out.extend_from_slice(payload.as_bytes());
        out.push(b'\n');
    }
    out
}

fn update(sid: &str, did: Option<&str>, init: bool, status: &str, errors: u32) -> String {
    let mut u = json!({
        "sid": sid, "init": init, "started": iso(-30), "timestamp": iso(-1),
        "status": status, "errors": errors,
        "attrs": {"release": "app@1.0.0", "environment": "production"}
    });
    if let Some(d) = did {
        u["did"] = json!(d);
    }
    u.to_string()
}

async fn send(app: &TestApp, items: &[(&str, String)]) -> common::Answer {
    post(
        &app.envelope_url(),
        &[
            ("X-Sentry-Auth", &app.auth_header()),
            ("Content-Type", "application/x-sentry-envelope"),
        ],
        envelope(items),
    )
    .await
}

/// Waits until the counters add up to `total` sessions.
async fn wait_for_sessions(app: &TestApp, total: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = app
            .count(
                "SELECT CAST(COALESCE(SUM(healthy + errored + unhandled + abnormal + crashed), 0) AS BIGINT) FROM session_counts",
            )
            .await;
        if n == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} sessions counted, expected {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let url = url.to_string();
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut req = agent.get(&url);
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().expect("request");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    })
    .await
    .expect("task")
}

/// One session counts once whatever its updates say, the worst state wins, aggregates add
/// up, users are distinct with their worst state, and bad items are dropped alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_counted_once_with_their_worst_state_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let app = spawn(engine).await;
        let (a, b, c, d) = (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
            "cccccccccccccccccccccccccccccccc",
            "dddddddddddddddddddddddddddddddd",
        );
        // A: starts ok, then ends after a handled error (errored); B healthy; C (same user
        // as A) crashes; D unhandled (browser), no user.
        let r = send(&app, &[("session", update(a, Some("u1"), true, "ok", 0))]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        wait_for_sessions(&app, 1).await;
        let r = send(
            &app,
            &[
                ("session", update(a, Some("u1"), false, "exited", 1)),
                // The same update again (a retry) changes nothing.
                ("session", update(a, Some("u1"), false, "exited", 1)),
                ("session", update(b, Some("u2"), true, "exited", 0)),
                ("session", update(c, Some("u1"), true, "crashed", 1)),
                ("session", update(d, None, true, "unhandled", 1)),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        // An event in the same envelope as bad session items: the event and the good
        // items are kept, each bad item is dropped alone.
        let event_id = uuid::Uuid::new_v4().simple().to_string();
        let aggregates = json!({"aggregates": [
            {"started": iso(-60), "exited": 5, "errored": 1, "crashed": 1},
            {"started": "2020-01-01T00:00:00Z", "exited": 100}],
            "attrs": {"release": "app@1.0.0", "environment": "production"}});
        let r = send(
            &app,
            &[
                ("event", json!({"event_id": event_id, "message": "hello", "release": "app@1.0.0"}).to_string()),
                ("session", "{not json".into()),
                ("session", update("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", None, true, "sleeping", 0)),
                ("session", json!({"sid": "ffffffffffffffffffffffffffffffff", "started": "2020-01-01T00:00:00Z", "attrs": {"release": "app@1.0.0"}}).to_string()),
                ("session", json!({"sid": "ffffffffffffffffffffffffffffffff", "started": iso(3600), "attrs": {"release": "app@1.0.0"}}).to_string()),
                ("session", json!({"started": iso(-5), "attrs": {"release": "latest"}}).to_string()),
                ("sessions", aggregates.to_string()),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains(&event_id), "{}", r.body);
        let deadline = Instant::now() + Duration::from_secs(20);
        while app
            .count(&format!(
                "SELECT COUNT(*) FROM events WHERE event_id = '{event_id}'"
            ))
            .await
            == 0
        {
            assert!(Instant::now() < deadline, "the event was not stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // 4 individual sessions + 7 aggregated.
        wait_for_sessions(&app, 11).await;
        let row = |col: &str| {
            format!(
                "SELECT CAST(SUM({col}) AS BIGINT) FROM session_counts WHERE release = 'app@1.0.0' AND environment = 'production'"
            )
        };
        assert_eq!(app.count(&row("healthy")).await, 6, "{engine}");
        assert_eq!(app.count(&row("errored")).await, 2, "{engine}");
        assert_eq!(app.count(&row("unhandled")).await, 1, "{engine}");
        assert_eq!(app.count(&row("crashed")).await, 2, "{engine}");
        assert_eq!(app.count(&row("abnormal")).await, 0, "{engine}");
        // u1 crashed (its worst session), u2 healthy.
        assert_eq!(app.count(&row("users_crashed")).await, 1, "{engine}");
        assert_eq!(app.count(&row("users_healthy")).await, 1, "{engine}");
        assert_eq!(app.count(&row("users_errored")).await, 0, "{engine}");
        // The outcomes of the dropped items are in the metrics.
        let text = faultline_core::metrics::render();
        for outcome in [
            "invalid_json",
            "unknown_status",
            "too_old",
            "in_future",
            "invalid_release",
        ] {
            assert!(
                text.contains(&format!("item=\"session\",outcome=\"{outcome}\"")),
                "{outcome} missing from metrics"
            );
        }
        assert!(text.contains("item=\"sessions\",outcome=\"too_old\""));

        // The Web API: totals and rates as Sentry computes them.
        let token = faultline_app::accounts::tokens::create_for_org(&app.db, "acme", &[], "ci")
            .await
            .expect("token");
        let base = format!("{}/api/0/organizations/acme/sessions/", app.url);
        let (status, body) = get_json(
            &format!("{base}?field=sum(session)&field=count_unique(user)&field=crash_free_rate(session)&field=crash_free_rate(user)&groupBy=release&statsPeriod=24h&interval=1h"),
            Some(&token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let groups = body["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 1, "{body}");
        let g = &groups[0];
        assert_eq!(g["by"]["release"], "app@1.0.0");
        assert_eq!(g["totals"]["sum(session)"], 11);
        assert_eq!(g["totals"]["count_unique(user)"], 2);
        let rate = g["totals"]["crash_free_rate(session)"]
            .as_f64()
            .expect("rate");
        assert!((rate - 9.0 / 11.0).abs() < 1e-9, "{rate}");
        assert_eq!(g["totals"]["crash_free_rate(user)"], 0.5);
        let intervals = body["intervals"].as_array().expect("intervals");
        assert!(
            intervals.len() == 24 || intervals.len() == 25,
            "{}",
            intervals.len()
        );
        let series = g["series"]["sum(session)"].as_array().expect("series");
        assert_eq!(series.len(), intervals.len());
        assert_eq!(series.iter().filter_map(Value::as_i64).sum::<i64>(), 11);
        // By status: Sentry's four groups, errored including unhandled.
        let (status, body) = get_json(
            &format!("{base}?field=sum(session)&groupBy=session.status&statsPeriod=1d&query=release:app@1.0.0"),
            Some(&token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let by_status: std::collections::HashMap<String, i64> = body["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| {
                (
                    g["by"]["session.status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    g["totals"]["sum(session)"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        assert_eq!(by_status.get("healthy"), Some(&6));
        assert_eq!(by_status.get("errored"), Some(&3));
        assert_eq!(by_status.get("crashed"), Some(&2));
        assert_eq!(by_status.get("abnormal"), Some(&0));
        // Another release: nothing.
        let (_, body) = get_json(
            &format!("{base}?field=sum(session)&statsPeriod=1d&query=release:other"),
            Some(&token),
        )
        .await;
        assert_eq!(body["groups"][0]["totals"]["sum(session)"], 0, "{body}");

        // Wrong auth: no token, another organization's token, a token without org:read,
        // another organization's project, an unknown organization, garbage parameters.
        let (status, _) = get_json(&format!("{base}?field=sum(session)"), None).await;
        assert_eq!(status, 401);
        faultline_app::accounts::orgs::create(&app.db, "other", None, None)
            .await
            .expect("org");
        let (other_project, _) =
            faultline_app::accounts::projects::create(&app.db, "other", "site", None)
                .await
                .expect("project");
        let other = faultline_app::accounts::tokens::create_for_org(&app.db, "other", &[], "ci")
            .await
            .expect("token");
        let (status, _) = get_json(&format!("{base}?field=sum(session)"), Some(&other)).await;
        assert_eq!(status, 404, "another organization's token");
        let (status, body) = get_json(
            &format!(
                "{}/api/0/organizations/other/sessions/?field=sum(session)&statsPeriod=1d",
                app.url
            ),
            Some(&other),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["groups"][0]["totals"]["sum(session)"], 0,
            "isolation: {body}"
        );
        let narrow = faultline_app::accounts::tokens::create_for_org(
            &app.db,
            "acme",
            &["project:releases".to_string()],
            "narrow",
        )
        .await
        .expect("token");
        let (status, _) = get_json(&format!("{base}?field=sum(session)"), Some(&narrow)).await;
        assert_eq!(status, 403, "a token without org:read");
        let (status, _) = get_json(
            &format!("{base}?field=sum(session)&statsPeriod=1d&project={other_project}"),
            Some(&token),
        )
        .await;
        assert_eq!(status, 403, "another organization's project");
        let (status, body) = get_json(
            &format!(
                "{base}?field=sum(session)&statsPeriod=1d&project={}",
                app.project_id
            ),
            Some(&token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["groups"][0]["totals"]["sum(session)"], 11);
        let (status, _) = get_json(
            &format!(
                "{}/api/0/organizations/nope/sessions/?field=sum(session)",
                app.url
            ),
            Some(&token),
        )
        .await;
        assert_eq!(status, 404);
        pages(&app).await;
        for garbage in [
            "",
            "?field=nope",
            "?field=sum(session)&interval=banana",
            "?field=sum(session)&project=x",
            "?field=crash_free_rate(user)&groupBy=session.status",
            "?field=sum(session)&start=2020-13-45",
        ] {
            let (status, body) = get_json(&format!("{base}{garbage}"), Some(&token)).await;
            assert_eq!(status, 400, "{garbage}: {body}");
            assert!(body["detail"].is_string(), "{garbage}: {body}");
        }
    }
}

/// A redelivered aggregate job is not counted twice; a redelivered update changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_session_jobs_count_once_on_both_engines() {
    use faultline_core::jobs::{EventJob, PayloadKind};
    use faultline_worker::sessions::{read_job, store_batch};
    for (engine, db) in faultline_core::db::testing::both()
        .await
        .expect("databases")
    {
        faultline_app::accounts::orgs::create(&db, "acme", None, None)
            .await
            .expect("org");
        let (project_id, _) = faultline_app::accounts::projects::create(&db, "acme", "web", None)
            .await
            .expect("project");
        let now = chrono::Utc::now().timestamp_millis();
        let job = |kind, payload: String, id: &str| EventJob {
            project_id,
            event_id: id.into(),
            received_ms: now,
            kind,
            payload: Some(serde_json::value::RawValue::from_string(payload).expect("raw")),
            ..EventJob::default()
        };
        let agg = job(
            PayloadKind::Sessions,
            format!(
                "[{}]",
                json!({"aggregates": [{"started": iso(-10), "exited": 3, "crashed": 1, "did": "u9"}],
                       "attrs": {"release": "r1"}})
            ),
            "job-1",
        );
        let upd = job(
            PayloadKind::Session,
            format!(
                "[{}]",
                update(
                    "11111111111111111111111111111111",
                    Some("u9"),
                    true,
                    "abnormal",
                    0
                )
            ),
            "job-2",
        );
        for _ in 0..2 {
            let jobs = vec![read_job(&agg).expect("agg"), read_job(&upd).expect("upd")];
            store_batch(&db, &jobs).await.expect("stored");
        }
        let sum = |col: &'static str| {
            let db = db.clone();
            async move {
                faultline_core::sql::query_one(
                    &db,
                    &format!("SELECT CAST(SUM({col}) AS BIGINT) AS n FROM session_counts"),
                    vec![],
                )
                .await
                .expect("query")
                .and_then(|r| r.try_get::<Option<i64>>("", "n").ok().flatten())
                .unwrap_or(0)
            }
        };
        assert_eq!(sum("healthy").await, 3, "{engine}");
        assert_eq!(sum("crashed").await, 1, "{engine}");
        assert_eq!(sum("abnormal").await, 1, "{engine}");
        // u9: crashed in r1's aggregate, abnormal in app@1.0.0: one user per release.
        assert_eq!(sum("users_crashed").await, 1, "{engine}");
        assert_eq!(sum("users_abnormal").await, 1, "{engine}");
        // A release that only sent sessions is listed.
        let n = faultline_core::sql::query_one(
            &db,
            "SELECT COUNT(*) AS n FROM releases WHERE version IN ('r1', 'app@1.0.0')",
            vec![],
        )
        .await
        .expect("query")
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
        assert_eq!(n, 2, "{engine}");
    }
}

/// A logged-in member's browser: GET with the session cookie, no redirects followed.
async fn page(
    url: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> (u16, String, Option<String>) {
    let url = url.to_string();
    let cookie = cookie.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        let mut resp = match form {
            Some(f) => {
                let mut req = agent
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded");
                if let Some(c) = &cookie {
                    req = req.header("Cookie", c);
                }
                req.send(f.as_bytes())
            }
            None => {
                let mut req = agent.get(&url);
                if let Some(c) = &cookie {
                    req = req.header("Cookie", c);
                }
                req.call()
            }
        }
        .expect("request");
        let set = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|v| v.starts_with("faultline_session="))
            .map(str::to_string);
        let status = resp.status().as_u16();
        (
            status,
            resp.body_mut().read_to_string().unwrap_or_default(),
            set,
        )
    })
    .await
    .expect("task")
}

async fn login(app: &TestApp, email: &str) -> String {
    const PASSWORD: &str = "correct horse battery";
    faultline_app::accounts::users::create(&app.db, email, PASSWORD, false)
        .await
        .expect("user");
    use sea_orm::ConnectionTrait;
    let backend = app.db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        "INSERT INTO members (organization_id, user_id, role, created_at) \
         SELECT o.id, u.id, 'member', 0 FROM organizations o, users u WHERE o.slug = 'acme' AND u.email = $1"
    } else {
        "INSERT INTO members (organization_id, user_id, role, created_at) \
         SELECT o.id, u.id, 'member', 0 FROM organizations o, users u WHERE o.slug = 'acme' AND u.email = ?"
    };
    app.db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [email.into()],
        ))
        .await
        .expect("member");
    let (_, body, cookie) = page(&format!("{}/login", app.url), None, None).await;
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("csrf") + marker.len();
    let end = body[start..].find('"').expect("csrf end") + start;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &body[start..end])
        .append_pair("email", email)
        .append_pair("password", PASSWORD)
        .finish();
    let (status, _, cookie) =
        page(&format!("{}/login", app.url), cookie.as_deref(), Some(form)).await;
    assert_eq!(status, 303, "logged in");
    cookie.expect("session cookie")
}

/// The releases page, the release page and the project page show the same rates as the
/// API; another organization's pages and a missing release are 404.
async fn pages(app: &TestApp) {
    let cookie = login(
        app,
        &format!("m{}@example.com", uuid::Uuid::new_v4().simple()),
    )
    .await;
    let get = |path: &str| {
        let url = format!("{}{path}", app.url);
        let cookie = cookie.clone();
        async move { page(&url, Some(&cookie), None).await }
    };
    let (status, body, _) = get("/organizations/acme/projects/web/releases").await;
    assert_eq!(status, 200);
    assert!(body.contains("Release health"), "{body}");
    // 9 of 11 sessions did not crash; 1 of 2 users did.
    assert!(
        body.contains("81.81%"),
        "crash-free sessions on the releases page"
    );
    assert!(
        body.contains("50.00%"),
        "crash-free users on the releases page"
    );
    assert!(body.contains("100.0%"), "adoption: the only release");
    let (status, body, _) =
        get("/organizations/acme/release?version=app%401.0.0&project=web").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("81.81%") && body.contains("50.00%"),
        "release page"
    );
    assert!(
        body.contains("class=\"s-crashed\"") && body.contains("class=\"s-healthy\""),
        "chart"
    );
    assert!(body.contains("11 sessions"), "chart total");
    let (status, body, _) = get("/organizations/acme/projects/web").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Current releases") && body.contains("81.81%"),
        "project page"
    );
    for path in [
        "/organizations/acme/release?version=nope",
        "/organizations/acme/release?version=%00%ff",
        "/organizations/other/release?version=app%401.0.0",
        "/organizations/other/projects/site/releases",
        "/organizations/other/projects/site",
    ] {
        let (status, _, _) = get(path).await;
        assert_eq!(status, 404, "{path}");
    }
}

/// Two workers counting updates of the same sessions at once (PostgreSQL, where they
/// really run in parallel): every session still counts exactly once, with its worst state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_count_each_session_once_on_postgres() {
    use faultline_core::jobs::{EventJob, PayloadKind};
    use faultline_worker::sessions::{read_job, store_batch};
    let db = faultline_core::db::testing::postgres()
        .await
        .expect("postgres");
    faultline_app::accounts::orgs::create(&db, "acme", None, None)
        .await
        .expect("org");
    let (project_id, _) = faultline_app::accounts::projects::create(&db, "acme", "web", None)
        .await
        .expect("project");
    let now = chrono::Utc::now().timestamp_millis();
    let sids: Vec<String> = (0..300)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let job = |status: &str, user: &str| {
        let items: Vec<String> = sids
            .iter()
            .map(|sid| update(sid, Some(user), true, status, 0))
            .collect();
        let job = EventJob {
            project_id,
            event_id: uuid::Uuid::new_v4().simple().to_string(),
            received_ms: now,
            kind: PayloadKind::Session,
            payload: Some(
                serde_json::value::RawValue::from_string(format!("[{}]", items.join(",")))
                    .expect("raw"),
            ),
            ..EventJob::default()
        };
        read_job(&job).expect("job")
    };
    for round in 0..3 {
        let (a, b) = (job("exited", "racer"), job("crashed", "racer"));
        let (db1, db2) = (db.clone(), db.clone());
        let t1 = tokio::spawn(async move { store_batch(&db1, &[a]).await });
        let t2 = tokio::spawn(async move { store_batch(&db2, &[b]).await });
        // A deadlock or serialization failure is retried, as the pipeline does.
        for (t, status) in [(t1, "exited"), (t2, "crashed")] {
            if let Err(e) = t.await.expect("task") {
                eprintln!("round {round}: {e}; retrying");
                store_batch(&db, &[job(status, "racer")])
                    .await
                    .expect("retry");
            }
        }
    }
    let sum = |col: &'static str| {
        let db = db.clone();
        async move {
            faultline_core::sql::query_one(
                &db,
                &format!("SELECT CAST(SUM({col}) AS BIGINT) AS n FROM session_counts"),
                vec![],
            )
            .await
            .expect("query")
            .and_then(|r| r.try_get::<Option<i64>>("", "n").ok().flatten())
            .unwrap_or(0)
        }
    };
    assert_eq!(sum("crashed").await, 300);
    assert_eq!(sum("healthy").await, 0);
    assert_eq!(sum("users_crashed").await, 1);
    assert_eq!(sum("users_healthy").await, 0);
}

/// A device whose clock is two days behind: its envelope's `sent_at` says so, and its
/// session (started "two days ago" by its clock) is moved to now and counted, as Relay
/// does, instead of being dropped as too old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_clock_is_corrected_by_sent_at_on_both_engines() {
    for engine in ["sqlite", "postgres"] {
        let app = spawn(engine).await;
        let behind = |secs: i64| iso(secs - 2 * 24 * 3600);
        let item = json!({"sid": uuid::Uuid::new_v4().simple().to_string(), "init": true,
            "started": behind(-30), "status": "exited", "attrs": {"release": "clock@1"}})
        .to_string();
        let mut body = json!({"sent_at": behind(0)}).to_string().into_bytes();
        body.push(b'\n');
        body.extend_from_slice(&envelope(&[("session", item)])[3..]);
        let r = post(
            &app.envelope_url(),
            &[
                ("X-Sentry-Auth", &app.auth_header()),
                ("Content-Type", "application/x-sentry-envelope"),
            ],
            body,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        wait_for_sessions(&app, 1).await;
        let now = chrono::Utc::now().timestamp_millis();
        let bucket = app.count("SELECT MAX(bucket) FROM session_counts").await;
        assert!(
            now - bucket < 2 * 3_600_000,
            "{engine}: counted in the hour it really started"
        );
    }
}

/// Pruning forgets session states no update can reach (started over 5 days ago), old
/// aggregate job ids and user rows past 91 days, and keeps the counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_counts_and_forgets_unreachable_rows_on_both_engines() {
    for (engine, db) in faultline_core::db::testing::both()
        .await
        .expect("databases")
    {
        let day = 24 * 3_600_000i64;
        let now = chrono::Utc::now().timestamp_millis();
        let hour = now - now % 3_600_000;
        for (sql, values) in [
            (
                "INSERT INTO session_states (project_id, sid, release, environment, bucket, status, did, updated) VALUES (1, ?, 'r', '', ?, 0, NULL, 0)",
                vec![("old", hour - 6 * day), ("new", hour - 4 * day)],
            ),
            (
                "INSERT INTO session_users (project_id, release, environment, bucket, did, status) VALUES (1, 'r', '', ?, ?, 0)",
                vec![("u-old", hour - 92 * day), ("u-new", hour - 80 * day)],
            ),
            (
                "INSERT INTO session_aggregate_jobs (job_id, received) VALUES (?, ?)",
                vec![("j-old", now - 8 * day), ("j-new", now - day)],
            ),
        ] {
            for (name, t) in values {
                // `session_users` takes (bucket, did); the others (key, time).
                let vals: Vec<sea_orm::Value> = if sql.contains("session_users") {
                    vec![t.into(), name.into()]
                } else {
                    vec![name.into(), t.into()]
                };
                faultline_core::sql::execute(&db, sql, vals)
                    .await
                    .expect("insert");
            }
        }
        faultline_core::sql::execute(
            &db,
            "INSERT INTO session_counts (project_id, release, environment, bucket, healthy) VALUES (1, 'r', '', ?, 5)",
            vec![(hour - 100 * day).into()],
        )
        .await
        .expect("insert");
        faultline_worker::sessions::prune(&db, now)
            .await
            .expect("prune");
        for (table, column, left) in [
            ("session_states", "sid", "new"),
            ("session_users", "did", "u-new"),
            ("session_aggregate_jobs", "job_id", "j-new"),
        ] {
            let rows = faultline_core::sql::query_all(
                &db,
                &format!("SELECT {column} AS k FROM {table}"),
                vec![],
            )
            .await
            .expect("query");
            let keys: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get("", "k").ok())
                .collect();
            assert_eq!(keys, vec![left.to_string()], "{engine}: {table}");
        }
        let kept =
            faultline_core::sql::query_one(&db, "SELECT COUNT(*) AS n FROM session_counts", vec![])
                .await
                .expect("query")
                .and_then(|r| r.try_get::<i64>("", "n").ok());
        assert_eq!(kept, Some(1), "{engine}: counters stay");
    }
}
