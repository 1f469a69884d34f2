//! Organizations: creating one, and the organization settings page (members and roles,
//! invitation links, API tokens). One template partial per section
//! (`templates/org_settings/`).

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;

use super::access::{self, Poster};
use super::auth::{slugify, token_hash};
use super::context::{Ctx, Nav, OrgRef};
use super::error::WebError;
use super::format;
use super::sql;
use crate::api::auth::role_scopes;
use crate::cli;

/// Roles, most powerful first.
pub const ROLES: &[&str] = &["owner", "admin", "member"];

/// Scopes a token may get (Sentry's names, as sentry-cli asks for them).
pub const SCOPES: &[&str] = &[
    "org:read",
    "project:read",
    "project:write",
    "project:releases",
    "event:read",
    "event:write",
    "event:admin",
];

/// Scopes preselected in the form: what sentry-cli needs in CI.
pub const DEFAULT_SCOPES: &[&str] = &[
    "org:read",
    "project:read",
    "project:write",
    "project:releases",
    "event:read",
    "event:write",
];

/// How long an invitation link works.
pub const INVITE_DAYS: i64 = 7;

pub async fn org_home(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, WebError> {
    let org = access::org(&ctx, &path)?;
    Ok(ctx.redirect(&format!("/organizations/{}/issues", org.slug)))
}

/// `POST /organizations/new`: superusers create further organizations and own them.
pub async fn create_org(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, WebError> {
    let user = ctx.user()?.clone();
    let form = ctx.form(&body)?;
    if !user.is_superuser {
        return Err(WebError::Forbidden(
            "Only superusers create organizations.".into(),
        ));
    }
    let name = form.get("name");
    let slug = if form.get("slug").is_empty() {
        slugify(name)
    } else {
        form.get("slug").to_string()
    };
    if name.is_empty() || name.len() > 100 {
        return Err(WebError::BadRequest(
            "Name the organization (at most 100 characters).".into(),
        ));
    }
    cli::create_org(&ctx.app.db, &slug, Some(name), Some(&user.email))
        .await
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    Ok(ctx.redirect(&format!("/organizations/{slug}/projects")))
}

pub struct MemberLine {
    pub id: i64,
    pub email: String,
    pub role: String,
    pub since: String,
    pub is_me: bool,
    pub action_url: String,
}

pub struct InviteLine {
    pub id: i64,
    pub email: String,
    pub role: String,
    pub expires: String,
    pub revoke_url: String,
}

pub struct TokenLine {
    pub id: i64,
    pub name: String,
    pub hint: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub mine: bool,
    pub revoke_url: String,
}

pub struct ScopeChoice {
    pub name: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "org_settings.html")]
struct OrgSettingsPage {
    nav: Nav,
    org: OrgRef,
    can_manage: bool,
    is_owner: bool,
    notice: String,
    error: String,
    // Section "members".
    members: Vec<MemberLine>,
    roles: Vec<&'static str>,
    // Section "invites".
    invites: Vec<InviteLine>,
    new_invite_url: String,
    // Section "tokens".
    tokens: Vec<TokenLine>,
    scopes: Vec<ScopeChoice>,
    new_token: String,
}

/// What a POST wants shown once on the settings page.
#[derive(Default)]
struct Shown {
    notice: String,
    error: String,
    new_invite_url: String,
    new_token: String,
}

async fn settings_page(ctx: &Ctx, org: &OrgRef, shown: Shown) -> Result<HttpResponse, WebError> {
    let user = ctx.user()?;
    let now = now_ms();
    let db = &ctx.app.db;
    let base = format!("/organizations/{}", org.slug);
    let mut members = Vec::new();
    for r in sql::all(
        db,
        "SELECT m.id, m.role, m.created_at, m.user_id, u.email FROM members m \
         JOIN users u ON u.id = m.user_id WHERE m.organization_id = ? ORDER BY u.email",
        vec![org.id.into()],
    )
    .await?
    {
        let id: i64 = sql::get(&r, "id")?;
        members.push(MemberLine {
            id,
            email: sql::get(&r, "email")?,
            role: sql::get(&r, "role")?,
            since: format::ago(sql::get(&r, "created_at")?, now),
            is_me: sql::get::<i64>(&r, "user_id")? == user.id,
            action_url: format!("{base}/members/{id}"),
        });
    }
    let mut invites = Vec::new();
    let mut tokens = Vec::new();
    if org.can_manage() {
        for r in sql::all(
            db,
            "SELECT id, email, role, expires_at FROM invites \
             WHERE organization_id = ? AND accepted_at IS NULL AND expires_at > ? ORDER BY id DESC",
            vec![org.id.into(), now.into()],
        )
        .await?
        {
            let id: i64 = sql::get(&r, "id")?;
            invites.push(InviteLine {
                id,
                email: sql::get(&r, "email")?,
                role: sql::get(&r, "role")?,
                expires: format::datetime(sql::get(&r, "expires_at")?),
                revoke_url: format!("{base}/invites/{id}/revoke"),
            });
        }
    }
    // Owners and admins see every token of the organization; members their own.
    for r in sql::all(
        db,
        "SELECT id, name, token_hint, scopes, created_at, last_used_at, user_id FROM api_tokens \
         WHERE organization_id = ? ORDER BY id DESC",
        vec![org.id.into()],
    )
    .await?
    {
        let owner: Option<i64> = sql::get(&r, "user_id")?;
        let mine = owner == Some(user.id);
        if !mine && !org.can_manage() {
            continue;
        }
        let id: i64 = sql::get(&r, "id")?;
        tokens.push(TokenLine {
            id,
            name: sql::get(&r, "name")?,
            hint: sql::get(&r, "token_hint")?,
            scopes: sql::get(&r, "scopes")?,
            created: format::ago(sql::get(&r, "created_at")?, now),
            last_used: sql::get::<Option<i64>>(&r, "last_used_at")?
                .map(|t| format::ago(t, now))
                .unwrap_or_else(|| "never".into()),
            mine,
            revoke_url: format!("{base}/tokens/{id}/revoke"),
        });
    }
    let notice = if shown.notice.is_empty() {
        match ctx.q("done") {
            "member" => "Member updated.",
            "removed" => "Member removed.",
            "revoked" => "Revoked.",
            _ => "",
        }
        .to_string()
    } else {
        shown.notice
    };
    let status = super::context::form_status(&shown.error);
    ctx.page_with_status(
        &OrgSettingsPage {
            nav: ctx.nav(&org.slug, "settings"),
            can_manage: org.can_manage(),
            is_owner: org.role == "owner",
            org: org.clone(),
            notice,
            error: shown.error,
            members,
            roles: ROLES.to_vec(),
            invites,
            new_invite_url: shown.new_invite_url,
            tokens,
            // Only what the user's role may do: a token can do no more than its owner.
            scopes: SCOPES
                .iter()
                .filter(|s| role_scopes(&org.role).contains(s))
                .map(|s| ScopeChoice {
                    name: s,
                    checked: DEFAULT_SCOPES.contains(s),
                })
                .collect(),
            new_token: shown.new_token,
        },
        status,
    )
}

pub async fn settings(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, WebError> {
    let org = access::org(&ctx, &path)?;
    settings_page(&ctx, &org, Shown::default()).await
}

async fn owner_count(ctx: &Ctx, org: &OrgRef) -> Result<i64, WebError> {
    let r = sql::one(
        &ctx.app.db,
        "SELECT COUNT(*) AS n FROM members WHERE organization_id = ? AND role = 'owner'",
        vec![org.id.into()],
    )
    .await?;
    match r {
        Some(r) => sql::get(&r, "n"),
        None => Ok(0),
    }
}

/// Change a member's role, or remove them. Only owners touch owners; the last owner stays.
pub async fn update_member(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, member_id) = path.into_inner();
    let (org, form) = access::org_form(&ctx, &org_slug, &body, Poster::Manager)?;
    let member_id = access::path_id(&member_id)?;
    let row = sql::one(
        &ctx.app.db,
        "SELECT role FROM members WHERE id = ? AND organization_id = ?",
        vec![member_id.into(), org.id.into()],
    )
    .await?
    .ok_or(WebError::NotFound)?;
    let current: String = sql::get(&row, "role")?;
    let is_owner = org.role == "owner";
    let fail = |e: &str| {
        settings_page(
            &ctx,
            &org,
            Shown {
                error: e.into(),
                ..Default::default()
            },
        )
    };
    match form.get("action") {
        "role" => {
            let role = form.get("role");
            if !ROLES.contains(&role) {
                return fail("Pick owner, admin or member.").await;
            }
            if (role == "owner" || current == "owner") && !is_owner {
                return fail("Only owners can make or change owners.").await;
            }
            if current == "owner" && role != "owner" && owner_count(&ctx, &org).await? <= 1 {
                return fail("An organization keeps at least one owner.").await;
            }
            sql::exec(
                &ctx.app.db,
                "UPDATE members SET role = ? WHERE id = ? AND organization_id = ?",
                vec![role.into(), member_id.into(), org.id.into()],
            )
            .await?;
            Ok(ctx.redirect(&format!("/organizations/{}/settings?done=member", org.slug)))
        }
        "remove" => {
            if current == "owner" && !is_owner {
                return fail("Only owners can remove owners.").await;
            }
            if current == "owner" && owner_count(&ctx, &org).await? <= 1 {
                return fail("An organization keeps at least one owner.").await;
            }
            sql::exec(
                &ctx.app.db,
                "DELETE FROM members WHERE id = ? AND organization_id = ?",
                vec![member_id.into(), org.id.into()],
            )
            .await?;
            Ok(ctx.redirect(&format!(
                "/organizations/{}/settings?done=removed",
                org.slug
            )))
        }
        other => Err(WebError::BadRequest(format!(
            "Unknown action {other:?}: use role or remove."
        ))),
    }
}

/// Creates an invitation link (shown once; only its hash is kept).
pub async fn create_invite(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org, form) = access::org_form(&ctx, &path, &body, Poster::Manager)?;
    let role = form.get("role");
    if !ROLES.contains(&role) {
        return settings_page(
            &ctx,
            &org,
            Shown {
                error: "Pick owner, admin or member.".into(),
                ..Default::default()
            },
        )
        .await;
    }
    if role == "owner" && org.role != "owner" {
        return settings_page(
            &ctx,
            &org,
            Shown {
                error: "Only owners can invite owners.".into(),
                ..Default::default()
            },
        )
        .await;
    }
    let email = format::truncate(form.get("email"), 254);
    let token = hex::encode(rand::random::<[u8; 24]>());
    let now = now_ms();
    sql::exec(
        &ctx.app.db,
        "INSERT INTO invites (organization_id, token_hash, role, email, created_by, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        vec![
            org.id.into(),
            token_hash(&token).into(),
            role.into(),
            email.into(),
            ctx.user()?.id.into(),
            now.into(),
            (now + INVITE_DAYS * 86_400_000).into(),
        ],
    )
    .await?;
    let link = format!("{}/invite/{token}", ctx.web.public_url);
    settings_page(
        &ctx,
        &org,
        Shown {
            notice: format!("Invitation created. Send this link; it works once, for {INVITE_DAYS} days, and is not shown again."),
            new_invite_url: link,
            ..Default::default()
        },
    )
    .await
}

