//! The agent platform's server: configuration, persistence, tenancy, auth, HTTP.

pub mod agents;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod http;
pub mod integrations;
pub mod jobs;
pub mod kv;
pub mod llm;
pub mod outbound;
pub mod pii;
pub mod rag;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod widget;
pub mod workflows;
