//! Email alerts: the outbox the event store writes state changes to, delivery state on
//! the notification log, per-project throttle state, unsubscribes, and a default rule for
//! every project that existed before alerts did.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000040_alerts"
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
        // One row per issue state change (new / regression / unignored), written in the
        // same transaction as the events that caused it; dispatched exactly once.
        m.create_table(
            Table::create()
                .table("alert_outbox")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("project_id"))
                .col(big_integer("issue_id"))
                // new_issue | regression | unignored
                .col(string("kind"))
                // The event that caused it (32 hex), and what rule filters look at.
                .col(string_len("event_id", 32))
                .col(string("level"))
                .col(string_null("environment"))
                .col(string_null("release"))
                .col(big_integer("created_at"))
                // Set once rules and throttling turned it into notification rows.
                .col(big_integer_null("dispatched_at"))
                .foreign_key(&mut fk("alert_outbox", "project_id", "projects"))
                .foreign_key(&mut fk("alert_outbox", "issue_id", "issues"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_outbox_pending",
            "alert_outbox",
            &["dispatched_at", "id"],
            false,
        ))
        .await?;

        // The notification log doubles as the delivery queue of emails.
        for def in [
            big_integer_null("outbox_id"),
            string_len_null("event_id", 32),
            text_null("subject"),
            integer("attempts").default(0).to_owned(),
            // Next try (queued / failed) or end of the sending lease (sending).
            big_integer_null("next_attempt_at"),
            big_integer_null("sent_at"),
            // cooldown | cap, for suppressed rows; the digest that summarised it.
            string_null("throttle"),
            big_integer_null("digest_id"),
        ] {
            m.alter_table(
                Table::alter()
                    .table("notifications")
                    .add_column(def)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(index(
            "notifications_due",
            "notifications",
            &["status", "next_attempt_at"],
            false,
        ))
        .await?;
        m.create_index(index(
            "notifications_issue_created",
            "notifications",
            &["issue_id", "created_at"],
            false,
        ))
        .await?;
        m.create_index(index(
            "notifications_digest",
            "notifications",
            &["project_id", "throttle", "digest_id"],
            false,
        ))
        .await?;

        // Per project: a row to serialize dispatching on (PostgreSQL row lock), and when
        // the digest of alerts suppressed by the hourly cap is due.
        m.create_table(
            Table::create()
                .table("alert_project_state")
                .if_not_exists()
                .col(big_integer("project_id").primary_key())
                .col(big_integer_null("digest_due_at"))
                .col(big_integer("updated_at"))
                .foreign_key(&mut fk("alert_project_state", "project_id", "projects"))
                .to_owned(),
        )
        .await?;

        // Who asked not to get a project's alerts (members and extra addresses alike).
        m.create_table(
            Table::create()
                .table("alert_unsubscribes")
                .if_not_exists()
                .col(big_integer("project_id"))
                .col(string("email"))
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("project_id").col("email"))
                .foreign_key(&mut fk("alert_unsubscribes", "project_id", "projects"))
                .to_owned(),
        )
        .await?;

        // Projects created before alerts existed get the default rule new projects get.
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO alert_rules (project_id, name, enabled, on_new_issue, on_regression, \
                 on_unignored, notify_members, extra_recipients, created_at) \
                 SELECT p.id, 'New issues and regressions', TRUE, TRUE, TRUE, FALSE, TRUE, '', p.created_at \
                 FROM projects p WHERE NOT EXISTS (SELECT 1 FROM alert_rules r WHERE r.project_id = p.id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["alert_unsubscribes", "alert_project_state", "alert_outbox"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
