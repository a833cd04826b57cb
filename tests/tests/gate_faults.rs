//! The gate under faults: its DynamoDB reads and writes (timelines, decisions, freezes, overrides, leases, audit)
//! go through the fault proxy with SDK retries off, and its CloudWatch reads fail at the same rate (the Rust
//! CloudWatch client's protocol is not served by the local endpoint, so that port fails in memory). Over many seeds,
//! every answer is the one the gate gives without faults, or fails closed (a failure, a wait, or an error that makes
//! CodePipeline invoke again): never a pass that the fault-free gate would not give.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use gate::handler::{handle, Ports};
use serde_json::{json, Value};
use tollgate::local::{self, Names, Rng};
use tollgate::template::Template;
use tollgate_aws::alarm_watches::DynamoDbAlarmWatches;
use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::DynamoDbStore;
use tollgate_domain::gate::policy::{AlarmFact, AlarmState, MinRequests};
use tollgate_domain::gate::{AlarmStates, FactError, JobAnswer, JobContext, MetricTotals};
use tollgate_domain::memory::MemoryAlarmWatches;
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::{MemoryCloudWatch, MemoryGateStore, MemoryPipelineJobs, MemoryPolicySource};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;
use tollgate_integration_tests::driver::sdk_config;
use tollgate_integration_tests::fault::{FaultConfig, FaultProxy};
use tollgate_integration_tests::{local_clients, unique_prefix, workspace};

const POLICY: &str = "version: 1
name: production-gate
max_wait: 6h
alarms:
  names: [checkout-service-5xx]
bake:
  after_stage: Staging
  duration: 2h
";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T14:28:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// CloudWatch in memory, failing a share of calls (by a seeded sequence).
struct FlakyCloudWatch {
    inner: MemoryCloudWatch,
    seed: u64,
    share: f64,
    calls: AtomicU64,
    pub failed: AtomicU64,
}

impl FlakyCloudWatch {
    fn fails(&self) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = Rng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9)).unit() < self.share;
        if fail {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }
}

