//! The `changeset` function: a CodePipeline Lambda invoke action for infrastructure changes. It creates a change set
//! for the stack from the template in the input artifact, classifies every change by risk, applies the action's
//! policy (execute, require an approval, or deny), executes the change set and follows the stack to the end, answering
//! the job with continuation tokens while it waits. See docs/changeset.md.
//!
//! `main.rs` wires it to Lambda; [`handler::handle`] is the whole invocation, over ports.

pub mod config;
pub mod handler;
pub mod job;
