//! The website chat widget: the tenant's widgets (`service`), visitors' sessions and
//! conversations (`visitors`, `tokens`), the endpoints the widget calls (`api`), the live
//! wake-ups that carry an operator's replies to the visitor (`live`), and the hourly sweep of
//! spent tokens and idle anonymous visitors (`sweep`).

pub mod api;
pub mod live;
pub mod page;
mod render;
pub mod service;
pub mod sweep;
pub mod tokens;
pub mod visitors;

pub use service::WidgetServiceImpl;
pub use visitors::Visitors;
