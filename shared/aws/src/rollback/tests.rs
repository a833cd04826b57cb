//! The guard's adapters at the SDK's HTTP layer (aws-smithy-mocks: the exact requests, AWS's refusals), and the
//! claim against a real DynamoDB API (moto) when `TOLLGATE_TEST_ENDPOINT` is set.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::operation::cancel_update_stack::{CancelUpdateStackError, CancelUpdateStackOutput};
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::operation::rollback_stack::RollbackStackOutput;
use aws_sdk_cloudformation::types::{Stack, StackStatus};
use aws_sdk_codedeploy::operation::batch_get_deployment_groups::BatchGetDeploymentGroupsOutput;
use aws_sdk_codedeploy::operation::stop_deployment::{StopDeploymentError, StopDeploymentOutput};
use aws_sdk_codedeploy::types::error::DeploymentAlreadyCompletedException;
use aws_sdk_codedeploy::types::{Alarm, AlarmConfiguration, DeploymentGroupInfo, StopStatus};
use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::operation::list_pipeline_executions::ListPipelineExecutionsOutput;
use aws_sdk_codepipeline::operation::rollback_stage::{RollbackStageError, RollbackStageOutput};
use aws_sdk_codepipeline::types::error::UnableToRollbackStageException;
use aws_sdk_codepipeline::types::{
    ActionExecution, ActionState, ExecutionType, PipelineExecutionStatus, PipelineExecutionSummary,
    PipelineRollbackMetadata, StageExecution, StageExecutionStatus, StageState,
};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, Tag};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{DateTime, Duration, Utc};
use tollgate_domain::rollback::guard::{
    ActOutcome, AlarmSignal, Candidate, Claim, GuardApiError, RollbackAction, RollbackActions, RollbackOutcome,
    RollbackRecord, RollbackStore, Step, Target, TargetDiscovery,
};

use super::{AwsRollbackActions, AwsTargetDiscovery, DynamoDbRollbackStore};

const PIPELINE: &str = "checkout-service";
const CURRENT: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";
const GOOD: &str = "ab085ce4-dd66-42b3-88e3-098729751027";
const STACK: &str = "checkout-service-prod";

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn actions(
    codedeploy: &[&aws_smithy_mocks::Rule],
    codepipeline: &[&aws_smithy_mocks::Rule],
    cloudformation: &[&aws_smithy_mocks::Rule],
) -> AwsRollbackActions {
    AwsRollbackActions::new(
        mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, codedeploy),
        mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, codepipeline),
        mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, cloudformation),
    )
}

async fn run(actions: &AwsRollbackActions, action: RollbackAction) -> Result<ActOutcome, GuardApiError> {
    actions.execute("111122223333", "eu-west-1", &action).await
}

fn stop(id: &str) -> RollbackAction {
    RollbackAction::StopDeployment {
        deployment_id: id.into(),
    }
}

#[tokio::test]
async fn stop_deployment_asks_for_automatic_rollback() {
    let rule = mock!(aws_sdk_codedeploy::Client::stop_deployment)
        .match_requests(|r| r.deployment_id() == Some("d-RAPGQL0KO") && r.auto_rollback_enabled() == Some(true))
        .then_output(|| {
            StopDeploymentOutput::builder()
                .status(StopStatus::Pending)
                .status_message("Stopping deployment")
                .build()
        });
    let outcome = run(&actions(&[&rule], &[], &[]), stop("d-RAPGQL0KO")).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(
        outcome,
        ActOutcome::Accepted {
            detail: "deployment d-RAPGQL0KO stopping with automatic rollback: Pending Stopping deployment".into()
        }
    );
}

