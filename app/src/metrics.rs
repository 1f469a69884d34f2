//! `GET /metrics`: Prometheus text, optionally behind `FAULTLINE_METRICS_TOKEN`.
//!
//! The counters live in `faultline_core::metrics` (every part of Faultline bumps them);
//! this endpoint refreshes the gauges that are sampled rather than counted (database
//! pool) and renders the lot. Web processes serve it on their own port; a
//! `faultline worker` serves it on `FAULTLINE_METRICS_BIND` when that is set.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use faultline_core::metrics::{self, PoolLabel};
use sea_orm::{DatabaseConnection, DbBackend};
use subtle::ConstantTimeEq;

/// What the metrics endpoint needs.
pub struct MetricsState {
    pub db: DatabaseConnection,
    pub token: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}

async fn scrape(req: HttpRequest, state: web::Data<MetricsState>) -> HttpResponse {
    if let Some(token) = &state.token {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(token.as_bytes()))) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\""))
                .json(serde_json::json!({
                    "detail": "metrics require Authorization: Bearer <FAULTLINE_METRICS_TOKEN>"
                }));
        }
    }
    sample_pool(&state.db);
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}

/// Copies the main database pool's current usage into the gauges.
fn sample_pool(db: &DatabaseConnection) {
    let (size, idle, max) = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            (p.size(), p.num_idle(), p.options().get_max_connections())
        }
        DbBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            (p.size(), p.num_idle(), p.options().get_max_connections())
        }
        _ => return,
    };
    let m = metrics::get();
    let idle = idle as i64;
    m.db_pool_connections
        .get_or_create(&PoolLabel { state: "idle" })
        .set(idle);
    m.db_pool_connections
        .get_or_create(&PoolLabel { state: "in_use" })
        .set((size as i64 - idle).max(0));
    m.db_pool_max.set(max as i64);
}

/// For `faultline worker`: a small server with `/metrics` and `/healthz` only.
pub fn worker_server(
    bind: SocketAddr,
    db: DatabaseConnection,
    token: Option<String>,
) -> anyhow::Result<actix_web::dev::Server> {
    let state = web::Data::new(MetricsState { db, token });
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).configure(routes).route(
            "/healthz",
            web::get()
                .to(|| async { HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })) }),
        )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .keep_alive(Duration::from_secs(75))
    .bind(bind)
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {bind}: {e} (set FAULTLINE_METRICS_BIND to a free address)"
        )
    })?
    .run();
    Ok(server)
}
