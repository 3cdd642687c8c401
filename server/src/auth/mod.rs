//! Authentication: console users (axum-login sessions) and API keys (bearer tokens).

mod account;
pub mod api_key;
mod backend;
mod bearer;
mod console;
mod csrf;
pub mod password;
mod sessions;
mod throttle;

pub use account::AccountServiceImpl;
pub use backend::{AuthSession, Backend, Credentials};
pub use bearer::{api_auth, bearer_token, forget_key, ApiAccess, PlatformAdmin};
pub use console::{console_context, routes as console_routes};
pub use csrf::same_origin_writes;
pub use sessions::{session_layer, SessionBackend};
