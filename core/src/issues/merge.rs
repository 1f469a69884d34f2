//! Merging issues into one, and splitting grouping hashes off into a new issue (unmerge).
//!
//! What an issue owns, table by table, and what a merge does with it:
//!
//! | table | merge | why |
//! |---|---|---|
//! | `issue_hashes` | moved to the parent | new events of any child hash land in the parent |
//! | `events` | moved to the parent | the parent shows every event; unmerge can move them back by `primary_hash` |
//! | `issue_tag_values` | summed into the parent's rows (count added, first/last widened) | facets and tag search count every event once |
//! | `issues` counters | summed / widened; `users_seen` recounted from the `user` facet | the parent counts what all of them counted |
//! | `issues.assignee_id`, status | the parent's (its assignee, else the busiest child's) | Sentry keeps the parent's state |
//! | `alert_outbox` | moved to the parent | an alert not yet dispatched still goes out, about an issue that exists |
//! | `notifications` | moved to the parent | the cooldown ("mailed about this issue lately") and the log keep working |
//! | `issue_activity` | moved to the parent, plus a `merge` entry | the timeline keeps what happened to the children |
//! | `issue_redirects` | child → parent added; redirects to a child re-pointed | old links and API ids still find the issue |
//! | `issues` (children) | deleted | as Sentry does; their ids live on as redirects |
//! | `release_projects.new_issues` | unchanged | it counts issues that were new in a release, which they were |
//!
//! Exact under concurrency: events of the hashes involved may arrive while a merge or an
//! unmerge runs. The worker's store maps hashes to issues at the start of its batch
//! transaction and inserts events later in it, so an operation must not interleave with a
//! batch of the same project:
//! - SQLite has one writer: the operation's transaction takes the write lock first
//!   ([`begin_write`]), the store's does too, so they simply queue.
//! - PostgreSQL: every store batch takes a *shared* transaction-scoped advisory lock per
//!   project it writes ([`lock_projects_for_store`], one statement, held in memory by the
//!   lock manager — no row is written, and batches never wait for each other), and merge /
//!   unmerge take the *exclusive* one of their project before reading anything. A merge
//!   waits for the batches already mapping that project's hashes to commit (it then sees
//!   their events), and batches starting meanwhile wait for the merge to commit (they then
//!   read the new hash → issue mapping). Locks are always taken in ascending key order, and
//!   before any row lock, so they cannot deadlock with each other.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Value};

use super::Error;
use super::activity::{self, Actor, NewActivity};
use crate::sql::{
    Col, begin_write, bulk_insert, execute, greatest, in_ids, in_list, least, query_all, query_one,
};

/// Keeps our advisory lock keys apart from anyone else's: "MRGE" in the high 32 bits.
const LOCK_CLASS: i64 = 0x4d52_4745 << 32;

fn lock_key(project_id: i64) -> i64 {
    LOCK_CLASS ^ project_id
}

/// For the worker's store, first statement of a batch's transaction on PostgreSQL: shared
/// locks on the batch's projects, so that no merge or unmerge of those projects runs while
/// the batch maps hashes to issues and inserts events (see the module's documentation).
/// Nothing to do on SQLite, whose writers are serialized anyway.
pub async fn lock_projects_for_store(
    txn: &impl ConnectionTrait,
    project_ids: &[i64],
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres || project_ids.is_empty() {
        return Ok(());
    }
    let keys: BTreeSet<i64> = project_ids.iter().map(|p| lock_key(*p)).collect();
    let keys: Vec<Value> = keys.into_iter().map(Value::from).collect();
    // The array is sorted: locks are taken in ascending order, like the exclusive ones.
    execute(
        txn,
        "SELECT pg_advisory_xact_lock_shared(k) FROM unnest(?::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
        vec![crate::sql::array(ArrayType::BigInt, keys)],
    )
    .await?;
    Ok(())
}

