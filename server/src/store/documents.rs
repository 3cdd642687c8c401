use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "documents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub knowledge_base_id: Uuid,
    pub title: String,
    pub source: String,
    pub format: String,
    pub content_type: Option<String>,
    /// `Vec<String>`.
    pub tags: Json,
    pub language: Option<String>,
    /// `BTreeMap<String, String>`.
    pub metadata: Json,
    pub size_bytes: i64,
    /// SHA-256 of the stored bytes; an identical re-upload changes nothing.
    pub content_hash: String,
    pub revision: i32,
    /// `app::types::DocumentStatus` as text.
    pub status: String,
    pub progress: i16,
    pub error: Option<String>,
    pub chunk_count: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub ingested_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
