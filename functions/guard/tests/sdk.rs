//! The guard at the SDK's HTTP layer: the handler with the real discovery and rollback adapters over mocked
//! DynamoDB, CodeDeploy, CodePipeline, CloudFormation and tagging clients (aws-smithy-mocks), showing the exact
//! rollback requests it sends for an alarm storm and AWS's refusals. Claims, audit and notifications use the in-memory
//! ports (the DynamoDB claim is tested against a local endpoint in `tollgate-aws`).

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_cloudformation::operation::cancel_update_stack::CancelUpdateStackOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::operation::rollback_stack::RollbackStackError;
use aws_sdk_cloudformation::types::{Stack, StackStatus};
use aws_sdk_codedeploy::operation::batch_get_deployment_groups::BatchGetDeploymentGroupsOutput;
use aws_sdk_codedeploy::operation::batch_get_deployments::BatchGetDeploymentsOutput;
use aws_sdk_codedeploy::operation::stop_deployment::{StopDeploymentError, StopDeploymentOutput};
use aws_sdk_codedeploy::types::error::DeploymentAlreadyCompletedException;
use aws_sdk_codedeploy::types::{
    Alarm, AlarmConfiguration, DeploymentCreator, DeploymentGroupInfo, DeploymentInfo, DeploymentStatus, RollbackInfo,
    StopStatus,
};
use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::operation::list_action_executions::ListActionExecutionsOutput;
use aws_sdk_codepipeline::operation::list_pipeline_executions::ListPipelineExecutionsOutput;
use aws_sdk_codepipeline::operation::rollback_stage::RollbackStageOutput;
use aws_sdk_codepipeline::types::{
    ActionExecution, ActionExecutionDetail, ActionState, ExecutionType, PipelineExecutionSummary, StageExecution,
    StageExecutionStatus, StageState,
};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
use aws_sdk_resourcegroupstagging::types::{ResourceTagMapping, Tag};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{DateTime, Duration, Utc};
use guard::handler::{handle_batch, Deps, Home};
use serde_json::json;
use tollgate_aws::rollback::{AwsRollbackActions, AwsTargetDiscovery};
use tollgate_domain::audit::AuditLog;
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryRollbackStore;
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::rollback::guard::{GuardPolicy, GuardPorts, RollbackOutcome};

