//! The gate at the SDK's HTTP layer: the real CodePipeline, CloudWatch and DynamoDB adapters over mocked clients
//! (aws-smithy-mocks), showing the exact requests the gate makes and answers with. The policy file comes from an
//! in-memory artifact (reading a real zip from S3 with the job's credentials is tested in `tollgate-aws`), and the
//! timelines from the in-memory store.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::operation::describe_alarms::{DescribeAlarmsError, DescribeAlarmsOutput};
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::types::{MetricAlarm, MetricDataResult, StateValue, StatusCode};
use aws_sdk_codepipeline::operation::get_job_details::GetJobDetailsOutput;
use aws_sdk_codepipeline::operation::put_job_failure_result::{PutJobFailureResultInput, PutJobFailureResultOutput};
use aws_sdk_codepipeline::operation::put_job_success_result::{PutJobSuccessResultInput, PutJobSuccessResultOutput};
use aws_sdk_codepipeline::types::{ActionContext, FailureType, JobData, JobDetails, PipelineContext, StageContext};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{DateTime, Duration, Utc};
use gate::handler::{handle, GateReport, Ports};
use serde_json::{json, Value};
use tollgate_aws::alarm_tags::ResourceGroupsTaggingAlarms;
use tollgate_aws::cloudwatch::{CloudWatchAlarms, CloudWatchMetrics};
use tollgate_aws::codepipeline_jobs::CodePipelineJobs;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_domain::gate::{GateDecisions, TaggedAlarms};
use tollgate_domain::memory::{MemoryGateStore, MemoryPolicySource};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;

const JOB: &str = "3c9a5f0e-1b2d-4e6f-8a7b-9c0d1e2f3a4b";
const EXECUTION: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const POLICY: &str = "version: 1
name: production-gate
max_wait: 6h
alarms:
  names: [checkout-service-5xx]
bake:
  after_stage: Staging
  duration: 2h
  min_requests:
    namespace: AWS/ApplicationELB
    metric: RequestCount
    dimensions: {LoadBalancer: app/checkout/123}
    at_least: 1000
";

fn job_event(user_parameters: &str) -> Value {
    json!({"CodePipeline.job": {"id": JOB, "accountId": "111122223333", "data": {
        "actionConfiguration": {"configuration": {"FunctionName": "tollgate-gate", "UserParameters": user_parameters}},
        "inputArtifacts": [{"name": "SourceArtifact", "location": {"type": "S3", "s3Location":
            {"bucketName": "codepipeline-eu-west-1-111122223333", "objectKey": "checkout-service/SourceArti/abc"}}}],
        "artifactCredentials": {"accessKeyId": "ASIAJOB", "secretAccessKey": "job-secret", "sessionToken": "job-token"}
    }}})
}

fn get_job_details() -> Rule {
    mock!(aws_sdk_codepipeline::Client::get_job_details)
        .match_requests(|r| r.job_id() == Some(JOB))
        .then_output(|| {
            let context = PipelineContext::builder()
                .pipeline_name("checkout-service")
                .stage(StageContext::builder().name("Production").build())
                .action(ActionContext::builder().name("Gate").build())
                .pipeline_arn("arn:aws:codepipeline:eu-west-1:111122223333:checkout-service")
                .pipeline_execution_id(EXECUTION)
                .build();
            GetJobDetailsOutput::builder()
                .job_details(
                    JobDetails::builder()
                        .id(JOB)
                        .account_id("111122223333")
                        .data(JobData::builder().pipeline_context(context).build())
                        .build(),
                )
                .build()
        })
}

fn describe_alarms(state: StateValue, since: DateTime<Utc>) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(|r| r.alarm_names() == ["checkout-service-5xx"])
        .then_output(move || {
            DescribeAlarmsOutput::builder()
                .metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name("checkout-service-5xx")
                        .state_value(state.clone())
                        .state_transitioned_timestamp(aws_smithy_types::DateTime::from_secs(since.timestamp()))
                        .state_updated_timestamp(aws_smithy_types::DateTime::from_secs(since.timestamp()))
                        .build(),
                )
                .build()
        })
}

/// GetMetricData from the stage's success to now, for the policy's metric.
fn get_metric_data(from: DateTime<Utc>, total: f64) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(move |r| {
            let stat = r.metric_data_queries()[0].metric_stat().unwrap();
            let metric = stat.metric().unwrap();
            r.start_time().map(|t| t.secs()) == Some(from.timestamp())
                && r.end_time().map(|t| t.secs()) == Some(now().timestamp())
                && metric.namespace() == Some("AWS/ApplicationELB")
                && metric.metric_name() == Some("RequestCount")
                && metric.dimensions()[0].name() == Some("LoadBalancer")
                && metric.dimensions()[0].value() == Some("app/checkout/123")
                && stat.stat() == Some("Sum")
        })
        .then_output(move || {
            GetMetricDataOutput::builder()
                .metric_data_results(
                    MetricDataResult::builder()
                        .id("bake")
                        .values(total)
                        .status_code(StatusCode::Complete)
                        .build(),
                )
                .build()
        })
}

