//! Rollback: what protects a deployment after the gate let it through. The alarm guard (stops or rolls back a
//! pipeline whose watched alarm fires), the deployment lifecycle hook, and the change-set review.
//!
//! May depend on: record, audit, tell, gate.

pub mod changeset;
pub mod guard;
pub mod hook;
