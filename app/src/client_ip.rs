//! The client address of a request, for the login throttle and for events' `{{auto}}` IP:
//! the TCP peer, or `X-Forwarded-For` when the peer is a trusted proxy
//! ([`faultline_core::client_ip::TrustedProxies::client_ip`], `FAULTLINE_TRUSTED_PROXIES`).

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use faultline_core::client_ip::TrustedProxies;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address, `None` only when the connection has no peer address (tests
/// calling handlers directly).
pub fn client_ip(req: &HttpRequest, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if proxies.is_empty() {
        return Some(peer.to_canonical());
    }
    let forwarded = req
        .headers()
        .get_all(&X_FORWARDED_FOR)
        .filter_map(|v| v.to_str().ok());
    Some(proxies.client_ip(peer, forwarded))
}