type Seen<T> = Arc<Mutex<Vec<T>>>;

fn put_success(seen: Seen<PutJobSuccessResultInput>) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_job_success_result)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.clone());
            true
        })
        .then_output(|| PutJobSuccessResultOutput::builder().build())
}

fn put_failure(seen: Seen<PutJobFailureResultInput>) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.clone());
            true
        })
        .then_output(|| PutJobFailureResultOutput::builder().build())
}

async fn timelines_with_staging_succeeded(at: Option<DateTime<Utc>>) -> MemoryStore {
    let store = MemoryStore::new();
    let (state, time) = match at {
        Some(t) => ("SUCCEEDED", t),
        None => ("STARTED", now() - Duration::minutes(5)),
    };
    let body = json!({
        "version": "0", "id": "e-1", "detail-type": "CodePipeline Stage Execution State Change",
        "source": "aws.codepipeline", "account": "111122223333", "time": time.to_rfc3339(), "region": "eu-west-1",
        "resources": [], "detail": {"pipeline": "checkout-service", "execution-id": EXECUTION, "stage": "Staging",
        "state": state, "version": 1}
    });
    store
        .record(&parse_event(body.to_string().as_bytes()).unwrap())
        .await
        .unwrap();
    store
}

/// Runs the gate with mocked CodePipeline and CloudWatch clients.
async fn run(
    policy: &str,
    user_parameters: &str,
    codepipeline_rules: &[&Rule],
    cloudwatch_rules: &[&Rule],
    timelines: &MemoryStore,
    decisions: &dyn GateDecisions,
) -> GateReport {
    run_with_tagging(
        policy,
        user_parameters,
        codepipeline_rules,
        cloudwatch_rules,
        &[],
        timelines,
        decisions,
    )
    .await
}

/// Runs the gate with mocked CodePipeline, CloudWatch and Resource Groups Tagging clients.
async fn run_with_tagging(
    policy: &str,
    user_parameters: &str,
    codepipeline_rules: &[&Rule],
    cloudwatch_rules: &[&Rule],
    tagging_rules: &[&Rule],
    timelines: &MemoryStore,
    decisions: &dyn GateDecisions,
) -> GateReport {
    let codepipeline = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, codepipeline_rules);
    let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, cloudwatch_rules);
    let tagging = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::Sequential, tagging_rules);
    let jobs = CodePipelineJobs::new(codepipeline);
    let alarms = TaggedAlarms::new(
        ResourceGroupsTaggingAlarms::new(tagging),
        CloudWatchAlarms::new(cloudwatch.clone()),
    );
    let metrics = CloudWatchMetrics::new(cloudwatch);
    let policies = MemoryPolicySource::new().with_file("policies/production.yaml", policy);
    let approvals = MemoryGateStore::new();
    let notifier = MemoryNotifier::new();
    let audit = tollgate_domain::memory::MemoryAuditLog::default();
    let watches = tollgate_domain::memory::MemoryAlarmWatches::new();
    let ports = Ports {
        jobs: &jobs,
        policies: &policies,
        alarms: &alarms,
        metrics: &metrics,
        timelines,
        decisions,
        approvals: &approvals,
        controls: &approvals,
        leases: &approvals,
        watches: &watches,
        audit: &audit,
        notifier: &notifier,
        baselines: &tollgate_domain::gate::policy::MemoryBaselines::new(),
        pipeline_tags: &tollgate_domain::gate::policy::MemoryPipelineTags::new(&[]),
        effective: &tollgate_domain::memory::MemoryEffectivePolicies::new(),
    };
    handle(&job_event(user_parameters), &ports, now()).await.unwrap()
}

