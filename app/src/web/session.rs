//! Sessions in signed cookies, and the CSRF tokens derived from them.
//!
//! The cookie holds `user_id.issued_ms.nonce.password_tag.signature`; the signature is
//! HMAC-SHA256 with the server's secret key. Visitors who are not logged in get a cookie
//! with user id 0, so the login and setup forms have a CSRF token too. The password tag
//! (a short hash of the stored password hash) ends every session of a user whose password
//! changed. The CSRF token of a form is an HMAC of the session's nonce: a new session (login,
//! logout) means new tokens.
//!
//! A signed cookie alone would stay valid until it expires, even after logout. So every
//! logged-in session also has a row in `user_sessions`, keyed by the SHA-256 of its nonce
//! ([`start`]); [`live_user`] accepts a cookie only while that row is there and not revoked
//! (one lookup by a unique index, joined with the user row the pages load anyway).
//! Logout revokes the row ([`end`]), "log out everywhere" and a password change revoke the
//! user's others ([`end_all`]).
//!
//! For the Web API: [`user_from_request`] returns the logged-in user of a request (or
//! `None`), [`csrf_valid`] checks a token, and the [`api_session`] middleware hands the
//! session's user to `/api/0/` handlers as `api::SessionUser` (writes need the CSRF token in
//! the `X-CSRFToken` header).

use actix_web::HttpRequest;
use actix_web::web::Data;
use hmac::{Hmac, Mac};
use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::WebState;
use super::context::CurrentUser;
use super::error::WebError;
use super::sql;
use crate::startup::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "faultline_session";
/// How long a session lasts after login.
pub const MAX_AGE_SECS: i64 = 30 * 24 * 3600;

/// A user id as stored in `users.id`.
pub type UserId = i64;

/// What a verified session cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// 0 for a visitor who is not logged in.
    pub user_id: UserId,
    /// When the session began (Unix ms).
    pub issued: i64,
    /// Random, hex; the CSRF token is derived from it.
    pub nonce: String,
    /// [`password_tag`] of the user's password hash at login; empty for visitors.
    pub password_tag: String,
}

impl Session {
    /// A fresh visitor session.
    pub fn anonymous(now_ms: i64) -> Session {
        Session {
            user_id: 0,
            issued: now_ms,
            nonce: new_nonce(),
            password_tag: String::new(),
        }
    }

    /// A fresh session of a user who just logged in (without its `user_sessions` row:
    /// [`start`] makes both).
    pub fn for_user(user_id: UserId, password_hash: &str, now_ms: i64) -> Session {
        Session {
            user_id,
            issued: now_ms,
            nonce: new_nonce(),
            password_tag: password_tag(password_hash),
        }
    }

    /// The cookie value.
    pub fn encode(&self, secret: &[u8]) -> String {
        let payload = format!(
            "{}.{}.{}.{}",
            self.user_id, self.issued, self.nonce, self.password_tag
        );
        let sig = hex::encode(hmac_sha256(secret, payload.as_bytes()));
        format!("{payload}.{sig}")
    }

