//! Automatic rollback on alarms (the `guard` function's domain; the design is in docs/guard.md).
//!
//! When a CloudWatch alarm goes to ALARM, [`on_alarm`] asks a [`TargetDiscovery`] what the alarm protects (CodeDeploy
//! deployments whose group lists it, pipeline stages whose gate checks it ([`AlarmWatches`]) or tagged with it,
//! CloudFormation stacks tagged with it), decides per target with [`decide`] (in flight or inside the rollback window,
//! per kind: act or only notify), and for each target claims one [`RollbackRecord`] per (target, incident) with a
//! conditional write before acting. A storm of flaps and duplicated deliveries therefore acts once per target; an OK
//! state only records the time to restore ([`on_recovery`]) and never undoes anything; a rollback AWS refuses is
//! recorded with AWS's reason and not retried; a transient failure releases the claim and is returned as retryable, so
//! the message comes back and acts once.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{pipeline_scope, AuditLog, NewAuditEntry};
use crate::gate::alarm_key;
use crate::record::event::{DeliveryEvent, EventBody};
use crate::record::keys::{ExecutionKey, PipelineKey};
use crate::record::ports::StoreError;
use crate::tell::notify::{Notification, NotificationKind, Severity};
use crate::tell::ports::Notifier;

/// Who acts: the guard itself, never a person.
pub const GUARD_PRINCIPAL: &str = "tollgate:guard";

/// The resource tag that puts a stack or a pipeline stage under an alarm's protection:
/// `tollgate:rollback-alarm:<alarm name>` = `true` on a stack, = `<stage name>[,<stage name>...]` on a pipeline.
pub const ROLLBACK_TAG_PREFIX: &str = "tollgate:rollback-alarm:";

/// The audit actions of the guard (`rollback.*`, defined with the others in [`crate::audit::action`]).
pub mod action {
    pub use crate::audit::action::{
        ROLLBACK_CANCEL_UPDATE_STACK as CANCEL_UPDATE_STACK, ROLLBACK_NOTIFIED as NOTIFIED,
        ROLLBACK_REFUSED as REFUSED, ROLLBACK_STACK, ROLLBACK_STAGE, ROLLBACK_STOP_DEPLOYMENT as STOP_DEPLOYMENT,
    };
}

// ---------------------------------------------------------------------------------------------------------------
// Policy.

/// What the guard does for one kind of target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Roll back, then tell engineers what was done.
    Act,
    /// Only tell engineers what would have been rolled back.
    Notify,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim() {
            "act" => Some(Mode::Act),
            "notify" => Some(Mode::Notify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Act => "act",
            Mode::Notify => "notify",
        }
    }
}

/// The guard's policy (the function's configuration; defaults in docs/guard.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardPolicy {
    pub deployments: Mode,
    pub stages: Mode,
    pub stacks: Mode,
    /// A target that finished less than this before the alarm is still protected (default 30 minutes).
    pub window: Duration,
    /// An ALARM state older than this when it is processed is only reported (default 15 minutes): a late redelivery
    /// must not roll back a deployment made after the incident.
    pub max_alarm_age: Duration,
    /// A claim older than this whose holder never finished is taken over (default 5 minutes, above the function's
    /// timeout).
    pub lease: Duration,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            deployments: Mode::Act,
            stages: Mode::Act,
            stacks: Mode::Act,
            window: Duration::minutes(30),
            max_alarm_age: Duration::minutes(15),
            lease: Duration::minutes(5),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The alarm.

/// A CloudWatch alarm state change, as the guard reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmSignal {
    pub account: String,
    pub region: String,
    pub alarm_name: String,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: String,
    pub reason: Option<String>,
    /// When CloudWatch says the state changed (the event time when it does not say).
    pub at: DateTime<Utc>,
}

