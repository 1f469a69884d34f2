//! Releases: the list of a project's releases (new issues, events, deploys, artifacts) and
//! a release's detail page.

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;

use super::access;
use super::charts;
use super::context::{Ctx, Nav};
use super::error::WebError;
use super::format;
use super::issues;
use super::sql;

pub struct ReleaseLine {
    pub version: String,
    pub url: String,
    pub created: String,
    pub last_event: String,
    pub new_issues: i64,
    pub events: String,
    pub deploys: i64,
    pub last_deploy: String,
    pub artifacts: i64,
}

#[derive(Template)]
#[template(path = "releases.html")]
struct ReleasesPage {
    nav: Nav,
    project_name: String,
    issues_url: String,
    releases: Vec<ReleaseLine>,
    health: Vec<HealthLine>,
}

/// How far back the pages' crash-free rates and totals look.
pub const HEALTH_PERIOD_MS: i64 = 14 * 24 * HOUR_MS;
const HOUR_MS: i64 = faultline_core::health::HOUR_MS;

/// One release's health in one environment, as the pages show it.
pub struct HealthLine {
    pub project: String,
    pub release: String,
    pub url: String,
    pub environment: String,
    pub crash_free_sessions: String,
    pub crash_free_users: String,
    pub adoption: String,
    pub sessions: String,
    pub users: String,
}

fn percent(r: Option<f64>) -> String {
    match r {
        // Two decimals below 100 %, so 99.99 % never shows as 100 %.
        Some(r) if r < 1.0 => format!("{:.2}%", (r * 10_000.0).floor() / 100.0),
        Some(_) => "100%".into(),
        None => "-".into(),
    }
}

