//! Measure: delivery metrics (lead time, failure rate, gate waits) computed from timelines and the audit trail.
//!
//! May depend on: record, audit, tell, gate, rollback.

pub mod digest;
pub mod metrics;
