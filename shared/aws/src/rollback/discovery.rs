//! [`AwsTargetDiscovery`]: what an alarm protects, without scanning every application or pipeline.
//!
//! - CodeDeploy: the deployments Tollgate recorded (GSI2 of the table: `DEPLOY#IN_PROGRESS` started in the last
//!   [`IN_FLIGHT_HORIZON_HOURS`], `DEPLOY#SUCCESS` since the window's start) of the alarm's account and region, then one
//!   BatchGetDeploymentGroups per application (up to 100 groups a call) to keep those whose group's alarm
//!   configuration is enabled and lists the alarm.
//! - Pipeline stages: those the gate registered as watched by the alarm when it passed them (one Query of
//!   `ALARMWATCH#<account>/<region>/<alarm>`, [`DynamoDbAlarmWatches`]), and those a pipeline's tag
//!   `tollgate:rollback-alarm:<alarm>` names; together, each stage once, then one GetPipelineState per pipeline.
//! - Stacks: the same GetResources call (paginated) for the tag, then DescribeStacks per stack.
//!
//! Only the function's own account and region are reachable (its clients' credentials); the handler refuses alarms
//! of other accounts before discovery.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_codedeploy::types::DeploymentStatus;
use aws_sdk_codepipeline::types::ExecutionType;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_resourcegroupstagging::types::TagFilter;
use chrono::{DateTime, Duration, Utc};
use tollgate_domain::gate::AlarmWatches;
use tollgate_domain::record::ports::StoreError;
use tollgate_domain::rollback::guard::{
    AlarmSignal, Candidate, GuardApiError, RollbackRun, Target, TargetDiscovery, ROLLBACK_TAG_PREFIX,
};

use super::{classify, CallError};
use crate::alarm_watches::DynamoDbAlarmWatches;

/// In-progress deployments older than this are not looked at: CodeDeploy deployments time out well before, and an
/// item whose terminal event never arrived must not stay a candidate forever.
pub const IN_FLIGHT_HORIZON_HOURS: i64 = 24;
/// BatchGetDeploymentGroups takes at most 100 names.
const GROUPS_PER_CALL: usize = 100;
/// BatchGetDeployments takes at most 25 ids.
const DEPLOYMENTS_PER_CALL: usize = 25;
/// Action executions read to find what a rollback execution rolled back from (pages of 100, newest first).
const ACTION_EXECUTION_PAGES: usize = 2;
/// Resources tagged with one alarm read at most (pages of 100): a bound on one alarm's work.
const MAX_TAG_PAGES: usize = 10;

/// The AWS adapter of [`TargetDiscovery`].
#[derive(Debug, Clone)]
pub struct AwsTargetDiscovery {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    codedeploy: aws_sdk_codedeploy::Client,
    codepipeline: aws_sdk_codepipeline::Client,
    cloudformation: aws_sdk_cloudformation::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
    watches: DynamoDbAlarmWatches,
}