impl AlarmSignal {
    /// The alarm state change an event carries; `None` for any other kind of event.
    pub fn from_event(event: &DeliveryEvent) -> Option<AlarmSignal> {
        match &event.body {
            EventBody::AlarmState(a) => Some(AlarmSignal {
                account: event.account.clone(),
                region: event.region.clone(),
                alarm_name: a.alarm_name.clone(),
                state: a.state.clone(),
                reason: a.reason.clone(),
                at: a.changed_at.unwrap_or(event.time),
            }),
            _ => None,
        }
    }

    /// `<account>/<region>/<alarm name>`: the alarm's identity in records.
    pub fn key(&self) -> String {
        alarm_key(&self.account, &self.region, &self.alarm_name)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Targets.

/// What an alarm protects, as discovery found it (facts only: the decision is [`decide`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A CodeDeploy deployment whose deployment group's alarm configuration lists the alarm.
    Deployment {
        application: String,
        deployment_group: String,
        deployment_id: String,
        /// As recorded: `IN_PROGRESS`, or the terminal status (`SUCCESS`, `FAILURE`, `STOP`).
        status: String,
        /// When it ended, for a finished one.
        finished_at: Option<DateTime<Utc>>,
    },
    /// A pipeline stage tagged with the alarm, with its latest execution.
    Stage {
        pipeline: String,
        stage: String,
        /// The pipeline's first stage (its source): RollbackStage refuses it.
        first_stage: bool,
        execution_id: String,
        /// The stage execution's status: `InProgress`, `Succeeded`, `Failed`, `Stopped`...
        status: String,
        /// When the stage's last action changed state (its end, for a finished stage).
        changed_at: Option<DateTime<Utc>>,
    },
    /// A CloudFormation stack tagged with the alarm.
    Stack {
        stack_name: String,
        stack_id: String,
        status: String,
        /// The stack's last update (its creation when never updated): what makes an update an incident.
        updated_at: Option<DateTime<Utc>>,
    },
}

/// A target in an account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub account: String,
    pub region: String,
    pub target: Target,
}

impl Candidate {
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Deployment { .. } => "deployment",
            Target::Stage { .. } => "stage",
            Target::Stack { .. } => "stack",
        }
    }

    /// The target, whatever its incident: `deployment:<app>/<group>`, `stage:<pipeline>/<stage>`, `stack:<name>`.
    pub fn target_name(&self) -> String {
        match &self.target {
            Target::Deployment {
                application,
                deployment_group,
                ..
            } => format!("deployment:{application}/{deployment_group}"),
            Target::Stage { pipeline, stage, .. } => format!("stage:{pipeline}/{stage}"),
            Target::Stack { stack_name, .. } => format!("stack:{stack_name}"),
        }
    }

    /// What one incident of the target is: the deployment, the pipeline execution in the stage, the stack's update.
    pub fn incident(&self) -> String {
        match &self.target {
            Target::Deployment { deployment_id, .. } => deployment_id.clone(),
            Target::Stage { execution_id, .. } => execution_id.clone(),
            Target::Stack {
                stack_id, updated_at, ..
            } => match updated_at {
                Some(t) => format!("{stack_id}@{}", t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                None => stack_id.clone(),
            },
        }
    }

    /// The claim's id: one per (target, incident), whichever alarm fired.
    pub fn record_id(&self) -> String {
        format!(
            "{}#{}#{}#{}",
            self.account,
            self.region,
            self.target_name(),
            self.incident()
        )
    }

    /// The pipeline execution the target belongs to, when known (stages): the rollback shows on its timeline.
    pub fn execution(&self) -> Option<ExecutionKey> {
        match &self.target {
            Target::Stage {
                pipeline, execution_id, ..
            } => Some(ExecutionKey {
                account: self.account.clone(),
                region: self.region.clone(),
                pipeline: pipeline.clone(),
                execution_id: execution_id.clone(),
            }),
            _ => None,
        }
    }

    /// The audit scope: the pipeline's for a stage, the deployment group's or the stack's otherwise.
    pub fn audit_scope(&self) -> String {
        match &self.target {
            Target::Stage { pipeline, .. } => pipeline_scope(&PipelineKey {
                account: self.account.clone(),
                region: self.region.clone(),
                pipeline: pipeline.clone(),
            }),
            Target::Deployment {
                application,
                deployment_group,
                ..
            } => format!(
                "codedeploy:{}/{}/{application}/{deployment_group}",
                self.account, self.region
            ),
            Target::Stack { stack_name, .. } => format!("stack:{}/{}/{stack_name}", self.account, self.region),
        }
    }
}