const ACCOUNT: &str = "111122223333";
const ALARM: &str = "checkout-service-5xx";
const PIPELINE: &str = "checkout-service";
const CURRENT: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";
const GOOD: &str = "ab085ce4-dd66-42b3-88e3-098729751027";
const STACK_ARN: &str = "arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f";

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn alarm_event(state: &str, at: DateTime<Utc>) -> String {
    let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    json!({
        "version": "0", "id": format!("id-{state}-{}", at.timestamp()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": ACCOUNT, "time": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": "eu-west-1", "resources": [format!("arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:{ALARM}")],
        "detail": {"alarmName": ALARM, "state": {"value": state, "reason": "Threshold Crossed", "timestamp": stamp}}
    })
    .to_string()
}

fn batch(messages: &[(String, String)]) -> SqsEvent {
    let records: Vec<_> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// The discovery side: one recorded in-progress deployment whose group lists the alarm, a pipeline whose
/// Production stage and a stack tagged with it.
fn discovery_rules(stack_status: StackStatus) -> Vec<Rule> {
    let in_progress = |r: &aws_sdk_dynamodb::operation::query::QueryInput| {
        r.expression_attribute_values().and_then(|v| v.get(":pk"))
            == Some(&AttributeValue::S("DEPLOY#IN_PROGRESS".into()))
    };
    let finished = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(move |r| !in_progress(r))
        .then_output(|| QueryOutput::builder().build());
    let deployments = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(in_progress)
        .then_output(|| {
            let s = |v: &str| AttributeValue::S(v.into());
            QueryOutput::builder()
                .items(
                    [
                        ("pk", s("DEPLOY#111122223333#eu-west-1#d-RAPGQL0KO")),
                        ("account", s(ACCOUNT)),
                        ("region", s("eu-west-1")),
                        ("deployment_id", s("d-RAPGQL0KO")),
                        ("application", s("checkout-service")),
                        ("deployment_group", s("production")),
                        ("gsi2sk", s("2026-11-20T09:11:33Z#111122223333#eu-west-1#d-RAPGQL0KO")),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                )
                .build()
        });
    let groups = mock!(aws_sdk_codedeploy::Client::batch_get_deployment_groups).then_output(|| {
        BatchGetDeploymentGroupsOutput::builder()
            .deployment_groups_info(
                DeploymentGroupInfo::builder()
                    .application_name("checkout-service")
                    .deployment_group_name("production")
                    .alarm_configuration(
                        AlarmConfiguration::builder()
                            .enabled(true)
                            .alarms(Alarm::builder().name(ALARM).build())
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let infos = mock!(aws_sdk_codedeploy::Client::batch_get_deployments).then_output(|| {
        BatchGetDeploymentsOutput::builder()
            .deployments_info(
                DeploymentInfo::builder()
                    .deployment_id("d-RAPGQL0KO")
                    .status(DeploymentStatus::InProgress)
                    .build(),
            )
            .build()
    });
    let tagged = mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
        let tag = |v: &str| {
            Tag::builder()
                .key(format!("tollgate:rollback-alarm:{ALARM}"))
                .value(v)
                .build()
                .unwrap()
        };
        GetResourcesOutput::builder()
            .resource_tag_mapping_list(
                ResourceTagMapping::builder()
                    .resource_arn(format!("arn:aws:codepipeline:eu-west-1:{ACCOUNT}:{PIPELINE}"))
                    .tags(tag("Production"))
                    .build(),
            )
            .resource_tag_mapping_list(
                ResourceTagMapping::builder()
                    .resource_arn(STACK_ARN)
                    .tags(tag("true"))
                    .build(),
            )
            .build()
    });
    let state = mock!(aws_sdk_codepipeline::Client::get_pipeline_state).then_output(|| {
        let stage = |name: &str, status: StageExecutionStatus| {
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
                        .latest_execution(
                            ActionExecution::builder()
                                .last_status_change(aws_smithy_types::DateTime::from_secs(
                                    t("2026-11-20T09:11:33Z").timestamp(),
                                ))
                                .build(),
                        )
                        .build(),
                )
                .build()
        };
        GetPipelineStateOutput::builder()
            .stage_states(stage("Source", StageExecutionStatus::Succeeded))
            .stage_states(stage("Production", StageExecutionStatus::Failed))
            .build()
    });
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(move || {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name("checkout-service-prod")
                    .stack_id(STACK_ARN)
                    .stack_status(stack_status.clone())
                    .last_updated_time(aws_smithy_types::DateTime::from_secs(
                        t("2026-11-20T09:10:00Z").timestamp(),
                    ))
                    .build(),
            )
            .build()
    });
    vec![deployments, finished, groups, infos, tagged, state, stacks]
}

struct Fixture {
    store: MemoryRollbackStore,
    audit: MemoryAuditLog,
    notifier: MemoryNotifier,
    events: MemoryStore,
    discovery: AwsTargetDiscovery,
    actions: AwsRollbackActions,
}

impl Fixture {
    fn new(discovery: &[Rule], codedeploy: &[&Rule], codepipeline: &[&Rule], cloudformation: &[&Rule]) -> Fixture {
        let [deployments, finished, groups, infos, tagged, state, stacks] = discovery else {
            panic!("seven discovery rules")
        };
        let mut codedeploy: Vec<&Rule> = codedeploy.to_vec();
        codedeploy.push(groups);
        codedeploy.push(infos);
        let mut codepipeline: Vec<&Rule> = codepipeline.to_vec();
        codepipeline.push(state);
        let mut cloudformation: Vec<&Rule> = cloudformation.to_vec();
        cloudformation.push(stacks);
        let codedeploy = mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, &codedeploy);
        let codepipeline = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, &codepipeline);
        let cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &cloudformation);
        Fixture {
            store: MemoryRollbackStore::new(),
            audit: MemoryAuditLog::new(),
            notifier: MemoryNotifier::new(),
            events: MemoryStore::new(),
            discovery: AwsTargetDiscovery::new(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [deployments, finished]),
                "tollgate",
                codedeploy.clone(),
                codepipeline.clone(),
                cloudformation.clone(),
                mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [tagged]),
            ),
            actions: AwsRollbackActions::new(codedeploy, codepipeline, cloudformation),
        }
    }

    fn deps(&self) -> Deps<'_> {
        Deps {
            guard: GuardPorts {
                discovery: &self.discovery,
                actions: &self.actions,
                store: &self.store,
                audit: &self.audit,
                notifier: &self.notifier,
            },
            rejected: &self.events,
            policy: GuardPolicy::default(),
            home: Some(Home {
                account: ACCOUNT.into(),
                region: "eu-west-1".into(),
            }),
        }
    }
}

