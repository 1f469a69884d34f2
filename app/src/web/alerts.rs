//! The "Alerts" section of the project settings page: alert rules (owners and admins
//! edit them), the member's own subscription, a "send test email" button, and the
//! notification log (what was sent, failed and why, suppressed, not sent).

use actix_web::{HttpResponse, web};
use faultline_worker::alerts::{self, rules, rules::AlertRule, unsubscribe};

use super::access::{self, Poster, ProjectRow};
use super::context::Ctx;
use super::error::WebError;
use super::format;
use super::sql;

/// Entries of the notification log shown.
const LOG_ROWS: u64 = 50;
/// Test emails a user may send per [`TEST_EMAIL_WINDOW_MS`]: enough to try a few SMTP
/// settings, too few to use the button to mail arbitrary addresses in bulk.
pub const TEST_EMAILS_PER_HOUR: i64 = 5;
const TEST_EMAIL_WINDOW_MS: i64 = 60 * 60 * 1000;

/// One rule as its edit form shows it.
pub struct RuleForm {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub on_new_issue: bool,
    pub on_regression: bool,
    pub on_unignored: bool,
    pub on_monitor_failure: bool,
    pub environment: String,
    pub min_level: String,
    pub release: String,
    pub notify_members: bool,
    pub extra_recipients: String,
    pub action_url: String,
}

/// One line of the notification log.
pub struct LogLine {
    pub when: String,
    pub kind: String,
    pub recipient: String,
    pub status: String,
    /// ok | bad | "" (badge colour)
    pub tone: &'static str,
    pub detail: String,
    pub issue_url: String,
}

/// What the section shows.
pub struct AlertsSection {
    pub smtp_configured: bool,
    pub rules: Vec<RuleForm>,
    pub levels: Vec<&'static str>,
    pub log: Vec<LogLine>,
    pub subscribed: bool,
    pub user_email: String,
    pub action_base: String,
}

fn kind_label(kind: &str) -> String {
    match kind {
        "new_issue" => "new issue",
        "regression" => "regression",
        "unignored" => "unignored",
        "digest" => "digest",
        "test" => "test email",
        other => other,
    }
    .to_string()
}

