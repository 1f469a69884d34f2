//! Storing a batch of prepared events in ONE transaction: dedupe by `event_id`, find or
//! create each issue by its grouping hashes, insert the events, sum the counters per
//! issue and per tag value in memory and write each once, move issue states
//! (regressions, ignored issues waking up), upsert releases.
//!
//! Written as portable SQL for SQLite and PostgreSQL. Concurrency: on SQLite the
//! transaction takes the write lock first, so batches from several workers simply queue;
//! on PostgreSQL the unique `(project_id, hash)` and `(project_id, event_id)` indexes with
//! `ON CONFLICT` make two workers agree on one issue and one event, and counters are
//! incremented in SQL (`x = x + n`), never read-modify-written.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::sea_query::ArrayType;

use faultline_core::entity::now_ms;
use faultline_core::issues::activity;

use crate::sql::{Col, bulk_insert, greatest, in_ids, in_list, least, placeholders, stmt};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
    Value,
};

/// One event ready to store (output of `pipeline::prepare`).
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub project_id: i64,
    pub event_id: String,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub level: String,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub platform: Option<String>,
    pub trace_id: Option<String>,
    pub user_ident: Option<String>,
    pub title: String,
    pub culprit: Option<String>,
    pub exception_type: Option<String>,
    pub exception_value: Option<String>,
    /// Grouping hashes, the primary one first.
    pub hashes: Vec<String>,
    pub tags: Vec<(String, String)>,
    /// zstd-compressed normalized event JSON.
    pub payload: Vec<u8>,
}

/// An issue state change that alerts care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    NewIssue,
    Regression,
    Unignored,
}

/// An issue whose state changed in this batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueNotification {
    pub project_id: i64,
    pub issue_id: i64,
    pub kind: NotificationKind,
}

/// What a stored batch did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub notifications: Vec<IssueNotification>,
}

// Issue statuses and the rules that move them belong to the issue domain; the store
// applies them (re-exported so callers of the store keep one import).
pub use faultline_core::issues::state::{IssueState, NewEvents, Reopening, StatusDetails, status};

/// Stores a batch; all or nothing.
pub async fn store_batch(
    db: &DatabaseConnection,
    events: &[PreparedEvent],
) -> Result<BatchOutcome, DbErr> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    if backend == DbBackend::Sqlite {
        // Take the write lock now: a deferred transaction that reads first and writes later
        // fails at once with SQLITE_BUSY if another writer got in between; this way a second
        // writer waits for the busy timeout instead.
        txn.execute_raw(stmt(
            backend,
            "UPDATE projects SET issue_counter = issue_counter WHERE id = -1",
            vec![],
        ))
        .await?;
    }
    let outcome = store_in(&txn, backend, events).await?;
    txn.commit().await?;
    Ok(outcome)
}