#[tokio::test]
async fn a_deployment_that_already_completed_is_a_refusal_with_aws_message() {
    let rule = mock!(aws_sdk_codedeploy::Client::stop_deployment)
        .match_requests(|r| r.deployment_id() == Some("d-RAPGQL0KO") && r.auto_rollback_enabled() == Some(true))
        .then_error(|| {
            StopDeploymentError::DeploymentAlreadyCompletedException(
                DeploymentAlreadyCompletedException::builder()
                    .message("The deployment d-RAPGQL0KO has already completed.")
                    .meta(
                        ErrorMetadata::builder()
                            .code("DeploymentAlreadyCompletedException")
                            .message("The deployment d-RAPGQL0KO has already completed.")
                            .build(),
                    )
                    .build(),
            )
        });
    let outcome = run(&actions(&[&rule], &[], &[]), stop("d-RAPGQL0KO")).await.unwrap();
    assert_eq!(rule.num_calls(), 1, "sent once, not retried");
    assert_eq!(
        outcome,
        ActOutcome::Refused {
            code: "DeploymentAlreadyCompletedException".into(),
            message: "The deployment d-RAPGQL0KO has already completed.".into()
        }
    );
}

#[tokio::test]
async fn throttling_is_transient_not_a_refusal() {
    let rule = mock!(aws_sdk_codedeploy::Client::stop_deployment).then_error(|| {
        StopDeploymentError::generic(
            ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("Rate exceeded")
                .build(),
        )
    });
    let outcome = run(&actions(&[&rule], &[], &[]), stop("d-1")).await;
    assert!(
        matches!(&outcome, Err(GuardApiError::Transient(m)) if m.contains("Rate exceeded")),
        "{outcome:?}"
    );
}

fn summary(id: &str, kind: ExecutionType, rollback_of: Option<&str>) -> PipelineExecutionSummary {
    PipelineExecutionSummary::builder()
        .pipeline_execution_id(id)
        .status(PipelineExecutionStatus::Succeeded)
        .execution_type(kind)
        .set_rollback_metadata(rollback_of.map(|r| {
            PipelineRollbackMetadata::builder()
                .rollback_target_pipeline_execution_id(r)
                .build()
        }))
        .build()
}

fn list_succeeded_in_production() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_codepipeline::Client::list_pipeline_executions)
        .match_requests(|r| {
            r.pipeline_name() == Some(PIPELINE)
                && r.filter()
                    .and_then(|f| f.succeeded_in_stage())
                    .and_then(|s| s.stage_name())
                    == Some("Production")
        })
        .then_output(|| {
            ListPipelineExecutionsOutput::builder()
                // Newest first: a rollback execution, the execution being rolled back, then the last good one.
                .pipeline_execution_summaries(summary("rb-0", ExecutionType::Rollback, Some("old")))
                .pipeline_execution_summaries(summary(CURRENT, ExecutionType::Standard, None))
                .pipeline_execution_summaries(summary(GOOD, ExecutionType::Standard, None))
                .build()
        })
}

fn rollback_production() -> RollbackAction {
    RollbackAction::RollbackStage {
        pipeline: PIPELINE.into(),
        stage: "Production".into(),
        current_execution_id: CURRENT.into(),
    }
}

#[tokio::test]
async fn rollback_stage_targets_the_last_successful_execution_that_is_not_a_rollback() {
    let list = list_succeeded_in_production();
    let rollback = mock!(aws_sdk_codepipeline::Client::rollback_stage)
        .match_requests(|r| {
            r.pipeline_name() == Some(PIPELINE)
                && r.stage_name() == Some("Production")
                && r.target_pipeline_execution_id() == Some(GOOD)
        })
        .then_output(|| {
            RollbackStageOutput::builder()
                .pipeline_execution_id("rb-1")
                .build()
                .unwrap()
        });
    let outcome = run(&actions(&[], &[&list, &rollback], &[]), rollback_production())
        .await
        .unwrap();
    assert_eq!((list.num_calls(), rollback.num_calls()), (1, 1));
    assert_eq!(
        outcome,
        ActOutcome::Accepted {
            detail: format!("rollback execution rb-1 of {PIPELINE} / Production started, back to execution {GOOD}")
        }
    );
}