/// The exclusive lock of a project for a merge or an unmerge (PostgreSQL; on SQLite the
/// transaction already holds the write lock).
pub(crate) async fn lock_project(txn: &impl ConnectionTrait, project_id: i64) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        execute(
            txn,
            "SELECT pg_advisory_xact_lock(?)",
            vec![lock_key(project_id).into()],
        )
        .await?;
    }
    Ok(())
}

/// What a merge did: the issue that remains and the ones merged into it (deleted; their
/// ids redirect to the parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub parent: i64,
    pub children: Vec<i64>,
    pub project_id: i64,
    /// Who merged.
    pub actor: Actor,
}

/// An issue row as a merge reads it.
struct Row {
    id: i64,
    project_id: i64,
    times_seen: i64,
    first_seen: i64,
    last_seen: i64,
    first_release: Option<String>,
    last_release: Option<String>,
    assignee_id: Option<i64>,
}

async fn read_rows(
    db: &impl ConnectionTrait,
    organization_id: i64,
    ids: &[i64],
) -> Result<Vec<Row>, DbErr> {
    let (cond, mut values) = in_ids(db.get_database_backend(), "i.id", ids);
    values.push(organization_id.into());
    query_all(
        db,
        &format!(
            "SELECT i.id, i.project_id, i.times_seen, i.first_seen, i.last_seen, i.first_release, \
             i.last_release, i.assignee_id FROM issues i JOIN projects p ON p.id = i.project_id \
             WHERE {cond} AND p.organization_id = ? ORDER BY i.id"
        ),
        values,
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Row {
            id: r.try_get("", "id")?,
            project_id: r.try_get("", "project_id")?,
            times_seen: r.try_get("", "times_seen")?,
            first_seen: r.try_get("", "first_seen")?,
            last_seen: r.try_get("", "last_seen")?,
            first_release: r.try_get("", "first_release")?,
            last_release: r.try_get("", "last_release")?,
            assignee_id: r.try_get("", "assignee_id")?,
        })
    })
    .collect()
}

/// Most issues one merge takes (Sentry's bulk limit is of this order).
pub const MAX_MERGE: usize = 1000;

