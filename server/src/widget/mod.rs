//! The website chat widget: the tenant's widgets (`service`), visitors' sessions and
//! conversations (`visitors`, `tokens`), the endpoints the widget calls (`api`), and the live
//! wake-ups that carry an operator's replies to the visitor (`live`).

pub mod api;
pub mod live;
pub mod page;
mod render;
pub mod service;
pub mod tokens;
pub mod visitors;

pub use service::WidgetServiceImpl;
pub use visitors::Visitors;
