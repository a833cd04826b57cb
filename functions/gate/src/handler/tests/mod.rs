//! The handler's logic with in-memory ports: what is decided, recorded, announced and answered.

use std::sync::{Arc, Mutex};
use tollgate_domain::audit::AuditLog;

use async_trait::async_trait;
use chrono::Duration;
use serde_json::json;
use tollgate_domain::gate::policy::{AlarmFact, AlarmState, ApprovalDecision, FreezeBound};
use tollgate_domain::gate::policy::{MemoryBaselines, MemoryPipelineTags};
use tollgate_domain::gate::{
    ApprovalKey, ApprovalRecord, FreezeRecord, OverrideRecord, TaggedAlarms, DECISION_ID_VARIABLE, OUTCOME_VARIABLE,
};
use tollgate_domain::gate::{WatchedStage, ALARM_WATCH_DAYS};
use tollgate_domain::memory::MemoryAlarmWatches;
use tollgate_domain::memory::{
    MemoryAlarmTags, MemoryCloudWatch, MemoryGateStore, MemoryPipelineJobs, MemoryPolicySource,
};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, StoreError};
use tollgate_domain::tell::notify::NotificationKind;

use super::*;

const JOB: &str = "3c9a5f0e-1b2d-4e6f-8a7b-9c0d1e2f3a4b";
const EXECUTION: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn context() -> JobContext {
    JobContext {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        action: "Gate".into(),
        execution_id: EXECUTION.into(),
    }
}

fn event(job_id: &str, user_parameters: &str, token: Option<&str>) -> Value {
    let mut data = json!({
        "actionConfiguration": {"configuration": {"FunctionName": "tollgate-gate", "UserParameters": user_parameters}},
        "inputArtifacts": [{"name": "SourceArtifact", "location": {"type": "S3", "s3Location":
            {"bucketName": "codepipeline-eu-west-1-111122223333", "objectKey": "checkout-service/SourceArti/abc"}}}],
        "outputArtifacts": [],
        "artifactCredentials": {"accessKeyId": "ASIA-DISTINCTIVE-KEY-7Q", "secretAccessKey": "SECRET-DISTINCTIVE-9Z",
            "sessionToken": "SESSION-DISTINCTIVE-4X"}
    });
    if let Some(t) = token {
        data["continuationToken"] = json!(t);
    }
    json!({"CodePipeline.job": {"id": job_id, "accountId": "111122223333", "data": data}})
}

const BAKE_POLICY: &str = "version: 1
name: production-gate
max_wait: 6h
alarms:
  names: [checkout-service-5xx]
  wait: 30m
bake:
  after_stage: Staging
  duration: 2h
";

/// Every port in memory.
struct World {
    jobs: MemoryPipelineJobs,
    policies: MemoryPolicySource,
    cloudwatch: MemoryCloudWatch,
    timelines: MemoryStore,
    store: MemoryGateStore,
    notifier: MemoryNotifier,
    audit: tollgate_domain::memory::MemoryAuditLog,
    /// Leases other than the store's, for races and errors.
    leases: Option<Arc<dyn DeploymentLeases>>,
    watches: MemoryAlarmWatches,
    baselines: MemoryBaselines,
    pipeline_tags: MemoryPipelineTags,
    effective: tollgate_domain::memory::MemoryEffectivePolicies,
}

impl World {
    fn new(policy: &str) -> World {
        World {
            jobs: MemoryPipelineJobs::new().with_job(JOB, context()),
            policies: MemoryPolicySource::new().with_file("policies/production.yaml", policy),
            cloudwatch: MemoryCloudWatch::new().with_alarms(Ok(vec![AlarmFact {
                name: "checkout-service-5xx".into(),
                state: AlarmState::Ok,
                since: now() - Duration::days(2),
            }])),
            timelines: MemoryStore::new(),
            store: MemoryGateStore::new(),
            notifier: MemoryNotifier::new(),
            audit: Default::default(),
            leases: None,
            watches: MemoryAlarmWatches::new(),
            baselines: MemoryBaselines::new(),
            pipeline_tags: MemoryPipelineTags::new(&[]),
            effective: Default::default(),
        }
    }

