//! The run on the demo story (`events/story/failed-deploy-and-fix.json`: checkout-service fails a production
//! deployment on 2026-11-20 at 09:25 and is restored by the next one at 10:30), ingested through the ingest service
//! into the in-memory store, with fake tags and the real claim protocol over in-memory markers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDate;
use tollgate_domain::ingest::service::{Ingestor, MessageContext};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::event::DeliveryEvent;
use tollgate_domain::record::keys::{BuildKey, DeploymentKey, StackKey};
use tollgate_domain::record::ports::{ExecutionSummary, Rejected};
use tollgate_domain::tell::notify::{NotificationKind, Severity};

use super::*;
use crate::digest::ClaimedDigest;
use crate::ports::{AuditAndDecisions, AutomationRecords, MemoryDigestLog};
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryGateStore;

type MemoryAutomation = AuditAndDecisions<MemoryAuditLog, MemoryGateStore>;

/// An audit trail and gate store with nothing in them.
fn no_audit() -> MemoryAutomation {
    AuditAndDecisions {
        audit: Arc::new(MemoryAuditLog::default()),
        decisions: Arc::new(MemoryGateStore::new()),
    }
}

const STORY: &str = include_str!("../../../../events/story/failed-deploy-and-fix.json");
const SCHEDULED_EVENT: &str = include_str!("../../events/scheduled-event.json");
const FAILED_EXECUTION: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";

fn at(t: &str) -> DateTime<Utc> {
    t.parse().unwrap()
}

/// 2026-11-23 is a Monday.
fn monday() -> DateTime<Utc> {
    at("2026-11-23T06:00:00Z")
}

/// Events as EventBridge sends them, through the ingest service into `store`.
async fn ingest(store: &Arc<MemoryStore>, events: &[Value]) {
    let ingestor = Ingestor::new(store.clone(), Arc::new(MemoryNotifier::new()));
    for (i, event) in events.iter().enumerate() {
        let ctx = MessageContext::new(format!("m-{i}"), at("2026-11-20T12:00:00Z"));
        ingestor
            .ingest(&event.to_string(), &ctx)
            .await
            .expect("story event ingested");
    }
}

fn story() -> Vec<Value> {
    serde_json::from_str(STORY).unwrap()
}

async fn story_store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    ingest(&store, &story()).await;
    store
}

/// Pipeline configurations by name, counting lookups; `fail` makes every lookup fail.
#[derive(Default)]
struct FakeTags {
    configs: BTreeMap<String, PipelineConfig>,
    calls: Mutex<Vec<PipelineKey>>,
    fail: bool,
}

impl FakeTags {
    fn teams(teams: &[(&str, &str)]) -> FakeTags {
        FakeTags {
            configs: teams
                .iter()
                .map(|(pipeline, team)| {
                    (
                        pipeline.to_string(),
                        PipelineConfig {
                            team: Some(team.to_string()),
                            production_stages: vec![],
                        },
                    )
                })
                .collect(),
            ..FakeTags::default()
        }
    }

    fn calls(&self) -> Vec<PipelineKey> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl PipelineConfigs for FakeTags {
    async fn pipeline_config(&self, pipeline: &PipelineKey) -> Result<PipelineConfig, ConfigLookupError> {
        self.calls.lock().unwrap().push(pipeline.clone());
        if self.fail {
            return Err(ConfigLookupError {
                pipeline: pipeline.pipeline.clone(),
                reason: "ThrottlingException".into(),
            });
        }
        Ok(self.configs.get(&pipeline.pipeline).cloned().unwrap_or_default())
    }
}

struct Digest {
    publisher: ClaimedDigest<MemoryDigestLog, MemoryNotifier>,
    log: Arc<MemoryDigestLog>,
    notifier: Arc<MemoryNotifier>,
}

fn digest() -> Digest {
    let (log, notifier) = (Arc::new(MemoryDigestLog::new()), Arc::new(MemoryNotifier::new()));
    Digest {
        publisher: ClaimedDigest::new(log.clone(), notifier.clone()),
        log,
        notifier,
    }
}

fn payments() -> FakeTags {
    FakeTags::teams(&[("checkout-service", "payments")])
}

/// The EMF line of `pipeline`, parsed.
fn line_of(run: &RunReport, pipeline: &str) -> Value {
    let lines: Vec<Value> = run
        .emf_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["Pipeline"] == pipeline)
        .collect();
    assert_eq!(lines.len(), 1, "{:#?}", run.emf_lines);
    lines.into_iter().next().unwrap()
}