#[tokio::test]
async fn a_stage_codepipeline_cannot_roll_back_is_a_refusal_with_aws_message() {
    let list = list_succeeded_in_production();
    let rollback = mock!(aws_sdk_codepipeline::Client::rollback_stage).then_error(|| {
        RollbackStageError::UnableToRollbackStageException(
            UnableToRollbackStageException::builder()
                .message("Rollback is not supported for pipelines of type V1")
                .meta(
                    ErrorMetadata::builder()
                        .code("UnableToRollbackStageException")
                        .message("Rollback is not supported for pipelines of type V1")
                        .build(),
                )
                .build(),
        )
    });
    let outcome = run(&actions(&[], &[&list, &rollback], &[]), rollback_production())
        .await
        .unwrap();
    assert_eq!(rollback.num_calls(), 1);
    assert_eq!(
        outcome,
        ActOutcome::Refused {
            code: "UnableToRollbackStageException".into(),
            message: "Rollback is not supported for pipelines of type V1".into()
        }
    );
}

#[tokio::test]
async fn no_earlier_successful_execution_means_no_rollback_request() {
    let list = mock!(aws_sdk_codepipeline::Client::list_pipeline_executions).then_output(|| {
        ListPipelineExecutionsOutput::builder()
            .pipeline_execution_summaries(summary(CURRENT, ExecutionType::Standard, None))
            .pipeline_execution_summaries(summary("rb-0", ExecutionType::Rollback, Some("x")))
            .build()
    });
    let rollback = mock!(aws_sdk_codepipeline::Client::rollback_stage).then_output(|| {
        RollbackStageOutput::builder()
            .pipeline_execution_id("never")
            .build()
            .unwrap()
    });
    let outcome = run(&actions(&[], &[&list, &rollback], &[]), rollback_production())
        .await
        .unwrap();
    assert_eq!(rollback.num_calls(), 0);
    assert!(matches!(outcome, ActOutcome::Refused { code, .. } if code == "NoRollbackTarget"));
}

#[tokio::test]
async fn cancel_update_stack_names_the_stack_and_reports_a_refusal() {
    let ok = mock!(aws_sdk_cloudformation::Client::cancel_update_stack)
        .match_requests(|r| r.stack_name() == Some(STACK) && r.client_request_token().is_none())
        .then_output(|| CancelUpdateStackOutput::builder().build());
    let refused = mock!(aws_sdk_cloudformation::Client::cancel_update_stack)
        .match_requests(|r| r.stack_name() == Some(STACK))
        .then_error(|| {
            CancelUpdateStackError::generic(
                ErrorMetadata::builder()
                    .code("ValidationError")
                    .message("CancelUpdateStack cannot be called from current stack status")
                    .build(),
            )
        });
    let actions = actions(&[], &[], &[&ok, &refused]);
    let cancel = || RollbackAction::CancelUpdateStack {
        stack_name: STACK.into(),
    };
    assert!(matches!(
        run(&actions, cancel()).await.unwrap(),
        ActOutcome::Accepted { .. }
    ));
    assert_eq!(
        run(&actions, cancel()).await.unwrap(),
        ActOutcome::Refused {
            code: "ValidationError".into(),
            message: "CancelUpdateStack cannot be called from current stack status".into()
        }
    );
    assert_eq!((ok.num_calls(), refused.num_calls()), (1, 1));
}

