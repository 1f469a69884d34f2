//! Merging and unmerging issues: each event remembers its primary grouping hash (so an
//! unmerge knows which stored events follow the hashes it splits off), and a merged-away
//! issue's id keeps pointing at the issue it was merged into (old links still work).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000060_issue_merge"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // NULL for events stored before this migration: an unmerge leaves those with the
        // issue they are in. No index: an unmerge reads one issue's events through
        // `events_issue_timestamp`, and ingest should not pay for another index.
        m.alter_table(
            Table::alter()
                .table("events")
                .add_column(string_len_null("primary_hash", 32))
                .to_owned(),
        )
        .await?;
        // Sentry's GroupRedirect: the id of a merged-away issue → the issue it lives in now.
        m.create_table(
            Table::create()
                .table("issue_redirects")
                .if_not_exists()
                .col(big_integer("from_id").primary_key())
                .col(big_integer("issue_id"))
                .col(big_integer("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("issue_redirects", "issue_id")
                        .to("issues", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("issue_redirects_issue")
                .table("issue_redirects")
                .col("issue_id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table("issue_redirects")
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("events")
                .drop_column("primary_hash")
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