/// The metric names an EMF line declares, in order.
fn declared(line: &Value) -> Vec<(String, String)> {
    line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().to_string(),
                m["Unit"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_period_is_the_last_whole_utc_days_before_the_invocation() {
    assert_eq!(
        period_before(monday(), 7),
        Period {
            from: at("2026-11-16T00:00:00Z"),
            to: at("2026-11-23T00:00:00Z"),
        }
    );
    // Just before midnight: the day that is ending is not whole yet.
    assert_eq!(
        period_before(at("2026-11-23T23:59:59Z"), 1).from,
        at("2026-11-22T00:00:00Z")
    );
    assert_eq!(
        period_before(at("2026-11-23T00:00:00Z"), 1).to,
        at("2026-11-23T00:00:00Z")
    );
}

#[test]
fn the_invocation_time_is_the_scheduled_events_time() {
    let now = at("2026-11-23T06:00:41Z");
    let event: Value = serde_json::from_str(SCHEDULED_EVENT).unwrap();
    assert_eq!(invocation_time(&event, now).unwrap(), monday());
    // An EventBridge rule's scheduled event has an offset-free time too; a manual `{}` means now.
    assert_eq!(
        invocation_time(&json!({"time": "2026-11-23T07:00:00+01:00"}), now).unwrap(),
        monday()
    );
    assert_eq!(invocation_time(&json!({}), now).unwrap(), now);
    for bad in [json!({"time": "Monday"}), json!({"time": 1_795_413_600})] {
        let err = invocation_time(&bad, now).unwrap_err();
        assert!(!err.retryable(), "{err}");
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "NonRetryable.InvalidEvent");
        assert!(diagnostic.error_message.contains("RFC 3339"), "{diagnostic:?}");
    }
}

#[tokio::test]
async fn story_metrics_are_one_emf_line_per_pipeline_with_exact_names_and_values() {
    let store = story_store().await;
    let (digest, tags) = (digest(), payments());
    let run = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    assert_eq!((run.executions, run.timelines, run.unreadable), (2, 2, 0));
    assert_eq!(run.emf_lines.len(), 1);
    let line = line_of(&run, "checkout-service");
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        json!("Tollgate/Delivery")
    );
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Pipeline"], ["Team"]])
    );
    // The period's end: every run over this period writes its points at the same time.
    assert_eq!(
        line["_aws"]["Timestamp"],
        json!(at("2026-11-23T00:00:00Z").timestamp_millis())
    );
    assert_eq!(line["Team"], json!("payments"));
    assert_eq!(
        (&line["Account"], &line["Region"]),
        (&json!("111122223333"), &json!("eu-west-1"))
    );
    let expected: Vec<(String, String)> = [
        ("DeploymentsPerDay", "Count"),
        ("Deployments", "Count"),
        ("FailedDeployments", "Count"),
        ("ChangeFailureRate", "Percent"),
        ("LeadTimeMedian", "Seconds"),
        ("LeadTimeP90", "Seconds"),
        ("TimeToRestoreMedian", "Seconds"),
        ("Builds", "Count"),
        ("AverageBuildSeconds", "Seconds"),
    ]
    .iter()
    .map(|(n, u)| (n.to_string(), u.to_string()))
    .collect();
    assert_eq!(declared(&line), expected);
    assert_eq!(line["Deployments"], json!(2));
    assert_eq!(line["FailedDeployments"], json!(1));
    assert_eq!(line["ChangeFailureRate"], json!(50.0));
    // One successful deployment in 7 days.
    assert_eq!(line["DeploymentsPerDay"], json!(1.0 / 7.0));
    // 10:05:00 -> production ended 10:30:01; failed at 09:25:00, restored at 10:30:01.
    assert_eq!(line["LeadTimeMedian"], json!(1501));
    assert_eq!(line["LeadTimeP90"], json!(1501));
    assert_eq!(line["TimeToRestoreMedian"], json!(3901));
    assert_eq!(line["Builds"], json!(2));
    assert!(line["AverageBuildSeconds"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn absent_values_are_left_out_rather_than_written_as_zero() {
    // Two weeks later the story is only in the 30 days before the period: no deployment, no build in the period.
    let store = story_store().await;
    let (digest, tags) = (digest(), payments());
    let run = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        at("2026-12-07T06:00:00Z"),
        "r-1",
    )
    .await
    .unwrap();
    let line = line_of(&run, "checkout-service");
    let names: Vec<String> = declared(&line).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["DeploymentsPerDay", "Deployments", "FailedDeployments", "Builds"]
    );
    for absent in [
        "ChangeFailureRate",
        "LeadTimeMedian",
        "LeadTimeP90",
        "TimeToRestoreMedian",
        "AverageBuildSeconds",
    ] {
        assert!(line.get(absent).is_none(), "{absent} is written: {line}");
    }
    assert_eq!(
        (&line["Deployments"], &line["DeploymentsPerDay"]),
        (&json!(0), &json!(0.0))
    );
}

