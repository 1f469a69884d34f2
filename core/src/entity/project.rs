//! A project: what a DSN sends events to; its numeric id is the DSN's last path segment.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organization_id: i64,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    pub enabled: bool,
    pub retention_days: i32,
    pub max_events_per_issue: i32,
    pub issue_counter: i64,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
