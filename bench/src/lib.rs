//! Tollgate's benchmark harness: each function's cold start, cost per event, AWS requests per event and package
//! size, side by side with an empty `lambda_runtime` function built with the same profile. See BENCHMARKS.md.
//!
//! The harness runs the real binaries as Lambda would: against a local Runtime API (`emulator`), with the AWS SDK
//! pointed at a counting proxy (`proxy`) in front of the local endpoint. `functions` is the table of what is
//! measured, `measure` the runs, `report` the tables.

pub mod emulator;
pub mod functions;
pub mod http;
pub mod measure;
pub mod proxy;
