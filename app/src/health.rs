//! `GET /healthz` (the process answers) and `GET /readyz` (database and queue reachable).

use actix_web::{HttpResponse, web};
use sea_orm::ConnectionTrait;

use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state
        .db
        .execute_unprepared("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let queue = state.queue.ping().await;
    let check = |r: &Result<(), String>| match r {
        Ok(()) => serde_json::json!({ "status": "ok" }),
        Err(e) => serde_json::json!({ "status": "error", "error": e }),
    };
    let ready = database.is_ok() && queue.is_ok();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "error" },
        "database": check(&database),
        "queue": check(&queue),
        "queue_depth": state.queue.depth(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
