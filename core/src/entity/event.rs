//! A stored event; the full normalized payload is zstd-compressed JSON.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: i64,
    pub issue_id: i64,
    pub event_id: String,
    pub timestamp: i64,
    pub received: i64,
    pub level: String,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub platform: Option<String>,
    pub trace_id: Option<String>,
    pub user_ident: Option<String>,
    pub title: String,
    pub culprit: Option<String>,
    pub payload: Vec<u8>,
    /// The event's first grouping hash (NULL for events stored before merging existed).
    pub primary_hash: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
