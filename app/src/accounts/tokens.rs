//! API tokens: organization tokens (no owner; `faultline token create`, for CI) and
//! member tokens (made on the settings page; they act as their owner, cut down to the
//! owner's current role on every request by `api::auth`). Only a token's SHA-256 is kept.

use faultline_core::entity::{api_token, now_ms, user};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{AccountError, Result, exec, orgs, token_hash};
use crate::api::auth::role_scopes;

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

/// The scopes a token gets when none are named: what sentry-cli needs in CI.
pub const DEFAULT_SCOPES: &[&str] = &[
    "org:read",
    "project:read",
    "project:write",
    "project:releases",
    "event:read",
    "event:write",
];

/// Reads scopes as people write them (`a,b`, `a b`, repeated): known names, each once;
/// none named means [`DEFAULT_SCOPES`].
pub fn parse_scopes<S: AsRef<str>>(given: &[S]) -> Result<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for s in given
        .iter()
        .flat_map(|s| s.as_ref().split([',', ' ']))
        .filter(|s| !s.is_empty())
    {
        if !SCOPES.contains(&s) {
            return Err(AccountError::Invalid(format!(
                "Unknown scope {s:?}: use {}.",
                SCOPES.join(", ")
            )));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    if scopes.is_empty() {
        scopes = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
    }
    Ok(scopes)
}

/// Creates an organization token (no owner) for the organization `org_slug`; returns the
/// token, which is shown only now.
pub async fn create_for_org(
    conn: &impl ConnectionTrait,
    org_slug: &str,
    scopes: &[String],
    name: &str,
) -> Result<String> {
    let org = orgs::find(conn, org_slug).await?;
    let scopes = parse_scopes(scopes)?;
    create(conn, org.id, None, &scopes, name).await
}

/// Creates a token for a member, who holds `role`: nobody hands a token more than they can
/// do themselves (and the token is cut down to its owner's role on every request anyway).
pub async fn create_for_member(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    (user_id, role): (i64, &str),
    scopes: &[&str],
    name: &str,
) -> Result<String> {
    let scopes = parse_scopes(scopes)?;
    if let Some(s) = scopes
        .iter()
        .find(|s| !role_scopes(role).contains(&s.as_str()))
    {
        return Err(AccountError::Forbidden(format!(
            "Your role ({role}) does not grant {s}, so your tokens cannot have it."
        )));
    }
    create(conn, organization_id, Some(user_id), &scopes, name).await
}

/// Creates a token as given, unchecked against anyone's role: for callers that checked
/// already (and tests that need a token a role no longer grants).
pub async fn create(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    user_id: Option<i64>,
    scopes: &[String],
    name: &str,
) -> Result<String> {
    // sentry-cli recognises `sntryu_` + 64 hex as a user-style token and sends it as is.
    let token = format!("sntryu_{}", hex::encode(rand::random::<[u8; 32]>()));
    let name: String = name.trim().chars().take(100).collect();
    api_token::ActiveModel {
        organization_id: Set(organization_id),
        user_id: Set(user_id),
        token_hash: Set(token_hash(&token)),
        token_hint: Set(token[token.len() - 4..].to_string()),
        name: Set(name),
        scopes: Set(scopes.join(" ")),
        created_at: Set(now_ms()),
        last_used_at: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(token)
}

/// Revokes token `id` of the organization `org_slug` (`faultline token revoke`).
pub async fn revoke_in_org(conn: &impl ConnectionTrait, org_slug: &str, id: i64) -> Result<()> {
    let org = orgs::find(conn, org_slug).await?;
    revoke(conn, org.id, id, None).await.map_err(|_| {
        AccountError::NotFound(format!(
            "Organization {org_slug} has no token {id}: see `faultline token list --org {org_slug}`."
        ))
    })
}

/// An API token as `faultline token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    /// The owner's email; `None` for an organization token.
    pub owner: Option<String>,
    pub name: String,
    /// The token's last four characters.
    pub hint: String,
    pub scopes: String,
    pub last_used_at: Option<i64>,
}

/// Every API token of the organization `org_slug`, oldest first.
pub async fn list(conn: &impl ConnectionTrait, org_slug: &str) -> Result<Vec<TokenInfo>> {
    let org = orgs::find(conn, org_slug).await?;
    let tokens = api_token::Entity::find()
        .filter(api_token::Column::OrganizationId.eq(org.id))
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        let owner = match t.user_id {
            Some(id) => Some(
                user::Entity::find_by_id(id)
                    .one(conn)
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

/// Revokes (deletes) token `id` of the organization; with `only_of_user`, only if that
/// user owns it (members revoke their own tokens, admins any). It stops working at its
/// next request.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    organization_id: i64,
    id: i64,
    only_of_user: Option<i64>,
) -> Result<()> {
    let n = match only_of_user {
        None => {
            exec(
                conn,
                "DELETE FROM api_tokens WHERE id = ? AND organization_id = ?",
                vec![id.into(), organization_id.into()],
            )
            .await?
        }
        Some(user_id) => {
            exec(
                conn,
                "DELETE FROM api_tokens WHERE id = ? AND organization_id = ? AND user_id = ?",
                vec![id.into(), organization_id.into(), user_id.into()],
            )
            .await?
        }
    };
    if n == 0 {
        return Err(AccountError::NotFound(format!(
            "The organization has no token {id}."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_read_and_checked() {
        assert_eq!(
            parse_scopes::<&str>(&[]).ok().map(|s| s.len()),
            Some(DEFAULT_SCOPES.len())
        );
        assert_eq!(
            parse_scopes(&["event:read,org:read", "event:read"]).ok(),
            Some(vec!["event:read".to_string(), "org:read".to_string()])
        );
        assert!(parse_scopes(&["org:admin"]).is_err());
        assert!(parse_scopes(&["nonsense"]).is_err());
    }
}
