//! Symbolication benchmark: JavaScript events with 10 minified frames each, mapped against
//! a ~1 MB source map (uploaded as artifacts of a release), through the real pipeline
//! (normalize, symbolicate, group, store) on a fresh database. Fails unless every event is
//! stored with its frames mapped.
//!
//! ```sh
//! symbolicate-bench --events 30000            # with the map
//! symbolicate-bench --events 30000 --no-map   # the same events, no map uploaded
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use faultline_bench::new_event_id;
use faultline_core::db::testing;
use faultline_core::jobs::{EventJob, PayloadKind};
use faultline_worker::pipeline::Pipeline;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value};
use serde_json::json;
use tokio::sync::Semaphore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    engine: String,
    #[arg(long, default_value_t = 30_000)]
    events: usize,
    #[arg(long, default_value_t = 500)]
    issues: usize,
    /// Functions in the generated bundle (2,500 make a ~1 MB map).
    #[arg(long, default_value_t = 2_500)]
    functions: usize,
    #[arg(long, default_value_t = 2 * faultline_worker::pipeline::MAX_BATCH + 384)]
    concurrency: usize,
    /// Upload nothing: the same events go through the lookup and stay minified.
    #[arg(long)]
    no_map: bool,
}

const URL: &str = "https://shop.example.com/static/app.min.js";

/// A minified one-line bundle of `n` functions and its source map (with sourcesContent),
/// plus the 1-based column of each function's `throw`.
fn bundle(n: usize) -> (String, String, Vec<u32>) {
    let files = 20;
    let mut builder = sourcemap::SourceMapBuilder::new(Some("app.min.js"));
    let mut sources: Vec<String> = vec![String::new(); files];
    let mut lines = vec![0u32; files];
    let mut minified = String::from("(()=>{");
    let mut throw_cols = Vec::with_capacity(n);
    for i in 0..n {
        let f = i % files;
        let src_id = builder.add_source(&format!("../src/module{f}.js"));
        let line = lines[f];
        let original = format!("processOrderStep{i}");
        sources[f].push_str(&format!(
            "// Step {i} of the checkout: validates the order and reports what went wrong.\n\
             export function {original}(order, options) {{\n  \
             if (!order.items.length) {{\n    \
             throw new Error(\"order \" + order.id + \" has no items at step {i}\");\n  \
             }}\n  \
             return order.items.reduce((sum, item) => sum + item.price * {i}, 0);\n\
             }}\n\n"
        ));
        lines[f] += 8;
        let name_id = builder.add_name(&original);
        let fn_col = minified.len() as u32;
        let short = format!("a{i:x}");
        builder.add_raw(0, fn_col, line + 1, 0, Some(src_id), None, false);
        builder.add_raw(
            0,
            fn_col + 9,
            line + 1,
            16,
            Some(src_id),
            Some(name_id),
            false,
        );
        minified.push_str(&format!("function {short}(o,t){{if(!o.items.length)"));
        let throw_col = minified.len() as u32;
        builder.add_raw(0, throw_col, line + 3, 4, Some(src_id), None, false);
        builder.add_raw(0, throw_col + 6, line + 3, 10, Some(src_id), None, false);
        minified.push_str(&format!(
            "throw new Error(\"order \"+o.id+\" has no items at step {i}\");"
        ));
        let ret_col = minified.len() as u32;
        builder.add_raw(0, ret_col, line + 5, 2, Some(src_id), None, false);
        minified.push_str(&format!("return o.items.reduce((s,e)=>s+e.price*{i},0)}}"));
        throw_cols.push(throw_col + 7);
    }
    minified.push_str("})();\n//# sourceMappingURL=app.min.js.map\n");
    for (f, text) in sources.iter().enumerate() {
        let id = builder.add_source(&format!("../src/module{f}.js"));
        builder.set_source_contents(id, Some(text));
    }
    let mut out = Vec::new();
    builder
        .into_sourcemap()
        .to_writer(&mut out)
        .expect("writing the map");
    (minified, String::from_utf8(out).expect("utf-8"), throw_cols)
}

async fn exec(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    let mut n = 0;
    let sql: String = if backend == sea_orm::DbBackend::Postgres {
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_owned()
    };
    db.execute_raw(Statement::from_sql_and_values(backend, &sql, values))
        .await
        .with_context(|| sql.clone())?;
    Ok(())
}