    fn ports(&self) -> Ports<'_> {
        Ports {
            jobs: &self.jobs,
            policies: &self.policies,
            alarms: &self.cloudwatch,
            metrics: &self.cloudwatch,
            timelines: &self.timelines,
            decisions: &self.store,
            approvals: &self.store,
            controls: &self.store,
            leases: self.leases.as_deref().unwrap_or(&self.store),
            watches: &self.watches,
            audit: &self.audit,
            notifier: &self.notifier,
            baselines: &self.baselines,
            pipeline_tags: &self.pipeline_tags,
            effective: &self.effective,
        }
    }

    async fn stage(&self, stage: &str, state: &str, at: DateTime<Utc>) {
        let body = json!({
            "version": "0", "id": format!("{stage}-{state}"), "detail-type": "CodePipeline Stage Execution State Change",
            "source": "aws.codepipeline", "account": "111122223333", "time": at.to_rfc3339(), "region": "eu-west-1",
            "resources": [], "detail": {"pipeline": "checkout-service", "execution-id": EXECUTION, "stage": stage,
            "state": state, "version": 1}
        });
        let event = parse_event(body.to_string().as_bytes()).unwrap();
        self.timelines.record(&event).await.unwrap();
    }

    async fn run(&self, job_id: &str, user_parameters: &str, token: Option<&str>, at: DateTime<Utc>) -> GateReport {
        handle(&event(job_id, user_parameters, token), &self.ports(), at)
            .await
            .unwrap()
    }

    fn last_answer(&self) -> JobAnswer {
        self.jobs.answers().last().unwrap().1.clone()
    }
}

fn failure_message(answer: &JobAnswer) -> (FailureKind, String) {
    match answer {
        JobAnswer::Failure { kind, message, .. } => (*kind, message.clone()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn gate_passes_with_output_variables_naming_the_decision() {
    let world = World::new(BAKE_POLICY);
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let report = world.run(JOB, "policies/production.yaml", None, now()).await;
    assert_eq!(
        (report.outcome, report.recorded, report.notified),
        ("pass", true, false)
    );
    let JobAnswer::Success {
        continuation_token,
        output_variables,
        ..
    } = world.last_answer()
    else {
        panic!("not a success")
    };
    assert_eq!(continuation_token, None);
    assert_eq!(output_variables[DECISION_ID_VARIABLE], JOB);
    assert_eq!(output_variables[OUTCOME_VARIABLE], "PASS");
    let recorded = world.store.decisions();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].context, Some(context()));
    assert_eq!(recorded[0].decided_by, "tollgate:gate");
    assert!(recorded[0]
        .checks
        .iter()
        .all(|c| !c.observed.is_empty() && !c.required.is_empty()));
    assert!(world.notifier.sent().is_empty());
}

#[tokio::test]
async fn gate_waits_with_a_token_then_gives_up_after_max_wait_counted_from_the_first_evaluation() {
    let world = World::new(BAKE_POLICY);
    world.stage("Staging", "STARTED", now() - Duration::minutes(5)).await;
    let first = world.run(JOB, "production", None, now()).await;
    assert_eq!(first.outcome, "wait");
    let JobAnswer::Success {
        continuation_token: Some(token),
        output_variables,
        ..
    } = world.last_answer()
    else {
        panic!("no continuation token")
    };
    assert!(
        output_variables.is_empty(),
        "output variables are not allowed with a continuation token"
    );
    let c = Continuation::decode(&token).unwrap();
    assert_eq!(
        (c.first_evaluated_at(), c.decisions.clone()),
        (now(), vec![JOB.to_string()])
    );
    // The first wait is announced, once.
    let sent = world.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::GateBlocked);
    assert!(sent[0].lines.iter().any(|l| l.contains("bake")), "{:?}", sent[0].lines);
    assert!(world.store.notified(JOB));

    // CodePipeline invokes again with a new job and the token: still waiting, not announced again.
    let job2 = "4d0b6a1f-2c3e-4f70-9b8c-0d1e2f3a4b5c";
    let jobs = MemoryPipelineJobs::new()
        .with_job(job2, context())
        .with_job("5e1c7b20-3d4f-4081-8c9d-1e2f3a4b5c6d", context());
    let world = World { jobs, ..world };
    let second = world
        .run(job2, "production", Some(&token), now() + Duration::minutes(1))
        .await;
    assert_eq!(second.outcome, "wait");
    let JobAnswer::Success {
        continuation_token: Some(token2),
        ..
    } = world.last_answer()
    else {
        panic!("no continuation token")
    };
    let c2 = Continuation::decode(&token2).unwrap();
    assert_eq!(c2.first_evaluated_at(), now());
    assert_eq!(c2.decisions, vec![JOB.to_string(), job2.to_string()]);
    assert_eq!(world.notifier.sent().len(), 1);

    // Six hours after the first evaluation the stage has still not succeeded: the gate gives up.
    let third = world
        .run(
            "5e1c7b20-3d4f-4081-8c9d-1e2f3a4b5c6d",
            "production",
            Some(&token2),
            now() + Duration::hours(6),
        )
        .await;
    assert_eq!(third.outcome, "fail");
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::JobFailed);
    assert!(message.contains("max_wait"), "{message}");
    assert_eq!(world.notifier.sent().len(), 2);
}