async fn store_in(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    events: &[PreparedEvent],
) -> Result<BatchOutcome, DbErr> {
    let mut outcome = BatchOutcome::default();

    // 1. Repeats inside the batch (the same job delivered twice) count once. Events stored
    //    by an earlier batch are found by the insert below (ON CONFLICT ... RETURNING).
    let mut seen: HashSet<(i64, &str)> = HashSet::with_capacity(events.len());
    let mut fresh: Vec<&PreparedEvent> = Vec::with_capacity(events.len());
    for e in events {
        if seen.insert((e.project_id, e.event_id.as_str())) {
            fresh.push(e);
        } else {
            outcome.duplicates += 1;
        }
    }
    if fresh.is_empty() {
        return Ok(outcome);
    }

    // 2. Which issue each event belongs to: the first of its hashes already known.
    let mut issue_of_hash: HashMap<(i64, String), i64> = HashMap::new();
    {
        let mut hashes_by_project: BTreeMap<i64, HashSet<&str>> = BTreeMap::new();
        for e in &fresh {
            hashes_by_project
                .entry(e.project_id)
                .or_default()
                .extend(e.hashes.iter().map(String::as_str));
        }
        for (project_id, hashes) in hashes_by_project {
            let hashes: Vec<&str> = hashes.into_iter().collect();
            for chunk in hashes.chunks(500) {
                let (cond, list) = in_list(
                    backend,
                    "hash",
                    ArrayType::String,
                    chunk.iter().map(|h| Value::from(h.to_string())).collect(),
                );
                let mut values: Vec<Value> = vec![project_id.into()];
                values.extend(list);
                let sql = format!(
                    "SELECT hash, issue_id FROM issue_hashes WHERE project_id = ? AND {cond}"
                );
                for row in txn.query_all_raw(stmt(backend, &sql, values)).await? {
                    issue_of_hash.insert(
                        (project_id, row.try_get("", "hash")?),
                        row.try_get("", "issue_id")?,
                    );
                }
            }
        }
    }

    let mut event_issue: Vec<i64> = Vec::with_capacity(fresh.len());
    let mut new_issues: HashSet<i64> = HashSet::new();
    for e in &fresh {
        let known = e
            .hashes
            .iter()
            .find_map(|h| issue_of_hash.get(&(e.project_id, h.clone())).copied());
        let issue_id = match known {
            Some(id) => id,
            None => {
                let primary = e.hashes.first().ok_or_else(|| {
                    DbErr::Custom(format!("event {} has no grouping hash", e.event_id))
                })?;
                let created = create_issue(txn, backend, e).await?;
                // Claim the primary hash. If another worker committed the same new hash
                // meanwhile, its issue wins and ours is removed again.
                let claimed = txn
                    .query_one_raw(stmt(
                        backend,
                        "INSERT INTO issue_hashes (project_id, hash, issue_id) VALUES (?, ?, ?) \
                         ON CONFLICT (project_id, hash) DO NOTHING RETURNING issue_id",
                        vec![e.project_id.into(), primary.clone().into(), created.into()],
                    ))
                    .await?;
                if claimed.is_some() {
                    new_issues.insert(created);
                    created
                } else {
                    txn.execute_raw(stmt(
                        backend,
                        "DELETE FROM issues WHERE id = ?",
                        vec![created.into()],
                    ))
                    .await?;
                    let row = txn
                        .query_one_raw(stmt(
                            backend,
                            "SELECT issue_id FROM issue_hashes WHERE project_id = ? AND hash = ?",
                            vec![e.project_id.into(), primary.clone().into()],
                        ))
                        .await?
                        .ok_or_else(|| DbErr::RecordNotFound("grouping hash vanished".into()))?;
                    row.try_get("", "issue_id")?
                }
            }
        };
        if let Some(primary) = e.hashes.first() {
            issue_of_hash.insert((e.project_id, primary.clone()), issue_id);
        }
        // Every hash of the event now points at its issue (first writer wins).
        for h in &e.hashes {
            let entry = (e.project_id, h.clone());
            if issue_of_hash.contains_key(&entry) {
                continue;
            }
            txn.execute_raw(stmt(
                backend,
                "INSERT INTO issue_hashes (project_id, hash, issue_id) VALUES (?, ?, ?) \
                 ON CONFLICT (project_id, hash) DO NOTHING",
                vec![e.project_id.into(), h.clone().into(), issue_id.into()],
            ))
            .await?;
            issue_of_hash.insert(entry, issue_id);
        }
        event_issue.push(issue_id);
    }

    // 3. Events, many rows per statement.
    let rows: Vec<Vec<Value>> = fresh
        .iter()
        .zip(&event_issue)
        .map(|(e, issue_id)| {
            vec![
                e.project_id.into(),
                (*issue_id).into(),
                e.event_id.clone().into(),
                e.timestamp_ms.into(),
                e.received_ms.into(),
                e.level.clone().into(),
                e.release.clone().into(),
                e.environment.clone().into(),
                e.platform.clone().into(),
                e.trace_id.clone().into(),
                e.user_ident.clone().into(),
                e.title.clone().into(),
                e.culprit.clone().into(),
                e.payload.clone().into(),
            ]
        })
        .collect();
    use ArrayType::{BigInt, Bytes, String as Text};
    let cols = [
        Col("bigint", BigInt), // project_id
        Col("bigint", BigInt), // issue_id
        Col("text", Text),     // event_id
        Col("bigint", BigInt), // timestamp
        Col("bigint", BigInt), // received
        Col("text", Text),     // level
        Col("text?", Text),    // release
        Col("text?", Text),    // environment
        Col("text?", Text),    // platform
        Col("text?", Text),    // trace_id
        Col("text?", Text),    // user_ident
        Col("text", Text),     // title
        Col("text?", Text),    // culprit
        Col("bytea", Bytes),   // payload
    ];
    let mut inserted: HashSet<(i64, String)> = HashSet::with_capacity(fresh.len());
    for statement in bulk_insert(
        backend,
        "INSERT INTO events (project_id, issue_id, event_id, timestamp, received, level, release, environment, \
         platform, trace_id, user_ident, title, culprit, payload)",
        &cols,
        rows,
        "ON CONFLICT (project_id, event_id) DO NOTHING RETURNING project_id, event_id",
        200,
    ) {
        for row in txn.query_all_raw(statement).await? {
            inserted.insert((row.try_get("", "project_id")?, row.try_get("", "event_id")?));
        }
    }
    // Exactly once: events an earlier batch already stored (redelivered jobs) stop here.
    if inserted.len() < fresh.len() {
        let (kept, issues): (Vec<&PreparedEvent>, Vec<i64>) = fresh
            .iter()
            .zip(&event_issue)
            .filter(|(e, _)| inserted.contains(&(e.project_id, e.event_id.clone())))
            .map(|(e, i)| (*e, *i))
            .unzip();
        outcome.duplicates += fresh.len() - kept.len();
        fresh = kept;
        event_issue = issues;
        if fresh.is_empty() {
            return Ok(outcome);
        }
    }
    outcome.stored = fresh.len();

    // 4. Issue counters and states, summed per issue.
    let mut per_issue: BTreeMap<i64, IssueDelta> = BTreeMap::new();
    for (e, issue_id) in fresh.iter().zip(&event_issue) {
        per_issue
            .entry(*issue_id)
            .or_insert_with(|| IssueDelta::new(e))
            .add(e);
    }
    let states = load_states(txn, backend, per_issue.keys().copied().collect()).await?;
    let known_releases = release_dates(txn, backend, &fresh).await?;
    let mut status_changes: Vec<(i64, &str)> = Vec::new();
    let mut outbox: Vec<crate::alerts::outbox::Trigger> = Vec::new();
    let mut timeline: Vec<activity::NewActivity> = Vec::new();
    for (issue_id, delta) in &per_issue {
        let Some(state) = states.get(issue_id) else {
            continue;
        };
        let mut new_status: Option<&str> = None;
        let mut kind = None;
        if new_issues.contains(issue_id) {
            kind = Some(NotificationKind::NewIssue);
        } else {
            let events = NewEvents {
                count: delta.count,
                last_seen: delta.last_seen,
                releases: &delta.releases,
            };
            let created = |r: &str| {
                known_releases
                    .get(&(delta.project_id, r.to_string()))
                    .copied()
            };
            if let Some(reopening) = state.reopened_by(&events, created) {
                new_status = Some(status::UNRESOLVED);
                timeline.push(reopened_entry(*issue_id, delta, reopening));
                kind = Some(match reopening {
                    Reopening::Regression => NotificationKind::Regression,
                    Reopening::Unignored => NotificationKind::Unignored,
                });
            }
        }
        if let Some(kind) = kind {
            outcome.notifications.push(IssueNotification {
                project_id: delta.project_id,
                issue_id: *issue_id,
                kind,
            });
            outbox.push(crate::alerts::outbox::Trigger {
                project_id: delta.project_id,
                issue_id: *issue_id,
                kind,
                event_id: delta.event_id.clone(),
                level: delta.level.clone(),
                environment: delta.environment.clone(),
                release: delta.newest_release.clone(),
            });
        }
        if let Some(s) = new_status {
            status_changes.push((*issue_id, s));
        }
    }

    update_issue_counters(txn, backend, &per_issue).await?;
    // The alert outbox commits with the events that caused it: a state change is never
    // lost, and a redelivered job (deduped above) never records it twice.
    crate::alerts::outbox::record(txn, backend, &outbox).await?;
    // Regressions on the issues' timelines: one multi-row insert for the batch, and only
    // when something reopened (rare next to the events themselves).
    activity::record(txn, &activity::Actor::System, &timeline, now_ms()).await?;
    for (issue_id, status) in status_changes {
        txn.execute_raw(stmt(
            backend,
            "UPDATE issues SET status = ?, status_details = NULL, resolved_at = NULL WHERE id = ?",
            vec![status.into(), issue_id.into()],
        ))
        .await?;
    }

    // 5. Tag values, summed per (issue, key, value).
    let mut tag_counts: BTreeMap<(i64, &str, &str), (i64, i64, i64)> = BTreeMap::new();
    for (e, issue_id) in fresh.iter().zip(&event_issue) {
        for (k, v) in &e.tags {
            let entry = tag_counts
                .entry((*issue_id, k.as_str(), v.as_str()))
                .or_insert((0, i64::MAX, i64::MIN));
            entry.0 += 1;
            entry.1 = entry.1.min(e.timestamp_ms);
            entry.2 = entry.2.max(e.timestamp_ms);
        }
    }
    let rows: Vec<Vec<Value>> = tag_counts
        .into_iter()
        .map(|((issue_id, k, v), (count, first, last))| {
            vec![
                issue_id.into(),
                k.to_string().into(),
                v.to_string().into(),
                count.into(),
                first.into(),
                last.into(),
            ]
        })
        .collect();
    let (g, l) = (greatest(backend), least(backend));
    let cols = [
        Col("bigint", BigInt),
        Col("text", Text),
        Col("text", Text),
        Col("bigint", BigInt),
        Col("bigint", BigInt),
        Col("bigint", BigInt),
    ];
    let tail = format!(
        "ON CONFLICT (issue_id, key, value) DO UPDATE SET \
         times_seen = issue_tag_values.times_seen + excluded.times_seen, \
         first_seen = {l}(issue_tag_values.first_seen, excluded.first_seen), \
         last_seen = {g}(issue_tag_values.last_seen, excluded.last_seen)"
    );
    for statement in bulk_insert(
        backend,
        "INSERT INTO issue_tag_values (issue_id, key, value, times_seen, first_seen, last_seen)",
        &cols,
        rows,
        &tail,
        300,
    ) {
        txn.execute_raw(statement).await?;
    }

    // 6. Distinct users per issue, from the `user` tag facet.
    let with_users: Vec<i64> = per_issue
        .iter()
        .filter(|(_, d)| d.has_user)
        .map(|(id, _)| *id)
        .collect();
    for chunk in with_users.chunks(500) {
        let (cond, list) = in_ids(backend, "id", chunk);
        let sql = format!(
            "UPDATE issues SET users_seen = (SELECT COUNT(*) FROM issue_tag_values t \
             WHERE t.issue_id = issues.id AND t.key = 'user') WHERE {cond}"
        );
        txn.execute_raw(stmt(backend, &sql, list)).await?;
    }

    // 7. Releases named by events appear by themselves.
    upsert_releases(txn, backend, &per_issue, &new_issues).await?;
    Ok(outcome)
}

