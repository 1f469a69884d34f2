//! The whole first schema: accounts, organizations, projects and their DSN keys, issues,
//! events, tag facets, releases and deploys, artifacts, API tokens, alerts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_initial"
    }
}

/// A table with a 64-bit auto-increment `id`.
fn table(name: &'static str) -> TableCreateStatement {
    Table::create()
        .table(name)
        .if_not_exists()
        .col(big_pk_auto("id"))
        .to_owned()
}

fn index(
    name: &'static str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table).if_not_exists();
    for c in cols {
        idx.col(*c);
    }
    if unique {
        idx.unique();
    }
    idx.to_owned()
}

fn fk(from: &'static str, col: &'static str, to: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from, col)
        .to(to, "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // People and organizations.
        m.create_table(
            table("users")
                .col(string_uniq("email"))
                .col(string("password_hash"))
                .col(boolean("is_superuser").default(false))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            table("organizations")
                .col(string_uniq("slug"))
                .col(string("name"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            table("members")
                .col(big_integer("organization_id"))
                .col(big_integer("user_id"))
                .col(string("role")) // owner | admin | member
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("members", "organization_id", "organizations"))
                .foreign_key(&mut fk("members", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "members_org_user",
            "members",
            &["organization_id", "user_id"],
            true,
        ))
        .await?;
        m.create_index(index("members_user", "members", &["user_id"], false))
            .await?;

        // Projects and their DSN keys.
        m.create_table(
            table("projects")
                .col(big_integer("organization_id"))
                .col(string("slug"))
                .col(string("name"))
                .col(string_null("platform"))
                .col(boolean("enabled").default(true))
                .col(integer("retention_days").default(90))
                .col(integer("max_events_per_issue").default(1000))
                // Numbers the project's issues for short ids (`WEB-12`).
                .col(big_integer("issue_counter").default(0))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("projects", "organization_id", "organizations"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "projects_org_slug",
            "projects",
            &["organization_id", "slug"],
            true,
        ))
        .await?;
        m.create_table(
            table("project_keys")
                .col(big_integer("project_id"))
                .col(string_len_uniq("public_key", 32))
                .col(string("label").default(""))
                .col(boolean("enabled").default(true))
                // Events per minute; NULL = unlimited.
                .col(integer_null("rate_limit_per_minute"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("project_keys", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "project_keys_project",
            "project_keys",
            &["project_id"],
            false,
        ))
        .await?;

        // Releases come before issues and events, which point at them by version string.
        m.create_table(
            table("releases")
                .col(big_integer("organization_id"))
                .col(string("version"))
                .col(string_null("ref"))
                .col(string_null("url"))
                .col(big_integer("date_created"))
                .col(big_integer_null("date_released"))
                .col(big_integer_null("first_event"))
                .col(big_integer_null("last_event"))
                .col(string("status").default("open"))
                .foreign_key(&mut fk("releases", "organization_id", "organizations"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "releases_org_version",
            "releases",
            &["organization_id", "version"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("release_projects")
                .if_not_exists()
                .col(big_integer("release_id"))
                .col(big_integer("project_id"))
                .col(big_integer("new_issues").default(0))
                .primary_key(Index::create().col("release_id").col("project_id"))
                .foreign_key(&mut fk("release_projects", "release_id", "releases"))
                .foreign_key(&mut fk("release_projects", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            table("deploys")
                .col(big_integer("release_id"))
                .col(string("environment"))
                .col(string_null("name"))
                .col(string_null("url"))
                .col(big_integer_null("date_started"))
                .col(big_integer("date_finished"))
                .foreign_key(&mut fk("deploys", "release_id", "releases"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("deploys_release", "deploys", &["release_id"], false))
            .await?;

        // Issues: one per fingerprint group; counters are summed per worker batch.
        m.create_table(
            table("issues")
                .col(big_integer("project_id"))
                .col(big_integer("short_id"))
                .col(text("title"))
                .col(text_null("culprit"))
                .col(string_null("exception_type"))
                .col(text_null("exception_value"))
                .col(string("level"))
                .col(string_null("platform"))
                // unresolved | resolved | resolved_in_next_release | ignored
                .col(string("status").default("unresolved"))
                // JSON: ignore-until conditions, the release current when resolved, ...
                .col(text_null("status_details"))
                .col(big_integer_null("resolved_at"))
                .col(big_integer("first_seen"))
                .col(big_integer("last_seen"))
                .col(big_integer("times_seen").default(0))
                .col(big_integer("users_seen").default(0))
                .col(string_null("first_release"))
                .col(string_null("last_release"))
                .foreign_key(&mut fk("issues", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "issues_project_short_id",
            "issues",
            &["project_id", "short_id"],
            true,
        ))
        .await?;
        m.create_index(index(
            "issues_project_last_seen",
            "issues",
            &["project_id", "last_seen", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "issues_project_first_seen",
            "issues",
            &["project_id", "first_seen", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "issues_project_times_seen",
            "issues",
            &["project_id", "times_seen", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "issues_project_status",
            "issues",
            &["project_id", "status", "last_seen"],
            false,
        ))
        .await?;
        // Every grouping hash that was ever merged into an issue.
        m.create_table(
            table("issue_hashes")
                .col(big_integer("project_id"))
                .col(string_len("hash", 32))
                .col(big_integer("issue_id"))
                .foreign_key(&mut fk("issue_hashes", "issue_id", "issues"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "issue_hashes_project_hash",
            "issue_hashes",
            &["project_id", "hash"],
            true,
        ))
        .await?;
        m.create_index(index(
            "issue_hashes_issue",
            "issue_hashes",
            &["issue_id"],
            false,
        ))
        .await?;

        m.create_table(
            table("events")
                .col(big_integer("project_id"))
                .col(big_integer("issue_id"))
                .col(string_len("event_id", 32))
                .col(big_integer("timestamp"))
                .col(big_integer("received"))
                .col(string("level"))
                .col(string_null("release"))
                .col(string_null("environment"))
                .col(string_null("platform"))
                .col(string_len_null("trace_id", 32))
                .col(string_null("user_ident"))
                .col(text("title"))
                .col(text_null("culprit"))
                // The normalized event as zstd-compressed JSON.
                .col(blob("payload"))
                .foreign_key(&mut fk("events", "issue_id", "issues"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "events_project_event_id",
            "events",
            &["project_id", "event_id"],
            true,
        ))
        .await?;
        m.create_index(index(
            "events_issue_timestamp",
            "events",
            &["issue_id", "timestamp", "id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "events_project_received",
            "events",
            &["project_id", "received"],
            false,
        ))
        .await?;
        m.create_index(index("events_trace", "events", &["trace_id"], false))
            .await?;

        // Tag facets and tag search without scanning events.
        m.create_table(
            Table::create()
                .table("issue_tag_values")
                .if_not_exists()
                .col(big_integer("issue_id"))
                .col(string("key"))
                .col(string("value"))
                .col(big_integer("times_seen").default(0))
                .col(big_integer("first_seen"))
                .col(big_integer("last_seen"))
                .primary_key(Index::create().col("issue_id").col("key").col("value"))
                .foreign_key(&mut fk("issue_tag_values", "issue_id", "issues"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "issue_tag_values_kv",
            "issue_tag_values",
            &["key", "value", "issue_id"],
            false,
        ))
        .await?;

        // Uploaded files: content-addressed blobs, and the artifacts that name them.
        m.create_table(
            Table::create()
                .table("blobs")
                .if_not_exists()
                .col(string_len("sha1", 40).primary_key())
                .col(big_integer("size"))
                .col(blob("data"))
                .col(big_integer("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            table("artifacts")
                .col(big_integer("organization_id"))
                .col(big_integer_null("release_id"))
                .col(string_null("dist"))
                .col(text("name"))
                // minified_source | source_map | source | bundle
                .col(string("kind"))
                .col(string_null("debug_id"))
                .col(string_len("sha1", 40))
                .col(big_integer("size"))
                .col(text("headers").default("{}"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("artifacts", "organization_id", "organizations"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "artifacts_debug_id",
            "artifacts",
            &["organization_id", "debug_id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "artifacts_release_name",
            "artifacts",
            &["release_id", "name"],
            false,
        ))
        .await?;
        m.create_index(index("artifacts_sha1", "artifacts", &["sha1"], false))
            .await?;

        // API tokens for sentry-cli and scripts, stored hashed.
        m.create_table(
            table("api_tokens")
                .col(big_integer("organization_id"))
                .col(big_integer_null("user_id"))
                .col(string_len_uniq("token_hash", 64))
                .col(string("token_hint"))
                .col(string("name").default(""))
                .col(text("scopes"))
                .col(big_integer("created_at"))
                .col(big_integer_null("last_used_at"))
                .foreign_key(&mut fk("api_tokens", "organization_id", "organizations"))
                .to_owned(),
        )
        .await?;

        // Alert rules and what was sent.
        m.create_table(
            table("alert_rules")
                .col(big_integer("project_id"))
                .col(string("name"))
                .col(boolean("enabled").default(true))
                .col(boolean("on_new_issue").default(true))
                .col(boolean("on_regression").default(true))
                .col(boolean("on_unignored").default(false))
                .col(string_null("environment"))
                .col(string_null("min_level"))
                .col(string_null("release"))
                .col(boolean("notify_members").default(true))
                .col(text("extra_recipients").default(""))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("alert_rules", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            table("notifications")
                .col(big_integer("project_id"))
                .col(big_integer_null("issue_id"))
                .col(big_integer_null("rule_id"))
                // new_issue | regression | unignored | digest | test
                .col(string("kind"))
                .col(string("recipient"))
                // queued | sent | failed | suppressed
                .col(string("status"))
                .col(text_null("reason"))
                .col(big_integer("created_at"))
                .foreign_key(&mut fk("notifications", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "notifications_project_created",
            "notifications",
            &["project_id", "created_at"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "notifications",
            "alert_rules",
            "api_tokens",
            "artifacts",
            "blobs",
            "issue_tag_values",
            "events",
            "issue_hashes",
            "issues",
            "deploys",
            "release_projects",
            "releases",
            "project_keys",
            "projects",
            "members",
            "organizations",
            "users",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
