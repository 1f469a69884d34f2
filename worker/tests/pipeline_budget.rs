//! The pipeline's memory budget: however many jobs are handed over at once, the bytes it
//! holds for them stay within the budget, and every job is still stored exactly once.
//! (A test binary of its own, so no other test's pipeline runs beside these.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use faultline_core::db::testing;
use faultline_core::jobs::{EventJob, JobHead, PayloadKind};
use faultline_core::metrics;
use faultline_worker::pipeline::{Pipeline, PipelineError, job_cost};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

const MIB: usize = 1024 * 1024;

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let statement = Statement::from_string(db.get_database_backend(), sql);
    match db.query_one_raw(statement).await {
        Ok(Some(row)) => row.try_get_by_index::<i64>(0).expect("integer"),
        other => panic!("{sql}: {other:?}"),
    }
}

async fn project(db: &DatabaseConnection) -> i64 {
    db.execute_unprepared(
        "INSERT INTO organizations (slug, name, created_at) VALUES ('acme', 'Acme', 0)",
    )
    .await
    .expect("an organization");
    db.execute_unprepared(
        "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'web', 'web', true, 90, 1000, 0, 0 FROM organizations",
    )
    .await
    .expect("a project");
    count(db, "SELECT id FROM projects").await
}

/// An event with `crumbs` breadcrumbs (~200 bytes each, random ids that compress poorly)
/// as the worker reads it from the queue: a frame with an lz4 payload, like every job
/// ingest writes.
fn large_job(project_id: i64, n: usize, crumbs: usize) -> EventJob {
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let crumbs: Vec<_> = (0..crumbs)
        .map(|i| {
            json!({
                "message": format!("{}-{i}-{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()),
                "category": "query",
                "data": {"row": i, "n": n, "id": uuid::Uuid::new_v4().to_string()},
            })
        })
        .collect();
    let payload = json!({
        "event_id": event_id,
        "platform": "python",
        "exception": {"values": [{"type": format!("Error{}", n % 13), "value": "boom"}]},
        "breadcrumbs": {"values": crumbs},
    });
    let raw = serde_json::to_vec(&payload).expect("json");
    let frame = JobHead {
        project_id,
        event_id: &event_id,
        received_ms: chrono::Utc::now().timestamp_millis(),
        client_ip: None,
        sent_at: None,
        envelope_sdk: None,
        kind: PayloadKind::Event,
        traceparent: None,
    }
    .frame(&raw)
    .expect("frame");
    EventJob::decode(&frame).expect("decodes")
}

/// Samples the budget's bytes in use every millisecond until told to stop; returns the most.
fn sample(pipeline: &Pipeline, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let budget = pipeline.budget().clone();
    tokio::spawn(async move {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            most = most.max(budget.in_use());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most
    })
}

/// 200 jobs of ~50 KB unpacked handed over at once — ~16 MB charged, eight times the
/// budget: the bytes held never pass 2 MiB (sampled, and the budget's own high-water
/// mark), the budget is actually what limits (it fills up), every event is stored once,
/// and everything is given back at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_flight_stay_within_the_budget_and_every_job_is_stored() {
    for (engine, db) in testing::both().await.expect("test databases") {
        let project = project(&db).await;
        let budget = 2 * MIB;
        let pipeline = Pipeline::start_with_budget(db.clone(), budget);
        let jobs: Vec<EventJob> = (0..200).map(|n| large_job(project, n, 250)).collect();
        let offered: usize = jobs.iter().map(job_cost).sum();
        assert!(
            offered > 6 * budget,
            "{engine}: the jobs must overflow the budget ({offered} bytes)"
        );

        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample(&pipeline, stop.clone());
        let stored = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for job in jobs {
            let p = pipeline.clone();
            let stored = stored.clone();
            handles.push(tokio::spawn(async move {
                p.process(job).await.expect("stored");
                stored.fetch_add(1, Ordering::Relaxed);
            }));
        }
        for h in handles {
            tokio::time::timeout(Duration::from_secs(120), h)
                .await
                .expect("every job finishes")
                .expect("task");
        }
        stop.store(true, Ordering::Relaxed);
        let sampled = sampler.await.expect("sampler");

        assert_eq!(stored.load(Ordering::Relaxed), 200, "{engine}");
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM events").await,
            200,
            "{engine}"
        );
        assert!(
            sampled <= budget,
            "{engine}: {sampled} bytes held, budget {budget}"
        );
        let peak = pipeline.budget().peak();
        assert!(
            peak <= budget,
            "{engine}: high-water mark {peak} over the budget"
        );
        assert!(
            peak > budget / 2,
            "{engine}: the budget never filled ({peak}), so it did not limit anything"
        );
        assert_eq!(
            pipeline.budget().in_use(),
            0,
            "{engine}: every charge is given back"
        );
        assert!(
            metrics::render().contains("faultline_worker_inflight_bytes"),
            "{engine}: /metrics shows the bytes held"
        );
    }
}

/// A job larger than the whole budget is not refused or stuck: it is stored alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_larger_than_the_budget_is_stored_alone() {
    let db = testing::sqlite().await.expect("database");
    let project = project(&db).await;
    let pipeline = Pipeline::start_with_budget(db.clone(), MIB);
    let huge = large_job(project, 1, 6000);
    assert!(job_cost(&huge) > MIB, "the job is over the budget");
    let small: Vec<EventJob> = (2..20).map(|n| large_job(project, n, 0)).collect();
    let mut handles = vec![{
        let p = pipeline.clone();
        tokio::spawn(async move { p.process(huge).await })
    }];
    for job in small {
        let p = pipeline.clone();
        handles.push(tokio::spawn(async move { p.process(job).await }));
    }
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("finishes")
            .expect("task")
            .expect("stored");
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events").await, 19);
    assert!(pipeline.budget().peak() <= MIB);
    assert_eq!(pipeline.budget().in_use(), 0);
}

/// Jobs that fail (garbage payloads) give their bytes back too: a stream of them cannot
/// leak the budget away and stall the good jobs behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_give_their_bytes_back() {
    let db = testing::sqlite().await.expect("database");
    let project = project(&db).await;
    let pipeline = Pipeline::start_with_budget(db.clone(), MIB);
    for round in 0..3 {
        let mut handles = Vec::new();
        for n in 0..50 {
            let p = pipeline.clone();
            let mut job = large_job(project, n, 100);
            if n % 2 == 0 {
                // Not an event: a frame whose payload is JSON but not an object.
                job = EventJob {
                    payload: serde_json::value::to_raw_value(&json!([1, 2, 3])).ok(),
                    payload_lz4: None,
                    ..job
                };
            }
            handles.push(tokio::spawn(async move { (n, p.process(job).await) }));
        }
        for h in handles {
            let (n, result) = tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("finishes")
                .expect("task");
            match result {
                Ok(()) => assert!(n % 2 == 1, "round {round}: garbage job {n} was stored"),
                Err(PipelineError::Invalid(_)) => {
                    assert!(n % 2 == 0, "round {round}: job {n} refused")
                }
                Err(e) => panic!("round {round}: job {n}: {e}"),
            }
        }
        assert_eq!(
            pipeline.budget().in_use(),
            0,
            "round {round}: bytes of failed jobs leaked"
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events").await, 75);
}
