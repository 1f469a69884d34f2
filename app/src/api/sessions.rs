//! Release health through Sentry's Web API: `GET /api/0/organizations/{org}/sessions/`
//! (PROTOCOL.md §9.2) for `sum(session)`, `count_unique(user)`, `crash_free_rate(session)`
//! and `crash_free_rate(user)`, grouped by `project`, `release`, `environment` and/or
//! `session.status`. Parses the parameters, checks the token, asks `core::health`, writes
//! Sentry's JSON (`start`, `end`, `query`, `intervals`, `groups[{by, totals, series}]`).

use actix_web::{HttpRequest, HttpResponse, web};
use faultline_core::health::{self, Counts, GroupBy, HOUR_MS, Query, STATUS_GROUPS};
use serde_json::{Map, Value as Json, json};

use super::auth::Scope;
use super::{ApiAuth, ApiError, ApiResult, query_all};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource([
            "/organizations/{org}/sessions",
            "/organizations/{org}/sessions/",
        ])
        .route(web::get().to(org_sessions)),
    );
}

/// The fields this server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    SumSession,
    CountUniqueUser,
    CrashFreeSession,
    CrashFreeUser,
}

impl Field {
    fn parse(s: &str) -> ApiResult<Field> {
        Ok(match s {
            "sum(session)" => Field::SumSession,
            "count_unique(user)" => Field::CountUniqueUser,
            "crash_free_rate(session)" => Field::CrashFreeSession,
            "crash_free_rate(user)" => Field::CrashFreeUser,
            other => return Err(ApiError::bad_request(format!("Invalid field: \"{other}\""))),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::SumSession => "sum(session)",
            Field::CountUniqueUser => "count_unique(user)",
            Field::CrashFreeSession => "crash_free_rate(session)",
            Field::CrashFreeUser => "crash_free_rate(user)",
        }
    }

    fn is_rate(self) -> bool {
        matches!(self, Field::CrashFreeSession | Field::CrashFreeUser)
    }

    /// The value for counts restricted to `states` (a `session.status` group) or all.
    fn value(
        self,
        c: &Counts,
        states: Option<&[faultline_core::protocol::session::Health]>,
    ) -> Json {
        let pick = |arr: &[i64; 5]| -> i64 {
            match states {
                Some(states) => states.iter().map(|h| arr[h.index()]).sum(),
                None => arr.iter().sum(),
            }
        };
        match self {
            Field::SumSession => json!(pick(&c.sessions)),
            Field::CountUniqueUser => json!(pick(&c.users)),
            Field::CrashFreeSession => rate_json(c.crash_free_sessions()),
            Field::CrashFreeUser => rate_json(c.crash_free_users()),
        }
    }
}

fn rate_json(r: Option<f64>) -> Json {
    r.filter(|v| v.is_finite()).map_or(Json::Null, |v| json!(v))
}

/// The most data points (intervals) one answer may have, as Sentry.
const MAX_POINTS: i64 = 1000;

/// The request, parsed.
#[derive(Debug)]
struct Params {
    fields: Vec<Field>,
    group_by: Vec<GroupBy>,
    start_ms: i64,
    end_ms: i64,
    interval_ms: i64,
    projects: Vec<i64>,
    environments: Vec<String>,
    releases: Vec<String>,
    query: String,
}

/// `24h`, `14d`, `90m`, `2w`, `30s` as milliseconds.
fn duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => HOUR_MS,
        "d" => 24 * HOUR_MS,
        "w" => 7 * 24 * HOUR_MS,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|v| *v > 0)
}

fn time_ms(s: &str) -> ApiResult<i64> {
    faultline_core::protocol::event::parse_timestamp(&Json::String(s.to_string()))
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| ApiError::bad_request(format!("Invalid date: \"{s}\"")))
}

/// `release:X`, `release:"X Y"`, `release:[a,b]`, `environment:X` terms; `OR`/`AND`
/// between terms of one key widen the list. Other keys: 400, as Sentry's sessions backend.
fn parse_query(
    q: &str,
    releases: &mut Vec<String>,
    environments: &mut Vec<String>,
) -> ApiResult<()> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    for t in tokens {
        if t.eq_ignore_ascii_case("or") || t.eq_ignore_ascii_case("and") {
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            return Err(ApiError::bad_request(format!(
                "Invalid query field: \"{t}\""
            )));
        };
        let values: Vec<String> = match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            Some(list) => list.split(',').map(|v| v.trim().to_string()).collect(),
            None => vec![value.to_string()],
        };
        match key {
            "release" => releases.extend(values),
            "environment" => environments.extend(values),
            other => {
                return Err(ApiError::bad_request(format!(
                    "Invalid query field: \"{other}\""
                )));
            }
        }
    }
    Ok(())
}

