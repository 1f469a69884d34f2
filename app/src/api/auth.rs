//! Who is calling the API, and what they may touch.
//!
//! Every handler takes an [`ApiAuth`], made from `Authorization: Bearer <token>` (tokens
//! stored as SHA-256 hashes, scoped to one organization) or from the browser session that
//! the pages' middleware put into the request's extensions as a [`SessionUser`]. Objects of
//! organizations the caller may not see answer 404, exactly like objects that do not
//! exist.
//!
//! What a caller may do follows the organization role, read on every request
//! ([`role_scopes`], Sentry's role table): a session user has the scopes of their role in
//! the organization at hand (a superuser every scope); a token made by a member has its
//! own scopes cut down to its owner's current role, and stops working once the owner has
//! left the organization. Organization tokens without an owner (`faultline token create`,
//! for CI) keep their scopes until they are revoked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::{ApiError, ApiResult, query_all, query_one};
use crate::startup::AppState;
use faultline_core::entity::now_ms;

/// A logged-in browser user, put into the request's extensions by the pages' session
/// middleware (after its CSRF check for unsafe methods). The API trusts it as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: i64,
}

/// Every scope there is (Sentry's `SENTRY_SCOPES`); an owner's role and a superuser have
/// them all.
pub const ALL_SCOPES: &[&str] = &[
    "org:read",
    "org:write",
    "org:admin",
    "org:integrations",
    "member:read",
    "member:write",
    "member:admin",
    "team:read",
    "team:write",
    "team:admin",
    "project:read",
    "project:write",
    "project:admin",
    "project:releases",
    "event:read",
    "event:write",
    "event:admin",
    "alerts:read",
    "alerts:write",
];

/// A member: Sentry's `member` role with "let members delete issues" off (Sentry's
/// `events_member_admin` option), and without alert editing: members triage (read, resolve,
/// assign, upload releases), as the pages let them.
const MEMBER_SCOPES: &[&str] = &[
    "org:read",
    "member:read",
    "team:read",
    "project:read",
    "project:releases",
    "event:read",
    "event:write",
    "alerts:read",
];

/// An admin: Sentry's `manager` role. Admins manage projects, keys, alert rules, members,
/// invitations and tokens in the pages, and delete issues; only `org:admin` (owners'
/// business: the organization itself, making owners) is missing.
const ADMIN_SCOPES: &[&str] = &[
    "org:read",
    "org:write",
    "org:integrations",
    "member:read",
    "member:write",
    "member:admin",
    "team:read",
    "team:write",
    "team:admin",
    "project:read",
    "project:write",
    "project:admin",
    "project:releases",
    "event:read",
    "event:write",
    "event:admin",
    "alerts:read",
    "alerts:write",
];

/// The scopes of an organization role (`members.role`); an unknown role has none.
pub fn role_scopes(role: &str) -> &'static [&'static str] {
    match role {
        "owner" => ALL_SCOPES,
        "admin" => ADMIN_SCOPES,
        "member" => MEMBER_SCOPES,
        _ => &[],
    }
}

/// The caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An API token: one organization, the scopes it was created with.
    Token {
        id: i64,
        organization_id: i64,
        scopes: Vec<String>,
        /// The scopes of the token's owner's current role (the token can do no more than
        /// its owner); `None` for organization tokens without an owner and tokens of a
        /// superuser.
        cap: Option<&'static [&'static str]>,
    },
    /// A user with a browser session: every organization they are a member of (all of
    /// them for a superuser), with the scopes of their role there (every scope for a
    /// superuser).
    User {
        id: i64,
        is_superuser: bool,
        /// (organization id, role) of every membership, as of this request.
        roles: Vec<(i64, String)>,
    },
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

    /// Whether any of `scopes` grants this permission.
    fn granted_in<S: AsRef<str>>(self, scopes: &[S]) -> bool {
        self.granted_by()
            .iter()
            .any(|g| scopes.iter().any(|s| s.as_ref() == *g))
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
    /// For a session user, whose scopes depend on the organization: the scopes this request
    /// asked for and the organizations it touched, so that each is checked against the
    /// other whichever comes first ([`ApiAuth::require`], [`ApiAuth::can_access`]).
    asked: Mutex<Asked>,
}