#[tokio::test]
async fn the_digest_is_published_on_monday_and_not_on_tuesday() {
    let store = story_store().await;
    let tags = payments();

    let tuesday = digest();
    let run_tuesday = run(
        store.as_ref(),
        &tuesday.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        at("2026-11-24T06:00:00Z"),
        "r-1",
    )
    .await
    .unwrap();
    assert_eq!(run_tuesday.digest, DigestStatus::NotDue);
    assert!(tuesday.notifier.sent().is_empty());
    assert_eq!(run_tuesday.emf_lines.len(), 1, "metrics are written every day");

    let monday_digest = digest();
    let run_monday = run(
        store.as_ref(),
        &monday_digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-2",
    )
    .await
    .unwrap();
    assert_eq!(run_monday.digest, DigestStatus::Published);
    let sent = monday_digest.notifier.sent();
    assert_eq!(sent.len(), 1);
    let n = &sent[0];
    assert_eq!(n.key, "weekly_digest@2026-11-23");
    assert_eq!((n.kind, n.severity), (NotificationKind::WeeklyDigest, Severity::Info));
    assert_eq!(n.kind.as_str(), "weekly_digest");
    assert_eq!(serde_json::to_value(n.kind).unwrap(), json!("weekly_digest"));
    assert_eq!((n.account.as_str(), n.region.as_str()), ("111122223333", "eu-west-1"));
    assert_eq!(n.title, "Delivery digest: 2026-11-16 to 2026-11-22");
    let text = n.lines.join("\n");
    for expected in [
        "2 production deployments (1 failed) in 1 pipeline of 1 team.",
        "*Team payments* (1 pipeline): 2 deployments, 0.14/day (high) · CFR 50% (low) · lead time 25m 01s (elite) · \
         restore 1h 05m (high)",
        "• *checkout-service*: 2 deployments, 0.14/day (high) · CFR 50% (low) · lead time 25m 01s (elite) · \
         restore 1h 05m (high)",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(
        monday_digest.log.marker(&n.key),
        Some(tollgate_domain::record::ports::Mark::Sent)
    );

    // Another weekday when configured so.
    let tuesday_configured = digest();
    let settings = Settings {
        days: 7,
        digest_weekday: Weekday::Tue,
    };
    let run = run(
        store.as_ref(),
        &tuesday_configured.publisher,
        &tags,
        &no_audit(),
        &settings,
        at("2026-11-24T06:00:00Z"),
        "r-3",
    )
    .await
    .unwrap();
    assert_eq!(run.digest, DigestStatus::Published);
    assert_eq!(tuesday_configured.notifier.sent()[0].key, "weekly_digest@2026-11-24");
}

#[tokio::test]
async fn a_run_invoked_twice_sends_the_digest_once() {
    let store = story_store().await;
    let (digest, tags) = (digest(), payments());
    let event: Value = serde_json::from_str(SCHEDULED_EVENT).unwrap();
    let settings = Settings::default();
    let first = handle(
        &event,
        "r-1",
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &settings,
    )
    .await
    .unwrap();
    // A retry of the same scheduled invocation (same `time`), later, from another request.
    let second = handle(
        &event,
        "r-2",
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(
        (first.digest, second.digest),
        (DigestStatus::Published, DigestStatus::AlreadySent)
    );
    assert_eq!(digest.notifier.sent().len(), 1);
    assert_eq!(first.emf_lines, second.emf_lines, "the same period measures the same");
    assert_eq!(second.summary()["digest"], json!("already_sent"));
}

#[tokio::test]
async fn a_failed_digest_publish_fails_the_run_and_the_retry_sends_it() {
    let store = story_store().await;
    let (digest, tags) = (digest(), payments());
    digest.notifier.fail_next(1);
    let err = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap_err();
    assert!(err.retryable(), "{err}");
    assert!(Diagnostic::from(err).error_type.starts_with("Retryable."));
    let retry = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    assert_eq!(retry.digest, DigestStatus::Published);
    assert_eq!(digest.notifier.sent().len(), 1);
}

#[tokio::test]
async fn each_pipeline_configuration_is_looked_up_once_per_run() {
    let store = story_store().await;
    let (digest, tags) = (digest(), payments());
    run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    // Two executions of one pipeline: one lookup.
    assert_eq!(
        tags.calls(),
        [PipelineKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
        }]
    );
}

#[tokio::test]
async fn a_failed_configuration_lookup_fails_the_run_before_anything_is_sent() {
    let store = story_store().await;
    let digest = digest();
    let tags = FakeTags {
        fail: true,
        ..FakeTags::default()
    };
    let err = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MetricsError::Config(_)) && err.retryable(), "{err}");
    assert!(digest.notifier.sent().is_empty());
}