#[tokio::test]
async fn rollback_stack_names_the_stack() {
    let rule = mock!(aws_sdk_cloudformation::Client::rollback_stack)
        .match_requests(|r| r.stack_name() == Some(STACK) && r.role_arn().is_none())
        .then_output(|| {
            RollbackStackOutput::builder()
                .stack_id("arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f")
                .build()
        });
    let outcome = run(
        &actions(&[], &[], &[&rule]),
        RollbackAction::RollbackStack {
            stack_name: STACK.into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert!(matches!(outcome, ActOutcome::Accepted { detail } if detail.contains("stack/checkout-service-prod/5b1f")));
}

// ---------------------------------------------------------------------------------------------------------------
// Discovery.

fn alarm() -> AlarmSignal {
    AlarmSignal {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        alarm_name: "checkout-service-5xx".into(),
        state: "ALARM".into(),
        reason: None,
        at: t("2026-11-20T09:20:00Z"),
        previous_state: Some("OK".into()),
        suppressed_by: None,
    }
}

fn deployment_item(
    id: &str,
    group: &str,
    account: &str,
    at: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.into());
    [
        ("pk", s(&format!("DEPLOY#{account}#eu-west-1#{id}"))),
        ("account", s(account)),
        ("region", s("eu-west-1")),
        ("deployment_id", s(id)),
        ("application", s("checkout-service")),
        ("deployment_group", s(group)),
        ("gsi2sk", s(&format!("{at}#{account}#eu-west-1#{id}"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn group(name: &str, alarms: &[&str]) -> DeploymentGroupInfo {
    let mut config = AlarmConfiguration::builder().enabled(true);
    for a in alarms {
        config = config.alarms(Alarm::builder().name(*a).build());
    }
    DeploymentGroupInfo::builder()
        .application_name("checkout-service")
        .deployment_group_name(name)
        .alarm_configuration(config.build())
        .build()
}

#[tokio::test]
async fn discovery_confirms_recorded_deployments_against_their_groups_and_reads_tagged_pipelines_and_stacks() {
    let in_progress = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.index_name() == Some("gsi2")
                && r.key_condition_expression() == Some("#gsi2pk = :pk AND #gsi2sk >= :since")
                && r.expression_attribute_values().and_then(|v| v.get(":pk"))
                    == Some(&AttributeValue::S("DEPLOY#IN_PROGRESS".into()))
                && r.expression_attribute_values().and_then(|v| v.get(":since"))
                    == Some(&AttributeValue::S("2026-11-19T09:20:00Z".into()))
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(deployment_item(
                    "d-PROD",
                    "production",
                    "111122223333",
                    "2026-11-20T09:11:33Z",
                ))
                .items(deployment_item(
                    "d-STAGING",
                    "staging",
                    "111122223333",
                    "2026-11-20T09:12:00Z",
                ))
                // Another account's deployment with the same names: not this alarm's.
                .items(deployment_item(
                    "d-OTHER",
                    "production",
                    "444455556666",
                    "2026-11-20T09:12:00Z",
                ))
                .build()
        });
    let succeeded = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.expression_attribute_values().and_then(|v| v.get(":pk"))
                == Some(&AttributeValue::S("DEPLOY#SUCCESS".into()))
                && r.expression_attribute_values().and_then(|v| v.get(":since"))
                    == Some(&AttributeValue::S("2026-11-20T08:50:00Z".into()))
        })
        .then_output(|| QueryOutput::builder().build());
    let groups = mock!(aws_sdk_codedeploy::Client::batch_get_deployment_groups)
        .match_requests(|r| {
            r.application_name() == Some("checkout-service")
                && r.deployment_group_names() == ["production".to_string(), "staging".to_string()]
        })
        .then_output(|| {
            BatchGetDeploymentGroupsOutput::builder()
                .deployment_groups_info(group("production", &["checkout-service-5xx", "checkout-latency"]))
                .deployment_groups_info(group("staging", &["checkout-staging-5xx"]))
                .build()
        });
    // The watched deployment's rollback, as CodeDeploy reports it: none yet.
    let deployments = mock!(aws_sdk_codedeploy::Client::batch_get_deployments)
        .match_requests(|r| r.deployment_ids() == ["d-PROD".to_string()])
        .then_output(|| {
            aws_sdk_codedeploy::operation::batch_get_deployments::BatchGetDeploymentsOutput::builder()
                .deployments_info(
                    aws_sdk_codedeploy::types::DeploymentInfo::builder()
                        .deployment_id("d-PROD")
                        .status(aws_sdk_codedeploy::types::DeploymentStatus::InProgress)
                        .build(),
                )
                .build()
        });
    let tagged = mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
        .match_requests(|r| {
            r.tag_filters().len() == 1
                && r.tag_filters()[0].key() == Some("tollgate:rollback-alarm:checkout-service-5xx")
                && r.tag_filters()[0].values().is_empty()
                && r.resource_type_filters() == ["cloudformation:stack".to_string(), "codepipeline".to_string()]
        })
        .then_output(|| {
            let tag = |v: &str| {
                Tag::builder()
                    .key("tollgate:rollback-alarm:checkout-service-5xx")
                    .value(v)
                    .build()
                    .unwrap()
            };
            GetResourcesOutput::builder()
                .resource_tag_mapping_list(
                    ResourceTagMapping::builder()
                        .resource_arn("arn:aws:codepipeline:eu-west-1:111122223333:checkout-service")
                        .tags(tag("Production"))
                        .build(),
                )
                .resource_tag_mapping_list(
                    ResourceTagMapping::builder()
                        .resource_arn("arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f")
                        .tags(tag("true"))
                        .build(),
                )
                .build()
        });
    let stage = |name: &str, status: StageExecutionStatus, changed: i64| {
        StageState::builder()
            .stage_name(name)
            .latest_execution(
                StageExecution::builder()
                    .pipeline_execution_id(CURRENT)
                    .status(status)
                    .build()
                    .unwrap(),
            )
            .action_states(
                ActionState::builder()
                    .action_name("Deploy")
                    .latest_execution(
                        ActionExecution::builder()
                            .last_status_change(aws_smithy_types::DateTime::from_secs(changed))
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let state = mock!(aws_sdk_codepipeline::Client::get_pipeline_state)
        .match_requests(|r| r.name() == Some(PIPELINE))
        .then_output(move || {
            GetPipelineStateOutput::builder()
                .stage_states(stage("Source", StageExecutionStatus::Succeeded, 1_763_629_201))
                .stage_states(stage("Production", StageExecutionStatus::InProgress, 1_763_630_000))
                .build()
        });
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .match_requests(|r| {
            r.stack_name() == Some("arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f")
        })
        .then_output(|| {
            DescribeStacksOutput::builder()
                .stacks(
                    Stack::builder()
                        .stack_name(STACK)
                        .stack_id("arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f")
                        .stack_status(StackStatus::UpdateInProgress)
                        .last_updated_time(aws_smithy_types::DateTime::from_secs(1_763_629_800))
                        .build(),
                )
                .build()
        });
    let watches = watches_query(vec![QueryOutput::builder().build()]);
    let discovery = AwsTargetDiscovery::new(
        mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&in_progress, &succeeded, &watches]
        ),
        "tollgate",
        mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, [&groups, &deployments]),
        mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, [&state]),
        mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, [&stacks]),
        mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, [&tagged]),
    );
    let a = alarm();
    let found = discovery.candidates(&a, a.at - Duration::minutes(30)).await.unwrap();
    assert_eq!(
        (in_progress.num_calls(), succeeded.num_calls(), groups.num_calls()),
        (1, 1, 1),
        "one query per status, one BatchGetDeploymentGroups per application"
    );
    assert_eq!(
        deployments.num_calls(),
        1,
        "one BatchGetDeployments for the watched deployments"
    );
    assert_eq!((tagged.num_calls(), state.num_calls(), stacks.num_calls()), (1, 1, 1));
    assert_eq!(watches.num_calls(), 1, "one Query of the alarm's watches");
    let names: Vec<(String, String)> = found.iter().map(|c| (c.target_name(), c.incident())).collect();
    assert_eq!(
        names,
        vec![
            (
                "deployment:checkout-service/production".to_string(),
                "d-PROD".to_string()
            ),
            ("stage:checkout-service/Production".to_string(), CURRENT.to_string()),
            (
                "stack:checkout-service-prod".to_string(),
                "arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f@2025-11-20T09:10:00Z"
                    .to_string()
            ),
        ]
    );
    assert!(matches!(
        &found[1].target,
        Target::Stage { first_stage: false, status, .. } if status == "InProgress"
    ));
}

