//! The issue page (summary, status actions, events-over-time chart, tag facets, one event
//! in full), the raw JSON of an event, and the trace page.

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;
use faultline_core::issues::activity::Actor;
use faultline_core::issues::{self as domain, Issue, StatusChange, StatusDetails, assign};
use faultline_core::protocol::event::Event;

use super::access;
use super::charts::{self, Chart};
use super::context::{Ctx, Nav, OrgRef};
use super::error::WebError;
use super::event_view::{self, EventView};
use super::format;
use super::issues;
use super::sql;

/// The issue `id` if it belongs to a project of `org` (else, like a missing one, 404).
pub async fn load_issue(ctx: &Ctx, org: &OrgRef, id: &str) -> Result<Issue, WebError> {
    let id: i64 = id.parse().map_err(|_| WebError::NotFound)?;
    domain::get_in(&ctx.app.db, org.id, id)
        .await?
        .ok_or(WebError::NotFound)
}

/// A stored event's row.
struct EventRow {
    id: i64,
    event_id: String,
    timestamp: i64,
    payload: Vec<u8>,
}

const EVENT_COLS: &str = "id, event_id, timestamp, payload";

fn event_row(row: &sea_orm::QueryResult) -> Result<EventRow, WebError> {
    Ok(EventRow {
        id: sql::get(row, "id")?,
        event_id: sql::get(row, "event_id")?,
        timestamp: sql::get(row, "timestamp")?,
        payload: sql::get(row, "payload")?,
    })
}

/// `abc-def` or `ABCDEF` -> the stored form (32 lowercase hex), if it is one.
pub fn normalize_event_id(s: &str) -> Option<String> {
    let v: String = s.trim().replace('-', "").to_lowercase();
    (v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit())).then_some(v)
}

