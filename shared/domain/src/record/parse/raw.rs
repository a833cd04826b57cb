//! The raw shapes of the events' detail, as AWS sends them.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PipelineDetail {
    pub pipeline: String,
    pub execution_id: String,
    pub state: String,
    #[serde(default)]
    pub execution_trigger: Option<TriggerRaw>,
    #[serde(default)]
    pub pipeline_execution_attempt: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TriggerRaw {
    pub trigger_type: Option<String>,
    pub trigger_detail: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StageDetail {
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    pub state: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ActionDetail {
    pub pipeline: String,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub state: String,
    #[serde(default, rename = "type")]
    pub action_type: Option<TypeRaw>,
    #[serde(default)]
    pub execution_result: Option<ResultRaw>,
}

#[derive(Deserialize, Default)]
pub struct TypeRaw {
    pub owner: Option<String>,
    pub provider: Option<String>,
    pub category: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct ResultRaw {
    pub external_execution_id: Option<String>,
    pub external_execution_url: Option<String>,
    pub external_execution_summary: Option<String>,
    pub error_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildDetail {
    pub build_status: String,
    pub project_name: String,
    pub build_id: String,
    #[serde(default)]
    pub additional_information: Option<BuildInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildPhaseDetail {
    pub completed_phase: String,
    pub project_name: String,
    pub build_id: String,
    pub completed_phase_status: Option<String>,
    pub completed_phase_start: Option<String>,
    pub completed_phase_end: Option<String>,
    pub completed_phase_duration_seconds: Option<Value>,
    #[serde(default)]
    pub additional_information: Option<BuildInfo>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct BuildInfo {
    pub build_start_time: Option<String>,
    pub initiator: Option<String>,
    pub logs: Option<Logs>,
    #[serde(default)]
    pub phases: Vec<Phase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Logs {
    pub deep_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Phase {
    pub phase_type: String,
    pub phase_status: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub duration_in_seconds: Option<Value>,
}

impl Phase {
    pub fn into_phase(self) -> BuildPhase {
        BuildPhase {
            phase: self.phase_type,
            status: self.phase_status,
            started_at: self.start_time.as_deref().and_then(parse_codebuild_time),
            ended_at: self.end_time.as_deref().and_then(parse_codebuild_time),
            duration_secs: self.duration_in_seconds.and_then(|v| v.as_i64()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployDetail {
    pub deployment_id: String,
    pub state: String,
    pub application: Option<String>,
    pub deployment_group: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail {
    pub deployment_id: String,
    pub instance_id: String,
    pub state: String,
    pub application: Option<String>,
    pub deployment_group: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusDetails {
    pub status: String,
    pub status_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StackDetail {
    pub stack_id: String,
    pub status_details: StatusDetails,
    pub client_request_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResourceDetail {
    pub stack_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
    pub resource_type: Option<String>,
    pub status_details: StatusDetails,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DriftDetail {
    pub stack_id: String,
    pub stack_drift_detection_id: Option<String>,
    pub status_details: Option<DriftStatus>,
    pub drift_detection_details: Option<DriftDetails>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct DriftStatus {
    pub stack_drift_status: Option<String>,
    pub detection_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DriftDetails {
    pub drifted_stack_resource_count: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmDetail {
    pub alarm_name: String,
    pub state: AlarmState,
    pub previous_state: Option<AlarmState>,
}

#[derive(Deserialize)]
pub struct AlarmState {
    pub value: String,
    pub reason: Option<String>,
    pub timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub account_id: Option<String>,
    pub data: Option<JobData>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    pub action_configuration: Option<ActionConfiguration>,
    pub continuation_token: Option<String>,
    #[serde(default)]
    pub input_artifacts: Vec<Artifact>,
}

#[derive(Deserialize)]
pub struct ActionConfiguration {
    pub configuration: Option<Configuration>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Configuration {
    pub function_name: Option<String>,
    pub user_parameters: Option<String>,
}

#[derive(Deserialize)]
pub struct Artifact {
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub pipeline_name: String,
    pub stage_name: String,
    pub action_name: String,
    pub token: String,
    pub expires: Option<String>,
    pub approval_review_link: Option<String>,
    pub custom_data: Option<String>,
}
