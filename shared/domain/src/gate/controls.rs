//! Human controls on a gate: approval records, overrides and ad-hoc freezes, with their ports.

use super::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gate::policy::window::freeze_span;
use crate::gate::policy::{ApprovalDecision, ApprovalFact, Decision, Freeze, FreezeBound, Outcome, Policy};
use crate::record::ports::StoreError;

// ---------------------------------------------------------------------------------------------------------------
// Approvals.

/// The gate an approval is for: one stage of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ApprovalKey {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
}

/// `APPROVAL#<account>#<region>#<pipeline>#<execution_id>#<stage>`.
pub fn approval_pk(k: &ApprovalKey) -> String {
    format!(
        "APPROVAL#{}#{}#{}#{}#{}",
        k.account, k.region, k.pipeline, k.execution_id, k.stage
    )
}

/// A recorded approval or rejection. The principal is the authenticated caller, never a request body's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub key: ApprovalKey,
    pub principal_arn: String,
    pub groups: Vec<String>,
    pub decision: ApprovalDecision,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl ApprovalRecord {
    pub fn fact(&self) -> ApprovalFact {
        ApprovalFact {
            principal_arn: self.principal_arn.clone(),
            groups: self.groups.clone(),
            decision: self.decision,
            reason: self.reason.clone(),
            at: self.at,
        }
    }
}

/// Where approvals are kept. The latest decision for a gate wins.
#[async_trait]
pub trait ApprovalRecords: Send + Sync {
    async fn record_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError>;
    async fn latest_approval(&self, key: &ApprovalKey) -> Result<Option<ApprovalRecord>, StoreError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Ad-hoc freezes and overrides.

/// The scope of a freeze on every pipeline.
pub const GLOBAL_SCOPE: &str = "global";

/// `FREEZE#<scope>`.
pub fn freeze_pk(scope: &str) -> String {
    format!("FREEZE#{scope}")
}

/// `OVERRIDE#<account>#<region>#<pipeline>#<execution_id>#<stage>`.
pub fn override_pk(k: &ApprovalKey) -> String {
    format!(
        "OVERRIDE#{}#{}#{}#{}#{}",
        k.account, k.region, k.pipeline, k.execution_id, k.stage
    )
}

/// Checks a freeze scope: `global` or `pipeline:<account>/<region>/<pipeline>` (the audit trail's pipeline scope).
pub fn parse_freeze_scope(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t == GLOBAL_SCOPE {
        return Ok(t.to_string());
    }
    let parts: Option<Vec<&str>> = t.strip_prefix("pipeline:").map(|rest| rest.split('/').collect());
    match parts {
        Some(p) if p.len() == 3 && p.iter().all(|s| !s.is_empty() && !s.chars().any(char::is_whitespace)) => {
            Ok(t.to_string())
        }
        _ => Err(format!(
            "{text:?} is not a freeze scope (expected `global` or pipeline:<account>/<region>/<pipeline>)"
        )),
    }
}

/// The freeze scopes that apply to a job: its pipeline's, then `global`.
pub fn freeze_scopes(ctx: &JobContext) -> Vec<String> {
    vec![
        crate::audit::pipeline_scope(&ctx.pipeline_key(&ctx.pipeline)),
        GLOBAL_SCOPE.to_string(),
    ]
}

/// A freeze declared from the command line (`tollgate freeze`), on a pipeline or on every pipeline. One per scope:
/// a new freeze of a scope replaces the previous one; `tollgate unfreeze` deletes it (the audit trail keeps both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeRecord {
    pub scope: String,
    pub from: FreezeBound,
    pub until: FreezeBound,
    pub reason: String,
    /// The caller's ARN (sts:GetCallerIdentity).
    pub by: String,
    pub at: DateTime<Utc>,
}

