//! An issue's timeline: status changes, assignments, regressions, merges and comments
//! (`core::issues::activity`). "First seen" has no row: it is read from the issue.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000050_issue_activity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // No foreign keys: issues are deleted (and merged) by the domain, which removes or
        // moves their activity in the same transaction; SQLite would need the table rebuilt
        // to change a key later.
        m.create_table(
            Table::create()
                .table("issue_activity")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("issue_id"))
                .col(big_integer("project_id"))
                // Sentry's activity type name: set_resolved, note, set_regression, ...
                .col(string("kind"))
                // Who did it: a user, or (organization tokens without an owner) the label
                // shown instead; both NULL for what the system did (a regression).
                .col(big_integer_null("user_id"))
                .col(string_null("actor"))
                // JSON object, Sentry's `data` of the activity.
                .col(text_null("data"))
                .col(big_integer("created_ms"))
                // A comment's last edit.
                .col(big_integer_null("edited_ms"))
                .to_owned(),
        )
        .await?;
        // The timeline of one issue, newest first.
        m.create_index(
            Index::create()
                .name("issue_activity_issue_created")
                .table("issue_activity")
                .col("issue_id")
                .col("created_ms")
                .col("id")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("issue_activity").if_exists().to_owned())
            .await
    }
}
