//! The request context of a page: who is logged in, their organizations, the CSRF token,
//! and the helpers that answer with a page or a redirect (carrying the session cookie).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload};
use askama::Template;
use faultline_core::entity::now_ms;

use super::WebState;
use super::error::WebError;
use super::session::{self, Session};
use super::sql;
use crate::startup::AppState;

/// The logged-in user.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub is_superuser: bool,
    pub password_hash: String,
}

/// An organization the user is a member of, with the user's role in it.
#[derive(Debug, Clone)]
pub struct OrgRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub role: String,
}

impl OrgRef {
    /// Owners and admins manage projects, keys, members, invites and tokens.
    pub fn can_manage(&self) -> bool {
        self.role == "owner" || self.role == "admin"
    }
}

/// What the layout shows around every page.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub user_email: String,
    pub logged_in: bool,
    pub orgs: Vec<OrgRef>,
    /// Slug of the organization the page belongs to ("" for none).
    pub org: String,
    /// Which top-level section is highlighted: issues, projects, releases, settings, account.
    pub section: &'static str,
    pub csrf: String,
}

impl Nav {
    /// The layout without a user (error pages).
    pub fn bare() -> Nav {
        Nav::default()
    }
}

/// The status of a settings page: 400 when it is shown again with a form's error, so the
/// refusal is visible to scripts, not only in the page.
pub fn form_status(error: &str) -> actix_web::http::StatusCode {
    if error.is_empty() {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::BAD_REQUEST
    }
}

/// A parsed `application/x-www-form-urlencoded` body whose CSRF token was checked.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a body without checking a token (only [`Ctx::form`] calls this).
    pub fn parse(body: &[u8]) -> Form {
        Form {
            pairs: url::form_urlencoded::parse(body).into_owned().collect(),
        }
    }
    /// The first value of a field, trimmed ("" when missing).
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }
    /// The untrimmed first value (passwords).
    pub fn raw(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    /// Every value of a repeated field (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Everything a page handler needs about the request.
pub struct Ctx {
    pub app: Data<AppState>,
    pub web: Data<WebState>,
    pub session: Session,
    pub user: Option<CurrentUser>,
    pub orgs: Vec<OrgRef>,
    /// The client address (throttling key): the peer, or `X-Forwarded-For` from a trusted
    /// proxy.
    pub ip: String,
    /// Path and query of this request (where to come back after login).
    pub here: String,
    pub query: HashMap<String, String>,
    /// A cookie to send with the answer (a new or replaced session).
    new_cookie: Option<String>,
}

impl FromRequest for Ctx {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Ctx, WebError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ctx::load(&req).await })
    }
}

impl Ctx {
    async fn load(req: &HttpRequest) -> Result<Ctx, WebError> {
        let app = req
            .app_data::<Data<AppState>>()
            .cloned()
            .ok_or_else(|| WebError::Internal("no app state".into()))?;
        let web = req
            .app_data::<Data<WebState>>()
            .cloned()
            .ok_or_else(|| WebError::Internal("no web state".into()))?;
        let now = now_ms();
        let (mut session, mut new_cookie) = match session::session_from_request(req, &web.secret) {
            Some(s) => (s, None),
            None => {
                let s = Session::anonymous(now);
                let v = s.encode(&web.secret);
                (s, Some(v))
            }
        };
        let mut user = None;
        if session.user_id != 0 {
            let row = sql::one(
                &app.db,
                "SELECT id, email, is_superuser, password_hash FROM users WHERE id = ?",
                vec![session.user_id.into()],
            )
            .await?;
            if let Some(row) = row {
                let u = CurrentUser {
                    id: sql::get(&row, "id")?,
                    email: sql::get(&row, "email")?,
                    is_superuser: sql::get(&row, "is_superuser")?,
                    password_hash: sql::get(&row, "password_hash")?,
                };
                if session::password_tag(&u.password_hash) == session.password_tag {
                    user = Some(u);
                }
            }
            if user.is_none() {
                // The user was deleted or changed their password: start over as a visitor.
                session = Session::anonymous(now);
                new_cookie = Some(session.encode(&web.secret));
            }
        }
        let mut orgs = Vec::new();
        if let Some(u) = &user {
            for row in sql::all(
                &app.db,
                "SELECT o.id, o.slug, o.name, m.role FROM members m \
                 JOIN organizations o ON o.id = m.organization_id \
                 WHERE m.user_id = ? ORDER BY o.slug",
                vec![u.id.into()],
            )
            .await?
            {
                orgs.push(OrgRef {
                    id: sql::get(&row, "id")?,
                    slug: sql::get(&row, "slug")?,
                    name: sql::get(&row, "name")?,
                    role: sql::get(&row, "role")?,
                });
            }
        }
        let ip = crate::client_ip::client_ip(req, &app.config.trusted_proxies)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let here = match req.uri().path_and_query() {
            Some(pq) => pq.as_str().to_string(),
            None => req.path().to_string(),
        };
        let query = url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
        Ok(Ctx {
            app,
            web,
            session,
            user,
            orgs,
            ip,
            here,
            query,
            new_cookie,
        })
    }

