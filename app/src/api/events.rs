//! Events through Sentry's Web API: an issue's events (`/issues/{id}/events/`, `latest`,
//! `oldest`, one by id), a project's events, and one event by id with its `groupID`. The
//! stored normalized payload is turned into Sentry's API shape: `entries` (exception with
//! camelCase frames and `context` line pairs, message, breadcrumbs, request, threads),
//! `tags` as `{key, value}`, `dateCreated`, neighbours in the issue.

use actix_web::{HttpRequest, HttpResponse, web};
use sea_orm::Value;
use serde_json::{Map, Value as Json, json};

use super::auth::Scope;
use super::pagination::{self, Cursor};
use super::{ApiAuth, ApiError, ApiResult, iso, issues, query_all, query_one};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource([
            "/issues/{id}/events",
            "/organizations/{org}/issues/{id}/events",
        ])
        .route(web::get().to(issue_events)),
    )
    .service(
        web::resource([
            "/issues/{id}/events/{event}",
            "/organizations/{org}/issues/{id}/events/{event}",
        ])
        .route(web::get().to(issue_event)),
    )
    .service(web::resource("/projects/{org}/{project}/events").route(web::get().to(project_events)))
    .service(
        web::resource("/projects/{org}/{project}/events/{event}")
            .route(web::get().to(project_event)),
    );
}

const EVENT_COLUMNS: &str = "e.id, e.project_id, e.issue_id, e.event_id, e.timestamp, e.received, \
     e.level, e.release, e.environment, e.platform, e.title, e.culprit, e.payload";

/// The stored payload, decompressed and parsed.
fn payload_of(row: &sea_orm::QueryResult) -> ApiResult<Json> {
    let payload: Vec<u8> = row.try_get("", "payload")?;
    let json = zstd::decode_all(&payload[..]).map_err(ApiError::internal)?;
    serde_json::from_slice(&json).map_err(ApiError::internal)
}

/// The event's tags as Sentry's `[{key, value}]`: its own and the ones derived from it
/// (level, release, environment, user, ...), exactly those the worker indexed.
fn tags_of(payload: &Json) -> Vec<Json> {
    match serde_json::from_value::<faultline_core::protocol::event::Event>(payload.clone()) {
        Ok(event) => faultline_worker::tags::event_tags(&event)
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
        Err(_) => vec![],
    }
}