/// Merges the issues `issue_ids` of `organization_id` into one: the one with the most
/// events is the parent (the oldest on a tie), the others' hashes, events, counters, tag
/// values, pending alerts and notification log move to it and they are deleted (their ids
/// redirect to the parent). All of them must exist in the organization and belong to one
/// project; at least two, at most [`MAX_MERGE`].
pub async fn merge(
    db: &DatabaseConnection,
    organization_id: i64,
    issue_ids: &[i64],
    actor: &Actor,
) -> Result<Merged, Error> {
    let ids: Vec<i64> = issue_ids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.len() < 2 {
        return Err(Error::Invalid(
            "merging needs at least two different issues".into(),
        ));
    }
    if ids.len() > MAX_MERGE {
        return Err(Error::Invalid(format!(
            "at most {MAX_MERGE} issues can be merged at once"
        )));
    }
    let txn = begin_write(db).await?;
    let backend = txn.get_database_backend();
    let found = read_rows(&txn, organization_id, &ids).await?;
    check_all_found(&ids, &found)?;
    let project_id = one_project(&found)?;
    lock_project(&txn, project_id).await?;
    // Read again under the lock: a merge that committed meanwhile may have taken some.
    let rows = read_rows(&txn, organization_id, &ids).await?;
    check_all_found(&ids, &rows)?;
    let parent = rows
        .iter()
        .max_by_key(|r| (r.times_seen, std::cmp::Reverse(r.id)))
        .map(|r| r.id)
        .ok_or_else(|| Error::Invalid("no issues to merge".into()))?;
    let mut children_rows: Vec<&Row> = rows.iter().filter(|r| r.id != parent).collect();
    children_rows.sort_by_key(|r| (std::cmp::Reverse(r.times_seen), r.id));
    let children: Vec<i64> = children_rows.iter().map(|r| r.id).collect();
    let parent_row = rows
        .iter()
        .find(|r| r.id == parent)
        .ok_or_else(|| Error::Invalid("no issues to merge".into()))?;

    // Hashes, events, pending alerts, the notification log and the timeline follow the
    // children.
    for table in [
        "issue_hashes",
        "events",
        "alert_outbox",
        "notifications",
        "issue_activity",
    ] {
        let (cond, mut values) = in_ids(backend, "issue_id", &children);
        values.insert(0, parent.into());
        execute(
            &txn,
            &format!("UPDATE {table} SET issue_id = ? WHERE {cond}"),
            values,
        )
        .await?;
    }

    // Tag values: one row per (key, value) in the parent, counts added.
    let (g, l) = (greatest(backend), least(backend));
    let (cond, mut values) = in_ids(backend, "issue_id", &children);
    values.insert(0, parent.into());
    execute(
        &txn,
        &format!(
            "INSERT INTO issue_tag_values (issue_id, key, value, times_seen, first_seen, last_seen) \
             SELECT ?, key, value, CAST(SUM(times_seen) AS BIGINT), MIN(first_seen), MAX(last_seen) \
             FROM issue_tag_values WHERE {cond} GROUP BY key, value \
             ON CONFLICT (issue_id, key, value) DO UPDATE SET \
             times_seen = issue_tag_values.times_seen + excluded.times_seen, \
             first_seen = {l}(issue_tag_values.first_seen, excluded.first_seen), \
             last_seen = {g}(issue_tag_values.last_seen, excluded.last_seen)"
        ),
        values,
    )
    .await?;
    let (cond, values) = in_ids(backend, "issue_id", &children);
    execute(
        &txn,
        &format!("DELETE FROM issue_tag_values WHERE {cond}"),
        values,
    )
    .await?;

    // Counters: the sum of all; releases from the issue that saw the first / last event.
    let times_seen: i64 = rows.iter().map(|r| r.times_seen).sum();
    let first_seen = rows.iter().map(|r| r.first_seen).min().unwrap_or(0);
    let last_seen = rows.iter().map(|r| r.last_seen).max().unwrap_or(0);
    let first_release = rows
        .iter()
        .filter(|r| r.first_release.is_some())
        .min_by_key(|r| (r.first_seen, r.id))
        .and_then(|r| r.first_release.clone());
    let last_release = rows
        .iter()
        .filter(|r| r.last_release.is_some())
        .max_by_key(|r| (r.last_seen, std::cmp::Reverse(r.id)))
        .and_then(|r| r.last_release.clone());
    let assignee = parent_row
        .assignee_id
        .or_else(|| children_rows.iter().find_map(|r| r.assignee_id));
    execute(
        &txn,
        "UPDATE issues SET times_seen = ?, first_seen = ?, last_seen = ?, first_release = ?, \
         last_release = ?, assignee_id = ?, users_seen = (SELECT COUNT(*) FROM issue_tag_values t \
         WHERE t.issue_id = issues.id AND t.key = 'user') WHERE id = ?",
        vec![
            times_seen.into(),
            first_seen.into(),
            last_seen.into(),
            first_release.into(),
            last_release.into(),
            assignee.into(),
            parent.into(),
        ],
    )
    .await?;

    // Old ids keep working: links to a child (or to an issue merged into a child) lead to
    // the parent.
    let (cond, mut values) = in_ids(backend, "issue_id", &children);
    values.insert(0, parent.into());
    execute(
        &txn,
        &format!("UPDATE issue_redirects SET issue_id = ? WHERE {cond}"),
        values,
    )
    .await?;
    let now = crate::entity::now_ms();
    for child in &children {
        execute(
            &txn,
            "INSERT INTO issue_redirects (from_id, issue_id, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (from_id) DO UPDATE SET issue_id = excluded.issue_id",
            vec![(*child).into(), parent.into(), now.into()],
        )
        .await?;
    }
    let (cond, values) = in_ids(backend, "id", &children);
    execute(&txn, &format!("DELETE FROM issues WHERE {cond}"), values).await?;
    // Sentry's `merge` activity on the parent: `data.issues` lists what was merged in.
    activity::record(
        &txn,
        actor,
        &[NewActivity {
            issue_id: parent,
            project_id,
            kind: activity::kind::MERGE,
            data: serde_json::json!({
                "issues": children.iter().map(|c| serde_json::json!({"id": c.to_string()})).collect::<Vec<_>>(),
            }),
        }],
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(Merged {
        parent,
        children,
        project_id,
        actor: actor.clone(),
    })
}

fn check_all_found(ids: &[i64], found: &[Row]) -> Result<(), Error> {
    let have: BTreeSet<i64> = found.iter().map(|r| r.id).collect();
    match ids.iter().find(|id| !have.contains(id)) {
        Some(id) => Err(Error::Invalid(format!("issue {id} not found"))),
        None => Ok(()),
    }
}

fn one_project(rows: &[Row]) -> Result<i64, Error> {
    let projects: BTreeSet<i64> = rows.iter().map(|r| r.project_id).collect();
    match projects.len() {
        1 => Ok(rows[0].project_id),
        _ => Err(Error::Invalid(
            "merging across multiple projects is not supported".into(),
        )),
    }
}

/// Where the id of a merged-away issue of `organization_id` leads now, if anywhere.
pub async fn redirect(
    db: &impl ConnectionTrait,
    organization_id: i64,
    from_id: i64,
) -> Result<Option<i64>, DbErr> {
    query_one(
        db,
        "SELECT r.issue_id FROM issue_redirects r JOIN issues i ON i.id = r.issue_id \
         JOIN projects p ON p.id = i.project_id WHERE r.from_id = ? AND p.organization_id = ?",
        vec![from_id.into(), organization_id.into()],
    )
    .await?
    .map(|r| r.try_get("", "issue_id"))
    .transpose()
}

/// One grouping hash of an issue, as the "merged fingerprints" tab and Sentry's
/// `GET /issues/{id}/hashes/` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashInfo {
    pub hash: String,
    /// Stored events whose primary hash this is.
    pub events: i64,
    /// The newest of them (row id, event id, timestamp).
    pub latest: Option<(i64, String, i64)>,
}

