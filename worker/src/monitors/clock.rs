//! The monitor clock: once a minute it marks check-ins that never came (`missed`: nothing by
//! the expected time plus the margin) and runs that never ended (`timeout`: `in_progress`
//! past `max_runtime`), per monitor and environment, with expected times computed in the
//! monitor's time zone (`Schedule::next_after`).
//!
//! Exactly one clock acts, however many workers run: the `monitor_clock` row is a lease
//! (holder, `lease_until`) that a worker takes when it is free or expired and renews while
//! it runs; a worker that stops gives it up at once ([`release`]), one that dies loses it
//! when it expires. A tick is one transaction that first moves `monitor_clock.last_tick`
//! from the previous tick to this one — only for the holder — and then applies the tick's
//! effects, so a tick's effects and its being done commit together: after a crash or a
//! hand-over the next holder continues from the last committed tick, no tick is lost (every
//! whole minute since is run in order, up to a day back) and none runs twice (a second
//! clock's claim of the same tick matches no row). Missed check-ins are also guarded per
//! environment: the row's `next_checkin_latest` must still be the one the tick read.

use faultline_core::monitors::{self, Monitor};
use faultline_core::protocol::check_in::CheckInStatus;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::sql::{begin_write, execute, query_all, query_one};

/// One tick a minute, on whole minutes (Unix ms).
pub const TICK_MS: i64 = 60_000;
/// How long a lease lasts without renewal.
pub const LEASE_MS: i64 = 20_000;
/// How often the running clock renews its lease and looks for due ticks.
pub const POLL_MS: u64 = 5_000;
/// The furthest back a clock catches up after a stop; older ticks are skipped (a day of
/// downtime should not replay into thousands of missed check-ins per monitor).
pub const MAX_CATCH_UP_TICKS: i64 = 24 * 60;

/// What a run of the clock did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub ticks: u32,
    pub missed: u32,
    pub timeouts: u32,
}

