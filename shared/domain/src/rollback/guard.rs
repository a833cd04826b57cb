//! Automatic rollback on alarms (the `guard` function's domain; the design is in docs/guard.md).
//!
//! When a CloudWatch alarm goes to ALARM, [`on_alarm`] asks a [`TargetDiscovery`] what the alarm protects (CodeDeploy
//! deployments whose group lists it, pipeline stages whose gate checks it ([`AlarmWatches`]) or tagged with it,
//! CloudFormation stacks tagged with it), decides per target with [`decide`] (in flight or inside the rollback window,
//! per kind: act, wait for a running stage to end, or only notify), and for each target claims one [`RollbackRecord`]
//! per (target, incident) with a conditional write before acting. An incident is the target's deployed revision (the
//! deployment, the execution a stage runs or was rolled back from, the stack's update), so a storm of flaps and
//! duplicated deliveries acts once per target, and a flap after a rollback finds the rollback, not a new revision.
//! An OK state only records the time to restore ([`on_recovery`]) and never undoes anything; a rollback AWS refuses
//! is recorded with AWS's reason and not retried; a request whose answer was lost releases the claim with the time
//! it was sent, and the next delivery reads the target first: a rollback that took effect is recorded as done, not
//! sent again. An ALARM the guard cannot act on (nothing found, too late, discovery refused) is recorded and told
//! once per alarm transition ([`Target::Alarm`]); a composite alarm whose actions are suppressed does nothing.

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
    /// An ALARM the guard could not act on (nothing found, processed too late, discovery refused).
    pub const UNHANDLED: &str = "rollback.unhandled";
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
    /// When CloudWatch says the state changed (the event time when it does not say): the transition's identity.
    pub at: DateTime<Utc>,
    /// The state before this transition (`OK`, `INSUFFICIENT_DATA`, `ALARM` for a composite alarm whose suppression
    /// ended).
    #[serde(default)]
    pub previous_state: Option<String>,
    /// A composite alarm's actions suppressor: `detail.state.actionsSuppressedBy` (`Alarm`, `WaitPeriod`,
    /// `ExtensionPeriod`) and its reason. A suppressed ALARM rolls nothing back.
    #[serde(default)]
    pub suppressed_by: Option<String>,
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
                previous_state: a.previous_state.clone(),
                suppressed_by: None,
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

