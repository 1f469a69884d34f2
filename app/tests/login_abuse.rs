//! Login abuse over real HTTP: parallel guesses cannot pass the throttle, an account
//! attacked from many addresses is locked, argon2 work is bounded (429 under a flood),
//! `X-Forwarded-For` counts only from a trusted proxy (login throttle and events' IP), and
//! test emails are limited per user.

mod common;

use std::collections::HashMap;

use common::{TestApp, spawn_app};
use faultline_app::web::throttle::{MAX_PER_ACCOUNT, MAX_PER_ACCOUNT_AND_ADDRESS};

const PASSWORD: &str = "correct horse battery";

struct Answer {
    status: u16,
    body: String,
    headers: HashMap<String, String>,
}

/// One request without following redirects; `cookie` and extra headers as given.
async fn send(
    url: String,
    cookie: Option<String>,
    form: Option<Vec<(String, String)>>,
    headers: Vec<(String, String)>,
) -> Answer {
    tokio::task::spawn_blocking(move || {
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
                for (k, v) in &headers {
                    req = req.header(k, v);
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
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                req.send(ser.finish().as_bytes())
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
        Answer {
            status: resp.status().as_u16(),
            body: resp.body_mut().read_to_string().unwrap_or_default(),
            headers,
        }
    })
    .await
    .expect("task")
}

fn session_cookie(a: &Answer) -> Option<String> {
    a.headers
        .get("set-cookie")
        .and_then(|v| v.split(';').next())
        .filter(|v| v.starts_with("faultline_session="))
        .map(str::to_string)
}

fn csrf(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = body[start..].find('"').expect("token end") + start;
    body[start..end].to_string()
}

/// A visitor's session: (cookie, CSRF token of the login form).
async fn visitor(app: &TestApp) -> (String, String) {
    let page = send(format!("{}/login", app.url), None, None, vec![]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    (
        session_cookie(&page).expect("session cookie"),
        csrf(&page.body),
    )
}

/// A login attempt with the visitor's session, from `forwarded_for` when given.
async fn login(
    app: &TestApp,
    session: &(String, String),
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let headers = forwarded_for
        .map(|ip| vec![("X-Forwarded-For".to_string(), ip.to_string())])
        .unwrap_or_default();
    send(
        format!("{}/login", app.url),
        Some(session.0.clone()),
        Some(vec![
            ("csrf".into(), session.1.clone()),
            ("email".into(), email.into()),
            ("password".into(), password.into()),
        ]),
        headers,
    )
    .await
}

async fn add_member(app: &TestApp, user_id: i64) {
    use sea_orm::ConnectionTrait;
    let backend = app.db.get_database_backend();
    let sql = "INSERT INTO members (organization_id, user_id, role, created_at) \
               SELECT id, $1, 'member', 0 FROM organizations WHERE slug = 'acme'";
    let sql = if backend == sea_orm::DbBackend::Postgres {
        sql.to_string()
    } else {
        sql.replace("$1", "?")
    };
    app.db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [user_id.into()],
        ))
        .await
        .expect("member");
}

async fn user(app: &TestApp, email: &str) -> i64 {
    faultline_app::accounts::users::create(&app.db, email, PASSWORD, false)
        .await
        .expect("user")
}

