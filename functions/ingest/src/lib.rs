//! The `ingest` function: SQS batches of EventBridge delivery events, recorded exactly once, engineers notified.
//! `main.rs` wires it to Lambda; the local runner (`tollgate local demo`) calls [`handler::handle_batch`] directly.

pub mod config;
pub mod handler;