fn transient_or_permanent(err: CallError) -> GuardApiError {
    match err {
        CallError::Transient(t) => GuardApiError::Transient(t),
        CallError::Refused { code, message } => GuardApiError::Permanent(format!("{code}: {message}")),
    }
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// A deployment's rollback, as CodeDeploy reports it.
#[derive(Debug, Clone)]
enum Rolled {
    /// This deployment is the automatic rollback of the first one.
    IsRollbackOf(String, RollbackRun),
    /// This deployment was stopped or rolled back by the second.
    RolledBackBy(RollbackRun),
}

/// A deployment as GSI2 lists it.
#[derive(Debug, Clone)]
struct Listed {
    deployment_id: String,
    application: String,
    deployment_group: String,
    status: String,
    /// The index time: the terminal event's for a finished deployment.
    at: Option<DateTime<Utc>>,
}

impl AwsTargetDiscovery {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        codedeploy: aws_sdk_codedeploy::Client,
        codepipeline: aws_sdk_codepipeline::Client,
        cloudformation: aws_sdk_cloudformation::Client,
        tagging: aws_sdk_resourcegroupstagging::Client,
    ) -> Self {
        let table = table.into();
        AwsTargetDiscovery {
            watches: DynamoDbAlarmWatches::new(dynamodb.clone(), table.clone()),
            dynamodb,
            table,
            codedeploy,
            codepipeline,
            cloudformation,
            tagging,
        }
    }

    /// Deployments of `status` indexed since `since`, of the alarm's account and region.
    async fn listed(
        &self,
        alarm: &AlarmSignal,
        status: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Listed>, GuardApiError> {
        let mut found = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .key_condition_expression("#gsi2pk = :pk AND #gsi2sk >= :since")
                .expression_attribute_names("#gsi2pk", "gsi2pk")
                .expression_attribute_names("#gsi2sk", "gsi2sk")
                .expression_attribute_values(":pk", AttributeValue::S(format!("DEPLOY#{status}")))
                .expression_attribute_values(
                    ":since",
                    AttributeValue::S(since.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                )
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| transient_or_permanent(classify(&format!("DynamoDB Query on {}", self.table), &e)))?;
            for item in out.items() {
                let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                if get("account") != alarm.account || get("region") != alarm.region {
                    continue;
                }
                let at = get("gsi2sk")
                    .split('#')
                    .next()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                found.push(Listed {
                    deployment_id: get("deployment_id"),
                    application: get("application"),
                    deployment_group: get("deployment_group"),
                    status: status.to_string(),
                    at,
                });
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Deployment groups (by application) whose enabled alarm configuration lists `alarm_name`.
    async fn groups_watching(
        &self,
        alarm_name: &str,
        groups: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<BTreeSet<(String, String)>, GuardApiError> {
        let mut watching = BTreeSet::new();
        for (application, names) in groups {
            let names: Vec<String> = names.iter().cloned().collect();
            for chunk in names.chunks(GROUPS_PER_CALL) {
                let out = self
                    .codedeploy
                    .batch_get_deployment_groups()
                    .application_name(application)
                    .set_deployment_group_names(Some(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| {
                        transient_or_permanent(classify(
                            &format!("CodeDeploy BatchGetDeploymentGroups {application}"),
                            &e,
                        ))
                    })?;
                if let Some(m) = out.error_message() {
                    tracing::warn!(application, error = m, "some deployment groups could not be read");
                }
                for group in out.deployment_groups_info() {
                    let lists_alarm = group
                        .alarm_configuration()
                        .is_some_and(|c| c.enabled() && c.alarms().iter().any(|a| a.name() == Some(alarm_name)));
                    if let (true, Some(name)) = (lists_alarm, group.deployment_group_name()) {
                        watching.insert((application.clone(), name.to_string()));
                    }
                }
            }
        }
        Ok(watching)
    }

    async fn deployments(&self, alarm: &AlarmSignal, since: DateTime<Utc>) -> Result<Vec<Candidate>, GuardApiError> {
        let mut listed = self
            .listed(
                alarm,
                "IN_PROGRESS",
                alarm.at - Duration::hours(IN_FLIGHT_HORIZON_HOURS),
            )
            .await?;
        let succeeded = self.listed(alarm, "SUCCESS", since).await?;
        // An index is eventually consistent: a deployment that just ended can show under both statuses for a moment.
        // Its end is the newer fact.
        listed.retain(|d| !succeeded.iter().any(|s| s.deployment_id == d.deployment_id));
        listed.extend(succeeded);
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for d in &listed {
            if !d.application.is_empty() && !d.deployment_group.is_empty() {
                groups
                    .entry(d.application.clone())
                    .or_default()
                    .insert(d.deployment_group.clone());
            }
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let watching = self.groups_watching(&alarm.alarm_name, &groups).await?;
        listed.retain(|d| watching.contains(&(d.application.clone(), d.deployment_group.clone())));
        let ids: Vec<String> = listed.iter().map(|d| d.deployment_id.clone()).collect();
        let rollbacks = self.rollbacks_of(&ids).await?;
        let mut candidates: Vec<Candidate> = Vec::new();
        for d in listed {
            // CodeDeploy's own rollback deployment stands for the deployment it rolls back: never stopped itself.
            let (deployment_id, rollback) = match rollbacks.get(&d.deployment_id) {
                Some(Rolled::IsRollbackOf(original, run)) => (original.clone(), Some(run.clone())),
                Some(Rolled::RolledBackBy(run)) => (d.deployment_id.clone(), Some(run.clone())),
                None => (d.deployment_id.clone(), None),
            };
            let candidate = Candidate {
                account: alarm.account.clone(),
                region: alarm.region.clone(),
                target: Target::Deployment {
                    finished_at: if d.status == "IN_PROGRESS" { None } else { d.at },
                    application: d.application,
                    deployment_group: d.deployment_group,
                    deployment_id,
                    status: d.status,
                    rollback,
                },
            };
            match candidates.iter_mut().find(|c| c.incident() == candidate.incident()) {
                // The deployment and its rollback both listed: one incident, the rollback known.
                Some(existing) => {
                    if let Target::Deployment { rollback: None, .. } = existing.target {
                        *existing = candidate;
                    }
                }
                None => candidates.push(candidate),
            }
        }
        Ok(candidates)
    }

    /// What CodeDeploy says of these deployments' rollbacks (BatchGetDeployments, 25 ids a call): a deployment
    /// stopped or rolled back, or itself the automatic rollback of another.
    async fn rollbacks_of(&self, ids: &[String]) -> Result<HashMap<String, Rolled>, GuardApiError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(DEPLOYMENTS_PER_CALL) {
            let out = self
                .codedeploy
                .batch_get_deployments()
                .set_deployment_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| transient_or_permanent(classify("CodeDeploy BatchGetDeployments", &e)))?;
            for info in out.deployments_info() {
                let Some(id) = info.deployment_id() else { continue };
                let status = info.status().map(|s| s.as_str().to_string()).unwrap_or_default();
                let rollback = info.rollback_info();
                let by = info.creator().map(|c| c.as_str().to_string());
                if let Some(original) = rollback.and_then(|r| r.rollback_triggering_deployment_id()) {
                    let run = RollbackRun {
                        id: id.to_string(),
                        status,
                        by,
                    };
                    found.insert(id.to_string(), Rolled::IsRollbackOf(original.to_string(), run));
                } else if let Some(rollback_id) = rollback.and_then(|r| r.rollback_deployment_id()) {
                    let run = RollbackRun {
                        id: rollback_id.to_string(),
                        status: "Created".into(),
                        by: Some("autoRollback".into()),
                    };
                    found.insert(id.to_string(), Rolled::RolledBackBy(run));
                } else if info.status() == Some(&DeploymentStatus::Stopped) {
                    // Stopped (by the guard's StopDeployment whose answer was lost, or by a person).
                    let run = RollbackRun {
                        id: id.to_string(),
                        status,
                        by: None,
                    };
                    found.insert(id.to_string(), Rolled::RolledBackBy(run));
                }
            }
        }
        Ok(found)
    }

    /// (ARN, tag value) of every pipeline and stack tagged for `alarm_name`.
    async fn tagged(&self, alarm_name: &str) -> Result<Vec<(String, String)>, GuardApiError> {
        let key = format!("{ROLLBACK_TAG_PREFIX}{alarm_name}");
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_TAG_PAGES {
            let out = self
                .tagging
                .get_resources()
                .tag_filters(TagFilter::builder().key(&key).build())
                .resource_type_filters("cloudformation:stack")
                .resource_type_filters("codepipeline")
                .set_pagination_token(token.take())
                .send()
                .await
                .map_err(|e| transient_or_permanent(classify("Resource Groups Tagging GetResources", &e)))?;
            for mapping in out.resource_tag_mapping_list() {
                let value = mapping
                    .tags()
                    .iter()
                    .find(|t| t.key() == key)
                    .map(|t| t.value().to_string())
                    .unwrap_or_default();
                if let Some(arn) = mapping.resource_arn() {
                    found.push((arn.to_string(), value));
                }
            }
            match out.pagination_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(found),
            }
        }
        tracing::warn!(
            alarm_name,
            pages = MAX_TAG_PAGES,
            "more tagged resources than read; the rest are ignored"
        );
        Ok(found)
    }

    /// The stages the gate registered as watched by the alarm. A refusal (the table not readable: a role not yet
    /// updated) leaves the tags to find stages; a transient failure is retried.
    async fn watched(&self, alarm: &AlarmSignal) -> Result<Vec<(String, String)>, GuardApiError> {
        match self
            .watches
            .watchers(&alarm.account, &alarm.region, &alarm.alarm_name, alarm.at)
            .await
        {
            Ok(stages) => Ok(stages.into_iter().map(|w| (w.pipeline, w.stage)).collect()),
            Err(StoreError::Permanent(why)) => {
                tracing::warn!(
                    error = why,
                    "the alarm's watches cannot be read; finding stages by tag only"
                );
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn stage_candidates(
        &self,
        alarm: &AlarmSignal,
        pipeline: &str,
        wanted: &BTreeSet<String>,
    ) -> Result<Vec<Candidate>, GuardApiError> {
        let state = match self.codepipeline.get_pipeline_state().name(pipeline).send().await {
            Ok(state) => state,
            Err(e) => {
                return match classify(&format!("CodePipeline GetPipelineState {pipeline}"), &e) {
                    // A pipeline deleted since its gate registered it (its watches expire on their own).
                    CallError::Refused { code, message } if code == "PipelineNotFoundException" => {
                        tracing::info!(pipeline, code, message, "watched pipeline not found; ignored");
                        Ok(Vec::new())
                    }
                    other => Err(transient_or_permanent(other)),
                };
            }
        };
        let mut found = Vec::new();
        for (index, stage) in state.stage_states().iter().enumerate() {
            let Some(name) = stage.stage_name().filter(|n| wanted.contains(*n)) else {
                continue;
            };
            let Some(latest) = stage.latest_execution() else {
                continue;
            };
            let changed_at = stage
                .action_states()
                .iter()
                .filter_map(|a| a.latest_execution().and_then(|e| e.last_status_change()))
                .filter_map(to_chrono)
                .max();
            let latest_id = latest.pipeline_execution_id().to_string();
            let status = latest.status().as_str().to_string();
            // After a rollback, the stage's newest execution is the rollback: the incident is still the execution it
            // rolled back from.
            let (execution_id, rollback) = if latest.r#type() == Some(&ExecutionType::Rollback) {
                let from = self.rolled_back_from(pipeline, name, &latest_id).await?;
                let run = RollbackRun {
                    id: latest_id.clone(),
                    status: status.clone(),
                    by: None,
                };
                (from.unwrap_or(latest_id), Some(run))
            } else {
                (latest_id, None)
            };
            found.push(Candidate {
                account: alarm.account.clone(),
                region: alarm.region.clone(),
                target: Target::Stage {
                    pipeline: pipeline.to_string(),
                    stage: name.to_string(),
                    first_stage: index == 0,
                    execution_id,
                    status,
                    changed_at,
                    rollback,
                },
            });
        }
        Ok(found)
    }

    /// The execution that ran in `stage` before the rollback execution `rollback_id`: the newest other execution
    /// with an action execution in the stage (ListActionExecutions, at most [`ACTION_EXECUTION_PAGES`] pages).
    async fn rolled_back_from(
        &self,
        pipeline: &str,
        stage: &str,
        rollback_id: &str,
    ) -> Result<Option<String>, GuardApiError> {
        let mut newest: Option<(i64, String)> = None;
        let mut next: Option<String> = None;
        for _ in 0..ACTION_EXECUTION_PAGES {
            let out = self
                .codepipeline
                .list_action_executions()
                .pipeline_name(pipeline)
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| {
                    transient_or_permanent(classify(&format!("CodePipeline ListActionExecutions {pipeline}"), &e))
                })?;
            for detail in out.action_execution_details() {
                let (Some(id), Some(name)) = (detail.pipeline_execution_id(), detail.stage_name()) else {
                    continue;
                };
                if name != stage || id == rollback_id {
                    continue;
                }
                let started = detail.start_time().map(|t| t.secs()).unwrap_or(i64::MIN);
                if newest.as_ref().is_none_or(|(t, _)| started > *t) {
                    newest = Some((started, id.to_string()));
                }
            }
            match out.next_token() {
                Some(t) if newest.is_none() => next = Some(t.to_string()),
                _ => break,
            }
        }
        if newest.is_none() {
            tracing::warn!(
                pipeline,
                stage,
                rollback_id,
                "what the rollback rolled back from is not found"
            );
        }
        Ok(newest.map(|(_, id)| id))
    }

    async fn stack_candidate(&self, alarm: &AlarmSignal, arn: &str) -> Result<Option<Candidate>, GuardApiError> {
        let out = self.cloudformation.describe_stacks().stack_name(arn).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                return match classify(&format!("CloudFormation DescribeStacks {arn}"), &e) {
                    // A stack deleted since it was tagged: nothing to protect.
                    CallError::Refused { code, message } if code == "ValidationError" => {
                        tracing::info!(arn, code, message, "tagged stack not found; ignored");
                        Ok(None)
                    }
                    other => Err(transient_or_permanent(other)),
                };
            }
        };
        Ok(out.stacks().first().map(|stack| Candidate {
            account: alarm.account.clone(),
            region: alarm.region.clone(),
            target: Target::Stack {
                stack_name: stack.stack_name().unwrap_or_default().to_string(),
                stack_id: stack.stack_id().unwrap_or(arn).to_string(),
                status: stack.stack_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                updated_at: stack.last_updated_time().or(stack.creation_time()).and_then(to_chrono),
            },
        }))
    }
}

/// `arn:aws:codepipeline:<region>:<account>:<name>` → the pipeline's name; `None` for webhooks and action types
/// (`...:webhook:<name>`), which the `codepipeline` resource type filter also returns.
fn pipeline_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "codepipeline", _, _, name] if !name.contains(':') && !name.is_empty() => Some(name),
        _ => None,
    }
}