const NO_RULES: [&aws_smithy_mocks::Rule; 0] = [];

/// The Query of the alarm's watches (exactly its partition), answering `pages` in turn.
fn watches_query(pages: Vec<QueryOutput>) -> aws_smithy_mocks::Rule {
    let rule = mock!(aws_sdk_dynamodb::Client::query).match_requests(|r| {
        r.table_name() == Some("tollgate")
            && r.index_name().is_none()
            && r.key_condition_expression() == Some("#pk = :pk")
            && r.expression_attribute_names()
                .and_then(|n| n.get("#pk"))
                .map(String::as_str)
                == Some("pk")
            && r.expression_attribute_values().and_then(|v| v.get(":pk"))
                == Some(&AttributeValue::S(
                    "ALARMWATCH#111122223333/eu-west-1/checkout-service-5xx".into(),
                ))
    });
    let mut seq = rule.sequence();
    for page in pages {
        seq = seq.output(move || page.clone());
    }
    seq.build()
}

fn watch_item(pipeline: &str, stage: &str, ttl: i64) -> std::collections::HashMap<String, AttributeValue> {
    [
        (
            "pk",
            "ALARMWATCH#111122223333/eu-west-1/checkout-service-5xx".to_string(),
        ),
        ("sk", format!("{pipeline}#{stage}")),
        ("pipeline", pipeline.to_string()),
        ("stage", stage.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), AttributeValue::S(v)))
    .chain([("ttl".to_string(), AttributeValue::N(ttl.to_string()))])
    .collect()
}