/// A frame in the API's shape (camelCase, `context` as `[line number, text]` pairs).
fn frame_json(f: &Json) -> Json {
    let get = |k: &str| f.get(k).cloned().unwrap_or(Json::Null);
    let lineno = f.get("lineno").and_then(Json::as_i64);
    let mut context: Vec<Json> = Vec::new();
    if let Some(line) = lineno {
        let pre: Vec<&Json> = f
            .get("pre_context")
            .and_then(Json::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        for (i, l) in pre.iter().enumerate() {
            context.push(json!([line - (pre.len() - i) as i64, l]));
        }
        if let Some(l) = f.get("context_line") {
            context.push(json!([line, l]));
        }
        if let Some(post) = f.get("post_context").and_then(Json::as_array) {
            for (i, l) in post.iter().enumerate() {
                context.push(json!([line + 1 + i as i64, l]));
            }
        }
    }
    json!({
        "filename": get("filename"),
        "absPath": get("abs_path"),
        "module": get("module"),
        "package": get("package"),
        "platform": get("platform"),
        "function": get("function"),
        "rawFunction": get("raw_function"),
        "symbol": get("symbol"),
        "lineNo": get("lineno"),
        "colNo": get("colno"),
        "inApp": f.get("in_app").and_then(Json::as_bool).unwrap_or(false),
        "context": context,
        "vars": get("vars"),
        "instructionAddr": get("instruction_addr"),
        "symbolAddr": get("symbol_addr"),
        "imageAddr": get("image_addr"),
        "data": get("data"),
    })
}

fn stacktrace_json(st: Option<&Json>) -> Json {
    match st {
        Some(st) if st.is_object() => json!({
            "frames": st.get("frames").and_then(Json::as_array).map(|fs| fs.iter().map(frame_json).collect::<Vec<_>>()).unwrap_or_default(),
            "framesOmitted": st.get("frames_omitted").cloned().unwrap_or(Json::Null),
            "registers": st.get("registers").cloned().unwrap_or(Json::Null),
            "hasSystemFrames": st.get("frames").and_then(Json::as_array).is_some_and(|fs| fs.iter().any(|f| f.get("in_app").and_then(Json::as_bool) != Some(true))),
        }),
        _ => Json::Null,
    }
}

fn values(payload: &Json, key: &str) -> Vec<Json> {
    match payload.get(key) {
        Some(Json::Object(m)) => m
            .get("values")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default(),
        Some(Json::Array(a)) => a.clone(),
        _ => vec![],
    }
}

/// Sentry's `entries`: the event's interfaces in display order.
fn entries(payload: &Json) -> Vec<Json> {
    let mut out = Vec::new();
    let exceptions = values(payload, "exception");
    if !exceptions.is_empty() {
        let vals: Vec<Json> = exceptions
            .iter()
            .map(|e| {
                json!({
                    "type": e.get("type").cloned().unwrap_or(Json::Null),
                    "value": e.get("value").cloned().unwrap_or(Json::Null),
                    "module": e.get("module").cloned().unwrap_or(Json::Null),
                    "mechanism": e.get("mechanism").cloned().unwrap_or(Json::Null),
                    "threadId": e.get("thread_id").cloned().unwrap_or(Json::Null),
                    "stacktrace": stacktrace_json(e.get("stacktrace")),
                    "rawStacktrace": stacktrace_json(e.get("raw_stacktrace")),
                })
            })
            .collect();
        let has_system = vals
            .iter()
            .any(|v| v["stacktrace"]["hasSystemFrames"] == json!(true));
        out.push(json!({"type": "exception", "data": {"values": vals, "excOmitted": null, "hasSystemFrames": has_system}}));
    }
    if let Some(st) = payload.get("stacktrace").filter(|s| s.is_object()) {
        out.push(json!({"type": "stacktrace", "data": stacktrace_json(Some(st))}));
    }
    let threads = values(payload, "threads");
    if !threads.is_empty() {
        let vals: Vec<Json> = threads
            .iter()
            .map(|t| {
                json!({
                    "id": t.get("id").cloned().unwrap_or(Json::Null),
                    "name": t.get("name").cloned().unwrap_or(Json::Null),
                    "crashed": t.get("crashed").cloned().unwrap_or(Json::Null),
                    "current": t.get("current").cloned().unwrap_or(Json::Null),
                    "stacktrace": stacktrace_json(t.get("stacktrace")),
                })
            })
            .collect();
        out.push(json!({"type": "threads", "data": {"values": vals}}));
    }
    if let Some(m) = payload.get("logentry").filter(|m| m.is_object()) {
        let formatted = m
            .get("formatted")
            .or_else(|| m.get("message"))
            .cloned()
            .unwrap_or(Json::Null);
        out.push(json!({"type": "message", "data": {"formatted": formatted, "message": m.get("message").cloned().unwrap_or(Json::Null), "params": m.get("params").cloned().unwrap_or(Json::Null)}}));
    }
    let crumbs = values(payload, "breadcrumbs");
    if !crumbs.is_empty() {
        out.push(json!({"type": "breadcrumbs", "data": {"values": crumbs}}));
    }
    if let Some(r) = payload.get("request").filter(|r| r.is_object()) {
        out.push(json!({"type": "request", "data": {
            "url": r.get("url"), "method": r.get("method"), "query": r.get("query_string"),
            "fragment": r.get("fragment"), "data": r.get("data"), "headers": r.get("headers"),
            "cookies": r.get("cookies"), "env": r.get("env"), "inferredContentType": null,
        }}));
    }
    out
}

/// The message of an event: its log entry, else its first exception's value.
fn message_of(payload: &Json) -> Json {
    payload
        .get("logentry")
        .and_then(|m| m.get("formatted").or_else(|| m.get("message")))
        .cloned()
        .or_else(|| payload.get("message").filter(|m| m.is_string()).cloned())
        .unwrap_or_else(|| json!(""))
}

/// An event in the list shape (`/issues/{id}/events/` without `full`).
fn event_summary(row: &sea_orm::QueryResult, payload: &Json) -> ApiResult<Json> {
    let event_id: String = row.try_get("", "event_id")?;
    Ok(json!({
        "id": event_id,
        "eventID": event_id,
        "groupID": row.try_get::<i64>("", "issue_id")?.to_string(),
        "projectID": row.try_get::<i64>("", "project_id")?.to_string(),
        "title": row.try_get::<String>("", "title")?,
        "culprit": row.try_get::<Option<String>>("", "culprit")?,
        "location": row.try_get::<Option<String>>("", "culprit")?,
        "message": message_of(payload),
        "platform": row.try_get::<Option<String>>("", "platform")?,
        "event.type": if values(payload, "exception").is_empty() { "default" } else { "error" },
        "dateCreated": iso(row.try_get("", "timestamp")?),
        "dateReceived": iso(row.try_get("", "received")?),
        "user": payload.get("user").cloned().unwrap_or(Json::Null),
        "tags": tags_of(payload),
    }))
}

/// An event in full: the summary plus interfaces, contexts, SDK and neighbours.
async fn event_full(auth: &ApiAuth, row: &sea_orm::QueryResult) -> ApiResult<Json> {
    let payload = payload_of(row)?;
    let mut out = event_summary(row, &payload)?;
    let issue_id: i64 = row.try_get("", "issue_id")?;
    let ts: i64 = row.try_get("", "timestamp")?;
    let id: i64 = row.try_get("", "id")?;
    let neighbour = |older: bool| {
        let (cmp, order) = if older { ("<", "DESC") } else { (">", "ASC") };
        format!(
            "SELECT event_id FROM events WHERE issue_id = ? AND (timestamp {cmp} ? OR (timestamp = ? AND id {cmp} ?)) \
             ORDER BY timestamp {order}, id {order} LIMIT 1"
        )
    };
    let mut near = Vec::new();
    for older in [true, false] {
        let r = query_one(
            auth.db(),
            &neighbour(older),
            vec![issue_id.into(), ts.into(), ts.into(), id.into()],
        )
        .await?;
        near.push(r.map(|r| r.try_get::<String>("", "event_id")).transpose()?);
    }
    let release: Option<String> = row.try_get("", "release")?;
    let extra = Map::from_iter([
        ("entries".to_string(), json!(entries(&payload))),
        (
            "type".to_string(),
            json!(if values(&payload, "exception").is_empty() {
                "default"
            } else {
                "error"
            }),
        ),
        (
            "metadata".to_string(),
            json!({
                "type": values(&payload, "exception").last().and_then(|e| e.get("type").cloned()),
                "value": values(&payload, "exception").last().and_then(|e| e.get("value").cloned()),
                "title": payload.get("title"),
            }),
        ),
        (
            "contexts".to_string(),
            payload
                .get("contexts")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
        (
            "context".to_string(),
            payload.get("extra").cloned().unwrap_or_else(|| json!({})),
        ),
        (
            "sdk".to_string(),
            payload.get("sdk").cloned().unwrap_or(Json::Null),
        ),
        (
            "packages".to_string(),
            payload.get("modules").cloned().unwrap_or_else(|| json!({})),
        ),
        (
            "fingerprints".to_string(),
            json!(issue_hashes(auth, issue_id).await?),
        ),
        (
            "release".to_string(),
            release
                .map(|v| json!({"version": v, "shortVersion": v}))
                .unwrap_or(Json::Null),
        ),
        (
            "dist".to_string(),
            payload.get("dist").cloned().unwrap_or(Json::Null),
        ),
        (
            "environment".to_string(),
            row.try_get::<Option<String>>("", "environment")?
                .map(Json::from)
                .unwrap_or(Json::Null),
        ),
        (
            "level".to_string(),
            json!(row.try_get::<String>("", "level")?),
        ),
        (
            "errors".to_string(),
            payload.get("errors").cloned().unwrap_or_else(|| json!([])),
        ),
        ("size".to_string(), json!(payload.to_string().len())),
        ("previousEventID".to_string(), json!(near[0])),
        ("nextEventID".to_string(), json!(near[1])),
        ("_meta".to_string(), json!({})),
        ("crashFile".to_string(), Json::Null),
        ("occurrence".to_string(), Json::Null),
        ("userReport".to_string(), Json::Null),
        ("sdkUpdates".to_string(), json!([])),
        ("resolvedWith".to_string(), json!([])),
    ]);
    if let Json::Object(o) = &mut out {
        o.extend(extra);
    }
    Ok(out)
}

async fn issue_hashes(auth: &ApiAuth, issue_id: i64) -> ApiResult<Vec<String>> {
    query_all(
        auth.db(),
        "SELECT hash FROM issue_hashes WHERE issue_id = ? ORDER BY id",
        vec![issue_id.into()],
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "hash").map_err(ApiError::from))
    .collect()
}

/// The newest event of an issue in full, or null when it has none left.
pub async fn latest_event_json(auth: &ApiAuth, issue_id: i64) -> ApiResult<Json> {
    let row = query_one(
        auth.db(),
        &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.issue_id = ? ORDER BY e.timestamp DESC, e.id DESC LIMIT 1"),
        vec![issue_id.into()],
    )
    .await?;
    match row {
        Some(r) => event_full(auth, &r).await,
        None => Ok(Json::Null),
    }
}

/// The stored event with row id `id` of the issue `issue_id`, as Sentry's event JSON
/// (`Json::Null` when there is none).
pub async fn event_json_by_row(auth: &ApiAuth, issue_id: i64, id: i64) -> ApiResult<Json> {
    let row = query_one(
        auth.db(),
        &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.id = ? AND e.issue_id = ?"),
        vec![id.into(), issue_id.into()],
    )
    .await?;
    match row {
        Some(r) => event_full(auth, &r).await,
        None => Ok(Json::Null),
    }
}

fn wants_full(req: &HttpRequest) -> bool {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "full" && (v == "1" || v == "true"))
}