pub async fn revoke_invite(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, invite_id) = path.into_inner();
    let (org, _) = access::org_form(&ctx, &org_slug, &body, Poster::Manager)?;
    let id = access::path_id(&invite_id)?;
    let n = sql::exec(
        &ctx.app.db,
        "DELETE FROM invites WHERE id = ? AND organization_id = ?",
        vec![id.into(), org.id.into()],
    )
    .await?;
    if n == 0 {
        return Err(WebError::NotFound);
    }
    Ok(ctx.redirect(&format!(
        "/organizations/{}/settings?done=revoked",
        org.slug
    )))
}

/// Creates an API token for the user in this organization; the token is shown once and
/// stored hashed, like `faultline token create`'s.
pub async fn create_token(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org, form) = access::org_form(&ctx, &path, &body, Poster::Member)?;
    let user_id = ctx.user()?.id;
    let mut scopes: Vec<String> = Vec::new();
    for s in form.all("scope") {
        if !SCOPES.contains(&s) {
            return settings_page(
                &ctx,
                &org,
                Shown {
                    error: format!("Unknown scope {s:?}."),
                    ..Default::default()
                },
            )
            .await;
        }
        // Nobody hands a token more than they can do themselves (and a token is cut down
        // to its owner's role on every request anyway).
        if !role_scopes(&org.role).contains(&s) {
            return settings_page(
                &ctx,
                &org,
                Shown {
                    error: format!(
                        "Your role ({}) does not grant {s}, so your tokens cannot have it.",
                        org.role
                    ),
                    ..Default::default()
                },
            )
            .await;
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    if scopes.is_empty() {
        return settings_page(
            &ctx,
            &org,
            Shown {
                error: "Pick at least one scope.".into(),
                ..Default::default()
            },
        )
        .await;
    }
    let name = format::truncate(form.get("name"), 100);
    let token = cli::create_token_for(&ctx.app.db, org.id, Some(user_id), &scopes, &name).await?;
    settings_page(
        &ctx,
        &org,
        Shown {
            notice: "Token created. Copy it now: it is not shown again.".into(),
            new_token: token,
            ..Default::default()
        },
    )
    .await
}

pub async fn revoke_token(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, token_id) = path.into_inner();
    let (org, _) = access::org_form(&ctx, &org_slug, &body, Poster::Member)?;
    let user_id = ctx.user()?.id;
    let id = access::path_id(&token_id)?;
    let n = if org.can_manage() {
        sql::exec(
            &ctx.app.db,
            "DELETE FROM api_tokens WHERE id = ? AND organization_id = ?",
            vec![id.into(), org.id.into()],
        )
        .await?
    } else {
        sql::exec(
            &ctx.app.db,
            "DELETE FROM api_tokens WHERE id = ? AND organization_id = ? AND user_id = ?",
            vec![id.into(), org.id.into(), user_id.into()],
        )
        .await?
    };
    if n == 0 {
        return Err(WebError::NotFound);
    }
    Ok(ctx.redirect(&format!(
        "/organizations/{}/settings?done=revoked",
        org.slug
    )))
}