/// Adds the batch's counts to every touched issue: one `UPDATE ... FROM (VALUES ...)` per
/// 400 issues rather than one statement per issue (a round trip each on PostgreSQL).
async fn update_issue_counters(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    per_issue: &BTreeMap<i64, IssueDelta>,
) -> Result<(), DbErr> {
    let (g, l) = (greatest(backend), least(backend));
    let rows: Vec<(&i64, &IssueDelta)> = per_issue.iter().collect();
    for chunk in rows.chunks(400) {
        let mut sql = String::with_capacity(1024 + chunk.len() * 40);
        // Like Sentry, the issue shows its newest event's title, culprit and level; the CASEs
        // read the old last_seen, so an older batch arriving late changes nothing.
        // d: column1 id, 2 count, 3 last_seen, 4 level, 5 title, 6 culprit,
        //    7 exception_value, 8 first_seen, 9 last_release, 10 first_release.
        sql.push_str(&format!(
            "UPDATE issues SET times_seen = issues.times_seen + d.column2, \
             level = CASE WHEN d.column3 >= issues.last_seen THEN d.column4 ELSE issues.level END, \
             title = CASE WHEN d.column3 >= issues.last_seen THEN d.column5 ELSE issues.title END, \
             culprit = CASE WHEN d.column3 >= issues.last_seen THEN d.column6 ELSE issues.culprit END, \
             exception_value = CASE WHEN d.column3 >= issues.last_seen THEN d.column7 ELSE issues.exception_value END, \
             last_seen = {g}(issues.last_seen, d.column3), first_seen = {l}(issues.first_seen, d.column8), \
             last_release = COALESCE(d.column9, issues.last_release), \
             first_release = COALESCE(issues.first_release, d.column10) \
             FROM (VALUES "
        ));
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 10);
        for (i, (issue_id, delta)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            values.extend([
                (**issue_id).into(),
                delta.count.into(),
                delta.last_seen.into(),
                delta.level.clone().into(),
                delta.title.clone().into(),
                delta.culprit.clone().into(),
                delta.exception_value.clone().into(),
                delta.first_seen.into(),
                delta.last_release.clone().into(),
                delta.first_release.clone().into(),
            ]);
        }
        sql.push_str(") AS d WHERE issues.id = d.column1");
        txn.execute_raw(stmt(backend, &sql, values)).await?;
    }
    Ok(())
}