/// The grouping hashes of an issue: those with stored events first, newest event first,
/// then the others (hashes seen only as a fallback, or whose events retention deleted).
/// Two statements whatever the number of hashes (an issue that absorbed hundreds of
/// others has hundreds): one pass over the issue's events (bounded by the project's
/// events-per-issue cap) counts and picks the newest per primary hash.
pub async fn hashes(db: &impl ConnectionTrait, issue_id: i64) -> Result<Vec<HashInfo>, DbErr> {
    let mut latest: BTreeMap<String, (i64, (i64, String, i64))> = BTreeMap::new();
    for r in query_all(
        db,
        "SELECT primary_hash, id, event_id, timestamp, n FROM (\
           SELECT primary_hash, id, event_id, timestamp, \
             COUNT(*) OVER (PARTITION BY primary_hash) AS n, \
             ROW_NUMBER() OVER (PARTITION BY primary_hash ORDER BY timestamp DESC, id DESC) AS rn \
           FROM events WHERE issue_id = ? AND primary_hash IS NOT NULL) x WHERE rn = 1",
        vec![issue_id.into()],
    )
    .await?
    {
        latest.insert(
            r.try_get("", "primary_hash")?,
            (
                r.try_get("", "n")?,
                (
                    r.try_get("", "id")?,
                    r.try_get("", "event_id")?,
                    r.try_get("", "timestamp")?,
                ),
            ),
        );
    }
    let mut out = Vec::new();
    for r in query_all(
        db,
        "SELECT hash FROM issue_hashes WHERE issue_id = ? ORDER BY id",
        vec![issue_id.into()],
    )
    .await?
    {
        let hash: String = r.try_get("", "hash")?;
        let found = latest.remove(&hash);
        out.push(HashInfo {
            hash,
            events: found.as_ref().map(|f| f.0).unwrap_or(0),
            latest: found.map(|f| f.1),
        });
    }
    // Stable: hashes without events keep their order (oldest first) at the end.
    out.sort_by_key(|h| {
        (
            h.latest.is_none(),
            std::cmp::Reverse(h.latest.as_ref().map(|l| l.2)),
        )
    });
    Ok(out)
}

