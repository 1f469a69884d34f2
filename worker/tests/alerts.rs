//! Email alerts on SQLite AND PostgreSQL: the outbox commits with the events, dispatching
//! is exactly once under concurrent workers, throttling and digests, send claims.

use std::collections::HashMap;

use faultline_core::config::{AlertSettings, Config};
use faultline_core::db::testing;
use faultline_core::protocol::event::{Event, Exception, Frame, Level, Stacktrace, Values};
use faultline_worker::alerts::{self, dispatch, rules};
use faultline_worker::pipeline::prepare_event;
use faultline_worker::store::{self, PreparedEvent};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
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

async fn texts(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text"))
        .collect()
}

/// An organization with a member and one project with the default rule.
async fn project(db: &DatabaseConnection) -> i64 {
    exec(
        db,
        "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
    )
    .await;
    exec(
        db,
        "INSERT INTO users (email, password_hash, is_superuser, created_at) VALUES ('ada@example.com', 'x', false, 0)",
    )
    .await;
    exec(
        db,
        "INSERT INTO members (organization_id, user_id, role, created_at) \
         SELECT o.id, u.id, 'owner', 0 FROM organizations o, users u",
    )
    .await;
    exec(
        db,
        "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'web', 'web', true, 90, 1000, 0, 0 FROM organizations WHERE slug = 'acme'",
    )
    .await;
    let pid = scalar(db, "SELECT id FROM projects WHERE slug = 'web'").await;
    rules::create_default(db, pid).await.expect("default rule");
    pid
}

