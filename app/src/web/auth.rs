//! Accounts: first-run setup, login and logout, password change, accepting an invitation.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;

use super::WebState;
use super::context::{Ctx, Nav, safe_next};
use super::error::WebError;
use super::{session, sql};
use crate::accounts::{self, members, users};
use crate::first_run;

async fn user_count(ctx: &Ctx) -> Result<i64, WebError> {
    let row = sql::one(&ctx.app.db, "SELECT COUNT(*) AS n FROM users", vec![]).await?;
    match row {
        Some(r) => sql::get(&r, "n"),
        None => Ok(0),
    }
}

/// `/`: setup when nobody exists yet (which says where the setup link is), else the
/// first organization's issues.
pub async fn home(ctx: Ctx) -> Result<HttpResponse, WebError> {
    if ctx.user.is_none() {
        if first_run::state(&ctx.app.db).await? == first_run::State::Open {
            return Ok(ctx.redirect("/setup"));
        }
        return Ok(ctx.redirect("/login"));
    }
    match ctx.orgs.first() {
        Some(org) => Ok(ctx.redirect(&format!("/organizations/{}/issues", org.slug))),
        None => Ok(ctx.redirect("/account")),
    }
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    nav: Nav,
    /// The setup token, carried by the form (a hidden field) through validation errors.
    token: String,
    error: String,
    email: String,
    org_name: String,
    org_slug: String,
}

/// Whether setup may go on for a request carrying `token`: open, and the right token.
/// Closed setup sends GETs to the login page; a stranger is told where the link is.
async fn setup_allowed(ctx: &Ctx, token: &str) -> Result<Option<HttpResponse>, WebError> {
    match first_run::state(&ctx.app.db).await? {
        first_run::State::Done => return Ok(Some(ctx.redirect("/login"))),
        first_run::State::Orphaned => {
            return Err(WebError::Forbidden(
                "Faultline was set up, but no account is left. Create one with \
                 `faultline user create --superuser --email ...`."
                    .into(),
            ));
        }
        first_run::State::Open => {}
    }
    if !first_run::token_matches(&ctx.app.config.secret_key, token) {
        tracing::warn!(ip = %ctx.ip, "setup refused: missing or wrong setup token");
        return Err(WebError::Forbidden(first_run::NEEDS_TOKEN.into()));
    }
    Ok(None)
}

pub async fn setup_form(ctx: Ctx) -> Result<HttpResponse, WebError> {
    let token = ctx.q("token").to_string();
    if let Some(elsewhere) = setup_allowed(&ctx, &token).await? {
        return Ok(elsewhere);
    }
    ctx.page(&SetupPage {
        nav: ctx.nav("", ""),
        token,
        error: String::new(),
        email: String::new(),
        org_name: String::new(),
        org_slug: String::new(),
    })
}

/// A slug from a display name: `Acme Corp` -> `acme-corp`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    out.chars().take(50).collect()
}

/// Checks a new password and its confirmation.
pub fn check_new_password(password: &str, again: &str) -> Result<(), String> {
    users::check_password(password).map_err(|e| e.to_string())?;
    if password != again {
        return Err("The two passwords do not match.".into());
    }
    Ok(())
}

