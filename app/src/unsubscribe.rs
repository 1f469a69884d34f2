//! `GET/POST /unsubscribe/{token}`: the link in every alert email's footer. It works
//! without logging in: the token is signed with the server's secret key and names the
//! project and the address. GET shows what will happen (link scanners in mail systems
//! fetch links, so GET changes nothing); POST does it — from the page's button, or from
//! a mail client's one-click unsubscribe (RFC 8058).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_worker::alerts::unsubscribe;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/unsubscribe/{token}")
            // A form with one field; anything bigger is not ours.
            .app_data(web::PayloadConfig::new(4096))
            .route(web::get().to(show))
            .route(web::post().to(apply)),
    );
}

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct Page<'a> {
    /// confirm | unsubscribed | resubscribed | invalid
    state: &'a str,
    email: &'a str,
    project: &'a str,
}

fn page(status: StatusCode, p: Page<'_>) -> HttpResponse {
    match p.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .insert_header(("Cache-Control", "no-store"))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "rendering the unsubscribe page failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

fn invalid() -> HttpResponse {
    page(
        StatusCode::NOT_FOUND,
        Page {
            state: "invalid",
            email: "",
            project: "",
        },
    )
}

/// The project's slug, when the token is ours and the project still exists.
async fn resolve(
    state: &AppState,
    token: &str,
) -> Result<Option<(i64, String, String)>, HttpResponse> {
    let Some((project_id, email)) = unsubscribe::verify(&state.config.secret_key, token) else {
        return Ok(None);
    };
    let backend = state.db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        "SELECT slug FROM projects WHERE id = $1"
    } else {
        "SELECT slug FROM projects WHERE id = ?"
    };
    let row = state
        .db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            vec![project_id.into()],
        ))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "unsubscribe lookup failed");
            HttpResponse::ServiceUnavailable().finish()
        })?;
    Ok(row
        .and_then(|r| r.try_get::<String>("", "slug").ok())
        .map(|slug| (project_id, email, slug)))
}

async fn show(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    match resolve(&state, &token).await {
        Ok(Some((_, email, project))) => page(
            StatusCode::OK,
            Page {
                state: "confirm",
                email: &email,
                project: &project,
            },
        ),
        Ok(None) => invalid(),
        Err(r) => r,
    }
}

async fn apply(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (project_id, email, project) = match resolve(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return invalid(),
        Err(r) => return r,
    };
    let resubscribe =
        url::form_urlencoded::parse(&body).any(|(k, v)| k == "action" && v == "resubscribe");
    let result = if resubscribe {
        unsubscribe::resubscribe(&state.db, project_id, &email).await
    } else {
        unsubscribe::unsubscribe(&state.db, project_id, &email).await
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "unsubscribe failed");
        return HttpResponse::ServiceUnavailable().finish();
    }
    page(
        StatusCode::OK,
        Page {
            state: if resubscribe {
                "resubscribed"
            } else {
                "unsubscribed"
            },
            email: &email,
            project: &project,
        },
    )
}
