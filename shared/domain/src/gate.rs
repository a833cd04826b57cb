//! The gate action's domain: what a CodePipeline job for the `gate` function is about ([`JobContext`]), the
//! continuation token that carries a waiting gate from one invocation to the next ([`Continuation`]), the record of
//! each decision ([`GateDecision`]) and of approvals ([`ApprovalRecord`]), the ports the gate reaches the world
//! through, the gathering of exactly the facts a policy needs ([`gather_facts`]), the chat message of a blocked gate
//! ([`gate_blocked_notification`]) and in-memory adapters of every port, for tests and offline use.
//!
//! Deciding is [`crate::policy::evaluate`]'s job; this module only feeds it and keeps what it decided.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::guard::{AlarmWatches, WatchedStage};
use crate::keys::{ExecutionKey, PipelineKey};
use crate::notify::{Notification, NotificationKind, Severity};
use crate::policy::window::freeze_span;
use crate::policy::{
    AlarmFact, ApprovalDecision, ApprovalFact, CheckResult, Decision, Facts, Freeze, FreezeBound, MinRequests, Outcome,
    Policy, UpstreamCheck,
};
use crate::ports::{StoreError, TimelineQueries};
use crate::query::execution_timeline;
use crate::timeline::is_failure;

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

// ---------------------------------------------------------------------------------------------------------------
// The job.

/// Where a job runs, from GetJobDetails's `pipelineContext` (the job event itself does not say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub execution_id: String,
}

impl JobContext {
    pub fn execution_key(&self) -> ExecutionKey {
        ExecutionKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
            execution_id: self.execution_id.clone(),
        }
    }

    /// The same account and region, another pipeline.
    pub fn pipeline_key(&self, pipeline: &str) -> PipelineKey {
        PipelineKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: pipeline.to_string(),
        }
    }

    pub fn approval_key(&self) -> ApprovalKey {
        ApprovalKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
            execution_id: self.execution_id.clone(),
            stage: self.stage.clone(),
        }
    }
}

/// An input artifact in the pipeline's artifact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLocation {
    pub name: String,
    pub bucket: String,
    pub key: String,
}

/// The job's temporary credentials for its artifacts. Secrets: `Debug` shows none of them, and the type is neither
/// serialisable nor displayable, so it cannot end up in a record or a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ArtifactCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl fmt::Debug for ArtifactCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArtifactCredentials(redacted)")
    }
}

/// The input artifacts stored in S3 (in order) and the artifact credentials of a `CodePipeline.job` event's `data`,
/// which the domain parser leaves out on purpose. The credentials are read field by field as plain strings, never
/// through a deserializer whose error message could quote a value, and kept only in [`ArtifactCredentials`].
pub fn job_artifacts(data: &serde_json::Value) -> (Vec<ArtifactLocation>, Option<ArtifactCredentials>) {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let artifacts = data["inputArtifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let s3 = &a["location"]["s3Location"];
            Some(ArtifactLocation {
                name: text(&a["name"]).unwrap_or_default(),
                bucket: text(&s3["bucketName"])?,
                key: text(&s3["objectKey"])?,
            })
        })
        .collect();
    let c = &data["artifactCredentials"];
    let credentials = match (
        text(&c["accessKeyId"]),
        text(&c["secretAccessKey"]),
        text(&c["sessionToken"]),
    ) {
        (Some(access_key_id), Some(secret_access_key), Some(session_token)) => Some(ArtifactCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        }),
        _ => None,
    };
    (artifacts, credentials)
}

/// The policy as read from the artifact: the path it was found at, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyText {
    pub path: String,
    pub text: String,
}

// ---------------------------------------------------------------------------------------------------------------
// The continuation token.

/// What a waiting gate hands itself through CodePipeline's continuation token: when it first evaluated the job (so
/// `max_wait` counts from there) and the chain of its decisions. Compact JSON, `{"v":1,"f":<epoch s>,"n":3,"d":[..]}`,
/// always within [`MAX_CONTINUATION_TOKEN_CHARS`]: when the chain grows too long, the ids after the first are dropped
/// oldest first (`n` still counts every evaluation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    #[serde(rename = "v")]
    pub version: u8,
    /// The first evaluation, epoch seconds.
    #[serde(rename = "f")]
    pub first_evaluated_at: i64,
    /// Evaluations so far.
    #[serde(rename = "n")]
    pub evaluations: u32,
    /// Decision ids, oldest first: the first decision, then the latest ones.
    #[serde(rename = "d")]
    pub decisions: Vec<String>,
}

impl Continuation {
    pub const VERSION: u8 = 1;

    /// The token a wait answers with, after `previous` (None on the first evaluation) and this decision.
    pub fn after(previous: Option<&Continuation>, first_evaluated_at: DateTime<Utc>, decision_id: &str) -> Self {
        let (evaluations, mut decisions) = match previous {
            Some(p) => (p.evaluations.saturating_add(1), p.decisions.clone()),
            None => (1, Vec::new()),
        };
        decisions.push(decision_id.to_string());
        Continuation {
            version: Self::VERSION,
            first_evaluated_at: first_evaluated_at.timestamp(),
            evaluations,
            decisions,
        }
    }

    pub fn first_evaluated_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.first_evaluated_at, 0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// Reads a token this gate wrote. Anything else is refused: starting the wait over would defeat `max_wait`.
    pub fn decode(token: &str) -> Result<Continuation, String> {
        let c: Continuation = serde_json::from_str(token).map_err(|e| {
            format!("the continuation token is not one the gate wrote ({e}); the wait cannot go on safely")
        })?;
        if c.version != Self::VERSION {
            return Err(format!(
                "the continuation token has version {}, this gate reads version {}",
                c.version,
                Self::VERSION
            ));
        }
        if DateTime::from_timestamp(c.first_evaluated_at, 0).is_none() {
            return Err("the continuation token's first evaluation time is out of range".into());
        }
        Ok(c)
    }

    /// Compact JSON within [`MAX_CONTINUATION_TOKEN_CHARS`], dropping middle decision ids if needed.
    pub fn encode(&self) -> String {
        let mut c = self.clone();
        loop {
            let text = serde_json::to_string(&c).unwrap_or_default();
            if text.chars().count() <= MAX_CONTINUATION_TOKEN_CHARS || c.decisions.len() <= 2 {
                return text;
            }
            c.decisions.remove(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The answer and the decision record.

/// CodePipeline's failure types the gate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The policy said no.
    JobFailed,
    /// The gate could not be configured: bad UserParameters, a missing or invalid policy, an unreadable artifact.
    ConfigurationError,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::JobFailed => "JobFailed",
            FailureKind::ConfigurationError => "ConfigurationError",
        }
    }
}

/// What the gate answers CodePipeline: exactly what is sent, kept with the decision so a retry re-sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub enum JobAnswer {
    /// PutJobSuccessResult: with a continuation token (wait: invoke me again), or with output variables (pass).
    Success {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continuation_token: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        output_variables: BTreeMap<String, String>,
        external_execution_id: String,
        summary: String,
    },
    /// PutJobFailureResult.
    Failure {
        kind: FailureKind,
        message: String,
        external_execution_id: String,
    },
}

/// Which policy a decision applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The path in the input artifact.
    pub file: String,
    pub name: String,
}

/// One evaluation of a gate: who (the gate), when, for which job, pipeline, execution and stage, the outcome and
/// every check with what it observed and required. Recorded once per job id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    /// The decision's id: the CodePipeline job id it answers (unique, and the same when Lambda retries the job).
    pub id: String,
    pub job_id: String,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// None only when the job's details could not be read.
    pub context: Option<JobContext>,
    pub policy: Option<PolicyRef>,
    pub outcome: Outcome,
    /// One line: the engine's summary, or why the gate could not evaluate.
    pub summary: String,
    /// Every check's result (empty when the policy could not be read).
    pub checks: Vec<CheckResult>,
    /// What engineers read: `Decision::explain()`, or the configuration error.
    pub explanation: String,
    pub first_evaluated_at: DateTime<Utc>,
    /// The earlier decisions of the same wait, oldest first (from the continuation token).
    pub previous: Vec<String>,
    pub answer: JobAnswer,
    /// An override found for this execution and stage, and whether it was honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_applied: Option<OverrideOutcome>,
}

impl GateDecision {
    /// True for the decisions engineers are told about: every failure, and a wait when it starts.
    pub fn notifies(&self) -> bool {
        match self.outcome {
            Outcome::Fail => true,
            Outcome::Wait { .. } => self.previous.is_empty(),
            Outcome::Pass => false,
        }
    }