pub async fn setup_submit(mut ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, WebError> {
    let form = ctx.form(&body)?;
    let token = form.get("token").to_string();
    if setup_allowed(&ctx, &token).await?.is_some() {
        return Err(first_run::SetupError::AlreadySetUp.into());
    }
    let email = form.get("email").to_lowercase();
    let org_name = form.get("org_name").to_string();
    let org_slug = if form.get("org_slug").is_empty() {
        slugify(&org_name)
    } else {
        form.get("org_slug").to_string()
    };
    let again = |ctx: &Ctx, error: String| {
        ctx.page_with_status(
            &SetupPage {
                nav: ctx.nav("", ""),
                token: token.clone(),
                error,
                email: email.clone(),
                org_name: org_name.clone(),
                org_slug: org_slug.clone(),
            },
            StatusCode::BAD_REQUEST,
        )
    };
    if !email.contains('@') || email.len() > 254 {
        return again(&ctx, format!("{email:?} is not an email address."));
    }
    if let Err(e) = check_new_password(form.raw("password"), form.raw("password2")) {
        return again(&ctx, e);
    }
    if org_name.is_empty() || org_name.len() > 100 {
        return again(
            &ctx,
            "Name your organization (at most 100 characters).".into(),
        );
    }
    if let Err(e) = accounts::orgs::valid_slug(&org_slug) {
        return again(&ctx, format!("{e}"));
    }
    // Hashed before the claim's transaction: argon2 takes tens of milliseconds.
    let password = form.raw("password").to_string();
    let hash = ctx.web.passwords.hash(password).await?;
    let created = first_run::create_first_admin(
        &ctx.app.db,
        first_run::FirstAdmin {
            email: &email,
            password_hash: &hash,
            org_slug: &org_slug,
            org_name: &org_name,
        },
    )
    .await;
    let user_id = match created {
        Ok(id) => id,
        Err(first_run::SetupError::Invalid(e)) => return again(&ctx, e),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(email = %email, "first administrator created");
    first_run::forget(&ctx.app.config.data_dir);
    ctx.log_in(user_id, &hash).await?;
    Ok(ctx.redirect(&format!("/organizations/{org_slug}/projects?welcome=1")))
}

impl From<first_run::SetupError> for WebError {
    fn from(e: first_run::SetupError) -> Self {
        match e {
            first_run::SetupError::AlreadySetUp => WebError::Forbidden(e.to_string()),
            first_run::SetupError::Invalid(m) => WebError::BadRequest(m),
            first_run::SetupError::Db(e) => e.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    error: String,
    email: String,
    next: String,
}

pub async fn login_form(ctx: Ctx) -> Result<HttpResponse, WebError> {
    if ctx.user.is_some() {
        return Ok(ctx.redirect(safe_next(ctx.q("next")).unwrap_or("/")));
    }
    if user_count(&ctx).await? == 0 {
        return Ok(ctx.redirect("/setup"));
    }
    ctx.page(&LoginPage {
        nav: ctx.nav("", ""),
        error: String::new(),
        email: String::new(),
        next: ctx.q("next").to_string(),
    })
}

/// Verifies a password against a stored argon2 hash, off the async threads (~50 ms), one
/// per core at a time ([`super::passwords`]); `Err` (429) when too many wait for a turn.
pub async fn verify_password(
    web: &WebState,
    password: String,
    hash: String,
) -> Result<bool, WebError> {
    web.passwords.verify(password, hash).await
}

/// A valid hash nobody's password matches: unknown emails cost as much time as known ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0ia/BG3zbdJwFzwQCq8X5kCZIF1WwYyKKm5s3/9GGlU";

pub async fn login_submit(mut ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, WebError> {
    let form = ctx.form(&body)?;
    let email = form.get("email").to_lowercase();
    let next = form.get("next").to_string();
    // The attempt is counted before the password is checked, so guesses sent in parallel
    // cannot get past the limit; it is given back if the password is never checked.
    let web = ctx.web.clone();
    let attempt = match web.throttle.reserve(&email, &ctx.ip, now_ms()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::warn!(email = %email, ip = %ctx.ip, "login throttled");
            return Err(WebError::Throttled(wait));
        }
    };
    let row = sql::one(
        &ctx.app.db,
        "SELECT id, password_hash FROM users WHERE email = ?",
        vec![email.clone().into()],
    )
    .await?;
    let (user_id, hash) = match &row {
        Some(r) => (
            sql::get::<i64>(r, "id")?,
            sql::get::<String>(r, "password_hash")?,
        ),
        None => (0, DUMMY_HASH.to_string()),
    };
    let ok = verify_password(&web, form.raw("password").to_string(), hash.clone()).await?
        && user_id != 0;
    if !ok {
        attempt.failed();
        return ctx.page_with_status(
            &LoginPage {
                nav: ctx.nav("", ""),
                error: "Wrong email or password.".into(),
                email,
                next,
            },
            StatusCode::UNAUTHORIZED,
        );
    }
    attempt.succeeded();
    ctx.log_in(user_id, &hash).await?;
    Ok(ctx.redirect(safe_next(&next).unwrap_or("/")))
}

pub async fn logout(mut ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, WebError> {
    ctx.form(&body)?;
    ctx.log_out().await?;
    Ok(ctx.redirect("/login"))
}

/// `POST /account/sessions/end`: "log out everywhere" ends every session of the user,
/// this one included (a lost laptop's session cannot be told apart from this one, and
/// logging in again is cheap), then shows the login page.
pub async fn end_all_sessions(mut ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, WebError> {
    let user_id = ctx.user()?.id;
    ctx.form(&body)?;
    let ended = session::end_all(&ctx.app.db, user_id, None, now_ms()).await?;
    tracing::info!(user_id, ended, "user logged out everywhere");
    ctx.log_out().await?;
    Ok(ctx.redirect("/login"))
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Nav,
    email: String,
    error: String,
    done: bool,
    is_superuser: bool,
    /// Live sessions of the user, this one included.
    sessions: i64,
}

pub async fn account(ctx: Ctx) -> Result<HttpResponse, WebError> {
    let user = ctx.user()?;
    ctx.page(&AccountPage {
        nav: ctx.nav("", "account"),
        email: user.email.clone(),
        error: String::new(),
        done: ctx.q("done") == "password",
        is_superuser: user.is_superuser,
        sessions: session::live_count(&ctx.app.db, user.id, now_ms()).await?,
    })
}

pub async fn change_password(mut ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, WebError> {
    let user = ctx.user()?.clone();
    let form = ctx.form(&body)?;
    let web = ctx.web.clone();
    let now = now_ms();
    let attempt = web
        .throttle
        .reserve(&user.email, &ctx.ip, now)
        .map_err(WebError::Throttled)?;
    let sessions = session::live_count(&ctx.app.db, user.id, now).await?;
    let fail = |ctx: &Ctx, error: String| {
        ctx.page_with_status(
            &AccountPage {
                nav: ctx.nav("", "account"),
                email: user.email.clone(),
                error,
                done: false,
                is_superuser: user.is_superuser,
                sessions,
            },
            StatusCode::BAD_REQUEST,
        )
    };
    let current = form.raw("current").to_string();
    if !verify_password(&web, current, user.password_hash.clone()).await? {
        attempt.failed();
        return fail(&ctx, "The current password is wrong.".into());
    }
    attempt.succeeded();
    if let Err(e) = check_new_password(form.raw("password"), form.raw("password2")) {
        return fail(&ctx, e);
    }
    let hash = web.passwords.hash(form.raw("password").to_string()).await?;
    users::set_password_hash(&ctx.app.db, user.id, &hash).await?;
    // Every other session of this user ends: their password tag no longer matches, and
    // their rows are revoked too. This browser goes on in a new session.
    session::end_all(&ctx.app.db, user.id, None, now).await?;
    ctx.log_in(user.id, &hash).await?;
    Ok(ctx.redirect("/account?done=password"))
}

async fn find_invite(ctx: &Ctx, token: &str) -> Result<members::Invite, WebError> {
    // A used, expired or unknown link is the same "not found" page.
    members::find_invite(&ctx.app.db, token)
        .await
        .map_err(|e| match e {
            accounts::AccountError::NotFound(_) => WebError::NotFound,
            e => e.into(),
        })
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    nav: Nav,
    org_name: String,
    role: String,
    logged_in_as: String,
    error: String,
    email: String,
}

pub async fn invite_form(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, WebError> {
    let invite = find_invite(&ctx, &path).await?;
    ctx.page(&InvitePage {
        nav: ctx.nav("", ""),
        org_name: invite.org_name,
        role: invite.role,
        logged_in_as: ctx
            .user
            .as_ref()
            .map(|u| u.email.clone())
            .unwrap_or_default(),
        error: String::new(),
        email: String::new(),
    })
}

/// Accepting: a logged-in user joins; a visitor creates an account and joins.
pub async fn invite_accept(
    mut ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let form = ctx.form(&body)?;
    let invite = find_invite(&ctx, &path).await?;
    let db = ctx.app.db.clone();
    let user_id = match &ctx.user {
        Some(u) => u.id,
        None => {
            let email = form.get("email").to_lowercase();
            let fail = |ctx: &Ctx, error: String| {
                ctx.page_with_status(
                    &InvitePage {
                        nav: ctx.nav("", ""),
                        org_name: invite.org_name.clone(),
                        role: invite.role.clone(),
                        logged_in_as: String::new(),
                        error,
                        email: email.clone(),
                    },
                    StatusCode::BAD_REQUEST,
                )
            };
            if let Err(e) = check_new_password(form.raw("password"), form.raw("password2")) {
                return fail(&ctx, e);
            }
            let hash = ctx
                .web
                .passwords
                .hash(form.raw("password").to_string())
                .await?;
            let id = match users::create_hashed(&db, &email, &hash, false).await {
                Ok(id) => id,
                Err(e) => {
                    return fail(
                        &ctx,
                        format!(
                            "{e}. If this is your account, log in first, then open the link again."
                        ),
                    );
                }
            };
            ctx.log_in(id, &hash).await?;
            id
        }
    };
    members::accept_invite(&db, &invite, user_id).await?;
    Ok(ctx.redirect(&format!("/organizations/{}/issues", invite.org_slug)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_names() {
        assert_eq!(slugify("Acme Corp"), "acme-corp");
        assert_eq!(slugify("  Ünïcode & Co!  "), "n-code-co");
        assert_eq!(slugify("<script>"), "script");
    }

    #[test]
    fn passwords_are_checked() {
        assert!(check_new_password("short", "short").is_err());
        assert!(check_new_password("long enough", "long enougH").is_err());
        assert!(check_new_password("long enough", "long enough").is_ok());
    }
}
