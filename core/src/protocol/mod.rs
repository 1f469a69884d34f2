//! The Sentry wire protocol as types: DSNs and project keys, client authentication, and
//! envelopes. Everything here is pure and framework-free; the HTTP layer only feeds it strings
//! and bytes (see `/work/shared/PROTOCOL.md` §1–3 for the behaviour this mirrors).

pub mod auth;
pub mod check_in;
pub mod dsn;
pub mod envelope;
pub mod event;
pub mod json_check;
pub mod session;
