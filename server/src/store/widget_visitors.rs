use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "widget_visitors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub widget_id: Uuid,
    /// The tenant's own id for a verified visitor (unique per widget).
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The tenant's backend signed this visitor's id.
    pub verified: bool,
    pub created_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The visitor as the widget and the console show them.
    pub fn to_visitor(&self) -> app::types::Visitor {
        app::types::Visitor {
            id: self.id,
            name: self.name.clone(),
            email: self.email.clone(),
            verified: self.verified,
        }
    }
}
