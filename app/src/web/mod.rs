//! The server-rendered web UI: accounts, organizations and projects, the issues list, the
//! issue and event page, traces and releases. askama templates from `templates/`, CSS and
//! a little progressive-enhancement JavaScript from `static/` (embedded in the binary).
//!
//! Every page reads through [`context::Ctx`] (the signed session, the user's memberships,
//! the CSRF token) and [`access`] (objects of organizations the user is not a member of are
//! 404). Event data is hostile: templates rely on askama's escaping and never use `|safe`.

pub mod access;
pub mod activity;
pub mod alerts;
pub mod auth;
pub mod charts;
pub mod context;
pub mod error;
pub mod event_view;
pub mod format;
pub mod hooks;
pub mod issue_page;
pub mod issues;
pub mod markdown;
pub mod orgs;
pub mod passwords;
pub mod projects;
pub mod releases;
pub mod session;
pub mod sql;
pub mod statics;
pub mod throttle;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;
use faultline_core::config::Config;

/// Process-wide state of the pages, shared by every worker thread of the HTTP server.
pub struct WebState {
    /// Key for signing session cookies and CSRF tokens.
    pub secret: Vec<u8>,
    /// Password attempts per account, address, and both.
    pub throttle: throttle::LoginThrottle,
    /// Bounds concurrent argon2 work (one per core).
    pub passwords: passwords::PasswordWork,
    /// Jaeger UI base for trace links, without trailing slash.
    pub jaeger_url: String,
    /// Public base URL (DSNs, invite links), without trailing slash.
    pub public_url: String,
    /// Whether cookies get the `Secure` attribute (the public URL is https).
    pub secure_cookies: bool,
}

impl WebState {
    pub fn new(config: &Config) -> WebState {
        WebState {
            secret: config.secret_key.as_bytes().to_vec(),
            throttle: throttle::LoginThrottle::default(),
            passwords: passwords::PasswordWork::for_this_machine(),
            jaeger_url: config.jaeger_url.trim_end_matches('/').to_string(),
            public_url: config.public_url.as_str().trim_end_matches('/').to_string(),
            secure_cookies: config.public_url.scheme() == "https",
        }
    }
}

/// The Content-Security-Policy of every response: no inline script or style, nothing from
/// other origins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers added to every response (pages, static files, errors).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
}

/// The page routes. Paths follow Sentry's where one exists
/// (`/organizations/{org}/issues/{id}` is the permalink the Web API hands out).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(auth::home))
        .route("/static/{file}", web::get().to(statics::serve))
        .route("/setup", web::get().to(auth::setup_form))
        .route("/setup", web::post().to(auth::setup_submit))
        .route("/login", web::get().to(auth::login_form))
        .route("/login", web::post().to(auth::login_submit))
        .route("/logout", web::post().to(auth::logout))
        .route("/account", web::get().to(auth::account))
        .route("/account/password", web::post().to(auth::change_password))
        .route(
            "/account/sessions/end",
            web::post().to(auth::end_all_sessions),
        )
        .route("/invite/{token}", web::get().to(auth::invite_form))
        .route("/invite/{token}", web::post().to(auth::invite_accept))
        .route("/organizations/new", web::post().to(orgs::create_org))
        .route("/organizations/{org}", web::get().to(orgs::org_home))
        .route(
            "/organizations/{org}/issues",
            web::get().to(issues::org_issues),
        )
        .route(
            "/organizations/{org}/issues/bulk",
            web::post().to(issues::bulk),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}",
            web::get().to(issue_page::show),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}/status",
            web::post().to(issue_page::set_status),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}/assign",
            web::post().to(issue_page::set_assignee),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}/comments",
            web::post().to(activity::add),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}/comments/{note_id}/edit",
            web::post().to(activity::edit),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}/comments/{note_id}/delete",
            web::post().to(activity::delete),
        )
        .route(
            "/organizations/{org}/issues/{issue_id}/events/{event_id}/json",
            web::get().to(issue_page::raw_json),
        )
        .route(
            "/organizations/{org}/traces/{trace_id}",
            web::get().to(issue_page::trace),
        )
        .route(
            "/organizations/{org}/projects",
            web::get().to(projects::list),
        )
        .route(
            "/organizations/{org}/projects",
            web::post().to(projects::create),
        )
        .route(
            "/organizations/{org}/projects/{project}",
            web::get().to(issues::project_issues),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings",
            web::get().to(projects::settings),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings/general",
            web::post().to(projects::save_general),
        )
        .route(
            "/organizations/{org}/projects/{project}/keys",
            web::post().to(projects::create_key),
        )
        .route(
            "/organizations/{org}/projects/{project}/keys/{key_id}",
            web::post().to(projects::update_key),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/rules",
            web::post().to(alerts::create_rule),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/rules/{rule_id}",
            web::post().to(alerts::update_rule),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/test",
            web::post().to(alerts::send_test),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/subscription",
            web::post().to(alerts::subscription),
        )
        .route(
            "/organizations/{org}/projects/{project}/releases",
            web::get().to(releases::list),
        )
        .route(
            "/organizations/{org}/release",
            web::get().to(releases::detail),
        )
        .route(
            "/organizations/{org}/settings",
            web::get().to(orgs::settings),
        )
        .route(
            "/organizations/{org}/members/{member_id}",
            web::post().to(orgs::update_member),
        )
        .route(
            "/organizations/{org}/invites",
            web::post().to(orgs::create_invite),
        )
        .route(
            "/organizations/{org}/invites/{invite_id}/revoke",
            web::post().to(orgs::revoke_invite),
        )
        .route(
            "/organizations/{org}/tokens",
            web::post().to(orgs::create_token),
        )
        .route(
            "/organizations/{org}/tokens/{token_id}/revoke",
            web::post().to(orgs::revoke_token),
        );
}