#[async_trait]
impl TargetDiscovery for AwsTargetDiscovery {
    #[tracing::instrument(skip_all, fields(alarm = %alarm.key()))]
    async fn candidates(&self, alarm: &AlarmSignal, since: DateTime<Utc>) -> Result<Vec<Candidate>, GuardApiError> {
        let mut candidates = self.deployments(alarm, since).await?;
        // Stages by pipeline, from the gate's watches first, then the tags: each stage once, each pipeline read once.
        let mut stages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let watched = self.watched(alarm).await?;
        let from_watches = watched.len();
        for (pipeline, stage) in watched {
            stages.entry(pipeline).or_default().insert(stage);
        }
        let mut stacks = Vec::new();
        for (arn, value) in self.tagged(&alarm.alarm_name).await? {
            if arn.contains(":cloudformation:") {
                stacks.push(arn);
            } else if let Some(pipeline) = pipeline_name(&arn) {
                let named: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                if named.is_empty() {
                    tracing::warn!(pipeline, "pipeline tagged for the alarm names no stage; ignored");
                    continue;
                }
                let entry = stages.entry(pipeline.to_string()).or_default();
                entry.extend(named.into_iter().map(str::to_string));
            }
        }
        for (pipeline, wanted) in &stages {
            candidates.extend(self.stage_candidates(alarm, pipeline, wanted).await?);
        }
        for arn in &stacks {
            candidates.extend(self.stack_candidate(alarm, arn).await?);
        }
        tracing::info!(watched_stages = from_watches, "stages found through the gate's watches");
        tracing::info!(candidates = candidates.len(), "targets found");
        Ok(candidates)
    }
}

#[cfg(test)]
mod unit {
    use super::pipeline_name;

    #[test]
    fn only_pipeline_arns_name_a_pipeline() {
        assert_eq!(
            pipeline_name("arn:aws:codepipeline:eu-west-1:111122223333:checkout-service"),
            Some("checkout-service")
        );
        assert_eq!(
            pipeline_name("arn:aws:codepipeline:eu-west-1:111122223333:webhook:gh"),
            None
        );
        assert_eq!(pipeline_name("arn:aws:cloudformation:eu-west-1:1:stack/x/y"), None);
    }
}