#[tokio::test]
async fn a_passing_gate_sends_put_job_success_result_with_the_output_variables() {
    let succeeded = now() - Duration::hours(3);
    let timelines = timelines_with_staging_succeeded(Some(succeeded)).await;
    let (details, alarms, metric) = (
        get_job_details(),
        describe_alarms(StateValue::Ok, now() - Duration::days(1)),
        get_metric_data(succeeded, 1500.0),
    );
    let seen: Seen<PutJobSuccessResultInput> = Default::default();
    let success = put_success(seen.clone());
    let store = MemoryGateStore::new();
    let report = run(
        POLICY,
        "production",
        &[&details, &success],
        &[&alarms, &metric],
        &timelines,
        &store,
    )
    .await;
    assert_eq!(report.outcome, "pass");
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let request = &sent[0];
    assert_eq!(request.job_id(), Some(JOB));
    assert_eq!(request.continuation_token(), None);
    let variables = request.output_variables().unwrap();
    assert_eq!(variables.len(), 2);
    assert_eq!(variables["TOLLGATE_DECISION_ID"], JOB);
    assert_eq!(variables["TOLLGATE_OUTCOME"], "PASS");
    let execution = request.execution_details().unwrap();
    assert_eq!(execution.external_execution_id(), Some(JOB));
    assert_eq!(execution.summary(), Some("passed: all 3 checks pass"));
    assert_eq!((details.num_calls(), alarms.num_calls(), metric.num_calls()), (1, 1, 1));
}

