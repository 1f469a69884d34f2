//! The durable queue and the worker: a poison job ends in the dead-letter state where
//! operators can see it, without blocking the jobs behind it.

use std::time::{Duration, Instant};

use apalis_core::backend::persistence::Persistence;
use apalis_core::worker::context::WorkerContext;
use faultline_app::queue::{Backend, Queue, open_sqlite, sqlite};
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
    faultline_app::accounts::orgs::create(&db, "acme", None, None)
        .await
        .expect("org");
    let (project_id, _) = faultline_app::accounts::projects::create(&db, "acme", "web", None)
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
    // A damaged frame (what a torn or corrupted queue.db row would hold): not decodable.
    queue
        .enqueue(b"FLJ1\x05\x00\x00\x00{}".to_vec())
        .await
        .expect("enqueue damaged frame");
    let good = "0123456789abcdef0123456789abcdef";
    queue
        .enqueue(job(r#"{"message": "fine"}"#, good))
        .await
        .expect("enqueue good");
    // A good job in the form ingest writes (a frame with an lz4 payload).
    let framed = "fedcba9876543210fedcba9876543210";
    let head = faultline_core::jobs::JobHead {
        project_id,
        event_id: framed,
        received_ms: 1,
        client_ip: None,
        sent_at: None,
        envelope_sdk: None,
        kind: faultline_core::jobs::PayloadKind::Event,
        traceparent: None,
    };
    queue
        .enqueue(
            head.frame(br#"{"message": "framed and fine"}"#)
                .expect("frame"),
        )
        .await
        .expect("enqueue framed");

    let worker = faultline_app::worker_runtime::spawn(db.clone(), Backend::Sqlite(pool))
        .await
        .expect("worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = queue.report(10).await.expect("report");
        if report.dead.len() == 2 {
            assert!(
                report.dead.iter().all(|d| d.0.parse::<u64>().is_ok()),
                "job ids"
            );
            let errors: Vec<&str> = report
                .dead
                .iter()
                .map(|d| d.2.as_deref().unwrap_or_default())
                .collect();
            assert!(
                errors.iter().any(|e| e.contains("invalid event payload")),
                "{report:?}"
            );
            // Retrying cannot make a payload valid: it died at its first attempt.
            assert!(
                report
                    .dead
                    .iter()
                    .filter(|d| d
                        .2
                        .as_deref()
                        .unwrap_or_default()
                        .contains("invalid event payload"))
                    .all(|d| d.1 == 1),
                "{report:?}"
            );
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains("neither a frame nor JSON")),
                "the damaged frame is dead with its reason: {report:?}"
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
            format!("SELECT COUNT(*) FROM events WHERE event_id IN ('{good}', '{framed}')"),
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<i64>(0)
        .expect("count");
    assert_eq!(
        stored, 2,
        "the good jobs behind the poison ones were stored"
    );
    // Operators can put dead jobs back.
    assert_eq!(queue.retry_dead().await.expect("retry"), 2);
    worker.stop().await;
}

/// Producers do not checkpoint inside their commits; the background checkpointer keeps the
/// WAL bounded under steady writes (without it, the WAL holds everything ever written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_keeps_the_wal_bounded() {
    let dir = temp_dir("faultline-wal");
    let path = dir.join("queue.db");
    let pool = open_sqlite(&path).await.expect("queue");
    let restart = 1024 * 1024;
    tokio::spawn(sqlite::checkpointer(pool.clone(), restart));
    // Payloads that do not compress: 8 rounds of 2 MiB, 16 MiB in all.
    let mut seed = 1u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect()
    };
    for _ in 0..8 {
        let jobs: Vec<Vec<u8>> = (0..512).map(|_| noise(4096)).collect();
        sqlite::insert_batch(&pool, &jobs).await.expect("insert");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let wal = std::fs::metadata(dir.join("queue.db-wal"))
        .expect("wal")
        .len();
    assert!(
        wal < 8 * 1024 * 1024,
        "WAL grew to {wal} bytes for 16 MiB written; it restarts past {restart}"
    );
    let jobs: i64 = sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM queue_jobs")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        jobs,
        8 * 512,
        "every job is still there after the checkpoints"
    );
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A group commit that fails answers each of its requests with the error (ingest turns it
/// into a 503, so the SDK retries), and the committer writes the next batch through a fresh
/// connection instead of failing every later request too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_is_reported_and_the_next_one_lands() {
    let dir = temp_dir("faultline-commit-fail");
    let pool = open_sqlite(&dir.join("queue.db")).await.expect("queue");
    let queue = Queue::start(Backend::Sqlite(pool.clone()));
    queue.enqueue(job(1)).await.expect("first job");

    // The payload table goes away under the committer: its prepared insert now fails.
    sea_orm::sqlx::query("ALTER TABLE queue_payloads RENAME TO queue_payloads_away")
        .execute(&pool)
        .await
        .expect("rename");
    let failed = queue.enqueue(job(2)).await;
    assert!(
        matches!(failed, Err(faultline_app::queue::QueueError::Write(_))),
        "{failed:?}"
    );
    sea_orm::sqlx::query("ALTER TABLE queue_payloads_away RENAME TO queue_payloads")
        .execute(&pool)
        .await
        .expect("rename back");

    queue.enqueue(job(3)).await.expect("the next job lands");
    let payloads: i64 = sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM queue_payloads")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        payloads, 2,
        "jobs 1 and 3 are durable, job 2 was refused whole"
    );
    let orphans: i64 = sea_orm::sqlx::query_scalar(
        "SELECT COUNT(*) FROM queue_jobs WHERE id NOT IN (SELECT id FROM queue_payloads)",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(orphans, 0, "the failed batch left no job row behind");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A group commit stores every payload of its batch exactly once, each with its own job row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_stores_every_job_once() {
    let dir = temp_dir("faultline-commit-chunks");
    let path = dir.join("queue.db");
    let pool = open_sqlite(&path).await.expect("queue");
    let payloads: Vec<Vec<u8>> = (0..70).map(job).collect();
    let mut writer = sqlite::Writer::open(&path).expect("writer");
    writer
        .insert_batch(payloads.iter().map(|p| p.as_slice()))
        .expect("70 jobs");
    writer
        .insert_batch([payloads[0].as_slice()])
        .expect("one job");
    let mut stored: Vec<Vec<u8>> = sea_orm::sqlx::query_scalar(
        "SELECT payload FROM queue_payloads JOIN queue_jobs USING (id) ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("payloads");
    let jobs: i64 = sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM queue_jobs")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(jobs, 71);
    stored.sort();
    let mut expected = payloads.clone();
    expected.push(payloads[0].clone());
    expected.sort();
    assert_eq!(stored, expected);
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn job(i: usize) -> Vec<u8> {
    format!(
        r#"{{"project_id":1,"event_id":"{i:032x}","received_ms":1,"client_ip":null,"kind":"event","payload":{{}}}}"#
    )
    .into_bytes()
}

fn consumer(pool: &sea_orm::sqlx::SqlitePool, batch_size: usize) -> sqlite::Jobs {
    sqlite::Jobs::new(
        pool.clone(),
        sqlite::Settings {
            batch_size,
            heartbeat: Duration::from_millis(200),
            missed_heartbeats: 1,
        },
    )
}

fn ids(tasks: &[apalis_core::task::Task<Vec<u8>>]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| t.task_id().expect("task id").to_string())
        .collect()
}

/// Two workers fetching at the same time from one queue file never get the same job, and
/// between them they get every job once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_never_share_a_job() {
    let dir = temp_dir("faultline-share");
    let pool = open_sqlite(&dir.join("queue.db")).await.expect("queue");
    let jobs: Vec<Vec<u8>> = (0..2000).map(job).collect();
    sqlite::insert_batch(&pool, &jobs).await.expect("insert");
    // Each worker opens its own pool, as separate processes do.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let fetch = |name: &'static str| {
        let path = dir.join("queue.db");
        let start = start.clone();
        tokio::spawn(async move {
            let pool = sqlite::open_for_worker(&path).await.expect("worker pool");
            let mut jobs = consumer(&pool, 50);
            let worker = WorkerContext::new(name);
            jobs.register(&worker).await.expect("register");
            start.wait().await;
            let mut seen = Vec::new();
            loop {
                let batch = jobs.fetch_next(&worker).await.expect("fetch");
                if batch.is_empty() {
                    return seen;
                }
                seen.extend(ids(&batch));
                // As the pipeline would: work on the batch before fetching again.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (a, b) = (fetch("a"), fetch("b"));
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    let all: std::collections::HashSet<&String> = a.iter().chain(&b).collect();
    assert_eq!(a.len() + b.len(), 2000, "every job fetched once");
    assert_eq!(all.len(), 2000, "no job fetched twice");
    assert!(!a.is_empty() && !b.is_empty(), "both workers got work");
}

/// A graceful stop puts the jobs back at once without counting an attempt; a worker that
/// dies is noticed by the others' heartbeats, and its jobs return with one attempt more.
/// A job that takes every worker down with it ends in the dead-letter table.
#[tokio::test]
async fn jobs_of_stopped_and_dead_workers_return_to_the_queue() {
    let dir = temp_dir("faultline-orphans");
    let pool = open_sqlite(&dir.join("queue.db")).await.expect("queue");
    sqlite::insert_batch(&pool, &[job(1), job(2), job(3)])
        .await
        .expect("insert");

    let mut first = consumer(&pool, 10);
    let one = WorkerContext::new("one");
    first.register(&one).await.expect("register");
    assert_eq!(first.fetch_next(&one).await.expect("fetch").len(), 3);
    assert!(first.fetch_next(&one).await.expect("fetch").is_empty());
    assert_eq!(sqlite::release(&pool, "one").await.expect("release"), 3);
    let again = first.fetch_next(&one).await.expect("fetch");
    assert_eq!(again.len(), 3, "released jobs can be fetched again");
    assert!(
        again.iter().all(|t| t.attempt() == 0),
        "a graceful release is not an attempt"
    );

    // "one" dies holding all three. Another worker's heartbeat gives them back.
    let mut kill_count = 0;
    let mut holder = "one".to_string();
    while kill_count < faultline_app::queue::MAX_ATTEMPTS {
        tokio::time::sleep(Duration::from_millis(450)).await; // > 200 ms x (1 + 1)
        let next = format!("w{kill_count}");
        let ctx = WorkerContext::new(&next);
        let mut jobs = consumer(&pool, 10);
        jobs.register(&ctx).await.expect("register");
        kill_count += 1;
        let fetched = jobs.fetch_next(&ctx).await.expect("fetch");
        if kill_count < faultline_app::queue::MAX_ATTEMPTS {
            assert_eq!(fetched.len(), 3, "jobs of {holder} came back");
            assert!(
                fetched.iter().all(|t| t.attempt() == kill_count),
                "each lost worker counts as an attempt"
            );
        } else {
            assert!(
                fetched.is_empty(),
                "after {kill_count} lost workers the jobs are dead"
            );
        }
        holder = next;
    }
    let queue = Queue::start(Backend::Sqlite(pool.clone()));
    let report = queue.report(10).await.expect("report");
    assert_eq!(report.dead.len(), 3, "{report:?}");
    assert!(
        report.dead[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("stopped without finishing"),
        "{report:?}"
    );
}

/// A queue written by an earlier version (apalis-sqlite's `Jobs` table) is adopted on
/// open: unfinished jobs are queued, dead ones kept as dead, finished ones dropped.
#[tokio::test]
async fn jobs_of_the_earlier_queue_format_survive_an_upgrade() {
    let dir = temp_dir("faultline-upgrade");
    let path = dir.join("queue.db");
    {
        let pool =
            sea_orm::sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .expect("old queue");
        // The columns of apalis-sqlite 1.0's table that matter here.
        sea_orm::sqlx::query(
            "CREATE TABLE Jobs (job BLOB NOT NULL, id TEXT NOT NULL UNIQUE, job_type TEXT NOT NULL, \
             status TEXT NOT NULL DEFAULT 'Pending', attempts INTEGER NOT NULL DEFAULT 0, \
             max_attempts INTEGER NOT NULL DEFAULT 25, run_at INTEGER, last_result TEXT, \
             lock_at INTEGER, lock_by TEXT, done_at INTEGER, priority INTEGER NOT NULL DEFAULT 0)",
        )
        .execute(&pool)
        .await
        .expect("create");
        for (i, status, attempts, result) in [
            (1, "Pending", 0, None),
            (2, "Running", 1, None),
            (3, "Failed", 2, Some("db down")),
            (4, "Failed", 5, Some("invalid event payload")),
            (5, "Done", 1, None),
        ] {
            sea_orm::sqlx::query(
                "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, last_result) \
                 VALUES (?1, ?2, 'faultline::events', ?3, ?4, 5, 1700000000, ?5)",
            )
            .bind(job(i))
            .bind(format!("01J{i:023}"))
            .bind(status)
            .bind(attempts)
            .bind(result)
            .execute(&pool)
            .await
            .expect("insert");
        }
        pool.close().await;
    }
    let pool = open_sqlite(&path).await.expect("upgraded queue");
    let mut jobs = consumer(&pool, 10);
    let ctx = WorkerContext::new("after-upgrade");
    jobs.register(&ctx).await.expect("register");
    let fetched = jobs.fetch_next(&ctx).await.expect("fetch");
    let payloads: Vec<String> = fetched
        .iter()
        .map(|t| String::from_utf8_lossy(&t.args).into_owned())
        .collect();
    assert_eq!(fetched.len(), 3, "{payloads:?}");
    for i in 1..=3 {
        assert!(
            payloads.iter().any(|p| p.contains(&format!("{i:032x}"))),
            "job {i} queued"
        );
    }
    let queue = Queue::start(Backend::Sqlite(pool.clone()));
    let report = queue.report(10).await.expect("report");
    assert_eq!(report.dead.len(), 1);
    assert_eq!(report.dead[0].2.as_deref(), Some("invalid event payload"));
    let old: i64 =
        sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'Jobs'")
            .fetch_one(&pool)
            .await
            .expect("schema");
    assert_eq!(old, 0, "the old table is gone");
    // Opening again finds nothing more to adopt.
    drop(open_sqlite(&path).await.expect("reopen"));
}
