//! Unsubscribe links: a signed token naming a project and an address, so the link in an
//! email footer works without logging in and cannot be forged for someone else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, DbErr};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::sql::stmt;

/// Longest token accepted (a long address is at most 254 characters).
const MAX_TOKEN_LEN: usize = 512;

/// HMAC-SHA256 of `message` under `key` (RustCrypto's `hmac`).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of every length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn signature(secret: &str, payload: &str) -> [u8; 32] {
    // The purpose is part of what is signed: a token made for something else never
    // unsubscribes anyone.
    hmac_sha256(
        secret.as_bytes(),
        format!("unsubscribe:{payload}").as_bytes(),
    )
}

/// The token for unsubscribing `email` from the alerts of `project_id`.
pub fn token(secret: &str, project_id: i64, email: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!("{project_id}:{}", email.to_lowercase()));
    let sig = URL_SAFE_NO_PAD.encode(signature(secret, &payload));
    format!("{payload}.{sig}")
}

/// The project and address a token names, if its signature is ours.
pub fn verify(secret: &str, token: &str) -> Option<(i64, String)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (payload, sig) = token.split_once('.')?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let expected = signature(secret, payload);
    // Constant time: the comparison does not tell how many bytes were right.
    if !bool::from(sig.as_slice().ct_eq(&expected)) {
        return None;
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let (project, email) = text.split_once(':')?;
    Some((project.parse().ok()?, email.to_string()))
}

/// Records that `email` wants no more alerts of the project (idempotent).
pub async fn unsubscribe(
    conn: &impl ConnectionTrait,
    project_id: i64,
    email: &str,
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    conn.execute_raw(stmt(
        backend,
        "INSERT INTO alert_unsubscribes (project_id, email, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (project_id, email) DO NOTHING",
        vec![
            project_id.into(),
            email.to_lowercase().into(),
            super::now_ms().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Undoes [`unsubscribe`].
pub async fn resubscribe(
    conn: &impl ConnectionTrait,
    project_id: i64,
    email: &str,
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    conn.execute_raw(stmt(
        backend,
        "DELETE FROM alert_unsubscribes WHERE project_id = ? AND email = ?",
        vec![project_id.into(), email.to_lowercase().into()],
    ))
    .await?;
    Ok(())
}

/// Whether `email` unsubscribed from the project.
pub async fn is_unsubscribed(
    conn: &impl ConnectionTrait,
    project_id: i64,
    email: &str,
) -> Result<bool, DbErr> {
    let backend = conn.get_database_backend();
    Ok(conn
        .query_one_raw(stmt(
            backend,
            "SELECT 1 AS x FROM alert_unsubscribes WHERE project_id = ? AND email = ?",
            vec![project_id.into(), email.to_lowercase().into()],
        ))
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let t = token("s3cret", 7, "Ada@Example.com");
        assert_eq!(verify("s3cret", &t), Some((7, "ada@example.com".into())));
        assert_eq!(verify("other", &t), None);
        // Another project or address with the old signature is refused.
        let (_, sig) = t.split_once('.').expect("dot");
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode("8:ada@example.com"));
        assert_eq!(verify("s3cret", &forged), None);
        for garbage in ["", ".", "abc", "a.b", &"x".repeat(5000), "%%%.%%%"] {
            assert_eq!(verify("s3cret", garbage), None, "{garbage}");
        }
    }
}
