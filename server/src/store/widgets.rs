use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "widgets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// What the snippet and the iframe's address name (`wgt_…`); not a secret.
    #[sea_orm(unique)]
    pub public_id: String,
    pub name: String,
    /// `app::types::WidgetSettings` without its name.
    pub settings: Json,
    /// The identity-verification secret, sealed with the key ring (`widget.secret`).
    pub secret: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
