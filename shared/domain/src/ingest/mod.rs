//! Ingest: the service that takes one EventBridge event, records it, and tells whoever should know.
//!
//! May depend on: record, tell.

pub mod service;
