//! Which organization uploaded which chunk. Blob bytes stay content-addressed and shared
//! (`blobs`, by SHA-1), but a chunk counts as present for an organization only once that
//! organization uploaded it: `missingChunks` and assembly never see another organization's
//! uploads. Rows expire with the blob grace period (chunks wait there between upload and
//! assembly; uploading again renews them). Existing blobs get no owner: a chunk uploaded
//! before this migration and not yet assembled is reported missing once and uploaded again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000030_chunk_owners"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("chunk_owners")
                .if_not_exists()
                .col(big_integer("organization_id"))
                .col(string_len("sha1", 40))
                // Last upload by this organization, Unix milliseconds.
                .col(big_integer("created_at"))
                .primary_key(Index::create().col("organization_id").col("sha1"))
                .foreign_key(
                    ForeignKey::create()
                        .from("chunk_owners", "organization_id")
                        .to("organizations", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // "Does any organization still hold this blob as a chunk" when an artifact goes.
        m.create_index(
            Index::create()
                .name("chunk_owners_sha1")
                .table("chunk_owners")
                .col("sha1")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        // The collector's expiry.
        m.create_index(
            Index::create()
                .name("chunk_owners_created_at")
                .table("chunk_owners")
                .col("created_at")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("chunk_owners").if_exists().to_owned())
            .await
    }
}