/// The AWS request a decision makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum RollbackAction {
    /// CodeDeploy StopDeployment with `autoRollbackEnabled = true`.
    StopDeployment { deployment_id: String },
    /// CodePipeline RollbackStage to the last successful, non-rollback execution of the stage.
    RollbackStage {
        pipeline: String,
        stage: String,
        /// The execution being rolled back (never the target).
        current_execution_id: String,
    },
    /// CloudFormation CancelUpdateStack (an update in progress).
    CancelUpdateStack { stack_name: String },
    /// CloudFormation RollbackStack (a failed create or update).
    RollbackStack { stack_name: String },
}

impl RollbackAction {
    pub fn audit_action(&self) -> &'static str {
        match self {
            RollbackAction::StopDeployment { .. } => action::STOP_DEPLOYMENT,
            RollbackAction::RollbackStage { .. } => action::ROLLBACK_STAGE,
            RollbackAction::CancelUpdateStack { .. } => action::CANCEL_UPDATE_STACK,
            RollbackAction::RollbackStack { .. } => action::ROLLBACK_STACK,
        }
    }
}

impl fmt::Display for RollbackAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackAction::StopDeployment { deployment_id } => {
                write!(f, "StopDeployment {deployment_id} with automatic rollback")
            }
            RollbackAction::RollbackStage {
                pipeline,
                stage,
                current_execution_id,
            } => write!(
                f,
                "RollbackStage {pipeline} / {stage} (from execution {current_execution_id} to the last successful one)"
            ),
            RollbackAction::CancelUpdateStack { stack_name } => write!(f, "CancelUpdateStack {stack_name}"),
            RollbackAction::RollbackStack { stack_name } => write!(f, "RollbackStack {stack_name}"),
        }
    }
}

/// What to do about one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not protected now (finished before the window, or in a state nothing applies to): logged, not recorded.
    Ignore(String),
    /// Tell engineers, do not act (the policy says notify, or no rollback applies); the reason says which.
    Notify(String),
    Act(RollbackAction),
}

const STACK_IN_UPDATE: &[&str] = &["UPDATE_IN_PROGRESS"];
const STACK_FAILED: &[&str] = &["CREATE_FAILED", "UPDATE_FAILED"];