#[tokio::test]
async fn gate_fails_on_an_alarm_with_the_explanation_and_announces_it() {
    let policy = BAKE_POLICY.replace("  wait: 30m\n", "");
    let mut world = World::new(&policy);
    world.cloudwatch = MemoryCloudWatch::new().with_alarms(Ok(vec![AlarmFact {
        name: "checkout-service-5xx".into(),
        state: AlarmState::Alarm,
        since: now() - Duration::minutes(18),
    }]));
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "fail");
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::JobFailed);
    assert!(
        message.starts_with("FAIL: failed: alarms (alarm checkout-service-5xx in ALARM since 14:10 UTC)"),
        "{message}"
    );
    assert!(message.contains("✓ bake"), "{message}");
    let sent = world.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].title.contains("blocked Production / Gate"), "{}", sent[0].title);
}

#[tokio::test]
async fn the_same_job_twice_gives_the_same_answer_and_one_decision() {
    let world = World::new(BAKE_POLICY);
    world.stage("Staging", "STARTED", now() - Duration::minutes(5)).await;
    let first = world.run(JOB, "production", None, now()).await;
    // Lambda retries the invocation later; the bake has finished meanwhile, but the job was already decided.
    world.stage("Staging", "SUCCEEDED", now() - Duration::minutes(1)).await;
    let again = world.run(JOB, "production", None, now() + Duration::hours(3)).await;
    assert_eq!((first.outcome, again.outcome), ("wait", "wait"));
    assert!(again.duplicate);
    let answers = world.jobs.answers();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(world.store.decision_writes(), 1);
    assert_eq!(world.notifier.sent().len(), 1, "announced once");
    assert!(!again.answered_now, "CodePipeline had the answer already");
    // One decision, one audit entry, in the pipeline's chain.
    let scope = "pipeline:111122223333/eu-west-1/checkout-service";
    let entries = world.audit.entries(scope).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "gate.decision");
    assert_eq!(entries[0].subject, format!("{EXECUTION}/Production"));
    assert_eq!(entries[0].detail["outcome"], "wait");
    let head = world.audit.head(scope).await.unwrap();
    tollgate_domain::audit::verify(scope, &entries, head.as_ref()).unwrap();
}

