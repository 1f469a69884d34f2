//! What can go wrong on a page, and the status and page each answer gets.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::context::Nav;

/// A page that cannot be shown; the message tells the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Missing, or belongs to an organization the user is not a member of: never tell which.
    #[error("This page does not exist, or you do not have access to it.")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "The form expired or did not come from this site. Go back, reload the page and try again."
    )]
    Csrf,
    #[error("Too many failed logins. Try again in {0} seconds.")]
    Throttled(i64),
    /// Too many requests of a kind (password checks at once, test emails per hour): 429
    /// with `Retry-After`; the message says what was limited.
    #[error("{message}")]
    RateLimited { message: String, retry_after: i64 },
    /// Not logged in: go to the login page, then back to `next`.
    #[error("Log in to see this page.")]
    LoginRequired(String),
    #[error("Something went wrong on our side.")]
    Internal(String),
}

impl From<sea_orm::DbErr> for WebError {
    fn from(e: sea_orm::DbErr) -> Self {
        WebError::Internal(e.to_string())
    }
}

impl From<crate::accounts::AccountError> for WebError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError as A;
        match e {
            A::Invalid(m) | A::Conflict(m) => WebError::BadRequest(m),
            A::NotFound(_) => WebError::NotFound,
            A::Forbidden(m) => WebError::Forbidden(m),
            A::Db(e) => e.into(),
            A::Internal(m) => WebError::Internal(m),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> Self {
        WebError::Internal(e.to_string())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    heading: &'static str,
    message: String,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Throttled(_) | WebError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            WebError::LoginRequired(_) => StatusCode::SEE_OTHER,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let WebError::LoginRequired(next) = self {
            let target = format!("/login?next={}", super::format::url_encode(next));
            return HttpResponse::SeeOther()
                .insert_header(("Location", target))
                .finish();
        }
        if let WebError::Internal(detail) = self {
            tracing::error!(error = %detail, "page failed");
        }
        let status = self.status_code();
        let heading = match self {
            WebError::NotFound => "Not found",
            WebError::Forbidden(_) | WebError::Csrf => "Not allowed",
            WebError::BadRequest(_) => "That did not work",
            WebError::Throttled(_) | WebError::RateLimited { .. } => "Slow down",
            _ => "Error",
        };
        let page = ErrorPage {
            nav: Nav::bare(),
            status: status.as_u16(),
            heading,
            message: self.to_string(),
        };
        let mut resp = HttpResponse::build(status);
        if let WebError::Throttled(secs)
        | WebError::RateLimited {
            retry_after: secs, ..
        } = self
        {
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        match page.render() {
            Ok(html) => resp.content_type("text/html; charset=utf-8").body(html),
            Err(_) => resp
                .content_type("text/plain; charset=utf-8")
                .body(self.to_string()),
        }
    }
}