/// Decides what to do about `candidate` for `alarm` under `policy`. Pure: the same facts give the same decision.
pub fn decide(candidate: &Candidate, alarm: &AlarmSignal, policy: &GuardPolicy) -> Decision {
    let window_start = alarm.at - policy.window;
    let recent = |t: &Option<DateTime<Utc>>| t.is_some_and(|t| t >= window_start);
    let mode_or = |mode: Mode, action: RollbackAction| match mode {
        Mode::Act => Decision::Act(action),
        Mode::Notify => Decision::Notify(format!("policy is notify only: would have run {action}")),
    };
    match &candidate.target {
        Target::Deployment {
            deployment_id,
            status,
            finished_at,
            ..
        } => {
            if status == "IN_PROGRESS" {
                mode_or(
                    policy.deployments,
                    RollbackAction::StopDeployment {
                        deployment_id: deployment_id.clone(),
                    },
                )
            } else if status == "SUCCESS" && recent(finished_at) {
                Decision::Notify(format!(
                    "deployment {deployment_id} finished inside the rollback window; CodeDeploy cannot stop a finished \
                     deployment: roll back its pipeline stage or redeploy the previous revision"
                ))
            } else {
                Decision::Ignore(format!(
                    "deployment {deployment_id} is {status}, outside the rollback window"
                ))
            }
        }
        Target::Stage {
            pipeline,
            stage,
            first_stage,
            execution_id,
            status,
            changed_at,
        } => {
            let in_flight = status == "InProgress";
            if !in_flight && !recent(changed_at) {
                return Decision::Ignore(format!(
                    "stage {pipeline} / {stage} last ran (execution {execution_id}, {status}) before the rollback window"
                ));
            }
            if *first_stage {
                return Decision::Notify(format!(
                    "stage {pipeline} / {stage} is the pipeline's source stage, which RollbackStage cannot roll back"
                ));
            }
            mode_or(
                policy.stages,
                RollbackAction::RollbackStage {
                    pipeline: pipeline.clone(),
                    stage: stage.clone(),
                    current_execution_id: execution_id.clone(),
                },
            )
        }
        Target::Stack {
            stack_name,
            status,
            updated_at,
            ..
        } => {
            let name = stack_name.clone();
            if STACK_IN_UPDATE.contains(&status.as_str()) {
                mode_or(policy.stacks, RollbackAction::CancelUpdateStack { stack_name: name })
            } else if STACK_FAILED.contains(&status.as_str()) {
                mode_or(policy.stacks, RollbackAction::RollbackStack { stack_name: name })
            } else if recent(updated_at) && !status.ends_with("_IN_PROGRESS") {
                Decision::Notify(format!(
                    "stack {stack_name} changed inside the rollback window and is {status}: CloudFormation can \
                     neither cancel nor roll it back; deploy the previous template"
                ))
            } else {
                Decision::Ignore(format!("stack {stack_name} is {status}, nothing to roll back"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Records.

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackOutcome {
    /// AWS accepted the rollback request.
    RolledBack,
    /// AWS refused it; [`RollbackRecord::detail`] holds its reason.
    Refused,
    /// Engineers were told, nothing was done (policy, or no rollback applies).
    Notified,
}

impl RollbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackOutcome::RolledBack => "rolled_back",
            RollbackOutcome::Refused => "refused",
            RollbackOutcome::Notified => "notified",
        }
    }
}

/// One decision about one (target, incident): the claim that makes it happen once, then its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// [`Candidate::record_id`].
    pub id: String,
    pub account: String,
    pub region: String,
    pub target: Candidate,
    /// The alarm that fired first for this incident ([`alarm_key`]), and when it went to ALARM.
    pub alarm: String,
    pub alarm_name: String,
    pub alarm_at: DateTime<Utc>,
    pub alarm_reason: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// The request made, `None` when only notified.
    pub action: Option<RollbackAction>,
    /// Set once the decision is carried out.
    pub outcome: Option<RollbackOutcome>,
    /// When AWS accepted the request.
    pub acted_at: Option<DateTime<Utc>>,
    /// AWS's answer (the rollback's id, or its refusal with code and message), or why nothing was done.
    pub detail: String,
    /// The alarm's first OK after the rollback: the time service was restored.
    pub restored_at: Option<DateTime<Utc>>,
    /// The pipeline execution the rollback belongs to, when known.
    pub execution: Option<ExecutionKey>,
    /// The delivery that claimed the record (the SQS message id): its redelivery may finish the steps below at once,
    /// another delivery only after the lease, so two concurrent duplicates never notify twice.
    #[serde(default)]
    pub claimed_by: String,
    /// Steps done after the outcome was stored, so a redelivery finishes the rest and repeats none.
    #[serde(default)]
    pub audited: bool,
    #[serde(default)]
    pub notified: bool,
}

impl RollbackRecord {
    /// Seconds from the alarm to restored service, once restored.
    pub fn time_to_restore_secs(&self) -> Option<i64> {
        self.restored_at.map(|r| (r - self.alarm_at).num_seconds().max(0))
    }
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the record now and must carry the decision out.
    Won,
    /// The decision was carried out before (a flap, a duplicate): only its unfinished steps remain.
    Done(Box<RollbackRecord>),
    /// Another caller holds a fresh claim: try again after its lease.
    Held,
}

/// A step after the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Audited,
    Notified,
}

/// Where rollback records live (one item per (target, incident) in DynamoDB; see docs/guard.md).
#[async_trait]
pub trait RollbackStore: Send + Sync {
    /// Creates the record claimed by `token`, or takes over a claim made before `stale_before` that never finished.
    async fn claim(
        &self,
        record: &RollbackRecord,
        token: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Stores the outcome, if `token` still holds the claim. Returns false when it no longer does.
    async fn finish(&self, record: &RollbackRecord, token: &str) -> Result<bool, StoreError>;
    /// Drops the claim after a transient failure, so that a redelivery can claim again at once.
    async fn release(&self, id: &str, token: &str) -> Result<(), StoreError>;
    async fn mark(&self, id: &str, step: Step) -> Result<(), StoreError>;
    /// Sets `restored_at = ok_at` on the alarm's rollbacks accepted at or before `ok_at` and not yet restored;
    /// returns them.
    async fn mark_restored(&self, alarm: &str, ok_at: DateTime<Utc>) -> Result<Vec<RollbackRecord>, StoreError>;
    /// Finished records decided in `[from, to)`, oldest first: what the metrics count.
    async fn rollbacks_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollbackRecord>, StoreError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Discovery and actions.

/// A failure talking to AWS, split by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardApiError {
    /// Throttling, 5xx, timeouts: the message goes back to the queue.
    #[error("AWS temporarily unavailable: {0}")]
    Transient(String),
    /// Anything a retry will not change (access denied, a missing resource).
    #[error("AWS refused the request: {0}")]
    Permanent(String),
}

impl From<StoreError> for GuardApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Transient(m) => GuardApiError::Transient(m),
            StoreError::Permanent(m) => GuardApiError::Permanent(m),
        }
    }
}