#[derive(Default)]
struct Asked {
    scopes: Vec<Scope>,
    orgs: Vec<i64>,
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
            asked: Mutex::new(Asked::default()),
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

use crate::accounts::token_hash;

async fn token_principal(db: &DatabaseConnection, token: &str) -> ApiResult<Principal> {
    // The owner's membership and superuser flag come with the token: one lookup.
    let row = query_one(
        db,
        "SELECT t.id, t.organization_id, t.user_id, t.scopes, t.last_used_at, m.role, u.is_superuser \
         FROM api_tokens t \
         LEFT JOIN members m ON m.organization_id = t.organization_id AND m.user_id = t.user_id \
         LEFT JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = ?",
        vec![token_hash(token).into()],
    )
    .await?
    .ok_or_else(|| ApiError::unauthorized("Invalid token"))?;
    let id: i64 = row.try_get("", "id")?;
    let owner: Option<i64> = row.try_get("", "user_id")?;
    let role: Option<String> = row.try_get("", "role")?;
    let owner_is_superuser: Option<bool> = row.try_get("", "is_superuser")?;
    let cap = match (owner, role) {
        (None, _) => None,
        // A token acts for its owner's membership: it ends with it.
        (Some(_), None) => {
            return Err(ApiError::unauthorized(
                "This token's owner is no longer a member of its organization; the token no longer works.",
            ));
        }
        (Some(_), Some(_)) if owner_is_superuser == Some(true) => None,
        (Some(_), Some(role)) => Some(role_scopes(&role)),
    };
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
        cap,
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
    let roles = query_all(
        db,
        "SELECT organization_id, role FROM members WHERE user_id = ?",
        vec![user_id.into()],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("", "organization_id")?, r.try_get("", "role")?)))
    .collect::<Result<Vec<(i64, String)>, sea_orm::DbErr>>()?;
    Ok(Principal::User {
        id: row.try_get("", "id")?,
        is_superuser: row.try_get("", "is_superuser")?,
        roles,
    })
}

