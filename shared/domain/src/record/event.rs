//! The delivery events Tollgate records, as typed domain values.
//!
//! AWS's own documentation disagrees with itself about these events (`detail.version` is a number in some samples and
//! the string "1" in others, CodeBuild writes times as "Sep 1, 2017 4:12:29 PM", CodeDeploy uses camelCase keys), so
//! the raw shapes in [`crate::record::parse`] are lenient and this module holds what Tollgate keeps: the facts a timeline is
//! folded from. These values are also the stored form of an event, so every field added later must have a default.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::keys::{AlarmKey, BuildKey, DeploymentKey, ExecutionKey, StackKey, Subject};

/// One delivery event, normalised. `id` is Tollgate's identity of the event (see [`crate::record::parse::event_identity`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    pub id: String,
    /// The id EventBridge gave the delivery, when it had one. Kept for tracing only: duplicates can carry other ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventbridge_id: Option<String>,
    pub account: String,
    pub region: String,
    pub time: DateTime<Utc>,
    pub body: EventBody,
}

/// What an event says, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    PipelineExecution(PipelineExecutionChange),
    StageExecution(StageExecutionChange),
    ActionExecution(ActionExecutionChange),
    BuildState(BuildStateChange),
    BuildPhase(BuildPhaseChange),
    DeploymentState(DeploymentStateChange),
    InstanceState(InstanceStateChange),
    StackStatus(StackStatusChange),
    ResourceStatus(ResourceStatusChange),
    DriftDetection(DriftDetectionChange),
    AlarmState(AlarmStateChange),
    /// A source/detail-type Tollgate does not model: kept and counted, never an error.
    Unknown(UnknownEvent),
}

/// The kinds of event, for counting and for message attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PipelineExecution,
    StageExecution,
    ActionExecution,
    BuildState,
    BuildPhase,
    DeploymentState,
    InstanceState,
    StackStatus,
    ResourceStatus,
    DriftDetection,
    AlarmState,
    Unknown,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::PipelineExecution,
        EventKind::StageExecution,
        EventKind::ActionExecution,
        EventKind::BuildState,
        EventKind::BuildPhase,
        EventKind::DeploymentState,
        EventKind::InstanceState,
        EventKind::StackStatus,
        EventKind::ResourceStatus,
        EventKind::DriftDetection,
        EventKind::AlarmState,
        EventKind::Unknown,
    ];

    /// The EventBridge `detail-type` of this kind (empty for `Unknown`).
    pub fn detail_type(self) -> &'static str {
        match self {
            EventKind::PipelineExecution => "CodePipeline Pipeline Execution State Change",
            EventKind::StageExecution => "CodePipeline Stage Execution State Change",
            EventKind::ActionExecution => "CodePipeline Action Execution State Change",
            EventKind::BuildState => "CodeBuild Build State Change",
            EventKind::BuildPhase => "CodeBuild Build Phase Change",
            EventKind::DeploymentState => "CodeDeploy Deployment State-change Notification",
            EventKind::InstanceState => "CodeDeploy Instance State-change Notification",
            EventKind::StackStatus => "CloudFormation Stack Status Change",
            EventKind::ResourceStatus => "CloudFormation Resource Status Change",
            EventKind::DriftDetection => "CloudFormation Drift Detection Status Change",
            EventKind::AlarmState => "CloudWatch Alarm State Change",
            EventKind::Unknown => "",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PipelineExecution => "pipeline_execution",
            EventKind::StageExecution => "stage_execution",
            EventKind::ActionExecution => "action_execution",
            EventKind::BuildState => "build_state",
            EventKind::BuildPhase => "build_phase",
            EventKind::DeploymentState => "deployment_state",
            EventKind::InstanceState => "instance_state",
            EventKind::StackStatus => "stack_status",
            EventKind::ResourceStatus => "resource_status",
            EventKind::DriftDetection => "drift_detection",
            EventKind::AlarmState => "alarm_state",
            EventKind::Unknown => "unknown",
        }
    }
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::PipelineExecution(_) => EventKind::PipelineExecution,
            EventBody::StageExecution(_) => EventKind::StageExecution,
            EventBody::ActionExecution(_) => EventKind::ActionExecution,
            EventBody::BuildState(_) => EventKind::BuildState,
            EventBody::BuildPhase(_) => EventKind::BuildPhase,
            EventBody::DeploymentState(_) => EventKind::DeploymentState,
            EventBody::InstanceState(_) => EventKind::InstanceState,
            EventBody::StackStatus(_) => EventKind::StackStatus,
            EventBody::ResourceStatus(_) => EventKind::ResourceStatus,
            EventBody::DriftDetection(_) => EventKind::DriftDetection,
            EventBody::AlarmState(_) => EventKind::AlarmState,
            EventBody::Unknown(_) => EventKind::Unknown,
        }
    }
}

