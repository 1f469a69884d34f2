//! The monitors page of a project: each cron monitor's schedule, its status per
//! environment, the last and next expected check-in and a timeline of recent check-ins
//! with durations; owners and admins create, edit, mute and delete monitors (forms with
//! the session's CSRF token, like every settings form).

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;
use faultline_core::monitors::{self, MonitorUpdate, UpdateError};
use faultline_core::protocol::check_in::{MonitorConfig, Schedule, slugify};
use serde_json::{Map, Value};

use super::access::{self, Poster};
use super::context::{Ctx, Nav, form_status};
use super::error::WebError;
use super::format;

/// One check-in in a monitor's timeline.
pub struct CheckInLine {
    pub status: String,
    pub environment: String,
    pub when: String,
    pub duration: String,
}

/// One environment of a monitor.
pub struct EnvLine {
    pub name: String,
    pub status: String,
    pub last: String,
    pub next: String,
    pub issue_url: String,
}

/// One monitor as the page shows it.
pub struct MonitorView {
    pub slug: String,
    pub name: String,
    pub status: String,
    pub is_muted: bool,
    pub schedule_type: String,
    pub schedule: String,
    pub checkin_margin: i64,
    pub max_runtime: i64,
    pub timezone: String,
    pub failure_issue_threshold: i64,
    pub recovery_threshold: i64,
    pub environments: Vec<EnvLine>,
    pub check_ins: Vec<CheckInLine>,
    pub action_url: String,
}

#[derive(Template)]
#[template(path = "monitors.html")]
struct MonitorsPage {
    nav: Nav,
    project_name: String,
    issues_url: String,
    base_url: String,
    can_manage: bool,
    error: String,
    monitors: Vec<MonitorView>,
    cron_url: String,
}

fn duration_text(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{} min", ms / 60_000),
    }
}

async fn render(
    ctx: &Ctx,
    org_slug: &str,
    project_slug: &str,
    error: String,
) -> Result<HttpResponse, WebError> {
    let org = access::org(ctx, org_slug)?;
    let project = access::project(ctx, &org, project_slug).await?;
    let db = &ctx.app.db;
    let now = now_ms();
    let list = monitors::list(db, org.id, Some(&[project.id])).await?;
    let ids: Vec<i64> = list.iter().map(|m| m.id).collect();
    let envs = monitors::environments(db, &ids).await?;
    let issues_url = format!("/organizations/{}/projects/{}", org.slug, project.slug);
    let base_url = format!("{issues_url}/monitors");
    let mut views = Vec::with_capacity(list.len());
    for m in &list {
        let check_ins = monitors::check_ins(db, m.id, None, None, None, 30)
            .await?
            .into_iter()
            .map(|c| CheckInLine {
                status: c.status,
                environment: c.environment,
                when: format::ago(c.date_added, now),
                duration: duration_text(c.duration_ms),
            })
            .collect();
        let stored = m.config.schedule.stored();
        views.push(MonitorView {
            action_url: format!("{base_url}/{}", m.slug),
            slug: m.slug.clone(),
            name: m.name.clone(),
            status: m.status.clone(),
            is_muted: m.is_muted,
            schedule_type: m.config.schedule.kind().into(),
            schedule: stored,
            checkin_margin: m.config.checkin_margin,
            max_runtime: m.config.max_runtime,
            timezone: m.config.timezone.name().into(),
            failure_issue_threshold: m.config.failure_issue_threshold,
            recovery_threshold: m.config.recovery_threshold,
            environments: envs
                .iter()
                .filter(|e| e.monitor_id == m.id)
                .map(|e| EnvLine {
                    name: e.environment.clone(),
                    status: e.status.clone(),
                    last: e
                        .last_checkin
                        .map(|t| format::ago(t, now))
                        .unwrap_or_else(|| "never".into()),
                    next: e
                        .next_checkin
                        .map(format::datetime)
                        .unwrap_or_else(|| "-".into()),
                    issue_url: e
                        .issue_id
                        .map(|id| format!("/organizations/{}/issues/{id}", org.slug))
                        .unwrap_or_default(),
                })
                .collect(),
            check_ins,
        });
    }
    let status = form_status(&error);
    let page = MonitorsPage {
        nav: ctx.nav(&org.slug, "projects"),
        project_name: project.name.clone(),
        issues_url,
        base_url,
        can_manage: org.can_manage(),
        error,
        monitors: views,
        cron_url: format!(
            "{}/api/{}/cron/<monitor-slug>/<public key>/?status=ok",
            ctx.app.config.public_url.as_str().trim_end_matches('/'),
            project.id
        ),
    };
    ctx.page_with_status(&page, status)
}

