//! Pipeline benchmark: events fully processed (normalized, grouped, stored with issue,
//! tag and release updates) per second, on a fresh SQLite or PostgreSQL database, with
//! realistic events spread over many issues. Jobs are submitted to the real pipeline the
//! way the apalis worker does (as many in flight as the worker allows).
//!
//! ```sh
//! pipeline-bench --engine sqlite --events 50000 --issues 1000
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use faultline_bench::{new_event_id, realistic_event};
use faultline_core::db::testing;
use faultline_core::jobs::{EventJob, JobHead, PayloadKind};
use faultline_worker::pipeline::Pipeline;
use sea_orm::{ConnectionTrait, Statement};
use tokio::sync::Semaphore;

// The pipeline allocates many small strings per event; mimalloc is markedly faster at
// that than the system allocator (measured: see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// `sqlite` or `postgres` (the test server of FAULTLINE_TEST_POSTGRES).
    #[arg(long, default_value = "sqlite")]
    engine: String,
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    #[arg(long, default_value_t = 1000)]
    issues: usize,
    /// Jobs in flight, as the worker runs them (its CONCURRENCY).
    #[arg(long, default_value_t = 2 * faultline_worker::pipeline::MAX_BATCH + 384)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // FAULTLINE_LOG=faultline_worker=debug shows how long each batch spends in each stage.
    if let Ok(filter) = std::env::var("FAULTLINE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let db = match args.engine.as_str() {
        "sqlite" => testing::sqlite().await?,
        "postgres" => testing::postgres().await?,
        other => bail!("unknown engine {other}"),
    };
    let backend = db.get_database_backend();
    db.execute_unprepared(
        "INSERT INTO organizations (slug, name, created_at) VALUES ('bench', 'bench', 0)",
    )
    .await?;
    db.execute_unprepared(
        "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'bench', 'bench', true, 90, 1000, 0, 0 FROM organizations",
    )
    .await?;
    let project_id: i64 = db
        .query_one_raw(Statement::from_string(backend, "SELECT id FROM projects"))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(1);

    eprintln!(
        "building {} events over {} issues ...",
        args.events, args.issues
    );
    let now = chrono::Utc::now().timestamp_millis();
    let mut bytes = 0usize;
    let jobs: Vec<EventJob> = (0..args.events)
        .map(|i| {
            let id = new_event_id();
            let payload = realistic_event(i % args.issues, &id, i).to_string();
            bytes += payload.len();
            // The job exactly as ingest writes it to the embedded queue (a frame, lz4).
            let frame = JobHead {
                project_id,
                event_id: &id,
                received_ms: now,
                client_ip: Some("127.0.0.1"),
                sent_at: None,
                envelope_sdk: None,
                kind: PayloadKind::Event,
                traceparent: None,
            }
            .frame(payload.as_bytes())
            .expect("frame");
            EventJob::decode(&frame).expect("decode")
        })
        .collect();

    let pipeline = Pipeline::start(db.clone());
    let limit = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let cpu_before = faultline_bench::cpu_seconds("self");
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let permit = limit.clone().acquire_owned().await?;
        let p = pipeline.clone();
        tasks.spawn(async move {
            let r = p.process(job).await;
            drop(permit);
            r
        });
    }
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = faultline_bench::cpu_seconds("self")
        .zip(cpu_before)
        .map(|(after, before)| after - before);

    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.query_one_raw(Statement::from_string(backend, sql))
                .await
                .ok()
                .flatten()
                .and_then(|r| r.try_get_by_index::<i64>(0).ok())
                .unwrap_or(-1)
        }
    };
    let stored = count("SELECT COUNT(*) FROM events").await;
    let issues = count("SELECT COUNT(*) FROM issues").await;
    let times = count("SELECT CAST(SUM(times_seen) AS BIGINT) FROM issues").await;
    println!("engine:              {}", args.engine);
    println!(
        "events:              {} (avg {:.1} KB JSON)",
        args.events,
        bytes as f64 / args.events as f64 / 1024.0
    );
    println!("failed jobs:         {failed}");
    println!("stored events:       {stored}");
    println!("issues:              {issues} (sum of times_seen {times})");
    println!("elapsed:             {elapsed:.2} s");
    println!("processed events/s:  {:.0}", args.events as f64 / elapsed);
    if let Some(cpu) = cpu {
        // Both cores busy means the CPU per event, not the database, sets the rate.
        println!(
            "CPU per event:       {:.0} µs ({:.2} cores busy)",
            cpu * 1e6 / args.events as f64,
            cpu / elapsed
        );
    }
    if stored != args.events as i64 || issues != args.issues as i64 {
        bail!(
            "stored {stored} events in {issues} issues; expected {} in {}",
            args.events,
            args.issues
        );
    }
    Ok(())
}
