//! The durable queue and the worker: a poison job ends in the dead-letter state where
//! operators can see it, without blocking the jobs behind it.

use std::time::{Duration, Instant};

use faultline_app::queue::{Backend, Queue, open_sqlite};
use sea_orm::ConnectionTrait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_jobs_go_dead_and_do_not_block_the_queue() {
    let dir =
        std::env::temp_dir().join(format!("faultline-queue-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = faultline_core::db::connect_url(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("faultline.db").display()
    ))
    .await
    .expect("db");
    faultline_core::db::migrate(&db).await.expect("migrate");
    faultline_app::cli::create_org(&db, "acme", None, None)
        .await
        .expect("org");
    let (project_id, _) = faultline_app::cli::create_project(&db, "acme", "web", None)
        .await
        .expect("project");

    let pool = open_sqlite(&dir.join("queue.db")).await.expect("queue");
    let queue = Queue::start(Backend::Sqlite(pool.clone()));
    let job = |payload: &str, id: &str| {
        format!(
            r#"{{"project_id":{project_id},"event_id":"{id}","received_ms":1,"client_ip":null,"kind":"event","payload":{payload}}}"#
        )
        .into_bytes()
    };
    // Not an event object: can never be processed.
    queue
        .enqueue(job("[1, 2, 3]", "00000000000000000000000000000001"))
        .await
        .expect("enqueue poison");
    let good = "0123456789abcdef0123456789abcdef";
    queue
        .enqueue(job(r#"{"message": "fine"}"#, good))
        .await
        .expect("enqueue good");

    let worker = faultline_app::worker_runtime::spawn(db.clone(), Backend::Sqlite(pool))
        .await
        .expect("worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = queue.report(10).await.expect("report");
        if report.dead.len() == 1 {
            assert_eq!(report.dead[0].0.len(), 26, "a job id");
            assert!(
                report.dead[0]
                    .2
                    .as_deref()
                    .unwrap_or_default()
                    .contains("invalid event payload"),
                "{report:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "poison job never went dead: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) FROM events WHERE event_id = '{good}'"),
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("count");
    assert_eq!(stored, 1, "the good job behind the poison one was stored");
    // Operators can put dead jobs back.
    assert_eq!(queue.retry_dead().await.expect("retry"), 1);
    worker.stop().await;
}

/// The plan of apalis' batch acknowledgement on a fresh queue file: looking each id up in
/// the primary key, not walking every job the worker locked (which, before statistics were
/// seeded, took one core and stalled ingest for seconds under load).
#[tokio::test]
async fn a_fresh_queue_plans_batch_acks_by_primary_key() {
    let dir =
        std::env::temp_dir().join(format!("faultline-plan-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pool = open_sqlite(&dir.join("queue.db")).await.expect("queue");
    assert_ack_uses_primary_key(&pool).await;
}

/// The same after the periodic statistics refresh ran over a backlog nobody had locked
/// yet (every `lock_by` NULL, as after `faultline web` took a load alone), and after the
/// queue was opened again, as a worker starting on that backlog opens it. Sampled
/// statistics then claimed `lock_by = ?` picks a few hundred rows, and a worker draining a
/// 10,000-job backlog took 7 s per batch acknowledgement.
#[tokio::test]
async fn batch_acks_keep_the_primary_key_after_statistics_refresh() {
    let dir =
        std::env::temp_dir().join(format!("faultline-plan-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("queue.db");
    let pool = open_sqlite(&path).await.expect("queue");
    let queue = Queue::start(Backend::Sqlite(pool.clone()));
    let jobs = (0..3000).map(|i| {
        let queue = queue.clone();
        async move {
            let job = format!(
                r#"{{"project_id":1,"event_id":"{i:032x}","received_ms":1,"client_ip":null,"kind":"event","payload":{{}}}}"#
            );
            queue.enqueue(job.into_bytes()).await
        }
    });
    for r in futures_util::future::join_all(jobs).await {
        r.expect("enqueue");
    }
    faultline_app::queue::refresh_statistics(&pool).await;
    pool.close().await;
    let reopened = open_sqlite(&path).await.expect("reopen");
    assert_ack_uses_primary_key(&reopened).await;
}

async fn assert_ack_uses_primary_key(pool: &sea_orm::sqlx::SqlitePool) {
    let plan: Vec<(i64, i64, i64, String)> = sea_orm::sqlx::query_as(
        "EXPLAIN QUERY PLAN WITH j AS (SELECT value ->> 'task_id' AS task_id, value ->> 'status' AS status \
         FROM json_each(?1)) UPDATE Jobs SET status = j.status FROM j WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2",
    )
    .bind("[]")
    .bind("worker")
    .fetch_all(pool)
    .await
    .expect("plan");
    let text: Vec<String> = plan.into_iter().map(|r| r.3).collect();
    assert!(
        text.iter().any(|l| l.contains("sqlite_autoindex_Jobs_1"))
            && !text.iter().any(|l| l.contains("LIdx")),
        "ack plan: {text:?}"
    );
}