/// Counter changes for one issue in this batch.
struct IssueDelta {
    project_id: i64,
    count: i64,
    first_seen: i64,
    last_seen: i64,
    level: String,
    title: String,
    culprit: Option<String>,
    exception_value: Option<String>,
    /// The newest event's id, environment and release (what alerts filter and show).
    event_id: String,
    environment: Option<String>,
    newest_release: Option<String>,
    first_release: Option<String>,
    last_release: Option<String>,
    releases: Vec<String>,
    has_user: bool,
}

impl IssueDelta {
    fn new(e: &PreparedEvent) -> Self {
        IssueDelta {
            project_id: e.project_id,
            count: 0,
            first_seen: e.timestamp_ms,
            last_seen: e.timestamp_ms,
            level: e.level.clone(),
            title: e.title.clone(),
            culprit: e.culprit.clone(),
            exception_value: e.exception_value.clone(),
            event_id: e.event_id.clone(),
            environment: e.environment.clone(),
            newest_release: e.release.clone(),
            first_release: e.release.clone(),
            last_release: None,
            releases: Vec::new(),
            has_user: false,
        }
    }

    fn add(&mut self, e: &PreparedEvent) {
        self.count += 1;
        self.first_seen = self.first_seen.min(e.timestamp_ms);
        if e.timestamp_ms >= self.last_seen {
            self.last_seen = e.timestamp_ms;
            self.level = e.level.clone();
            self.title = e.title.clone();
            self.culprit = e.culprit.clone();
            self.exception_value = e.exception_value.clone();
            self.event_id = e.event_id.clone();
            self.environment = e.environment.clone();
            self.newest_release = e.release.clone();
        }
        if let Some(r) = &e.release {
            self.last_release = Some(r.clone());
            if !self.releases.contains(r) {
                self.releases.push(r.clone());
            }
        }
        self.has_user |= e.user_ident.is_some();
    }
}

