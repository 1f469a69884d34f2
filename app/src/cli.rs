//! The `faultline` command line: serve, web, worker, migrate, and the admin commands.

use std::io::Read;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use faultline_core::config::Config;
use faultline_core::entity::{api_token, member, now_ms, organization, project, project_key, user};
use faultline_core::protocol::dsn::{Dsn, ProjectKey};
use faultline_core::protocol::envelope::Envelope;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use sha2::Digest;

use crate::startup::{Application, Roles};
use faultline_core::db;

/// Faultline: a self-hosted error tracker that speaks Sentry's protocol.
///
/// Configuration comes from the environment (FAULTLINE_BIND, FAULTLINE_URL,
/// FAULTLINE_DATA_DIR, DATABASE_URL, REDIS_URL, ...) or faultline.toml; see the README.
#[derive(Debug, Parser)]
#[command(name = "faultline", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server and the event worker in one process (the default).
    Serve,
    /// Run only the web server (ingest, API, pages); scale it out behind a load balancer.
    Web,
    /// Run only the event worker; run several against PostgreSQL and Redis.
    Worker,
    /// Apply database migrations and exit (they also run at every start).
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API tokens (for sentry-cli and scripts).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show queued jobs by state and the dead ones (jobs that failed every attempt).
    Jobs {
        /// Put every dead job back in the queue.
        #[arg(long)]
        retry_dead: bool,
    },
    /// Send a test email through the configured SMTP server (FAULTLINE_SMTP_URL).
    SendTestEmail {
        /// The address to send to.
        to: String,
    },
    /// Copy the embedded SQLite database to PATH while the server runs (PostgreSQL: pg_dump).
    Backup {
        /// The new file to write (never overwritten).
        path: std::path::PathBuf,
        /// Also copy the embedded queue (events accepted but not yet stored) to PATH.queue.db.
        #[arg(long)]
        with_queue: bool,
    },
    /// Send a real test event to a DSN, the way an SDK does.
    SendTestEvent {
        /// The DSN to send to, e.g. http://KEY@localhost:8000/1
        #[arg(long)]
        dsn: String,
        /// The message of the test event.
        #[arg(
            long,
            default_value = "This is a test event from faultline send-test-event"
        )]
        message: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from stdin (--password-stdin) or a prompt.
    Create {
        #[arg(long)]
        email: String,
        /// Make the user a superuser (may manage every organization).
        #[arg(long)]
        superuser: bool,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create {
        /// URL-safe identifier, e.g. `acme`.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// Email of an existing user who becomes the owner.
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Create a project and print its DSN (and nothing else) on stdout.
    Create {
        /// Slug of the organization the project belongs to.
        #[arg(long)]
        org: String,
        /// URL-safe identifier, e.g. `web`.
        slug: String,
        /// Platform, e.g. python, node, javascript, rust.
        #[arg(long)]
        platform: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (and nothing else) on stdout; it is stored hashed.
    Create {
        /// Slug of the organization the token may act on.
        #[arg(long)]
        org: String,
        /// Scopes, e.g. project:releases org:read (default: all a CI needs).
        #[arg(long, num_args = 1..)]
        scopes: Vec<String>,
        /// A name to recognise the token by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List an organization's API tokens: id, owner, name, scopes, last use (never the
    /// tokens themselves, which are stored hashed).
    List {
        /// Slug of the organization.
        #[arg(long)]
        org: String,
    },
    /// Revoke an API token at once (its id from `faultline token list`).
    Revoke {
        /// Slug of the organization the token belongs to.
        #[arg(long)]
        org: String,
        /// The token's id.
        id: i64,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::SendTestEvent { dsn, message } = &command {
        return send_test_event(dsn, message).await;
    }
    let config = Config::from_env()?;
    // Servers log what they do; one-shot admin commands only print their result.
    let serving = matches!(command, Command::Serve | Command::Web | Command::Worker);
    let _telemetry = crate::telemetry::init(&config, if serving { "info" } else { "warn" })?;
    match command {
        Command::Serve => {
            serve(
                config,
                Roles {
                    web: true,
                    worker: true,
                },
            )
            .await
        }
        Command::Web => {
            serve(
                config,
                Roles {
                    web: true,
                    worker: false,
                },
            )
            .await
        }
        Command::Worker => {
            serve(
                config,
                Roles {
                    web: false,
                    worker: true,
                },
            )
            .await
        }
        Command::Migrate => {
            let db = open_db(config).await?;
            drop(db);
            eprintln!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create {
            email,
            superuser,
            password_stdin,
        }) => {
            let db = open_db(config).await?;
            let password = read_password(password_stdin)?;
            create_user(&db, &email, &password, superuser).await?;
            eprintln!("user {email} created");
            Ok(())
        }
        Command::Org(OrgCommand::Create { slug, name, owner }) => {
            let db = open_db(config).await?;
            create_org(&db, &slug, name.as_deref(), owner.as_deref()).await?;
            eprintln!("organization {slug} created");
            Ok(())
        }
        Command::Project(ProjectCommand::Create {
            org,
            slug,
            platform,
        }) => {
            let db = open_db(config.clone()).await?;
            let (project, key) = create_project(&db, &org, &slug, platform.as_deref()).await?;
            println!("{}", config.dsn(&key, project));
            Ok(())
        }
        Command::Token(TokenCommand::Create { org, scopes, name }) => {
            let db = open_db(config).await?;
            let token = create_token(&db, &org, &scopes, &name).await?;
            println!("{token}");
            Ok(())
        }
        Command::Token(TokenCommand::List { org }) => {
            let db = open_db(config).await?;
            let tokens = list_tokens(&db, &org).await?;
            if tokens.is_empty() {
                eprintln!("organization {org} has no API tokens");
            }
            for t in tokens {
                println!(
                    "{}\t{}\t{}\t...{}\t{}\tlast used {}",
                    t.id,
                    t.owner.as_deref().unwrap_or("(organization)"),
                    if t.name.is_empty() { "-" } else { &t.name },
                    t.hint,
                    t.scopes,
                    t.last_used_at
                        .map(|ms| chrono::DateTime::from_timestamp_millis(ms)
                            .map(|d| d.to_rfc3339())
                            .unwrap_or_default())
                        .unwrap_or_else(|| "never".into()),
                );
            }
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { org, id }) => {
            let db = open_db(config).await?;
            revoke_token(&db, &org, id).await?;
            eprintln!("token {id} of {org} revoked");
            Ok(())
        }
        Command::Jobs { retry_dead } => {
            let mut config = config;
            config.prepare_data_dir()?;
            let queue = crate::queue::Queue::open(&config).await?;
            if retry_dead {
                println!("{} dead jobs queued again", queue.retry_dead().await?);
                return Ok(());
            }
            let report = queue.report(20).await?;
            for (status, count) in &report.by_status {
                println!("{status:<10} {count}");
            }
            if report.dead.is_empty() {
                println!("no dead jobs");
            }
            for (id, attempts, error) in &report.dead {
                println!(
                    "dead {id} after {attempts} attempts: {}",
                    error.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        Command::SendTestEmail { to } => {
            let db = open_db(config.clone()).await?;
            let mut config = config;
            config.prepare_data_dir()?;
            let ctx = faultline_worker::alerts::AlertContext::new(db, &config)?;
            if !ctx.mailer.is_configured() {
                bail!(
                    "SMTP is not configured: set FAULTLINE_SMTP_URL (e.g. smtp://mail.example.com:587?tls=required)"
                );
            }
            faultline_worker::alerts::deliver::send_test_email(&ctx, &to, None)
                .await
                .map_err(|e| anyhow!("sending to {to} failed: {e}"))?;
            println!("test email sent to {to}");
            Ok(())
        }
        Command::Backup { path, with_queue } => {
            let report = crate::backup::run(&config, &path, with_queue).await?;
            println!(
                "database backed up to {} ({} bytes)",
                report.database.0.display(),
                report.database.1
            );
            match report.queue {
                Some((p, n)) => println!("queue backed up to {} ({n} bytes)", p.display()),
                None => eprintln!(
                    "note: queue.db (events accepted but not yet stored, usually empty within \
                     seconds) was not copied; add --with-queue to copy it too"
                ),
            }
            Ok(())
        }
        Command::SendTestEvent { .. } => unreachable!("handled above"),
    }
}

async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    let app = Application::build(config, roles).await?;
    app.run_until_stopped().await
}

async fn open_db(mut config: Config) -> anyhow::Result<DatabaseConnection> {
    config.prepare_data_dir()?;
    let db = db::connect(&config).await?;
    db::migrate(&db).await?;
    Ok(db)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot prompt for a password (no terminal?); use --password-stdin")?;
        let second = rpassword::prompt_password("Password (again): ")
            .context("cannot prompt for a password")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    };
    if password.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(password)
}

/// Hashes a password with argon2id (PHC string with its own salt).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::{Argon2, PasswordHasher};
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("cannot hash the password: {e}"))
}

pub fn valid_slug(slug: &str) -> anyhow::Result<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 50
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !slug.chars().all(|c| c.is_ascii_digit());
    if !ok {
        bail!(
            "{slug:?} is not a valid slug: use lowercase letters, digits, '-' and '_' (not only digits), at most 50"
        );
    }
    Ok(())
}

pub async fn create_user(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
    superuser: bool,
) -> anyhow::Result<i64> {
    create_user_hashed(db, email, &hash_password(password)?, superuser).await
}

/// Creates a user whose password was already hashed ([`hash_password`]); the pages hash
/// through their bounded password gate (`web::passwords`).
pub async fn create_user_hashed(
    db: &DatabaseConnection,
    email: &str,
    password_hash: &str,
    superuser: bool,
) -> anyhow::Result<i64> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        bail!("{email:?} is not an email address");
    }
    if user::Entity::find()
        .filter(user::Column::Email.eq(&email))
        .one(db)
        .await?
        .is_some()
    {
        bail!("a user with email {email} already exists");
    }
    let model = user::ActiveModel {
        email: Set(email),
        password_hash: Set(password_hash.to_string()),
        is_superuser: Set(superuser),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(model.id)
}

pub async fn create_org(
    db: &DatabaseConnection,
    slug: &str,
    name: Option<&str>,
    owner: Option<&str>,
) -> anyhow::Result<i64> {
    valid_slug(slug)?;
    if organization::Entity::find()
        .filter(organization::Column::Slug.eq(slug))
        .one(db)
        .await?
        .is_some()
    {
        bail!("an organization with slug {slug} already exists");
    }
    let owner = match owner {
        Some(email) => Some(
            user::Entity::find()
                .filter(user::Column::Email.eq(email.trim().to_lowercase()))
                .one(db)
                .await?
                .ok_or_else(|| {
                    anyhow!(
                        "no user with email {email}; create it first with `faultline user create`"
                    )
                })?,
        ),
        None => None,
    };
    let txn = db.begin().await?;
    let org = organization::ActiveModel {
        slug: Set(slug.to_string()),
        name: Set(name.unwrap_or(slug).to_string()),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    if let Some(owner) = owner {
        member::ActiveModel {
            organization_id: Set(org.id),
            user_id: Set(owner.id),
            role: Set("owner".into()),
            created_at: Set(now_ms()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(org.id)
}

async fn find_org(db: &DatabaseConnection, slug: &str) -> anyhow::Result<organization::Model> {
    organization::Entity::find()
        .filter(organization::Column::Slug.eq(slug))
        .one(db)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "no organization with slug {slug}; create it with `faultline org create {slug}`"
            )
        })
}

/// Creates a project with one DSN key; returns the project id and the public key.
pub async fn create_project(
    db: &DatabaseConnection,
    org_slug: &str,
    slug: &str,
    platform: Option<&str>,
) -> anyhow::Result<(i64, String)> {
    valid_slug(slug)?;
    let org = find_org(db, org_slug).await?;
    if project::Entity::find()
        .filter(project::Column::OrganizationId.eq(org.id))
        .filter(project::Column::Slug.eq(slug))
        .one(db)
        .await?
        .is_some()
    {
        bail!("organization {org_slug} already has a project {slug}");
    }
    let txn = db.begin().await?;
    let project = project::ActiveModel {
        organization_id: Set(org.id),
        slug: Set(slug.to_string()),
        name: Set(slug.to_string()),
        platform: Set(platform.map(str::to_string)),
        enabled: Set(true),
        retention_days: Set(90),
        max_events_per_issue: Set(1000),
        issue_counter: Set(0),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let key = ProjectKey::generate().to_string();
    project_key::ActiveModel {
        project_id: Set(project.id),
        public_key: Set(key.clone()),
        label: Set("Default".into()),
        enabled: Set(true),
        rate_limit_per_minute: Set(None),
        created_at: Set(now_ms()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    faultline_worker::alerts::rules::create_default(&txn, project.id).await?;
    txn.commit().await?;
    Ok((project.id, key))
}

/// The scopes a token gets when none are named: what sentry-cli needs in CI.
const DEFAULT_SCOPES: &[&str] = &[
    "org:read",
    "project:read",
    "project:write",
    "project:releases",
    "event:read",
    "event:write",
];

/// Creates an API token for an organization; returns the token (only ever shown now).
pub async fn create_token(
    db: &DatabaseConnection,
    org_slug: &str,
    scopes: &[String],
    name: &str,
) -> anyhow::Result<String> {
    let org = find_org(db, org_slug).await?;
    let scopes: Vec<String> = if scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        scopes
            .iter()
            .flat_map(|s| s.split([',', ' ']))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    create_token_for(db, org.id, None, &scopes, name).await
}

/// Creates an API token of an organization (optionally on behalf of a user) and returns it;
/// only its SHA-256 is stored. The web pages create tokens through this too.
pub async fn create_token_for(
    db: &DatabaseConnection,
    organization_id: i64,
    user_id: Option<i64>,
    scopes: &[String],
    name: &str,
) -> anyhow::Result<String> {
    // sentry-cli recognises `sntryu_` + 64 hex as a user-style token and sends it as is.
    let token = format!("sntryu_{}", hex::encode(rand::random::<[u8; 32]>()));
    api_token::ActiveModel {
        organization_id: Set(organization_id),
        user_id: Set(user_id),
        token_hash: Set(hex::encode(sha2::Sha256::digest(token.as_bytes()))),
        token_hint: Set(token[token.len() - 4..].to_string()),
        name: Set(name.to_string()),
        scopes: Set(scopes.join(" ")),
        created_at: Set(now_ms()),
        last_used_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(token)
}

/// An API token as `faultline token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    /// The owner's email; `None` for an organization token (made by `token create`).
    pub owner: Option<String>,
    pub name: String,
    /// The token's last four characters.
    pub hint: String,
    pub scopes: String,
    pub last_used_at: Option<i64>,
}

/// Every API token of an organization, oldest first.
pub async fn list_tokens(
    db: &DatabaseConnection,
    org_slug: &str,
) -> anyhow::Result<Vec<TokenInfo>> {
    let org = find_org(db, org_slug).await?;
    let tokens = api_token::Entity::find()
        .filter(api_token::Column::OrganizationId.eq(org.id))
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        let owner = match t.user_id {
            Some(id) => Some(
                user::Entity::find_by_id(id)
                    .one(db)
                    .await?
                    .map(|u| u.email)
                    .unwrap_or_else(|| format!("user {id}")),
            ),
            None => None,
        };
        out.push(TokenInfo {
            id: t.id,
            owner,
            name: t.name,
            hint: t.token_hint,
            scopes: t.scopes,
            last_used_at: t.last_used_at,
        });
    }
    out.sort_by_key(|t| t.id);
    Ok(out)
}

/// Revokes (deletes) an API token of an organization; it stops working at its next request.
pub async fn revoke_token(db: &DatabaseConnection, org_slug: &str, id: i64) -> anyhow::Result<()> {
    let org = find_org(db, org_slug).await?;
    let deleted = api_token::Entity::delete_many()
        .filter(api_token::Column::Id.eq(id))
        .filter(api_token::Column::OrganizationId.eq(org.id))
        .exec(db)
        .await?
        .rows_affected;
    if deleted == 0 {
        bail!(
            "organization {org_slug} has no token {id}: see `faultline token list --org {org_slug}`"
        );
    }
    Ok(())
}

/// Sends one envelope with a message event, as an SDK would, and prints the event id.
async fn send_test_event(dsn: &str, message: &str) -> anyhow::Result<()> {
    let dsn = Dsn::parse(dsn).map_err(|e| anyhow!("--dsn is not a valid DSN: {e}"))?;
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let event = serde_json::json!({
        "event_id": event_id,
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "platform": "other",
        "level": "info",
        "logger": "faultline.send-test-event",
        "message": { "formatted": message },
        "sdk": { "name": "faultline.cli", "version": env!("CARGO_PKG_VERSION") },
        "tags": { "source": "send-test-event" },
    });
    let body =
        Envelope::from_event_json(uuid::Uuid::parse_str(&event_id)?, event.to_string()).to_bytes();
    let url = dsn.envelope_url();
    let auth = format!(
        "Sentry sentry_key={}, sentry_version=7, sentry_client=faultline-cli/{}",
        dsn.public_key(),
        env!("CARGO_PKG_VERSION")
    );
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        agent
            .post(&url)
            .header("X-Sentry-Auth", &auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .send(&body[..])
            .map_err(|e| anyhow!("cannot send to {url}: {e}"))
            .map(|mut r| {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (status, text)
            })
    })
    .await??;
    if answer.0 != 200 {
        bail!(
            "the server refused the event: HTTP {} {}",
            answer.0,
            answer.1.trim()
        );
    }
    println!("{event_id}");
    Ok(())
}
