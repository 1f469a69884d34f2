//! Seams where other parts of Faultline plug into the pages.

use faultline_core::protocol::event::Event;
use sea_orm::DatabaseConnection;

/// Source maps uploaded after an event arrived still apply when it is viewed: a JavaScript
/// event whose frames were not all mapped when it was stored is symbolicated again (in
/// memory; the stored event is not changed). Returns whether it was tried.
pub async fn resymbolicate_for_view(
    db: &DatabaseConnection,
    org_id: i64,
    event: &mut Event,
) -> bool {
    if !faultline_worker::symbolicate::has_unmapped_frames(event) {
        return false;
    }
    faultline_worker::symbolicate::resymbolicate(db, org_id, event).await;
    true
}