    /// The logged-in user, or a redirect to the login page.
    pub fn user(&self) -> Result<&CurrentUser, WebError> {
        self.user
            .as_ref()
            .ok_or_else(|| WebError::LoginRequired(self.here.clone()))
    }

    /// A query parameter ("" when missing).
    pub fn q(&self, name: &str) -> &str {
        self.query.get(name).map(|s| s.as_str()).unwrap_or("")
    }

    /// The CSRF token for this session's forms.
    pub fn csrf(&self) -> String {
        self.session.csrf_token(&self.web.secret)
    }

    /// Parses a form body and refuses it unless it carries this session's CSRF token.
    pub fn form(&self, body: &[u8]) -> Result<Form, WebError> {
        let form = Form::parse(body);
        if !session::csrf_valid(&self.web.secret, &self.session, form.raw("csrf")) {
            return Err(WebError::Csrf);
        }
        Ok(form)
    }

    /// The layout data for a page of `org` ("" for none) in `section`.
    pub fn nav(&self, org: &str, section: &'static str) -> Nav {
        Nav {
            user_email: self
                .user
                .as_ref()
                .map(|u| u.email.clone())
                .unwrap_or_default(),
            logged_in: self.user.is_some(),
            orgs: self.orgs.clone(),
            org: org.to_string(),
            section,
            csrf: self.csrf(),
        }
    }

    /// Starts a logged-in session for `user_id` (a fresh nonce: new CSRF tokens).
    pub fn log_in(&mut self, user_id: i64, password_hash: &str) {
        self.session = Session::for_user(user_id, password_hash, now_ms());
        self.new_cookie = Some(self.session.encode(&self.web.secret));
    }

    /// Ends the session.
    pub fn log_out(&mut self) {
        self.session = Session::anonymous(now_ms());
        self.user = None;
        self.new_cookie = Some(self.session.encode(&self.web.secret));
    }

    fn cookie(&self) -> Option<Cookie<'static>> {
        let value = self.new_cookie.clone()?;
        Some(
            Cookie::build(session::COOKIE, value)
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(self.web.secure_cookies)
                .max_age(CookieDuration::seconds(session::MAX_AGE_SECS))
                .finish(),
        )
    }

    /// A rendered page (200).
    pub fn page<T: Template>(&self, page: &T) -> Result<HttpResponse, WebError> {
        self.page_with_status(page, actix_web::http::StatusCode::OK)
    }

    /// A rendered page with another status (forms that failed validation: 400).
    pub fn page_with_status<T: Template>(
        &self,
        page: &T,
        status: actix_web::http::StatusCode,
    ) -> Result<HttpResponse, WebError> {
        let html = page.render()?;
        let mut resp = HttpResponse::build(status);
        resp.content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"));
        if let Some(c) = self.cookie() {
            resp.cookie(c);
        }
        Ok(resp.body(html))
    }

    /// A 303 redirect after a form (or to a page).
    pub fn redirect(&self, to: &str) -> HttpResponse {
        let mut resp = HttpResponse::SeeOther();
        resp.insert_header(("Location", to.to_string()));
        if let Some(c) = self.cookie() {
            resp.cookie(c);
        }
        resp.finish()
    }
}

/// Only same-site paths are followed after login or a form (no open redirects).
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains(['\r', '\n']);
    ok.then_some(next)
}
