//! The changeset action at the SDK's HTTP layer: the real CloudFormation and CodePipeline adapters over mocked clients
//! (aws-smithy-mocks), showing the exact change-set and PutJob*Result requests of each scenario, including AWS
//! refusing. Change sets come from the realistic DescribeChangeSet responses in events/changeset/; the template from
//! an in-memory artifact (reading a zip from S3 with the job's credentials is tested in `tollgate-aws`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_cloudformation::operation::create_change_set::{CreateChangeSetError, CreateChangeSetOutput};
use aws_sdk_cloudformation::operation::describe_change_set::{DescribeChangeSetError, DescribeChangeSetOutput};
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::{DescribeStacksError, DescribeStacksOutput};
use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput;
use aws_sdk_cloudformation::types::error::{ChangeSetNotFoundException, InsufficientCapabilitiesException};
use aws_sdk_cloudformation::types::{
    Capability, Change, ChangeSetStatus, ChangeSetType, ChangeType, ExecutionStatus, ResourceAttribute,
    ResourceChangeDetail, ResourceStatus, ResourceTargetDefinition, Stack, StackEvent, StackStatus,
};
use aws_sdk_codepipeline::operation::get_job_details::GetJobDetailsOutput;
use aws_sdk_codepipeline::operation::put_job_failure_result::{PutJobFailureResultError, PutJobFailureResultOutput};
use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
use aws_sdk_codepipeline::types::error::InvalidJobStateException;
use aws_sdk_codepipeline::types::{ActionContext, FailureType, JobData, JobDetails, PipelineContext, StageContext};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use changeset::handler::{handle, ChangesetReport, Ports};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use tollgate_aws::changeset::CloudFormationChangeSets;
use tollgate_aws::codepipeline_jobs::CodePipelineJobs;
use tollgate_domain::audit::{action, AuditLog};
use tollgate_domain::gate::policy::ApprovalDecision;
use tollgate_domain::gate::{
    ApprovalKey, ApprovalRecord, ApprovalRecords, ArtifactCredentials, ArtifactLocation, FactError, PolicySource,
    PolicyText,
};
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryNotifier;
use tollgate_domain::record::ports::StoreError;
use tollgate_domain::rollback::changeset::{parse_describe_change_set, ChangeSetDescription};
use tollgate_domain::tell::notify::NotificationKind;

const JOB: &str = "3c9a5f0e-1b2d-4e6f-8a7b-9c0d1e2f3a4b";
const EXECUTION: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";
const CHANGE_SET: &str = "tollgate-ed085d02-372a-4b03-ba8a-c1df62a84ced";
const STACK: &str = "checkout-infra";
const TEMPLATE: &str = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap()
}

fn params() -> String {
    json!({"stack": STACK, "template": "infra/stack.yaml", "parameters": "infra/production.json",
           "capabilities": ["CAPABILITY_IAM"]})
    .to_string()
}

fn job_event(user_parameters: &str, token: Option<&str>) -> Value {
    let mut job = json!({"id": JOB, "accountId": "111122223333", "data": {
        "actionConfiguration": {"configuration": {"FunctionName": "tollgate-changeset", "UserParameters": user_parameters}},
        "inputArtifacts": [{"name": "SourceArtifact", "location": {"type": "S3", "s3Location":
            {"bucketName": "codepipeline-eu-west-1-111122223333", "objectKey": "checkout-service/SourceArti/abc"}}}],
        "artifactCredentials": {"accessKeyId": "ASIAJOB", "secretAccessKey": "job-secret", "sessionToken": "job-token"}
    }});
    if let Some(t) = token {
        job["data"]["continuationToken"] = json!(t);
    }
    json!({ "CodePipeline.job": job })
}

fn token(phase: &str) -> String {
    format!(
        r#"{{"v":1,"p":"{phase}","cs":"{CHANGE_SET}","f":{}}}"#,
        now().timestamp()
    )
}

// ---------------------------------------------------------------------------------------------------------------
// In-memory ports.

#[derive(Default)]
struct Artifact(BTreeMap<String, String>);