#[tokio::test]
async fn stages_the_gate_registered_become_candidates_once_each_with_the_tagged_ones() {
    let empty = || {
        mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("gsi2"))
            .then_output(|| QueryOutput::builder().build())
    };
    let (in_progress, succeeded) = (empty(), empty());
    let live = t("2026-12-20T09:20:00Z").timestamp();
    let key = |sk: &str| {
        std::collections::HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S("ALARMWATCH#111122223333/eu-west-1/checkout-service-5xx".into()),
            ),
            ("sk".to_string(), AttributeValue::S(sk.into())),
        ])
    };
    // Two pages: the second is asked for from the first's LastEvaluatedKey.
    let watches = watches_query(vec![
        QueryOutput::builder()
            .items(watch_item(PIPELINE, "Production", live))
            .set_last_evaluated_key(Some(key("checkout-service#Production")))
            .build(),
        QueryOutput::builder()
            .items(watch_item("orders", "Release", live))
            .items(watch_item("payments", "Deploy", live))
            // Past its `until`, not yet removed by the TTL.
            .items(watch_item(
                "retired",
                "Production",
                t("2026-11-20T09:00:00Z").timestamp(),
            ))
            .build(),
    ]);
    // The tag names the same stage as a watch.
    let tagged = mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
        GetResourcesOutput::builder()
            .resource_tag_mapping_list(
                ResourceTagMapping::builder()
                    .resource_arn("arn:aws:codepipeline:eu-west-1:111122223333:checkout-service")
                    .tags(
                        Tag::builder()
                            .key("tollgate:rollback-alarm:checkout-service-5xx")
                            .value("Production")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
    });
    let state_of = |pipeline: &'static str, stage: &'static str| {
        mock!(aws_sdk_codepipeline::Client::get_pipeline_state)
            .match_requests(move |r| r.name() == Some(pipeline))
            .then_output(move || {
                GetPipelineStateOutput::builder()
                    .stage_states(
                        StageState::builder()
                            .stage_name("Source")
                            .latest_execution(
                                StageExecution::builder()
                                    .pipeline_execution_id(GOOD)
                                    .status(StageExecutionStatus::Succeeded)
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .stage_states(
                        StageState::builder()
                            .stage_name(stage)
                            .latest_execution(
                                StageExecution::builder()
                                    .pipeline_execution_id(CURRENT)
                                    .status(StageExecutionStatus::InProgress)
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .build()
            })
    };
    let (checkout, orders) = (state_of(PIPELINE, "Production"), state_of("orders", "Release"));
    // A pipeline deleted since its gate passed: ignored, not an error.
    let payments = mock!(aws_sdk_codepipeline::Client::get_pipeline_state)
        .match_requests(|r| r.name() == Some("payments"))
        .then_error(|| {
            aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateError::generic(
                ErrorMetadata::builder()
                    .code("PipelineNotFoundException")
                    .message("Account '111122223333' does not have a pipeline with name 'payments'")
                    .build(),
            )
        });
    let discovery = AwsTargetDiscovery::new(
        mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&in_progress, &succeeded, &watches]
        ),
        "tollgate",
        mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, NO_RULES),
        mock_client!(
            aws_sdk_codepipeline,
            RuleMode::MatchAny,
            [&checkout, &orders, &payments]
        ),
        mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, NO_RULES),
        mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, [&tagged]),
    );
    let a = alarm();
    let found = discovery.candidates(&a, a.at - Duration::minutes(30)).await.unwrap();
    assert_eq!(watches.num_calls(), 2, "both pages of the alarm's watches");
    assert_eq!(
        (checkout.num_calls(), orders.num_calls(), payments.num_calls()),
        (1, 1, 1),
        "each pipeline read once, the watched and tagged one included"
    );
    let names: Vec<(String, String)> = found.iter().map(|c| (c.target_name(), c.incident())).collect();
    assert_eq!(
        names,
        vec![
            ("stage:checkout-service/Production".to_string(), CURRENT.to_string()),
            ("stage:orders/Release".to_string(), CURRENT.to_string()),
        ]
    );
    assert!(found
        .iter()
        .all(|c| c.account == "111122223333" && c.region == "eu-west-1"));
}

