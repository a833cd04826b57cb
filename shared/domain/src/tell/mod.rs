//! Tell: the notifications engineers get (kinds, severity, execution, deployment and stack notifications) and the
//! port through which they are sent.
//!
//! May depend on: record.

pub mod notify;
pub mod ports;
