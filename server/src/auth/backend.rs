//! The axum-login backend: users by email and argon2id password.

use axum_login::{AuthUser, AuthnBackend, UserId};
use sea_orm::entity::prelude::*;
use sea_orm::DatabaseConnection;

use super::password;
use crate::store::users;

pub type AuthSession = axum_login::AuthSession<Backend>;

#[derive(Clone)]
pub struct SessionUser {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// Set for users created with a temporary password until they choose their own.
    pub must_change_password: bool,
    password_hash: String,
}

impl std::fmt::Debug for SessionUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl From<users::Model> for SessionUser {
    fn from(u: users::Model) -> Self {
        SessionUser {
            id: u.id,
            email: u.email,
            name: u.name,
            must_change_password: u.must_change_password,
            password_hash: u.password_hash,
        }
    }
}

impl AuthUser for SessionUser {
    type Id = Uuid;

    fn id(&self) -> Uuid {
        self.id
    }

    /// Changing the password ends every session made with the old one.
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Clone)]
pub struct Backend {
    db: DatabaseConnection,
}

impl Backend {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl AuthnBackend for Backend {
    type User = SessionUser;
    type Credentials = Credentials;
    type Error = DbErr;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<SessionUser>, DbErr> {
        let email = creds.email.trim().to_lowercase();
        let user = users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await?;
        let stored = user.as_ref().map_or_else(
            || password::decoy_hash().to_string(),
            |u| u.password_hash.clone(),
        );
        let valid = password::verify(creds.password, stored).await;
        Ok(user.filter(|_| valid).map(SessionUser::from))
    }

    async fn get_user(&self, user_id: &UserId<Self>) -> Result<Option<SessionUser>, DbErr> {
        Ok(users::Entity::find_by_id(*user_id)
            .one(&self.db)
            .await?
            .map(SessionUser::from))
    }
}