#[tokio::test]
async fn watches_that_cannot_be_read_for_a_transient_reason_make_discovery_retryable() {
    let empty = || {
        mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("gsi2"))
            .then_output(|| QueryOutput::builder().build())
    };
    let (in_progress, succeeded) = (empty(), empty());
    let throttled = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| r.index_name().is_none())
        .then_error(|| {
            aws_sdk_dynamodb::operation::query::QueryError::generic(
                ErrorMetadata::builder()
                    .code("ProvisionedThroughputExceededException")
                    .message("Rate exceeded")
                    .build(),
            )
        });
    let discovery = AwsTargetDiscovery::new(
        mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&in_progress, &succeeded, &throttled]
        ),
        "tollgate",
        mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, NO_RULES),
        mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, NO_RULES),
        mock_client!(aws_sdk_cloudformation, RuleMode::Sequential, NO_RULES),
        mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, NO_RULES),
    );
    let a = alarm();
    let err = discovery
        .candidates(&a, a.at - Duration::minutes(30))
        .await
        .unwrap_err();
    assert!(matches!(err, GuardApiError::Transient(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// The claim against a local DynamoDB API.

fn record(id: &str) -> RollbackRecord {
    RollbackRecord {
        id: id.into(),
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        target: Candidate {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            target: Target::Deployment {
                application: "checkout-service".into(),
                deployment_group: "production".into(),
                deployment_id: "d-PROD".into(),
                status: "IN_PROGRESS".into(),
                finished_at: None,
                rollback: None,
            },
        },
        alarm: "111122223333/eu-west-1/checkout-service-5xx".into(),
        alarm_name: "checkout-service-5xx".into(),
        alarm_at: t("2026-11-20T09:20:00Z"),
        alarm_reason: None,
        attempted_at: None,
        decided_at: t("2026-11-20T09:21:00Z"),
        action: Some(stop("d-PROD")),
        outcome: None,
        acted_at: None,
        detail: String::new(),
        restored_at: None,
        execution: None,
        claimed_by: "m-1".into(),
        audited: false,
        notified: false,
    }
}

async fn local_table(test: &str) -> Option<(aws_sdk_dynamodb::Client, String)> {
    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        println!("SKIPPED: set TOLLGATE_TEST_ENDPOINT (e.g. http://127.0.0.1:5055) to run {test}");
        return None;
    };
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType,
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let table = format!("tollgate-{test}-{nanos}").replace('_', "-");
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let index = |name: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(&format!("{name}pk"), KeyType::Hash))
            .key_schema(key(&format!("{name}sk"), KeyType::Range))
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
                .into_iter()
                .map(|n| {
                    AttributeDefinition::builder()
                        .attribute_name(n)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .unwrap()
                })
                .collect(),
        ))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index("gsi1"))
        .global_secondary_indexes(index("gsi2"))
        .send()
        .await
        .expect("CreateTable");
    Some((client, table))
}

