//! Projects: the list, creating one, and its settings page (general settings, client keys
//! with their DSNs and setup snippets). The settings page is one template per section
//! (`templates/project_settings/`), so other features add a section without touching the
//! others.

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;

use super::access::{self, Poster, ProjectRow};
use super::context::{Ctx, Nav};
use super::error::WebError;
use super::format;
use super::sql;
use crate::accounts::{self, AccountError, keys};

/// Platforms offered when creating a project (the SDK snippets exist for these).
pub const PLATFORMS: &[(&str, &str)] = &[
    ("python", "Python"),
    ("node", "Node.js"),
    ("javascript", "Browser JavaScript"),
    ("rust", "Rust"),
    ("other", "Other"),
];

pub struct ProjectLine {
    pub slug: String,
    pub name: String,
    pub platform: String,
    pub unresolved: i64,
    pub issues_url: String,
    pub settings_url: String,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    nav: Nav,
    org_slug: String,
    org_name: String,
    projects: Vec<ProjectLine>,
    can_manage: bool,
    welcome: bool,
    error: String,
    platforms: Vec<(&'static str, &'static str)>,
    slug: String,
}

async fn projects_page(
    ctx: &Ctx,
    org_slug: &str,
    error: String,
    slug: String,
) -> Result<HttpResponse, WebError> {
    let org = access::org(ctx, org_slug)?;
    let mut lines = Vec::new();
    for p in access::projects(ctx, &org).await? {
        let row = sql::one(
            &ctx.app.db,
            "SELECT COUNT(*) AS n FROM issues WHERE project_id = ? AND status = 'unresolved'",
            vec![p.id.into()],
        )
        .await?;
        let unresolved = match row {
            Some(r) => sql::get(&r, "n")?,
            None => 0,
        };
        lines.push(ProjectLine {
            issues_url: format!("/organizations/{}/projects/{}", org.slug, p.slug),
            settings_url: format!("/organizations/{}/projects/{}/settings", org.slug, p.slug),
            slug: p.slug,
            name: p.name,
            platform: p.platform,
            unresolved,
        });
    }
    let status = super::context::form_status(&error);
    ctx.page_with_status(
        &ProjectsPage {
            nav: ctx.nav(&org.slug, "projects"),
            org_slug: org.slug.clone(),
            org_name: org.name.clone(),
            projects: lines,
            can_manage: org.can_manage(),
            welcome: ctx.q("welcome") == "1",
            error,
            platforms: PLATFORMS.to_vec(),
            slug,
        },
        status,
    )
}

pub async fn list(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, WebError> {
    projects_page(&ctx, &path, String::new(), String::new()).await
}

pub async fn create(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org, form) = access::org_form(&ctx, &path, &body, Poster::Manager)?;
    let slug = form.get("slug").to_lowercase();
    let platform = form.get("platform");
    if !PLATFORMS.iter().any(|(p, _)| *p == platform) {
        return projects_page(
            &ctx,
            &org.slug,
            "Pick a platform from the list.".into(),
            slug,
        )
        .await;
    }
    match accounts::projects::create(&ctx.app.db, &org.slug, &slug, Some(platform)).await {
        Ok(_) => Ok(ctx.redirect(&format!(
            "/organizations/{}/projects/{}/settings?created=1",
            org.slug, slug
        ))),
        Err(AccountError::Db(e)) => Err(e.into()),
        Err(e) => projects_page(&ctx, &org.slug, e.to_string(), slug).await,
    }
}

/// A client key with its DSN.
pub struct KeyLine {
    pub id: i64,
    pub label: String,
    pub public_key: String,
    pub dsn: String,
    pub enabled: bool,
    pub rate_limit: String,
    pub created: String,
    pub action_url: String,
}

/// A setup snippet for one SDK.
pub struct Snippet {
    pub id: &'static str,
    pub title: &'static str,
    pub install: String,
    pub code: String,
}

/// Copy-paste setup for Python, Node, browser JavaScript and Rust.
pub fn snippets(dsn: &str) -> Vec<Snippet> {
    vec![
        Snippet {
            id: "python",
            title: "Python",
            install: "pip install sentry-sdk".into(),
            code: format!(
                "import sentry_sdk\n\nsentry_sdk.init(\n    dsn=\"{dsn}\",\n    release=\"my-app@1.0.0\",\n    environment=\"production\",\n)\n"
            ),
        },
        Snippet {
            id: "node",
            title: "Node.js",
            install: "npm install @sentry/node".into(),
            code: format!(
                "// instrument.js, required before anything else\nconst Sentry = require(\"@sentry/node\");\n\nSentry.init({{\n  dsn: \"{dsn}\",\n  release: \"my-app@1.0.0\",\n  environment: \"production\",\n}});\n"
            ),
        },
        Snippet {
            id: "browser",
            title: "Browser JavaScript",
            install: "npm install @sentry/browser".into(),
            code: format!(
                "import * as Sentry from \"@sentry/browser\";\n\nSentry.init({{\n  dsn: \"{dsn}\",\n  release: \"my-app@1.0.0\",\n}});\n"
            ),
        },
        Snippet {
            id: "rust",
            title: "Rust",
            install: "cargo add sentry".into(),
            code: format!(
                "fn main() {{\n    let _guard = sentry::init((\n        \"{dsn}\",\n        sentry::ClientOptions {{\n            release: sentry::release_name!(),\n            ..Default::default()\n        }},\n    ));\n    // your program\n}}\n"
            ),
        },
    ]
}