/// A page of events matching `condition`, newest first.
async fn event_page(
    auth: &ApiAuth,
    req: &HttpRequest,
    condition: &str,
    values: Vec<Value>,
) -> ApiResult<HttpResponse> {
    let mut cursor = None;
    let mut limit = 100;
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "cursor" => cursor = Cursor::parse(&v)?,
            "per_page" | "limit" => limit = pagination::per_page(Some(&v))?,
            _ => {}
        }
    }
    let full = wants_full(req);
    let page = pagination::page_query(cursor, "e.timestamp", "e.id", limit);
    let mut all = values;
    all.extend(page.values);
    let rows = query_all(
        auth.db(),
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE {condition}{} ORDER BY {} LIMIT {} OFFSET {}",
            page.condition, page.order_by, page.fetch, page.offset
        ),
        all,
    )
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let j = if full {
            event_full(auth, row).await?
        } else {
            event_summary(row, &payload_of(row)?)?
        };
        items.push((row.try_get::<i64>("", "timestamp")?, j));
    }
    let page = pagination::finish_page(items, cursor, limit);
    Ok(HttpResponse::Ok()
        .insert_header(("Link", pagination::link_header(req, &page)))
        .json(&page.items))
}

async fn issue_events(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let (issue, _) = issues::issue_row(&auth, &id, req.match_info().get("org")).await?;
    let issue_id = issue.id;
    event_page(&auth, &req, "e.issue_id = ?", vec![issue_id.into()]).await
}

