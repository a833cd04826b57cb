//! Gate: what decides whether a CodePipeline stage may proceed. The policy engine ([`policy`]: parsing, windows,
//! freezes, checks, evaluation), what a gate job is about and how it continues ([`JobContext`], [`Continuation`]),
//! the gathering of exactly the facts a policy needs ([`gather_facts`]) and the alarm watches it registers for the
//! guard, each decision ([`GateDecision`]), approvals from chat and Manual approval actions ([`approval`]),
//! overrides and ad-hoc freezes, and deployment leases; with the ports of each beside it.
//!
//! May depend on: record, audit, tell. In-memory adapters of its ports live in the `memory` module.

pub mod approval;
pub mod policy;

/// Who records gate decisions: the gate itself, never a person.
pub const GATE_PRINCIPAL: &str = "tollgate:gate";

/// The output variables a passing gate sets, for later actions (`#{<namespace>.TOLLGATE_DECISION_ID}`).
pub const DECISION_ID_VARIABLE: &str = "TOLLGATE_DECISION_ID";
pub const OUTCOME_VARIABLE: &str = "TOLLGATE_OUTCOME";

/// CodePipeline's limits on a job's answer (API reference: PutJobSuccessResult, FailureDetails, ExecutionDetails).
pub const MAX_CONTINUATION_TOKEN_CHARS: usize = 2048;
pub const MAX_FAILURE_MESSAGE_CHARS: usize = 5000;
pub const MAX_EXECUTION_SUMMARY_CHARS: usize = 2048;
pub const MAX_EXTERNAL_EXECUTION_ID_CHARS: usize = 1500;

/// How long a deployment lease holds at most. A lease is freed as soon as its holder's execution ends; expiry only
/// frees a lease whose end was never recorded (lost events, a deleted pipeline), so a stuck lease clears itself.
pub const LEASE_EXPIRY: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Executions of a pipeline read to find a stage's latest run or an unrestored failure.
pub const EXECUTIONS_READ: usize = 20;

mod context;
mod controls;
mod decision;
mod facts;
mod lease;

pub use context::*;
pub use controls::*;
pub use decision::*;
pub use facts::*;
pub use lease::*;

#[cfg(test)]
mod tests;
