//! Seams where other parts of Faultline plug into the pages.

use sea_orm::DatabaseConnection;

/// Re-symbolicates a stored event (by its row id) with the source maps uploaded since it
/// arrived; `Ok(true)` when the stored event changed.
///
/// HOOK for the source-map symbolication module: replace this body with a call to its
/// re-symbolication function. The event page shows a "Re-symbolicate" button for
/// JavaScript events and posts to `.../events/{event_id}/resymbolicate`, which calls this.
pub async fn resymbolicate(
    _db: &DatabaseConnection,
    _project_id: i64,
    _event_row_id: i64,
) -> Result<bool, String> {
    Err("re-symbolication is not available in this build".into())
}