    pub fn outcome_word(&self) -> &'static str {
        outcome_word(&self.outcome)
    }
}

pub fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Wait { .. } => "wait",
        Outcome::Fail => "fail",
    }
}

/// Cuts `text` to `max` characters; a cut text ends with a note saying how much was left out and where to read it.
pub fn truncate_with_note(text: &str, max: usize, whole_at: &str) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let note_for = |left_out: usize| format!("\n… (truncated: {left_out} more characters; {whole_at})");
    // The note's own length depends on the number in it; the longest number it can hold is `count`.
    let keep = max.saturating_sub(note_for(count).chars().count());
    let kept: String = text.chars().take(keep).collect();
    format!("{kept}{}", note_for(count - keep))
}

/// The answer to a job for a decision of the policy engine.
pub fn answer_for(decision_id: &str, decision: &Decision, continuation: Option<&Continuation>) -> JobAnswer {
    let external_execution_id: String = decision_id.chars().take(MAX_EXTERNAL_EXECUTION_ID_CHARS).collect();
    let whole_at = format!("the whole explanation is gate decision {decision_id}");
    match &decision.outcome {
        Outcome::Pass => JobAnswer::Success {
            continuation_token: None,
            output_variables: BTreeMap::from([
                (DECISION_ID_VARIABLE.to_string(), decision_id.to_string()),
                (OUTCOME_VARIABLE.to_string(), "PASS".to_string()),
            ]),
            external_execution_id,
            summary: truncate_with_note(&decision.summary, MAX_EXECUTION_SUMMARY_CHARS, &whole_at),
        },
        Outcome::Wait { .. } => JobAnswer::Success {
            continuation_token: continuation.map(Continuation::encode),
            output_variables: BTreeMap::new(),
            external_execution_id,
            summary: truncate_with_note(
                &format!("waiting: {}", decision.summary),
                MAX_EXECUTION_SUMMARY_CHARS,
                &whole_at,
            ),
        },
        Outcome::Fail => JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: truncate_with_note(&decision.explain(), MAX_FAILURE_MESSAGE_CHARS, &whole_at),
            external_execution_id,
        },
    }
}

/// What recording a decision found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionWrite {
    /// Recorded now.
    New,
    /// This job was decided before (a retried invocation): the stored decision, which is the answer to send again.
    Duplicate { stored: Box<GateDecision>, notified: bool },
}