#[tokio::test]
async fn invalid_user_parameters_fail_the_job_naming_the_field_without_reading_anything() {
    let world = World::new(BAKE_POLICY);
    let report = world
        .run(
            JOB,
            r#"{"policy": "production", "overides": {"bake.duration": "30m"}}"#,
            None,
            now(),
        )
        .await;
    assert_eq!(report.outcome, "fail");
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::ConfigurationError);
    assert!(message.starts_with("UserParameters:1:"), "{message}");
    assert!(message.contains("overides: unknown field `overides`"), "{message}");
    assert!(world.cloudwatch.asked().is_empty());
    assert_eq!(
        world.store.decision_writes(),
        1,
        "a configuration failure is a decision too"
    );

    let report = world
        .run(
            "6f2d8c31-4e50-4192-9dae-2f3a4b5c6d7e",
            r#"{"policy": "production", "overrides": {"bake.durration": "30m"}}"#,
            None,
            now(),
        )
        .await;
    assert_eq!(report.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(
        message.contains("overrides.bake.durration: unknown override"),
        "{message}"
    );
    assert!(message.contains("did you mean `bake.duration`"), "{message}");
}

#[tokio::test]
async fn an_invalid_policy_fails_the_job_with_file_line_and_field() {
    let world = World::new(
        "version: 1\nname: p\nmax_wait: 6h\nwindows:\n  - days: [mon]\n    from: \"9am\"\n    to: \"16:00\"\n",
    );
    world.run(JOB, "production", None, now()).await;
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::ConfigurationError);
    assert!(
        message.starts_with("policies/production.yaml:6:11: windows[0].from: \"9am\" is not a time"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_policy_file_fails_the_job_naming_the_paths_tried() {
    let world = World::new(BAKE_POLICY);
    world.run(JOB, "staging", None, now()).await;
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::ConfigurationError);
    assert_eq!(
        message,
        "cannot read the policy: policies/staging.yaml or policies/staging.yml or policies/staging.json not found in \
         input artifact SourceArtifact"
    );
}

const CONCURRENCY_POLICY: &str = "version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: production\n";
const PAYMENTS_JOB: &str = "5d0e2c71-9a3b-4c8d-8e1f-2a3b4c5d6e7f";
const PAYMENTS_JOB_2: &str = "6e1f3d82-0b4c-4d9e-9f20-3b4c5d6e7f80";

fn payments() -> JobContext {
    JobContext {
        pipeline: "payments".into(),
        execution_id: "pay-1".into(),
        ..context()
    }
}

#[tokio::test]
async fn a_passing_gate_takes_the_environment_and_another_pipeline_waits_until_its_execution_ends() {
    let mut world = World::new(CONCURRENCY_POLICY);
    world.jobs = MemoryPipelineJobs::new()
        .with_job(JOB, context())
        .with_job(PAYMENTS_JOB, payments())
        .with_job(PAYMENTS_JOB_2, payments())
        .with_job(JOB2, context());
    world.stage("Production", "STARTED", now()).await;

    assert_eq!(world.run(JOB, "production", None, now()).await.outcome, "pass");
    let lease = world.store.lease("production", None).await.unwrap().unwrap();
    assert_eq!(
        (lease.holder.execution_id.as_str(), lease.decision_id.as_str()),
        (EXECUTION, JOB)
    );

    // Payments' gate waits, with a continuation token, naming who holds the environment.
    let later = now() + Duration::minutes(2);
    let report = world.run(PAYMENTS_JOB, "production", None, later).await;
    assert_eq!(report.outcome, "wait");
    let JobAnswer::Success {
        continuation_token,
        summary,
        ..
    } = world.last_answer()
    else {
        panic!("not a success")
    };
    let token = continuation_token.expect("a wait carries a continuation token");
    assert!(
        summary.contains(&format!(
            "1 other deployment to production in progress: checkout-service execution {EXECUTION} (Production, since \
             2026-11-20 14:28 UTC)"
        )),
        "{summary}"
    );

    // The same execution evaluating again keeps its lease.
    assert_eq!(world.run(JOB2, "production", None, later).await.outcome, "pass");

    // Checkout's execution ends: payments' next evaluation passes and takes the lease over.
    let end = json!({
        "version": "0", "id": "pipeline-succeeded", "detail-type": "CodePipeline Pipeline Execution State Change",
        "source": "aws.codepipeline", "account": "111122223333", "time": (later + Duration::minutes(1)).to_rfc3339(),
        "region": "eu-west-1", "resources": [], "detail": {"pipeline": "checkout-service", "execution-id": EXECUTION,
        "state": "SUCCEEDED", "version": 1}
    });
    world
        .timelines
        .record(&parse_event(end.to_string().as_bytes()).unwrap())
        .await
        .unwrap();
    let report = world
        .run(PAYMENTS_JOB_2, "production", Some(&token), later + Duration::minutes(3))
        .await;
    assert_eq!(report.outcome, "pass");
    let lease = world.store.lease("production", None).await.unwrap().unwrap();
    assert_eq!(lease.holder.pipeline, "payments");
}

/// Reads the lease free, then loses the conditional write to a concurrent gate, or fails outright.
struct RacingLeases {
    error: bool,
}

#[async_trait]
impl DeploymentLeases for RacingLeases {
    async fn lease(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Option<tollgate_domain::gate::DeploymentLease>, StoreError> {
        Ok(None)
    }

    async fn claim_lease(
        &self,
        lease: &tollgate_domain::gate::DeploymentLease,
        _: Option<&tollgate_domain::gate::DeploymentLease>,
    ) -> Result<tollgate_domain::gate::LeaseClaim, StoreError> {
        if self.error {
            return Err(StoreError::Permanent("AccessDeniedException: dynamodb:PutItem".into()));
        }
        let mut winner = lease.clone();
        winner.holder = payments().execution_key();
        Ok(tollgate_domain::gate::LeaseClaim::HeldBy(Box::new(winner)))
    }
}

#[tokio::test]
async fn a_gate_that_loses_the_lease_to_a_concurrent_gate_waits_instead_of_passing() {
    let mut world = World::new(CONCURRENCY_POLICY);
    world.leases = Some(Arc::new(RacingLeases { error: false }));
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "wait");
    let d = world.store.decision(JOB).await.unwrap().unwrap();
    assert!(
        d.explanation
            .contains("… concurrency  1 other deployment to production in progress: payments execution pay-1"),
        "{}",
        d.explanation
    );
    assert!(matches!(
        world.last_answer(),
        JobAnswer::Success {
            continuation_token: Some(_),
            ..
        }
    ));
}

#[tokio::test]
async fn a_lease_that_cannot_be_taken_fails_closed_unless_the_policy_says_otherwise() {
    let mut world = World::new(CONCURRENCY_POLICY);
    world.leases = Some(Arc::new(RacingLeases { error: true }));
    world.run(JOB, "production", None, now()).await;
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::JobFailed);
    assert!(
        message.contains("cannot take the deployment lease") && message.contains("failing closed"),
        "{message}"
    );

    let mut world = World::new(&format!("{CONCURRENCY_POLICY}  on_error: fail_open\n"));
    world.leases = Some(Arc::new(RacingLeases { error: true }));
    assert_eq!(world.run(JOB, "production", None, now()).await.outcome, "pass");
}