#[tokio::test]
async fn fifty_parallel_wrong_logins_verify_at_most_the_limit() {
    let app = spawn_app(&[]).await;
    user(&app, "bob@example.com").await;
    let session = visitor(&app).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (url, s) = (app.url.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            send(
                format!("{url}/login"),
                Some(s.0),
                Some(vec![
                    ("csrf".into(), s.1),
                    ("email".into(), "bob@example.com".into()),
                    ("password".into(), format!("guess {i}")),
                ]),
                vec![],
            )
            .await
        }));
    }
    let (mut wrong, mut refused) = (0, 0);
    for t in tasks {
        let a = t.await.expect("task");
        match a.status {
            // A 401 is a password that was verified; a 429 one that never was.
            401 => wrong += 1,
            429 => {
                assert!(a.headers.contains_key("retry-after"));
                refused += 1
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert!(
        wrong <= MAX_PER_ACCOUNT_AND_ADDRESS,
        "{wrong} passwords verified"
    );
    assert_eq!(wrong + refused, 50);
    // The account stays locked, even for the right password.
    let a = login(&app, &session, "bob@example.com", PASSWORD, None).await;
    assert_eq!(a.status, 429, "{}", a.body);
    // Verifications are visible to operators (the counter is per process, so tests
    // running beside this one add to it: only its presence is checked).
    let m = send(format!("{}/metrics", app.url), None, None, vec![]).await;
    assert!(
        m.body.contains("faultline_password_verifications_total"),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn an_account_guessed_from_many_addresses_is_locked() {
    let app = spawn_app(&[("FAULTLINE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    user(&app, "carol@example.com").await;
    user(&app, "dave@example.com").await;
    let session = visitor(&app).await;
    for i in 0..MAX_PER_ACCOUNT {
        let ip = format!("198.51.100.{i}");
        let a = login(&app, &session, "carol@example.com", "guess", Some(&ip)).await;
        assert_eq!(a.status, 401, "attempt {i} from {ip}: {}", a.body);
    }
    // A fresh address with the right password: the account is locked for now.
    let a = login(
        &app,
        &session,
        "carol@example.com",
        PASSWORD,
        Some("203.0.113.50"),
    )
    .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.body.contains("Too many failed logins"), "{}", a.body);
    // Other accounts are not affected.
    let a = login(
        &app,
        &session,
        "dave@example.com",
        PASSWORD,
        Some("203.0.113.50"),
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.body);
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app(&[]).await;
    user(&app, "erin@example.com").await;
    let session = visitor(&app).await;
    // Every guess claims another address; the throttle still sees the one peer.
    for i in 0..MAX_PER_ACCOUNT_AND_ADDRESS {
        let ip = format!("192.0.2.{i}");
        let a = login(&app, &session, "erin@example.com", "guess", Some(&ip)).await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    let a = login(
        &app,
        &session,
        "erin@example.com",
        PASSWORD,
        Some("192.0.2.99"),
    )
    .await;
    assert_eq!(a.status, 429, "{}", a.body);

    // Events: `{{auto}}` becomes the peer, not the header.
    let ip = event_ip(&app, Some("6.6.6.6")).await;
    assert_eq!(ip, "127.0.0.1");
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_is_honoured() {
    let app = spawn_app(&[("FAULTLINE_TRUSTED_PROXIES", "127.0.0.0/8, ::1")]).await;
    user(&app, "frank@example.com").await;
    let session = visitor(&app).await;
    for _ in 0..MAX_PER_ACCOUNT_AND_ADDRESS {
        let a = login(
            &app,
            &session,
            "frank@example.com",
            "guess",
            Some("192.0.2.1"),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    // The client behind the proxy is locked out of this account...
    let a = login(
        &app,
        &session,
        "frank@example.com",
        PASSWORD,
        Some("192.0.2.1"),
    )
    .await;
    assert_eq!(a.status, 429, "{}", a.body);
    // ...another client of the same proxy is not; a spoofed left-most entry proves nothing.
    let a = login(
        &app,
        &session,
        "frank@example.com",
        PASSWORD,
        Some("192.0.2.1, 192.0.2.2"),
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.body);

    // Events get the right-most address that is not a proxy.
    let ip = event_ip(&app, Some("6.6.6.6, 198.51.100.23")).await;
    assert_eq!(ip, "198.51.100.23");
}

/// Sends an event whose user IP is `{{auto}}` and returns the IP it was stored with.
async fn event_ip(app: &TestApp, forwarded_for: Option<&str>) -> String {
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::json!({
        "event_id": event_id,
        "platform": "python",
        "message": "who am I",
        "user": {"ip_address": "{{auto}}"},
    });
    let auth = app.auth_header();
    let mut headers = vec![
        ("X-Sentry-Auth", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(ip) = forwarded_for {
        headers.push(("X-Forwarded-For", ip));
    }
    let answer = common::post(
        &format!("{}/api/{}/store/", app.url, app.project_id),
        &headers,
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let stored = app.wait_for_event(&event_id).await;
    stored["user"]["ip_address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_flood_of_logins_gets_429_instead_of_queueing_argon2() {
    let app = spawn_app(&[("FAULTLINE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    user(&app, "grace@example.com").await;
    let session = visitor(&app).await;
    // Made-up accounts from made-up addresses: no throttle applies, only the gate.
    let mut tasks = Vec::new();
    for i in 0..150u32 {
        let (url, s) = (app.url.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            send(
                format!("{url}/login"),
                Some(s.0),
                Some(vec![
                    ("csrf".into(), s.1),
                    ("email".into(), format!("nobody{i}@example.com")),
                    ("password".into(), "guess".into()),
                ]),
                vec![(
                    "X-Forwarded-For".into(),
                    format!("10.{}.{}.1", i / 200, i % 200),
                )],
            )
            .await
        }));
    }
    let (mut checked, mut busy) = (0, 0);
    for t in tasks {
        let a = t.await.expect("task");
        match a.status {
            401 => checked += 1,
            429 => {
                assert!(
                    a.body.contains("busy checking other passwords"),
                    "{}",
                    a.body
                );
                assert!(a.headers.contains_key("retry-after"));
                busy += 1
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert!(busy > 0, "no request was refused ({checked} checked)");
    assert!(checked > 0);
    // Once the flood is over, logins work again.
    let a = login(
        &app,
        &session,
        "grace@example.com",
        PASSWORD,
        Some("192.0.2.7"),
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.body);
}

#[tokio::test]
async fn test_emails_are_limited_per_user() {
    test_email_limit(spawn_app(&[]).await).await;
}

/// The same limit on PostgreSQL (the table and its SQL serve both engines).
#[tokio::test]
async fn test_emails_are_limited_per_user_on_postgres() {
    use sea_orm::ConnectionTrait;
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
    test_email_limit(spawn_app(&[("DATABASE_URL", url.as_str())]).await).await;
}

async fn test_email_limit(app: TestApp) {
    let mut cookies = Vec::new();
    for email in ["henry@example.com", "ivy@example.com"] {
        let id = user(&app, email).await;
        add_member(&app, id).await;
        let session = visitor(&app).await;
        let a = login(&app, &session, email, PASSWORD, None).await;
        assert_eq!(a.status, 303, "{}", a.body);
        cookies.push(session_cookie(&a).expect("logged-in cookie"));
    }
    let settings = format!("{}/organizations/acme/projects/web/settings", app.url);
    let action = format!("{}/organizations/acme/projects/web/alerts/test", app.url);
    let page = send(settings.clone(), Some(cookies[0].clone()), None, vec![]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    let test_email = |cookie: String, token: String| {
        send(
            action.clone(),
            Some(cookie),
            Some(vec![
                ("csrf".into(), token),
                ("to".into(), "ops@example.com".into()),
            ]),
            vec![],
        )
    };
    for i in 0..faultline_app::web::alerts::TEST_EMAILS_PER_HOUR {
        let a = test_email(cookies[0].clone(), token.clone()).await;
        // No SMTP here: the page says so (400), but the email was tried and counted.
        assert_ne!(a.status, 429, "email {i}: {}", a.body);
    }
    let a = test_email(cookies[0].clone(), token.clone()).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(
        a.body.contains("at most 5 test emails an hour"),
        "{}",
        a.body
    );
    assert!(a.headers.contains_key("retry-after"));
    // Another user has their own allowance.
    let page = send(settings, Some(cookies[1].clone()), None, vec![]).await;
    let a = test_email(cookies[1].clone(), csrf(&page.body)).await;
    assert_ne!(a.status, 429, "{}", a.body);
    // Wrong session or token: refused before anything is counted.
    let a = test_email(cookies[1].clone(), "garbage".into()).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = send(
        action.clone(),
        None,
        Some(vec![("to".into(), "x@example.com".into())]),
        vec![],
    )
    .await;
    assert!(matches!(a.status, 303 | 403), "{}: {}", a.status, a.body);
    let a = send(
        format!("{}/organizations/acme/projects/nope/alerts/test", app.url),
        Some(cookies[1].clone()),
        Some(vec![("csrf".into(), csrf(&page.body))]),
        vec![],
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM test_email_sends").await,
        faultline_app::web::alerts::TEST_EMAILS_PER_HOUR + 1
    );
}
