//! Cron monitors: monitors per project, their state per environment, check-ins, the
//! clock's lease, and the alert rule trigger for monitor failures.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000080_monitors"
    }
}

fn index(
    name: &'static str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table).if_not_exists();
    for c in cols {
        idx.col(*c);
    }
    if unique {
        idx.unique();
    }
    idx.to_owned()
}

fn fk(from: &'static str, col: &'static str, to: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from, col)
        .to(to, "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("monitors")
                .if_not_exists()
                .col(big_pk_auto("id"))
                // Sentry's `id` in the Web API: a UUID, 32 hex.
                .col(string_len("guid", 32))
                .col(big_integer("project_id"))
                .col(string_len("slug", 50))
                .col(string("name"))
                // active | disabled
                .col(string("status").default("active"))
                .col(boolean("is_muted").default(false))
                // crontab | interval; `schedule` is the crontab or "2 hour"
                .col(string("schedule_type"))
                .col(string("schedule"))
                .col(big_integer("checkin_margin"))
                .col(big_integer("max_runtime"))
                .col(string("timezone"))
                .col(big_integer("failure_issue_threshold"))
                .col(big_integer("recovery_threshold"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("monitors", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "monitors_project_slug",
            "monitors",
            &["project_id", "slug"],
            true,
        ))
        .await?;
        m.create_index(index("monitors_guid", "monitors", &["guid"], true))
            .await?;

        // The monitor's state in one environment; what the clock scans.
        m.create_table(
            Table::create()
                .table("monitor_environments")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("monitor_id"))
                .col(string("environment"))
                // active (no check-in yet) | ok | error
                .col(string("status").default("active"))
                .col(big_integer_null("last_checkin"))
                .col(big_integer_null("next_checkin"))
                // next_checkin + margin: no check-in by then is a missed one.
                .col(big_integer_null("next_checkin_latest"))
                // The newest clock tick (Unix ms, a whole minute) applied to this row.
                .col(big_integer_null("last_tick"))
                .col(big_integer("consecutive_failures").default(0))
                .col(big_integer("consecutive_oks").default(0))
                // The open monitor-failure issue, if any.
                .col(big_integer_null("issue_id"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("monitor_environments", "monitor_id", "monitors"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "monitor_environments_monitor_env",
            "monitor_environments",
            &["monitor_id", "environment"],
            true,
        ))
        .await?;
        m.create_index(index(
            "monitor_environments_due",
            "monitor_environments",
            &["next_checkin_latest"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("monitor_checkins")
                .if_not_exists()
                .col(big_pk_auto("id"))
                // The SDK's check_in_id (32 hex), or one of ours for missed check-ins.
                .col(string_len("guid", 32))
                .col(big_integer("monitor_id"))
                .col(big_integer("monitor_environment_id"))
                // in_progress | ok | error | missed | timeout
                .col(string("status"))
                .col(big_integer_null("duration_ms"))
                .col(string_null("release"))
                .col(string_null("trace_id"))
                .col(big_integer("date_added"))
                .col(big_integer("date_updated"))
                .col(big_integer_null("expected_time"))
                // in_progress: date_added + max_runtime.
                .col(big_integer_null("timeout_at"))
                .foreign_key(&mut fk("monitor_checkins", "monitor_id", "monitors"))
                .foreign_key(&mut fk(
                    "monitor_checkins",
                    "monitor_environment_id",
                    "monitor_environments",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "monitor_checkins_guid",
            "monitor_checkins",
            &["monitor_id", "guid"],
            true,
        ))
        .await?;
        m.create_index(index(
            "monitor_checkins_env_added",
            "monitor_checkins",
            &["monitor_environment_id", "date_added", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "monitor_checkins_timeout",
            "monitor_checkins",
            &["status", "timeout_at"],
            false,
        ))
        .await?;

        // The clock's lease: one row; the worker that holds it (until `lease_until`) ticks.
        m.create_table(
            Table::create()
                .table("monitor_clock")
                .if_not_exists()
                .col(big_integer("id").primary_key())
                .col(string("holder").default(""))
                .col(big_integer("lease_until").default(0))
                // The newest tick (a whole minute, Unix ms) whose effects are committed.
                .col(big_integer_null("last_tick"))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO monitor_clock (id, holder, lease_until) VALUES (1, '', 0)",
            )
            .await?;

        // Monitor failures are a trigger of their own in alert rules; existing rules (and
        // the default one) mail them, as they mail new issues.
        m.alter_table(
            Table::alter()
                .table("alert_rules")
                .add_column(boolean("on_monitor_failure").default(true))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("alert_rules")
                .drop_column("on_monitor_failure")
                .to_owned(),
        )
        .await?;
        for t in [
            "monitor_clock",
            "monitor_checkins",
            "monitor_environments",
            "monitors",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