/// What an unmerge did: the hashes that moved, to which new issue, with how many events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmerged {
    pub source: i64,
    pub new_issue: i64,
    pub hashes: Vec<String>,
    pub events_moved: i64,
    pub project_id: i64,
    /// Who split them off.
    pub actor: Actor,
}

/// Sentry's activity types of an unmerge, on the issue that lost fingerprints and on the
/// new one.
pub const UNMERGE_SOURCE: &str = "unmerge_source";
pub const UNMERGE_DESTINATION: &str = "unmerge_destination";

/// Tag values an event contributed when it was stored, read back from its stored payload
/// (the worker's tag rules, passed in because they live in the worker crate).
pub type TagsOf<'a> = &'a (dyn Fn(&[u8]) -> Vec<(String, String)> + Sync);

/// Splits the grouping hashes `hashes` of the issue `issue_id` (of `organization_id`) off
/// into one new issue: future events of those hashes go there, and the stored events whose
/// primary hash is one of them move with them. Counters of both issues follow the events
/// (the new one counts exactly its events; the old one loses as many as moved), tag values
/// are recounted from the moved events' payloads. `Ok(None)`: no such issue there.
/// Hashes that are not the issue's are ignored; none of them, or all of the issue's, is
/// refused (an issue keeps at least one hash).
pub async fn unmerge(
    db: &DatabaseConnection,
    organization_id: i64,
    issue_id: i64,
    hashes: &[String],
    actor: &Actor,
    tags_of: TagsOf<'_>,
) -> Result<Option<Unmerged>, Error> {
    let txn = begin_write(db).await?;
    let backend = txn.get_database_backend();
    let Some(source) = super::get_in(&txn, organization_id, issue_id).await? else {
        return Ok(None);
    };
    lock_project(&txn, source.project_id).await?;
    let owned: Vec<String> = query_all(
        &txn,
        "SELECT hash FROM issue_hashes WHERE issue_id = ? ORDER BY id",
        vec![issue_id.into()],
    )
    .await?
    .iter()
    .map(|r| r.try_get("", "hash"))
    .collect::<Result<_, _>>()?;
    if owned.is_empty() {
        // Merged away between the caller's look and our lock.
        return Ok(None);
    }
    let wanted: BTreeSet<&str> = hashes.iter().map(String::as_str).collect();
    let chosen: Vec<String> = owned
        .iter()
        .filter(|h| wanted.contains(h.as_str()))
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(Error::Invalid(
            "none of the given hashes belongs to this issue".into(),
        ));
    }
    if chosen.len() == owned.len() {
        return Err(Error::Invalid(
            "an issue keeps at least one of its hashes: choose fewer to split off".into(),
        ));
    }
    let hash_values = || -> Vec<Value> { chosen.iter().map(|h| Value::from(h.clone())).collect() };

    // The events that move, oldest first.
    let (cond, list) = in_list(backend, "primary_hash", ArrayType::String, hash_values());
    let mut values: Vec<Value> = vec![issue_id.into()];
    values.extend(list);
    let moving = query_all(
        &txn,
        &format!(
            "SELECT timestamp, level, release, title, culprit, payload FROM events \
             WHERE issue_id = ? AND {cond} ORDER BY timestamp, id"
        ),
        values,
    )
    .await?;
    let mut count = 0i64;
    let mut first_seen = i64::MAX;
    let mut last_seen = i64::MIN;
    let (mut first_release, mut last_release): (Option<String>, Option<String>) = (None, None);
    let (mut title, mut culprit, mut level) = (
        source.title.clone(),
        source.culprit.clone(),
        source.level.clone(),
    );
    // (key, value) -> (count, first, last)
    let mut tags: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for r in &moving {
        let ts: i64 = r.try_get("", "timestamp")?;
        count += 1;
        first_seen = first_seen.min(ts);
        if ts >= last_seen {
            last_seen = ts;
            title = r.try_get("", "title")?;
            culprit = r.try_get("", "culprit")?;
            level = r.try_get("", "level")?;
        }
        let release: Option<String> = r.try_get("", "release")?;
        if release.is_some() {
            if first_release.is_none() {
                first_release = release.clone();
            }
            last_release = release;
        }
        let payload: Vec<u8> = r.try_get("", "payload")?;
        for (k, v) in tags_of(&payload) {
            let e = tags.entry((k, v)).or_insert((0, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 = e.1.min(ts);
            e.2 = e.2.max(ts);
        }
    }
    if count == 0 {
        // Only hashes without stored events: the new issue starts from the old one's times.
        first_seen = source.first_seen;
        last_seen = source.last_seen;
    }

    // The new issue, numbered like any other.
    let counter = query_one(
        &txn,
        "UPDATE projects SET issue_counter = issue_counter + 1 WHERE id = ? RETURNING issue_counter",
        vec![source.project_id.into()],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("the issue's project vanished".into()))?;
    let short_id: i64 = counter.try_get("", "issue_counter")?;
    let new_issue: i64 = query_one(
        &txn,
        "INSERT INTO issues (project_id, short_id, title, culprit, exception_type, exception_value, \
         level, platform, status, first_seen, last_seen, times_seen, users_seen, first_release, \
         last_release) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'unresolved', ?, ?, ?, 0, ?, ?) RETURNING id",
        vec![
            source.project_id.into(),
            short_id.into(),
            title.into(),
            culprit.into(),
            source.exception_type.clone().into(),
            source.exception_value.clone().into(),
            level.into(),
            source.platform.clone().into(),
            first_seen.into(),
            last_seen.into(),
            count.into(),
            first_release.into(),
            last_release.into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::Custom("issue insert returned no id".into()))?
    .try_get("", "id")?;

    for (table, column) in [("issue_hashes", "hash"), ("events", "primary_hash")] {
        let (cond, list) = in_list(backend, column, ArrayType::String, hash_values());
        let mut values: Vec<Value> = vec![new_issue.into(), issue_id.into()];
        values.extend(list);
        execute(
            &txn,
            &format!("UPDATE {table} SET issue_id = ? WHERE issue_id = ? AND {cond}"),
            values,
        )
        .await?;
    }

    // Tag values: the new issue's from its events (fresh rows: one bulk insert); the old
    // one's lose as many (one UPDATE ... FROM (VALUES ...) per 300 values), not one
    // statement per value: an unmerge of thousands of users' events stays a few
    // statements.
    use ArrayType::{BigInt, String as Text};
    let rows: Vec<Vec<Value>> = tags
        .iter()
        .map(|((k, v), (n, first, last))| {
            vec![
                new_issue.into(),
                k.clone().into(),
                v.clone().into(),
                (*n).into(),
                (*first).into(),
                (*last).into(),
            ]
        })
        .collect();
    let cols = [
        Col("bigint", BigInt),
        Col("text", Text),
        Col("text", Text),
        Col("bigint", BigInt),
        Col("bigint", BigInt),
        Col("bigint", BigInt),
    ];
    for statement in bulk_insert(
        backend,
        "INSERT INTO issue_tag_values (issue_id, key, value, times_seen, first_seen, last_seen)",
        &cols,
        rows,
        "",
        300,
    ) {
        txn.execute_raw(statement).await?;
    }
    let minus: Vec<(&(String, String), i64)> = tags.iter().map(|(kv, c)| (kv, c.0)).collect();
    for chunk in minus.chunks(300) {
        let mut sql = String::from(
            "UPDATE issue_tag_values SET times_seen = issue_tag_values.times_seen - d.column3 \
             FROM (VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3 + 1);
        for (i, ((k, v), n)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?)");
            values.extend([k.clone().into(), v.clone().into(), (*n).into()]);
        }
        sql.push_str(
            ") AS d WHERE issue_tag_values.issue_id = ? AND issue_tag_values.key = d.column1 \
             AND issue_tag_values.value = d.column2",
        );
        values.push(issue_id.into());
        execute(&txn, &sql, values).await?;
    }
    execute(
        &txn,
        "DELETE FROM issue_tag_values WHERE issue_id = ? AND times_seen <= 0",
        vec![issue_id.into()],
    )
    .await?;

    // The old issue: as many events fewer (never fewer than it still stores), its times
    // from the events it keeps.
    let kept = query_one(
        &txn,
        "SELECT COUNT(*) AS n, MIN(timestamp) AS first, MAX(timestamp) AS last FROM events WHERE issue_id = ?",
        vec![issue_id.into()],
    )
    .await?
    .ok_or_else(|| DbErr::Custom("count returned no row".into()))?;
    let kept_n: i64 = kept.try_get("", "n")?;
    let kept_first: Option<i64> = kept.try_get("", "first")?;
    let kept_last: Option<i64> = kept.try_get("", "last")?;
    let old_times_seen = (source.times_seen - count).max(kept_n);
    execute(
        &txn,
        "UPDATE issues SET times_seen = ?, first_seen = COALESCE(?, first_seen), \
         last_seen = COALESCE(?, last_seen) WHERE id = ?",
        vec![
            old_times_seen.into(),
            kept_first.into(),
            kept_last.into(),
            issue_id.into(),
        ],
    )
    .await?;
    let (cond, values) = in_ids(backend, "id", &[issue_id, new_issue]);
    execute(
        &txn,
        &format!(
            "UPDATE issues SET users_seen = (SELECT COUNT(*) FROM issue_tag_values t \
             WHERE t.issue_id = issues.id AND t.key = 'user') WHERE {cond}"
        ),
        values,
    )
    .await?;
    // Sentry's pair of entries: the source lost fingerprints to the destination.
    activity::record(
        &txn,
        actor,
        &[
            NewActivity {
                issue_id,
                project_id: source.project_id,
                kind: UNMERGE_SOURCE,
                data: serde_json::json!({"fingerprints": chosen, "destination_id": new_issue.to_string()}),
            },
            NewActivity {
                issue_id: new_issue,
                project_id: source.project_id,
                kind: UNMERGE_DESTINATION,
                data: serde_json::json!({"fingerprints": chosen, "source_id": issue_id.to_string()}),
            },
        ],
        crate::entity::now_ms(),
    )
    .await?;
    txn.commit().await?;
    Ok(Some(Unmerged {
        source: issue_id,
        new_issue,
        hashes: chosen,
        events_moved: count,
        project_id: source.project_id,
        actor: actor.clone(),
    }))
}

/// Whether `s` looks like a grouping hash (32 lowercase hex digits) — what the API and
/// the pages accept before asking the database.
pub fn is_hash(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_distinct_per_project_and_namespaced() {
        assert_ne!(lock_key(1), lock_key(2));
        assert_eq!(lock_key(7) >> 32, 0x4d52_4745);
    }

    #[test]
    fn hashes_are_32_lowercase_hex() {
        assert!(is_hash("0123456789abcdef0123456789abcdef"));
        assert!(!is_hash("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_hash("abc"));
        assert!(!is_hash("0123456789abcdef0123456789abcdeg"));
    }
}
