//! The state of artifact bundle assembly, per organization and bundle checksum, so that
//! every web process answers sentry-cli's assemble polls alike (`created`, `assembling`,
//! `ok`, `error` + detail), and the blob garbage collector's index on upload time.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000010_assemble_tasks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("assemble_tasks")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("organization_id"))
                // sha1 of the whole bundle file as sentry-cli names it.
                .col(string_len("checksum", 40))
                // artifact_bundle | release_bundle
                .col(string("kind"))
                // created | assembling | ok | error
                .col(string("state"))
                .col(text_null("detail"))
                .col(big_integer("created_at"))
                .col(big_integer("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("assemble_tasks", "organization_id")
                        .to("organizations", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("assemble_tasks_org_checksum")
                .table("assemble_tasks")
                .col("organization_id")
                .col("checksum")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("blobs_created_at")
                .table("blobs")
                .col("created_at")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("blobs_created_at")
                .table("blobs")
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table("assemble_tasks").if_exists().to_owned())
            .await
    }
}