/// Finds what an alarm protects, in flight or finished since `since`.
#[async_trait]
pub trait TargetDiscovery: Send + Sync {
    async fn candidates(&self, alarm: &AlarmSignal, since: DateTime<Utc>) -> Result<Vec<Candidate>, GuardApiError>;
}

/// AWS's answer to a rollback request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActOutcome {
    /// Accepted; `detail` says what AWS answered (a rollback execution id...).
    Accepted { detail: String },
    /// Refused, with AWS's error code and message: recorded, never retried.
    Refused { code: String, message: String },
}

/// Sends rollback requests.
#[async_trait]
pub trait RollbackActions: Send + Sync {
    /// Sends `action` in the target's account and region. Only transient failures are errors.
    async fn execute(&self, account: &str, region: &str, action: &RollbackAction) -> Result<ActOutcome, GuardApiError>;
}

// ---------------------------------------------------------------------------------------------------------------
// The service.

/// The adapters the guard works through.
pub struct GuardPorts<'a> {
    pub discovery: &'a dyn TargetDiscovery,
    pub actions: &'a dyn RollbackActions,
    pub store: &'a dyn RollbackStore,
    pub audit: &'a dyn AuditLog,
    pub notifier: &'a dyn Notifier,
}

/// What handling one alarm state change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GuardReport {
    /// Records created and carried out now, by outcome.
    pub rolled_back: u32,
    pub refused: u32,
    pub notified: u32,
    /// Targets decided before (flaps, duplicates): nothing done again.
    pub already_handled: u32,
    /// Candidates outside the window or in no state to act on.
    pub ignored: u32,
    /// Rollbacks whose time to restore this OK recorded.
    pub restored: u32,
    /// The alarm was older than the policy's limit, in another state than ALARM/OK, or refused: why nothing ran.
    pub skipped: Option<String>,
}

/// A failure that a redelivery can get past (the SQS message goes back); nothing was done twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    Retry(String),
    /// Something no retry will cure (discovery refused, the store refused the record): reported, not retried.
    #[error("{0}")]
    Failed(String),
}

