//! The `gate` function: a CodePipeline Lambda invoke action that evaluates the pipeline's gate policy (read from the
//! action's input artifact) against live facts and answers the job: pass, wait (a continuation token, so that
//! CodePipeline invokes it again), or fail with the explanation. Every decision is recorded once per job id.
//! `main.rs` wires it to Lambda; [`handler::handle`] is the whole invocation, over ports.

pub mod config;
pub mod handler;
pub mod job;
