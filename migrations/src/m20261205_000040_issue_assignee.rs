//! Issue assignment: the member an issue is assigned to (or nobody).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000040_issue_assignee"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A user id, no foreign key: SQLite cannot add one to an existing table, and the
        // domain clears assignments itself (a removed member's issues show nobody).
        m.alter_table(
            Table::alter()
                .table("issues")
                .add_column(big_integer_null("assignee_id"))
                .to_owned(),
        )
        .await?;
        // `assigned:me` / "assigned to me": the user's issues, most recent first.
        m.create_index(
            Index::create()
                .name("issues_assignee_last_seen")
                .table("issues")
                .col("assignee_id")
                .col("last_seen")
                .col("id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("issues_assignee_last_seen")
                .table("issues")
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("issues")
                .drop_column("assignee_id")
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
