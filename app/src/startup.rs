//! Starting the processes: `serve` (web + embedded worker), `web`, `worker`.
//!
//! Everything that can be wrong with the configuration or the environment is found here,
//! before serving, and reported as one line by `main`.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::middleware::{Condition, NormalizePath, TrailingSlash};
use actix_web::{App, HttpServer, web};
use faultline_core::config::Config;
use faultline_worker::budget::MemoryBudget;
use sea_orm::DatabaseConnection;

use crate::ingest::{self, IngestState, keys::KeyCache, ratelimit::RateLimiter};
use crate::queue::Queue;
use crate::{api, health, worker_runtime};
use faultline_core::db;

/// Which halves of Faultline this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub web: bool,
    pub worker: bool,
}

/// Shared by every HTTP handler.
pub struct AppState {
    pub config: Config,
    pub db: DatabaseConnection,
    pub queue: Queue,
}

/// A prepared Faultline process: configuration checked, database migrated, queue open,
/// listener bound.
pub struct Application {
    config: Config,
    db: DatabaseConnection,
    queue: Queue,
    listener: Option<TcpListener>,
    roles: Roles,
    alerts: faultline_worker::alerts::AlertContext,
}

impl Application {
    /// Checks the environment and binds; nothing is served yet.
    pub async fn build(mut config: Config, roles: Roles) -> anyhow::Result<Application> {
        config.prepare_data_dir()?;
        // Where uploaded files' bytes live; a directory that cannot be written stops the start.
        let store = faultline_worker::symbolicate::storage::from_config(&config.artifact_storage)?;
        tracing::info!(store = store.kind(), "artifact storage");
        faultline_worker::symbolicate::storage::install(store);
        let db = db::connect(&config).await?;
        db::migrate(&db).await?;
        let queue = Queue::open(&config).await?;
        // Checked now so a bad SMTP URL or sender stops the start with one line.
        let alerts = faultline_worker::alerts::AlertContext::new(db.clone(), &config)?;
        let listener = if roles.web {
            let l = TcpListener::bind(config.bind).map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}: {} (set FAULTLINE_BIND to a free address)",
                    config.bind,
                    e
                )
            })?;
            // Only processes that serve `/setup` print its link; a worker or an admin
            // command never does.
            crate::first_run::announce(&config, &db).await?;
            Some(l)
        } else {
            None
        };
        Ok(Application {
            config,
            db,
            queue,
            listener,
            roles,
            alerts,
        })
    }

    /// The port actually bound (tests bind port 0).
    pub fn port(&self) -> Option<u16> {
        self.listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Serves until SIGINT/SIGTERM, then stops accepting, finishes in-flight requests and
    /// lets the worker finish its batch.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        crate::memory::spawn_trimmer();
        let worker = if self.roles.worker {
            let backend = match self.queue.backend() {
                crate::queue::Backend::Sqlite(_) => crate::queue::Backend::Sqlite(
                    crate::queue::open_sqlite_for_worker(&self.config.queue_db_path()).await?,
                ),
                other => other.clone(),
            };
            if !self.alerts.mailer.is_configured() {
                tracing::info!("FAULTLINE_SMTP_URL is not set: alerts are recorded, not mailed");
            }
            tokio::spawn(faultline_worker::alerts::run_loop(self.alerts.clone()));
            Some(
                worker_runtime::spawn_with_budget(
                    self.db.clone(),
                    backend,
                    self.config.limits.worker_memory,
                )
                .await?,
            )
        } else {
            None
        };
        if let Some(listener) = self.listener {
            let server = http_server(self.config, self.db, self.queue, listener).await?;
            tracing::info!("faultline is serving");
            // actix handles SIGTERM/SIGINT itself: it stops accepting, lets in-flight
            // requests finish (each waits for its group commit) and then resolves.
            server.await?;
            tracing::info!("web server stopped; every acknowledged event is in the queue");
        } else {
            let metrics = match self.config.metrics_bind {
                Some(bind) => {
                    let server = crate::metrics::worker_server(
                        bind,
                        self.db.clone(),
                        self.config.metrics_token.clone(),
                    )?;
                    let handle = server.handle();
                    tokio::spawn(server);
                    Some(handle)
                }
                None => None,
            };
            shutdown_signal().await;
            tracing::info!("stopping");
            if let Some(m) = metrics {
                m.stop(true).await;
            }
        }
        if let Some(w) = worker {
            w.stop().await;
            tracing::info!("worker stopped");
        }
        Ok(())
    }
}

async fn http_server(
    config: Config,
    db: DatabaseConnection,
    queue: Queue,
    listener: TcpListener,
) -> anyhow::Result<actix_web::dev::Server> {
    let keys = KeyCache::start(db.clone()).await?;
    let free_disk = Arc::new(AtomicU64::new(u64::MAX));
    tokio::spawn(disk_gauge(config.data_dir.clone(), free_disk.clone()));
    let ingest = web::Data::new(IngestState {
        keys,
        queue: queue.clone(),
        limits: config.limits.clone(),
        rate_limiter: RateLimiter::default(),
        free_disk,
        memory: MemoryBudget::with_gauge(config.limits.ingest_memory, |b| {
            faultline_core::metrics::get().ingest_inflight_bytes.set(b);
        }),
    });
    let pages = web::Data::new(crate::web::WebState::new(&config));
    let metrics = web::Data::new(crate::metrics::MetricsState {
        db: db.clone(),
        token: config.metrics_token.clone(),
    });
    api::blobs::spawn_collector(db.clone(), config.artifact_gc);
    let state = web::Data::new(AppState { config, db, queue });
    let traced = crate::telemetry::enabled();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ingest.clone())
            .app_data(state.clone())
            .app_data(pages.clone())
            .wrap(crate::web::security_headers())
            .wrap(actix_web::middleware::from_fn(
                crate::web::session::api_session,
            ))
            .app_data(metrics.clone())
            .configure(crate::metrics::routes)
            // SDKs always send the trailing slash, sentry-cli too; odd DSN prefixes can
            // produce `//api/...`. Fold both before routing (Relay does the same).
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            // Outermost, so the span covers the whole request; absent unless tracing is on.
            .wrap(Condition::new(traced, crate::telemetry::http::RequestSpans))
            .configure(api::routes)
            .configure(ingest::routes)
            .configure(health::routes)
            .configure(crate::unsubscribe::routes)
            .configure(crate::web::routes)
    })
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn disk_gauge(dir: std::path::PathBuf, free: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        if let Ok(bytes) = fs4::available_space(&dir) {
            free.store(bytes, Ordering::Relaxed);
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