/// The timeline entry of an issue that new events reopened: a regression with the release
/// of its newest event (Sentry's `set_regression`), or an ignored issue whose condition was
/// met waking up (`set_unresolved`).
fn reopened_entry(issue_id: i64, delta: &IssueDelta, why: Reopening) -> activity::NewActivity {
    let data = match why {
        Reopening::Regression => {
            serde_json::json!({"version": delta.newest_release.as_deref().unwrap_or(""), "event_id": delta.event_id})
        }
        Reopening::Unignored => {
            serde_json::json!({"reason": "ignore_condition_met", "event_id": delta.event_id})
        }
    };
    activity::NewActivity {
        issue_id,
        project_id: delta.project_id,
        kind: match why {
            Reopening::Regression => activity::kind::SET_REGRESSION,
            Reopening::Unignored => activity::kind::SET_UNRESOLVED,
        },
        data,
    }
}

async fn load_states(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    ids: Vec<i64>,
) -> Result<HashMap<i64, IssueState>, DbErr> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let (cond, list) = in_ids(backend, "id", chunk);
        let sql = format!(
            "SELECT id, status, status_details, resolved_at, times_seen FROM issues WHERE {cond}"
        );
        for row in txn.query_all_raw(stmt(backend, &sql, list.clone())).await? {
            let details: Option<String> = row.try_get("", "status_details")?;
            out.insert(
                row.try_get::<i64>("", "id")?,
                IssueState {
                    status: row.try_get("", "status")?,
                    details: StatusDetails::read(details.as_deref()),
                    resolved_at: row.try_get("", "resolved_at")?,
                    times_seen: row.try_get("", "times_seen")?,
                },
            );
        }
    }
    Ok(out)
}

