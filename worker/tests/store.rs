//! Storage of prepared events, on SQLite AND PostgreSQL: issues, counters, tag facets,
//! exactly-once by event id, issue state transitions, concurrent workers.

use faultline_core::db::testing;
use faultline_core::protocol::event::{Event, Exception, Frame, Level, Stacktrace, User, Values};
use faultline_worker::pipeline::prepare_event;
use faultline_worker::store::{self, NotificationKind, PreparedEvent, StatusDetails};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

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

async fn text(db: &DatabaseConnection, sql: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("one row");
    row.try_get_by_index::<String>(0).expect("text")
}

/// An organization with one project (id returned).
async fn project(db: &DatabaseConnection) -> i64 {
    exec(
        db,
        "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
    )
    .await;
    exec(
        db,
        "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'web', 'web', true, 90, 1000, 0, 0 FROM organizations WHERE slug = 'acme'",
    )
    .await;
    scalar(db, "SELECT id FROM projects WHERE slug = 'web'").await
}

fn error_event(
    ty: &str,
    value: &str,
    function: &str,
    release: Option<&str>,
    user: Option<&str>,
) -> Event {
    Event {
        event_id: Some(uuid::Uuid::new_v4()),
        timestamp: Some(chrono::Utc::now()),
        received: Some(chrono::Utc::now()),
        level: Some(Level::Error),
        platform: Some("python".into()),
        release: release.map(str::to_string),
        environment: Some("production".into()),
        user: user.map(|id| User {
            id: Some(id.into()),
            ..Default::default()
        }),
        exception: Some(Values {
            values: vec![Exception {
                ty: Some(ty.into()),
                value: Some(value.into()),
                stacktrace: Some(Stacktrace {
                    frames: vec![Frame {
                        filename: Some("app/views.py".into()),
                        abs_path: Some("/srv/app/views.py".into()),
                        module: Some("app.views".into()),
                        function: Some(function.into()),
                        lineno: Some(10),
                        context_line: Some(format!("    {function}()")),
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

fn prepared(project_id: i64, mut event: Event) -> PreparedEvent {
    prepare_event(project_id, &mut event).expect("prepare")
}

#[tokio::test]
async fn events_group_into_issues_once_each_on_both_engines() {
    for (engine, db) in testing::both().await.expect("test databases") {
        println!("storage test on {engine}");
        let pid = project(&db).await;
        let a1 = prepared(
            pid,
            error_event("KeyError", "'id'", "load", Some("1.0"), Some("u1")),
        );
        let a2 = prepared(
            pid,
            error_event("KeyError", "'name'", "load", Some("1.0"), Some("u2")),
        );
        let b = prepared(
            pid,
            error_event("ValueError", "bad", "save", Some("1.0"), Some("u1")),
        );
        assert_eq!(
            a1.hashes[0], a2.hashes[0],
            "same stack, different value: one issue"
        );
        assert_ne!(a1.hashes[0], b.hashes[0]);

        let out = store::store_batch(&db, &[a1.clone(), a2.clone(), b.clone()])
            .await
            .expect("store");
        assert_eq!(out.stored, 3, "{engine}");
        assert_eq!(
            out.notifications
                .iter()
                .filter(|n| n.kind == NotificationKind::NewIssue)
                .count(),
            2
        );

        // Redelivery of the same jobs stores nothing new (exactly once by event id).
        let again = store::store_batch(&db, &[a1.clone(), a2.clone()])
            .await
            .expect("store again");
        assert_eq!((again.stored, again.duplicates), (0, 2), "{engine}");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events").await,
            3,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM issues").await,
            2,
            "{engine}"
        );

        let issue = format!(
            "SELECT issue_id FROM events WHERE event_id = '{}'",
            a1.event_id
        );
        let issue_id = scalar(&db, &issue).await;
        assert_eq!(
            scalar(
                &db,
                &format!("SELECT times_seen FROM issues WHERE id = {issue_id}")
            )
            .await,
            2
        );
        assert_eq!(
            scalar(
                &db,
                &format!("SELECT users_seen FROM issues WHERE id = {issue_id}")
            )
            .await,
            2
        );
        assert_eq!(
            text(
                &db,
                &format!("SELECT title FROM issues WHERE id = {issue_id}")
            )
            .await,
            "KeyError: 'name'", // the newest event names the issue
        );
        assert_eq!(
            scalar(&db, &format!("SELECT times_seen FROM issue_tag_values WHERE issue_id = {issue_id} AND key = 'release' AND value = '1.0'")).await,
            2
        );
        // Short ids count per project.
        assert_eq!(scalar(&db, "SELECT MAX(short_id) FROM issues").await, 2);
        // The release appeared by itself.
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM releases WHERE version = '1.0'").await,
            1
        );
        // The payload is the normalized event, compressed.
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT payload FROM events WHERE event_id = '{}'",
                    b.event_id
                ),
            ))
            .await
            .expect("query")
            .expect("row");
        let payload: Vec<u8> = row.try_get_by_index(0).expect("blob");
        let json: serde_json::Value =
            serde_json::from_slice(&zstd::decode_all(&payload[..]).expect("zstd")).expect("json");
        assert_eq!(json["exception"]["values"][0]["type"], "ValueError");
    }
}

async fn set_status(
    db: &DatabaseConnection,
    issue_id: i64,
    status: &str,
    details: &StatusDetails,
    resolved_at: i64,
) {
    let details = serde_json::to_string(details).expect("json");
    let sql = format!(
        "UPDATE issues SET status = '{status}', status_details = '{details}', resolved_at = {resolved_at} WHERE id = {issue_id}"
    );
    exec(db, &sql).await;
}

#[tokio::test]
async fn resolved_issues_regress_and_ignored_ones_wake_up() {
    for (engine, db) in testing::both().await.expect("test databases") {
        println!("state test on {engine}");
        let pid = project(&db).await;
        let first = prepared(pid, error_event("KeyError", "x", "load", Some("1.0"), None));
        store::store_batch(&db, std::slice::from_ref(&first))
            .await
            .expect("store");
        let issue_id = scalar(
            &db,
            &format!(
                "SELECT issue_id FROM events WHERE event_id = '{}'",
                first.event_id
            ),
        )
        .await;
        let status = |db: DatabaseConnection| async move {
            text(
                &db,
                &format!("SELECT status FROM issues WHERE id = {issue_id}"),
            )
            .await
        };

        // Resolved -> any new event regresses it.
        set_status(
            &db,
            issue_id,
            "resolved",
            &StatusDetails::default(),
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
        let out = store::store_batch(
            &db,
            &[prepared(
                pid,
                error_event("KeyError", "x", "load", Some("1.0"), None),
            )],
        )
        .await
        .expect("store");
        assert_eq!(out.notifications.len(), 1, "{engine}");
        assert_eq!(out.notifications[0].kind, NotificationKind::Regression);
        assert_eq!(status(db.clone()).await, "unresolved");

        // Resolved in next release: the same release does not regress it, a newer one does.
        let details = StatusDetails {
            resolved_release: Some("1.0".into()),
            ..Default::default()
        };
        set_status(
            &db,
            issue_id,
            "resolved_in_next_release",
            &details,
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
        let out = store::store_batch(
            &db,
            &[prepared(
                pid,
                error_event("KeyError", "x", "load", Some("1.0"), None),
            )],
        )
        .await
        .expect("store");
        assert!(
            out.notifications.is_empty(),
            "{engine}: same release must not regress"
        );
        assert_eq!(status(db.clone()).await, "resolved_in_next_release");
        let out = store::store_batch(
            &db,
            &[prepared(
                pid,
                error_event("KeyError", "x", "load", Some("1.1"), None),
            )],
        )
        .await
        .expect("store");
        assert_eq!(
            out.notifications[0].kind,
            NotificationKind::Regression,
            "{engine}"
        );
        assert_eq!(status(db.clone()).await, "unresolved");

        // Ignored until 3 more events: the third one wakes it up.
        let seen = scalar(
            &db,
            &format!("SELECT times_seen FROM issues WHERE id = {issue_id}"),
        )
        .await;
        let details = StatusDetails {
            ignore_count: Some(3),
            ignore_count_base: Some(seen),
            ..Default::default()
        };
        set_status(&db, issue_id, "ignored", &details, 0).await;
        for expected in ["ignored", "ignored", "unresolved"] {
            store::store_batch(
                &db,
                &[prepared(
                    pid,
                    error_event("KeyError", "x", "load", None, None),
                )],
            )
            .await
            .expect("store");
            assert_eq!(status(db.clone()).await, expected, "{engine}");
        }
    }
}

#[tokio::test]
async fn concurrent_batches_agree_on_issues_and_counts() {
    for (engine, db) in testing::both().await.expect("test databases") {
        println!("concurrency test on {engine}");
        let pid = project(&db).await;
        // 10 distinct issues x 20 events, split across 4 concurrent writers.
        let events: Vec<PreparedEvent> = (0..200)
            .map(|i| {
                prepared(
                    pid,
                    error_event(
                        "E",
                        "v",
                        &format!("f{}", i % 10),
                        None,
                        Some(&format!("u{}", i % 7)),
                    ),
                )
            })
            .collect();
        let mut tasks = Vec::new();
        for chunk in events.chunks(50) {
            let db = db.clone();
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                for part in chunk.chunks(10) {
                    let mut tries = 0;
                    loop {
                        match store::store_batch(&db, part).await {
                            Ok(_) => break,
                            // PostgreSQL may report a serialization conflict on the
                            // counter row; the worker retries the batch (as here).
                            Err(e)
                                if tries < 5
                                    && db.get_database_backend() == DbBackend::Postgres =>
                            {
                                tries += 1;
                                eprintln!("retrying after {e}");
                            }
                            Err(e) => panic!("store failed: {e}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM issues").await,
            10,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT CAST(SUM(times_seen) AS BIGINT) FROM issues").await,
            200,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events").await,
            200,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT MIN(times_seen) FROM issues").await,
            20,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(DISTINCT short_id) FROM issues").await,
            10,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn retention_removes_old_events_and_caps_each_issue_but_keeps_counts() {
    for (engine, db) in testing::both().await.expect("test databases") {
        println!("retention test on {engine}");
        let pid = project(&db).await;
        exec(
            &db,
            "UPDATE projects SET retention_days = 30, max_events_per_issue = 5",
        )
        .await;
        let now = chrono::Utc::now().timestamp_millis();
        let day = 86_400_000i64;
        // Issue A: 8 recent events (3 over the cap). Issue B: 2 events 40 days old.
        let mut batch = Vec::new();
        for i in 0..8 {
            let mut p = prepared(pid, error_event("A", "a", "fa", None, None));
            p.timestamp_ms = now - i * 1000;
            p.received_ms = now - i * 1000;
            batch.push(p);
        }
        for _ in 0..2 {
            let mut p = prepared(pid, error_event("B", "b", "fb", None, None));
            p.timestamp_ms = now - 40 * day;
            p.received_ms = now - 40 * day;
            batch.push(p);
        }
        store::store_batch(&db, &batch).await.expect("store");
        let newest_a: Vec<String> = batch[..5].iter().map(|p| p.event_id.clone()).collect();

        let out = faultline_worker::retention::run(&db, now)
            .await
            .expect("retention");
        assert_eq!((out.expired, out.over_cap), (2, 3), "{engine}");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM events").await,
            5,
            "{engine}"
        );
        for id in &newest_a {
            assert_eq!(
                scalar(
                    &db,
                    &format!("SELECT COUNT(*) FROM events WHERE event_id = '{id}'")
                )
                .await,
                1,
                "{engine}: newest kept"
            );
        }
        // Issues and their counters survive.
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM issues").await,
            2,
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT CAST(SUM(times_seen) AS BIGINT) FROM issues").await,
            10,
            "{engine}"
        );
        // A second run has nothing left to do.
        assert_eq!(
            faultline_worker::retention::run(&db, now)
                .await
                .expect("retention"),
            Default::default()
        );
    }
}

#[tokio::test]
async fn an_issue_shows_its_newest_event() {
    for (engine, db) in testing::both().await.expect("test databases") {
        println!("newest-event test on {engine}");
        let pid = project(&db).await;
        let now = chrono::Utc::now().timestamp_millis();
        let mut first = prepared(pid, error_event("KeyError", "'old'", "load", None, None));
        first.timestamp_ms = now - 10_000;
        let mut second = prepared(pid, error_event("KeyError", "'new'", "load", None, None));
        second.timestamp_ms = now;
        store::store_batch(&db, std::slice::from_ref(&first))
            .await
            .expect("store");
        store::store_batch(&db, std::slice::from_ref(&second))
            .await
            .expect("store");
        assert_eq!(
            text(&db, "SELECT title FROM issues").await,
            "KeyError: 'new'",
            "{engine}"
        );
        // An older event arriving late does not take the title back.
        let mut late = prepared(pid, error_event("KeyError", "'late'", "load", None, None));
        late.timestamp_ms = now - 60_000;
        store::store_batch(&db, std::slice::from_ref(&late))
            .await
            .expect("store");
        assert_eq!(
            text(&db, "SELECT title FROM issues").await,
            "KeyError: 'new'",
            "{engine}"
        );
        assert_eq!(
            scalar(&db, "SELECT times_seen FROM issues").await,
            3,
            "{engine}"
        );
    }
}

/// "Resolved in next release" reopens only for a release made after the resolution: an
/// event of an older release (one the organization already had) leaves it resolved.
#[tokio::test]
async fn events_of_an_older_release_do_not_reopen_an_issue_resolved_in_next_release() {
    for (engine, db) in testing::both().await.expect("test databases") {
        let pid = project(&db).await;
        let old = prepared(pid, error_event("KeyError", "x", "load", Some("1.0"), None));
        store::store_batch(&db, std::slice::from_ref(&old))
            .await
            .expect("store");
        let newer = prepared(pid, error_event("KeyError", "x", "load", Some("1.1"), None));
        store::store_batch(&db, std::slice::from_ref(&newer))
            .await
            .expect("store");
        let issue_id = scalar(
            &db,
            &format!(
                "SELECT issue_id FROM events WHERE event_id = '{}'",
                old.event_id
            ),
        )
        .await;
        let details = StatusDetails {
            resolved_release: Some("1.1".into()),
            ..Default::default()
        };
        set_status(
            &db,
            issue_id,
            "resolved_in_next_release",
            &details,
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
        let out = store::store_batch(
            &db,
            &[prepared(
                pid,
                error_event("KeyError", "x", "load", Some("1.0"), None),
            )],
        )
        .await
        .expect("store");
        assert!(
            out.notifications.is_empty(),
            "{engine}: an older release must not reopen it"
        );
        assert_eq!(
            text(
                &db,
                &format!("SELECT status FROM issues WHERE id = {issue_id}")
            )
            .await,
            "resolved_in_next_release",
            "{engine}"
        );
        // A release never seen before is the next one.
        let out = store::store_batch(
            &db,
            &[prepared(
                pid,
                error_event("KeyError", "x", "load", Some("1.2"), None),
            )],
        )
        .await
        .expect("store");
        assert_eq!(
            out.notifications.first().map(|n| n.kind),
            Some(NotificationKind::Regression),
            "{engine}"
        );
    }
}

/// Regressions go on the issues' timelines from the store's transaction: one
/// `set_regression` row per reopened issue per batch however many of its events the batch
/// holds, with the release of its newest event; a new issue writes no timeline row
/// (its "first seen" is read from the issue).
#[tokio::test]
async fn regressions_are_on_the_timeline_once_per_issue_per_batch() {
    for (engine, db) in testing::both().await.expect("test databases") {
        println!("storage test on {engine}");
        let pid = project(&db).await;
        let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
        let at = |mut e: Event, ms: i64| {
            e.timestamp = chrono::DateTime::from_timestamp_millis(base + ms);
            prepared(pid, e)
        };
        let a = at(error_event("KeyError", "x", "load", Some("1.0"), None), 0);
        let b = at(error_event("ValueError", "y", "save", Some("1.0"), None), 0);
        store::store_batch(&db, &[a.clone(), b.clone()])
            .await
            .expect("store");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM issue_activity").await,
            0,
            "{engine}: new issues write no timeline row"
        );
        exec(
            &db,
            "UPDATE issues SET status = 'resolved', resolved_at = 1",
        )
        .await;
        let batch = [
            at(error_event("KeyError", "x", "load", Some("2.0"), None), 10),
            at(error_event("KeyError", "x", "load", Some("2.2"), None), 30),
            at(error_event("KeyError", "x", "load", Some("2.1"), None), 20),
            at(error_event("ValueError", "y", "save", None, None), 10),
            at(error_event("ValueError", "y", "save", Some("3.0"), None), 5),
            at(error_event("TypeError", "z", "other", Some("2.0"), None), 5),
        ];
        let out = store::store_batch(&db, &batch).await.expect("store");
        assert_eq!(out.stored, 6, "{engine}");
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT a.kind, a.user_id, a.data, i.exception_type FROM issue_activity a \
                 JOIN issues i ON i.id = a.issue_id ORDER BY i.exception_type",
            ))
            .await
            .expect("query");
        let got: Vec<(String, Option<i64>, serde_json::Value, String)> = rows
            .iter()
            .map(|r| {
                let data: String = r.try_get_by_index(2).expect("data");
                (
                    r.try_get_by_index(0).expect("kind"),
                    r.try_get_by_index(1).expect("user"),
                    serde_json::from_str(&data).expect("json"),
                    r.try_get_by_index(3).expect("type"),
                )
            })
            .collect();
        assert_eq!(got.len(), 2, "{engine}: {got:?}");
        assert_eq!(got[0].0, "set_regression");
        assert_eq!(got[0].1, None, "the system did it");
        assert_eq!(got[0].3, "KeyError");
        assert_eq!(
            got[0].2["version"], "2.2",
            "{engine}: the newest event's release"
        );
        assert_eq!(got[1].3, "ValueError");
        assert_eq!(
            got[1].2["version"], "",
            "{engine}: its newest event has no release"
        );
        // A redelivered batch stores nothing and records nothing more.
        store::store_batch(&db, &batch).await.expect("store");
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM issue_activity").await, 2);
    }
}
