//! The `metrics` function: invoked daily by a schedule, it measures the delivery of every pipeline over the last
//! days (DORA metrics and pipeline activity, `tollgate_domain::measure::metrics`), writes them as CloudWatch embedded metrics
//! (namespace `Tollgate/Delivery`, by pipeline and by team) and, once a week, publishes a digest to the SNS topic.
//! `main.rs` wires it to Lambda; [`handler::run`] is the run itself, generic over its ports.

pub mod config;
pub mod digest;
pub mod emf;
pub mod handler;
pub mod ports;