fn parse(pairs: &[(String, String)], now_ms: i64) -> ApiResult<(Params, Vec<String>)> {
    let mut fields = Vec::new();
    let mut group_by = Vec::new();
    let (mut start, mut end, mut period, mut interval) = (None, None, None, None);
    let mut project_params = Vec::new();
    let mut environments = Vec::new();
    let mut releases = Vec::new();
    let mut query = String::new();
    for (k, v) in pairs {
        match k.as_str() {
            "field" => fields.push(Field::parse(v)?),
            "groupBy" => group_by.push(match v.as_str() {
                "project" => GroupBy::Project,
                "release" => GroupBy::Release,
                "environment" => GroupBy::Environment,
                "session.status" => GroupBy::Status,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid groupBy: \"{other}\""
                    )));
                }
            }),
            "start" => start = Some(time_ms(v)?),
            "end" => end = Some(time_ms(v)?),
            "statsPeriod" => {
                period = Some(duration_ms(v).ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid statsPeriod: \"{v}\""))
                })?)
            }
            "interval" => {
                interval =
                    Some(duration_ms(v).ok_or_else(|| {
                        ApiError::bad_request(format!("Invalid interval: \"{v}\""))
                    })?)
            }
            "project" => project_params.push(v.clone()),
            "environment" => environments.push(v.clone()),
            "query" => {
                query = v.clone();
                parse_query(v, &mut releases, &mut environments)?;
            }
            _ => {}
        }
    }
    if fields.is_empty() {
        return Err(ApiError::bad_request("Request is missing a \"field\""));
    }
    if group_by.contains(&GroupBy::Status)
        && let Some(f) = fields.iter().find(|f| f.is_rate())
    {
        return Err(ApiError::bad_request(format!(
            "Cannot group field {} by session.status",
            f.name()
        )));
    }
    let interval = interval.unwrap_or(HOUR_MS);
    if interval % HOUR_MS != 0 {
        return Err(ApiError::bad_request(
            "The interval has to be a multiple of the minimum interval of one hour.",
        ));
    }
    if interval > 24 * HOUR_MS || (24 * HOUR_MS) % interval != 0 {
        return Err(ApiError::bad_request(
            "The interval should divide one day without a remainder.",
        ));
    }
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (None, None) => {
            let period = period.unwrap_or(90 * 24 * HOUR_MS);
            (now_ms - period, now_ms)
        }
        _ => {
            return Err(ApiError::bad_request(
                "start and end must be given together",
            ));
        }
    };
    if end <= start {
        return Err(ApiError::bad_request("end must be after start"));
    }
    // Aligned on the interval, as Sentry: the first interval holds `start`, the last `end`.
    let start_ms = start.div_euclid(interval) * interval;
    let end_ms = (end + interval - 1).div_euclid(interval) * interval;
    if (end_ms - start_ms) / interval > MAX_POINTS {
        return Err(ApiError::bad_request(
            "Your interval and date range would create too many results. Use a larger interval, or a smaller date range.",
        ));
    }
    Ok((
        Params {
            fields,
            group_by,
            start_ms,
            end_ms,
            interval_ms: interval,
            projects: Vec::new(),
            environments,
            releases,
            query,
        },
        project_params,
    ))
}

/// Sentry's interval timestamps: `2026-01-01T10:00:00Z`.
fn sentry_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn org_sessions(
    auth: ApiAuth,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    auth.require(Scope::OrgRead)?;
    let org = auth.organization(&path.into_inner()).await?;
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?
        .into_inner();
    let now = chrono::Utc::now().timestamp_millis();
    let (mut params, project_params) = parse(&pairs, now)?;
    // The organization's projects; asking for one that is not among them is refused, as
    // Sentry does, rather than silently answering about fewer projects.
    let org_projects: Vec<i64> = query_all(
        auth.db(),
        "SELECT id FROM projects WHERE organization_id = ? ORDER BY id",
        vec![org.id.into()],
    )
    .await?
    .iter()
    .filter_map(|r| r.try_get::<i64>("", "id").ok())
    .collect();
    let mut wanted = Vec::new();
    for p in &project_params {
        let id: i64 = p
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid project: \"{p}\"")))?;
        if id == -1 {
            wanted.clear();
            wanted.extend(&org_projects);
            break;
        }
        if !org_projects.contains(&id) {
            return Err(ApiError::forbidden(
                "You do not have permission to perform this action.",
            ));
        }
        wanted.push(id);
    }
    params.projects = if wanted.is_empty() {
        org_projects
    } else {
        wanted
    };
    Ok(HttpResponse::Ok().json(answer(&auth, &params).await?))
}