/// `latest`, `oldest`, `recommended` (= latest) or an event id, within an issue.
async fn issue_event(auth: ApiAuth, req: HttpRequest) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    let which = req
        .match_info()
        .get("event")
        .unwrap_or_default()
        .to_string();
    let (issue, _) = issues::issue_row(&auth, &id, req.match_info().get("org")).await?;
    let issue_id = issue.id;
    let (cond, order, values): (&str, &str, Vec<Value>) = match which.as_str() {
        "latest" | "recommended" => ("e.issue_id = ?", "DESC", vec![issue_id.into()]),
        "oldest" => ("e.issue_id = ?", "ASC", vec![issue_id.into()]),
        other => (
            "e.issue_id = ? AND e.event_id = ?",
            "DESC",
            vec![issue_id.into(), normalize_event_id(other)?.into()],
        ),
    };
    let row = query_one(
        auth.db(),
        &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE {cond} ORDER BY e.timestamp {order}, e.id {order} LIMIT 1"),
        values,
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("event `{which}` not found")))?;
    Ok(HttpResponse::Ok().json(event_full(&auth, &row).await?))
}

/// Event ids are stored as 32 lowercase hex digits; accept the hyphenated form too.
fn normalize_event_id(s: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.simple().to_string())
        .map_err(|_| ApiError::not_found(format!("event `{s}` not found")))
}

async fn project_events(
    auth: ApiAuth,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (org, project) = path.into_inner();
    let org = auth.organization(&org).await?;
    let (project_id, _) = super::releases::project_by_slug(auth.db(), &org, &project).await?;
    event_page(&auth, &req, "e.project_id = ?", vec![project_id.into()]).await
}

async fn project_event(
    auth: ApiAuth,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::EventRead)?;
    let (org, project, event) = path.into_inner();
    let org = auth.organization(&org).await?;
    let (project_id, _) = super::releases::project_by_slug(auth.db(), &org, &project).await?;
    let row = query_one(
        auth.db(),
        &format!("SELECT {EVENT_COLUMNS} FROM events e WHERE e.project_id = ? AND e.event_id = ?"),
        vec![project_id.into(), normalize_event_id(&event)?.into()],
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("event `{event}` not found")))?;
    Ok(HttpResponse::Ok().json(event_full(&auth, &row).await?))
}
