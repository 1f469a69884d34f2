//! Server-side records of logged-in sessions, so that logging out (here or everywhere)
//! ends a session for good: a signed cookie alone stays valid until it expires, even
//! after the browser forgot it. Keyed by the SHA-256 of the session's nonce (the cookie
//! itself is never stored).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000010_user_sessions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("user_sessions")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("user_id"))
                // hex SHA-256 of the cookie's nonce: the one lookup per request.
                .col(string_len_uniq("nonce_hash", 64))
                .col(big_integer("created_at"))
                // Updated at most once a minute.
                .col(big_integer("last_seen_at"))
                // Set by logout, "log out everywhere" and password changes.
                .col(big_integer_null("revoked_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("user_sessions", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("user_sessions_user")
                .table("user_sessions")
                .col("user_id")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("user_sessions").if_exists().to_owned())
            .await
    }
}
