//! Release health read back: sessions and users per release and environment over a time
//! range, in series of fixed intervals — what the sessions Web API, the releases pages
//! and the project page show. The worker writes the tables (`worker::sessions`).
//!
//! Sessions come from the hourly counters (`session_counts`); users are counted exactly
//! from `session_users` (one row per user and hour): a user's state over a range is the
//! worst of their hours, and a user active in several hours counts once.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{ConnectionTrait, DbErr, Value};

use crate::protocol::session::Health;
use crate::sql::{in_ids, in_list, query_all};

/// The finest interval stored: an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// What a group is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Project,
    Release,
    Environment,
    /// `session.status`: healthy, errored, crashed, abnormal (Sentry's four).
    Status,
}

/// Sentry's `session.status` values, and which stored states each covers (`errored`
/// includes `unhandled`, as in the crash-free rates).
pub const STATUS_GROUPS: [(&str, &[Health]); 4] = [
    ("healthy", &[Health::Healthy]),
    ("errored", &[Health::Errored, Health::Unhandled]),
    ("crashed", &[Health::Crashed]),
    ("abnormal", &[Health::Abnormal]),
];

/// A question: which projects, which time range in which steps, which filters.
#[derive(Debug, Clone)]
pub struct Query {
    pub projects: Vec<i64>,
    /// Inclusive, Unix ms, on an hour.
    pub start_ms: i64,
    /// Exclusive, Unix ms.
    pub end_ms: i64,
    /// A multiple of an hour.
    pub interval_ms: i64,
    pub environments: Vec<String>,
    pub releases: Vec<String>,
    /// By project, release and/or environment (status splits are made from the counts).
    pub by_project: bool,
    pub by_release: bool,
    pub by_environment: bool,
    pub with_users: bool,
}

/// Sessions and users per stored state ([`Health`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sessions: [i64; 5],
    pub users: [i64; 5],
}

impl Counts {
    pub fn total_sessions(&self) -> i64 {
        self.sessions.iter().sum()
    }
    pub fn total_users(&self) -> i64 {
        self.users.iter().sum()
    }
    pub fn crashed_sessions(&self) -> i64 {
        self.sessions[Health::Crashed.index()]
    }
    pub fn crashed_users(&self) -> i64 {
        self.users[Health::Crashed.index()]
    }
    /// Errored in Sentry's sense (unhandled included), crashed and abnormal apart.
    pub fn errored_sessions(&self) -> i64 {
        self.sessions[Health::Errored.index()] + self.sessions[Health::Unhandled.index()]
    }
    pub fn unhandled_sessions(&self) -> i64 {
        self.sessions[Health::Unhandled.index()]
    }
    /// `1 - crashed / total`, `None` without sessions.
    pub fn crash_free_sessions(&self) -> Option<f64> {
        rate(self.crashed_sessions(), self.total_sessions())
    }
    pub fn crash_free_users(&self) -> Option<f64> {
        rate(self.crashed_users(), self.total_users())
    }
    fn add_sessions(&mut self, other: &[i64; 5]) {
        for (a, b) in self.sessions.iter_mut().zip(other) {
            *a += b;
        }
    }
}

fn rate(crashed: i64, total: i64) -> Option<f64> {
    (total > 0).then(|| 1.0 - crashed as f64 / total as f64)
}

/// The key of a group: project, release, environment (`None` where not grouped by it).
pub type GroupKey = (Option<i64>, Option<String>, Option<String>);

/// One group's totals over the range and its series (one entry per interval).
#[derive(Debug, Clone)]
pub struct Group {
    pub key: GroupKey,
    pub totals: Counts,
    pub series: Vec<Counts>,
}

impl Query {
    /// How many intervals the range has.
    pub fn slots(&self) -> usize {
        let span = (self.end_ms - self.start_ms).max(0);
        ((span + self.interval_ms - 1) / self.interval_ms.max(1)) as usize
    }

    fn key(&self, project: i64, release: &str, environment: &str) -> GroupKey {
        (
            self.by_project.then_some(project),
            self.by_release.then(|| release.to_string()),
            self.by_environment.then(|| environment.to_string()),
        )
    }

