//! An issue: the group of events that share a fingerprint.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "issues")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: i64,
    pub short_id: i64,
    pub title: String,
    pub culprit: Option<String>,
    pub exception_type: Option<String>,
    pub exception_value: Option<String>,
    pub level: String,
    pub platform: Option<String>,
    pub status: String,
    pub status_details: Option<String>,
    pub resolved_at: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub times_seen: i64,
    pub users_seen: i64,
    pub first_release: Option<String>,
    pub last_release: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