async fn upload(
    db: &DatabaseConnection,
    kind: &str,
    name: &str,
    content: &str,
) -> anyhow::Result<()> {
    use sha1::Digest;
    let sha1: String = sha1::Sha1::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    exec(
        db,
        "INSERT INTO blobs (sha1, size, data, created_at) VALUES (?, ?, ?, 0)",
        vec![
            sha1.clone().into(),
            (content.len() as i64).into(),
            content.as_bytes().to_vec().into(),
        ],
    )
    .await?;
    exec(
        db,
        "INSERT INTO artifacts (organization_id, release_id, name, kind, sha1, size, headers, created_at) \
         SELECT r.organization_id, r.id, ?, ?, ?, ?, '{}', 0 FROM releases r WHERE r.version = 'bench'",
        vec![name.into(), kind.into(), sha1.into(), (content.len() as i64).into()],
    )
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    exec(
        &db,
        "INSERT INTO organizations (slug, name, created_at) VALUES ('bench', 'bench', 0)",
        vec![],
    )
    .await?;
    exec(
        &db,
        "INSERT INTO projects (organization_id, slug, name, enabled, retention_days, max_events_per_issue, issue_counter, created_at) \
         SELECT id, 'bench', 'bench', true, 90, 1000, 0, 0 FROM organizations",
        vec![],
    )
    .await?;
    exec(
        &db,
        "INSERT INTO releases (organization_id, version, date_created, status) SELECT id, 'bench', 0, 'open' FROM organizations",
        vec![],
    )
    .await?;
    let project_id: i64 = db
        .query_one_raw(Statement::from_string(backend, "SELECT id FROM projects"))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(1);

    let (minified, map, throw_cols) = bundle(args.functions);
    if !args.no_map {
        upload(&db, "minified_source", "~/static/app.min.js", &minified).await?;
        upload(&db, "source_map", "~/static/app.min.js.map", &map).await?;
    }
    eprintln!(
        "bundle {} KB, source map {} KB; building {} events over {} issues ...",
        minified.len() / 1024,
        map.len() / 1024,
        args.events,
        args.issues
    );
    let now = chrono::Utc::now().timestamp_millis();
    let jobs: Vec<EventJob> = (0..args.events)
        .map(|i| {
            let issue = i % args.issues;
            let frames: Vec<_> = (0..10)
                .map(|k| {
                    let f = (issue * 10 + k * 7) % throw_cols.len();
                    json!({"filename": URL, "abs_path": URL, "function": format!("a{f:x}"),
                           "lineno": 1, "colno": throw_cols[f], "in_app": true})
                })
                .collect();
            let id = new_event_id();
            let payload = json!({
                "event_id": id, "platform": "javascript", "release": "bench",
                "timestamp": now as f64 / 1000.0,
                "exception": {"values": [{"type": "Error", "value": format!("order {i} has no items"),
                    "stacktrace": {"frames": frames}, "mechanism": {"type": "onerror", "handled": false}}]},
                "request": {"url": "https://shop.example.com/checkout", "headers": {"User-Agent": "Mozilla/5.0"}},
                "sdk": {"name": "sentry.javascript.browser", "version": "11.12.0"},
            })
            .to_string();
            EventJob {
                project_id,
                event_id: id,
                received_ms: now,
                client_ip: Some("127.0.0.1".into()),
                sent_at: None,
                envelope_sdk: None,
                kind: PayloadKind::Event,
                payload: None,
                payload_zstd: Some(EventJob::pack_payload(payload.as_bytes()).expect("pack")),
                traceparent: None,
                payload_lz4: None,
                decode_error: None,
            }
        })
        .collect();

    let pipeline = Pipeline::start(db.clone());
    let limit = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
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

    let stored: i64 = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) FROM events",
        ))
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or(-1);
    // Every stored event's frames must say what happened to them.
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT payload FROM events ORDER BY id DESC LIMIT 1",
        ))
        .await?
        .context("no event stored")?;
    let payload: Vec<u8> = row.try_get_by_index(0)?;
    let event: serde_json::Value = serde_json::from_slice(&zstd::decode_all(&payload[..])?)?;
    let frames = event["exception"]["values"][0]["stacktrace"]["frames"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let want = if args.no_map {
        "no_release_artifact"
    } else {
        "symbolicated"
    };
    let mapped = frames
        .iter()
        .filter(|f| f["data"]["symbolicator_status"] == want)
        .count();
    println!("engine:              {}", args.engine);
    println!(
        "map:                 {}",
        if args.no_map {
            "none"
        } else {
            "1 (release + URL)"
        }
    );
    println!("events:              {} x 10 frames", args.events);
    println!("failed jobs:         {failed}");
    println!("stored events:       {stored}");
    println!(
        "maps parsed:         {}",
        faultline_worker::symbolicate::maps_parsed()
    );
    println!("last event's frames: {mapped}/10 {want}");
    println!(
        "sample frame:        {}",
        frames
            .last()
            .map(|f| format!(
                "{}:{} {} | {}",
                f["filename"], f["lineno"], f["function"], f["context_line"]
            ))
            .unwrap_or_default()
    );
    println!("elapsed:             {elapsed:.2} s");
    println!("processed events/s:  {:.0}", args.events as f64 / elapsed);
    if stored != args.events as i64 || mapped != 10 {
        bail!("stored {stored} events, {mapped}/10 frames {want}");
    }
    Ok(())
}
