//! The public REST API.

pub mod v1;