    /// `WHERE` conditions and values shared by both tables.
    fn filter(&self, db: &impl ConnectionTrait) -> (String, Vec<Value>) {
        let backend = db.get_database_backend();
        let (projects, mut values) = in_ids(backend, "project_id", &self.projects);
        let mut sql = format!("{projects} AND bucket >= ? AND bucket < ?");
        values.push(self.start_ms.into());
        values.push(self.end_ms.into());
        for (column, list) in [
            ("environment", &self.environments),
            ("release", &self.releases),
        ] {
            if !list.is_empty() {
                let (cond, vals) = in_list(
                    backend,
                    column,
                    sea_orm::sea_query::ArrayType::String,
                    list.iter().map(|s| Value::from(s.clone())).collect(),
                );
                sql.push_str(" AND ");
                sql.push_str(&cond);
                values.extend(vals);
            }
        }
        (sql, values)
    }

    fn slot(&self, bucket: i64) -> Option<usize> {
        let slot = ((bucket - self.start_ms) / self.interval_ms.max(1)) as usize;
        (bucket >= self.start_ms && slot < self.slots()).then_some(slot)
    }
}

/// Runs a query: groups in key order (no group for keys without any session or user).
pub async fn query(db: &impl ConnectionTrait, q: &Query) -> Result<Vec<Group>, DbErr> {
    if q.projects.is_empty() {
        return Ok(Vec::new());
    }
    let slots = q.slots();
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let new_group = |key: GroupKey| Group {
        key,
        totals: Counts::default(),
        series: vec![Counts::default(); slots],
    };
    let (filter, values) = q.filter(db);
    let rows = query_all(
        db,
        &format!(
            "SELECT project_id, release, environment, bucket, \
             CAST(SUM(healthy) AS BIGINT) AS s0, CAST(SUM(errored) AS BIGINT) AS s1, \
             CAST(SUM(unhandled) AS BIGINT) AS s2, CAST(SUM(abnormal) AS BIGINT) AS s3, \
             CAST(SUM(crashed) AS BIGINT) AS s4 \
             FROM session_counts WHERE {filter} GROUP BY project_id, release, environment, bucket"
        ),
        values.clone(),
    )
    .await?;
    for row in rows {
        let project: i64 = row.try_get("", "project_id")?;
        let release: String = row.try_get("", "release")?;
        let environment: String = row.try_get("", "environment")?;
        let bucket: i64 = row.try_get("", "bucket")?;
        let mut s = [0i64; 5];
        for (i, v) in s.iter_mut().enumerate() {
            *v = sum(&row, &format!("s{i}"))?;
        }
        if s.iter().all(|n| *n == 0) {
            continue;
        }
        let key = q.key(project, &release, &environment);
        let g = groups.entry(key.clone()).or_insert_with(|| new_group(key));
        g.totals.add_sessions(&s);
        if let Some(slot) = q.slot(bucket) {
            g.series[slot].add_sessions(&s);
        }
    }
    if q.with_users {
        // A user's worst state per group over the range, and per group and interval.
        let rows = query_all(
            db,
            &format!(
                "SELECT project_id, release, environment, bucket, did, CAST(status AS BIGINT) AS status \
                 FROM session_users WHERE {filter}"
            ),
            values,
        )
        .await?;
        let mut totals: HashMap<(GroupKey, String), Health> = HashMap::new();
        let mut series: HashMap<(GroupKey, usize, String), Health> = HashMap::new();
        for row in rows {
            let project: i64 = row.try_get("", "project_id")?;
            let release: String = row.try_get("", "release")?;
            let environment: String = row.try_get("", "environment")?;
            let bucket: i64 = row.try_get("", "bucket")?;
            let did: String = row.try_get("", "did")?;
            let health = Health::from_i16(row.try_get::<i64>("", "status")? as i16);
            let key = q.key(project, &release, &environment);
            let t = totals.entry((key.clone(), did.clone())).or_insert(health);
            *t = (*t).max(health);
            if let Some(slot) = q.slot(bucket) {
                let s = series.entry((key, slot, did)).or_insert(health);
                *s = (*s).max(health);
            }
        }
        for ((key, _), h) in totals {
            let g = groups.entry(key.clone()).or_insert_with(|| new_group(key));
            g.totals.users[h.index()] += 1;
        }
        for ((key, slot, _), h) in series {
            let g = groups.entry(key.clone()).or_insert_with(|| new_group(key));
            g.series[slot].users[h.index()] += 1;
        }
    }
    Ok(groups.into_values().collect())
}