/// Handles one alarm state change at `now`: ALARM rolls back, OK records restores, anything else is reported.
pub async fn handle_alarm(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    now: DateTime<Utc>,
    token: &str,
) -> Result<GuardReport, GuardError> {
    match alarm.state.as_str() {
        "ALARM" => on_alarm(ports, policy, alarm, now, token).await,
        "OK" => on_recovery(ports, alarm).await,
        other => Ok(GuardReport {
            skipped: Some(format!("alarm {} went to {other}: nothing to do", alarm.alarm_name)),
            ..GuardReport::default()
        }),
    }
}

/// An alarm back to OK: records the time to restore of its rollbacks, undoes nothing.
pub async fn on_recovery(ports: &GuardPorts<'_>, alarm: &AlarmSignal) -> Result<GuardReport, GuardError> {
    let restored = ports
        .store
        .mark_restored(&alarm.key(), alarm.at)
        .await
        .map_err(store_failure)?;
    for r in &restored {
        tracing::info!(record = %r.id, seconds = r.time_to_restore_secs(), "service restored after rollback");
    }
    Ok(GuardReport {
        restored: restored.len() as u32,
        ..GuardReport::default()
    })
}

fn store_failure(e: StoreError) -> GuardError {
    match e {
        StoreError::Transient(m) => GuardError::Retry(m),
        StoreError::Permanent(m) => GuardError::Failed(m),
    }
}

/// An alarm went to ALARM: one decision per protected target and incident, each carried out once.
pub async fn on_alarm(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    now: DateTime<Utc>,
    token: &str,
) -> Result<GuardReport, GuardError> {
    let mut report = GuardReport::default();
    if now - alarm.at > policy.max_alarm_age {
        report.skipped = Some(format!(
            "alarm {} went to ALARM at {}, more than {} minutes before it was processed: not acted on",
            alarm.alarm_name,
            alarm.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            policy.max_alarm_age.num_minutes()
        ));
        return Ok(report);
    }
    let candidates = ports
        .discovery
        .candidates(alarm, alarm.at - policy.window)
        .await
        .map_err(|e| match e {
            GuardApiError::Transient(m) => {
                GuardError::Retry(format!("finding what alarm {} protects: {m}", alarm.alarm_name))
            }
            GuardApiError::Permanent(m) => {
                GuardError::Failed(format!("finding what alarm {} protects: {m}", alarm.alarm_name))
            }
        })?;
    let mut retry = Vec::new();
    for candidate in candidates {
        let decision = decide(&candidate, alarm, policy);
        let action = match decision {
            Decision::Ignore(why) => {
                tracing::info!(target_id = %candidate.record_id(), why, "not protected now");
                report.ignored += 1;
                continue;
            }
            Decision::Notify(why) => (None, why),
            Decision::Act(action) => (Some(action), String::new()),
        };
        match carry_out(ports, policy, alarm, &candidate, action, now, token).await {
            Ok(Handled::New(outcome)) => match outcome {
                RollbackOutcome::RolledBack => report.rolled_back += 1,
                RollbackOutcome::Refused => report.refused += 1,
                RollbackOutcome::Notified => report.notified += 1,
            },
            Ok(Handled::Before) => report.already_handled += 1,
            Err(GuardError::Retry(m)) => retry.push(m),
            Err(e) => return Err(e),
        }
    }
    if retry.is_empty() {
        Ok(report)
    } else {
        Err(GuardError::Retry(retry.join("; ")))
    }
}

enum Handled {
    New(RollbackOutcome),
    Before,
}

