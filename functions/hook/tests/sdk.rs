//! The hook at the SDK's HTTP layer: the real CloudWatch, DynamoDB and CodeDeploy adapters over mocked clients
//! (aws-smithy-mocks), showing the exact PutLifecycleEventHookExecutionStatus request of each scenario, including
//! CodeDeploy refusing it.

use std::time::Duration;

use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
use aws_sdk_codedeploy::operation::put_lifecycle_event_hook_execution_status::{
    PutLifecycleEventHookExecutionStatusError, PutLifecycleEventHookExecutionStatusOutput,
};
use aws_sdk_codedeploy::types::error::{
    InvalidLifecycleEventHookExecutionIdException, LifecycleEventAlreadyCompletedException,
};
use aws_sdk_codedeploy::types::LifecycleEventStatus;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use chrono::{DateTime, TimeZone, Utc};
use hook::handler::{handle, HookError, HookReport, Place, Ports, Settings};
use hook::probe::TcpHttpProbe;
use lambda_runtime::Diagnostic;
use serde_json::json;
use tollgate_aws::cloudwatch::CloudWatchAlarms;
use tollgate_aws::codedeploy_hooks::{CodeDeployHookReporter, DynamoDbHookResults};
use tollgate_domain::memory::MemoryNotifier;
use tollgate_domain::rollback::hook::{HookChecks, HookResult, HookStatus, InsufficientData};

const DEPLOYMENT: &str = "d-9ZPLQX4KO";
const HOOK: &str = "eyJlbmNyeXB0ZWREYXRhIjoiY2hlY2tvdXQtc2VydmljZS1ob29rLWV4YW1wbGUifQ==";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap()
}

fn alarms(state: StateValue) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(|r| r.alarm_names() == ["checkout-5xx".to_string()])
        .then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name("checkout-5xx")
                        .state_value(state.clone())
                        .state_updated_timestamp(aws_smithy_types::DateTime::from_secs(1_795_183_800))
                        .build(),
                )
                .build()
        })
}

fn put_item_new() -> Rule {
    mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| {
            r.condition_expression() == Some("attribute_not_exists(pk)")
                && r.item().and_then(|i| i.get("pk")).and_then(|v| v.as_s().ok()) == Some(&format!("HOOK#{HOOK}"))
        })
        .then_output(|| PutItemOutput::builder().build())
}

fn put_status(
    status: LifecycleEventStatus,
) -> aws_smithy_mocks::RuleBuilder<
    aws_sdk_codedeploy::operation::put_lifecycle_event_hook_execution_status::PutLifecycleEventHookExecutionStatusInput,
    PutLifecycleEventHookExecutionStatusOutput,
    PutLifecycleEventHookExecutionStatusError,
> {
    mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status).match_requests(move |r| {
        r.deployment_id() == Some(DEPLOYMENT)
            && r.lifecycle_event_hook_execution_id() == Some(HOOK)
            && r.status() == Some(&status)
    })
}

async fn run(cloudwatch: &Rule, dynamodb: &Rule, codedeploy: &Rule) -> Result<HookReport, HookError> {
    let alarms = CloudWatchAlarms::new(mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, [cloudwatch]));
    let results = DynamoDbHookResults::new(
        mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [dynamodb]),
        "tollgate",
        400,
    );
    let reporter = CodeDeployHookReporter::new(mock_client!(aws_sdk_codedeploy, RuleMode::Sequential, [codedeploy]));
    let notifier = MemoryNotifier::new();
    let audit = tollgate_domain::memory::MemoryAuditLog::default();
    let probe = TcpHttpProbe;
    let ports = Ports {
        alarms: &alarms,
        probe: &probe,
        results: &results,
        reporter: &reporter,
        notifier: &notifier,
        audit: &audit,
    };
    let settings = Settings {
        checks: HookChecks {
            alarms: vec!["checkout-5xx".into()],
            insufficient_data: InsufficientData::Pass,
            probe: None,
            budget: Duration::from_secs(10),
        },
        place: Place {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
        },
        probe_retry: Duration::from_millis(10),
    };
    let event = json!({"DeploymentId": DEPLOYMENT, "LifecycleEventHookExecutionId": HOOK});
    handle(&event, &settings, &ports, None, now()).await
}

#[tokio::test]
async fn a_quiet_alarm_reports_succeeded() {
    let cw = alarms(StateValue::Ok);
    let ddb = put_item_new();
    let cd = put_status(LifecycleEventStatus::Succeeded).then_output(|| {
        PutLifecycleEventHookExecutionStatusOutput::builder()
            .lifecycle_event_hook_execution_id(HOOK)
            .build()
    });
    let r = run(&cw, &ddb, &cd).await.unwrap();
    assert_eq!((r.status, r.reported_now, r.recorded), ("Succeeded", true, true));
    assert_eq!((cw.num_calls(), ddb.num_calls(), cd.num_calls()), (1, 1, 1));
}

#[tokio::test]
async fn an_alarm_in_alarm_reports_failed() {
    let cw = alarms(StateValue::Alarm);
    let ddb = put_item_new();
    let cd = put_status(LifecycleEventStatus::Failed)
        .then_output(|| PutLifecycleEventHookExecutionStatusOutput::builder().build());
    let r = run(&cw, &ddb, &cd).await.unwrap();
    assert_eq!(r.status, "Failed");
    assert!(r.notified);
    assert_eq!(cd.num_calls(), 1);
}

#[tokio::test]
async fn a_duplicate_reports_the_recorded_status_even_if_the_alarm_recovered() {
    let cw = alarms(StateValue::Ok);
    let first = HookResult {
        deployment_id: DEPLOYMENT.into(),
        hook_execution_id: HOOK.into(),
        status: HookStatus::Failed,
        checks: vec![],
        decided_at: now(),
    };
    let stored = serde_json::to_string(&first).unwrap();
    let ddb = mock!(aws_sdk_dynamodb::Client::put_item).then_error(move || {
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .item("result", AttributeValue::S(stored.clone()))
                .build(),
        )
    });
    let cd = put_status(LifecycleEventStatus::Failed).then_error(|| {
        PutLifecycleEventHookExecutionStatusError::LifecycleEventAlreadyCompletedException(
            LifecycleEventAlreadyCompletedException::builder()
                .message("The lifecycle event has already completed")
                .build(),
        )
    });
    let r = run(&cw, &ddb, &cd).await.unwrap();
    assert_eq!(
        (r.status, r.duplicate, r.reported_now, r.notified),
        ("Failed", true, false, false)
    );
    assert_eq!(cd.num_calls(), 1);
}

#[tokio::test]
async fn codedeploy_refusing_the_status_is_a_non_retryable_error_naming_the_deployment() {
    let cw = alarms(StateValue::Ok);
    let ddb = put_item_new();
    let cd = put_status(LifecycleEventStatus::Succeeded).then_error(|| {
        PutLifecycleEventHookExecutionStatusError::InvalidLifecycleEventHookExecutionIdException(
            InvalidLifecycleEventHookExecutionIdException::builder()
                .message("The lifecycle event hook execution id is invalid")
                .build(),
        )
    });
    let err = run(&cw, &ddb, &cd).await.unwrap_err();
    assert!(err.to_string().contains(DEPLOYMENT), "{err}");
    assert_eq!(Diagnostic::from(err).error_type, "NonRetryable.Report");
    assert_eq!(cd.num_calls(), 1);
}