/// Takes or renews the lease for `holder`; whether it holds it now.
pub async fn acquire(db: &DatabaseConnection, holder: &str, now: i64) -> Result<bool, DbErr> {
    let n = execute(
        db,
        "UPDATE monitor_clock SET holder = ?, lease_until = ? \
         WHERE id = 1 AND (holder = ? OR lease_until < ?)",
        vec![
            holder.into(),
            (now + LEASE_MS).into(),
            holder.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(n == 1)
}

/// Gives the lease up (a stopping worker), so another worker's clock takes over at once.
pub async fn release(db: &DatabaseConnection, holder: &str) -> Result<(), DbErr> {
    execute(
        db,
        "UPDATE monitor_clock SET lease_until = 0 WHERE id = 1 AND holder = ?",
        vec![holder.into()],
    )
    .await?;
    Ok(())
}

/// Runs every tick due by `now` that is not done yet, if `holder` holds the lease.
pub async fn run_due(db: &DatabaseConnection, holder: &str, now: i64) -> Result<TickReport, DbErr> {
    let mut report = TickReport::default();
    let target = now.div_euclid(TICK_MS) * TICK_MS;
    loop {
        let row = query_one(
            db,
            "SELECT holder, last_tick FROM monitor_clock WHERE id = 1",
            vec![],
        )
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("monitor_clock".into()))?;
        let current: String = row.try_get("", "holder")?;
        if current != holder {
            return Ok(report);
        }
        let last: Option<i64> = row.try_get("", "last_tick")?;
        let next = match last {
            Some(t) => (t + TICK_MS).max(target - MAX_CATCH_UP_TICKS * TICK_MS),
            None => target,
        };
        if next > target {
            return Ok(report);
        }
        match tick(db, holder, last, next).await? {
            Some((missed, timeouts)) => {
                report.ticks += 1;
                report.missed += missed;
                report.timeouts += timeouts;
            }
            // Another clock took the lease or the tick: stop here.
            None => return Ok(report),
        }
    }
}

/// One tick at `t`, all or nothing; `None` if this clock may not run it.
async fn tick(
    db: &DatabaseConnection,
    holder: &str,
    previous: Option<i64>,
    t: i64,
) -> Result<Option<(u32, u32)>, DbErr> {
    let txn = begin_write(db).await?;
    let claimed = execute(
        &txn,
        "UPDATE monitor_clock SET last_tick = ? WHERE id = 1 AND holder = ? AND COALESCE(last_tick, -1) = ?",
        vec![t.into(), holder.into(), previous.unwrap_or(-1).into()],
    )
    .await?;
    if claimed != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    let result = async {
        let missed = mark_missed(&txn, t).await?;
        let timeouts = mark_timeouts(&txn, t).await?;
        Ok::<_, DbErr>((missed, timeouts))
    }
    .await;
    match result {
        Ok(counts) => {
            txn.commit().await?;
            Ok(Some(counts))
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

/// Environments whose next check-in is overdue by `t` get a `missed` check-in.
async fn mark_missed(txn: &DatabaseTransaction, t: i64) -> Result<u32, DbErr> {
    let due = query_all(
        txn,
        "SELECT e.id, e.monitor_id, e.environment, e.next_checkin, e.next_checkin_latest \
         FROM monitor_environments e JOIN monitors m ON m.id = e.monitor_id \
         WHERE e.next_checkin_latest <= ? AND m.status = 'active' ORDER BY e.id",
        vec![t.into()],
    )
    .await?;
    let mut count = 0;
    for row in due {
        let env_id: i64 = row.try_get("", "id")?;
        let monitor_id: i64 = row.try_get("", "monitor_id")?;
        let environment: String = row.try_get("", "environment")?;
        let expected: Option<i64> = row.try_get("", "next_checkin")?;
        let latest: i64 = row.try_get("", "next_checkin_latest")?;
        let Some(monitor) = monitors::by_id(txn, monitor_id).await? else {
            continue;
        };
        let expected = expected.unwrap_or(latest);
        let margin = monitor.config.checkin_margin * 60_000;
        // The next expected time after the missed one; slots that are also over by `t`
        // (only when the margin is longer than the schedule's step) are skipped, not
        // reported one by one.
        let (tz, schedule) = (monitor.config.timezone, &monitor.config.schedule);
        let mut next = schedule.next_after(tz, expected);
        for _ in 0..10_000 {
            match next {
                Some(n) if n + margin <= t => next = schedule.next_after(tz, n),
                _ => break,
            }
        }
        let moved = execute(
            txn,
            "UPDATE monitor_environments SET next_checkin = ?, next_checkin_latest = ?, last_tick = ? \
             WHERE id = ? AND next_checkin_latest = ?",
            vec![
                next.into(),
                next.map(|n| n + margin).into(),
                t.into(),
                env_id.into(),
                latest.into(),
            ],
        )
        .await?;
        if moved != 1 {
            continue;
        }
        let guid = uuid::Uuid::new_v4().simple().to_string();
        execute(
            txn,
            "INSERT INTO monitor_checkins (guid, monitor_id, monitor_environment_id, status, \
             date_added, date_updated, expected_time) VALUES (?, ?, ?, 'missed', ?, ?, ?)",
            vec![
                guid.clone().into(),
                monitor_id.into(),
                env_id.into(),
                expected.into(),
                t.into(),
                expected.into(),
            ],
        )
        .await?;
        super::record_result(
            txn,
            &monitor,
            env_id,
            &environment,
            CheckInStatus::Missed,
            &guid,
            t,
        )
        .await?;
        count += 1;
    }
    Ok(count)
}

/// Check-ins still `in_progress` past their `timeout_at` by `t` become `timeout`.
async fn mark_timeouts(txn: &DatabaseTransaction, t: i64) -> Result<u32, DbErr> {
    let due = query_all(
        txn,
        "SELECT c.id, c.guid, c.monitor_id, c.monitor_environment_id, e.environment \
         FROM monitor_checkins c JOIN monitor_environments e ON e.id = c.monitor_environment_id \
         WHERE c.status = 'in_progress' AND c.timeout_at <= ? ORDER BY c.id",
        vec![t.into()],
    )
    .await?;
    let mut count = 0;
    let mut monitors_seen: std::collections::HashMap<i64, Option<Monitor>> = Default::default();
    for row in due {
        let id: i64 = row.try_get("", "id")?;
        let guid: String = row.try_get("", "guid")?;
        let monitor_id: i64 = row.try_get("", "monitor_id")?;
        let env_id: i64 = row.try_get("", "monitor_environment_id")?;
        let environment: String = row.try_get("", "environment")?;
        let monitor = match monitors_seen.get(&monitor_id) {
            Some(m) => m.clone(),
            None => {
                let m = monitors::by_id(txn, monitor_id).await?;
                monitors_seen.insert(monitor_id, m.clone());
                m
            }
        };
        let Some(monitor) = monitor else { continue };
        let changed = execute(
            txn,
            "UPDATE monitor_checkins SET status = 'timeout', date_updated = ? \
             WHERE id = ? AND status = 'in_progress'",
            vec![t.into(), id.into()],
        )
        .await?;
        if changed != 1 {
            continue;
        }
        execute(
            txn,
            "UPDATE monitor_environments SET last_tick = ? WHERE id = ?",
            vec![t.into(), env_id.into()],
        )
        .await?;
        if monitor.status == "active" {
            super::record_result(
                txn,
                &monitor,
                env_id,
                &environment,
                CheckInStatus::Timeout,
                &guid,
                t,
            )
            .await?;
        }
        count += 1;
    }
    Ok(count)
}

/// The clock of one worker process: renews its lease and runs due ticks every few
/// seconds until `stop` turns true, then hands the lease over.
pub async fn run(db: DatabaseConnection, mut stop: tokio::sync::watch::Receiver<bool>) {
    let holder = format!(
        "{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(POLL_MS));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = chrono::Utc::now().timestamp_millis();
        match acquire(&db, &holder, now).await {
            Ok(true) => match run_due(&db, &holder, now).await {
                Ok(r) if r.missed + r.timeouts > 0 => {
                    tracing::info!(
                        missed = r.missed,
                        timeouts = r.timeouts,
                        "monitor clock ticked"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "monitor clock tick failed; will retry"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "monitor clock lease failed; will retry"),
        }
    }
    if let Err(e) = release(&db, &holder).await {
        tracing::warn!(error = %e, "could not hand the monitor clock over; it expires by itself");
    }
}
