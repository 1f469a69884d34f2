//! First run: while nobody has an account, `/setup` creates the first administrator, but
//! only for whoever holds the setup token that `faultline serve` and `faultline web`
//! print when they start (and write to `<data dir>/setup-token`, mode 0600).
//!
//! The token is an HMAC of the secret key, not a stored random value: the web processes of
//! a scaled deployment share `FAULTLINE_SECRET_KEY` and the database but no data
//! directory, so each derives the same token and any of them accepts the link another
//! printed, with nothing to store or clean up. It is accepted only while setup is open
//! (no user and no `setup_claims` row); the first administrator is written in the same
//! transaction as that row, so two concurrent setups create exactly one, and the token is
//! worthless from then on.

use std::path::{Path, PathBuf};

use faultline_core::config::Config;
use faultline_core::entity::now_ms;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};

use subtle::ConstantTimeEq;

use crate::accounts::{self, AccountError};
use crate::web::session::hmac_sha256;

/// The file in the data directory that holds the setup link while setup is open.
pub const TOKEN_FILE: &str = "setup-token";

/// What a visitor without the token is told (never the token itself).
pub const NEEDS_TOKEN: &str = "Nobody has an account yet, and only the operator may create the first one. \
Open the one-time setup link Faultline printed when it started: it is in the server's output \
(`docker compose logs web`, `journalctl -u faultline`) and in the file setup-token in its data \
directory. Or create an administrator with `faultline user create --superuser --email ...`.";

/// The setup token of an installation: 128 bits of HMAC-SHA256 of its secret key.
pub fn token(secret_key: &str) -> String {
    hex::encode(&hmac_sha256(secret_key.as_bytes(), b"faultline.setup.v1")[..16])
}

/// Whether `given` is this installation's setup token (constant time).
pub fn token_matches(secret_key: &str, given: &str) -> bool {
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(token(secret_key).as_bytes()))
}

/// The link the operator opens to set up Faultline.
pub fn link(config: &Config) -> String {
    format!(
        "{}/setup?token={}",
        config.public_url.as_str().trim_end_matches('/'),
        token(&config.secret_key)
    )
}

/// Where setup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nobody has an account and setup was never done: the token works.
    Open,
    /// Accounts exist; people log in.
    Done,
    /// Setup was done once but every account was deleted since: only the CLI can help.
    Orphaned,
}

/// Reads whether setup is open.
pub async fn state(db: &DatabaseConnection) -> Result<State, DbErr> {
    let users = count(db, "SELECT COUNT(*) AS n FROM users").await?;
    if users > 0 {
        return Ok(State::Done);
    }
    let claims = count(db, "SELECT COUNT(*) AS n FROM setup_claims").await?;
    Ok(if claims > 0 {
        State::Orphaned
    } else {
        State::Open
    })
}

async fn count<C: ConnectionTrait>(db: &C, sql: &str) -> Result<i64, DbErr> {
    let stmt = faultline_core::sql::stmt(db.get_database_backend(), sql, vec![]);
    match db.query_one_raw(stmt).await? {
        Some(row) => row.try_get::<i64>("", "n"),
        None => Ok(0),
    }
}

/// At the start of a web process: while setup is open, prints the setup link and writes
/// it to `<data dir>/setup-token` (mode 0600); once it is closed, removes that file.
pub async fn announce(config: &Config, db: &DatabaseConnection) -> anyhow::Result<()> {
    let path = config.data_dir.join(TOKEN_FILE);
    if state(db).await? != State::Open {
        forget(&config.data_dir);
        return Ok(());
    }
    let link = link(config);
    write_private(&path, format!("{link}\n").as_bytes()).map_err(|e| {
        anyhow::anyhow!(
            "cannot write {}: {e} (the data directory must be writable)",
            path.display()
        )
    })?;
    // On stdout, not in the log stream (nor exported as a span or log record): it is for
    // the operator's eyes at the console or in `docker compose logs`. With JSON logs it is
    // one JSON object like the log lines around it, so every line stays parseable.
    if config.log_json {
        println!(
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "level": "WARN",
                "target": "faultline_app::first_run",
                "message": "no administrator yet: open this one-time setup link",
                "setup_link": link,
                "file": path.display().to_string(),
            })
        );
    } else {
        println!(
            "\nFaultline has no administrator yet. To create one, open this one-time link:\n\n    {link}\n\n\
             (also in {}; it stops working once an administrator exists)\n",
            path.display()
        );
    }
    tracing::warn!(
        file = %path.display(),
        "no administrator yet: open the setup link printed on standard output"
    );
    Ok(())
}

