//! The changeset action end to end against the local AWS endpoint (moto): the real CloudFormation adapter creates,
//! describes and executes change sets and follows the stack; CodePipeline's job API (which the endpoint does not
//! serve) and the artifact are in memory.
//!
//! Runs only when `TOLLGATE_TEST_ENDPOINT` names the endpoint (see scripts/moto.sh); otherwise it prints SKIPPED.

use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_cloudformation::config::{Credentials, Region};
use changeset::handler::{handle, Ports};
use chrono::Utc;
use serde_json::{json, Value};
use tollgate_aws::changeset::CloudFormationChangeSets;
use tollgate_domain::gate::{
    AnswerSent, ApprovalKey, ApprovalRecord, ApprovalRecords, ArtifactCredentials, ArtifactLocation, FactError,
    JobAnswer, JobApiError, JobContext, PipelineJobs, PolicySource, PolicyText,
};
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryNotifier;
use tollgate_domain::record::ports::StoreError;

struct Jobs {
    execution: String,
    answers: Mutex<Vec<JobAnswer>>,
}

#[async_trait]
impl PipelineJobs for Jobs {
    async fn job_context(&self, _: &str) -> Result<JobContext, JobApiError> {
        Ok(JobContext {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
            stage: "Infrastructure".into(),
            action: "ReviewChangeSet".into(),
            execution_id: self.execution.clone(),
        })
    }

    async fn answer(&self, _: &str, answer: &JobAnswer) -> Result<AnswerSent, JobApiError> {
        self.answers.lock().unwrap().push(answer.clone());
        Ok(AnswerSent::Sent)
    }
}

struct Artifact(String);

#[async_trait]
impl PolicySource for Artifact {
    async fn read_policy(
        &self,
        _: &ArtifactLocation,
        _: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError> {
        Ok(PolicyText {
            path: candidates[0].clone(),
            text: self.0.clone(),
        })
    }
}

struct NoApprovals;

#[async_trait]
impl ApprovalRecords for NoApprovals {
    async fn record_approval(&self, _: &ApprovalRecord) -> Result<(), StoreError> {
        Ok(())
    }

    async fn latest_approval(&self, _: &ApprovalKey) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(None)
    }
}

fn event(stack: &str, token: Option<&str>) -> Value {
    let mut data = json!({
        "actionConfiguration": {"configuration": {"FunctionName": "tollgate-changeset",
            "UserParameters": json!({"stack": stack, "template": "stack.yaml"}).to_string()}},
        "inputArtifacts": [{"name": "SourceArtifact", "location": {"type": "S3", "s3Location":
            {"bucketName": "b", "objectKey": "k"}}}],
        "artifactCredentials": {"accessKeyId": "ASIA", "secretAccessKey": "s", "sessionToken": "t"}
    });
    if let Some(t) = token {
        data["continuationToken"] = json!(t);
    }
    json!({"CodePipeline.job": {"id": "job-1", "accountId": "123456789012", "data": data}})
}

const TOPIC_ONLY: &str = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n";
const WITH_ROLE: &str = "Resources:
  Topic:
    Type: AWS::SNS::Topic
  AppRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
";

/// Runs invocations of one job until it is answered without a continuation token (at most `max`).
async fn run_job(cfn: &CloudFormationChangeSets, stack: &str, execution: &str, template: &str) -> Vec<JobAnswer> {
    let jobs = Jobs {
        execution: execution.into(),
        answers: Mutex::new(Vec::new()),
    };
    let artifact = Artifact(template.into());
    let audit = MemoryAuditLog::new();
    let notifier = MemoryNotifier::new();
    let ports = Ports {
        jobs: &jobs,
        artifacts: &artifact,
        stacks: cfn,
        approvals: &NoApprovals,
        audit: &audit,
        notifier: &notifier,
        timelines: &tollgate_domain::memory::MemoryStore::new(),
    };
    let mut token: Option<String> = None;
    for _ in 0..10 {
        handle(&event(stack, token.as_deref()), &ports, Utc::now())
            .await
            .unwrap();
        let last = jobs.answers.lock().unwrap().last().cloned().unwrap();
        match last {
            JobAnswer::Success {
                continuation_token: Some(t),
                ..
            } => token = Some(t),
            _ => break,
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    jobs.answers.into_inner().unwrap()
}

#[tokio::test]
async fn a_new_stack_is_created_then_an_iam_change_waits_for_approval() {
    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        eprintln!("SKIPPED: TOLLGATE_TEST_ENDPOINT is not set");
        return;
    };
    let config = aws_sdk_cloudformation::Config::builder()
        .behavior_version_latest()
        .region(Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    let cfn = CloudFormationChangeSets::new(aws_sdk_cloudformation::Client::from_conf(config));
    let run = Utc::now().timestamp_micros();
    let stack = format!("changeset-e2e-{run}");
    // Unique execution ids per run: the local endpoint finds change sets by name across stacks, AWS within one.
    let (first, second) = (format!("{run}-1"), format!("{run}-2"));

    let answers = run_job(&cfn, &stack, &first, TOPIC_ONLY).await;
    let summaries: Vec<String> = answers
        .iter()
        .map(|a| match a {
            JobAnswer::Success { summary, .. } => summary.clone(),
            JobAnswer::Failure { message, .. } => format!("FAILED {message}"),
        })
        .collect();
    assert!(summaries[0].contains("(CREATE)"), "{summaries:?}");
    assert!(
        summaries.iter().any(|s| s.starts_with("executing change set")),
        "{summaries:?}"
    );
    assert!(
        matches!(
            answers.last(),
            Some(JobAnswer::Success {
                continuation_token: None,
                ..
            })
        ),
        "{summaries:?}"
    );

    let answers = run_job(&cfn, &stack, &second, WITH_ROLE).await;
    let last = answers.last().unwrap();
    match last {
        JobAnswer::Failure { message, .. } => {
            assert!(message.starts_with("APPROVAL REQUIRED"), "{message}");
            assert!(message.contains("AppRole (AWS::IAM::Role) is created"), "{message}");
        }
        other => panic!("expected an approval to be required, got {other:?}"),
    }
}