#[tokio::test]
async fn a_waiting_gate_sends_put_job_success_result_with_the_continuation_token() {
    let timelines = timelines_with_staging_succeeded(None).await;
    let (details, alarms) = (
        get_job_details(),
        describe_alarms(StateValue::Ok, now() - Duration::days(1)),
    );
    let seen: Seen<PutJobSuccessResultInput> = Default::default();
    let success = put_success(seen.clone());
    let store = MemoryGateStore::new();
    let report = run(
        POLICY,
        "production",
        &[&details, &success],
        &[&alarms],
        &timelines,
        &store,
    )
    .await;
    assert_eq!(report.outcome, "wait");
    let sent = seen.lock().unwrap().clone();
    let request = &sent[0];
    assert_eq!(
        request.continuation_token(),
        Some(format!(r#"{{"v":1,"f":{},"n":1,"d":["{JOB}"]}}"#, now().timestamp()).as_str())
    );
    assert_eq!(
        request.output_variables(),
        None,
        "CodePipeline refuses output variables with a token"
    );
    assert!(
        request
            .execution_details()
            .unwrap()
            .summary()
            .unwrap()
            .starts_with("waiting: waiting for bake (stage Staging has not succeeded yet"),
        "{request:?}"
    );
}

#[tokio::test]
async fn a_failing_gate_sends_put_job_failure_result_with_the_explanation() {
    let timelines = timelines_with_staging_succeeded(Some(now() - Duration::hours(3))).await;
    let (details, alarms) = (
        get_job_details(),
        describe_alarms(StateValue::Alarm, now() - Duration::minutes(18)),
    );
    let metric = get_metric_data(now() - Duration::hours(3), 1500.0);
    let seen: Seen<PutJobFailureResultInput> = Default::default();
    let failure = put_failure(seen.clone());
    let store = MemoryGateStore::new();
    run(
        POLICY,
        "production",
        &[&details, &failure],
        &[&alarms, &metric],
        &timelines,
        &store,
    )
    .await;
    let sent = seen.lock().unwrap().clone();
    let d = sent[0].failure_details().unwrap();
    assert_eq!(sent[0].job_id(), Some(JOB));
    assert_eq!(d.r#type(), &FailureType::JobFailed);
    assert_eq!(d.external_execution_id(), Some(JOB));
    assert_eq!(
        d.message(),
        "FAIL: failed: alarms (alarm checkout-service-5xx in ALARM since 14:10 UTC)\n  \
         ✗ alarms       alarm checkout-service-5xx in ALARM since 14:10 UTC\n  \
         ✓ bake         bake time 3h of 2h with 1500 RequestCount (at least 1000)\n  \
         ✓ max_wait     waited 0s of 6h; gives up at 20:28 UTC\n"
    );
}

#[tokio::test]
async fn an_aws_error_on_describe_alarms_fails_closed_saying_so() {
    let timelines = timelines_with_staging_succeeded(Some(now() - Duration::hours(3))).await;
    let details = get_job_details();
    let alarms = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_error(|| {
        DescribeAlarmsError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("User is not authorized to perform: cloudwatch:DescribeAlarms")
                .build(),
        )
    });
    let metric = get_metric_data(now() - Duration::hours(3), 1500.0);
    let seen: Seen<PutJobFailureResultInput> = Default::default();
    let failure = put_failure(seen.clone());
    let store = MemoryGateStore::new();
    run(
        POLICY,
        "production",
        &[&details, &failure],
        &[&alarms, &metric],
        &timelines,
        &store,
    )
    .await;
    let sent = seen.lock().unwrap().clone();
    let message = sent[0].failure_details().unwrap().message();
    assert!(
        message.starts_with(
            "FAIL: failed: alarms (could not evaluate: cannot read alarms: CloudWatch DescribeAlarms failed"
        ),
        "{message}"
    );
    assert!(
        message.contains("AccessDenied") && message.contains("failing closed (on_error: fail_closed)"),
        "{message}"
    );
}

#[tokio::test]
async fn invalid_user_parameters_and_an_invalid_policy_fail_the_job_naming_the_field() {
    let timelines = MemoryStore::new();
    let details = get_job_details();
    let alarms = describe_alarms(StateValue::Ok, now());
    let seen: Seen<PutJobFailureResultInput> = Default::default();
    let failure = put_failure(seen.clone());
    let store = MemoryGateStore::new();
    run(
        POLICY,
        r#"{"policy": "production", "overides": {}}"#,
        &[&details, &failure],
        &[&alarms],
        &timelines,
        &store,
    )
    .await;
    let bad_policy = POLICY.replace("duration: 2h", "duration: 2 hours");
    let store = MemoryGateStore::new();
    run(
        &bad_policy,
        "production",
        &[&details, &failure],
        &[&alarms],
        &timelines,
        &store,
    )
    .await;

    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    for request in &sent {
        assert_eq!(
            request.failure_details().unwrap().r#type(),
            &FailureType::ConfigurationError
        );
    }
    assert_eq!(
        sent[0].failure_details().unwrap().message(),
        "UserParameters:1:35: overides: unknown field `overides`, expected `policy` or `overrides`"
    );
    let message = sent[1].failure_details().unwrap().message();
    assert!(
        message.starts_with("policies/production.yaml:8:13: bake.duration: \"2 hours\" is not a duration"),
        "{message}"
    );
    assert_eq!(
        alarms.num_calls(),
        0,
        "no fact is gathered for a gate that cannot be configured"
    );
}

#[tokio::test]
async fn the_same_job_twice_is_answered_the_same_with_one_decision_recorded() {
    let timelines = timelines_with_staging_succeeded(Some(now() - Duration::hours(3))).await;
    let (details, alarms) = (
        get_job_details(),
        describe_alarms(StateValue::Alarm, now() - Duration::minutes(18)),
    );
    let metric = get_metric_data(now() - Duration::hours(3), 1500.0);
    let seen: Seen<PutJobFailureResultInput> = Default::default();
    let failure = put_failure(seen.clone());

    // DynamoDB: the first write creates the item; the retry's write fails its condition and gets the item back.
    let written: Arc<Mutex<Option<aws_sdk_dynamodb::operation::put_item::PutItemInput>>> = Default::default();
    let keep = written.clone();
    let first_put = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(move |r| {
            let item = r.item().unwrap();
            let ok = r.condition_expression() == Some("attribute_not_exists(pk)")
                && item["pk"].as_s().unwrap() == &format!("GATEJOB#{JOB}")
                && item["sk"].as_s().unwrap() == "DECISION";
            if ok {
                keep.lock().unwrap().get_or_insert(r.clone());
            }
            ok
        })
        .then_output(|| PutItemOutput::builder().build());
    let stored = written.clone();
    let duplicate_put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(move || {
        // As DynamoDB holds it by then: marked notified by the first invocation.
        let mut item = stored.lock().unwrap().clone().unwrap().item().cloned().unwrap();
        item.insert("notified".into(), aws_sdk_dynamodb::types::AttributeValue::Bool(true));
        let item = Some(item);
        PutItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .message("exists")
                .set_item(item)
                .build(),
        )
    });
    let mark = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| aws_sdk_dynamodb::operation::update_item::UpdateItemOutput::builder().build());
    let dynamodb = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        [&first_put, &mark, &duplicate_put]
    );
    let store = DynamoDbGateStore::new(dynamodb, "tollgate", 400);

    let first = run(
        POLICY,
        "production",
        &[&details, &failure],
        &[&alarms, &metric],
        &timelines,
        &store,
    )
    .await;
    let again = run(
        POLICY,
        "production",
        &[&details, &failure],
        &[&alarms, &metric],
        &timelines,
        &store,
    )
    .await;
    assert_eq!((first.duplicate, again.duplicate), (false, true));
    assert_eq!((first_put.num_calls(), duplicate_put.num_calls()), (1, 1));
    assert_eq!(mark.num_calls(), 1, "announced and marked once");
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the retry sends the recorded answer");
}

// ------------------------------------------------------------------ alarms selected by tag

