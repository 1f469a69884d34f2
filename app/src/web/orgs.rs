//! Organizations: creating one, and the organization settings page (members and roles,
//! invitation links, API tokens). One template partial per section
//! (`templates/org_settings/`).

use actix_web::{HttpResponse, web};
use askama::Template;
use faultline_core::entity::now_ms;

use super::access::{self, Poster};
use super::auth::slugify;
use super::context::{Ctx, Nav, OrgRef};
use super::error::WebError;
use super::format;
use super::sql;

use crate::accounts::members::{INVITE_DAYS, ROLES};
use crate::accounts::tokens::{DEFAULT_SCOPES, SCOPES};
use crate::accounts::{self, AccountError, members, tokens};
use crate::api::auth::role_scopes;

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
    accounts::orgs::create(&ctx.app.db, &slug, Some(name), Some(&user.email))
        .await
        .map_err(|e| match e {
            AccountError::Db(e) => e.into(),
            e => WebError::BadRequest(e.to_string()),
        })?;
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

/// Change a member's role, or remove them. Only owners touch owners; the last owner stays.
pub async fn update_member(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org_slug, member_id) = path.into_inner();
    let (org, form) = access::org_form(&ctx, &org_slug, &body, Poster::Manager)?;
    let member_id = access::path_id(&member_id)?;
    let db = &ctx.app.db;
    let (changed, done) = match form.get("action") {
        "role" => (
            members::change_role(db, org.id, &org.role, member_id, form.get("role")).await,
            "member",
        ),
        "remove" => (
            members::remove(db, org.id, &org.role, member_id).await,
            "removed",
        ),
        other => {
            return Err(WebError::BadRequest(format!(
                "Unknown action {other:?}: use role or remove."
            )));
        }
    };
    match changed {
        Ok(()) => Ok(ctx.redirect(&format!("/organizations/{}/settings?done={done}", org.slug))),
        // What the manager can correct is shown on the settings page.
        Err(AccountError::Invalid(e) | AccountError::Forbidden(e)) => {
            settings_page(
                &ctx,
                &org,
                Shown {
                    error: e,
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates an invitation link (shown once; only its hash is kept).
pub async fn create_invite(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let (org, form) = access::org_form(&ctx, &path, &body, Poster::Manager)?;
    let user_id = ctx.user()?.id;
    let created = members::create_invite(
        &ctx.app.db,
        org.id,
        (user_id, &org.role),
        form.get("role"),
        form.get("email"),
    )
    .await;
    let token = match created {
        Ok(token) => token,
        Err(AccountError::Invalid(e) | AccountError::Forbidden(e)) => {
            return settings_page(
                &ctx,
                &org,
                Shown {
                    error: e,
                    ..Default::default()
                },
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
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
    members::revoke_invite(&ctx.app.db, org.id, id).await?;
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
    let scopes = form.all("scope");
    let fail = |error: String| {
        settings_page(
            &ctx,
            &org,
            Shown {
                error,
                ..Default::default()
            },
        )
    };
    if scopes.is_empty() {
        return fail("Pick at least one scope.".into()).await;
    }
    let name = form.get("name");
    let token =
        match tokens::create_for_member(&ctx.app.db, org.id, (user_id, &org.role), &scopes, name)
            .await
        {
            Ok(token) => token,
            Err(AccountError::Invalid(e) | AccountError::Forbidden(e)) => return fail(e).await,
            Err(e) => return Err(e.into()),
        };
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
    // Managers revoke any token of the organization; members only their own.
    let only_of = if org.can_manage() {
        None
    } else {
        Some(user_id)
    };
    tokens::revoke(&ctx.app.db, org.id, id, only_of).await?;
    Ok(ctx.redirect(&format!(
        "/organizations/{}/settings?done=revoked",
        org.slug
    )))
}
