//! What the web pages need beyond the first schema: invitations of new members, and the
//! index the issues list uses when sorting by users affected.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000030_web"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // An invitation link: only the SHA-256 of its token is kept, like API tokens.
        m.create_table(
            Table::create()
                .table("invites")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("organization_id"))
                .col(string_len_uniq("token_hash", 64))
                .col(string("role"))
                .col(string("email").default(""))
                .col(big_integer_null("created_by"))
                .col(big_integer("created_at"))
                .col(big_integer("expires_at"))
                .col(big_integer_null("accepted_at"))
                .col(big_integer_null("accepted_by"))
                .foreign_key(
                    ForeignKey::create()
                        .from("invites", "organization_id")
                        .to("organizations", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("invites_org")
                .table("invites")
                .col("organization_id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("issues_project_users_seen")
                .table("issues")
                .col("project_id")
                .col("users_seen")
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
                .name("issues_project_users_seen")
                .table("issues")
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table("invites").if_exists().to_owned())
            .await?;
        Ok(())
    }
}