/// Health per release and environment of `projects` (id, slug) over the last 14 days,
/// with adoption over the last 24 hours; most sessions first.
pub async fn health_lines(
    ctx: &Ctx,
    org_slug: &str,
    projects: &[(i64, String)],
    releases: &[String],
) -> Result<Vec<HealthLine>, WebError> {
    let now = now_ms();
    let ids: Vec<i64> = projects.iter().map(|(id, _)| *id).collect();
    let end = (now + HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let mut rows = faultline_core::health::release_health(
        &ctx.app.db,
        &ids,
        releases,
        end - HEALTH_PERIOD_MS,
        end,
        now,
    )
    .await?;
    rows.sort_by(|a, b| {
        b.counts
            .total_sessions()
            .cmp(&a.counts.total_sessions())
            .then_with(|| a.release.cmp(&b.release))
    });
    Ok(rows
        .into_iter()
        .map(|h| {
            let slug = projects
                .iter()
                .find(|(id, _)| *id == h.project_id)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            HealthLine {
                url: format!(
                    "/organizations/{}/release?version={}&project={}",
                    org_slug,
                    format::url_encode(&h.release),
                    format::url_encode(&slug)
                ),
                project: slug,
                environment: if h.environment.is_empty() {
                    "(none)".into()
                } else {
                    h.environment.clone()
                },
                crash_free_sessions: percent(h.counts.crash_free_sessions()),
                crash_free_users: percent(h.counts.crash_free_users()),
                adoption: h
                    .adoption
                    .map(|a| format!("{:.1}%", a * 100.0))
                    .unwrap_or_else(|| "-".into()),
                sessions: format::count(h.counts.total_sessions()),
                users: format::count(h.counts.total_users()),
                release: h.release,
            }
        })
        .collect())
}

/// Sessions of `release` in `projects` by state over the last 7 days, 6 hours a bar.
async fn health_chart(
    ctx: &Ctx,
    projects: &[i64],
    release: &str,
) -> Result<charts::StackedChart, WebError> {
    use faultline_core::protocol::session::Health;
    let bucket = 6 * HOUR_MS;
    let end = (now_ms() + bucket).div_euclid(bucket) * bucket;
    let start = end - 28 * bucket;
    let q = faultline_core::health::Query {
        projects: projects.to_vec(),
        start_ms: start,
        end_ms: end,
        interval_ms: bucket,
        environments: Vec::new(),
        releases: vec![release.to_string()],
        by_project: false,
        by_release: false,
        by_environment: false,
        with_users: false,
    };
    let groups = faultline_core::health::query(&ctx.app.db, &q).await?;
    let mut series = vec![[0i64; 4]; q.slots()];
    for g in &groups {
        for (slot, c) in g.series.iter().enumerate() {
            let s = &c.sessions;
            series[slot][0] += s[Health::Healthy.index()];
            series[slot][1] += s[Health::Errored.index()] + s[Health::Unhandled.index()];
            series[slot][2] += s[Health::Abnormal.index()];
            series[slot][3] += s[Health::Crashed.index()];
        }
    }
    Ok(charts::stacked(&series, start, bucket, 560.0, 90.0))
}

/// Events of a release in a project: the sum of its `release` tag counts over the
/// project's issues (an indexed lookup; events themselves are not scanned).
async fn release_events(ctx: &Ctx, project_id: i64, version: &str) -> Result<i64, WebError> {
    let r = sql::one(
        &ctx.app.db,
        "SELECT CAST(SUM(t.times_seen) AS BIGINT) AS n FROM issue_tag_values t JOIN issues i ON i.id = t.issue_id \
         WHERE t.key = 'release' AND t.value = ? AND i.project_id = ?",
        vec![version.into(), project_id.into()],
    )
    .await?;
    Ok(match r {
        Some(r) => sql::get::<Option<i64>>(&r, "n")?.unwrap_or(0),
        None => 0,
    })
}

async fn count(ctx: &Ctx, sql_text: &str, id: i64) -> Result<i64, WebError> {
    let r = sql::one(&ctx.app.db, sql_text, vec![id.into()]).await?;
    Ok(match r {
        Some(r) => sql::get(&r, "n")?,
        None => 0,
    })
}

/// `GET /organizations/{org}/projects/{project}/releases`.
pub async fn list(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (org_slug, project_slug) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let project = access::project(&ctx, &org, &project_slug).await?;
    let now = now_ms();
    let rows = sql::all(
        &ctx.app.db,
        "SELECT r.id, r.version, r.date_created, r.last_event, rp.new_issues \
         FROM release_projects rp JOIN releases r ON r.id = rp.release_id \
         WHERE rp.project_id = ? ORDER BY r.date_created DESC, r.id DESC LIMIT 100",
        vec![project.id.into()],
    )
    .await?;
    let mut releases = Vec::new();
    for r in &rows {
        let id: i64 = sql::get(r, "id")?;
        let version: String = sql::get(r, "version")?;
        let last_deploy = sql::one(
            &ctx.app.db,
            "SELECT environment, date_finished FROM deploys WHERE release_id = ? \
             ORDER BY date_finished DESC LIMIT 1",
            vec![id.into()],
        )
        .await?
        .map(|d| -> Result<String, WebError> {
            Ok(format!(
                "{} {}",
                sql::get::<String>(&d, "environment")?,
                format::ago(sql::get(&d, "date_finished")?, now)
            ))
        })
        .transpose()?
        .unwrap_or_default();
        releases.push(ReleaseLine {
            url: format!(
                "/organizations/{}/release?version={}&project={}",
                org.slug,
                format::url_encode(&version),
                format::url_encode(&project.slug)
            ),
            created: format::ago(sql::get(r, "date_created")?, now),
            last_event: sql::get::<Option<i64>>(r, "last_event")?
                .map(|t| format::ago(t, now))
                .unwrap_or_else(|| "-".into()),
            new_issues: sql::get(r, "new_issues")?,
            events: format::count(release_events(&ctx, project.id, &version).await?),
            deploys: count(
                &ctx,
                "SELECT COUNT(*) AS n FROM deploys WHERE release_id = ?",
                id,
            )
            .await?,
            last_deploy,
            artifacts: count(
                &ctx,
                "SELECT COUNT(*) AS n FROM artifacts WHERE release_id = ?",
                id,
            )
            .await?,
            version,
        });
    }
    let health = health_lines(&ctx, &org.slug, &[(project.id, project.slug.clone())], &[]).await?;
    ctx.page(&ReleasesPage {
        nav: ctx.nav(&org.slug, "releases"),
        issues_url: format!("/organizations/{}/projects/{}", org.slug, project.slug),
        project_name: project.name,
        releases,
        health,
    })
}

pub struct DeployLine {
    pub environment: String,
    pub name: String,
    pub url: String,
    pub finished: String,
}

pub struct ArtifactLine {
    pub name: String,
    pub kind: String,
    pub dist: String,
    pub size: String,
}

pub struct ProjectStat {
    pub slug: String,
    pub new_issues: i64,
    pub events: String,
    pub issues_url: String,
}

pub struct NewIssue {
    pub url: String,
    pub short_id: String,
    pub title: String,
    pub events: String,
    pub level: String,
}

#[derive(Template)]
#[template(path = "release.html")]
struct ReleasePage {
    nav: Nav,
    version: String,
    git_ref: String,
    url: String,
    created: String,
    released: String,
    first_event: String,
    last_event: String,
    projects: Vec<ProjectStat>,
    deploys: Vec<DeployLine>,
    artifacts: Vec<ArtifactLine>,
    artifact_total: i64,
    new_issues: Vec<NewIssue>,
    back_url: String,
    health: Vec<HealthLine>,
    chart: charts::StackedChart,
    states: [(&'static str, &'static str); 4],
}

/// `GET /organizations/{org}/release?version=...&project=...` (a query parameter, because
/// versions may hold slashes).
pub async fn detail(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, WebError> {
    let org = access::org(&ctx, &path)?;
    let version = ctx.q("version").to_string();
    // No release has a NUL in its name, and PostgreSQL refuses one in a query (a 500).
    if version.contains('\0') {
        return Err(WebError::NotFound);
    }
    let db = &ctx.app.db;
    let now = now_ms();
    let r = sql::one(
        db,
        "SELECT id, version, ref, url, date_created, date_released, first_event, last_event \
         FROM releases WHERE organization_id = ? AND version = ?",
        vec![org.id.into(), version.clone().into()],
    )
    .await?
    .ok_or(WebError::NotFound)?;
    let id: i64 = sql::get(&r, "id")?;
    let when = |v: Option<i64>| {
        v.map(|t| format!("{} ({})", format::datetime(t), format::ago(t, now)))
            .unwrap_or_else(|| "-".into())
    };
    let mut projects = Vec::new();
    let mut project_ids = Vec::new();
    let mut project_slugs = Vec::new();
    for p in sql::all(
        db,
        "SELECT p.id, p.slug, rp.new_issues FROM release_projects rp \
         JOIN projects p ON p.id = rp.project_id WHERE rp.release_id = ? AND p.organization_id = ? \
         ORDER BY p.slug",
        vec![id.into(), org.id.into()],
    )
    .await?
    {
        let pid: i64 = sql::get(&p, "id")?;
        let slug: String = sql::get(&p, "slug")?;
        project_ids.push(pid);
        project_slugs.push((pid, slug.clone()));
        projects.push(ProjectStat {
            issues_url: format!(
                "/organizations/{}/projects/{}?query={}",
                org.slug,
                slug,
                format::url_encode(&format!("is:all release:{version}"))
            ),
            slug,
            new_issues: sql::get(&p, "new_issues")?,
            events: format::count(release_events(&ctx, pid, &version).await?),
        });
    }
    let deploys = sql::all(
        db,
        "SELECT environment, name, url, date_finished FROM deploys WHERE release_id = ? \
         ORDER BY date_finished DESC LIMIT 50",
        vec![id.into()],
    )
    .await?
    .iter()
    .map(|d| {
        Ok(DeployLine {
            environment: sql::get(d, "environment")?,
            name: sql::get::<Option<String>>(d, "name")?.unwrap_or_default(),
            url: sql::get::<Option<String>>(d, "url")?
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .unwrap_or_default(),
            finished: when(Some(sql::get(d, "date_finished")?)),
        })
    })
    .collect::<Result<Vec<_>, WebError>>()?;
    let artifact_total = count(
        &ctx,
        "SELECT COUNT(*) AS n FROM artifacts WHERE release_id = ?",
        id,
    )
    .await?;
    let artifacts = sql::all(
        db,
        "SELECT name, kind, dist, size FROM artifacts WHERE release_id = ? ORDER BY name LIMIT 200",
        vec![id.into()],
    )
    .await?
    .iter()
    .map(|a| {
        Ok(ArtifactLine {
            name: sql::get(a, "name")?,
            kind: sql::get(a, "kind")?,
            dist: sql::get::<Option<String>>(a, "dist")?.unwrap_or_default(),
            size: format::bytes(sql::get(a, "size")?),
        })
    })
    .collect::<Result<Vec<_>, WebError>>()?;
    let mut new_issues = Vec::new();
    if !project_ids.is_empty() {
        // New in this release: first_release matches; a bounded scan of the projects' issues.
        let (ph, mut values) = sql::id_list(&project_ids);
        values.push(version.clone().into());
        for i in sql::all(
            db,
            &format!(
                "SELECT i.id, i.short_id, i.title, i.times_seen, i.level, p.slug FROM issues i \
                 JOIN projects p ON p.id = i.project_id \
                 WHERE i.project_id IN ({ph}) AND i.first_release = ? ORDER BY i.times_seen DESC LIMIT 50"
            ),
            values,
        )
        .await?
        {
            let iid: i64 = sql::get(&i, "id")?;
            new_issues.push(NewIssue {
                url: format!("/organizations/{}/issues/{iid}", org.slug),
                short_id: issues::short_id(&sql::get::<String>(&i, "slug")?, sql::get(&i, "short_id")?),
                title: format::truncate(&sql::get::<String>(&i, "title")?, 200),
                events: format::count(sql::get(&i, "times_seen")?),
                level: sql::get(&i, "level")?,
            });
        }
    }
    let back_url = match ctx.q("project") {
        "" => format!("/organizations/{}/projects", org.slug),
        p => format!(
            "/organizations/{}/projects/{}/releases",
            org.slug,
            format::url_encode(p)
        ),
    };
    let health = health_lines(
        &ctx,
        &org.slug,
        &project_slugs,
        std::slice::from_ref(&version),
    )
    .await?;
    let chart = health_chart(&ctx, &project_ids, &version).await?;
    ctx.page(&ReleasePage {
        health,
        chart,
        states: charts::SESSION_STATES,
        nav: ctx.nav(&org.slug, "releases"),
        git_ref: sql::get::<Option<String>>(&r, "ref")?.unwrap_or_default(),
        url: sql::get::<Option<String>>(&r, "url")?
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .unwrap_or_default(),
        created: when(Some(sql::get(&r, "date_created")?)),
        released: when(sql::get(&r, "date_released")?),
        first_event: when(sql::get(&r, "first_event")?),
        last_event: when(sql::get(&r, "last_event")?),
        version,
        projects,
        deploys,
        artifacts,
        artifact_total,
        new_issues,
        back_url,
    })
}