/// Where gate decisions are kept.
#[async_trait]
pub trait GateDecisions: Send + Sync {
    /// Records `decision` with one conditional write keyed by its job id; a second decision for the same job is not
    /// written and the first one is returned instead.
    async fn record_decision(&self, decision: &GateDecision) -> Result<DecisionWrite, StoreError>;
    /// Notes that engineers were told about the decision.
    async fn mark_notified(&self, decision_id: &str) -> Result<(), StoreError>;
    async fn decision(&self, decision_id: &str) -> Result<Option<GateDecision>, StoreError>;
}

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
/// may approve under it ([`crate::policy::authorise_approver`]: an `approvers` pattern or a member of its `groups`): then the outcome is Pass, every check stays as evaluated, and the
/// explanation says who overrode it and why. Otherwise the decision is unchanged but for a line saying why the
/// override was refused. Returns the explanation to record.
pub fn apply_override(policy: &Policy, decision: &mut Decision, o: &OverrideRecord) -> (String, OverrideOutcome) {
    let reason = o.reason.trim();
    let refused = |why: &str| format!("override by {} refused: {why}", o.by);
    let (honoured, note) = match (&policy.approval, crate::policy::authorise_approver(policy, &o.by)) {
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

// ---------------------------------------------------------------------------------------------------------------
// Deployment leases: the concurrency check.

/// `LEASE#<environment>` or `LEASE#<environment>#WAVE#<wave>`: one lease per environment (and wave), shared by every
/// pipeline whose policy names it.
pub fn lease_pk(environment: &str, wave: Option<&str>) -> String {
    match wave {
        Some(w) => format!("LEASE#{environment}#WAVE#{w}"),
        None => format!("LEASE#{environment}"),
    }
}

/// The right of one pipeline execution to deploy to an environment (and wave), taken by its gate when it passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentLease {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// The execution that holds it.
    pub holder: ExecutionKey,
    /// The gated stage of the holder.
    pub stage: String,
    /// The gate decision that took it.
    pub decision_id: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl DeploymentLease {
    pub fn pk(&self) -> String {
        lease_pk(&self.environment, self.wave.as_deref())
    }

    /// `<account>/<region>/<pipeline>/<execution id>`: the holder as one value, for conditional writes.
    pub fn holder_id(&self) -> String {
        holder_id(&self.holder)
    }

    /// How the holder reads in a decision: `payments execution 7f3a… (Production, since 2026-11-20 14:02 UTC)`.
    pub fn describe(&self) -> String {
        format!(
            "{} execution {} ({}, since {} UTC)",
            self.holder.pipeline,
            self.holder.execution_id,
            self.stage,
            self.acquired_at.format("%Y-%m-%d %H:%M")
        )
    }
}

/// `<account>/<region>/<pipeline>/<execution id>`.
pub fn holder_id(k: &ExecutionKey) -> String {
    format!("{}/{}/{}/{}", k.account, k.region, k.pipeline, k.execution_id)
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClaim {
    /// The lease is now (still) the claimant's.
    Acquired,
    /// Another execution holds it: the lease as stored.
    HeldBy(Box<DeploymentLease>),
}

/// Where deployment leases are kept.
#[async_trait]
pub trait DeploymentLeases: Send + Sync {
    /// The lease of an environment (and wave), if any.
    async fn lease(&self, environment: &str, wave: Option<&str>) -> Result<Option<DeploymentLease>, StoreError>;
    /// Takes the lease for `lease.holder` with one conditional write, which succeeds only when no lease exists, when
    /// the same execution holds it (a re-evaluation keeps it), or when the stored lease is still exactly `replacing`
    /// (the holder the caller found finished or expired). Otherwise answers with the lease that holds it, so of two
    /// gates racing for one lease exactly one wins.
    async fn claim_lease(
        &self,
        lease: &DeploymentLease,
        replacing: Option<&DeploymentLease>,
    ) -> Result<LeaseClaim, StoreError>;
}

/// Where a lease stands for the execution in `ctx`.
enum LeaseStanding {
    /// Nobody holds it, or this execution does.
    Free,
    /// Its holder has finished (or the lease expired): it may be replaced, exactly as read.
    Stale(DeploymentLease),
    /// Another execution is deploying.
    Held(DeploymentLease),
}

/// Whether `lease` still excludes the execution in `ctx`: held by another execution that has not ended (by its
/// recorded timeline) and has not expired. An execution with no recorded events yet counts as in progress: the
/// holder took the lease, so it exists, and its events may simply not have arrived.
async fn standing<Q: TimelineQueries + ?Sized>(
    timelines: &Q,
    ctx: &JobContext,
    lease: Option<DeploymentLease>,
    now: DateTime<Utc>,
) -> Result<LeaseStanding, String> {
    let Some(lease) = lease else {
        return Ok(LeaseStanding::Free);
    };
    if lease.holder == ctx.execution_key() {
        return Ok(LeaseStanding::Free);
    }
    if lease.expires_at <= now {
        return Ok(LeaseStanding::Stale(lease));
    }
    let timeline = execution_timeline(timelines, &lease.holder).await.map_err(|e| {
        format!(
            "cannot read the timeline of {} execution {}, which holds the lease: {e}",
            lease.holder.pipeline, lease.holder.execution_id
        )
    })?;
    match timeline {
        Some(t) if crate::timeline::is_terminal(&t.state) => Ok(LeaseStanding::Stale(lease)),
        _ => Ok(LeaseStanding::Held(lease)),
    }
}

/// The concurrency fact: the other execution deploying to the policy's environment (and wave), if any.
async fn deployments_in_progress<L, Q>(
    leases: &L,
    timelines: &Q,
    ctx: &JobContext,
    environment: &str,
    wave: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String>
where
    L: DeploymentLeases + ?Sized,
    Q: TimelineQueries + ?Sized,
{
    let lease = leases
        .lease(environment, wave)
        .await
        .map_err(|e| format!("cannot read the deployment lease: {e}"))?;
    Ok(match standing(timelines, ctx, lease, now).await? {
        LeaseStanding::Held(l) => vec![l.describe()],
        LeaseStanding::Free | LeaseStanding::Stale(_) => Vec::new(),
    })
}

/// What claiming the lease after a passing evaluation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseResult {
    /// The policy has no concurrency check: nothing to claim.
    NotNeeded,
    Acquired,
    /// Another execution took it first (a concurrent gate): who, for the concurrency check.
    HeldBy(Vec<String>),
    /// The lease could not be read or written.
    Error(String),
}

/// Takes the policy's deployment lease for the execution in `ctx`, once its gate has passed: read it, and write it
/// conditionally unless another execution in progress holds it. Of two gates that both evaluated the lease free,
/// the conditional write lets exactly one through; the other gets [`LeaseResult::HeldBy`] and must wait.
pub async fn claim_deployment_lease<L, Q>(
    policy: &Policy,
    ctx: &JobContext,
    decision_id: &str,
    leases: &L,
    timelines: &Q,
    now: DateTime<Utc>,
) -> LeaseResult
where
    L: DeploymentLeases + ?Sized,
    Q: TimelineQueries + ?Sized,
{
    let Some(check) = &policy.concurrency else {
        return LeaseResult::NotNeeded;
    };
    let wave = check.wave.as_deref();
    let current = match leases.lease(&check.environment, wave).await {
        Ok(l) => l,
        Err(e) => return LeaseResult::Error(format!("cannot read the deployment lease: {e}")),
    };
    let replacing = match standing(timelines, ctx, current.clone(), now).await {
        Err(why) => return LeaseResult::Error(why),
        Ok(LeaseStanding::Held(l)) => return LeaseResult::HeldBy(vec![l.describe()]),
        Ok(LeaseStanding::Stale(l)) => Some(l),
        // Ours already: claiming again renews it and keeps the first acquisition time.
        Ok(LeaseStanding::Free) => current.filter(|l| l.holder == ctx.execution_key()),
    };
    let acquired_at = replacing
        .as_ref()
        .filter(|l| l.holder == ctx.execution_key())
        .map(|l| l.acquired_at)
        .unwrap_or(now);
    let lease = DeploymentLease {
        environment: check.environment.clone(),
        wave: check.wave.clone(),
        holder: ctx.execution_key(),
        stage: ctx.stage.clone(),
        decision_id: decision_id.to_string(),
        acquired_at,
        expires_at: now + LEASE_EXPIRY,
    };
    match leases.claim_lease(&lease, replacing.as_ref()).await {
        Ok(LeaseClaim::Acquired) => LeaseResult::Acquired,
        Ok(LeaseClaim::HeldBy(other)) => LeaseResult::HeldBy(vec![other.describe()]),
        Err(e) => LeaseResult::Error(format!("cannot take the deployment lease: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The world outside: CodePipeline, the artifact, CloudWatch.

/// Why a fact could not be gathered, in words for the decision's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FactError(pub String);

/// CloudWatch alarms' states.
#[async_trait]
pub trait AlarmStates: Send + Sync {
    /// Every alarm of `names` that exists, and every alarm carrying all of `tags`, with its state and since when.
    async fn alarm_states(
        &self,
        names: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError>;
}

/// Finding CloudWatch alarms by their tags (the Resource Groups Tagging API).
#[async_trait]
pub trait AlarmsByTags: Send + Sync {
    /// The names of the alarms, in this account and region, that carry every one of `tags` (key and value).
    async fn alarms_tagged(&self, tags: &BTreeMap<String, String>) -> Result<Vec<String>, FactError>;
}

/// `tags = k=v, …` in words.
fn tags_text(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Alarm states for a policy's `names` and `tags`: the names of the tagged alarms from `index`, then the states of
/// those and of the named ones from `states`, in one pass. Tags that select no alarm at all are an error (the check
/// would otherwise pass while checking nothing the author meant), which fails closed unless the policy says
/// `on_error: fail_open`. A tagged alarm deleted between the two reads is simply gone.
#[derive(Debug, Clone)]
pub struct TaggedAlarms<I, S> {
    index: I,
    states: S,
}

impl<I, S> TaggedAlarms<I, S> {
    pub fn new(index: I, states: S) -> Self {
        TaggedAlarms { index, states }
    }
}

#[async_trait]
impl<I: AlarmsByTags, S: AlarmStates> AlarmStates for TaggedAlarms<I, S> {
    async fn alarm_states(
        &self,
        names: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError> {
        if tags.is_empty() {
            return self.states.alarm_states(names, tags).await;
        }
        let tagged = self
            .index
            .alarms_tagged(tags)
            .await
            .map_err(|e| FactError(format!("cannot find the alarms tagged {}: {e}", tags_text(tags))))?;
        if tagged.is_empty() {
            return Err(FactError(format!(
                "no CloudWatch alarm carries the tags {} (tag:GetResources found none in this account and region)",
                tags_text(tags)
            )));
        }
        let mut all: Vec<String> = names.to_vec();
        for name in tagged {
            if !all.contains(&name) {
                all.push(name);
            }
        }
        self.states.alarm_states(&all, &BTreeMap::new()).await
    }
}

/// CloudWatch metrics.
#[async_trait]
pub trait MetricTotals: Send + Sync {
    /// The metric's `statistic`, totalled over `[from, to)`.
    async fn metric_total(
        &self,
        metric: &MinRequests,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<f64, FactError>;
}

/// A CodePipeline call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobApiError {
    /// Throttling, a timeout, a 5xx: a later attempt may succeed.
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// What answering a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSent {
    Sent,
    /// CodePipeline says the job is no longer in progress: it was answered before (or timed out).
    AlreadyAnswered,
}

/// CodePipeline's job API, as the gate uses it.
#[async_trait]
pub trait PipelineJobs: Send + Sync {
    /// GetJobDetails: the pipeline, stage, action and execution of the job.
    async fn job_context(&self, job_id: &str) -> Result<JobContext, JobApiError>;
    /// PutJobSuccessResult or PutJobFailureResult.
    async fn answer(&self, job_id: &str, answer: &JobAnswer) -> Result<AnswerSent, JobApiError>;
}

/// Reading the policy file from the job's input artifact.
#[async_trait]
pub trait PolicySource: Send + Sync {
    /// The first of `candidates` found in the artifact, read with the job's own credentials.
    async fn read_policy(
        &self,
        artifact: &ArtifactLocation,
        credentials: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Gathering the facts.

/// The adapters facts are read through.
pub struct FactSources<'a, A: ?Sized, M: ?Sized, Q: ?Sized, P: ?Sized, L: ?Sized> {
    pub alarms: &'a A,
    pub metrics: &'a M,
    pub timelines: &'a Q,
    pub approvals: &'a P,
    /// Deployment leases, for the concurrency check.
    pub leases: &'a L,
}

/// Gathers the facts `policy` needs, and only those, for the job in `ctx`. Every failure becomes that fact's
/// `Err(reason)`, for the engine to fail closed or open as the policy says; nothing here fails the evaluation.
pub async fn gather_facts<A, M, Q, P, L>(
    policy: &Policy,
    ctx: &JobContext,
    now: DateTime<Utc>,
    first_evaluated_at: DateTime<Utc>,
    sources: &FactSources<'_, A, M, Q, P, L>,
) -> Facts
where
    A: AlarmStates + ?Sized,
    M: MetricTotals + ?Sized,
    Q: TimelineQueries + ?Sized,
    P: ApprovalRecords + ?Sized,
    L: DeploymentLeases + ?Sized,
{
    let mut facts = Facts::new(now, first_evaluated_at);
    if let Some(alarms) = &policy.alarms {
        facts.alarms = sources
            .alarms
            .alarm_states(&alarms.names, &alarms.tags)
            .await
            .map_err(|e| e.0);
    }
    if let Some(bake) = &policy.bake {
        let succeeded =
            bake_stage_succeeded_at(sources.timelines, ctx, &bake.after_stage, bake.pipeline.as_deref()).await;
        if let (Ok(Some(at)), Some(m)) = (&succeeded, &bake.min_requests) {
            // Only once the bake time has passed does the engine read the traffic.
            if now - *at >= bake.duration.to_chrono() {
                facts.bake_requests = Some(sources.metrics.metric_total(m, *at, now).await.map_err(|e| e.0));
            }
        }
        facts.bake_stage_succeeded_at = Some(succeeded);
    }
    if let Some(upstream) = &policy.upstream {
        facts.upstream_unrestored_failure_at = Some(unrestored_failure_at(sources.timelines, ctx, upstream).await);
    }
    if policy.approval.is_some() {
        facts.approval = Some(
            sources
                .approvals
                .latest_approval(&ctx.approval_key())
                .await
                .map(|a| a.map(|r| r.fact()))
                .map_err(|e| e.to_string()),
        );
    }
    if let Some(c) = &policy.concurrency {
        facts.deployments_in_progress = Some(
            deployments_in_progress(
                sources.leases,
                sources.timelines,
                ctx,
                &c.environment,
                c.wave.as_deref(),
                now,
            )
            .await,
        );
    }
    facts
}

/// The alarms a passing stage is to be watched by (docs/gate.md, "Alarm watches"): the policy's alarm names, then
/// the alarms its tags selected and the gate read (each once, in that order). Empty without an alarm check. When the
/// alarms could not be read, only the names are known: the tags' alarms are registered on the next pass that reads
/// them.
pub fn watched_alarms(policy: &Policy, facts: &Facts) -> Vec<String> {
    let Some(check) = &policy.alarms else {
        return Vec::new();
    };
    let mut alarms: Vec<String> = Vec::new();
    let read = facts.alarms.as_ref().map(|a| a.as_slice()).unwrap_or_default();
    for name in check.names.iter().chain(read.iter().map(|a| &a.name)) {
        if !name.is_empty() && !alarms.contains(name) {
            alarms.push(name.clone());
        }
    }
    alarms
}

/// Registers the job's stage as watched by `alarms` for [`crate::guard::ALARM_WATCH_DAYS`] from `now`, so the guard
/// rolls it back when one of them fires. Nothing to do without alarms.
pub async fn register_alarm_watches<W: AlarmWatches + ?Sized>(
    watches: &W,
    ctx: &JobContext,
    alarms: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if alarms.is_empty() {
        return Ok(());
    }
    let stage = WatchedStage {
        pipeline: ctx.pipeline.clone(),
        stage: ctx.stage.clone(),
    };
    let until = now + chrono::Duration::days(crate::guard::ALARM_WATCH_DAYS);
    watches.watch(&ctx.account, &ctx.region, alarms, &stage, until).await
}

/// When `stage` succeeded: in this execution, or (with `pipeline`) in that pipeline's latest execution that ran the
/// stage. A latest run that failed or is still going means "not (yet)": the bake is about what the stage holds now.
async fn bake_stage_succeeded_at<Q: TimelineQueries + ?Sized>(
    store: &Q,
    ctx: &JobContext,
    stage: &str,
    pipeline: Option<&str>,
) -> Result<Option<DateTime<Utc>>, String> {
    let succeeded = |t: &crate::timeline::ExecutionTimeline| {
        t.stage(stage)
            .map(|s| (s.state == "SUCCEEDED").then_some(s.ended_at).flatten())
    };
    let Some(pipeline) = pipeline.filter(|p| *p != ctx.pipeline) else {
        let key = ctx.execution_key();
        let timeline = execution_timeline(store, &key)
            .await
            .map_err(|e| format!("cannot read this execution's timeline: {e}"))?;
        return Ok(timeline.as_ref().and_then(succeeded).flatten());
    };
    let executions = store
        .executions(&ctx.pipeline_key(pipeline), EXECUTIONS_READ)
        .await
        .map_err(|e| format!("cannot list {pipeline}'s executions: {e}"))?;
    for summary in executions {
        let timeline = execution_timeline(store, &summary.key)
            .await
            .map_err(|e| format!("cannot read {pipeline}'s execution {}: {e}", summary.key.execution_id))?;
        if let Some(ran) = timeline.as_ref().and_then(succeeded) {
            return Ok(ran);
        }
    }
    Ok(None)
}

/// The latest failure of the upstream pipeline (or its stage) among its recent executions, unless a success ended
/// after it.
async fn unrestored_failure_at<Q: TimelineQueries + ?Sized>(
    store: &Q,
    ctx: &JobContext,
    check: &UpstreamCheck,
) -> Result<Option<DateTime<Utc>>, String> {
    let executions = store
        .executions(&ctx.pipeline_key(&check.pipeline), EXECUTIONS_READ)
        .await
        .map_err(|e| e.to_string())?;
    // A pipeline never recorded vouches for nothing: a typo in its name must not read as "no failures".
    if executions.is_empty() {
        return Err(never_recorded(ctx, &check.pipeline, None));
    }
    let mut stage_seen = check.stage.is_none();
    // (end time, failed) of each finished run of the pipeline or stage.
    let mut ends: Vec<(DateTime<Utc>, bool)> = Vec::new();
    for summary in &executions {
        let (state, ended_at) = match &check.stage {
            None => {
                let r = summary.resolved();
                (r.state, r.ended_at)
            }
            Some(stage) => {
                let timeline = execution_timeline(store, &summary.key)
                    .await
                    .map_err(|e| format!("execution {}: {e}", summary.key.execution_id))?;
                match timeline.as_ref().and_then(|t| t.stage(stage)) {
                    Some(s) => {
                        stage_seen = true;
                        (s.state.clone(), s.ended_at)
                    }
                    None => continue,
                }
            }
        };
        if let Some(at) = ended_at {
            if is_failure(&state) {
                ends.push((at, true));
            } else if state == "SUCCEEDED" {
                ends.push((at, false));
            }
        }
    }
    if !stage_seen {
        return Err(never_recorded(ctx, &check.pipeline, check.stage.as_deref()));
    }
    let last_failure = ends.iter().filter(|(_, failed)| *failed).map(|(t, _)| *t).max();
    let last_success = ends.iter().filter(|(_, failed)| !*failed).map(|(t, _)| *t).max();
    Ok(match (last_failure, last_success) {
        (Some(f), Some(s)) if s > f => None,
        (f, _) => f,
    })
}

/// Why an upstream with no recorded run cannot be evaluated.
fn never_recorded(ctx: &JobContext, pipeline: &str, stage: Option<&str>) -> String {
    let what = match stage {
        None => format!("no execution of {pipeline}"),
        Some(stage) => format!("no execution of {pipeline} that ran stage {stage}"),
    };
    format!(
        "{what} is recorded in account {} region {} (among its latest {EXECUTIONS_READ}): check the name, and that \
         its events reach Tollgate; an upstream never seen is not a healthy one",
        ctx.account, ctx.region
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Telling engineers.

/// The chat and email message of a failed gate, or of a gate that starts waiting.
pub fn gate_blocked_notification(decision: &GateDecision) -> Notification {
    let (account, region, pipeline, stage, thread, link) = match &decision.context {
        Some(c) => (
            c.account.clone(),
            c.region.clone(),
            Some(c.pipeline.clone()),
            format!("{} / {}", c.stage, c.action),
            format!("{}/{}", c.pipeline, c.execution_id),
            Some(format!(
                "https://{r}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{p}/executions/{e}/timeline?region={r}",
                r = c.region,
                p = c.pipeline,
                e = c.execution_id
            )),
        ),
        None => (
            String::new(),
            String::new(),
            None,
            "a gate".to_string(),
            format!("gate/{}", decision.job_id),
            None,
        ),
    };
    let gate = decision.policy.as_ref().map(|p| p.name.as_str()).unwrap_or("gate");
    let title = match (&decision.outcome, &pipeline) {
        (Outcome::Wait { .. }, Some(p)) => format!("{p}: {gate} is holding {stage}"),
        (_, Some(p)) => format!("{p}: {gate} blocked {stage}"),
        (_, None) => format!("{gate} blocked {stage}"),
    };
    let mut lines: Vec<String> = decision.explanation.lines().map(|l| l.trim_end().to_string()).collect();
    if let Some(c) = &decision.context {
        lines.push(format!("Execution `{}`", c.execution_id));
    }
    lines.push(format!("Decision `{}`", decision.id));
    let mut next_steps = Vec::new();
    match decision.outcome {
        Outcome::Wait { recheck_at } => next_steps.push(format!(
            "Nothing to do if the wait is expected: the gate checks again (next at {} UTC) and goes on by itself",
            recheck_at.format("%H:%M")
        )),
        _ => {
            next_steps.push("Read the failed checks above: each says what it observed and what it requires".into());
            next_steps.push("Fix the cause, then retry the stage to evaluate the gate again".into());
        }
    }
    if let Some(policy) = &decision.policy {
        next_steps.push(format!("The policy is {} in the pipeline's source", policy.file));
    }
    Notification {
        key: format!("gate_blocked@{}", decision.id),
        kind: NotificationKind::GateBlocked,
        severity: Severity::Warning,
        account,
        region,
        pipeline,
        thread,
        title,
        lines,
        next_steps,
        link,
        resources: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// In memory.

/// Decisions and approvals in memory, with the semantics of the DynamoDB adapter.
#[derive(Debug, Default)]
pub struct MemoryGateStore {
    decisions: Mutex<BTreeMap<String, (GateDecision, bool)>>,
    approvals: Mutex<BTreeMap<ApprovalKey, Vec<ApprovalRecord>>>,
    freezes: Mutex<BTreeMap<String, FreezeRecord>>,
    overrides: Mutex<BTreeMap<ApprovalKey, Vec<OverrideRecord>>>,
    leases: Mutex<BTreeMap<String, DeploymentLease>>,
    writes: Mutex<u64>,
}

impl MemoryGateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every decision recorded, by id.
    pub fn decisions(&self) -> Vec<GateDecision> {
        lock(&self.decisions).values().map(|(d, _)| d.clone()).collect()
    }

    /// Decision writes so far (a duplicate writes nothing).
    pub fn decision_writes(&self) -> u64 {
        *lock(&self.writes)
    }

    pub fn notified(&self, decision_id: &str) -> bool {
        lock(&self.decisions).get(decision_id).is_some_and(|(_, n)| *n)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl GateDecisions for MemoryGateStore {
    async fn record_decision(&self, decision: &GateDecision) -> Result<DecisionWrite, StoreError> {
        let mut decisions = lock(&self.decisions);
        if let Some((stored, notified)) = decisions.get(&decision.job_id) {
            return Ok(DecisionWrite::Duplicate {
                stored: Box::new(stored.clone()),
                notified: *notified,
            });
        }
        decisions.insert(decision.job_id.clone(), (decision.clone(), false));
        *lock(&self.writes) += 1;
        Ok(DecisionWrite::New)
    }

    async fn mark_notified(&self, decision_id: &str) -> Result<(), StoreError> {
        match lock(&self.decisions).get_mut(decision_id) {
            Some(entry) => {
                entry.1 = true;
                Ok(())
            }
            None => Err(StoreError::Permanent(format!("no gate decision {decision_id}"))),
        }
    }

    async fn decision(&self, decision_id: &str) -> Result<Option<GateDecision>, StoreError> {
        Ok(lock(&self.decisions).get(decision_id).map(|(d, _)| d.clone()))
    }
}

#[async_trait]
impl ApprovalRecords for MemoryGateStore {
    async fn record_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        lock(&self.approvals)
            .entry(approval.key.clone())
            .or_default()
            .push(approval.clone());
        Ok(())
    }

    async fn latest_approval(&self, key: &ApprovalKey) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(lock(&self.approvals)
            .get(key)
            .and_then(|all| all.iter().max_by_key(|a| a.at).cloned()))
    }
}

#[async_trait]
impl GateControls for MemoryGateStore {
    async fn active_freezes(&self, scopes: &[String]) -> Result<Vec<FreezeRecord>, StoreError> {
        let freezes = lock(&self.freezes);
        Ok(scopes.iter().filter_map(|s| freezes.get(s).cloned()).collect())
    }

    async fn record_freeze(&self, freeze: &FreezeRecord) -> Result<(), StoreError> {
        lock(&self.freezes).insert(freeze.scope.clone(), freeze.clone());
        Ok(())
    }

    async fn lift_freeze(&self, scope: &str) -> Result<Option<FreezeRecord>, StoreError> {
        Ok(lock(&self.freezes).remove(scope))
    }

    async fn record_override(&self, o: &OverrideRecord) -> Result<(), StoreError> {
        lock(&self.overrides).entry(o.key.clone()).or_default().push(o.clone());
        Ok(())
    }

    async fn latest_override(&self, key: &ApprovalKey) -> Result<Option<OverrideRecord>, StoreError> {
        Ok(lock(&self.overrides)
            .get(key)
            .and_then(|all| all.iter().max_by_key(|o| o.at).cloned()))
    }
}

#[async_trait]
impl DeploymentLeases for MemoryGateStore {
    async fn lease(&self, environment: &str, wave: Option<&str>) -> Result<Option<DeploymentLease>, StoreError> {
        Ok(lock(&self.leases).get(&lease_pk(environment, wave)).cloned())
    }

    async fn claim_lease(
        &self,
        lease: &DeploymentLease,
        replacing: Option<&DeploymentLease>,
    ) -> Result<LeaseClaim, StoreError> {
        let mut leases = lock(&self.leases);
        let pk = lease.pk();
        // The same condition as the DynamoDB adapter's: absent, ours, or exactly the one the caller saw.
        let may = match leases.get(&pk) {
            None => true,
            Some(current) => {
                current.holder == lease.holder
                    || replacing.is_some_and(|r| r.holder == current.holder && r.acquired_at == current.acquired_at)
            }
        };
        if !may {
            let held = leases.get(&pk).cloned().map(Box::new);
            return Ok(held.map(LeaseClaim::HeldBy).unwrap_or(LeaseClaim::Acquired));
        }
        leases.insert(pk, lease.clone());
        Ok(LeaseClaim::Acquired)
    }
}

/// Alarm tags held in memory: each alarm's tags.
#[derive(Debug, Default)]
pub struct MemoryAlarmTags {
    alarms: BTreeMap<String, BTreeMap<String, String>>,
    error: Option<FactError>,
}

impl MemoryAlarmTags {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_alarm(mut self, name: &str, tags: &[(&str, &str)]) -> Self {
        let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.alarms.insert(name.to_string(), tags);
        self
    }

    pub fn failing(mut self, error: &str) -> Self {
        self.error = Some(FactError(error.to_string()));
        self
    }
}

#[async_trait]
impl AlarmsByTags for MemoryAlarmTags {
    async fn alarms_tagged(&self, tags: &BTreeMap<String, String>) -> Result<Vec<String>, FactError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        Ok(self
            .alarms
            .iter()
            .filter(|(_, carried)| tags.iter().all(|(k, v)| carried.get(k) == Some(v)))
            .map(|(name, _)| name.clone())
            .collect())
    }
}

/// Alarm states and metric totals held in memory (or an error to answer with), recording what was asked.
#[derive(Debug, Default)]
pub struct MemoryCloudWatch {
    alarms: Mutex<Option<Result<Vec<AlarmFact>, FactError>>>,
    metric: Mutex<Option<Result<f64, FactError>>>,
    asked: Mutex<Vec<String>>,
}

impl MemoryCloudWatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_alarms(self, alarms: Result<Vec<AlarmFact>, FactError>) -> Self {
        *lock(&self.alarms) = Some(alarms);
        self
    }

    pub fn with_metric(self, total: Result<f64, FactError>) -> Self {
        *lock(&self.metric) = Some(total);
        self
    }

    /// What was asked, in order: `alarms <names>` and `metric <namespace>/<name>`.
    pub fn asked(&self) -> Vec<String> {
        lock(&self.asked).clone()
    }
}

#[async_trait]
impl AlarmStates for MemoryCloudWatch {
    async fn alarm_states(
        &self,
        names: &[String],
        _tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError> {
        lock(&self.asked).push(format!("alarms {}", names.join(",")));
        match &*lock(&self.alarms) {
            Some(Ok(all)) => Ok(all.iter().filter(|a| names.contains(&a.name)).cloned().collect()),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl MetricTotals for MemoryCloudWatch {
    async fn metric_total(
        &self,
        metric: &MinRequests,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Result<f64, FactError> {
        lock(&self.asked).push(format!("metric {}/{}", metric.namespace, metric.metric));
        lock(&self.metric).clone().unwrap_or(Ok(0.0))
    }
}

/// CodePipeline's job API in memory: a context per job, and every answer it was sent.
#[derive(Debug, Default)]
pub struct MemoryPipelineJobs {
    contexts: Mutex<BTreeMap<String, JobContext>>,
    answers: Mutex<Vec<(String, JobAnswer)>>,
}

impl MemoryPipelineJobs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_job(self, job_id: &str, ctx: JobContext) -> Self {
        lock(&self.contexts).insert(job_id.to_string(), ctx);
        self
    }

    /// Every answer sent, in order, with its job id.
    pub fn answers(&self) -> Vec<(String, JobAnswer)> {
        lock(&self.answers).clone()
    }
}

#[async_trait]
impl PipelineJobs for MemoryPipelineJobs {
    async fn job_context(&self, job_id: &str) -> Result<JobContext, JobApiError> {
        lock(&self.contexts)
            .get(job_id)
            .cloned()
            .ok_or_else(|| JobApiError::Permanent(format!("JobNotFoundException: job {job_id}")))
    }

    async fn answer(&self, job_id: &str, answer: &JobAnswer) -> Result<AnswerSent, JobApiError> {
        let mut answers = lock(&self.answers);
        let before = answers.iter().any(|(j, _)| j == job_id);
        answers.push((job_id.to_string(), answer.clone()));
        Ok(if before {
            AnswerSent::AlreadyAnswered
        } else {
            AnswerSent::Sent
        })
    }
}

/// Artifact files in memory, by path.
#[derive(Debug, Default)]
pub struct MemoryPolicySource {
    files: BTreeMap<String, String>,
}

impl MemoryPolicySource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }
}

#[async_trait]
impl PolicySource for MemoryPolicySource {
    async fn read_policy(
        &self,
        artifact: &ArtifactLocation,
        _credentials: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError> {
        candidates
            .iter()
            .find_map(|p| {
                self.files.get(p).map(|text| PolicyText {
                    path: p.clone(),
                    text: text.clone(),
                })
            })
            .ok_or_else(|| {
                FactError(format!(
                    "{} not found in input artifact {}",
                    candidates.join(" or "),
                    artifact.name
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn continuation_round_trips_and_counts_evaluations() {
        let first = at("2026-11-20T14:10:00Z");
        let one = Continuation::after(None, first, "job-1");
        let two = Continuation::after(Some(&one), first, "job-2");
        let decoded = Continuation::decode(&two.encode()).unwrap();
        assert_eq!(decoded, two);
        assert_eq!(decoded.first_evaluated_at(), first);
        assert_eq!(decoded.evaluations, 2);
        assert_eq!(decoded.decisions, vec!["job-1", "job-2"]);
        assert_eq!(two.encode(), r#"{"v":1,"f":1795183800,"n":2,"d":["job-1","job-2"]}"#);
    }

    #[test]
    fn continuation_stays_within_the_api_limit_keeping_the_first_and_latest_ids() {
        let first = at("2026-11-20T14:10:00Z");
        let mut c: Option<Continuation> = None;
        for i in 0..500 {
            let id = format!("{i:08}-aaaa-bbbb-cccc-dddddddddddd");
            c = Some(Continuation::after(c.as_ref(), first, &id));
            c = Some(Continuation::decode(&c.unwrap().encode()).unwrap());
        }
        let c = c.unwrap();
        let token = c.encode();
        assert!(token.chars().count() <= MAX_CONTINUATION_TOKEN_CHARS, "{}", token.len());
        assert_eq!(c.evaluations, 500);
        assert!(c.decisions[0].starts_with("00000000"));
        assert!(c.decisions.last().unwrap().starts_with("00000499"));
    }

    #[test]
    fn foreign_continuation_tokens_are_refused() {
        assert!(Continuation::decode("a72fe5a4-fad6-4d74-9a4c-25da97a186d6").is_err());
        assert!(Continuation::decode(r#"{"v":2,"f":1,"n":1,"d":[]}"#).is_err());
    }

    #[test]
    fn truncation_keeps_the_limit_and_says_so() {
        let long = "x".repeat(6000);
        let cut = truncate_with_note(&long, MAX_FAILURE_MESSAGE_CHARS, "see decision d-1");
        assert_eq!(cut.chars().count(), MAX_FAILURE_MESSAGE_CHARS);
        assert!(cut.ends_with("more characters; see decision d-1)"), "{}", &cut[4900..]);
        assert_eq!(truncate_with_note("short", 10, "x"), "short");
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let c = ArtifactCredentials {
            access_key_id: "AKIA-SHOWN".into(),
            secret_access_key: "SECRET".into(),
            session_token: "TOKEN".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("AKIA") && !shown.contains("SECRET") && !shown.contains("TOKEN"));
    }
    // ------------------------------------------------------------------ gathering facts

    use crate::memory::MemoryStore;
    use crate::ports::EventRecorder;

    async fn record(store: &MemoryStore, pipeline: &str, execution: &str, stage: Option<&str>, state: &str, at: &str) {
        let (detail_type, detail) = match stage {
            Some(stage) => (
                "CodePipeline Stage Execution State Change",
                serde_json::json!({"pipeline": pipeline, "execution-id": execution, "stage": stage, "state": state}),
            ),
            None => (
                "CodePipeline Pipeline Execution State Change",
                serde_json::json!({"pipeline": pipeline, "execution-id": execution, "state": state}),
            ),
        };
        let body = serde_json::json!({"version": "0", "id": "x", "detail-type": detail_type, "source": "aws.codepipeline",
            "account": "111122223333", "time": at, "region": "eu-west-1", "resources": [], "detail": detail});
        let event = crate::parse::parse_event(body.to_string().as_bytes()).unwrap();
        store.record(&event).await.unwrap();
    }

    fn job_context() -> JobContext {
        JobContext {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
            stage: "Production".into(),
            action: "Gate".into(),
            execution_id: "prod-1".into(),
        }
    }

    async fn facts_for(policy: &str, store: &MemoryStore, now: DateTime<Utc>) -> (Facts, MemoryCloudWatch) {
        let policy = crate::policy::parse_policy("p.yaml", policy).unwrap();
        let cloudwatch = MemoryCloudWatch::new().with_metric(Ok(1234.0));
        let approvals = MemoryGateStore::new();
        let sources = FactSources {
            alarms: &cloudwatch,
            metrics: &cloudwatch,
            timelines: store,
            approvals: &approvals,
            leases: &approvals,
        };
        (
            gather_facts(&policy, &job_context(), now, now, &sources).await,
            cloudwatch,
        )
    }

    #[tokio::test]
    async fn only_the_facts_the_policy_needs_are_gathered() {
        let store = MemoryStore::new();
        let (facts, cloudwatch) = facts_for(
            "version: 1\nname: p\nmax_wait: 1h\n",
            &store,
            at("2026-11-20T14:00:00Z"),
        )
        .await;
        assert_eq!(
            facts,
            Facts::new(at("2026-11-20T14:00:00Z"), at("2026-11-20T14:00:00Z"))
        );
        assert!(cloudwatch.asked().is_empty());
    }

    #[tokio::test]
    async fn bake_from_another_pipeline_is_its_latest_run_of_the_stage() {
        let store = MemoryStore::new();
        let policy = "version: 1\nname: p\nmax_wait: 1h\nbake:\n  after_stage: Staging\n  pipeline: checkout-staging\n  duration: 1h\n  min_requests: {namespace: N, metric: M, at_least: 10}\n";
        // An older execution succeeded in Staging; the newest one never reached it (failed in Build).
        record(
            &store,
            "checkout-staging",
            "s-1",
            None,
            "STARTED",
            "2026-11-20T10:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-1",
            Some("Staging"),
            "SUCCEEDED",
            "2026-11-20T11:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-2",
            None,
            "STARTED",
            "2026-11-20T12:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-2",
            Some("Build"),
            "FAILED",
            "2026-11-20T12:05:00Z",
        )
        .await;
        let (facts, cloudwatch) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
        assert_eq!(
            facts.bake_stage_succeeded_at,
            Some(Ok(Some(at("2026-11-20T11:00:00Z"))))
        );
        assert_eq!(facts.bake_requests, Some(Ok(1234.0)));
        assert_eq!(cloudwatch.asked(), vec!["metric N/M".to_string()]);

        // A newer execution is deploying Staging now: the stage's latest run has not succeeded yet.
        record(
            &store,
            "checkout-staging",
            "s-3",
            None,
            "STARTED",
            "2026-11-20T13:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-3",
            Some("Staging"),
            "STARTED",
            "2026-11-20T13:10:00Z",
        )
        .await;
        let (facts, cloudwatch) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
        assert_eq!(facts.bake_stage_succeeded_at, Some(Ok(None)));
        assert_eq!(facts.bake_requests, None);
        assert!(
            cloudwatch.asked().is_empty(),
            "no traffic is read before the bake time has passed"
        );
    }

    #[tokio::test]
    async fn an_upstream_failure_counts_until_a_success_follows_it() {
        let store = MemoryStore::new();
        let policy = "version: 1\nname: p\nmax_wait: 1h\nupstream:\n  pipeline: checkout-staging\n  no_unrestored_failure_for: 1h\n";
        record(
            &store,
            "checkout-staging",
            "s-1",
            None,
            "STARTED",
            "2026-11-20T12:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-1",
            None,
            "SUCCEEDED",
            "2026-11-20T12:20:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-2",
            None,
            "STARTED",
            "2026-11-20T13:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-2",
            None,
            "FAILED",
            "2026-11-20T13:20:00Z",
        )
        .await;
        let (facts, _) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
        assert_eq!(
            facts.upstream_unrestored_failure_at,
            Some(Ok(Some(at("2026-11-20T13:20:00Z"))))
        );
        record(
            &store,
            "checkout-staging",
            "s-3",
            None,
            "STARTED",
            "2026-11-20T13:30:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-3",
            None,
            "SUCCEEDED",
            "2026-11-20T13:50:00Z",
        )
        .await;
        let (facts, _) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
        assert_eq!(facts.upstream_unrestored_failure_at, Some(Ok(None)));
    }

    #[tokio::test]
    async fn an_upstream_stage_failure_is_read_from_the_timelines() {
        let store = MemoryStore::new();
        let policy = "version: 1\nname: p\nmax_wait: 1h\nupstream:\n  pipeline: checkout-staging\n  stage: Integration\n  no_unrestored_failure_for: 1h\n";
        record(
            &store,
            "checkout-staging",
            "s-1",
            None,
            "STARTED",
            "2026-11-20T13:00:00Z",
        )
        .await;
        record(
            &store,
            "checkout-staging",
            "s-1",
            Some("Integration"),
            "FAILED",
            "2026-11-20T13:20:00Z",
        )
        .await;
        let (facts, _) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
        assert_eq!(
            facts.upstream_unrestored_failure_at,
            Some(Ok(Some(at("2026-11-20T13:20:00Z"))))
        );
    }

    // ------------------------------------------------------------------ concurrency: deployment leases

    const CONCURRENT: &str = "version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: production\n  wave: 1\n";

    fn ctx_of(pipeline: &str, execution: &str) -> JobContext {
        JobContext {
            pipeline: pipeline.into(),
            execution_id: execution.into(),
            ..job_context()
        }
    }

    async fn in_progress(
        leases: &MemoryGateStore,
        store: &MemoryStore,
        policy: &Policy,
        ctx: &JobContext,
    ) -> Result<Vec<String>, String> {
        let cloudwatch = MemoryCloudWatch::new();
        let sources = FactSources {
            alarms: &cloudwatch,
            metrics: &cloudwatch,
            timelines: store,
            approvals: leases,
            leases,
        };
        let now = at("2026-11-20T14:00:00Z");
        gather_facts(policy, ctx, now, now, &sources)
            .await
            .deployments_in_progress
            .unwrap()
    }

    #[tokio::test]
    async fn a_lease_is_held_while_its_execution_is_in_progress_and_freed_when_it_ends() {
        let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
        let policy = crate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
        let now = at("2026-11-20T14:00:00Z");
        let (payments, checkout) = (ctx_of("payments", "pay-1"), ctx_of("checkout-service", "prod-1"));
        record(&store, "payments", "pay-1", None, "STARTED", "2026-11-20T13:50:00Z").await;

        // Nobody holds it: free for both, and the first gate to pass takes it.
        assert_eq!(in_progress(&leases, &store, &policy, &checkout).await, Ok(vec![]));
        let claimed = claim_deployment_lease(&policy, &payments, "job-p", &leases, &store, now).await;
        assert_eq!(claimed, LeaseResult::Acquired);
        let lease = leases.lease("production", Some("1")).await.unwrap().unwrap();
        assert_eq!(
            (lease.holder.pipeline.as_str(), lease.decision_id.as_str()),
            ("payments", "job-p")
        );
        assert_eq!(lease.expires_at, now + LEASE_EXPIRY);

        // Another execution waits for it; the holder re-evaluating keeps it.
        let held = "payments execution pay-1 (Production, since 2026-11-20 14:00 UTC)".to_string();
        assert_eq!(
            in_progress(&leases, &store, &policy, &checkout).await,
            Ok(vec![held.clone()])
        );
        assert_eq!(in_progress(&leases, &store, &policy, &payments).await, Ok(vec![]));
        let later = now + chrono::TimeDelta::minutes(5);
        assert_eq!(
            claim_deployment_lease(&policy, &checkout, "job-c", &leases, &store, later).await,
            LeaseResult::HeldBy(vec![held])
        );
        assert_eq!(
            claim_deployment_lease(&policy, &payments, "job-p2", &leases, &store, later).await,
            LeaseResult::Acquired
        );
        let renewed = leases.lease("production", Some("1")).await.unwrap().unwrap();
        assert_eq!(renewed.acquired_at, now, "a renewal keeps the first acquisition");
        assert_eq!(renewed.expires_at, later + LEASE_EXPIRY);

        // The holder's execution ends: the lease is free and the next gate replaces it.
        record(&store, "payments", "pay-1", None, "SUCCEEDED", "2026-11-20T14:10:00Z").await;
        assert_eq!(in_progress(&leases, &store, &policy, &checkout).await, Ok(vec![]));
        assert_eq!(
            claim_deployment_lease(&policy, &checkout, "job-c2", &leases, &store, later).await,
            LeaseResult::Acquired
        );
        let now_held = leases.lease("production", Some("1")).await.unwrap().unwrap();
        assert_eq!(now_held.holder, checkout.execution_key());
    }

    #[tokio::test]
    async fn failed_superseded_and_expired_holders_free_the_lease() {
        let policy = crate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
        let checkout = ctx_of("checkout-service", "prod-1");
        for (state, now) in [
            (Some("FAILED"), "2026-11-20T14:00:00Z"),
            (Some("SUPERSEDED"), "2026-11-20T14:00:00Z"),
            (Some("STOPPED"), "2026-11-20T14:00:00Z"),
            // No end recorded, but the lease is older than LEASE_EXPIRY: a stuck lease clears itself.
            (None, "2026-11-21T13:00:01Z"),
        ] {
            let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
            record(&store, "payments", "pay-1", None, "STARTED", "2026-11-20T12:00:00Z").await;
            let payments = ctx_of("payments", "pay-1");
            let took = at("2026-11-20T13:00:00Z");
            assert_eq!(
                claim_deployment_lease(&policy, &payments, "j", &leases, &store, took).await,
                LeaseResult::Acquired
            );
            if let Some(state) = state {
                record(&store, "payments", "pay-1", None, state, "2026-11-20T13:30:00Z").await;
            }
            let claimed = claim_deployment_lease(&policy, &checkout, "k", &leases, &store, at(now)).await;
            assert_eq!(claimed, LeaseResult::Acquired, "{state:?}");
            let lease = leases.lease("production", Some("1")).await.unwrap().unwrap();
            assert_eq!(lease.holder, checkout.execution_key(), "{state:?}");
        }
    }

    #[tokio::test]
    async fn a_holder_with_no_recorded_events_yet_counts_as_in_progress() {
        let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
        let policy = crate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
        let now = at("2026-11-20T14:00:00Z");
        claim_deployment_lease(&policy, &ctx_of("payments", "pay-1"), "j", &leases, &store, now).await;
        let others = in_progress(&leases, &store, &policy, &ctx_of("checkout-service", "prod-1"))
            .await
            .unwrap();
        assert_eq!(others.len(), 1);
        assert!(others[0].starts_with("payments execution pay-1"), "{others:?}");
    }

    #[tokio::test]
    async fn of_two_gates_that_saw_the_lease_free_exactly_one_takes_it() {
        let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
        let policy = crate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
        let now = at("2026-11-20T14:00:00Z");
        let (a, b) = (ctx_of("payments", "pay-1"), ctx_of("search", "s-1"));
        // Both evaluated the lease free...
        assert_eq!(in_progress(&leases, &store, &policy, &a).await, Ok(vec![]));
        assert_eq!(in_progress(&leases, &store, &policy, &b).await, Ok(vec![]));
        // ... and both passed: the claims run concurrently.
        let (ra, rb) = tokio::join!(
            claim_deployment_lease(&policy, &a, "ja", &leases, &store, now),
            claim_deployment_lease(&policy, &b, "jb", &leases, &store, now)
        );
        let won = [&ra, &rb].iter().filter(|r| ***r == LeaseResult::Acquired).count();
        assert_eq!(won, 1, "{ra:?} {rb:?}");
        assert!(matches!(ra, LeaseResult::HeldBy(_)) || matches!(rb, LeaseResult::HeldBy(_)));
    }

    #[tokio::test]
    async fn waves_and_environments_have_their_own_leases_and_no_policy_needs_none() {
        let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
        let now = at("2026-11-20T14:00:00Z");
        let wave2 = crate::policy::parse_policy("p.yaml", &CONCURRENT.replace("wave: 1", "wave: 2")).unwrap();
        let wave1 = crate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
        claim_deployment_lease(&wave1, &ctx_of("payments", "pay-1"), "j", &leases, &store, now).await;
        assert_eq!(
            claim_deployment_lease(&wave2, &ctx_of("search", "s-1"), "k", &leases, &store, now).await,
            LeaseResult::Acquired
        );
        assert_eq!(lease_pk("production", Some("1")), "LEASE#production#WAVE#1");
        assert_eq!(lease_pk("staging", None), "LEASE#staging");
        let none = crate::policy::parse_policy("p.yaml", "version: 1\nname: p\nmax_wait: 1h\n").unwrap();
        assert_eq!(
            claim_deployment_lease(&none, &ctx_of("x", "y"), "z", &leases, &store, now).await,
            LeaseResult::NotNeeded
        );
    }

    struct BrokenLeases;

    #[async_trait]
    impl DeploymentLeases for BrokenLeases {
        async fn lease(&self, _: &str, _: Option<&str>) -> Result<Option<DeploymentLease>, StoreError> {
            Err(StoreError::Transient("ThrottlingException".into()))
        }
        async fn claim_lease(
            &self,
            _: &DeploymentLease,
            _: Option<&DeploymentLease>,
        ) -> Result<LeaseClaim, StoreError> {
            Err(StoreError::Transient("ThrottlingException".into()))
        }
    }

    #[tokio::test]
    async fn an_unreadable_lease_is_an_error_of_the_check() {
        let store = MemoryStore::new();
        let policy = crate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
        let cloudwatch = MemoryCloudWatch::new();
        let approvals = MemoryGateStore::new();
        let sources = FactSources {
            alarms: &cloudwatch,
            metrics: &cloudwatch,
            timelines: &store,
            approvals: &approvals,
            leases: &BrokenLeases,
        };
        let now = at("2026-11-20T14:00:00Z");
        let facts = gather_facts(&policy, &job_context(), now, now, &sources).await;
        let err = facts.deployments_in_progress.unwrap().unwrap_err();
        assert!(
            err.contains("cannot read the deployment lease") && err.contains("Throttling"),
            "{err}"
        );
        match claim_deployment_lease(&policy, &job_context(), "j", &BrokenLeases, &store, now).await {
            LeaseResult::Error(why) => assert!(why.contains("Throttling"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    // ------------------------------------------------------------------ alarms by tag

    fn alarm(name: &str, state: crate::policy::AlarmState) -> AlarmFact {
        AlarmFact {
            name: name.into(),
            state,
            since: at("2026-11-20T13:00:00Z"),
        }
    }

    #[tokio::test]
    async fn tagged_alarms_join_the_named_ones() {
        use crate::policy::AlarmState::{Alarm, Ok as Fine};
        let index = MemoryAlarmTags::new()
            .with_alarm("checkout-5xx", &[("service", "checkout"), ("team", "payments")])
            .with_alarm("checkout-latency", &[("service", "checkout")])
            .with_alarm("search-5xx", &[("service", "search")]);
        let states = MemoryCloudWatch::new().with_alarms(Ok(vec![
            alarm("checkout-5xx", Alarm),
            alarm("checkout-latency", Fine),
            alarm("search-5xx", Alarm),
            alarm("named", Fine),
        ]));
        let alarms = TaggedAlarms::new(index, states);
        let tags = BTreeMap::from([("service".to_string(), "checkout".to_string())]);
        let found = alarms
            .alarm_states(&["named".into(), "checkout-5xx".into()], &tags)
            .await
            .unwrap();
        let names: Vec<&str> = found.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["checkout-5xx", "checkout-latency", "named"]);
        assert_eq!(
            alarms.states.asked(),
            vec!["alarms named,checkout-5xx,checkout-latency".to_string()]
        );

        let both = BTreeMap::from([
            ("service".to_string(), "checkout".to_string()),
            ("team".to_string(), "payments".to_string()),
        ]);
        let found = alarms.alarm_states(&[], &both).await.unwrap();
        assert_eq!(
            found.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["checkout-5xx"]
        );
    }

    #[tokio::test]
    async fn tags_that_select_no_alarm_or_cannot_be_read_are_errors() {
        let index = MemoryAlarmTags::new().with_alarm("search-5xx", &[("service", "search")]);
        let alarms = TaggedAlarms::new(index, MemoryCloudWatch::new());
        let tags = BTreeMap::from([("service".to_string(), "checkout".to_string())]);
        let err = alarms.alarm_states(&["named".into()], &tags).await.unwrap_err();
        assert_eq!(
            err.0,
            "no CloudWatch alarm carries the tags service=checkout (tag:GetResources found none in this account and region)"
        );
        assert!(
            alarms.states.asked().is_empty(),
            "no alarm state is read for a selection that failed"
        );

        let alarms = TaggedAlarms::new(
            MemoryAlarmTags::new().failing("AccessDeniedException"),
            MemoryCloudWatch::new(),
        );
        let err = alarms.alarm_states(&[], &tags).await.unwrap_err();
        assert_eq!(
            err.0,
            "cannot find the alarms tagged service=checkout: AccessDeniedException"
        );

        // Without tags the index is never asked.
        let alarms = TaggedAlarms::new(MemoryAlarmTags::new().failing("never"), MemoryCloudWatch::new());
        assert!(alarms.alarm_states(&["named".into()], &BTreeMap::new()).await.is_ok());
    }

    #[test]
    fn freeze_scopes_are_global_or_a_pipeline() {
        assert_eq!(parse_freeze_scope(" global ").unwrap(), "global");
        let p = "pipeline:111122223333/eu-west-1/checkout-service";
        assert_eq!(parse_freeze_scope(p).unwrap(), p);
        for bad in [
            "",
            "pipeline:checkout",
            "pipeline:1/r/",
            "pipeline:1/r/p/x",
            "Global",
            "account:1",
        ] {
            assert!(parse_freeze_scope(bad).is_err(), "{bad}");
        }
        assert_eq!(freeze_scopes(&job_context()), vec![p.to_string(), "global".into()]);
        assert_eq!(freeze_pk("global"), "FREEZE#global");
        assert_eq!(
            override_pk(&job_context().approval_key()),
            "OVERRIDE#111122223333#eu-west-1#checkout-service#prod-1#Production"
        );
    }

    #[test]
    fn ad_hoc_freezes_join_the_policys_unless_they_are_over() {
        let policy = crate::policy::parse_policy("p.yaml", "version: 1\nname: p\nmax_wait: 1h\n").unwrap();
        let record = |until: &str| FreezeRecord {
            scope: "global".into(),
            from: FreezeBound::parse("2026-11-20").unwrap(),
            until: FreezeBound::parse(until).unwrap(),
            reason: "INC-42".into(),
            by: "arn:aws:iam::1:user/bob".into(),
            at: at("2026-11-20T09:00:00Z"),
        };
        let now = at("2026-11-21T12:00:00Z");
        let p = with_ad_hoc_freezes(&policy, &[record("2026-11-22"), record("2026-11-20")], now);
        let freezes = p.freezes.unwrap();
        assert_eq!(freezes.len(), 1);
        assert_eq!(freezes[0].name, "ad-hoc freeze by arn:aws:iam::1:user/bob: INC-42");
        assert_eq!(with_ad_hoc_freezes(&policy, &[record("2026-11-20")], now).freezes, None);
    }

    #[test]
    fn a_blocked_gate_reads_in_chat_with_its_explanation() {
        let decision = GateDecision {
            id: "job-1".into(),
            job_id: "job-1".into(),
            decided_by: GATE_PRINCIPAL.into(),
            decided_at: at("2026-11-20T14:28:00Z"),
            context: Some(job_context()),
            policy: Some(PolicyRef {
                file: "policies/production.yaml".into(),
                name: "production-gate".into(),
            }),
            outcome: Outcome::Fail,
            summary: "failed: alarms".into(),
            checks: vec![],
            explanation: "FAIL: failed: alarms\n  ✗ alarms       alarm x in ALARM\n".into(),
            first_evaluated_at: at("2026-11-20T14:28:00Z"),
            previous: vec![],
            answer: JobAnswer::Failure {
                kind: FailureKind::JobFailed,
                message: "m".into(),
                external_execution_id: "job-1".into(),
            },
            override_applied: None,
        };
        let n = gate_blocked_notification(&decision);
        assert_eq!((n.kind.as_str(), n.severity.as_str()), ("gate_blocked", "warning"));
        assert_eq!(n.title, "checkout-service: production-gate blocked Production / Gate");
        assert_eq!(n.thread, "checkout-service/prod-1");
        assert_eq!(n.lines[1], "  ✗ alarms       alarm x in ALARM");
        assert_eq!(n.key, "gate_blocked@job-1");
    }
}