impl FreezeRecord {
    /// The freeze as a policy freeze, named `ad-hoc freeze by <who>: <reason>`; dates are in the policy's zone.
    pub fn policy_freeze(&self) -> Freeze {
        Freeze {
            name: format!("ad-hoc freeze by {}: {}", self.by, self.reason),
            from: self.from,
            to: self.until,
            reason: None,
        }
    }
}

/// `policy` with the ad-hoc freezes that have not ended by `now` added to its freezes, so the freeze check evaluates
/// and explains them exactly like the policy's own.
pub fn with_ad_hoc_freezes(policy: &Policy, freezes: &[FreezeRecord], now: DateTime<Utc>) -> Policy {
    let tz = policy.zone();
    let added: Vec<Freeze> = freezes
        .iter()
        .map(FreezeRecord::policy_freeze)
        .filter(|f| freeze_span(f, tz).is_some_and(|(start, end)| start < end && end > now))
        .collect();
    let mut p = policy.clone();
    if !added.is_empty() {
        p.freezes.get_or_insert_with(Vec::new).extend(added);
    }
    p
}

/// An override of one gate (`tollgate override`): the gate passes whatever its checks say, if `by` may approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideRecord {
    pub key: ApprovalKey,
    /// The caller's ARN (sts:GetCallerIdentity).
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What the gate made of an override, kept with its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideOutcome {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// True when the override made the gate pass.
    pub honoured: bool,
    /// The line added to the explanation.
    pub note: String,
}

/// Applies an override to an evaluated decision. Honoured only when the policy has an `approval` section and `by`
/// may approve under it ([`crate::gate::policy::authorise_approver`]: an `approvers` pattern or a member of its `groups`): then the outcome is Pass, every check stays as evaluated, and the
/// explanation says who overrode it and why. Otherwise the decision is unchanged but for a line saying why the
/// override was refused. Returns the explanation to record.
pub fn apply_override(policy: &Policy, decision: &mut Decision, o: &OverrideRecord) -> (String, OverrideOutcome) {
    let reason = o.reason.trim();
    let refused = |why: &str| format!("override by {} refused: {why}", o.by);
    let (honoured, note) = match (&policy.approval, crate::gate::policy::authorise_approver(policy, &o.by)) {
        (None, _) => (
            false,
            refused("the policy has no approval section, so no one may override this gate"),
        ),
        (Some(_), _) if reason.is_empty() => (false, refused("it gives no reason")),
        (Some(_), Ok(how)) => (true, format!("overridden by {} ({how}): {reason}", o.by)),
        (Some(_), Err(refusal)) => (false, refused(&format!("not an authorised approver: {refusal}"))),
    };
    if honoured {
        decision.summary = format!("{note} (without the override: {})", decision.summary);
        decision.outcome = Outcome::Pass;
    } else {
        decision.summary = format!("{}; {note}", decision.summary);
    }
    let explanation = format!("{}  {note}\n", decision.explain());
    (
        explanation,
        OverrideOutcome {
            by: o.by.clone(),
            reason: reason.to_string(),
            at: o.at,
            honoured,
            note,
        },
    )
}

/// Where ad-hoc freezes and overrides are kept.
#[async_trait]
pub trait GateControls: Send + Sync {
    /// The freezes recorded for `scopes` (not lifted; possibly ended or not yet begun).
    async fn active_freezes(&self, scopes: &[String]) -> Result<Vec<FreezeRecord>, StoreError>;
    /// Records a freeze, replacing the scope's previous one.
    async fn record_freeze(&self, freeze: &FreezeRecord) -> Result<(), StoreError>;
    /// Lifts the scope's freeze (deletes it), returning it; None when there was none.
    async fn lift_freeze(&self, scope: &str) -> Result<Option<FreezeRecord>, StoreError>;
    async fn record_override(&self, o: &OverrideRecord) -> Result<(), StoreError>;
    /// The latest override of the gate.
    async fn latest_override(&self, key: &ApprovalKey) -> Result<Option<OverrideRecord>, StoreError>;
}