#[async_trait]
impl AlarmStates for FlakyCloudWatch {
    async fn alarm_states(
        &self,
        names: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError> {
        if self.fails() {
            return Err(FactError(
                "CloudWatch DescribeAlarms failed: ThrottlingException (injected)".into(),
            ));
        }
        self.inner.alarm_states(names, tags).await
    }
}

#[async_trait]
impl MetricTotals for FlakyCloudWatch {
    async fn metric_total(
        &self,
        metric: &MinRequests,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<f64, FactError> {
        if self.fails() {
            return Err(FactError("CloudWatch GetMetricData failed: 503 (injected)".into()));
        }
        self.inner.metric_total(metric, from, to).await
    }
}

/// One gate situation: the staging stage's end, and the alarm's state.
#[derive(Debug, Clone, Copy)]
struct Case {
    staging_done_ago: Duration,
    alarm: AlarmState,
}

fn case_of(seed: u64) -> Case {
    match seed % 3 {
        // Baked and healthy: pass.
        0 => Case {
            staging_done_ago: Duration::hours(3),
            alarm: AlarmState::Ok,
        },
        // Not baked yet: wait.
        1 => Case {
            staging_done_ago: Duration::minutes(30),
            alarm: AlarmState::Ok,
        },
        // Baked, but the alarm fires: fail.
        _ => Case {
            staging_done_ago: Duration::hours(3),
            alarm: AlarmState::Alarm,
        },
    }
}

fn context(seed: u64) -> JobContext {
    JobContext {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: format!("gate-faults-{seed}"),
        stage: "Production".into(),
        action: "Gate".into(),
        execution_id: format!("e-{seed}"),
    }
}

fn job_event(job_id: &str) -> Value {
    json!({"CodePipeline.job": {"id": job_id, "accountId": "111122223333", "data": {
        "actionConfiguration": {"configuration": {"FunctionName": "tollgate-gate",
            "UserParameters": "policies/production.yaml"}},
        "inputArtifacts": [{"name": "SourceArtifact", "location": {"type": "S3", "s3Location":
            {"bucketName": "codepipeline-eu-west-1-111122223333", "objectKey": "checkout-service/SourceArti/abc"}}}],
        "outputArtifacts": [],
        "artifactCredentials": {"accessKeyId": "ASIA-TEST", "secretAccessKey": "test-secret", "sessionToken": "test"}}}})
}

fn staging_event(seed: u64, at: DateTime<Utc>) -> tollgate_domain::record::event::DeliveryEvent {
    let body = json!({
        "version": "0", "id": format!("staging-{seed}"), "detail-type": "CodePipeline Stage Execution State Change",
        "source": "aws.codepipeline", "account": "111122223333", "time": at.to_rfc3339(), "region": "eu-west-1",
        "resources": [], "detail": {"pipeline": format!("gate-faults-{seed}"), "execution-id": format!("e-{seed}"),
        "stage": "Staging", "state": "SUCCEEDED", "version": 1}
    });
    parse_event(body.to_string().as_bytes()).expect("a valid stage event")
}

fn cloudwatch(case: Case, seed: u64, share: f64) -> FlakyCloudWatch {
    FlakyCloudWatch {
        inner: MemoryCloudWatch::new().with_alarms(Ok(vec![AlarmFact {
            name: "checkout-service-5xx".into(),
            state: case.alarm,
            since: now() - Duration::minutes(40),
        }])),
        seed,
        share,
        calls: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Pass,
    Wait,
    Fail,
    /// No answer sent: the invocation errs and CodePipeline invokes the gate again.
    Retry,
}

fn answer_of(jobs: &MemoryPipelineJobs, job_id: &str) -> Answer {
    match jobs.answers().into_iter().rev().find(|(id, _)| id == job_id) {
        None => Answer::Retry,
        Some((
            _,
            JobAnswer::Success {
                continuation_token: Some(_),
                ..
            },
        )) => Answer::Wait,
        Some((_, JobAnswer::Success { .. })) => Answer::Pass,
        Some((_, JobAnswer::Failure { .. })) => Answer::Fail,
    }
}

/// The gate's answer without any fault, all in memory.
async fn fault_free_answer(seed: u64, case: Case) -> Answer {
    let job_id = format!("oracle-{seed}");
    let jobs = MemoryPipelineJobs::new().with_job(&job_id, context(seed));
    let policies = MemoryPolicySource::new().with_file("policies/production.yaml", POLICY);
    let cw = cloudwatch(case, seed, 0.0);
    let timelines = MemoryStore::new();
    timelines
        .record(&staging_event(seed, now() - case.staging_done_ago))
        .await
        .expect("recorded in memory");
    let store = MemoryGateStore::new();
    let (audit, notifier) = (MemoryAuditLog::default(), MemoryNotifier::new());
    let watches = MemoryAlarmWatches::new();
    let ports = Ports {
        jobs: &jobs,
        policies: &policies,
        alarms: &cw,
        metrics: &cw,
        timelines: &timelines,
        decisions: &store,
        approvals: &store,
        controls: &store,
        leases: &store,
        watches: &watches,
        audit: &audit,
        notifier: &notifier,
        baselines: &tollgate_domain::gate::policy::MemoryBaselines::new(),
        pipeline_tags: &tollgate_domain::gate::policy::MemoryPipelineTags::new(&[]),
        effective: &tollgate_domain::memory::MemoryEffectivePolicies::new(),
    };
    let _ = handle(&job_event(&job_id), &ports, now()).await;
    answer_of(&jobs, &job_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_under_thirty_percent_faults_never_passes_what_it_would_not_pass_without_them() {
    let Some(direct) = local_clients("gate-faults").await else {
        return;
    };
    let Ok(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT") else {
        return;
    };
    let template = Template::load(&workspace("infra/template.yaml")).expect("template");
    let env = local::provision(&direct, &template, &Names::with_prefix(&unique_prefix("gatef")))
        .await
        .expect("provisioned");
    let share = 0.3;
    let proxy = FaultProxy::start(
        &endpoint,
        FaultConfig {
            share,
            ..FaultConfig::ten_percent(77)
        },
    )
    .await
    .expect("proxy");
    // A stalled answer is held until this timeout fires; long enough that a healthy answer from a busy local endpoint
    // never outlasts it.
    let faulty = sdk_config(&proxy.endpoint(), 1, std::time::Duration::from_secs(10)).await;
    let ddb = aws_sdk_dynamodb::Client::new(&faulty);
    let timelines = DynamoDbStore::new(ddb.clone(), env.names.table.clone(), 400);
    // The alarm watches of a pass go through the same faults: a failed registration must not change the answer.
    let watches = DynamoDbAlarmWatches::new(ddb.clone(), env.names.table.clone());
    let store = DynamoDbGateStore::new(ddb, env.names.table.clone(), 400);
    let setup = DynamoDbStore::new(direct.dynamodb.clone(), env.names.table.clone(), 400);
    let policies = MemoryPolicySource::new().with_file("policies/production.yaml", POLICY);
    let notifier = MemoryNotifier::new();

    let mut tally: BTreeMap<(Answer, Answer), u32> = BTreeMap::new();
    let mut cloudwatch_failures = 0;
    for seed in 0..45u64 {
        let case = case_of(seed);
        let truth = fault_free_answer(seed, case).await;
        setup
            .record(&staging_event(seed, now() - case.staging_done_ago))
            .await
            .expect("recorded directly");
        let job_id = format!("job-{seed}");
        let jobs = MemoryPipelineJobs::new().with_job(&job_id, context(seed));
        let cw = cloudwatch(case, seed, share);
        let ports = Ports {
            jobs: &jobs,
            policies: &policies,
            alarms: &cw,
            metrics: &cw,
            timelines: &timelines,
            decisions: &store,
            approvals: &store,
            controls: &store,
            leases: &store,
            watches: &watches,
            audit: &timelines,
            notifier: &notifier,
            baselines: &tollgate_domain::gate::policy::MemoryBaselines::new(),
            pipeline_tags: &tollgate_domain::gate::policy::MemoryPipelineTags::new(&[]),
            effective: &tollgate_domain::memory::MemoryEffectivePolicies::new(),
        };
        let _ = handle(&job_event(&job_id), &ports, now()).await;
        let got = answer_of(&jobs, &job_id);
        cloudwatch_failures += cw.failed.load(Ordering::SeqCst);
        assert!(
            got == truth || got != Answer::Pass,
            "seed {seed}: the gate passed under faults where it answers {truth:?} without them"
        );
        *tally.entry((truth, got)).or_default() += 1;
    }
    let faults = proxy.stats();
    eprintln!(
        "gate-faults: 45 jobs; {} DynamoDB requests, {} faulted ({:?}); {cloudwatch_failures} CloudWatch reads failed; \
         (fault-free answer, answer under faults): {tally:?}",
        faults.requests,
        faults.total(),
        faults.by_kind()
    );
    // The three situations were each decided correctly at least once, and faults made a difference somewhere.
    for truth in [Answer::Pass, Answer::Wait, Answer::Fail] {
        assert!(
            tally.get(&(truth, truth)).is_some_and(|n| *n > 0),
            "{truth:?}: {tally:?}"
        );
    }
    assert!(
        tally.iter().any(|((truth, got), _)| truth != got),
        "faults never changed an answer: {tally:?}"
    );
}