async fn carry_out(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    candidate: &Candidate,
    (action, why): (Option<RollbackAction>, String),
    now: DateTime<Utc>,
    token: &str,
) -> Result<Handled, GuardError> {
    let mut record = RollbackRecord {
        id: candidate.record_id(),
        account: candidate.account.clone(),
        region: candidate.region.clone(),
        target: candidate.clone(),
        alarm: alarm.key(),
        alarm_name: alarm.alarm_name.clone(),
        alarm_at: alarm.at,
        alarm_reason: alarm.reason.clone(),
        decided_at: now,
        action: action.clone(),
        outcome: None,
        acted_at: None,
        detail: why,
        restored_at: None,
        execution: candidate.execution(),
        claimed_by: token.to_string(),
        audited: false,
        notified: false,
    };
    match ports
        .store
        .claim(&record, token, now, now - policy.lease)
        .await
        .map_err(store_failure)?
    {
        Claim::Held => {
            return Err(GuardError::Retry(format!(
                "{} is being handled by another delivery; retried after its lease",
                record.id
            )))
        }
        Claim::Done(stored) => {
            let unfinished = !(stored.audited && stored.notified);
            if unfinished && stored.claimed_by != token && stored.decided_at >= now - policy.lease {
                return Err(GuardError::Retry(format!(
                    "{} was just decided by another delivery that is still auditing and notifying it",
                    record.id
                )));
            }
            finish_steps(ports, &stored).await?;
            return Ok(Handled::Before);
        }
        Claim::Won => {}
    }
    record.outcome = Some(match &action {
        None => RollbackOutcome::Notified,
        Some(action) => match ports.actions.execute(&record.account, &record.region, action).await {
            Ok(ActOutcome::Accepted { detail }) => {
                record.acted_at = Some(now);
                record.detail = detail;
                RollbackOutcome::RolledBack
            }
            Ok(ActOutcome::Refused { code, message }) => {
                record.detail = format!("{code}: {message}");
                RollbackOutcome::Refused
            }
            Err(e) => {
                // Nothing happened: let a redelivery claim again and act once.
                if let Err(release) = ports.store.release(&record.id, token).await {
                    tracing::warn!(record = %record.id, error = %release, "claim not released; taken over after its lease");
                }
                let text = format!("{action} for {}: {e}", record.id);
                return Err(match e {
                    GuardApiError::Transient(_) => GuardError::Retry(text),
                    GuardApiError::Permanent(_) => GuardError::Failed(text),
                });
            }
        },
    });
    tracing::info!(
        record = %record.id,
        outcome = record.outcome.map(RollbackOutcome::as_str),
        alarm = %record.alarm,
        "rollback decision carried out"
    );
    if !ports.store.finish(&record, token).await.map_err(store_failure)? {
        tracing::warn!(record = %record.id, "claim taken over before the outcome was stored");
    }
    finish_steps(ports, &record).await?;
    Ok(Handled::New(record.outcome.unwrap_or(RollbackOutcome::Notified)))
}

/// The audit entry and the notification of a finished record, each once.
async fn finish_steps(ports: &GuardPorts<'_>, record: &RollbackRecord) -> Result<(), GuardError> {
    if record.outcome.is_none() {
        return Ok(());
    }
    if !record.audited {
        ports
            .audit
            .append(audit_entry(record))
            .await
            .map_err(|e| GuardError::Retry(format!("audit entry of {}: {e}", record.id)))?;
        ports
            .store
            .mark(&record.id, Step::Audited)
            .await
            .map_err(store_failure)?;
    }
    if !record.notified {
        ports
            .notifier
            .publish(&rollback_notification(record))
            .await
            .map_err(|e| GuardError::Retry(format!("notification of {}: {e}", record.id)))?;
        ports
            .store
            .mark(&record.id, Step::Notified)
            .await
            .map_err(store_failure)?;
    }
    Ok(())
}

/// The audit entry of a decision: `rollback.*`, by [`GUARD_PRINCIPAL`], in the target's scope.
pub fn audit_entry(record: &RollbackRecord) -> NewAuditEntry {
    let action = match (record.outcome, &record.action) {
        (Some(RollbackOutcome::Refused), _) => action::REFUSED,
        (_, Some(a)) => a.audit_action(),
        (_, None) => action::NOTIFIED,
    };
    NewAuditEntry {
        scope: record.target.audit_scope(),
        at: record.decided_at,
        actor: GUARD_PRINCIPAL.to_string(),
        action: action.to_string(),
        subject: record.target.incident(),
        detail: json!({
            "record": record.id,
            "alarm": record.alarm,
            "alarm_at": record.alarm_at,
            // From the alarm to this decision: the automation-health latency of the `rollback` family.
            "started_at": record.alarm_at,
            "target": record.target.target_name(),
            "request": record.action.as_ref().map(ToString::to_string),
            "outcome": record.outcome.map(RollbackOutcome::as_str),
            "detail": record.detail,
        }),
    }
}