fn event(function: &str, environment: &str) -> Event {
    Event {
        event_id: Some(uuid::Uuid::new_v4()),
        timestamp: Some(chrono::Utc::now()),
        received: Some(chrono::Utc::now()),
        level: Some(Level::Error),
        platform: Some("python".into()),
        environment: Some(environment.into()),
        exception: Some(Values {
            values: vec![Exception {
                ty: Some("ValueError".into()),
                value: Some("boom".into()),
                stacktrace: Some(Stacktrace {
                    frames: vec![Frame {
                        filename: Some("app.py".into()),
                        function: Some(function.into()),
                        lineno: Some(3),
                        in_app: Some(true),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }),
        ..Default::default()
    }
}

fn prepared(project_id: i64, mut e: Event) -> PreparedEvent {
    prepare_event(project_id, &mut e).expect("prepare")
}

fn settings() -> AlertSettings {
    AlertSettings {
        cooldown_ms: 30 * 60_000,
        hourly_cap: 2,
        cap_window_ms: 60_000,
        ..AlertSettings::default()
    }
}

#[tokio::test]
async fn outbox_commits_with_events_and_dispatches_exactly_once() {
    for (engine, db) in testing::both().await.expect("test databases") {
        let pid = project(&db).await;
        let e = prepared(pid, event("checkout", "production"));
        store::store_batch(&db, std::slice::from_ref(&e))
            .await
            .expect("store");
        // A redelivered job is deduplicated, and so is its state change.
        store::store_batch(&db, std::slice::from_ref(&e))
            .await
            .expect("store again");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM alert_outbox").await,
            1,
            "{engine}"
        );

        // Four workers race for the same outbox row: exactly one dispatches it.
        let s = settings();
        let results = futures_join(&db, &s).await;
        assert_eq!(results.iter().sum::<usize>(), 1, "{engine}: {results:?}");
        assert_eq!(
            texts(&db, "SELECT status FROM notifications").await,
            vec!["queued"],
            "{engine}"
        );
        assert_eq!(
            texts(&db, "SELECT recipient FROM notifications").await,
            vec!["ada@example.com"],
            "{engine}"
        );

        // Resolved and seen again within the cooldown: logged as suppressed, not queued.
        exec(&db, "UPDATE issues SET status = 'resolved'").await;
        store::store_batch(&db, &[prepared(pid, event("checkout", "production"))])
            .await
            .expect("store regression");
        dispatch::dispatch_pending(&db, &s, true)
            .await
            .expect("dispatch");
        assert_eq!(
            texts(
                &db,
                "SELECT status || '/' || COALESCE(throttle, '-') FROM notifications ORDER BY id"
            )
            .await,
            vec!["queued/-", "suppressed/cooldown"],
            "{engine}"
        );
    }
}

async fn futures_join(db: &DatabaseConnection, s: &AlertSettings) -> Vec<usize> {
    let (a, b, c, d) = tokio::join!(
        dispatch::dispatch_pending(db, s, true),
        dispatch::dispatch_pending(db, s, true),
        dispatch::dispatch_pending(db, s, true),
        dispatch::dispatch_pending(db, s, true),
    );
    [a, b, c, d]
        .into_iter()
        .map(|r| r.expect("dispatch"))
        .collect()
}

#[tokio::test]
async fn rules_filter_and_the_cap_leads_to_one_digest() {
    for (engine, db) in testing::both().await.expect("test databases") {
        let pid = project(&db).await;
        exec(&db, "UPDATE alert_rules SET environment = 'production', extra_recipients = 'ops@example.com'").await;
        exec(
            &db,
            &format!(
                "INSERT INTO alert_unsubscribes (project_id, email, created_at) VALUES ({pid}, 'ada@example.com', 0)"
            ),
        )
        .await;
        let batch: Vec<PreparedEvent> = ["a", "b", "c", "d"]
            .iter()
            .map(|f| prepared(pid, event(f, "production")))
            .chain([prepared(pid, event("staging_only", "staging"))])
            .collect();
        store::store_batch(&db, &batch).await.expect("store");
        let s = settings();
        dispatch::dispatch_pending(&db, &s, true)
            .await
            .expect("dispatch");
        let log = texts(
            &db,
            "SELECT recipient || '/' || status || '/' || COALESCE(throttle, '-') FROM notifications ORDER BY id",
        )
        .await;
        // ada unsubscribed; staging matched no rule; two alerts fit under the cap of 2.
        assert_eq!(
            log,
            vec![
                "ops@example.com/queued/-",
                "ops@example.com/queued/-",
                "ops@example.com/suppressed/cap",
                "ops@example.com/suppressed/cap",
                "/skipped/-",
            ],
            "{engine}"
        );
        let now = chrono::Utc::now().timestamp_millis();
        assert_eq!(
            dispatch::queue_due_digests(&db, true, now)
                .await
                .expect("early"),
            0,
            "{engine}"
        );
        let later = now + s.cap_window_ms + 1000;
        assert_eq!(
            dispatch::queue_due_digests(&db, true, later)
                .await
                .expect("digest"),
            1,
            "{engine}"
        );
        assert_eq!(
            dispatch::queue_due_digests(&db, true, later)
                .await
                .expect("again"),
            0,
            "{engine}"
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM notifications h JOIN notifications d ON d.id = h.digest_id \
                 WHERE d.kind = 'digest' AND h.throttle = 'cap'"
            )
            .await,
            2,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_failed_send_is_claimed_once_and_scheduled_for_retry() {
    for (engine, db) in testing::both().await.expect("test databases") {
        let pid = project(&db).await;
        store::store_batch(&db, &[prepared(pid, event("checkout", "production"))])
            .await
            .expect("store");
        // A port nobody listens on: every attempt fails fast.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let config = Config::from_map(HashMap::from([
            ("FAULTLINE_CONFIG".to_string(), String::new()),
            (
                "FAULTLINE_SMTP_URL".to_string(),
                format!("smtp://127.0.0.1:{dead}"),
            ),
            ("FAULTLINE_SMTP_TIMEOUT_SECS".to_string(), "2".to_string()),
        ]))
        .expect("config");
        let ctx = alerts::AlertContext::new(db.clone(), &config).expect("context");
        dispatch::dispatch_pending(&db, &ctx.settings, true)
            .await
            .expect("dispatch");
        let (a, b) = tokio::join!(
            alerts::deliver::send_due(&ctx),
            alerts::deliver::send_due(&ctx)
        );
        assert_eq!(
            a.expect("send") + b.expect("send"),
            1,
            "{engine}: one worker claims it"
        );
        assert_eq!(
            scalar(&db, "SELECT CAST(attempts AS BIGINT) FROM notifications").await,
            1,
            "{engine}"
        );
        assert_eq!(
            texts(&db, "SELECT status FROM notifications").await,
            vec!["failed"]
        );
        let next = scalar(&db, "SELECT next_attempt_at FROM notifications").await;
        assert!(
            next > chrono::Utc::now().timestamp_millis() + 20_000,
            "{engine}: backoff"
        );
        // Not due yet: nothing to send.
        assert_eq!(
            alerts::deliver::send_due(&ctx).await.expect("send"),
            0,
            "{engine}"
        );
        // Pruning keeps what still waits for a retry, and removes old dispatched outbox rows.
        let far = chrono::Utc::now().timestamp_millis() + alerts::LOG_RETENTION_MS + 86_400_000;
        alerts::prune(&db, far).await.expect("prune");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM notifications").await,
            1,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM alert_outbox").await,
            0,
            "{engine}"
        );
        exec(
            &db,
            "UPDATE notifications SET next_attempt_at = NULL, status = 'sent'",
        )
        .await;
        alerts::prune(&db, far).await.expect("prune");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM notifications").await,
            0,
            "{engine}"
        );
    }
}
