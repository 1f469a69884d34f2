//! The `faultline` command line: serve, web, worker, migrate, and the admin commands.

use std::io::Read;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use faultline_core::config::Config;
use faultline_core::protocol::dsn::Dsn;
use faultline_core::protocol::envelope::Envelope;
use sea_orm::DatabaseConnection;

use crate::accounts;
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
            accounts::users::create(&db, &email, &password, superuser).await?;
            eprintln!("user {email} created");
            Ok(())
        }
        Command::Org(OrgCommand::Create { slug, name, owner }) => {
            let db = open_db(config).await?;
            accounts::orgs::create(&db, &slug, name.as_deref(), owner.as_deref()).await?;
            eprintln!("organization {slug} created");
            Ok(())
        }
        Command::Project(ProjectCommand::Create {
            org,
            slug,
            platform,
        }) => {
            let db = open_db(config.clone()).await?;
            let (project, key) =
                accounts::projects::create(&db, &org, &slug, platform.as_deref()).await?;
            println!("{}", config.dsn(&key, project));
            Ok(())
        }
        Command::Token(TokenCommand::Create { org, scopes, name }) => {
            let db = open_db(config).await?;
            let token = accounts::tokens::create_for_org(&db, &org, &scopes, &name).await?;
            println!("{token}");
            Ok(())
        }
        Command::Token(TokenCommand::List { org }) => {
            let db = open_db(config).await?;
            let tokens = accounts::tokens::list(&db, &org).await?;
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
            accounts::tokens::revoke_in_org(&db, &org, id).await?;
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
    accounts::users::check_password(&password)?;
    Ok(password)
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
