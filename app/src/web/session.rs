//! Sessions in signed cookies, and the CSRF tokens derived from them.
//!
//! The cookie holds `user_id.issued_ms.nonce.password_tag.signature`; the signature is
//! HMAC-SHA256 with the server's secret key. Visitors who are not logged in get a cookie
//! with user id 0, so the login and setup forms have a CSRF token too. The password tag
//! (a short hash of the stored password hash) ends every session of a user whose password
//! changed. The CSRF token of a form is an HMAC of the session's nonce: a new session (login,
//! logout) means new tokens.
//!
//! For the Web API: [`user_from_request`] returns the logged-in user of a request (or
//! `None`), [`csrf_valid`] checks a token, and the [`api_session`] middleware hands the
//! session's user to `/api/0/` handlers as `api::SessionUser` (writes need the CSRF token in
//! the `X-CSRFToken` header).

use actix_web::HttpRequest;
use actix_web::web::Data;
use sha2::{Digest, Sha256};

use super::WebState;
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

    /// A fresh session of a user who just logged in.
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
        if !constant_time_eq(&sig, &hmac_sha256(secret, payload.as_bytes())) {
            return None;
        }
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
    constant_time_eq(token.as_bytes(), session.csrf_token(secret).as_bytes())
}

/// A short fingerprint of a stored password hash; changes when the password changes.
pub fn password_tag(password_hash: &str) -> String {
    hex::encode(&Sha256::digest(password_hash.as_bytes())[..8])
}

fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Compares without an early exit, so timing does not tell how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The verified session cookie of a request, if it has one.
pub fn session_from_request(req: &HttpRequest, secret: &[u8]) -> Option<Session> {
    let cookie = req.cookie(COOKIE)?;
    Session::decode(secret, cookie.value(), faultline_core::entity::now_ms())
}

/// The logged-in user of a request: a valid session cookie of an existing user whose
/// password did not change since. For the Web API, which accepts a session as well as a
/// token.
pub async fn user_from_request(req: &HttpRequest) -> Option<UserId> {
    let web = req.app_data::<Data<WebState>>()?;
    let app = req.app_data::<Data<AppState>>()?;
    let session = session_from_request(req, &web.secret)?;
    if session.user_id == 0 {
        return None;
    }
    let row = super::sql::one(
        &app.db,
        "SELECT password_hash FROM users WHERE id = ?",
        vec![session.user_id.into()],
    )
    .await
    .ok()??;
    let hash: String = row.try_get("", "password_hash").ok()?;
    (password_tag(&hash) == session.password_tag).then_some(session.user_id)
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
    if req.path().starts_with("/api/0/")
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