/// `GET /organizations/{org}/projects/{project}/monitors`.
pub async fn list(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    render(&ctx, &org_slug, &project_slug, String::new()).await
}

/// The configuration fields of the create and edit forms.
fn config_from_form(form: &super::context::Form) -> Result<MonitorConfig, String> {
    let schedule = match form.get("schedule_type") {
        "interval" => {
            let (value, unit) = form
                .get("schedule")
                .trim()
                .split_once(' ')
                .ok_or("An interval is a number and a unit, e.g. \"2 hour\".")?;
            Schedule::interval(
                value
                    .parse()
                    .map_err(|_| "The interval must be a whole number.")?,
                unit,
            )
        }
        _ => Schedule::crontab(form.get("schedule")),
    }
    .map_err(|e| e.to_string())?;
    let mut options = Map::new();
    for key in [
        "checkin_margin",
        "max_runtime",
        "failure_issue_threshold",
        "recovery_threshold",
    ] {
        let text = form.get(key).trim();
        if !text.is_empty() {
            let n: i64 = text
                .parse()
                .map_err(|_| format!("{key} must be a whole number."))?;
            options.insert(key.into(), Value::from(n));
        }
    }
    let tz = form.get("timezone").trim();
    if !tz.is_empty() {
        options.insert("timezone".into(), Value::from(tz));
    }
    MonitorConfig::with_options(schedule, &options).map_err(|e| e.to_string())
}

/// `POST /organizations/{org}/projects/{project}/monitors`: a new monitor.
pub async fn create(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let (_, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    let name = form.get("name").trim().to_string();
    let slug = slugify(if form.get("slug").trim().is_empty() {
        &name
    } else {
        form.get("slug")
    });
    let (Some(slug), false) = (slug, name.is_empty() || name.chars().count() > 128) else {
        return render(
            &ctx,
            &org_slug,
            &project_slug,
            "A monitor needs a name (at most 128 characters) with letters or digits.".into(),
        )
        .await;
    };
    let config = match config_from_form(&form) {
        Ok(c) => c,
        Err(e) => return render(&ctx, &org_slug, &project_slug, e).await,
    };
    if !monitors::create(&ctx.app.db, project.id, &slug, &name, &config, now_ms()).await? {
        return render(
            &ctx,
            &org_slug,
            &project_slug,
            format!("A monitor with the slug {slug:?} already exists."),
        )
        .await;
    }
    Ok(ctx.redirect(&format!(
        "/organizations/{org_slug}/projects/{project_slug}/monitors"
    )))
}

/// `POST .../monitors/{slug}` (edit), `.../{slug}/mute` and `.../{slug}/delete`.
pub async fn change(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
    action: Option<&'static str>,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug, slug) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    let monitor = monitors::by_slug(&ctx.app.db, project.id, &slug)
        .await?
        .ok_or(WebError::NotFound)?;
    let back = format!("/organizations/{org_slug}/projects/{project_slug}/monitors");
    match action {
        Some("delete") => {
            monitors::delete(&ctx.app.db, org.id, monitor.id).await?;
        }
        Some(_) => {
            let change = MonitorUpdate {
                is_muted: Some(form.get("muted") == "on"),
                ..MonitorUpdate::default()
            };
            monitors::update(&ctx.app.db, org.id, &monitor, &change)
                .await
                .map_err(|e| WebError::Internal(e.to_string()))?;
        }
        None => {
            let name = form.get("name").trim();
            if name.is_empty() || name.chars().count() > 128 {
                return render(
                    &ctx,
                    &org_slug,
                    &project_slug,
                    "The name must have 1 to 128 characters.".into(),
                )
                .await;
            }
            let status = match form.get("status") {
                "disabled" => "disabled",
                _ => "active",
            };
            let config = match config_from_form(&form) {
                Ok(c) => c,
                Err(e) => return render(&ctx, &org_slug, &project_slug, e).await,
            };
            let change = MonitorUpdate {
                name: Some(name.to_string()),
                status: Some(status.into()),
                config: Some(config),
                ..MonitorUpdate::default()
            };
            match monitors::update(&ctx.app.db, org.id, &monitor, &change).await {
                Ok(()) => {}
                Err(UpdateError::SlugTaken) => {
                    return render(&ctx, &org_slug, &project_slug, "That slug is taken.".into())
                        .await;
                }
                Err(UpdateError::Db(e)) => return Err(e.into()),
            }
        }
    }
    Ok(ctx.redirect(&back))
}

pub async fn edit(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    change(ctx, path, body, None).await
}

pub async fn mute(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    change(ctx, path, body, Some("mute")).await
}

pub async fn delete(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    change(ctx, path, body, Some("delete")).await
}