/// Reads the section's data for a project.
pub async fn section(
    ctx: &Ctx,
    org_slug: &str,
    project: &ProjectRow,
    base: &str,
) -> Result<AlertsSection, WebError> {
    let user = ctx.user()?;
    let db = &ctx.app.db;
    let action_base = format!("{base}/alerts");
    let rules = rules::load(db, project.id)
        .await?
        .into_iter()
        .map(|r| RuleForm {
            action_url: format!("{action_base}/rules/{}", r.id),
            id: r.id,
            name: r.name,
            enabled: r.enabled,
            on_new_issue: r.on_new_issue,
            on_regression: r.on_regression,
            on_unignored: r.on_unignored,
            on_monitor_failure: r.on_monitor_failure,
            environment: r.environment.unwrap_or_default(),
            min_level: r.min_level.unwrap_or_default(),
            release: r.release.unwrap_or_default(),
            notify_members: r.notify_members,
            extra_recipients: r.extra_recipients,
        })
        .collect();
    let now = faultline_core::entity::now_ms();
    let log = alerts::deliver::recent_log(db, project.id, LOG_ROWS)
        .await?
        .into_iter()
        .map(|e| {
            let tone = match e.status.as_str() {
                "sent" => "ok",
                "failed" => "bad",
                _ => "",
            };
            let status = match e.status.as_str() {
                "not_sent" => "not sent".to_string(),
                s => s.to_string(),
            };
            let mut detail = e
                .subject
                .clone()
                .or(e.issue_title.clone())
                .unwrap_or_default();
            if let Some(reason) = &e.reason {
                if !detail.is_empty() {
                    detail.push_str(" — ");
                }
                detail.push_str(reason);
            }
            if e.attempts > 1 {
                detail.push_str(&format!(" ({} attempts)", e.attempts));
            }
            LogLine {
                when: format::ago(e.created_at, now),
                kind: kind_label(&e.kind),
                recipient: if e.recipient.is_empty() {
                    "-".into()
                } else {
                    e.recipient
                },
                status,
                tone,
                detail,
                issue_url: e
                    .issue_id
                    .map(|id| format!("/organizations/{org_slug}/issues/{id}"))
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(AlertsSection {
        smtp_configured: ctx.app.config.smtp_url.is_some(),
        rules,
        levels: rules::LEVELS.to_vec(),
        log,
        subscribed: !unsubscribe::is_unsubscribed(db, project.id, &user.email).await?,
        user_email: user.email.clone(),
        action_base,
    })
}

/// Reads and checks a rule form; the error says what to fix.
fn parse_rule(form: &super::context::Form, project_id: i64, id: i64) -> Result<AlertRule, String> {
    let text = |name: &str, label: &str, max: usize| -> Result<Option<String>, String> {
        let v = form.get(name);
        if v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(format!(
                "{label} must be one line of at most {max} characters."
            ));
        }
        Ok(Some(v.to_string()).filter(|v| !v.is_empty()))
    };
    let name = text("name", "The name", 100)?.ok_or("Give the rule a name.")?;
    let min_level = form.get("min_level");
    if !min_level.is_empty() && !rules::LEVELS.contains(&min_level) {
        return Err("Pick a level from the list.".into());
    }
    let extra = rules::check_addresses(form.raw("extra_recipients"))
        .map_err(|e| format!("Extra recipients: {e}."))?;
    let checked = |name: &str| form.get(name) == "on";
    Ok(AlertRule {
        id,
        project_id,
        name,
        enabled: checked("enabled"),
        on_new_issue: checked("on_new_issue"),
        on_regression: checked("on_regression"),
        on_unignored: checked("on_unignored"),
        on_monitor_failure: checked("on_monitor_failure"),
        environment: text("environment", "Environments", 200)?,
        min_level: Some(min_level.to_string()).filter(|l| !l.is_empty()),
        release: text("release", "Releases", 200)?,
        notify_members: checked("notify_members"),
        extra_recipients: extra.join(", "),
    })
}

fn back(ctx: &Ctx, org: &str, project: &str, done: &str) -> HttpResponse {
    ctx.redirect(&format!(
        "/organizations/{org}/projects/{project}/settings?done={done}#alerts"
    ))
}

/// `POST .../alerts/rules`: a new rule.
pub async fn create_rule(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    if rules::load(&ctx.app.db, project.id).await?.len() >= 20 {
        return super::projects::settings_page(
            &ctx,
            &org_slug,
            &project_slug,
            "A project has at most 20 alert rules.".into(),
        )
        .await;
    }
    match parse_rule(&form, project.id, 0) {
        Ok(rule) => {
            rules::save(&ctx.app.db, &rule).await?;
            Ok(back(&ctx, &org.slug, &project.slug, "alerts"))
        }
        Err(e) => super::projects::settings_page(&ctx, &org_slug, &project_slug, e).await,
    }
}

/// `POST .../alerts/rules/{id}`: `action=save` or `action=delete`.
pub async fn update_rule(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug, rule_id) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Manager).await?;
    let rule_id = access::path_id(&rule_id)?;
    if rules::find(&ctx.app.db, project.id, rule_id)
        .await?
        .is_none()
    {
        return Err(WebError::NotFound);
    }
    match form.get("action") {
        "delete" => {
            rules::delete(&ctx.app.db, project.id, rule_id).await?;
        }
        "save" => match parse_rule(&form, project.id, rule_id) {
            Ok(rule) => {
                rules::save(&ctx.app.db, &rule).await?;
            }
            Err(e) => {
                return super::projects::settings_page(&ctx, &org_slug, &project_slug, e).await;
            }
        },
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use save or delete."
            )));
        }
    }
    Ok(back(&ctx, &org.slug, &project.slug, "alerts"))
}