/// Decompresses a stored payload into the event (payloads are at most a few MB).
fn decode_payload(payload: &[u8]) -> Result<(Vec<u8>, Event), WebError> {
    let json = faultline_core::compress::unzstd(payload, 64 * 1024 * 1024)
        .map_err(|e| WebError::Internal(format!("event payload: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&json)
        .map_err(|e| WebError::Internal(format!("event payload: {e}")))?;
    let event = Event::from_value(value)
        .ok_or_else(|| WebError::Internal("event payload is not an object".into()))?;
    Ok((json, event))
}

/// A tag key with its most frequent values.
pub struct Facet {
    pub key: String,
    pub distinct: i64,
    pub values: Vec<FacetValue>,
}

pub struct FacetValue {
    pub value: String,
    pub count: String,
    pub percent: i64,
    pub search_url: String,
}

#[derive(Template)]
#[template(path = "issue.html")]
struct IssuePage {
    nav: Nav,
    org_slug: String,
    issue_id: i64,
    short_id: String,
    project_slug: String,
    project_url: String,
    title: String,
    culprit: String,
    level: String,
    status: String,
    status_text: String,
    first_seen: String,
    first_seen_at: String,
    last_seen: String,
    last_seen_at: String,
    first_release: String,
    first_release_url: String,
    last_release: String,
    last_release_url: String,
    events: String,
    users: String,
    chart: Chart,
    chart_period: String,
    chart_24h_url: String,
    chart_30d_url: String,
    facets: Vec<Facet>,
    has_event: bool,
    event_id: String,
    event_time: String,
    event_ago: String,
    older_url: String,
    newer_url: String,
    raw_json_url: String,
    raw_toggle_url: String,
    showing_raw: bool,
    pick_error: String,
    event: EventView,
    jaeger_url: String,
    trace_url: String,
    status_url: String,
    notice: String,
    assign_url: String,
    /// The organization's members; the assignee is selected.
    members: Vec<issues::Choice>,
    /// The timeline, newest first, and the comment form's target.
    timeline: Vec<super::activity::TimelineEntry>,
    comment_url: String,
    max_note_chars: usize,
}

fn status_text(status: &str, details: Option<&str>, now: i64) -> String {
    let d = StatusDetails::read(details);
    match status {
        "resolved" => "Resolved".into(),
        "resolved_in_next_release" => match d.resolved_release {
            Some(r) => format!("Resolved in the release after {r}"),
            None => "Resolved in the next release".into(),
        },
        "ignored" => {
            let mut parts = Vec::new();
            if let Some(t) = d.ignore_until {
                parts.push(format!(
                    "until {} ({})",
                    format::datetime(t),
                    format::ago(t, now)
                ));
            }
            if let Some(n) = d.ignore_count {
                parts.push(format!("until {n} more events"));
            }
            if parts.is_empty() {
                "Ignored".into()
            } else {
                format!("Ignored {}", parts.join(" or "))
            }
        }
        _ => "Unresolved".into(),
    }
}

/// `GET /organizations/{org}/issues/{id}?event=..&period=30d&raw=1`.
pub async fn show(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let db = &ctx.app.db;
    let now = now_ms();
    let base = format!("/organizations/{}/issues/{}", org.slug, issue.id);

    // Events over time: 24 hourly or 30 daily buckets from the stored events.
    let period_30d = ctx.q("period") == "30d";
    let (buckets, bucket_ms) = if period_30d {
        (30usize, 86_400_000i64)
    } else {
        (24usize, 3_600_000i64)
    };
    let start = (now / bucket_ms + 1) * bucket_ms - buckets as i64 * bucket_ms;
    let counts = charts::issue_buckets(db, &[issue.id], start, bucket_ms, buckets).await?;
    let chart = charts::layout(
        counts.get(&issue.id).map(|v| v.as_slice()).unwrap_or(&[]),
        start,
        bucket_ms,
        720.0,
        80.0,
    );

    // Tag facets: per key, the total and the top values.
    let mut facets = Vec::new();
    let keys = sql::all(
        db,
        "SELECT key, CAST(SUM(times_seen) AS BIGINT) AS total, COUNT(*) AS distinct_values \
         FROM issue_tag_values WHERE issue_id = ? GROUP BY key ORDER BY key LIMIT 40",
        vec![issue.id.into()],
    )
    .await?;
    for k in &keys {
        let key: String = sql::get(k, "key")?;
        let total: i64 = sql::get::<Option<i64>>(k, "total")?.unwrap_or(0).max(1);
        let distinct: i64 = sql::get(k, "distinct_values")?;
        let tops = sql::all(
            db,
            "SELECT value, times_seen FROM issue_tag_values WHERE issue_id = ? AND key = ? \
             ORDER BY times_seen DESC, value LIMIT 5",
            vec![issue.id.into(), key.clone().into()],
        )
        .await?;
        let mut values = Vec::new();
        for t in &tops {
            let value: String = sql::get(t, "value")?;
            let n: i64 = sql::get(t, "times_seen")?;
            let term = if value.contains(char::is_whitespace) || value.contains('"') {
                format!("{key}:\"{}\"", value.replace('"', ""))
            } else {
                format!("{key}:{value}")
            };
            values.push(FacetValue {
                search_url: format!(
                    "/organizations/{}/projects/{}?query={}",
                    org.slug,
                    issue.project_slug,
                    format::url_encode(&format!("is:all {term}"))
                ),
                value: format::truncate(&value, 120),
                count: format::count(n),
                percent: ((n as f64 / total as f64) * 100.0).round() as i64,
            });
        }
        facets.push(Facet {
            key,
            distinct,
            values,
        });
    }

    // The event: picked by id, else the newest.
    let mut pick_error = String::new();
    let mut current: Option<EventRow> = None;
    let wanted = ctx.q("event");
    if !wanted.is_empty() {
        match normalize_event_id(wanted) {
            Some(eid) => {
                current = sql::one(
                    db,
                    &format!(
                        "SELECT {EVENT_COLS} FROM events WHERE project_id = ? AND event_id = ? AND issue_id = ?"
                    ),
                    vec![issue.project_id.into(), eid.into(), issue.id.into()],
                )
                .await?
                .map(|r| event_row(&r))
                .transpose()?;
                if current.is_none() {
                    pick_error =
                        "This issue has no stored event with that id; showing the latest.".into();
                }
            }
            None => pick_error = "An event id has 32 hexadecimal digits.".into(),
        }
    }
    if current.is_none() {
        current = sql::one(
            db,
            &format!(
                "SELECT {EVENT_COLS} FROM events WHERE issue_id = ? ORDER BY timestamp DESC, id DESC LIMIT 1"
            ),
            vec![issue.id.into()],
        )
        .await?
        .map(|r| event_row(&r))
        .transpose()?;
    }
    let showing_raw = ctx.q("raw") == "1";
    let mut older_url = String::new();
    let mut newer_url = String::new();
    let mut view = EventView::default();
    let (mut event_id, mut event_time, mut event_ago) =
        (String::new(), String::new(), String::new());
    let period_param = if period_30d { "&period=30d" } else { "" };
    if let Some(ev) = &current {
        let (_, mut event) = decode_payload(&ev.payload)?;
        super::hooks::resymbolicate_for_view(db, org.id, &mut event).await;
        view = event_view::build(&event, showing_raw);
        event_id = ev.event_id.clone();
        event_time = format::datetime(ev.timestamp);
        event_ago = format::ago(ev.timestamp, now);
        let older = sql::one(
            db,
            "SELECT event_id FROM events WHERE issue_id = ? AND (timestamp < ? OR (timestamp = ? AND id < ?)) \
             ORDER BY timestamp DESC, id DESC LIMIT 1",
            vec![issue.id.into(), ev.timestamp.into(), ev.timestamp.into(), ev.id.into()],
        )
        .await?;
        if let Some(r) = older {
            older_url = format!(
                "{base}?event={}{period_param}",
                sql::get::<String>(&r, "event_id")?
            );
        }
        let newer = sql::one(
            db,
            "SELECT event_id FROM events WHERE issue_id = ? AND (timestamp > ? OR (timestamp = ? AND id > ?)) \
             ORDER BY timestamp ASC, id ASC LIMIT 1",
            vec![issue.id.into(), ev.timestamp.into(), ev.timestamp.into(), ev.id.into()],
        )
        .await?;
        if let Some(r) = newer {
            newer_url = format!(
                "{base}?event={}{period_param}",
                sql::get::<String>(&r, "event_id")?
            );
        }
    }
    let release_url = |v: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!(
                "/organizations/{}/release?version={}&project={}",
                org.slug,
                format::url_encode(v),
                format::url_encode(&issue.project_slug)
            )
        }
    };
    let event_param = if event_id.is_empty() {
        String::new()
    } else {
        format!("event={event_id}")
    };
    let notice = match ctx.q("done") {
        "resolve" => "Resolved. A new event will reopen it (a regression).",
        "resolve_next" => "Resolved in the next release: events from a newer release reopen it.",
        "ignore" => "Ignored.",
        "unresolve" => "Reopened.",
        "comment" => "Comment added.",
        "comment_edited" => "Comment changed.",
        "comment_deleted" => "Comment deleted.",
        _ => "",
    };
    let members = assign::members(db, org.id)
        .await?
        .into_iter()
        .map(|m| issues::Choice {
            selected: issue.assignee_id == Some(m.user_id),
            value: m.user_id.to_string(),
            label: m.email,
        })
        .collect();
    let viewer = Actor::User(ctx.user()?.id);
    let timeline = super::activity::timeline(&ctx, &org, &issue, &viewer).await?;
    let trace_id = view.trace_id.clone();
    ctx.page(&IssuePage {
        nav: ctx.nav(&org.slug, "issues"),
        org_slug: org.slug.clone(),
        issue_id: issue.id,
        short_id: issues::short_id(&issue.project_slug, issue.short_id),
        project_url: format!(
            "/organizations/{}/projects/{}",
            org.slug, issue.project_slug
        ),
        project_slug: issue.project_slug.clone(),
        title: issue.title.clone(),
        culprit: issue.culprit.clone().unwrap_or_default(),
        level: issue.level.clone(),
        status: issue.status.clone(),
        status_text: status_text(&issue.status, issue.status_details.as_deref(), now),
        first_seen: format::ago(issue.first_seen, now),
        first_seen_at: format::datetime(issue.first_seen),
        last_seen: format::ago(issue.last_seen, now),
        last_seen_at: format::datetime(issue.last_seen),
        first_release_url: release_url(issue.first_release.as_deref().unwrap_or_default()),
        first_release: issue.first_release.clone().unwrap_or_default(),
        last_release_url: release_url(issue.last_release.as_deref().unwrap_or_default()),
        last_release: issue.last_release.clone().unwrap_or_default(),
        events: format::count(issue.times_seen),
        users: format::count(issue.users_seen),
        chart,
        chart_period: if period_30d {
            "30d".into()
        } else {
            "24h".into()
        },
        chart_24h_url: format!("{base}?{event_param}"),
        chart_30d_url: format!("{base}?{event_param}&period=30d"),
        facets,
        has_event: current.is_some(),
        raw_json_url: format!("{base}/events/{event_id}/json"),
        raw_toggle_url: if showing_raw {
            format!("{base}?{event_param}{period_param}")
        } else {
            format!("{base}?{event_param}{period_param}&raw=1")
        },
        event_id,
        event_time,
        event_ago,
        older_url,
        newer_url,
        showing_raw,
        pick_error,
        event: view,
        jaeger_url: if trace_id.is_empty() {
            String::new()
        } else {
            format!(
                "{}/trace/{}",
                ctx.web.jaeger_url,
                format::url_encode(&trace_id)
            )
        },
        trace_url: if trace_id.is_empty() {
            String::new()
        } else {
            format!(
                "/organizations/{}/traces/{}",
                org.slug,
                format::url_encode(&trace_id)
            )
        },
        status_url: format!("{base}/status"),
        notice: notice.into(),
        assign_url: format!("{base}/assign"),
        members,
        timeline,
        comment_url: format!("{base}/comments"),
        max_note_chars: domain::activity::MAX_NOTE_CHARS,
    })
}

/// Parses `30m`, `2h`, `24h`, `7d` into milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let (idx, _) = s.char_indices().last()?;
    let (num, unit) = s.split_at(idx);
    let n: i64 = num.parse().ok().filter(|n| *n > 0 && *n <= 10_000)?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(n * unit_ms)
}

