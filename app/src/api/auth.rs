//! Who is calling the API, and what they may touch.
//!
//! Every handler takes an [`ApiAuth`]. Today it is made from `Authorization: Bearer
//! <token>` (tokens of `faultline token create`, stored as SHA-256 hashes, scoped to one
//! organization). The seam for browser sessions: the session middleware of the pages puts
//! a [`SessionUser`] into the request's extensions; `ApiAuth` then acts as that user in the
//! organizations they are a member of. Objects of organizations the caller may not see
//! answer 404, exactly like objects that do not exist.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sha2::Digest;

use super::{ApiError, ApiResult, query_all, query_one};
use crate::startup::AppState;
use faultline_core::entity::now_ms;

/// A logged-in browser user, put into the request's extensions by the pages' session
/// middleware (after its CSRF check for unsafe methods). The API trusts it as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: i64,
}

/// The caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An API token: one organization, the scopes it was created with.
    Token {
        id: i64,
        organization_id: i64,
        scopes: Vec<String>,
    },
    /// A user with a browser session: every organization they are a member of (all of
    /// them for a superuser), with every scope.
    User { id: i64, is_superuser: bool },
}

/// A permission an endpoint needs, in Sentry's scope names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    OrgRead,
    ProjectRead,
    /// Uploading artifacts, creating releases and deploys.
    ProjectReleases,
    EventRead,
    EventWrite,
    EventAdmin,
}

impl Scope {
    /// The token scopes that grant this permission (a higher level grants the lower).
    fn granted_by(self) -> &'static [&'static str] {
        match self {
            Scope::OrgRead => &["org:read", "org:write", "org:admin"],
            Scope::ProjectRead => &[
                "project:read",
                "project:write",
                "project:admin",
                "project:releases",
            ],
            Scope::ProjectReleases => &["project:releases", "project:write", "project:admin"],
            Scope::EventRead => &["event:read", "event:write", "event:admin"],
            Scope::EventWrite => &["event:write", "event:admin"],
            Scope::EventAdmin => &["event:admin"],
        }
    }

    fn name(self) -> &'static str {
        self.granted_by()[0]
    }
}

/// An organization the caller may act on.
#[derive(Debug, Clone)]
pub struct Org {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
}

/// The authenticated caller of an API request, with the database to check access.
pub struct ApiAuth {
    pub principal: Principal,
    db: DatabaseConnection,
    /// `FAULTLINE_URL`, for links to pages.
    pub public_url: String,
}

impl FromRequest for ApiAuth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ApiAuth, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_string));
        let session = req.extensions().get::<SessionUser>().copied();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("AppState is not registered"))?;
            let public_url = state
                .config
                .public_url
                .as_str()
                .trim_end_matches('/')
                .to_string();
            ApiAuth::authenticate(state.db.clone(), public_url, header, session).await
        })
    }
}

impl ApiAuth {
    /// Authenticates a request from its `Authorization` header (wins) or its session user.
    pub async fn authenticate(
        db: DatabaseConnection,
        public_url: String,
        header: Option<Result<String, actix_web::http::header::ToStrError>>,
        session: Option<SessionUser>,
    ) -> ApiResult<ApiAuth> {
        let principal = match (header, session) {
            (Some(value), _) => {
                let value = value.map_err(|_| {
                    ApiError::unauthorized("the Authorization header is not valid text")
                })?;
                let token = bearer_token(&value).ok_or_else(|| {
                    ApiError::unauthorized(
                        "expected `Authorization: Bearer <token>` with a token from `faultline token create`",
                    )
                })?;
                token_principal(&db, token).await?
            }
            (None, Some(user)) => user_principal(&db, user.user_id).await?,
            (None, None) => {
                return Err(ApiError::unauthorized(
                    "Authentication credentials were not provided.",
                ));
            }
        };
        Ok(ApiAuth {
            principal,
            db,
            public_url,
        })
    }
}

/// The token of `Bearer <token>` (also Sentry's older `Token <token>`).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let token = rest.trim();
    ((scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && !token.is_empty())
    .then_some(token)
}