/// The 403 of a scope the caller's role does not grant.
fn role_forbids(role: &str, scope: Scope) -> ApiError {
    ApiError::forbidden(format!(
        "You do not have permission to perform this action: your role in this organization ({role}) lacks the `{}` scope.",
        scope.name()
    ))
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

    /// Refuses with 403 unless the caller holds `scope`. A session user's scopes depend on
    /// the organization: this refuses at once when none of their roles grants it, and
    /// [`ApiAuth::can_access`] checks the role in each organization the request touches.
    pub fn require(&self, scope: Scope) -> ApiResult<()> {
        match &self.principal {
            Principal::User {
                is_superuser: true, ..
            } => Ok(()),
            Principal::User { roles, .. } => {
                let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
                for org in &asked.orgs {
                    let role = roles
                        .iter()
                        .find(|(id, _)| id == org)
                        .map(|(_, r)| r.as_str())
                        .unwrap_or("");
                    if !scope.granted_in(role_scopes(role)) {
                        return Err(role_forbids(role, scope));
                    }
                }
                // No role anywhere grants it: 403 now. (Someone in no organization at all
                // gets the 404 of whatever organization the request names instead.)
                if let Some((_, role)) = roles.first()
                    && !roles.iter().any(|(_, r)| scope.granted_in(role_scopes(r)))
                {
                    return Err(role_forbids(role, scope));
                }
                asked.scopes.push(scope);
                Ok(())
            }
            Principal::Token { scopes, cap, .. } => {
                if !scope.granted_in(scopes) {
                    Err(ApiError::forbidden(format!(
                        "You do not have permission to perform this action: the token lacks the `{}` scope.",
                        scope.name()
                    )))
                } else if cap.is_some_and(|cap| !scope.granted_in(cap)) {
                    Err(ApiError::forbidden(format!(
                        "You do not have permission to perform this action: the token's owner's role no longer grants the `{}` scope.",
                        scope.name()
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// True when the caller may act on this organization (false: answer 404). For a
    /// session user, a 403 when their role there lacks a scope this request required.
    pub async fn can_access(&self, _db: &impl ConnectionTrait, org_id: i64) -> ApiResult<bool> {
        Ok(match &self.principal {
            Principal::Token {
                organization_id, ..
            } => *organization_id == org_id,
            Principal::User {
                is_superuser: true, ..
            } => true,
            Principal::User { roles, .. } => {
                let Some((_, role)) = roles.iter().find(|(id, _)| *id == org_id) else {
                    return Ok(false);
                };
                let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(scope) = asked
                    .scopes
                    .iter()
                    .find(|s| !s.granted_in(role_scopes(role)))
                {
                    return Err(role_forbids(role, *scope));
                }
                asked.orgs.push(org_id);
                true
            }
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

    /// The scopes to report in `GET /api/0/`: a token's own, less what its owner's role
    /// lacks; a session user's, those of all their roles together (every scope for a
    /// superuser).
    pub fn scopes(&self) -> Vec<String> {
        let of = |grant: &dyn Fn(&str) -> bool| {
            ALL_SCOPES
                .iter()
                .filter(|s| grant(s))
                .map(|s| s.to_string())
                .collect()
        };
        match &self.principal {
            Principal::Token { scopes, cap, .. } => scopes
                .iter()
                .filter(|s| cap.is_none_or(|cap| cap.contains(&s.as_str())))
                .cloned()
                .collect(),
            Principal::User {
                is_superuser: true, ..
            } => of(&|_| true),
            Principal::User { roles, .. } => {
                of(&|s| roles.iter().any(|(_, r)| role_scopes(r).contains(&s)))
            }
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
                crate::accounts::orgs::create(&db, slug, None, None)
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
            // A member triages but does not delete issues (the pages forbid it too).
            assert!(auth.require(Scope::EventWrite).is_ok());
            let err = auth.require(Scope::EventAdmin).expect_err("member");
            assert_eq!(err.status, actix_web::http::StatusCode::FORBIDDEN);

            let su = ApiAuth::authenticate(
                db.clone(),
                String::new(),
                None,
                Some(SessionUser { user_id: root }),
            )
            .await
            .expect("superuser");
            assert_eq!(su.organizations().await.expect("list").len(), 2);
            assert!(su.require(Scope::EventAdmin).is_ok());
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

    /// The role table agrees with the pages: members triage (no deleting issues, no project
    /// or member management), admins manage all but the organization itself, owners all.
    #[test]
    fn roles_grant_what_the_pages_allow() {
        let member = role_scopes("member");
        assert!(Scope::EventWrite.granted_in(member));
        assert!(Scope::ProjectReleases.granted_in(member));
        assert!(!Scope::EventAdmin.granted_in(member));
        for s in [
            "project:write",
            "project:admin",
            "member:admin",
            "org:write",
            "alerts:write",
        ] {
            assert!(!member.contains(&s), "{s}");
        }
        let admin = role_scopes("admin");
        assert!(Scope::EventAdmin.granted_in(admin));
        assert!(admin.contains(&"member:admin") && admin.contains(&"project:admin"));
        assert!(!admin.contains(&"org:admin"));
        assert_eq!(role_scopes("owner"), ALL_SCOPES);
        assert!(role_scopes("").is_empty() && role_scopes("Owner").is_empty());
        for role in ["member", "admin"] {
            assert!(
                role_scopes(role).iter().all(|s| ALL_SCOPES.contains(s)),
                "{role}"
            );
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