/// Creates the issue for an event whose hashes are all new; returns its id.
async fn create_issue(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    e: &PreparedEvent,
) -> Result<i64, DbErr> {
    let counter = txn
        .query_one_raw(stmt(
            backend,
            "UPDATE projects SET issue_counter = issue_counter + 1 WHERE id = ? RETURNING issue_counter",
            vec![e.project_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("project {} does not exist", e.project_id)))?;
    let short_id: i64 = counter.try_get("", "issue_counter")?;
    let row = txn
        .query_one_raw(stmt(
            backend,
            "INSERT INTO issues (project_id, short_id, title, culprit, exception_type, exception_value, level, platform, \
             status, first_seen, last_seen, times_seen, users_seen, first_release, last_release) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'unresolved', ?, ?, 0, 0, ?, ?) RETURNING id",
            vec![
                e.project_id.into(),
                short_id.into(),
                e.title.clone().into(),
                e.culprit.clone().into(),
                e.exception_type.clone().into(),
                e.exception_value.clone().into(),
                e.level.clone().into(),
                e.platform.clone().into(),
                e.timestamp_ms.into(),
                e.timestamp_ms.into(),
                e.release.clone().into(),
                e.release.clone().into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("issue insert returned no id".into()))?;
    row.try_get("", "id")
}

/// `date_created` of the releases the events name (their organization's), keyed by
/// (project, version).
async fn release_dates(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    events: &[&PreparedEvent],
) -> Result<HashMap<(i64, String), i64>, DbErr> {
    let mut out = HashMap::new();
    let mut pairs: BTreeMap<i64, HashSet<&str>> = BTreeMap::new();
    for e in events {
        if let Some(r) = &e.release {
            pairs.entry(e.project_id).or_default().insert(r);
        }
    }
    for (project_id, versions) in pairs {
        let versions: Vec<&str> = versions.into_iter().collect();
        let sql = format!(
            "SELECT r.version, r.date_created FROM releases r \
             JOIN projects p ON p.organization_id = r.organization_id \
             WHERE p.id = ? AND r.version IN ({})",
            placeholders(versions.len())
        );
        let mut values: Vec<Value> = vec![project_id.into()];
        values.extend(versions.iter().map(|v| Value::from(v.to_string())));
        for row in txn.query_all_raw(stmt(backend, &sql, values)).await? {
            out.insert(
                (project_id, row.try_get("", "version")?),
                row.try_get("", "date_created")?,
            );
        }
    }
    Ok(out)
}

async fn upsert_releases(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    per_issue: &BTreeMap<i64, IssueDelta>,
    new_issues: &HashSet<i64>,
) -> Result<(), DbErr> {
    // (project, version) -> (first, last, new issues)
    let mut seen: BTreeMap<(i64, &str), (i64, i64, i64)> = BTreeMap::new();
    for (issue_id, d) in per_issue {
        for r in &d.releases {
            let entry =
                seen.entry((d.project_id, r.as_str()))
                    .or_insert((d.first_seen, d.last_seen, 0));
            entry.0 = entry.0.min(d.first_seen);
            entry.1 = entry.1.max(d.last_seen);
            if new_issues.contains(issue_id) && d.first_release.as_deref() == Some(r.as_str()) {
                entry.2 += 1;
            }
        }
    }
    let (g, l) = (greatest(backend), least(backend));
    let now = chrono::Utc::now().timestamp_millis();
    for ((project_id, version), (first, last, new_count)) in seen {
        txn.execute_raw(stmt(
            backend,
            &format!(
                "INSERT INTO releases (organization_id, version, date_created, first_event, last_event, status) \
                 SELECT organization_id, ?, ?, ?, ?, 'open' FROM projects WHERE id = ? \
                 ON CONFLICT (organization_id, version) DO UPDATE SET \
                 first_event = {l}(COALESCE(releases.first_event, excluded.first_event), excluded.first_event), \
                 last_event = {g}(COALESCE(releases.last_event, excluded.last_event), excluded.last_event)"
            ),
            vec![version.to_string().into(), now.into(), first.into(), last.into(), project_id.into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO release_projects (release_id, project_id, new_issues) \
             SELECT r.id, p.id, ? FROM releases r JOIN projects p ON p.organization_id = r.organization_id \
             WHERE p.id = ? AND r.version = ? \
             ON CONFLICT (release_id, project_id) DO UPDATE SET new_issues = release_projects.new_issues + excluded.new_issues",
            vec![new_count.into(), project_id.into(), version.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}
