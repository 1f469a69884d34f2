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
            user = session::live_user(&app.db, &session, now).await?;
            if user.is_none() {
                // Logged out (here or everywhere), the user was deleted or changed their
                // password: start over as a visitor.
                session = Session::anonymous(now);
                new_cookie = Some(session.encode(&web.secret));
            }
        }
        // Memberships and roles are read on every request, never kept in the cookie: a
        // role change or a removal counts from the next request on.
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

    /// Starts a logged-in session for `user_id` (a fresh nonce: new CSRF tokens) and
    /// records it server-side.
    pub async fn log_in(&mut self, user_id: i64, password_hash: &str) -> Result<(), WebError> {
        self.session = session::start(&self.app.db, user_id, password_hash, now_ms()).await?;
        self.new_cookie = Some(self.session.encode(&self.web.secret));
        Ok(())
    }

    /// Ends the session, server-side too: a copy of the old cookie no longer logs anyone in.
    pub async fn log_out(&mut self) -> Result<(), WebError> {
        let now = now_ms();
        session::end(&self.app.db, &self.session, now).await?;
        self.session = Session::anonymous(now);
        self.user = None;
        self.new_cookie = Some(self.session.encode(&self.web.secret));
        Ok(())
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

/// Longest `next=` target followed.
const MAX_NEXT: usize = 2048;

/// Only same-origin paths are followed after login or a form (no open redirects): an
/// absolute path (`/...`) that no browser could read as another host. Refused: anything
/// not starting with one `/` (schemes such as `https:` or `javascript:`, `//host`), any
/// backslash (browsers read `/\host` as `//host`), any control or whitespace character
/// (browsers drop TAB and newlines, so `/\t/host` would become `//host`), and the same
/// once percent-decoded (`/%09/host`, `/%2F/host`, `/%5Chost`), so no later decoding step
/// can turn an accepted path into another host.
pub fn safe_next(next: &str) -> Option<&str> {
    fn same_origin_path(p: &str) -> bool {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.contains('\\')
            && !p.chars().any(char::is_control)
    }
    // Raw whitespace has no place in a path a browser sent (it arrives percent-encoded); an
    // encoded space in a search query (`%20`) is fine.
    let ok = next.len() <= MAX_NEXT
        && same_origin_path(next)
        && !next.chars().any(char::is_whitespace)
        && percent_decode(next)
            .as_deref()
            .is_some_and(same_origin_path);
    ok.then_some(next)
}

/// `%XX` escapes decoded once (anything else is kept as is); `None` when the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open-redirect attempts seen in the wild (and in browsers' URL parsers) are refused.
    #[test]
    fn next_accepts_only_same_origin_paths() {
        for bad in [
            "",
            "evil.com",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "\\\\evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            "\t//evil.com",
            " /evil.com",
            "/ /evil.com",
            "/\u{0}/evil.com",
            "/\u{7f}/evil.com",
            "/\u{85}/evil.com",
            "/\u{2028}/evil.com",
            "/%09/evil.com",
            "/%0a/evil.com",
            "/%0D%0A/evil.com",
            "/%2F/evil.com",
            "/%2f%2fevil.com",
            "/%5Cevil.com",
            "/%5c%5cevil.com",
            "/%00",
            "/%ff",
            "https://evil.com",
            "http:/evil.com",
            "HTTPS://evil.com/",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "/organizations/acme\\..\\..\\evil",
            "/organizations/acme/issues?q=\\",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_NEXT));
        assert_eq!(safe_next(&long), None);
        for good in [
            "/",
            "/organizations/acme/issues",
            "/organizations/acme/issues?query=is%3Aunresolved+level%3Aerror&sort=date",
            "/organizations/acme/issues/12#events",
            "/account?done=password",
            "/javascript:alert(1)",
            "/a/%2e%2e/b",
            "/search?q=%C3%A9",
            "/organizations/acme/issues?query=level%3Aerror%20checkout&x=1",
            "/100%",
        ] {
            assert_eq!(safe_next(good), Some(good), "{good:?}");
        }
    }
}