fn stop_ok() -> Rule {
    mock!(aws_sdk_codedeploy::Client::stop_deployment)
        .match_requests(|r| r.deployment_id() == Some("d-RAPGQL0KO") && r.auto_rollback_enabled() == Some(true))
        .then_output(|| StopDeploymentOutput::builder().status(StopStatus::Pending).build())
}

fn list_ok() -> Rule {
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
                .pipeline_execution_summaries(
                    PipelineExecutionSummary::builder()
                        .pipeline_execution_id(GOOD)
                        .execution_type(ExecutionType::Standard)
                        .build(),
                )
                .build()
        })
}

fn rollback_stage_ok() -> Rule {
    mock!(aws_sdk_codepipeline::Client::rollback_stage)
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
        })
}

#[tokio::test]
async fn an_alarm_storm_of_twenty_flaps_delivered_twice_sends_one_rollback_request_per_target() {
    let stop = stop_ok();
    let list = list_ok();
    let rollback = rollback_stage_ok();
    let cancel = mock!(aws_sdk_cloudformation::Client::cancel_update_stack)
        .match_requests(|r| r.stack_name() == Some("checkout-service-prod"))
        .then_output(|| CancelUpdateStackOutput::builder().build());
    let discovery = discovery_rules(StackStatus::UpdateInProgress);
    let f = Fixture::new(&discovery, &[&stop], &[&list, &rollback], &[&cancel]);
    // 20 flaps from 09:20:00, one every 10 s, each ALARM and OK delivered twice, in batches of 10.
    let mut messages = Vec::new();
    for i in 0..20 {
        let at = t("2026-11-20T09:20:00Z") + Duration::seconds(i * 10);
        for copy in 0..2 {
            messages.push((format!("alarm-{i}-{copy}"), alarm_event("ALARM", at)));
            messages.push((format!("ok-{i}-{copy}"), alarm_event("OK", at + Duration::seconds(5))));
        }
    }
    let now = t("2026-11-20T09:24:00Z");
    let mut retried = 0;
    for chunk in messages.chunks(10) {
        let (response, stats) = handle_batch(&f.deps(), batch(chunk), now).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        retried += stats.retried;
    }
    assert_eq!(retried, 0);
    assert_eq!(
        (stop.num_calls(), rollback.num_calls(), cancel.num_calls()),
        (1, 1, 1),
        "one StopDeployment, one RollbackStage, one CancelUpdateStack"
    );
    assert_eq!(list.num_calls(), 1);
    let records = f.store.records();
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| r.outcome == Some(RollbackOutcome::RolledBack)),
        "{records:#?}"
    );
    assert_eq!(f.notifier.sent().len(), 3);
    let stage = records.iter().find(|r| r.execution.is_some()).unwrap();
    assert_eq!(
        stage.execution.as_ref().unwrap().execution_id,
        CURRENT,
        "linked to the execution"
    );
    let audit = f.audit.entries(&stage.target.audit_scope()).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "rollback.rollback_stage");
    // The flaps' OKs came before the rollbacks (09:24); the next OK restores service and undoes nothing.
    let ok = vec![("final-ok".to_string(), alarm_event("OK", t("2026-11-20T09:31:00Z")))];
    let (_, stats) = handle_batch(&f.deps(), batch(&ok), t("2026-11-20T09:31:05Z")).await;
    assert_eq!(stats.restored, 3);
    assert_eq!((stop.num_calls(), rollback.num_calls(), cancel.num_calls()), (1, 1, 1));
    let restored = f.store.records();
    assert!(
        restored.iter().all(|r| r.time_to_restore_secs() == Some(11 * 60)),
        "{restored:#?}"
    );
}

