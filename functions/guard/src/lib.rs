//! The `guard` function: CloudWatch alarm state changes (EventBridge -> SQS) in, automatic rollbacks out, once per
//! target and incident (docs/guard.md). `main.rs` wires it to Lambda; [`handler::handle_batch`] is the SQS handler.

pub mod config;
pub mod handler;