/// `POST .../status`: resolve, resolve in next release, ignore (with until-conditions),
/// reopen.
pub async fn set_status(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let form = ctx.form(&body)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let now = now_ms();
    let action = form.get("action");
    let change = match action {
        "resolve" => StatusChange::Resolved,
        "resolve_next" => StatusChange::ResolvedInNextRelease,
        "ignore" => {
            let until = match form.get("until") {
                "" | "forever" => None,
                d => Some(
                    now + parse_duration(d).ok_or_else(|| {
                        WebError::BadRequest(format!("{d:?} is not a duration like 30m, 2h or 7d."))
                    })?,
                ),
            };
            let count = match form.get("count") {
                "" => None,
                c => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    WebError::BadRequest(format!("{c:?} is not a positive number of events."))
                })?),
            };
            StatusChange::Ignored { until, count }
        }
        "unresolve" => StatusChange::Unresolved,
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use resolve, resolve_next, ignore or unresolve."
            )));
        }
    };
    let actor = Actor::User(ctx.user()?.id);
    domain::set_status(&ctx.app.db, org.id, &[issue.id], &change, &actor, now).await?;
    Ok(ctx.redirect(&format!(
        "/organizations/{}/issues/{}?done={action}",
        org.slug, issue.id
    )))
}

/// `POST .../assign`: assign to a member of the organization (`assignee` = user id), or
/// to nobody (empty).
pub async fn set_assignee(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let form = ctx.form(&body)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let who = match form.get("assignee") {
        "" => assign::Assignee::Nobody,
        id => assign::Assignee::UserId(id.parse().map_err(|_| {
            WebError::BadRequest(format!("{id:?} is not a member; pick one from the list."))
        })?),
    };
    let member = assign::find_member(&ctx.app.db, org.id, &who)
        .await
        .map_err(|e| match e {
            domain::Error::Invalid(m) => WebError::BadRequest(m),
            domain::Error::Db(e) => e.into(),
        })?;
    let actor = Actor::User(ctx.user()?.id);
    assign::assign(&ctx.app.db, org.id, &[issue.id], member.as_ref(), &actor).await?;
    Ok(ctx.redirect(&format!(
        "/organizations/{}/issues/{}?done=assign",
        org.slug, issue.id
    )))
}