#[tokio::test]
async fn a_waiting_gate_does_not_take_the_lease() {
    let world = World::new(&format!("{BAKE_POLICY}concurrency:\n  environment: production\n"));
    assert_eq!(world.run(JOB, "production", None, now()).await.outcome, "wait");
    assert_eq!(world.store.lease("production", None).await.unwrap(), None);
}

#[tokio::test]
async fn approvers_by_group_are_resolved_from_the_policy_not_from_the_record() {
    let policy = "version: 1\nname: p\nmax_wait: 1d\napproval:\n  groups: [release-managers]\ngroups:\n  release-managers: [\"sso:111122223333:ReleaseManager\"]\n";
    let carol = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_0a1b2c3d4e5f6789/carol";
    let world = two_jobs(World::new(policy));
    let approve = |who: &str, groups: &[&str], at| ApprovalRecord {
        key: context().approval_key(),
        principal_arn: who.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        decision: ApprovalDecision::Approve,
        reason: Some("CHG-7".into()),
        at,
    };
    // A claim of membership in the record is not membership.
    world
        .store
        .record_approval(&approve(MALLORY, &["release-managers"], now() - Duration::minutes(2)))
        .await
        .unwrap();
    assert_eq!(world.run(JOB, "production", None, now()).await.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(
        message.contains(&format!("{MALLORY} is not an authorised approver")),
        "{message}"
    );
    assert!(
        message.contains("release-managers = sso:111122223333:ReleaseManager"),
        "{message}"
    );

    world
        .store
        .record_approval(&approve(carol, &[], now() - Duration::minutes(1)))
        .await
        .unwrap();
    assert_eq!(world.run(JOB2, "production", None, now()).await.outcome, "pass");
    let d = world.store.decision(JOB2).await.unwrap().unwrap();
    assert!(
        d.explanation.contains("(group release-managers): CHG-7"),
        "{}",
        d.explanation
    );
}

#[tokio::test]
async fn a_group_member_may_override() {
    let policy = format!("{APPROVAL_POLICY}  groups: [oncall]\ngroups:\n  oncall: [\"arn:aws:sts::111122223333:assumed-role/OnCall/*\"]\n");
    let world = World::new(&policy);
    let bob = "arn:aws:sts::111122223333:assumed-role/OnCall/bob";
    world.store.record_override(&an_override(bob)).await.unwrap();
    assert_eq!(world.run(JOB, "production", None, now()).await.outcome, "pass");
    let d = world.store.decision(JOB).await.unwrap().unwrap();
    assert!(
        d.explanation
            .contains(&format!("overridden by {bob} (group oncall): hotfix")),
        "{}",
        d.explanation
    );
}

#[tokio::test]
async fn an_approval_is_waited_for_then_the_latest_decision_counts() {
    let policy = "version: 1\nname: p\nmax_wait: 1d\napproval:\n  approvers: [\"arn:aws:sts::111122223333:assumed-role/ReleaseManager/*\"]\n";
    let world = World::new(policy);
    assert_eq!(world.run(JOB, "production", None, now()).await.outcome, "wait");
    let key = ApprovalKey {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        execution_id: EXECUTION.into(),
        stage: "Production".into(),
    };
    let approval = |decision, minutes| ApprovalRecord {
        key: key.clone(),
        principal_arn: "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice".into(),
        groups: vec![],
        decision,
        reason: Some("looked at the canary".into()),
        at: now() + Duration::minutes(minutes),
    };
    world
        .store
        .record_approval(&approval(ApprovalDecision::Reject, 1))
        .await
        .unwrap();
    world
        .store
        .record_approval(&approval(ApprovalDecision::Approve, 2))
        .await
        .unwrap();
    let job2 = "7a3e9d42-5f61-42a3-8ebf-3a4b5c6d7e8f";
    let world = World {
        jobs: MemoryPipelineJobs::new().with_job(job2, context()),
        ..world
    };
    let report = world.run(job2, "production", None, now() + Duration::minutes(3)).await;
    assert_eq!(report.outcome, "pass");
}

#[tokio::test]
async fn a_foreign_continuation_token_fails_rather_than_restarting_the_wait() {
    let world = World::new(BAKE_POLICY);
    world
        .run(JOB, "production", Some("a72fe5a4-fad6-4d74-9a4c-25da97a186d6"), now())
        .await;
    let (_, message) = failure_message(&world.last_answer());
    assert!(message.contains("continuation token"), "{message}");
}

/// A store that refuses every write.
struct BrokenStore;

#[async_trait]
impl GateDecisions for BrokenStore {
    async fn record_decision(&self, _: &GateDecision) -> Result<DecisionWrite, StoreError> {
        Err(StoreError::Transient("ThrottlingException".into()))
    }
    async fn mark_notified(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Transient("ThrottlingException".into()))
    }
    async fn decision(&self, _: &str) -> Result<Option<GateDecision>, StoreError> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_decision_that_cannot_be_recorded_fails_the_job_closed_saying_why() {
    let world = World::new(BAKE_POLICY);
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let mut ports = world.ports();
    ports.decisions = &BrokenStore;
    let report = handle(&event(JOB, "production", None), &ports, now()).await.unwrap();
    assert_eq!((report.outcome, report.recorded), ("fail", false));
    let (_, message) = failure_message(&world.last_answer());
    assert!(
        message.contains("could not record its decision (store temporarily unavailable: ThrottlingException)"),
        "{message}"
    );
    assert!(message.contains("PASS: passed"), "{message}");
}

#[tokio::test]
async fn an_event_that_is_not_a_job_is_an_error_and_nothing_is_answered() {
    let world = World::new(BAKE_POLICY);
    let err = handle(&json!({"hello": "world"}), &world.ports(), now())
        .await
        .unwrap_err();
    assert!(matches!(err, GateError::NotAJob(_)), "{err}");
    assert!(world.jobs.answers().is_empty());
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "NonRetryable.NotAJob");
}

