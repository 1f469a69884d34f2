//! Faultline's schema. The same migrations run on SQLite and PostgreSQL: only portable
//! column types (integers, text, blobs), times as Unix milliseconds in BIGINT columns so
//! that range queries and indexes behave identically on both engines.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000010_assemble_tasks;
mod m20261122_000030_web;
mod m20261122_000040_alerts;
mod m20261205_000001_setup_claim;
mod m20261205_000010_user_sessions;
mod m20261205_000020_test_email_sends;
mod m20261205_000030_chunk_owners;
mod m20261205_000040_issue_assignee;
mod m20261205_000050_issue_activity;
mod m20261205_000060_issue_merge;
mod m20261205_000070_release_health;
mod m20261205_000080_monitors;

/// Runs every migration in order; applied automatically at start.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000010_assemble_tasks::Migration),
            Box::new(m20261122_000030_web::Migration),
            Box::new(m20261122_000040_alerts::Migration),
            Box::new(m20261205_000001_setup_claim::Migration),
            Box::new(m20261205_000010_user_sessions::Migration),
            Box::new(m20261205_000020_test_email_sends::Migration),
            Box::new(m20261205_000030_chunk_owners::Migration),
            Box::new(m20261205_000040_issue_assignee::Migration),
            Box::new(m20261205_000050_issue_activity::Migration),
            Box::new(m20261205_000060_issue_merge::Migration),
            Box::new(m20261205_000070_release_health::Migration),
            Box::new(m20261205_000080_monitors::Migration),
        ]
    }
}