/// A `SUM` column (cast to BIGINT: PostgreSQL sums BIGINTs as NUMERIC).
fn sum(row: &sea_orm::QueryResult, column: &str) -> Result<i64, DbErr> {
    Ok(row.try_get::<Option<i64>>("", column)?.unwrap_or(0))
}

/// One release's health in one environment of one project, for the pages.
#[derive(Debug, Clone)]
pub struct ReleaseHealth {
    pub project_id: i64,
    pub release: String,
    pub environment: String,
    pub counts: Counts,
    /// Share of the project's sessions (all releases, this environment) in the last 24 h
    /// that were this release's; `None` when the project had none.
    pub adoption: Option<f64>,
}

/// Health per (project, release, environment) over `[start, end)`, with adoption over the
/// 24 hours before `now`.
pub async fn release_health(
    db: &impl ConnectionTrait,
    projects: &[i64],
    releases: &[String],
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) -> Result<Vec<ReleaseHealth>, DbErr> {
    let q = Query {
        projects: projects.to_vec(),
        start_ms,
        end_ms,
        interval_ms: (end_ms - start_ms).max(HOUR_MS),
        environments: Vec::new(),
        releases: releases.to_vec(),
        by_project: true,
        by_release: true,
        by_environment: true,
        with_users: true,
    };
    let groups = query(db, &q).await?;
    // Adoption: the last 24 h, every release of the project.
    let day = Query {
        releases: Vec::new(),
        start_ms: (now_ms - 24 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS,
        end_ms: now_ms + HOUR_MS,
        interval_ms: 25 * HOUR_MS,
        with_users: false,
        ..q
    };
    let recent = query(db, &day).await?;
    let mut per_project: HashMap<(i64, String), i64> = HashMap::new();
    let mut per_release: HashMap<GroupKey, i64> = HashMap::new();
    for g in &recent {
        let (p, _, e) = &g.key;
        *per_project
            .entry((p.unwrap_or(0), e.clone().unwrap_or_default()))
            .or_default() += g.totals.total_sessions();
        per_release.insert(g.key.clone(), g.totals.total_sessions());
    }
    Ok(groups
        .into_iter()
        .map(|g| {
            let (p, r, e) = g.key.clone();
            let (p, e) = (p.unwrap_or(0), e.unwrap_or_default());
            let project_total = per_project.get(&(p, e.clone())).copied().unwrap_or(0);
            let mine = per_release.get(&g.key).copied().unwrap_or(0);
            ReleaseHealth {
                project_id: p,
                release: r.unwrap_or_default(),
                environment: e,
                counts: g.totals,
                adoption: (project_total > 0).then(|| mine as f64 / project_total as f64),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_sentry() {
        let c = Counts {
            sessions: [6, 1, 1, 0, 2],
            users: [1, 0, 0, 0, 1],
        };
        assert_eq!(c.total_sessions(), 10);
        assert_eq!(c.errored_sessions(), 2);
        assert_eq!(c.crash_free_sessions(), Some(0.8));
        assert_eq!(c.crash_free_users(), Some(0.5));
        assert_eq!(Counts::default().crash_free_sessions(), None);
    }

    #[test]
    fn slots_cover_the_range() {
        let q = Query {
            projects: vec![1],
            start_ms: 0,
            end_ms: 3 * HOUR_MS,
            interval_ms: HOUR_MS,
            environments: vec![],
            releases: vec![],
            by_project: false,
            by_release: false,
            by_environment: false,
            with_users: false,
        };
        assert_eq!(q.slots(), 3);
        assert_eq!(q.slot(2 * HOUR_MS), Some(2));
        assert_eq!(q.slot(3 * HOUR_MS), None);
        assert_eq!(q.slot(-HOUR_MS), None);
    }
}