/// Collects everything logged, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged by this test binary from the first call on, at every level. A global subscriber, not a
/// thread-local one: tracing caches each call site's interest process-wide, so a thread-local subscriber misses
/// events while other tests run in parallel.
fn captured_logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in these tests");
        captured
    })
}

#[tokio::test]
async fn artifact_credentials_never_reach_the_logs() {
    let captured = captured_logs();

    // A pass, a failure of the policy, a configuration failure and a duplicate: every path logs something.
    let world = World::new(BAKE_POLICY);
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    world.run(JOB, "production", None, now()).await;
    world.run(JOB, "production", None, now()).await;
    let world = World::new("version: 1\n");
    world.run(JOB, r#"{"policy": "production", "x": 1}"#, None, now()).await;
    world.run(JOB, "production", Some("not-a-token"), now()).await;

    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("gate decided"), "nothing was logged: {logged}");
    assert!(logged.contains(JOB));
    for secret in [
        "ASIA-DISTINCTIVE-KEY-7Q",
        "SECRET-DISTINCTIVE-9Z",
        "SESSION-DISTINCTIVE-4X",
    ] {
        assert!(!logged.contains(secret), "{secret} was logged:\n{logged}");
    }
    // Nor do they reach the decision records.
    let stored = serde_json::to_string(&world.store.decisions()).unwrap();
    assert!(!stored.contains("DISTINCTIVE"));
}

#[test]
fn the_raw_event_trace_of_the_runtime_is_never_enabled() {
    let filter = tollgate_aws::logging::filter(Some("trace")).to_string();
    assert!(
        filter.contains("lambda_runtime::layers::api_response=debug"),
        "{filter}"
    );
}

// Shared with the controls tests.
const JOB2: &str = "8b4f0e53-6a72-43b4-9cd0-4b5c6d7e8f90";
const ALICE: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
const MALLORY: &str = "arn:aws:sts::111122223333:assumed-role/Developer/mallory";
const APPROVAL_POLICY: &str = "version: 1\nname: p\nmax_wait: 1d\napproval:\n  approvers: [\"arn:aws:sts::111122223333:assumed-role/ReleaseManager/*\"]\n";

fn two_jobs(world: World) -> World {
    World {
        jobs: MemoryPipelineJobs::new()
            .with_job(JOB, context())
            .with_job(JOB2, context()),
        ..world
    }
}

fn an_override(by: &str) -> OverrideRecord {
    OverrideRecord {
        key: context().approval_key(),
        by: by.into(),
        reason: "hotfix for INC-42, checked by hand".into(),
        at: now() - Duration::minutes(5),
    }
}

mod baseline;
mod controls;