/// The project settings page; one field per section partial.
#[derive(Template)]
#[template(path = "project_settings.html")]
struct SettingsPage {
    nav: Nav,
    project: ProjectRow,
    base: String,
    can_manage: bool,
    notice: String,
    error: String,
    platforms: Vec<(&'static str, &'static str)>,
    // Section "general".
    retention_days: i32,
    // Section "keys" (and the DSN / snippets).
    keys: Vec<KeyLine>,
    primary_dsn: String,
    snippets: Vec<Snippet>,
    // Section "alerts".
    alerts: super::alerts::AlertsSection,
}

pub(super) async fn settings_page(
    ctx: &Ctx,
    org_slug: &str,
    project_slug: &str,
    error: String,
) -> Result<HttpResponse, WebError> {
    let org = access::org(ctx, org_slug)?;
    let project = access::project(ctx, &org, project_slug).await?;
    let base = format!("/organizations/{}/projects/{}", org.slug, project.slug);
    let now = now_ms();
    let mut keys = Vec::new();
    for r in sql::all(
        &ctx.app.db,
        "SELECT id, public_key, label, enabled, rate_limit_per_minute, created_at \
         FROM project_keys WHERE project_id = ? ORDER BY id",
        vec![project.id.into()],
    )
    .await?
    {
        let id: i64 = sql::get(&r, "id")?;
        let public_key: String = sql::get(&r, "public_key")?;
        keys.push(KeyLine {
            id,
            label: sql::get(&r, "label")?,
            dsn: ctx.app.config.dsn(&public_key, project.id),
            public_key,
            enabled: sql::get(&r, "enabled")?,
            rate_limit: sql::get::<Option<i32>>(&r, "rate_limit_per_minute")?
                .map(|n| n.to_string())
                .unwrap_or_default(),
            created: format::ago(sql::get(&r, "created_at")?, now),
            action_url: format!("{base}/keys/{id}"),
        });
    }
    let primary_dsn = keys
        .iter()
        .find(|k| k.enabled)
        .map(|k| k.dsn.clone())
        .unwrap_or_default();
    let notice = match ctx.q("done") {
        "general" => "Settings saved.",
        "key" => "Client key saved.",
        "alerts" => "Alert rules saved.",
        "test" => "Test email sent.",
        "subscription" => "Your alert subscription changed.",
        _ if ctx.q("created") == "1" => {
            "Project created. Send your first event with the DSN below."
        }
        _ => "",
    };
    let status = super::context::form_status(&error);
    let alerts = super::alerts::section(ctx, &org.slug, &project, &base).await?;
    ctx.page_with_status(
        &SettingsPage {
            nav: ctx.nav(&org.slug, "projects"),
            retention_days: project.retention_days,
            project,
            base,
            can_manage: org.can_manage(),
            notice: notice.into(),
            error,
            platforms: PLATFORMS.to_vec(),
            keys,
            snippets: snippets(&primary_dsn),
            primary_dsn,
            alerts,
        },
        status,
    )
}

pub async fn settings(
    ctx: Ctx,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let (org, project) = path.into_inner();
    settings_page(&ctx, &org, &project, String::new()).await
}

pub async fn save_general(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    let platform = form.get("platform");
    if !PLATFORMS.iter().any(|(p, _)| *p == platform) {
        return settings_page(
            &ctx,
            &org_slug,
            &project_slug,
            "Pick a platform from the list.".into(),
        )
        .await;
    }
    let general = accounts::projects::General {
        name: form.get("name"),
        platform,
        // Not a number: out of range, refused with the range's message.
        retention_days: form.get("retention_days").parse().unwrap_or(0),
    };
    match accounts::projects::save_general(&ctx.app.db, project.id, general).await {
        Ok(()) => {}
        Err(AccountError::Invalid(e)) => {
            return settings_page(&ctx, &org_slug, &project_slug, e).await;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ctx.redirect(&format!(
        "/organizations/{}/projects/{}/settings?done=general",
        org.slug, project.slug
    )))
}

/// A rate limit from the form; a bad one is shown on the settings page.
fn parse_rate_limit(s: &str) -> Result<Option<i32>, String> {
    keys::parse_rate_limit(s).map_err(|e| e.to_string())
}

pub async fn create_key(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    let label = form.get("label");
    let rate = match parse_rate_limit(form.get("rate_limit")) {
        Ok(r) => r,
        Err(e) => return settings_page(&ctx, &org_slug, &project_slug, e).await,
    };
    keys::create(&ctx.app.db, project.id, label, rate).await?;
    Ok(ctx.redirect(&format!(
        "/organizations/{}/projects/{}/settings?done=key",
        org.slug, project.slug
    )))
}

/// Enable, disable, or change the rate limit of a key.
pub async fn update_key(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug, key_id) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    let key_id = access::path_id(&key_id)?;
    match form.get("action") {
        action @ ("enable" | "disable") => {
            keys::set_enabled(&ctx.app.db, project.id, key_id, action == "enable").await?
        }
        "rate_limit" => {
            let rate = match parse_rate_limit(form.get("rate_limit")) {
                Ok(r) => r,
                Err(e) => return settings_page(&ctx, &org_slug, &project_slug, e).await,
            };
            keys::set_rate_limit(&ctx.app.db, project.id, key_id, rate).await?
        }
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use enable, disable or rate_limit."
            )));
        }
    }
    Ok(ctx.redirect(&format!(
        "/organizations/{}/projects/{}/settings?done=key",
        org.slug, project.slug
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_carry_the_dsn() {
        let dsn = "http://abc@localhost:8000/1";
        let s = snippets(dsn);
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|s| s.code.contains(dsn)));
    }
}
