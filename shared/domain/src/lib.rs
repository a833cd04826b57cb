//! Tollgate's domain, laid out by what Tollgate does. No AWS SDK here: adapters live in `tollgate-aws`, in-memory
//! ones in [`memory`].
//!
//! | module       | what it does                                                        | may use                           |
//! |--------------|---------------------------------------------------------------------|-----------------------------------|
//! | [`record`]   | keys, delivery events, parsing, timeline fold, queries, store ports | nothing                           |
//! | [`audit`]    | the hash-chained audit trail and its port                           | record                            |
//! | [`tell`]     | notifications and the notifier port                                 | record                            |
//! | [`gate`]     | policy engine, gate decisions, approvals, overrides, freezes, leases | record, audit, tell               |
//! | [`rollback`] | alarm guard, deployment hook, change-set review                     | record, audit, tell, gate         |
//! | [`measure`]  | delivery metrics and the weekly digest                              | record, audit, tell, gate, rollback |
//! | [`ingest`]   | the ingest service: record an event, then tell                      | record, tell                      |
//! | [`memory`]   | in-memory adapters of every port, for tests and offline use         | everything                        |
//!
//! Nothing but tests imports [`memory`]. `tests/layout.rs` checks these arrows, the absence of cycles and file sizes.

pub mod audit;
pub mod gate;
pub mod ingest;
pub mod measure;
pub mod memory;
pub mod record;
pub mod rollback;
pub mod tell;