/// Removes the setup-token file (setup is done); a missing file is fine.
pub fn forget(data_dir: &Path) {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(file = %path.display(), "setup is done: setup link removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove the setup link")
        }
    }
}

/// Writes a file only its owner can read: a fresh temporary file created with mode 0600,
/// renamed over `path` (a file left by an earlier start keeps no wider mode).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = std::fs::remove_file(&tmp);
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The first administrator and their organization, as the setup form gives them.
pub struct FirstAdmin<'a> {
    pub email: &'a str,
    /// Already hashed (argon2 is slow; it must not run inside the transaction).
    pub password_hash: &'a str,
    pub org_slug: &'a str,
    pub org_name: &'a str,
}

/// Why setup did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Somebody else set up first (or an account exists).
    #[error("Faultline is already set up. Log in instead.")]
    AlreadySetUp,
    /// Input the operator can correct.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<AccountError> for SetupError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Db(e) => SetupError::Db(e),
            e => SetupError::Invalid(e.to_string()),
        }
    }
}

/// Claims setup and creates the first administrator (a superuser), their organization and
/// their ownership of it, in one transaction whose first statement takes the claim: of
/// concurrent calls exactly one succeeds and the others answer `AlreadySetUp`. Returns the
/// new user's id.
pub async fn create_first_admin(
    db: &DatabaseConnection,
    admin: FirstAdmin<'_>,
) -> Result<i64, SetupError> {
    let now = now_ms();
    let txn = db.begin().await?;
    // First statement, a write: on SQLite it takes the write lock at once (no read
    // snapshot to upgrade), on PostgreSQL a concurrent claim waits for this commit and
    // then inserts nothing.
    let claimed = txn
        .execute_raw(faultline_core::sql::stmt(
            txn.get_database_backend(),
            "INSERT INTO setup_claims (id, claimed_at) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
            vec![now.into()],
        ))
        .await?
        .rows_affected();
    // A user made with `faultline user create` closes setup too.
    if claimed == 0 || count(&txn, "SELECT COUNT(*) AS n FROM users").await? > 0 {
        return Err(SetupError::AlreadySetUp);
    }
    // The same account operations as everywhere else, inside the claim's transaction.
    let user_id =
        accounts::users::create_hashed(&txn, admin.email, admin.password_hash, true).await?;
    accounts::orgs::insert(&txn, admin.org_slug, Some(admin.org_name), Some(user_id)).await?;
    txn.execute_raw(faultline_core::sql::stmt(
        txn.get_database_backend(),
        "UPDATE setup_claims SET user_id = ? WHERE id = 1",
        vec![user_id.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_follows_the_secret_key_and_is_checked_exactly() {
        let key = "0123456789abcdef0123456789abcdef";
        let t = token(key);
        assert_eq!(t.len(), 32);
        assert_eq!(t, token(key), "every process derives the same token");
        assert_ne!(t, token("another key, another installation!!"));
        assert!(token_matches(key, &t));
        assert!(!token_matches(key, ""));
        assert!(!token_matches(key, &t[..31]));
        assert!(!token_matches(key, &t.to_uppercase()));
    }

    #[cfg(unix)]
    #[test]
    fn the_token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("faultline-setup-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(TOKEN_FILE);
        // A file left with a wider mode is replaced, not reused.
        std::fs::write(&path, "old").expect("old file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, b"link\n").expect("written");
        let meta = std::fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "link\n");
        forget(&dir);
        assert!(!path.exists());
    }
}
