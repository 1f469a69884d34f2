//! sea-orm entities: one module per table of the schema (`migrations/`). Times are Unix
//! milliseconds (`i64`) on both engines.

pub mod api_token;
pub mod event;
pub mod issue;
pub mod issue_hash;
pub mod issue_tag_value;
pub mod member;
pub mod organization;
pub mod project;
pub mod project_key;
pub mod release;
pub mod user;

/// Current time as Unix milliseconds, the unit of every time column.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