/// The chat and email message of a decision: what fired, what was done, AWS's answer.
pub fn rollback_notification(record: &RollbackRecord) -> Notification {
    let target = record.target.target_name();
    let (kind, pipeline) = match &record.target.target {
        Target::Deployment { .. } => (NotificationKind::DeploymentFailed, None),
        Target::Stage { pipeline, .. } => (NotificationKind::StageFailed, Some(pipeline.clone())),
        Target::Stack { .. } => (NotificationKind::StackRollback, None),
    };
    let (severity, title, next) = match record.outcome {
        Some(RollbackOutcome::RolledBack) => (
            Severity::Critical,
            format!(":rewind: Alarm {} fired: rolled back {target}", record.alarm_name),
            "Watch the alarm return to OK, then find the cause before deploying again",
        ),
        Some(RollbackOutcome::Refused) => (
            Severity::Critical,
            format!(
                ":rotating_light: Alarm {} fired: AWS refused to roll back {target}",
                record.alarm_name
            ),
            "Roll back by hand: AWS's reason is above",
        ),
        _ => (
            Severity::Warning,
            format!(
                ":warning: Alarm {} fired on {target}: not rolled back automatically",
                record.alarm_name
            ),
            "Decide whether to roll back by hand",
        ),
    };
    let mut lines = vec![format!(
        "Alarm *{}* went to ALARM at {}{}",
        record.alarm_name,
        record.alarm_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        record
            .alarm_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )];
    if let Some(action) = &record.action {
        lines.push(format!("Request: {action}"));
    }
    lines.push(format!(
        "{}: {}",
        match record.outcome {
            Some(RollbackOutcome::RolledBack) => "AWS accepted",
            Some(RollbackOutcome::Refused) => "AWS refused",
            _ => "Not acted on",
        },
        record.detail
    ));
    Notification {
        key: format!("rollback:{}", record.id),
        kind,
        severity,
        account: record.account.clone(),
        region: record.region.clone(),
        pipeline,
        thread: match &record.execution {
            Some(e) => format!("{}/{}", e.pipeline, e.execution_id),
            None => target.clone(),
        },
        title,
        lines,
        next_steps: vec![next.to_string()],
        link: None,
        resources: vec![format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{}",
            record.region, record.account, record.alarm_name
        )],
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics.

/// Automatic rollbacks of a period, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RollbackStats {
    pub rolled_back: u32,
    pub refused: u32,
    pub notified: u32,
    pub restored: u32,
    /// Median seconds from alarm to restored service, over the restored rollbacks.
    pub median_time_to_restore_secs: Option<i64>,
}

/// Counts the records of a period ([`RollbackStore::rollbacks_between`]).
pub fn rollback_stats(records: &[RollbackRecord]) -> RollbackStats {
    let mut stats = RollbackStats::default();
    let mut restore = Vec::new();
    for r in records {
        match r.outcome {
            Some(RollbackOutcome::RolledBack) => stats.rolled_back += 1,
            Some(RollbackOutcome::Refused) => stats.refused += 1,
            Some(RollbackOutcome::Notified) => stats.notified += 1,
            None => {}
        }
        if let (Some(RollbackOutcome::RolledBack), Some(secs)) = (r.outcome, r.time_to_restore_secs()) {
            restore.push(secs);
        }
    }
    restore.sort_unstable();
    stats.restored = restore.len() as u32;
    stats.median_time_to_restore_secs = match restore.len() {
        0 => None,
        n if n % 2 == 1 => Some(restore[n / 2]),
        n => Some((restore[n / 2 - 1] + restore[n / 2] + 1) / 2),
    };
    stats
}