/// The story, moved to `account` and renamed `pipeline`, without the executions in `drop_executions` (their builds
/// and deployments stay, unreferenced).
fn story_variant(account: &str, pipeline: &str, drop_executions: &[&str]) -> Vec<Value> {
    let text = STORY
        .replace("111122223333", account)
        .replace("checkout-service", pipeline);
    let events: Vec<Value> = serde_json::from_str(&text).unwrap();
    events
        .into_iter()
        .filter(|e| {
            let id = e["detail"]["execution-id"].as_str().unwrap_or_default();
            !drop_executions.contains(&id)
        })
        .collect()
}

#[tokio::test]
async fn the_digest_lists_teams_and_pipelines_worst_first() {
    let store = story_store().await;
    // search-service (team "discovery", first by name) only has the successful execution: elite or high everywhere.
    ingest(
        &store,
        &story_variant("444455556666", "search-service", &[FAILED_EXECUTION]),
    )
    .await;
    let (digest, tags) = (
        digest(),
        FakeTags::teams(&[("checkout-service", "payments"), ("search-service", "discovery")]),
    );
    let run = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    assert_eq!(run.emf_lines.len(), 2);
    assert_eq!(line_of(&run, "search-service")["Team"], json!("discovery"));
    let sent = digest.notifier.sent();
    let n = &sent[0];
    assert_eq!(n.account, "multiple", "the digest covers two accounts");
    let lines: Vec<&str> = n.lines.iter().map(String::as_str).filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "3 production deployments (1 failed) in 2 pipelines of 2 teams."
    );
    assert_eq!(lines[1], "Needs attention most: *checkout-service* (payments)");
    assert!(lines[2].starts_with("*Team payments*"), "{lines:#?}");
    assert!(lines[3].starts_with("• *checkout-service*"), "{lines:#?}");
    assert!(lines[4].starts_with("*Team discovery*"), "{lines:#?}");
    assert!(
        lines[5].starts_with("• *search-service*: 1 deployment, 0.14/day (high) · CFR 0% (elite)"),
        "{lines:#?}"
    );
    assert!(n.next_steps[0].contains("checkout-service"), "{:?}", n.next_steps);
    // The chat document and the email carry it.
    let chat = n.chat_message();
    assert_eq!(chat["metadata"]["eventType"], json!("weekly_digest"));
    assert!(
        n.email_text().contains("Team payments (1 pipeline)"),
        "{}",
        n.email_text()
    );
}