async fn answer(auth: &ApiAuth, p: &Params) -> ApiResult<Json> {
    let q = Query {
        projects: p.projects.clone(),
        start_ms: p.start_ms,
        end_ms: p.end_ms,
        interval_ms: p.interval_ms,
        environments: p.environments.clone(),
        releases: p.releases.clone(),
        by_project: p.group_by.contains(&GroupBy::Project),
        by_release: p.group_by.contains(&GroupBy::Release),
        by_environment: p.group_by.contains(&GroupBy::Environment),
        with_users: p
            .fields
            .iter()
            .any(|f| matches!(f, Field::CountUniqueUser | Field::CrashFreeUser)),
    };
    let mut groups = health::query(auth.db(), &q).await?;
    let slots = q.slots();
    // Without any other grouping there is always exactly one group, data or not.
    if groups.is_empty() && !q.by_project && !q.by_release && !q.by_environment {
        groups.push(health::Group {
            key: (None, None, None),
            totals: Counts::default(),
            series: vec![Counts::default(); slots],
        });
    }
    let by_status = p.group_by.contains(&GroupBy::Status);
    let mut out = Vec::new();
    for g in &groups {
        let mut by = Map::new();
        for gb in &p.group_by {
            match gb {
                GroupBy::Project => {
                    by.insert("project".into(), json!(g.key.0));
                }
                GroupBy::Release => {
                    by.insert("release".into(), json!(g.key.1));
                }
                GroupBy::Environment => {
                    by.insert("environment".into(), json!(g.key.2));
                }
                GroupBy::Status => {}
            }
        }
        let statuses: Vec<(
            Option<&str>,
            Option<&[faultline_core::protocol::session::Health]>,
        )> = if by_status {
            STATUS_GROUPS
                .iter()
                .map(|(name, states)| (Some(*name), Some(*states)))
                .collect()
        } else {
            vec![(None, None)]
        };
        for (status, states) in statuses {
            let mut by = by.clone();
            if let Some(s) = status {
                by.insert("session.status".into(), json!(s));
            }
            let mut totals = Map::new();
            let mut series = Map::new();
            for f in &p.fields {
                totals.insert(f.name().into(), f.value(&g.totals, states));
                series.insert(
                    f.name().into(),
                    Json::Array(g.series.iter().map(|c| f.value(c, states)).collect()),
                );
            }
            out.push(json!({"by": by, "totals": totals, "series": series}));
        }
    }
    let intervals: Vec<String> = (0..slots)
        .map(|i| sentry_time(p.start_ms + i as i64 * p.interval_ms))
        .collect();
    Ok(json!({
        "start": sentry_time(p.start_ms),
        "end": sentry_time(p.end_ms),
        "query": p.query,
        "intervals": intervals,
        "groups": out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_as_sentry_does() {
        let now = 100 * 24 * HOUR_MS + 1234;
        let bad = [
            (vec![], "Request is missing a \"field\""),
            (vec![("field", "sum(sessions)")], "Invalid field"),
            (
                vec![("field", "sum(session)"), ("groupBy", "user")],
                "Invalid groupBy",
            ),
            (
                vec![
                    ("field", "crash_free_rate(session)"),
                    ("groupBy", "session.status"),
                ],
                "Cannot group field crash_free_rate(session) by session.status",
            ),
            (
                vec![("field", "sum(session)"), ("interval", "30m")],
                "multiple of",
            ),
            (
                vec![("field", "sum(session)"), ("interval", "5h")],
                "divide one day",
            ),
            (
                vec![("field", "sum(session)"), ("statsPeriod", "forever")],
                "Invalid statsPeriod",
            ),
            (
                vec![("field", "sum(session)"), ("statsPeriod", "90d")],
                "too many results",
            ),
            (
                vec![("field", "sum(session)"), ("query", "user:x")],
                "Invalid query field",
            ),
            (
                vec![
                    ("field", "sum(session)"),
                    ("start", "yesterday"),
                    ("end", "now"),
                ],
                "Invalid date",
            ),
        ];
        for (q, why) in bad {
            let e = parse(&pairs(&q), now).expect_err(why);
            assert!(e.detail.contains(why), "{q:?}: {}", e.detail);
            assert_eq!(e.status.as_u16(), 400);
        }
        let (p, _) = parse(
            &pairs(&[
                ("field", "sum(session)"),
                ("statsPeriod", "24h"),
                ("interval", "1d"),
                (
                    "query",
                    "release:\"app@1.0 beta\" OR release:[a,b] environment:prod",
                ),
            ]),
            now,
        )
        .expect("valid");
        assert_eq!(p.releases, vec!["app@1.0 beta", "a", "b"]);
        assert_eq!(p.environments, vec!["prod"]);
        assert_eq!(p.start_ms % (24 * HOUR_MS), 0);
        assert!(p.end_ms >= now);
        assert_eq!(sentry_time(0), "1970-01-01T00:00:00Z");
    }
}
