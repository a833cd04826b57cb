//! The `hook` function: a CodeDeploy lifecycle hook for Lambda and ECS deployments (BeforeAllowTraffic,
//! AfterAllowTraffic, and ECS's test-traffic hooks). It runs the configured checks (alarms not in ALARM, an HTTP probe
//! of a test endpoint, all within a time budget) and reports Succeeded or Failed to CodeDeploy exactly once per
//! invocation, so a bad version never takes traffic. See docs/hook.md.
//!
//! `main.rs` wires it to Lambda; [`handler::handle`] is the whole invocation, over ports.

pub mod config;
pub mod handler;
pub mod probe;
