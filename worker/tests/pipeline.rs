//! The pipeline driver as the worker runs it: jobs in, events committed, in as few
//! transactions as the storer's pace allows. (A test binary of its own: it reads the
//! process-wide count of stored batches.)

use std::time::Duration;

use faultline_core::db::testing;
use faultline_core::jobs::{EventJob, PayloadKind};
use faultline_core::metrics;
use faultline_worker::pipeline::Pipeline;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use serde_json::json;

/// One integer from a query.
async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let statement = Statement::from_string(db.get_database_backend(), sql);
    match db.query_one_raw(statement).await {
        Ok(Some(row)) => row.try_get_by_index::<i64>(0).expect("integer"),
        other => panic!("{sql}: {other:?}"),
    }
}

/// Transactions the storer has committed so far in this process.
fn batches_stored() -> u64 {
    metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix("faultline_store_batch_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn job(project_id: i64, n: usize) -> EventJob {
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let payload = json!({
        "event_id": event_id,
        "platform": "python",
        "exception": {"values": [{"type": format!("Error{}", n % 7), "value": "boom"}]},
        "tags": {"wave": (n / 100).to_string()},
    });
    EventJob {
        project_id,
        event_id,
        received_ms: chrono::Utc::now().timestamp_millis(),
        kind: PayloadKind::Event,
        payload: serde_json::value::to_raw_value(&payload).ok(),
        ..EventJob::default()
    }
}

/// Jobs that arrive while the storer is busy wait for it together and are committed in
/// one transaction, however many separate bursts they came in: batches grow with the
/// storer's pace instead of being cut by arrival (storing costs mostly per issue touched,
/// so one large transaction is much cheaper than several small ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_arriving_while_the_storer_is_busy_are_stored_in_one_transaction() {
    let db = testing::sqlite().await.expect("database");
    db.execute_unprepared(
        "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0); \
         INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'web', 'web', true, 90, 1000, 0, 0 FROM organizations",
    )
    .await
    .expect("a project");
    let project = count(&db, "SELECT id FROM projects").await;
    let pipeline = Pipeline::start(db.clone());

    // A light load is stored at once, without waiting for a batch to fill.
    let before = batches_stored();
    tokio::time::timeout(Duration::from_secs(10), pipeline.process(job(project, 0)))
        .await
        .expect("a lone job is stored without waiting for others")
        .expect("stored");
    assert_eq!(batches_stored(), before + 1);

    // Another writer holds SQLite's write lock, so the storer's next transaction waits.
    let blocker = db.begin().await.expect("begin");
    blocker
        .execute_unprepared("UPDATE projects SET issue_counter = issue_counter")
        .await
        .expect("take the write lock");
    let before = batches_stored();
    let mut waiting = Vec::new();
    let first = pipeline.clone();
    waiting.push(tokio::spawn(
        async move { first.process(job(project, 1)).await },
    ));
    // Five bursts of 100 jobs while that transaction waits.
    for wave in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        for i in 0..100 {
            let p = pipeline.clone();
            let n = 100 + wave * 100 + i;
            waiting.push(tokio::spawn(
                async move { p.process(job(project, n)).await },
            ));
        }
    }
    // Time for the last burst to be prepared (debug builds are slow), then release.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    blocker.rollback().await.expect("release the write lock");
    for w in waiting {
        w.await.expect("task").expect("stored");
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events").await, 502);
    assert_eq!(
        batches_stored() - before,
        2,
        "the job that met the lock, then one transaction for all 500 that came meanwhile"
    );
}