#[tokio::test]
async fn refusals_are_recorded_with_aws_reason_notified_and_not_sent_again() {
    let stop = mock!(aws_sdk_codedeploy::Client::stop_deployment)
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
    let list = list_ok();
    let rollback = rollback_stage_ok();
    let rollback_stack = mock!(aws_sdk_cloudformation::Client::rollback_stack)
        .match_requests(|r| r.stack_name() == Some("checkout-service-prod"))
        .then_error(|| {
            RollbackStackError::generic(
                ErrorMetadata::builder()
                    .code("ValidationError")
                    .message("Stack checkout-service-prod is in UPDATE_FAILED state and can not be rolled back")
                    .build(),
            )
        });
    let discovery = discovery_rules(StackStatus::UpdateFailed);
    let f = Fixture::new(&discovery, &[&stop], &[&list, &rollback], &[&rollback_stack]);
    let alarm = alarm_event("ALARM", t("2026-11-20T09:20:00Z"));
    let first = vec![("m-1".to_string(), alarm.clone())];
    let (response, stats) = handle_batch(&f.deps(), batch(&first), t("2026-11-20T09:21:00Z")).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((stats.refused, stats.rolled_back), (2, 1));
    // Redelivered: nothing is sent again.
    let again = vec![("m-2".to_string(), alarm)];
    let (_, stats) = handle_batch(&f.deps(), batch(&again), t("2026-11-20T09:22:00Z")).await;
    assert_eq!(stats.already_handled, 3);
    assert_eq!(
        (stop.num_calls(), rollback_stack.num_calls(), rollback.num_calls()),
        (1, 1, 1)
    );
    let records = f.store.records();
    let refused: Vec<&str> = records
        .iter()
        .filter(|r| r.outcome == Some(RollbackOutcome::Refused))
        .map(|r| r.detail.as_str())
        .collect();
    assert!(refused.contains(&"DeploymentAlreadyCompletedException: The deployment d-RAPGQL0KO has already completed."));
    assert!(refused.contains(
        &"ValidationError: Stack checkout-service-prod is in UPDATE_FAILED state and can not be rolled back"
    ));
    let notes = f.notifier.sent();
    assert_eq!(notes.len(), 3);
    assert!(notes
        .iter()
        .any(|n| n.title.contains("AWS refused") && n.lines.iter().any(|l| l.contains("has already completed"))));
}

/// A pipeline tagged for the alarm on Production, nothing else: the DynamoDB queries find no deployment or watch.
fn stage_only_clients(codepipeline: &[&Rule]) -> (AwsTargetDiscovery, AwsRollbackActions) {
    let none = mock!(aws_sdk_dynamodb::Client::query).then_output(|| QueryOutput::builder().build());
    let tagged = mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
        GetResourcesOutput::builder()
            .resource_tag_mapping_list(
                ResourceTagMapping::builder()
                    .resource_arn(format!("arn:aws:codepipeline:eu-west-1:{ACCOUNT}:{PIPELINE}"))
                    .tags(
                        Tag::builder()
                            .key(format!("tollgate:rollback-alarm:{ALARM}"))
                            .value("Production")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
    });
    let codedeploy = mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, NO_RULES);
    let codepipeline = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, codepipeline);
    let cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, NO_RULES);
    (
        AwsTargetDiscovery::new(
            mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&none]),
            "tollgate",
            codedeploy.clone(),
            codepipeline.clone(),
            cloudformation.clone(),
            mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&tagged]),
        ),
        AwsRollbackActions::new(codedeploy, codepipeline, cloudformation),
    )
}

const NO_RULES: [&Rule; 0] = [];

