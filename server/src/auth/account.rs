//! The signed-in user's own account: changing the password; and what an invitation link
//! offers, before its holder signs in.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseConnection, TransactionTrait};

use app::error::{AppError, FieldError};
use app::services::{Access, AccountService, Actor};
use app::types::{InvitationPreview, PasswordChange};

use super::password;
use crate::store::audit_log::Record;
use crate::store::users;
use crate::tenancy::db_error;

pub struct AccountServiceImpl {
    db: DatabaseConnection,
}

impl AccountServiceImpl {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl AccountService for AccountServiceImpl {
    async fn change_password(
        &self,
        access: &Access,
        change: PasswordChange,
    ) -> Result<(), AppError> {
        let Actor::User { id, email } = &access.actor else {
            return Err(AppError::Forbidden(
                "only a signed-in person has a password".into(),
            ));
        };
        app::validate::check(&change)?;
        let user = users::Entity::find_by_id(*id)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or(AppError::Unauthorized)?;
        if !password::verify(change.current, user.password_hash.clone()).await {
            return Err(AppError::Validation(vec![FieldError::new(
                "current",
                "is not your current password",
            )]));
        }
        let hash = password::hash(change.new).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut row: users::ActiveModel = user.into();
        row.password_hash = Set(hash);
        row.must_change_password = Set(false);
        row.update(&txn).await.map_err(db_error)?;
        Record::by(access, "user.password_change", format!("user:{email}"))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn preview_invitation(&self, token: &str) -> Result<InvitationPreview, AppError> {
        crate::tenancy::invitations::preview(&self.db, token).await
    }
}
