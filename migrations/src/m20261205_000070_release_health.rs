//! Release health: session counters per (project, release, environment, hour), the state of
//! each individual session and each user per hour (so a later, worse update moves a count
//! instead of adding one), and the aggregate jobs already counted (so a redelivered job is
//! not counted twice).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000070_release_health"
    }
}

/// Sessions and users by final state: healthy, errored (not unhandled), unhandled,
/// abnormal, crashed — exclusive, so their sum is the total.
const STATES: [&str; 5] = ["healthy", "errored", "unhandled", "abnormal", "crashed"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut counts = Table::create();
        counts
            .table("session_counts")
            .if_not_exists()
            .col(big_integer("project_id"))
            .col(string("release"))
            // '' when the session named none (a key column cannot be NULL portably).
            .col(string("environment"))
            // Start of the hour the sessions started in, Unix ms.
            .col(big_integer("bucket"));
        for s in STATES {
            counts.col(big_integer(s).default(0));
        }
        for s in STATES {
            counts.col(big_integer(format!("users_{s}")).default(0));
        }
        counts.primary_key(
            Index::create()
                .col("project_id")
                .col("release")
                .col("environment")
                .col("bucket"),
        );
        m.create_table(counts.to_owned()).await?;
        m.create_index(
            Index::create()
                .name("session_counts_project_bucket")
                .table("session_counts")
                .col("project_id")
                .col("bucket")
                .if_not_exists()
                .to_owned(),
        )
        .await?;

        // One row per individual session (`sid`) while updates may still arrive for it
        // (Relay drops updates of sessions started more than 5 days ago).
        m.create_table(
            Table::create()
                .table("session_states")
                .if_not_exists()
                .col(big_integer("project_id"))
                .col(string("sid"))
                .col(string("release"))
                .col(string("environment"))
                .col(big_integer("bucket"))
                .col(small_integer("status"))
                .col(string_null("did"))
                .col(big_integer("updated"))
                .primary_key(Index::create().col("project_id").col("sid"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("session_states_bucket")
                .table("session_states")
                .col("bucket")
                .if_not_exists()
                .to_owned(),
        )
        .await?;

        // Each distinct user (`did`) per hour, release and environment, with the worst
        // state of their sessions: exact distinct counts, over any range.
        m.create_table(
            Table::create()
                .table("session_users")
                .if_not_exists()
                .col(big_integer("project_id"))
                .col(string("release"))
                .col(string("environment"))
                .col(big_integer("bucket"))
                .col(string("did"))
                .col(small_integer("status"))
                .primary_key(
                    Index::create()
                        .col("project_id")
                        .col("release")
                        .col("environment")
                        .col("bucket")
                        .col("did"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("session_users_project_bucket")
                .table("session_users")
                .col("project_id")
                .col("bucket")
                .if_not_exists()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("session_aggregate_jobs")
                .if_not_exists()
                .col(string("job_id").primary_key())
                .col(big_integer("received"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "session_aggregate_jobs",
            "session_users",
            "session_states",
            "session_counts",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
