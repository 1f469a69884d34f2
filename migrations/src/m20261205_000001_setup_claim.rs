//! The first-run claim: one row (id 1) once `/setup` created the first administrator.
//!
//! Its primary key is what makes setup atomic on both engines: the first user is written
//! in the same transaction as this row, so of two concurrent setups the second's insert
//! conflicts (PostgreSQL makes it wait for the first's commit, SQLite's write lock
//! serializes them) and it creates nothing. The row also keeps setup closed for good,
//! even if every account is deleted later. Installations that already have users are
//! claimed here.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000001_setup_claim"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("setup_claims")
                .if_not_exists()
                // Always 1: the table holds at most one row.
                .col(ColumnDef::new("id").integer().not_null().primary_key())
                // The administrator setup created (NULL for installations claimed by
                // this migration); no foreign key, the row outlives the user.
                .col(ColumnDef::new("user_id").big_integer().null())
                .col(ColumnDef::new("claimed_at").big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO setup_claims (id, user_id, claimed_at) \
                 SELECT 1, NULL, 0 WHERE EXISTS (SELECT 1 FROM users)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("setup_claims").if_exists().to_owned())
            .await
    }
}