#[async_trait]
impl PolicySource for Artifact {
    async fn read_policy(
        &self,
        artifact: &ArtifactLocation,
        _: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError> {
        candidates
            .iter()
            .find_map(|c| {
                self.0.get(c).map(|t| PolicyText {
                    path: c.clone(),
                    text: t.clone(),
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

#[derive(Default)]
struct Approvals(Mutex<Vec<ApprovalRecord>>);

#[async_trait]
impl ApprovalRecords for Approvals {
    async fn record_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        self.0.lock().unwrap().push(a.clone());
        Ok(())
    }

    async fn latest_approval(&self, key: &ApprovalKey) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|a| &a.key == key)
            .max_by_key(|a| a.at)
            .cloned())
    }
}

struct World {
    artifact: Artifact,
    approvals: Approvals,
    audit: MemoryAuditLog,
    notifier: MemoryNotifier,
    timelines: tollgate_domain::memory::MemoryStore,
}

impl World {
    fn new() -> World {
        let mut files = BTreeMap::new();
        files.insert("infra/stack.yaml".to_string(), TEMPLATE.to_string());
        files.insert(
            "infra/production.json".to_string(),
            r#"{"Parameters": {"Environment": "production"}}"#.to_string(),
        );
        World {
            artifact: Artifact(files),
            approvals: Approvals::default(),
            audit: MemoryAuditLog::new(),
            notifier: MemoryNotifier::new(),
            timelines: tollgate_domain::memory::MemoryStore::new(),
        }
    }

    async fn run(&self, event: &Value, cfn: &[&Rule], codepipeline: &[&Rule]) -> ChangesetReport {
        let cfn = CloudFormationChangeSets::new(mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, cfn));
        let jobs = CodePipelineJobs::new(mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, codepipeline));
        let ports = Ports {
            jobs: &jobs,
            artifacts: &self.artifact,
            stacks: &cfn,
            approvals: &self.approvals,
            audit: &self.audit,
            notifier: &self.notifier,
            timelines: &self.timelines,
        };
        handle(event, &ports, now()).await.unwrap()
    }

    async fn audit_actions(&self) -> Vec<String> {
        let scope = "pipeline:111122223333/eu-west-1/checkout-service";
        let entries = self.audit.entries(scope).await.unwrap();
        entries.into_iter().map(|e| e.action).collect()
    }

    fn approve(&self, decision: ApprovalDecision, at: DateTime<Utc>) {
        self.approvals.0.lock().unwrap().push(ApprovalRecord {
            key: ApprovalKey {
                account: "111122223333".into(),
                region: "eu-west-1".into(),
                pipeline: "checkout-service".into(),
                execution_id: EXECUTION.into(),
                stage: "Infrastructure".into(),
            },
            principal_arn: "arn:aws:sts::111122223333:assumed-role/Releaser/alice".into(),
            groups: vec![],
            decision,
            reason: Some("reviewed the role change".into()),
            at,
        });
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Canned AWS answers.

fn get_job_details() -> Rule {
    mock!(aws_sdk_codepipeline::Client::get_job_details)
        .match_requests(|r| r.job_id() == Some(JOB))
        .then_output(|| {
            let context = PipelineContext::builder()
                .pipeline_name("checkout-service")
                .stage(StageContext::builder().name("Infrastructure").build())
                .action(ActionContext::builder().name("ReviewChangeSet").build())
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

fn success(expected_token: Option<String>) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_job_success_result)
        .match_requests(move |r| {
            r.job_id() == Some(JOB)
                && r.continuation_token() == expected_token.as_deref()
                && r.execution_details().and_then(|d| d.external_execution_id()) == Some(CHANGE_SET)
        })
        .then_output(|| PutJobSuccessResultOutput::builder().build())
}

/// A failure whose message contains every one of `needles`.
fn failure(kind: FailureType, needles: &'static [&'static str]) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .match_requests(move |r| {
            let d = r.failure_details().unwrap();
            let ok = r.job_id() == Some(JOB) && d.r#type() == &kind && needles.iter().all(|n| d.message().contains(n));
            if !ok {
                eprintln!("unexpected failure message: {:?} {}", d.r#type(), d.message());
            }
            ok
        })
        .then_output(|| PutJobFailureResultOutput::builder().build())
}

fn fixture(name: &str) -> ChangeSetDescription {
    let path = format!("{}/../../events/changeset/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_describe_change_set(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The SDK's DescribeChangeSet output for a fixture, as CloudFormation sends it.
fn describe_output(d: &ChangeSetDescription, execution: &str) -> DescribeChangeSetOutput {
    let mut b = DescribeChangeSetOutput::builder()
        .change_set_name(&d.name)
        .set_change_set_id(d.id.clone())
        .set_stack_id(d.stack_id.clone())
        .stack_name(STACK)
        .status(ChangeSetStatus::from(d.status.as_str()))
        .set_status_reason(d.status_reason.clone())
        .execution_status(ExecutionStatus::from(execution))
        .creation_time(aws_smithy_types::DateTime::from_secs(
            d.created_at.map(|t| t.timestamp()).unwrap_or(0),
        ));
    for c in &d.changes {
        let mut rc = aws_sdk_cloudformation::types::ResourceChange::builder()
            .action(aws_sdk_cloudformation::types::ChangeAction::from(c.action.as_str()))
            .logical_resource_id(&c.logical_id)
            .set_physical_resource_id(c.physical_id.clone())
            .resource_type(&c.resource_type)
            .set_replacement(
                c.replacement
                    .map(|r| aws_sdk_cloudformation::types::Replacement::from(format!("{r:?}").as_str())),
            );
        for s in &c.scope {
            rc = rc.scope(ResourceAttribute::from(s.as_str()));
        }
        for d in &c.details {
            let mut t = ResourceTargetDefinition::builder().set_name(d.name.clone());
            if let Some(a) = &d.attribute {
                t = t.attribute(ResourceAttribute::from(a.as_str()));
            }
            if let Some(r) = &d.requires_recreation {
                t = t.requires_recreation(aws_sdk_cloudformation::types::RequiresRecreation::from(r.as_str()));
            }
            rc = rc.details(ResourceChangeDetail::builder().target(t.build()).build());
        }
        b = b.changes(
            Change::builder()
                .r#type(ChangeType::Resource)
                .resource_change(rc.build())
                .build(),
        );
    }
    b.build()
}

fn describe(d: ChangeSetDescription, execution: &'static str) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .match_requests(|r| r.stack_name() == Some(STACK) && r.change_set_name() == Some(CHANGE_SET))
        .then_output(move || describe_output(&d, execution))
}

fn stack(status: StackStatus) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .match_requests(|r| r.stack_name() == Some(STACK))
        .then_output(move || {
            DescribeStacksOutput::builder()
                .stacks(
                    Stack::builder()
                        .stack_id("arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-infra/0f1e")
                        .stack_name(STACK)
                        .stack_status(status.clone())
                        .build(),
                )
                .build()
        })
}

fn execute() -> Rule {
    mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .match_requests(|r| {
            r.stack_name() == Some(STACK)
                && r.change_set_name() == Some(CHANGE_SET)
                && r.client_request_token() == Some(CHANGE_SET)
        })
        .then_output(|| ExecuteChangeSetOutput::builder().build())
}

// ---------------------------------------------------------------------------------------------------------------
// Creating.

#[tokio::test]
async fn the_first_invocation_creates_an_update_change_set_and_waits() {
    let w = World::new();
    let not_found = mock!(aws_sdk_cloudformation::Client::describe_change_set).then_error(|| {
        DescribeChangeSetError::ChangeSetNotFoundException(ChangeSetNotFoundException::builder().build())
    });
    let stack = stack(StackStatus::UpdateComplete);
    let create = mock!(aws_sdk_cloudformation::Client::create_change_set)
        .match_requests(|r| {
            r.stack_name() == Some(STACK)
                && r.change_set_name() == Some(CHANGE_SET)
                && r.client_token() == Some(CHANGE_SET)
                && r.change_set_type() == Some(&ChangeSetType::Update)
                && r.template_body() == Some(TEMPLATE)
                && r.capabilities() == [Capability::CapabilityIam]
                && r.parameters().len() == 1
                && r.parameters()[0].parameter_key() == Some("Environment")
                && r.parameters()[0].parameter_value() == Some("production")
        })
        .then_output(|| CreateChangeSetOutput::builder().id("arn:cs").build());
    let jobs = get_job_details();
    let answer = success(Some(token("create")));
    let r = w
        .run(
            &job_event(&params(), None),
            &[&not_found, &stack, &create],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!(r.outcome, "wait");
    assert_eq!((create.num_calls(), answer.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_stack_that_does_not_exist_gets_a_create_change_set() {
    let w = World::new();
    let not_found = mock!(aws_sdk_cloudformation::Client::describe_change_set).then_error(|| {
        DescribeChangeSetError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack [checkout-infra] does not exist")
                .build(),
        )
    });
    let no_stack = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(|| {
        DescribeStacksError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack with id checkout-infra does not exist")
                .build(),
        )
    });
    let create = mock!(aws_sdk_cloudformation::Client::create_change_set)
        .match_requests(|r| r.change_set_type() == Some(&ChangeSetType::Create))
        .then_output(|| CreateChangeSetOutput::builder().id("arn:cs").build());
    let jobs = get_job_details();
    let answer = success(Some(token("create")));
    let r = w
        .run(
            &job_event(&params(), None),
            &[&not_found, &no_stack, &create],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!(r.outcome, "wait");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn cloudformation_refusing_the_change_set_fails_the_job_with_its_words() {
    let w = World::new();
    let not_found = mock!(aws_sdk_cloudformation::Client::describe_change_set).then_error(|| {
        DescribeChangeSetError::ChangeSetNotFoundException(ChangeSetNotFoundException::builder().build())
    });
    let stack = stack(StackStatus::UpdateComplete);
    let refused = mock!(aws_sdk_cloudformation::Client::create_change_set).then_error(|| {
        CreateChangeSetError::InsufficientCapabilitiesException(
            InsufficientCapabilitiesException::builder()
                .message("Requires capabilities : [CAPABILITY_NAMED_IAM]")
                .build(),
        )
    });
    let jobs = get_job_details();
    let answer = failure(FailureType::JobFailed, &["CreateChangeSet", "CAPABILITY_NAMED_IAM"]);
    let r = w
        .run(
            &job_event(&params(), None),
            &[&not_found, &stack, &refused],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!(r.outcome, "failed");
    assert_eq!(answer.num_calls(), 1);
}

#[tokio::test]
async fn bad_user_parameters_fail_the_job_naming_the_field_without_touching_cloudformation() {
    let w = World::new();
    let any_cfn = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| DescribeChangeSetOutput::builder().build());
    let answer = failure(FailureType::ConfigurationError, &["`policy.iam`"]);
    let bad = r#"{"stack": "checkout-infra", "template": "t.yaml", "policy": {"iam": "sometimes"}}"#;
    let r = w.run(&job_event(bad, None), &[&any_cfn], &[&answer]).await;
    assert_eq!(r.outcome, "failed");
    assert_eq!((any_cfn.num_calls(), answer.num_calls()), (0, 1));
}

#[tokio::test]
async fn a_change_set_without_changes_succeeds_with_nothing_to_execute() {
    let w = World::new();
    let mut d = fixture("harmless.json");
    d.status = "FAILED".into();
    d.status_reason = Some(
        "The submitted information didn't contain changes. Submit different information to create a change set.".into(),
    );
    d.changes.clear();
    let describe = describe(d, "UNAVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = success(None);
    let r = w
        .run(
            &job_event(&params(), Some(&token("create"))),
            &[&describe, &execute],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!(r.outcome, "succeeded");
    assert!(r.summary.contains("change nothing"), "{}", r.summary);
    assert_eq!((execute.num_calls(), answer.num_calls()), (0, 1));
}

// ---------------------------------------------------------------------------------------------------------------
// Reviewing.

#[tokio::test]
async fn a_harmless_change_set_is_executed_and_the_stack_followed() {
    let w = World::new();
    let describe = describe(fixture("harmless.json"), "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = success(Some(token("execute")));
    let r = w
        .run(
            &job_event(&params(), Some(&token("create"))),
            &[&describe, &execute],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!((r.outcome, r.verdict), ("wait", Some("execute")));
    assert_eq!((execute.num_calls(), answer.num_calls()), (1, 1));
    assert_eq!(w.audit_actions().await, vec![action::CHANGESET_EXECUTE.to_string()]);
    assert!(w.notifier.sent().is_empty());
}

#[tokio::test]
async fn an_iam_change_without_approval_fails_with_the_report_the_link_and_how_to_approve_once() {
    let w = World::new();
    let describe = describe(fixture("iam.json"), "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = failure(
        FailureType::JobFailed,
        &[
            "APPROVAL REQUIRED",
            "OrdersFunctionRole (AWS::IAM::Role) changes Policies",
            "https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/changesets/changes",
            "tollgate approve --pipeline checkout-service --execution ed085d02-372a-4b03-ba8a-c1df62a84ced --stage Infrastructure",
        ],
    );
    for _ in 0..2 {
        let r = w
            .run(
                &job_event(&params(), Some(&token("create"))),
                &[&describe, &execute],
                &[&jobs, &answer],
            )
            .await;
        assert_eq!((r.outcome, r.verdict), ("failed", Some("approve")));
    }
    assert_eq!((execute.num_calls(), answer.num_calls()), (0, 2));
    // The duplicate invocation neither records nor announces the review again.
    assert_eq!(w.audit_actions().await, vec![action::CHANGESET_REVIEW.to_string()]);
    let sent = w.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::ApprovalNeeded);
    assert!(
        sent[0].lines.iter().any(|l| l.contains("ReportsBucketPolicy")),
        "{:?}",
        sent[0].lines
    );
}

#[tokio::test]
async fn an_approval_recorded_after_the_change_set_lets_a_retry_execute_it() {
    let w = World::new();
    let d = fixture("iam.json");
    w.approve(ApprovalDecision::Approve, d.created_at.unwrap() + Duration::minutes(10));
    let describe = describe(d, "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = success(Some(token("execute")));
    // A retry of the action is a new job without a token: it finds the same change set by name.
    let r = w
        .run(&job_event(&params(), None), &[&describe, &execute], &[&jobs, &answer])
        .await;
    assert_eq!(r.outcome, "wait");
    assert!(
        r.summary
            .contains("approved by arn:aws:sts::111122223333:assumed-role/Releaser/alice"),
        "{}",
        r.summary
    );
    assert_eq!((execute.num_calls(), answer.num_calls()), (1, 1));
}

/// Records that `principal` started the execution (the pipeline execution event's `execution-trigger`).
async fn started_by(w: &World, principal: &str) {
    use tollgate_domain::record::ports::EventRecorder;
    let event = serde_json::json!({
        "version": "0", "id": "started-1", "detail-type": "CodePipeline Pipeline Execution State Change",
        "source": "aws.codepipeline", "account": "111122223333", "time": "2026-11-20T09:00:00Z",
        "region": "eu-west-1", "resources": ["arn:aws:codepipeline:eu-west-1:111122223333:checkout-service"],
        "detail": {"pipeline": "checkout-service", "execution-id": EXECUTION,
            "execution-trigger": {"trigger-type": "StartPipelineExecution", "trigger-detail": principal},
            "state": "STARTED", "version": 1}
    });
    let parsed = tollgate_domain::record::parse::parse_event(event.to_string().as_bytes()).unwrap();
    w.timelines.record(&parsed).await.unwrap();
}

#[tokio::test]
async fn an_approval_by_the_principal_that_started_the_execution_does_not_count() {
    let w = World::new();
    // Alice started the execution that carries her change, then approved it herself.
    started_by(&w, "arn:aws:sts::111122223333:assumed-role/Releaser/alice").await;
    let d = fixture("iam.json");
    w.approve(ApprovalDecision::Approve, d.created_at.unwrap() + Duration::minutes(10));
    let describe = describe(d, "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = failure(
        FailureType::JobFailed,
        &["does not count", "the change's author", "another approver"],
    );
    let r = w
        .run(&job_event(&params(), None), &[&describe, &execute], &[&jobs, &answer])
        .await;
    assert_eq!(r.outcome, "failed", "{}", r.summary);
    assert!(
        r.summary.contains("does not count") && r.summary.contains("the change's author"),
        "{}",
        r.summary
    );
    assert_eq!((execute.num_calls(), answer.num_calls()), (0, 1));

    // Someone else started it: the same approval counts.
    let w2 = World::new();
    started_by(&w2, "arn:aws:sts::111122223333:assumed-role/Developer/bob").await;
    let d = fixture("iam.json");
    w2.approve(ApprovalDecision::Approve, d.created_at.unwrap() + Duration::minutes(10));
    let describe2 = self::describe(d, "AVAILABLE");
    let execute2 = self::execute();
    let jobs2 = get_job_details();
    let answer2 = success(Some(token("execute")));
    let r = w2
        .run(
            &job_event(&params(), None),
            &[&describe2, &execute2],
            &[&jobs2, &answer2],
        )
        .await;
    assert_eq!(r.outcome, "wait", "{}", r.summary);
    assert_eq!(execute2.num_calls(), 1);
}

#[tokio::test]
async fn an_approval_older_than_the_change_set_does_not_count_and_a_rejection_fails() {
    let w = World::new();
    let d = fixture("iam.json");
    w.approve(ApprovalDecision::Approve, d.created_at.unwrap() - Duration::minutes(10));
    let describe1 = describe(d.clone(), "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = failure(FailureType::JobFailed, &["APPROVAL REQUIRED"]);
    w.run(&job_event(&params(), None), &[&describe1, &execute], &[&jobs, &answer])
        .await;
    assert_eq!((execute.num_calls(), answer.num_calls()), (0, 1));

    w.approve(ApprovalDecision::Reject, d.created_at.unwrap() + Duration::minutes(5));
    let describe2 = describe(d, "AVAILABLE");
    let rejected = failure(
        FailureType::JobFailed,
        &["REJECTED: rejected by arn:aws:sts::111122223333:assumed-role/Releaser/alice"],
    );
    let jobs = get_job_details();
    w.run(
        &job_event(&params(), None),
        &[&describe2, &execute],
        &[&jobs, &rejected],
    )
    .await;
    assert_eq!((execute.num_calls(), rejected.num_calls()), (0, 1));
}

#[tokio::test]
async fn ingress_open_to_the_world_is_denied_with_the_rule() {
    let mut w = World::new();
    let template = std::fs::read_to_string(format!(
        "{}/../../events/changeset/open-ingress-template.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    w.artifact.0.insert("infra/stack.yaml".into(), template);
    let describe = describe(fixture("open-ingress.json"), "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let answer = failure(
        FailureType::JobFailed,
        &[
            "DENIED by the risk policy",
            "DatabaseSecurityGroup allows CidrIp 0.0.0.0/0 tcp/5432",
            "AdminSshIngress allows CidrIpv6 ::/0 tcp/22",
        ],
    );
    let r = w
        .run(
            &job_event(&params(), Some(&token("create"))),
            &[&describe, &execute],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!((r.outcome, r.verdict), ("failed", Some("deny")));
    assert_eq!((execute.num_calls(), answer.num_calls()), (0, 1));
    assert_eq!(w.notifier.sent()[0].kind, NotificationKind::GateBlocked);
}

#[tokio::test]
async fn a_stateful_replacement_is_denied_and_a_policy_may_allow_it() {
    let w = World::new();
    let describe1 = describe(fixture("stateful-replacement.json"), "AVAILABLE");
    let execute = execute();
    let jobs = get_job_details();
    let denied = failure(
        FailureType::JobFailed,
        &["DENIED", "OrdersTable (AWS::DynamoDB::Table) is replaced"],
    );
    w.run(
        &job_event(&params(), Some(&token("create"))),
        &[&describe1, &execute],
        &[&jobs, &denied],
    )
    .await;
    assert_eq!((execute.num_calls(), denied.num_calls()), (0, 1));

    let lenient = json!({"stack": STACK, "template": "infra/stack.yaml",
                         "policy": {"stateful_replacement": "execute"}})
    .to_string();
    let describe2 = describe(fixture("stateful-replacement.json"), "AVAILABLE");
    let jobs = get_job_details();
    let answer = success(Some(token("execute")));
    w.run(
        &job_event(&lenient, Some(&token("create"))),
        &[&describe2, &execute],
        &[&jobs, &answer],
    )
    .await;
    assert_eq!((execute.num_calls(), answer.num_calls()), (1, 1));
}

// ---------------------------------------------------------------------------------------------------------------
// Following the stack.

#[tokio::test]
async fn the_stack_in_progress_waits_and_complete_succeeds() {
    let w = World::new();
    let describe1 = describe(fixture("harmless.json"), "EXECUTE_IN_PROGRESS");
    let updating = stack(StackStatus::UpdateInProgress);
    let jobs = get_job_details();
    let wait = success(Some(token("execute")));
    let r = w
        .run(
            &job_event(&params(), Some(&token("execute"))),
            &[&describe1, &updating],
            &[&jobs, &wait],
        )
        .await;
    assert_eq!(r.outcome, "wait");
    assert_eq!(wait.num_calls(), 1);

    let describe2 = describe(fixture("harmless.json"), "EXECUTE_COMPLETE");
    let done = stack(StackStatus::UpdateComplete);
    let jobs = get_job_details();
    let answer = success(None);
    let r = w
        .run(
            &job_event(&params(), Some(&token("execute"))),
            &[&describe2, &done],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!(r.outcome, "succeeded");
    assert_eq!(answer.num_calls(), 1);
    assert_eq!(w.audit_actions().await, vec![action::CHANGESET_RESULT.to_string()]);
}

#[tokio::test]
async fn a_stack_that_still_shows_its_previous_status_is_waited_for() {
    let w = World::new();
    let describe = describe(fixture("harmless.json"), "AVAILABLE");
    let old = stack(StackStatus::UpdateComplete);
    let jobs = get_job_details();
    let wait = success(Some(token("execute")));
    let r = w
        .run(
            &job_event(&params(), Some(&token("execute"))),
            &[&describe, &old],
            &[&jobs, &wait],
        )
        .await;
    assert_eq!(r.outcome, "wait");
    assert_eq!(wait.num_calls(), 1);
}

#[tokio::test]
async fn a_rolled_back_stack_fails_the_job_with_the_first_failure_reason() {
    let w = World::new();
    let describe = describe(fixture("harmless.json"), "EXECUTE_FAILED");
    let rolled_back = stack(StackStatus::UpdateRollbackComplete);
    let events = mock!(aws_sdk_cloudformation::Client::describe_stack_events)
        .match_requests(|r| r.stack_name() == Some(STACK))
        .then_output(|| {
            let at = |s: i64| aws_smithy_types::DateTime::from_secs(s);
            let created = Utc.with_ymd_and_hms(2026, 11, 20, 14, 2, 11).unwrap().timestamp();
            DescribeStackEventsOutput::builder()
                .stack_events(
                    StackEvent::builder()
                        .logical_resource_id("OrdersErrorsAlarm")
                        .resource_type("AWS::CloudWatch::Alarm")
                        .resource_status(ResourceStatus::CreateFailed)
                        .resource_status_reason("Resource creation cancelled")
                        .timestamp(at(created + 70))
                        .build(),
                )
                .stack_events(
                    StackEvent::builder()
                        .logical_resource_id("OrdersFunction")
                        .resource_type("AWS::Lambda::Function")
                        .resource_status(ResourceStatus::UpdateFailed)
                        .resource_status_reason(
                            "Resource handler returned message: \"MemorySize value failed to satisfy constraint\"",
                        )
                        .timestamp(at(created + 60))
                        .build(),
                )
                .build()
        });
    let jobs = get_job_details();
    let answer = failure(
        FailureType::JobFailed,
        &["stack checkout-infra is UPDATE_ROLLBACK_COMPLETE: OrdersFunction (AWS::Lambda::Function): Resource handler returned message"],
    );
    let r = w
        .run(
            &job_event(&params(), Some(&token("execute"))),
            &[&describe, &rolled_back, &events],
            &[&jobs, &answer],
        )
        .await;
    assert_eq!(r.outcome, "failed");
    assert_eq!((events.num_calls(), answer.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_job_codepipeline_already_closed_counts_as_answered() {
    let w = World::new();
    let describe = describe(fixture("harmless.json"), "EXECUTE_FAILED");
    let rolled_back = stack(StackStatus::UpdateRollbackComplete);
    let events = mock!(aws_sdk_cloudformation::Client::describe_stack_events)
        .then_output(|| DescribeStackEventsOutput::builder().build());
    let jobs = get_job_details();
    let closed = mock!(aws_sdk_codepipeline::Client::put_job_failure_result).then_error(|| {
        PutJobFailureResultError::InvalidJobStateException(
            InvalidJobStateException::builder().message("not in progress").build(),
        )
    });
    let r = w
        .run(
            &job_event(&params(), Some(&token("execute"))),
            &[&describe, &rolled_back, &events],
            &[&jobs, &closed],
        )
        .await;
    assert_eq!((r.outcome, r.answered_now), ("failed", false));
    assert_eq!(closed.num_calls(), 1);
}