/// The in-memory store, with its timeline reads slowed down by a yield and counted: the most reads in flight at once.
#[derive(Default)]
struct CountingQueries {
    inner: MemoryStore,
    in_flight: AtomicUsize,
    most: AtomicUsize,
    /// Executions whose record cannot be read.
    broken: Vec<String>,
}

#[async_trait]
impl TimelineQueries for CountingQueries {
    async fn execution_events(&self, key: &ExecutionKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.broken.contains(&key.account) {
            return Err(StoreError::Permanent(format!(
                "item of {} is not readable",
                key.execution_id
            )));
        }
        self.inner.execution_events(key).await
    }

    async fn build_events(&self, key: &BuildKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.build_events(key).await
    }

    async fn deployment_events(&self, key: &DeploymentKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.deployment_events(key).await
    }

    async fn stack_events(
        &self,
        key: &StackKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.stack_events(key, from, to).await
    }

    async fn executions(&self, pipeline: &PipelineKey, limit: usize) -> Result<Vec<ExecutionSummary>, StoreError> {
        self.inner.executions(pipeline, limit).await
    }

    async fn rejected(&self, day: NaiveDate, limit: usize) -> Result<Vec<Rejected>, StoreError> {
        self.inner.rejected(day, limit).await
    }

    async fn executions_started_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ExecutionKey>, StoreError> {
        self.inner.executions_started_between(from, to).await
    }
}