fn production_state(execution: &'static str, kind: ExecutionType, status: StageExecutionStatus) -> Rule {
    mock!(aws_sdk_codepipeline::Client::get_pipeline_state)
        .match_requests(|r| r.name() == Some(PIPELINE))
        .then_output(move || {
            GetPipelineStateOutput::builder()
                .stage_states(StageState::builder().stage_name("Source").build())
                .stage_states(
                    StageState::builder()
                        .stage_name("Production")
                        .latest_execution(
                            StageExecution::builder()
                                .pipeline_execution_id(execution)
                                .status(status.clone())
                                .r#type(kind.clone())
                                .build()
                                .unwrap(),
                        )
                        .action_states(
                            ActionState::builder()
                                .latest_execution(
                                    ActionExecution::builder()
                                        .last_status_change(aws_smithy_types::DateTime::from_secs(
                                            t("2026-11-20T09:19:00Z").timestamp(),
                                        ))
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
}

type Shared<'a> = (
    &'a MemoryRollbackStore,
    &'a MemoryAuditLog,
    &'a MemoryNotifier,
    &'a MemoryStore,
);

async fn run(
    (discovery, actions): (&AwsTargetDiscovery, &AwsRollbackActions),
    (store, audit, notifier, events): Shared<'_>,
    messages: Vec<(String, String)>,
    now: DateTime<Utc>,
) -> (aws_lambda_events::sqs::SqsBatchResponse, guard::handler::BatchStats) {
    let deps = Deps {
        guard: GuardPorts {
            discovery,
            actions,
            store,
            audit,
            notifier,
        },
        rejected: events,
        policy: GuardPolicy::default(),
        home: None,
    };
    handle_batch(&deps, batch(&messages), now).await
}

#[tokio::test]
async fn a_lost_rollback_stage_answer_then_a_flap_record_one_rollback_read_from_the_pipeline() {
    let store = MemoryRollbackStore::new();
    let audit = MemoryAuditLog::new();
    let notifier = MemoryNotifier::new();
    let events = MemoryStore::new();
    // 1. The stage failed at 09:19 on execution CURRENT; RollbackStage reaches AWS but its answer is a 500.
    let failed = production_state(CURRENT, ExecutionType::Standard, StageExecutionStatus::Failed);
    let list = list_ok();
    let lost = mock!(aws_sdk_codepipeline::Client::rollback_stage)
        .match_requests(|r| r.target_pipeline_execution_id() == Some(GOOD))
        .then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
                aws_smithy_types::body::SdkBody::from("{}"),
            )
        });
    let (discovery, actions) = stage_only_clients(&[&failed, &list, &lost]);
    let alarm = alarm_event("ALARM", t("2026-11-20T09:20:00Z"));
    let shared = (&store, &audit, &notifier, &events);
    let (response, _) = run(
        (&discovery, &actions),
        shared,
        vec![("m-1".into(), alarm.clone())],
        t("2026-11-20T09:20:05Z"),
    )
    .await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "the message goes back to the queue"
    );
    assert!(lost.num_calls() >= 1);
    assert!(notifier.sent().is_empty(), "nobody is told 'AWS refused'");
    // 2. The pipeline now shows the rollback execution rb-1 in Production; ListActionExecutions says it rolled back
    // from CURRENT. The redelivery and a later flap send nothing.
    let rolling_back = production_state("rb-1", ExecutionType::Rollback, StageExecutionStatus::InProgress);
    let actions_listed = mock!(aws_sdk_codepipeline::Client::list_action_executions)
        .match_requests(|r| r.pipeline_name() == Some(PIPELINE) && r.filter().is_none())
        .then_output(|| {
            let detail = |execution: &str, stage: &str, at: &str| {
                ActionExecutionDetail::builder()
                    .pipeline_execution_id(execution)
                    .stage_name(stage)
                    .action_name("Deploy")
                    .start_time(aws_smithy_types::DateTime::from_secs(t(at).timestamp()))
                    .build()
            };
            ListActionExecutionsOutput::builder()
                .action_execution_details(detail("rb-1", "Production", "2026-11-20T09:20:06Z"))
                .action_execution_details(detail(CURRENT, "Production", "2026-11-20T09:11:33Z"))
                .action_execution_details(detail(GOOD, "Production", "2026-11-19T15:00:00Z"))
                .action_execution_details(detail("newer-build", "Build", "2026-11-20T09:18:00Z"))
                .build()
        });
    let again = rollback_stage_ok();
    let (discovery, actions) = stage_only_clients(&[&rolling_back, &actions_listed, &again]);
    let flap = alarm_event("ALARM", t("2026-11-20T09:24:00Z"));
    let (response, stats) = run(
        (&discovery, &actions),
        shared,
        vec![("m-1".into(), alarm), ("m-2".into(), flap)],
        t("2026-11-20T09:26:05Z"),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!((stats.rolled_back, stats.already_handled), (1, 1), "{stats:?}");
    assert_eq!(again.num_calls(), 0, "RollbackStage is not sent again");
    assert_eq!(actions_listed.num_calls(), 2, "read once per delivery");
    let records = store.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Some(RollbackOutcome::RolledBack));
    assert_eq!(r.acted_at, Some(t("2026-11-20T09:20:05Z")), "when the request was sent");
    assert!(r.detail.contains("rb-1"), "{}", r.detail);
    assert_eq!(notifier.sent().len(), 1, "one page");
}

