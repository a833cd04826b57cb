//! Approvals from chat and CodePipeline Manual approval actions (docs/approvals.md).
//!
//! The `approval` function authenticates a chat request by its signature (in `tollgate-aws`), then hands this module
//! a parsed [`ChatCommand`]. Who decides is the chat user the platform signed for, mapped to an IAM principal by a
//! [`LinkedIdentity`] an administrator made with `tollgate identity link`: a body field naming a principal or an
//! approver is never read. Authorisation uses the policy's `approval` rules ([`ApprovalCheck`]: ARN patterns and
//! groups). A refusal answers 403 and is appended to the pipeline's audit trail as `approval.refused`.
//!
//! Manual approvals: the SNS message of a Manual approval action is stored with its token ([`ManualApproval`]),
//! enriched with what Tollgate knows of the execution and announced once; a decision on that stage calls
//! `PutApprovalResult` once ([`ApprovalResults`]), whatever the number of deliveries or repeated decisions.

use sha2::{Digest, Sha256};

/// Who Tollgate's own entries about manual approvals are by.
pub const APPROVAL_FUNCTION: &str = "tollgate:approval";
/// A signed request is accepted this many seconds either side of its timestamp.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// `PutApprovalResult`'s `result.summary` is at most 512 characters.
pub const MAX_SUMMARY_CHARS: usize = 512;
/// How many recent audit entries of a pipeline are searched for the execution's gate decisions.
pub const GATE_DECISIONS_SEARCHED: usize = 100;
/// How many of a pipeline's latest executions are searched for the one waiting at a Manual approval action.
pub const EXECUTIONS_SEARCHED: usize = 10;

pub(super) fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

mod admin;
mod authority;
mod chat;
mod decide;
mod manual;
mod server;

pub use admin::*;
pub use authority::*;
pub use chat::*;
pub use decide::*;
pub use manual::*;
pub use server::*;