/// SHA-256 hex of a token, as stored in `api_tokens.token_hash`.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

async fn token_principal(db: &DatabaseConnection, token: &str) -> ApiResult<Principal> {
    let row = query_one(
        db,
        "SELECT id, organization_id, scopes, last_used_at FROM api_tokens WHERE token_hash = ?",
        vec![token_hash(token).into()],
    )
    .await?
    .ok_or_else(|| ApiError::unauthorized("Invalid token"))?;
    let id: i64 = row.try_get("", "id")?;
    let last_used: Option<i64> = row.try_get("", "last_used_at")?;
    let now = now_ms();
    // Remember use, at most once a minute per token: a CI upload makes hundreds of calls.
    if last_used.is_none_or(|t| now - t > 60_000) {
        super::execute(
            db,
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
            vec![now.into(), id.into()],
        )
        .await?;
    }
    let scopes: String = row.try_get("", "scopes")?;
    Ok(Principal::Token {
        id,
        organization_id: row.try_get("", "organization_id")?,
        scopes: scopes
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

async fn user_principal(db: &DatabaseConnection, user_id: i64) -> ApiResult<Principal> {
    let row = query_one(
        db,
        "SELECT id, is_superuser FROM users WHERE id = ?",
        vec![user_id.into()],
    )
    .await?
    .ok_or_else(|| ApiError::unauthorized("the session's user no longer exists"))?;
    Ok(Principal::User {
        id: row.try_get("", "id")?,
        is_superuser: row.try_get("", "is_superuser")?,
    })
}

const ORG_COLUMNS: &str = "o.id, o.slug, o.name, o.created_at";

fn org_from_row(row: &sea_orm::QueryResult) -> Result<Org, sea_orm::DbErr> {
    Ok(Org {
        id: row.try_get("", "id")?,
        slug: row.try_get("", "slug")?,
        name: row.try_get("", "name")?,
        created_at: row.try_get("", "created_at")?,
    })
}

impl ApiAuth {
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Refuses with 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> ApiResult<()> {
        match &self.principal {
            Principal::User { .. } => Ok(()),
            Principal::Token { scopes, .. } => {
                if scope
                    .granted_by()
                    .iter()
                    .any(|g| scopes.iter().any(|s| s == g))
                {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(format!(
                        "You do not have permission to perform this action: the token lacks the `{}` scope.",
                        scope.name()
                    )))
                }
            }
        }
    }

    /// True when the caller may act on this organization.
    pub async fn can_access(&self, db: &impl ConnectionTrait, org_id: i64) -> ApiResult<bool> {
        Ok(match &self.principal {
            Principal::Token {
                organization_id, ..
            } => *organization_id == org_id,
            Principal::User {
                is_superuser: true, ..
            } => true,
            Principal::User { id, .. } => query_one(
                db,
                "SELECT 1 AS one FROM members WHERE organization_id = ? AND user_id = ?",
                vec![org_id.into(), (*id).into()],
            )
            .await?
            .is_some(),
        })
    }

    /// The organization named by a URL's slug, if the caller may act on it; else 404.
    pub async fn organization(&self, slug: &str) -> ApiResult<Org> {
        let db = self.db();
        let row = query_one(
            db,
            &format!("SELECT {ORG_COLUMNS} FROM organizations o WHERE o.slug = ?"),
            vec![slug.to_string().into()],
        )
        .await?;
        let not_found = || ApiError::not_found(format!("organization `{slug}` not found"));
        let org = org_from_row(&row.ok_or_else(not_found)?)?;
        if self.can_access(db, org.id).await? {
            Ok(org)
        } else {
            Err(not_found())
        }
    }

    /// Every organization the caller may act on, by slug.
    pub async fn organizations(&self) -> ApiResult<Vec<Org>> {
        let db = self.db();
        let rows = match &self.principal {
            Principal::Token {
                organization_id, ..
            } => {
                query_all(
                    db,
                    &format!("SELECT {ORG_COLUMNS} FROM organizations o WHERE o.id = ?"),
                    vec![(*organization_id).into()],
                )
                .await?
            }
            Principal::User {
                is_superuser: true, ..
            } => {
                query_all(
                    db,
                    &format!("SELECT {ORG_COLUMNS} FROM organizations o ORDER BY o.slug"),
                    vec![],
                )
                .await?
            }
            Principal::User { id, .. } => {
                query_all(
                    db,
                    &format!(
                        "SELECT {ORG_COLUMNS} FROM organizations o JOIN members m ON m.organization_id = o.id \
                         WHERE m.user_id = ? ORDER BY o.slug"
                    ),
                    vec![(*id).into()],
                )
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(org_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The scopes to report in `GET /api/0/`.
    pub fn scopes(&self) -> Vec<String> {
        match &self.principal {
            Principal::Token { scopes, .. } => scopes.clone(),
            Principal::User { .. } => [
                "org:read",
                "org:write",
                "project:read",
                "project:write",
                "project:releases",
                "event:read",
                "event:write",
                "event:admin",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::entity::now_ms;

    /// The seam for browser sessions: a session user acts in the organizations they are a
    /// member of; another organization is 404 like a missing one; a superuser sees all.
    #[tokio::test]
    async fn session_users_act_in_their_organizations_only() {
        for (engine, db) in faultline_core::db::testing::both()
            .await
            .expect("databases")
        {
            for slug in ["a", "b"] {
                crate::cli::create_org(&db, slug, None, None)
                    .await
                    .expect("org");
            }
            for (email, su) in [("m@example.com", false), ("root@example.com", true)] {
                super::super::execute(
                    &db,
                    "INSERT INTO users (email, password_hash, is_superuser, created_at) VALUES (?, 'x', ?, ?)",
                    vec![email.into(), su.into(), now_ms().into()],
                )
                .await
                .expect("user");
            }
            let id = |email: &'static str| {
                let db = db.clone();
                async move {
                    super::super::query_one(
                        &db,
                        "SELECT id FROM users WHERE email = ?",
                        vec![email.into()],
                    )
                    .await
                    .expect("query")
                    .expect("row")
                    .try_get::<i64>("", "id")
                    .expect("id")
                }
            };
            let (member, root) = (id("m@example.com").await, id("root@example.com").await);
            super::super::execute(
                &db,
                "INSERT INTO members (organization_id, user_id, role, created_at) \
                 SELECT id, ?, 'member', ? FROM organizations WHERE slug = 'a'",
                vec![member.into(), now_ms().into()],
            )
            .await
            .expect("member");

            let auth = ApiAuth::authenticate(
                db.clone(),
                String::new(),
                None,
                Some(SessionUser { user_id: member }),
            )
            .await
            .expect("session accepted");
            assert!(matches!(auth.principal, Principal::User { .. }), "{engine}");
            assert_eq!(auth.organization("a").await.expect("own org").slug, "a");
            let err = auth.organization("b").await.expect_err("other org");
            assert_eq!(err.status, actix_web::http::StatusCode::NOT_FOUND);
            let orgs: Vec<String> = auth
                .organizations()
                .await
                .expect("list")
                .into_iter()
                .map(|o| o.slug)
                .collect();
            assert_eq!(orgs, ["a"]);
            assert!(auth.require(Scope::EventAdmin).is_ok());

            let su = ApiAuth::authenticate(
                db.clone(),
                String::new(),
                None,
                Some(SessionUser { user_id: root }),
            )
            .await
            .expect("superuser");
            assert_eq!(su.organizations().await.expect("list").len(), 2);
            // A header wins over the session; a vanished user is 401.
            let err = ApiAuth::authenticate(
                db.clone(),
                String::new(),
                Some(Ok("Bearer nope".into())),
                Some(SessionUser { user_id: member }),
            )
            .await
            .err()
            .expect("bad token");
            assert_eq!(err.status, actix_web::http::StatusCode::UNAUTHORIZED);
            let err = ApiAuth::authenticate(
                db.clone(),
                String::new(),
                None,
                Some(SessionUser { user_id: 999_999 }),
            )
            .await
            .err()
            .expect("no such user");
            assert_eq!(err.status, actix_web::http::StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Token abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