#[tokio::test]
async fn codedeploys_rollback_deployment_stands_for_the_deployment_it_rolls_back_and_is_never_stopped() {
    let query = |pk: &'static str, id: &'static str| {
        mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(move |r| {
                r.expression_attribute_values().and_then(|v| v.get(":pk")) == Some(&AttributeValue::S(pk.into()))
            })
            .then_output(move || {
                let s = |v: &str| AttributeValue::S(v.into());
                let item = [
                    ("account", s(ACCOUNT)),
                    ("region", s("eu-west-1")),
                    ("deployment_id", s(id)),
                    ("application", s("checkout-service")),
                    ("deployment_group", s("production")),
                    ("gsi2sk", s("2026-11-20T09:21:00Z#x")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                QueryOutput::builder().items(item).build()
            })
    };
    let in_progress = query("DEPLOY#IN_PROGRESS", "d-ROLLBACK");
    let none = mock!(aws_sdk_dynamodb::Client::query).then_output(|| QueryOutput::builder().build());
    let groups = mock!(aws_sdk_codedeploy::Client::batch_get_deployment_groups).then_output(|| {
        BatchGetDeploymentGroupsOutput::builder()
            .deployment_groups_info(
                DeploymentGroupInfo::builder()
                    .deployment_group_name("production")
                    .alarm_configuration(
                        AlarmConfiguration::builder()
                            .enabled(true)
                            .alarms(Alarm::builder().name(ALARM).build())
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let infos = mock!(aws_sdk_codedeploy::Client::batch_get_deployments)
        .match_requests(|r| r.deployment_ids() == ["d-ROLLBACK".to_string()])
        .then_output(|| {
            BatchGetDeploymentsOutput::builder()
                .deployments_info(
                    DeploymentInfo::builder()
                        .deployment_id("d-ROLLBACK")
                        .status(DeploymentStatus::InProgress)
                        .creator(DeploymentCreator::CodeDeployRollback)
                        .rollback_info(
                            RollbackInfo::builder()
                                .rollback_triggering_deployment_id("d-RAPGQL0KO")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
    let stop = stop_ok();
    let untagged = mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
        .then_output(|| GetResourcesOutput::builder().build());
    let codedeploy = mock_client!(aws_sdk_codedeploy, RuleMode::MatchAny, [&groups, &infos, &stop]);
    let codepipeline = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, NO_RULES);
    let cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, NO_RULES);
    let discovery = AwsTargetDiscovery::new(
        mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&in_progress, &none]),
        "tollgate",
        codedeploy.clone(),
        codepipeline.clone(),
        cloudformation.clone(),
        mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&untagged]),
    );
    let actions = AwsRollbackActions::new(codedeploy, codepipeline, cloudformation);
    let (store, audit, notifier, events) = (
        MemoryRollbackStore::new(),
        MemoryAuditLog::new(),
        MemoryNotifier::new(),
        MemoryStore::new(),
    );
    let deps = Deps {
        guard: GuardPorts {
            discovery: &discovery,
            actions: &actions,
            store: &store,
            audit: &audit,
            notifier: &notifier,
        },
        rejected: &events,
        policy: GuardPolicy::default(),
        home: None,
    };
    let messages = vec![("m-1".to_string(), alarm_event("ALARM", t("2026-11-20T09:22:00Z")))];
    let (response, _) = handle_batch(&deps, batch(&messages), t("2026-11-20T09:22:05Z")).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(infos.num_calls(), 1);
    assert_eq!(stop.num_calls(), 0, "the rollback deployment is not stopped");
    let records = store.records();
    assert_eq!(records.len(), 1);
    assert!(records[0].id.ends_with("#d-RAPGQL0KO"), "{}", records[0].id);
    assert_eq!(records[0].outcome, Some(RollbackOutcome::Notified));
    assert!(records[0].detail.contains("d-ROLLBACK"), "{}", records[0].detail);
}