/// `GET .../events/{event_id}/json`: the stored, normalized event as a download.
pub async fn raw_json(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, WebError> {
    let (org_slug, issue_id, event_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let issue = load_issue(&ctx, &org, &issue_id).await?;
    let eid = normalize_event_id(&event_id).ok_or(WebError::NotFound)?;
    let row = sql::one(
        &ctx.app.db,
        &format!(
            "SELECT {EVENT_COLS} FROM events WHERE project_id = ? AND event_id = ? AND issue_id = ?"
        ),
        vec![issue.project_id.into(), eid.clone().into(), issue.id.into()],
    )
    .await?
    .ok_or(WebError::NotFound)?;
    let ev = event_row(&row)?;
    let (json, _) = decode_payload(&ev.payload)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"event-{eid}.json\""),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(json))
}

pub struct TraceEvent {
    pub url: String,
    pub time: String,
    pub title: String,
    pub level: String,
    pub project: String,
    pub org: String,
    pub event_id: String,
}

#[derive(Template)]
#[template(path = "trace.html")]
struct TracePage {
    nav: Nav,
    trace_id: String,
    jaeger_url: String,
    events: Vec<TraceEvent>,
    search_url: String,
}

/// `GET /organizations/{org}/traces/{trace_id}`: every event of a trace in the projects the
/// user can see (all their organizations).
pub async fn trace(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    let (org_slug, trace_id) = path.into_inner();
    let org = access::org(&ctx, &org_slug)?;
    let trace = trace_id.replace('-', "").to_lowercase();
    if trace.len() != 32 || !trace.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebError::NotFound);
    }
    let project_ids = access::all_project_ids(&ctx).await?;
    let (ph, mut values) = sql::id_list(&project_ids);
    values.insert(0, trace.clone().into());
    let rows = sql::all(
        &ctx.app.db,
        &format!(
            "SELECT e.event_id, e.issue_id, e.timestamp, e.title, e.level, p.slug AS project, \
             o.slug AS org FROM events e JOIN projects p ON p.id = e.project_id \
             JOIN organizations o ON o.id = p.organization_id \
             WHERE e.trace_id = ? AND e.project_id IN ({ph}) ORDER BY e.timestamp, e.id LIMIT 500"
        ),
        values,
    )
    .await?;
    let mut events = Vec::new();
    for r in &rows {
        let event_id: String = sql::get(r, "event_id")?;
        let issue_id: i64 = sql::get(r, "issue_id")?;
        let org_of: String = sql::get(r, "org")?;
        events.push(TraceEvent {
            url: format!("/organizations/{org_of}/issues/{issue_id}?event={event_id}"),
            time: format::datetime(sql::get(r, "timestamp")?),
            title: format::truncate(&sql::get::<String>(r, "title")?, 300),
            level: sql::get(r, "level")?,
            project: sql::get(r, "project")?,
            org: org_of,
            event_id,
        });
    }
    ctx.page(&TracePage {
        nav: ctx.nav(&org.slug, "issues"),
        jaeger_url: format!("{}/trace/{trace}", ctx.web.jaeger_url),
        search_url: format!(
            "/organizations/{}/issues?query={}",
            org.slug,
            format::url_encode(&format!("is:all trace:{trace}"))
        ),
        trace_id: trace,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(1_800_000));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5y"), None);
        assert_eq!(parse_duration("5é"), None);
        assert_eq!(parse_duration("99999999999999999d"), None);
    }

    #[test]
    fn event_ids() {
        assert_eq!(
            normalize_event_id("0A2B3C4D-0000-4000-8000-00000000000F").as_deref(),
            Some("0a2b3c4d00004000800000000000000f")
        );
        assert_eq!(normalize_event_id("nope"), None);
        assert_eq!(normalize_event_id("<script>"), None);
    }

    #[test]
    fn ignore_statuses_say_until_when() {
        let d = r#"{"ignore_count":100}"#;
        assert_eq!(
            status_text("ignored", Some(d), 0),
            "Ignored until 100 more events"
        );
        assert_eq!(status_text("resolved", None, 0), "Resolved");
        assert_eq!(
            status_text(
                "resolved_in_next_release",
                Some(r#"{"resolved_release":"1.0"}"#),
                0
            ),
            "Resolved in the release after 1.0"
        );
    }
}