impl DeliveryEvent {
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The record this event belongs to: an execution, a build, a deployment, a stack, an alarm.
    pub fn subject(&self) -> Subject {
        let (account, region) = (self.account.clone(), self.region.clone());
        match &self.body {
            EventBody::PipelineExecution(PipelineExecutionChange {
                pipeline, execution_id, ..
            })
            | EventBody::StageExecution(StageExecutionChange {
                pipeline, execution_id, ..
            })
            | EventBody::ActionExecution(ActionExecutionChange {
                pipeline, execution_id, ..
            }) => Subject::Execution(ExecutionKey {
                account,
                region,
                pipeline: pipeline.clone(),
                execution_id: execution_id.clone(),
            }),
            EventBody::BuildState(BuildStateChange { build_id, .. })
            | EventBody::BuildPhase(BuildPhaseChange { build_id, .. }) => Subject::Build(BuildKey {
                account,
                region,
                build_id: build_id.clone(),
            }),
            EventBody::DeploymentState(d) => Subject::Deployment(DeploymentKey {
                account,
                region,
                deployment_id: d.deployment_id.clone(),
            }),
            EventBody::InstanceState(i) => Subject::Instance(DeploymentKey {
                account,
                region,
                deployment_id: i.deployment_id.clone(),
            }),
            EventBody::StackStatus(StackStatusChange { stack_name, .. })
            | EventBody::ResourceStatus(ResourceStatusChange { stack_name, .. })
            | EventBody::DriftDetection(DriftDetectionChange { stack_name, .. }) => Subject::Stack(StackKey {
                account,
                region,
                stack_name: stack_name.clone(),
            }),
            EventBody::AlarmState(a) => Subject::Alarm(AlarmKey {
                account,
                region,
                alarm_name: a.alarm_name.clone(),
            }),
            EventBody::Unknown(u) => Subject::Unknown {
                account,
                region,
                source: u.source.clone(),
                detail_type: u.detail_type.clone(),
            },
        }
    }
}

/// How a pipeline execution was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub trigger_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A source revision known from a processed notification's `additionalAttributes.sourceActions`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceRevision {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The commit's author, when the source action outputs one (`AuthorEmail` or `AuthorName` among its variables;
    /// CodePipeline's own source actions do not, so separation of duties then rests on the trigger principal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// At most the first `chars` characters of `text`, cut on a character boundary: a revision id or any other text
/// from outside may hold multi-byte characters, and slicing it by byte index would panic.
pub fn truncate_chars(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The short form of a revision id shown in messages: its first 12 characters.
pub fn short_revision(id: &str) -> &str {
    truncate_chars(id, 12)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineExecutionChange {
    pub pipeline: String,
    pub execution_id: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_revisions: Vec<SourceRevision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageExecutionChange {
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_revisions: Vec<SourceRevision>,
}

/// The action type (`detail.type`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionType {
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub category: String,
}

/// `detail.execution-result` of an action event: where the action ran and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_execution_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_execution_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionExecutionChange {
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub state: String,
    #[serde(default)]
    pub action_type: ActionType,
    #[serde(default)]
    pub result: ExecutionResult,
}

/// One CodeBuild phase as reported in `additional-information.phases` or a phase change event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPhase {
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildStateChange {
    /// `project:uuid`, the form CodePipeline reports as the action's external execution id.
    pub build_id: String,
    pub project: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<BuildPhase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildPhaseChange {
    pub build_id: String,
    pub project: String,
    pub phase: BuildPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStateChange {
    pub deployment_id: String,
    pub application: String,
    pub deployment_group: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStateChange {
    pub deployment_id: String,
    pub instance_id: String,
    pub application: String,
    pub deployment_group: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackStatusChange {
    pub stack_id: String,
    pub stack_name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatusChange {
    pub stack_id: String,
    pub stack_name: String,
    pub logical_resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftDetectionChange {
    pub stack_id: String,
    pub stack_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted_resources: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmStateChange {
    pub alarm_name: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When CloudWatch says the state changed (falls back to the event time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownEvent {
    pub source: String,
    pub detail_type: String,
}