#[tokio::test]
async fn timelines_are_loaded_at_most_16_at_a_time_and_unreadable_ones_left_out() {
    // The story in 30 accounts: 60 executions of 30 pipelines named alike.
    let accounts: Vec<String> = (0..30).map(|i| format!("{:012}", 500_000_000_000u64 + i)).collect();
    let memory = Arc::new(MemoryStore::new());
    for account in &accounts {
        ingest(&memory, &story_variant(account, "checkout-service", &[])).await;
    }
    let store = CountingQueries {
        inner: Arc::try_unwrap(memory).ok().expect("the ingestor is gone"),
        broken: vec![accounts[0].clone()],
        ..CountingQueries::default()
    };
    let (digest, tags) = (digest(), payments());
    let run = run(
        &store,
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    assert_eq!(store.most.load(Ordering::SeqCst), CONCURRENCY);
    assert_eq!((run.executions, run.timelines, run.unreadable), (60, 58, 2));
    assert_eq!(run.emf_lines.len(), 29);
    assert_eq!(
        tags.calls().len(),
        29,
        "one lookup per pipeline (account, region, name)"
    );
}

#[tokio::test]
async fn a_run_with_nothing_recorded_writes_no_metric_and_says_so_in_the_digest() {
    let store = MemoryStore::new();
    let (digest, tags) = (digest(), payments());
    let run = run(
        &store,
        &digest.publisher,
        &tags,
        &no_audit(),
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    assert!(run.emf_lines.is_empty());
    assert!(tags.calls().is_empty());
    let sent = digest.notifier.sent();
    assert_eq!(sent[0].lines, ["No pipeline activity was recorded in the period."]);
}

/// The story's pipeline audit trail: the gate passing production after a 20-minute wait (two decisions, both
/// recorded), a gate decision that could not evaluate, a failed automatic rollback that took 1.5 s, a person's
/// override and approval; and, in another pipeline's scope that has no execution, an entry the run never reads.
async fn story_audit() -> MemoryAutomation {
    use tollgate_domain::audit::{AuditLog, NewAuditEntry};
    use tollgate_domain::gate::policy::{CheckKind, CheckResult, CheckStatus, Outcome};
    use tollgate_domain::gate::GateDecisions;

    let automation = no_audit();
    let scope = "pipeline:111122223333/eu-west-1/checkout-service";
    let alice = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
    let decision = |id: &str, outcome: Outcome, first: &str, decided: &str, checks: bool| GateDecision {
        id: id.into(),
        job_id: id.into(),
        decided_by: "tollgate:gate".into(),
        decided_at: at(decided),
        context: None,
        policy: None,
        outcome,
        summary: String::new(),
        checks: if checks {
            vec![CheckResult {
                check: CheckKind::Bake,
                status: CheckStatus::Pass,
                observed: "20m".into(),
                required: "20m".into(),
                earliest_pass: None,
                message: "baked".into(),
            }]
        } else {
            Vec::new()
        },
        explanation: String::new(),
        first_evaluated_at: at(first),
        previous: Vec::new(),
        answer: tollgate_domain::gate::JobAnswer::Failure {
            kind: tollgate_domain::gate::FailureKind::JobFailed,
            message: String::new(),
            external_execution_id: id.into(),
        },
        override_applied: None,
    };
    let wait = Outcome::Wait {
        recheck_at: at("2026-11-20T10:20:00Z"),
    };
    for d in [
        decision("j-wait", wait, "2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z", true),
        decision(
            "j-pass",
            Outcome::Pass,
            "2026-11-20T10:00:00Z",
            "2026-11-20T10:20:00Z",
            true,
        ),
        decision(
            "j-broken",
            Outcome::Fail,
            "2026-11-20T11:00:00Z",
            "2026-11-20T11:00:00Z",
            false,
        ),
    ] {
        automation.decisions.record_decision(&d).await.unwrap();
    }
    for (scope, time, actor, action, detail) in [
        (
            scope,
            "2026-11-20T10:00:00Z",
            "tollgate:gate",
            "gate.decision",
            json!({ "decision_id": "j-wait", "outcome": "wait" }),
        ),
        (
            scope,
            "2026-11-20T10:20:00Z",
            "tollgate:gate",
            "gate.decision",
            json!({ "decision_id": "j-pass", "outcome": "pass" }),
        ),
        (
            scope,
            "2026-11-20T11:00:00Z",
            "tollgate:gate",
            "gate.decision",
            json!({ "decision_id": "j-broken", "outcome": "fail" }),
        ),
        (
            scope,
            "2026-11-20T09:20:00Z",
            "tollgate:guard",
            "rollback.stop_deployment",
            json!({ "outcome": "failed", "duration_ms": 1500 }),
        ),
        (
            scope,
            "2026-11-20T09:30:00Z",
            alice,
            "override",
            json!({ "reason": "INC-7" }),
        ),
        (
            scope,
            "2026-11-20T09:40:00Z",
            alice,
            "approval.approve",
            json!({ "reason": "checked" }),
        ),
        (
            "pipeline:111122223333/eu-west-1/other",
            "2026-11-20T09:00:00Z",
            "tollgate:gate",
            "gate.decision",
            json!({}),
        ),
    ] {
        automation
            .audit
            .append(NewAuditEntry {
                scope: scope.into(),
                at: at(time),
                actor: actor.into(),
                action: action.into(),
                subject: "s".into(),
                detail,
            })
            .await
            .unwrap();
    }
    automation
}

#[tokio::test]
async fn automation_health_is_written_overall_and_by_family_and_added_to_the_digest() {
    let store = story_store().await;
    let (digest, tags, automation) = (digest(), payments(), story_audit().await);
    let run = run(
        store.as_ref(),
        &digest.publisher,
        &tags,
        &automation,
        &Settings::default(),
        monday(),
        "r-1",
    )
    .await
    .unwrap();
    assert_eq!((run.audit_entries, run.gate_decisions), (6, 3));
    let a = &run.report.automation;
    // Gate: 3 decisions, 1 could not evaluate; rollback: 1, failed. 2 errors of 4.
    assert_eq!((a.actions, a.errors, a.error_rate), (4, 2, Some(0.5)));
    assert_eq!(
        a.families["gate"].latency_ms.median,
        Some(0),
        "the broken decision: 0 ms"
    );
    assert_eq!(
        a.families["gate"].latency_ms.p90,
        Some(1_200_000),
        "the pass after a 20-minute wait"
    );
    // The story has 2 production deployments; 1 approval + 1 override = 1 fallback per deployment.
    assert_eq!((a.manual.total, a.manual.per_production_deployment), (2, Some(1.0)));

    assert_eq!(run.automation_emf_lines.len(), 3, "overall, gate, rollback");
    let lines: Vec<Value> = run
        .automation_emf_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let metrics = &lines[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(metrics["Namespace"], json!("Tollgate/Automation"));
    assert_eq!(metrics["Dimensions"], json!([[]]));
    assert_eq!(
        (
            &lines[0]["Actions"],
            &lines[0]["ActionErrorRate"],
            &lines[0]["ManualFallbacks"],
            &lines[0]["Overrides"]
        ),
        (&json!(4), &json!(50.0), &json!(2), &json!(1))
    );
    assert_eq!(
        lines[0]["_aws"]["Timestamp"],
        json!(at("2026-11-23T00:00:00Z").timestamp_millis())
    );
    assert_eq!(lines[1]["Family"], json!("gate"));
    assert_eq!(
        lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Family"]])
    );
    assert_eq!(
        (&lines[1]["LatencyMedian"], &lines[1]["LatencyP90"]),
        (&json!(0), &json!(1_200_000))
    );
    assert_eq!(
        (
            &lines[2]["Family"],
            &lines[2]["ActionErrors"],
            &lines[2]["LatencyMedian"]
        ),
        (&json!("rollback"), &json!(1), &json!(1500))
    );

    let sent = digest.notifier.sent();
    let lines = &sent[0].lines;
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "Automation: 4 actions, 2 errors (50.0%): gate 3 (1 errors, median latency 0 ms), rollback 1 (1 errors, median latency 1.5 s)",
            "Manual fallbacks: 2 (1.00 per production deployment): 1 approvals, 1 overrides, 0 manual rollbacks, 0 deployments stopped by hand",
        ]
    );
    assert_eq!(run.summary()["audit_entries"], json!(6));
}

/// An audit trail whose reads fail as the store says.
struct FailingAudit(StoreError);

#[async_trait]
impl AutomationRecords for FailingAudit {
    async fn audit_since(
        &self,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Vec<tollgate_domain::audit::AuditEntry>, StoreError> {
        Err(self.0.clone())
    }
    async fn gate_decision(&self, _: &str) -> Result<Option<GateDecision>, StoreError> {
        Ok(None)
    }
}

#[tokio::test]
async fn an_unreadable_audit_trail_fails_the_run_before_anything_is_written() {
    let store = story_store().await;
    for (error, retryable) in [
        (StoreError::Transient("ThrottlingException".into()), true),
        (StoreError::Permanent("AccessDeniedException".into()), false),
    ] {
        let (digest, tags) = (digest(), payments());
        let err = run(
            store.as_ref(),
            &digest.publisher,
            &tags,
            &FailingAudit(error),
            &Settings::default(),
            monday(),
            "r-1",
        )
        .await
        .unwrap_err();
        assert_eq!(err.retryable(), retryable, "{err}");
        assert!(err.to_string().contains("audit trail of "), "{err}");
        assert!(digest.notifier.sent().is_empty());
        let diagnostic = Diagnostic::from(err);
        assert!(diagnostic.error_type.ends_with(".Audit"), "{diagnostic:?}");
    }
}

#[tokio::test]
async fn the_audit_trail_is_read_newest_first_only_as_far_back_as_needed() {
    use tollgate_domain::audit::{AuditLog, NewAuditEntry};
    let automation = no_audit();
    // 300 entries an hour apart, the last at 2026-11-22T23:00: those from 2026-11-20T00:00 on are the last 72.
    let first = at("2026-11-10T12:00:00Z");
    for i in 0..300 {
        automation
            .audit
            .append(NewAuditEntry {
                scope: "global".into(),
                at: first + Duration::hours(i),
                actor: "tollgate:guard".into(),
                action: "rollback.x".into(),
                subject: "s".into(),
                detail: json!({}),
            })
            .await
            .unwrap();
    }
    let read = automation
        .audit_since("global", at("2026-11-20T00:00:00Z"))
        .await
        .unwrap();
    // Pages of 64 then 128: the second reaches before the start.
    assert_eq!(read.len(), 128);
    assert_eq!(read.iter().filter(|e| e.at >= at("2026-11-20T00:00:00Z")).count(), 72);
}