/// A rollback already started on a target (by the guard, by CodePipeline or CodeDeploy on failure, or by a person).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRun {
    /// The rollback pipeline execution, or CodeDeploy's rollback deployment.
    pub id: String,
    /// Its status as AWS reports it.
    pub status: String,
    /// What started it, when AWS says (`autoRollback`, `user`...).
    #[serde(default)]
    pub by: Option<String>,
}

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
        /// CodeDeploy's rollback of this deployment, when one started (`rollbackInfo.rollbackDeploymentId`, or a
        /// listed deployment whose `rollbackTriggeringDeploymentId` is this one).
        #[serde(default)]
        rollback: Option<RollbackRun>,
    },
    /// A pipeline stage watched by the alarm, with its deployed revision.
    Stage {
        pipeline: String,
        stage: String,
        /// The pipeline's first stage (its source): RollbackStage refuses it.
        first_stage: bool,
        /// The execution whose revision the stage runs: its latest execution, or, when that is a rollback, the
        /// execution it rolled back from (never "the newest execution", which after a rollback is the rollback).
        execution_id: String,
        /// The stage execution's status: `InProgress`, `Succeeded`, `Failed`, `Stopped`...
        status: String,
        /// When the stage's last action changed state (its end, for a finished stage).
        changed_at: Option<DateTime<Utc>>,
        /// The stage's latest execution when it is a rollback (execution type `ROLLBACK`).
        #[serde(default)]
        rollback: Option<RollbackRun>,
    },
    /// A CloudFormation stack tagged with the alarm.
    Stack {
        stack_name: String,
        stack_id: String,
        status: String,
        /// The stack's last update (its creation when never updated): what makes an update an incident.
        updated_at: Option<DateTime<Utc>>,
    },
    /// The alarm itself, when the guard could not act on anything it protects: one record per transition, so it is
    /// told once.
    Alarm { alarm_name: String, at: DateTime<Utc> },
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
            Target::Alarm { .. } => "alarm",
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
            Target::Alarm { alarm_name, .. } => format!("alarm:{alarm_name}"),
        }
    }

    /// What one incident of the target is: its deployed revision (the deployment, the pipeline execution the stage
    /// runs or was rolled back from, the stack's update), or the alarm's transition for [`Target::Alarm`].
    pub fn incident(&self) -> String {
        match &self.target {
            Target::Alarm { at, .. } => at.to_rfc3339_opts(SecondsFormat::Millis, true),
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
            Target::Alarm { alarm_name, .. } => format!("alarm:{}/{}/{alarm_name}", self.account, self.region),
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
    /// A rollback of this revision already started (the detail says which): nothing is sent. Recorded as the guard's
    /// rollback when the guard sent a request for it whose answer was lost, as a notification otherwise.
    AlreadyRolledBack(String),
    /// The stage is still running and RollbackStage refuses a running stage: try again later (the message goes back
    /// to the queue), until the alarm is older than the policy's `max_alarm_age`.
    Wait(String),
    Act(RollbackAction),
}

const STACK_IN_UPDATE: &[&str] = &["UPDATE_IN_PROGRESS"];
const STACK_FAILED: &[&str] = &["CREATE_FAILED", "UPDATE_FAILED"];
/// Statuses of a stack whose update CloudFormation is rolling back or rolled back.
const STACK_ROLLING_BACK: &[&str] = &[
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_COMPLETE",
];
/// Stage statuses RollbackStage refuses.
const STAGE_RUNNING: &[&str] = &["InProgress", "Stopping"];

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
            rollback,
            ..
        } => {
            if let Some(run) = rollback {
                Decision::AlreadyRolledBack(format!(
                    "deployment {deployment_id} is already rolled back by CodeDeploy deployment {} ({})",
                    run.id, run.status
                ))
            } else if status == "IN_PROGRESS" {
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
            rollback,
        } => {
            let running = STAGE_RUNNING.contains(&status.as_str());
            if !running && !recent(changed_at) {
                return Decision::Ignore(format!(
                    "stage {pipeline} / {stage} last ran (execution {execution_id}, {status}) before the rollback window"
                ));
            }
            if let Some(run) = rollback {
                return Decision::AlreadyRolledBack(format!(
                    "stage {pipeline} / {stage} is already rolled back from execution {execution_id} by rollback \
                     execution {} ({})",
                    run.id, run.status
                ));
            }
            if *first_stage {
                return Decision::Notify(format!(
                    "stage {pipeline} / {stage} is the pipeline's source stage, which RollbackStage cannot roll back"
                ));
            }
            let action = RollbackAction::RollbackStage {
                pipeline: pipeline.clone(),
                stage: stage.clone(),
                current_execution_id: execution_id.clone(),
            };
            if running && policy.stages == Mode::Act {
                // RollbackStage refuses a running stage; stopping the execution would cut its actions short. The
                // guard waits for the stage to end (redelivery), up to `max_alarm_age`.
                return Decision::Wait(format!(
                    "stage {pipeline} / {stage} is still running execution {execution_id} ({status}): RollbackStage \
                     waits for it to end"
                ));
            }
            mode_or(policy.stages, action)
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
            } else if STACK_ROLLING_BACK.contains(&status.as_str())
                && (status.ends_with("_IN_PROGRESS") || recent(updated_at))
            {
                Decision::AlreadyRolledBack(format!(
                    "stack {stack_name} is already rolling back its update ({status})"
                ))
            } else if recent(updated_at) && !status.ends_with("_IN_PROGRESS") {
                Decision::Notify(format!(
                    "stack {stack_name} changed inside the rollback window and is {status}: CloudFormation can \
                     neither cancel nor roll it back; deploy the previous template"
                ))
            } else {
                Decision::Ignore(format!("stack {stack_name} is {status}, nothing to roll back"))
            }
        }
        Target::Alarm { alarm_name, .. } => Decision::Notify(format!("alarm {alarm_name}: nothing to roll back")),
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
    /// Engineers were told, nothing was done (policy, no rollback applies, or one had already started).
    Notified,
    /// The guard could not act on the alarm at all (nothing found, processed too late, discovery refused): told and
    /// recorded once per alarm transition.
    Unhandled,
}

impl RollbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackOutcome::RolledBack => "rolled_back",
            RollbackOutcome::Refused => "refused",
            RollbackOutcome::Notified => "notified",
            RollbackOutcome::Unhandled => "unhandled",
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
    /// When AWS accepted the request (when it was sent, for a request whose answer was lost but took effect).
    pub acted_at: Option<DateTime<Utc>>,
    /// When a request was last sent without an answer (timeout, connection lost, 5xx): kept across redeliveries, so
    /// the next one reads the target before sending again.
    #[serde(default)]
    pub attempted_at: Option<DateTime<Utc>>,
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
    /// Seconds from the alarm transition that started the incident to restored service, once restored.
    pub fn time_to_restore_secs(&self) -> Option<i64> {
        self.restored_at.map(|r| (r - self.alarm_at).num_seconds().max(0))
    }
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the record now and must carry the decision out; `previous` is the record of an earlier
    /// delivery that released its claim or whose lease ran out (its request may have been sent).
    Won { previous: Option<Box<RollbackRecord>> },
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
    /// Gives the claim back after a transient failure, keeping `record` (with its `attempted_at`), so that a
    /// redelivery can claim again at once and knows whether a request was sent.
    async fn release(&self, record: &RollbackRecord, token: &str) -> Result<(), StoreError>;
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
// The service (ports, handling an alarm, audit and notification): `guard/service.rs`.

mod service;
pub use service::*;

// ---------------------------------------------------------------------------------------------------------------
// Metrics.

/// Automatic rollbacks of a period, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RollbackStats {
    pub rolled_back: u32,
    pub refused: u32,
    pub notified: u32,
    /// ALARMs the guard could not act on.
    pub unhandled: u32,
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
            Some(RollbackOutcome::Unhandled) => stats.unhandled += 1,
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