const TAGGED_POLICY: &str = "version: 1
name: production-gate
max_wait: 6h
alarms:
  names: [checkout-service-5xx]
  tags: {service: checkout, env: production}
";

fn get_resources(pages: Vec<(Vec<&'static str>, &'static str)>) -> Vec<Rule> {
    let mut expected_token: Option<&'static str> = None;
    pages
        .into_iter()
        .map(|(names, next)| {
            let token = expected_token;
            expected_token = Some(next);
            mock!(aws_sdk_resourcegroupstagging::Client::get_resources)
                .match_requests(move |r| {
                    let filters: Vec<(Option<&str>, Vec<&str>)> = r
                        .tag_filters()
                        .iter()
                        .map(|f| (f.key(), f.values().iter().map(String::as_str).collect()))
                        .collect();
                    r.resource_type_filters() == ["cloudwatch:alarm"]
                        && filters == [(Some("env"), vec!["production"]), (Some("service"), vec!["checkout"])]
                        && r.resources_per_page() == Some(100)
                        && r.pagination_token() == token
                })
                .then_output(move || {
                    let mut out = GetResourcesOutput::builder().pagination_token(next);
                    for n in &names {
                        out = out.resource_tag_mapping_list(
                            ResourceTagMapping::builder()
                                .resource_arn(format!("arn:aws:cloudwatch:eu-west-1:111122223333:alarm:{n}"))
                                .build(),
                        );
                    }
                    out.build()
                })
        })
        .collect()
}

#[tokio::test]
async fn alarms_selected_by_tag_are_found_with_get_resources_then_read_with_describe_alarms() {
    let timelines = MemoryStore::new();
    let pages = get_resources(vec![
        (vec!["checkout-db-cpu"], "next-page"),
        (vec!["checkout-queue-depth"], ""),
    ]);
    let since = aws_smithy_types::DateTime::from_secs((now() - Duration::days(1)).timestamp());
    let alarms = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(|r| {
            r.alarm_names() == ["checkout-service-5xx", "checkout-db-cpu", "checkout-queue-depth"]
                && r.next_token().is_none()
        })
        .then_output(move || {
            let mut out = DescribeAlarmsOutput::builder();
            for name in ["checkout-service-5xx", "checkout-db-cpu", "checkout-queue-depth"] {
                out = out.metric_alarms(
                    MetricAlarm::builder()
                        .alarm_name(name)
                        .state_value(StateValue::Ok)
                        .state_transitioned_timestamp(since)
                        .state_updated_timestamp(since)
                        .build(),
                );
            }
            out.build()
        });
    let details = get_job_details();
    let seen: Seen<PutJobSuccessResultInput> = Default::default();
    let success = put_success(seen.clone());
    let store = MemoryGateStore::new();
    let report = run_with_tagging(
        TAGGED_POLICY,
        "production",
        &[&details, &success],
        &[&alarms],
        &[&pages[0], &pages[1]],
        &timelines,
        &store,
    )
    .await;
    assert_eq!(report.outcome, "pass");
    assert_eq!(
        (pages[0].num_calls(), pages[1].num_calls(), alarms.num_calls()),
        (1, 1, 1)
    );
    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].output_variables().unwrap()["TOLLGATE_OUTCOME"], "PASS");
    let decision = store.decision(JOB).await.unwrap().unwrap();
    assert!(decision.explanation.contains("✓ alarms"), "{}", decision.explanation);
}

#[tokio::test]
async fn tags_that_select_no_alarm_fail_the_job_saying_so_without_reading_alarm_states() {
    let timelines = MemoryStore::new();
    let pages = get_resources(vec![(vec![], "")]);
    let alarms = describe_alarms(StateValue::Ok, now() - Duration::days(1));
    let details = get_job_details();
    let seen: Seen<PutJobFailureResultInput> = Default::default();
    let failure = put_failure(seen.clone());
    let store = MemoryGateStore::new();
    let report = run_with_tagging(
        TAGGED_POLICY,
        "production",
        &[&details, &failure],
        &[&alarms],
        &[&pages[0]],
        &timelines,
        &store,
    )
    .await;
    assert_eq!(report.outcome, "fail");
    assert_eq!(alarms.num_calls(), 0);
    let sent = seen.lock().unwrap().clone();
    let failure = sent[0].failure_details().unwrap();
    assert_eq!(failure.r#type(), &FailureType::JobFailed);
    assert!(
        failure.message().contains(
            "! alarms       could not evaluate: cannot read alarms: no CloudWatch alarm carries the tags env=production, \
             service=checkout (tag:GetResources found none in this account and region); failing closed (on_error: fail_closed)"
        ),
        "{}",
        failure.message()
    );
}
