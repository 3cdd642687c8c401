use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "knowledge_bases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub embedding_model: String,
    pub embedding_dim: i32,
    /// The LanceDB table holding the chunks (`kb_{id}_{generation}`).
    pub table_name: String,
    pub chunk_size: i32,
    pub chunk_overlap: i32,
    pub parent_chunk_size: Option<i32>,
    /// `app::types::SearchDefaults`.
    pub search_defaults: Json,
    pub version: i64,
    /// `app::types::Visibility`: `agents` or `internal`.
    pub visibility: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