    /// Reads and verifies a cookie value; `None` when forged, malformed or expired.
    pub fn decode(secret: &[u8], value: &str, now_ms: i64) -> Option<Session> {
        let (payload, sig) = value.rsplit_once('.')?;
        let sig = hex::decode(sig).ok()?;
        // `verify_slice` compares in constant time.
        let mut mac = keyed(secret);
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let mut parts = payload.split('.');
        let user_id: i64 = parts.next()?.parse().ok()?;
        let issued: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_string();
        let password_tag = parts.next()?.to_string();
        if parts.next().is_some() || user_id < 0 || nonce.len() < 16 {
            return None;
        }
        if now_ms.saturating_sub(issued) > MAX_AGE_SECS * 1000 {
            return None;
        }
        Some(Session {
            user_id,
            issued,
            nonce,
            password_tag,
        })
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf_token(&self, secret: &[u8]) -> String {
        hex::encode(hmac_sha256(
            secret,
            format!("csrf.{}", self.nonce).as_bytes(),
        ))
    }
}

/// Whether `token` is the CSRF token of `session`.
pub fn csrf_valid(secret: &[u8], session: &Session, token: &str) -> bool {
    token
        .as_bytes()
        .ct_eq(session.csrf_token(secret).as_bytes())
        .into()
}

/// A short fingerprint of a stored password hash; changes when the password changes.
pub fn password_tag(password_hash: &str) -> String {
    hex::encode(&Sha256::digest(password_hash.as_bytes())[..8])
}

fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// An HMAC-SHA256 keyed with `key` (RustCrypto's `hmac`).
fn keyed(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of every length")
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The key of a session's `user_sessions` row: hex SHA-256 of its nonce, so the table
/// holds nothing a cookie could be made from.
fn nonce_hash(nonce: &str) -> String {
    hex::encode(Sha256::digest(nonce.as_bytes()))
}

/// How often `last_seen_at` is written at most: a page load is not worth a write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Starts a logged-in session: a fresh nonce and its `user_sessions` row. The user's rows
/// that were revoked or have expired are deleted on the way, so the table stays as small
/// as the sessions in use.
pub async fn start(
    db: &DatabaseConnection,
    user_id: UserId,
    password_hash: &str,
    now_ms: i64,
) -> Result<Session, WebError> {
    let session = Session::for_user(user_id, password_hash, now_ms);
    sql::exec(
        db,
        "DELETE FROM user_sessions WHERE user_id = ? AND (revoked_at IS NOT NULL OR created_at < ?)",
        vec![user_id.into(), (now_ms - MAX_AGE_SECS * 1000).into()],
    )
    .await?;
    sql::exec(
        db,
        "INSERT INTO user_sessions (user_id, nonce_hash, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
        vec![
            user_id.into(),
            nonce_hash(&session.nonce).into(),
            now_ms.into(),
            now_ms.into(),
        ],
    )
    .await?;
    Ok(session)
}

/// The user of a verified logged-in session cookie, if the session still counts: its
/// `user_sessions` row exists and was not revoked, the user exists, and their password did
/// not change since login. Notes the session as seen (at most once a minute).
pub async fn live_user(
    db: &DatabaseConnection,
    session: &Session,
    now_ms: i64,
) -> Result<Option<CurrentUser>, WebError> {
    if session.user_id == 0 {
        return Ok(None);
    }
    let Some(row) = sql::one(
        db,
        "SELECT u.id, u.email, u.is_superuser, u.password_hash, s.id AS session_id, s.last_seen_at \
         FROM user_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.nonce_hash = ? AND s.user_id = ? AND s.revoked_at IS NULL",
        vec![nonce_hash(&session.nonce).into(), session.user_id.into()],
    )
    .await?
    else {
        return Ok(None);
    };
    let user = CurrentUser {
        id: sql::get(&row, "id")?,
        email: sql::get(&row, "email")?,
        is_superuser: sql::get(&row, "is_superuser")?,
        password_hash: sql::get(&row, "password_hash")?,
    };
    if password_tag(&user.password_hash) != session.password_tag {
        return Ok(None);
    }
    let last_seen: i64 = sql::get(&row, "last_seen_at")?;
    if now_ms - last_seen >= TOUCH_EVERY_MS {
        let id: i64 = sql::get(&row, "session_id")?;
        sql::exec(
            db,
            "UPDATE user_sessions SET last_seen_at = ? WHERE id = ?",
            vec![now_ms.into(), id.into()],
        )
        .await?;
    }
    Ok(Some(user))
}

/// Ends one session (logout): a replayed copy of its cookie is a visitor's from now on.
pub async fn end(db: &DatabaseConnection, session: &Session, now_ms: i64) -> Result<(), WebError> {
    if session.user_id == 0 {
        return Ok(());
    }
    sql::exec(
        db,
        "UPDATE user_sessions SET revoked_at = ? WHERE nonce_hash = ? AND revoked_at IS NULL",
        vec![now_ms.into(), nonce_hash(&session.nonce).into()],
    )
    .await?;
    Ok(())
}

/// Ends every session of a user, except `keep` when given; returns how many ended.
pub async fn end_all(
    db: &DatabaseConnection,
    user_id: UserId,
    keep: Option<&Session>,
    now_ms: i64,
) -> Result<u64, WebError> {
    let keep = keep.map(|s| nonce_hash(&s.nonce)).unwrap_or_default();
    sql::exec(
        db,
        "UPDATE user_sessions SET revoked_at = ? \
         WHERE user_id = ? AND revoked_at IS NULL AND nonce_hash <> ?",
        vec![now_ms.into(), user_id.into(), keep.into()],
    )
    .await
}

/// How many sessions of a user are live (not revoked, not expired).
pub async fn live_count(
    db: &DatabaseConnection,
    user_id: UserId,
    now_ms: i64,
) -> Result<i64, WebError> {
    let row = sql::one(
        db,
        "SELECT COUNT(*) AS n FROM user_sessions \
         WHERE user_id = ? AND revoked_at IS NULL AND created_at >= ?",
        vec![user_id.into(), (now_ms - MAX_AGE_SECS * 1000).into()],
    )
    .await?;
    match row {
        Some(r) => sql::get(&r, "n"),
        None => Ok(0),
    }
}

/// The verified session cookie of a request, if it has one.
pub fn session_from_request(req: &HttpRequest, secret: &[u8]) -> Option<Session> {
    let cookie = req.cookie(COOKIE)?;
    Session::decode(secret, cookie.value(), faultline_core::entity::now_ms())
}

/// The logged-in user of a request: a valid session cookie whose session is live
/// ([`live_user`]). For the Web API, which accepts a session as well as a token.
pub async fn user_from_request(req: &HttpRequest) -> Option<UserId> {
    let web = req.app_data::<Data<WebState>>()?;
    let app = req.app_data::<Data<AppState>>()?;
    let session = session_from_request(req, &web.secret)?;
    match live_user(&app.db, &session, faultline_core::entity::now_ms()).await {
        Ok(user) => user.map(|u| u.id),
        Err(e) => {
            tracing::error!(error = %e, "checking a session failed");
            None
        }
    }
}

/// Header a browser script sends the CSRF token in for session-authenticated API writes.
pub const CSRF_HEADER: &str = "X-CSRFToken";

/// Middleware for `/api/0/`: a request without an `Authorization` header but with a valid
/// session acts as that user (`api::SessionUser` in the request's extensions). Unsafe
/// methods must also carry the session's CSRF token in [`CSRF_HEADER`]; without it the
/// request stays anonymous (and the API answers 401).
pub async fn api_session(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    // Trailing slashes are trimmed before this runs: `GET /api/0/` arrives as `/api/0`.
    let path = req.path();
    if (path == "/api/0" || path.starts_with("/api/0/"))
        && !req
            .headers()
            .contains_key(actix_web::http::header::AUTHORIZATION)
        && req.cookie(COOKIE).is_some()
        && let Some(user_id) = user_from_request(req.request()).await
    {
        let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        let csrf_ok = safe || {
            let web = req.app_data::<Data<WebState>>();
            let session = web.and_then(|w| session_from_request(req.request(), &w.secret));
            let token = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match (web, session) {
                (Some(w), Some(s)) => csrf_valid(&w.secret, &s, token),
                _ => false,
            }
        };
        if csrf_ok {
            req.extensions_mut()
                .insert(crate::api::SessionUser { user_id });
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A key longer than SHA-256's block is hashed first (RFC 4231 case 6): secret keys
    /// of any length keep signing as before.
    #[test]
    fn hmac_matches_rfc4231_case_6() {
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// A cookie and CSRF token signed before the switch to the `hmac` crate (values from an
    /// independent HMAC-SHA256, Python's `hmac`) still verify: nobody is logged out by it.
    #[test]
    fn cookies_and_tokens_signed_before_stay_valid() {
        let value = "7.1000.00112233445566778899aabbccddeeff.0011223344556677.\
                     79d46a0af15365d2eca7fa3c844ea51ace3589840dc758de7b3be4a0777ac8ce";
        let session = Session::decode(SECRET, value, 2_000).expect("still valid");
        assert_eq!(session.user_id, 7);
        assert_eq!(session.nonce, "00112233445566778899aabbccddeeff");
        assert!(csrf_valid(
            SECRET,
            &session,
            "759a28d7037b36e8a1938a3841a95e342113b166883acffd2036d54db03fa4d2"
        ));
    }

    #[test]
    fn a_session_round_trips() {
        let s = Session::for_user(7, "$argon2id$v=19$...", 1_000);
        let decoded = Session::decode(SECRET, &s.encode(SECRET), 2_000).expect("valid");
        assert_eq!(decoded, s);
    }

    #[test]
    fn forged_or_altered_cookies_are_refused() {
        let s = Session::for_user(7, "hash", 1_000);
        let value = s.encode(SECRET);
        // Another user id with the old signature.
        let forged = value.replacen("7.", "1.", 1);
        assert!(Session::decode(SECRET, &forged, 2_000).is_none());
        // Signed with another key.
        assert!(Session::decode(b"another key of thirty-two bytes!", &value, 2_000).is_none());
        // Garbage.
        for bad in ["", ".", "a.b.c.d.e", "7.1.nonce.tag.zz", &"x".repeat(5000)] {
            assert!(Session::decode(SECRET, bad, 2_000).is_none(), "{bad}");
        }
    }

    #[test]
    fn sessions_expire() {
        let s = Session::for_user(7, "hash", 0);
        let value = s.encode(SECRET);
        assert!(Session::decode(SECRET, &value, MAX_AGE_SECS * 1000).is_some());
        assert!(Session::decode(SECRET, &value, MAX_AGE_SECS * 1000 + 1).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let a = Session::anonymous(0);
        let b = Session::anonymous(0);
        let token = a.csrf_token(SECRET);
        assert!(csrf_valid(SECRET, &a, &token));
        assert!(!csrf_valid(SECRET, &b, &token));
        assert!(!csrf_valid(SECRET, &a, ""));
        assert!(!csrf_valid(SECRET, &a, &token[..10]));
    }

    #[test]
    fn a_password_change_changes_the_tag() {
        assert_ne!(password_tag("old"), password_tag("new"));
    }
}