#[tokio::test]
async fn the_claim_is_won_once_held_while_fresh_and_done_after_the_outcome_against_dynamodb() {
    let Some((client, table)) = local_table("rollback_claim").await else {
        return;
    };
    let store = DynamoDbRollbackStore::new(client.clone(), &table, 30);
    let now = t("2026-11-20T09:21:00Z");
    let stale = now - Duration::minutes(5);
    let mut r = record("111122223333#eu-west-1#deployment:checkout-service/production#d-PROD");
    // Twenty deliveries at once: one wins.
    let claims = futures_all(
        (0..20)
            .map(|i| {
                let store = store.clone();
                let r = r.clone();
                async move { store.claim(&r, &format!("m-{i}"), now, stale).await.unwrap() }
            })
            .collect(),
    )
    .await;
    let won = |c: &Claim| matches!(c, Claim::Won { previous: None });
    assert_eq!(claims.iter().filter(|c| won(c)).count(), 1, "{claims:?}");
    assert_eq!(claims.iter().filter(|c| **c == Claim::Held).count(), 19);
    let winner = format!("m-{}", claims.iter().position(won).unwrap());
    // Only the holder can store the outcome.
    r.outcome = Some(RollbackOutcome::RolledBack);
    r.acted_at = Some(now);
    r.detail = "stopping".into();
    assert!(!store.finish(&r, "someone-else").await.unwrap());
    assert!(store.finish(&r, &winner).await.unwrap());
    store.mark(&r.id, Step::Audited).await.unwrap();
    match store.claim(&r, "m-late", now + Duration::hours(1), now).await.unwrap() {
        Claim::Done(stored) => {
            assert_eq!(stored.outcome, Some(RollbackOutcome::RolledBack));
            assert!(stored.audited && !stored.notified);
        }
        other => panic!("expected Done, got {other:?}"),
    }
    // An OK before the rollback does not restore it; the next one does, once.
    assert!(store
        .mark_restored(&r.alarm, now - Duration::seconds(30))
        .await
        .unwrap()
        .is_empty());
    let restored = store.mark_restored(&r.alarm, now + Duration::minutes(9)).await.unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].time_to_restore_secs(), Some(10 * 60));
    assert!(store
        .mark_restored(&r.alarm, now + Duration::minutes(20))
        .await
        .unwrap()
        .is_empty());
    let listed = store
        .rollbacks_between(t("2026-11-20T00:00:00Z"), t("2026-11-21T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].restored_at, Some(now + Duration::minutes(9)));
    // A released claim (a lost answer) can be claimed again at once, and says when its request was sent.
    let mut other = record("111122223333#eu-west-1#deployment:checkout-service/production#d-NEXT");
    assert_eq!(
        store.claim(&other, "m-a", now, stale).await.unwrap(),
        Claim::Won { previous: None }
    );
    other.attempted_at = Some(now);
    store.release(&other, "m-a").await.unwrap();
    match store.claim(&other, "m-b", now, stale).await.unwrap() {
        Claim::Won { previous: Some(p) } => assert_eq!(p.attempted_at, Some(now)),
        c => panic!("expected the released record back, got {c:?}"),
    }
    // And a claim whose holder died is taken over after its lease, with the record it held.
    assert!(matches!(
        store
            .claim(&other, "m-c", now + Duration::minutes(6), now + Duration::minutes(1))
            .await
            .unwrap(),
        Claim::Won { previous: Some(_) }
    ));
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("DeleteTable");
}

/// Runs the futures concurrently on spawned tasks.
async fn futures_all<T: Send + 'static>(futures: Vec<impl std::future::Future<Output = T> + Send + 'static>) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