/// `POST .../alerts/test`: mails the test email now and logs it.
pub async fn send_test(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Member).await?;
    let to = match form.get("to") {
        "" => ctx.user()?.email.clone(),
        to => to.to_string(),
    };
    if rules::check_addresses(&to).map(|a| a.len()) != Ok(1) {
        return super::projects::settings_page(
            &ctx,
            &org_slug,
            &project_slug,
            format!("{to:?} is not one email address."),
        )
        .await;
    }
    reserve_test_email(&ctx, ctx.user()?.id).await?;
    let alert_ctx = alerts::AlertContext::new(ctx.app.db.clone(), &ctx.app.config)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    match alerts::deliver::send_test_email(&alert_ctx, &to, Some(project.id)).await {
        Ok(()) => Ok(back(&ctx, &org.slug, &project.slug, "test")),
        Err(e) => {
            super::projects::settings_page(
                &ctx,
                &org_slug,
                &project_slug,
                format!("The test email to {to} was not sent: {e}"),
            )
            .await
        }
    }
}

/// Counts a test email of `user_id` against the hourly limit, or refuses it (429). The
/// send is recorded first and counted after (its own row and every other one committed),
/// so requests at once can never all pass the limit — at worst both are refused; a
/// refused request takes its row back. Rows older than the window go on the
/// way, so the table holds at most a few rows per user.
async fn reserve_test_email(ctx: &Ctx, user_id: i64) -> Result<(), WebError> {
    let db = &ctx.app.db;
    let now = faultline_core::entity::now_ms();
    let since = now - TEST_EMAIL_WINDOW_MS;
    sql::exec(
        db,
        "DELETE FROM test_email_sends WHERE user_id = ? AND created_at <= ?",
        vec![user_id.into(), since.into()],
    )
    .await?;
    let row = sql::one(
        db,
        "INSERT INTO test_email_sends (user_id, created_at) VALUES (?, ?) RETURNING id",
        vec![user_id.into(), now.into()],
    )
    .await?
    .ok_or_else(|| WebError::Internal("INSERT returned no id".into()))?;
    let id: i64 = sql::get(&row, "id")?;
    let row = sql::one(
        db,
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM test_email_sends \
         WHERE user_id = ? AND created_at > ?",
        vec![user_id.into(), since.into()],
    )
    .await?
    .ok_or_else(|| WebError::Internal("COUNT returned no row".into()))?;
    let sent: i64 = sql::get(&row, "n")?;
    if sent <= TEST_EMAILS_PER_HOUR {
        return Ok(());
    }
    sql::exec(
        db,
        "DELETE FROM test_email_sends WHERE id = ?",
        vec![id.into()],
    )
    .await?;
    let oldest: i64 = sql::get::<Option<i64>>(&row, "oldest")?.unwrap_or(now);
    let retry_after = ((oldest + TEST_EMAIL_WINDOW_MS - now + 999) / 1000).max(1);
    Err(WebError::RateLimited {
        message: format!(
            "You can send at most {TEST_EMAILS_PER_HOUR} test emails an hour. Try again in {} minutes.",
            (retry_after + 59) / 60
        ),
        retry_after,
    })
}

/// `POST .../alerts/subscription`: the logged-in member (un)subscribes themselves.
pub async fn subscription(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let (org, project, form) =
        access::project_form(&ctx, &org_slug, &project_slug, &body, Poster::Member).await?;
    let email = ctx.user()?.email.clone();
    match form.get("action") {
        "unsubscribe" => unsubscribe::unsubscribe(&ctx.app.db, project.id, &email).await?,
        "subscribe" => unsubscribe::resubscribe(&ctx.app.db, project.id, &email).await?,
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use subscribe or unsubscribe."
            )));
        }
    }
    Ok(back(&ctx, &org.slug, &project.slug, "subscription"))
}
