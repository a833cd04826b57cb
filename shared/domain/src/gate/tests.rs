use super::*;
use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::gate::policy::{AlarmFact, Facts, FreezeBound, Outcome, Policy};
use crate::memory::*;

use crate::record::ports::StoreError;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn continuation_round_trips_and_counts_evaluations() {
    let first = at("2026-11-20T14:10:00Z");
    let one = Continuation::after(None, first, "job-1");
    let two = Continuation::after(Some(&one), first, "job-2");
    let decoded = Continuation::decode(&two.encode()).unwrap();
    assert_eq!(decoded, two);
    assert_eq!(decoded.first_evaluated_at(), first);
    assert_eq!(decoded.evaluations, 2);
    assert_eq!(decoded.decisions, vec!["job-1", "job-2"]);
    assert_eq!(two.encode(), r#"{"v":1,"f":1795183800,"n":2,"d":["job-1","job-2"]}"#);
}

#[test]
fn continuation_stays_within_the_api_limit_keeping_the_first_and_latest_ids() {
    let first = at("2026-11-20T14:10:00Z");
    let mut c: Option<Continuation> = None;
    for i in 0..500 {
        let id = format!("{i:08}-aaaa-bbbb-cccc-dddddddddddd");
        c = Some(Continuation::after(c.as_ref(), first, &id));
        c = Some(Continuation::decode(&c.unwrap().encode()).unwrap());
    }
    let c = c.unwrap();
    let token = c.encode();
    assert!(token.chars().count() <= MAX_CONTINUATION_TOKEN_CHARS, "{}", token.len());
    assert_eq!(c.evaluations, 500);
    assert!(c.decisions[0].starts_with("00000000"));
    assert!(c.decisions.last().unwrap().starts_with("00000499"));
}

#[test]
fn foreign_continuation_tokens_are_refused() {
    assert!(Continuation::decode("a72fe5a4-fad6-4d74-9a4c-25da97a186d6").is_err());
    assert!(Continuation::decode(r#"{"v":2,"f":1,"n":1,"d":[]}"#).is_err());
}

#[test]
fn truncation_keeps_the_limit_and_says_so() {
    let long = "x".repeat(6000);
    let cut = truncate_with_note(&long, MAX_FAILURE_MESSAGE_CHARS, "see decision d-1");
    assert_eq!(cut.chars().count(), MAX_FAILURE_MESSAGE_CHARS);
    assert!(cut.ends_with("more characters; see decision d-1)"), "{}", &cut[4900..]);
    assert_eq!(truncate_with_note("short", 10, "x"), "short");
}

#[test]
fn credentials_never_show_in_debug() {
    let c = ArtifactCredentials {
        access_key_id: "AKIA-SHOWN".into(),
        secret_access_key: "SECRET".into(),
        session_token: "TOKEN".into(),
    };
    let shown = format!("{c:?}");
    assert!(!shown.contains("AKIA") && !shown.contains("SECRET") && !shown.contains("TOKEN"));
}
// ------------------------------------------------------------------ gathering facts

use crate::memory::MemoryStore;
use crate::record::ports::EventRecorder;

async fn record(store: &MemoryStore, pipeline: &str, execution: &str, stage: Option<&str>, state: &str, at: &str) {
    let (detail_type, detail) = match stage {
        Some(stage) => (
            "CodePipeline Stage Execution State Change",
            serde_json::json!({"pipeline": pipeline, "execution-id": execution, "stage": stage, "state": state}),
        ),
        None => (
            "CodePipeline Pipeline Execution State Change",
            serde_json::json!({"pipeline": pipeline, "execution-id": execution, "state": state}),
        ),
    };
    let body = serde_json::json!({"version": "0", "id": "x", "detail-type": detail_type, "source": "aws.codepipeline",
        "account": "111122223333", "time": at, "region": "eu-west-1", "resources": [], "detail": detail});
    let event = crate::record::parse::parse_event(body.to_string().as_bytes()).unwrap();
    store.record(&event).await.unwrap();
}

fn job_context() -> JobContext {
    JobContext {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        action: "Gate".into(),
        execution_id: "prod-1".into(),
    }
}

async fn facts_for(policy: &str, store: &MemoryStore, now: DateTime<Utc>) -> (Facts, MemoryCloudWatch) {
    let policy = crate::gate::policy::parse_policy("p.yaml", policy).unwrap();
    let cloudwatch = MemoryCloudWatch::new().with_metric(Ok(1234.0));
    let approvals = MemoryGateStore::new();
    let sources = FactSources {
        alarms: &cloudwatch,
        metrics: &cloudwatch,
        timelines: store,
        approvals: &approvals,
        leases: &approvals,
    };
    (
        gather_facts(&policy, &job_context(), now, now, &sources).await,
        cloudwatch,
    )
}

#[tokio::test]
async fn only_the_facts_the_policy_needs_are_gathered() {
    let store = MemoryStore::new();
    let (facts, cloudwatch) = facts_for(
        "version: 1\nname: p\nmax_wait: 1h\n",
        &store,
        at("2026-11-20T14:00:00Z"),
    )
    .await;
    assert_eq!(
        facts,
        Facts::new(at("2026-11-20T14:00:00Z"), at("2026-11-20T14:00:00Z"))
    );
    assert!(cloudwatch.asked().is_empty());
}

#[tokio::test]
async fn bake_from_another_pipeline_is_its_latest_run_of_the_stage() {
    let store = MemoryStore::new();
    let policy = "version: 1\nname: p\nmax_wait: 1h\nbake:\n  after_stage: Staging\n  pipeline: checkout-staging\n  duration: 1h\n  min_requests: {namespace: N, metric: M, at_least: 10}\n";
    // An older execution succeeded in Staging; the newest one never reached it (failed in Build).
    record(
        &store,
        "checkout-staging",
        "s-1",
        None,
        "STARTED",
        "2026-11-20T10:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-1",
        Some("Staging"),
        "SUCCEEDED",
        "2026-11-20T11:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-2",
        None,
        "STARTED",
        "2026-11-20T12:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-2",
        Some("Build"),
        "FAILED",
        "2026-11-20T12:05:00Z",
    )
    .await;
    let (facts, cloudwatch) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
    assert_eq!(
        facts.bake_stage_succeeded_at,
        Some(Ok(Some(at("2026-11-20T11:00:00Z"))))
    );
    assert_eq!(facts.bake_requests, Some(Ok(1234.0)));
    assert_eq!(cloudwatch.asked(), vec!["metric N/M".to_string()]);

    // A newer execution is deploying Staging now: the stage's latest run has not succeeded yet.
    record(
        &store,
        "checkout-staging",
        "s-3",
        None,
        "STARTED",
        "2026-11-20T13:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-3",
        Some("Staging"),
        "STARTED",
        "2026-11-20T13:10:00Z",
    )
    .await;
    let (facts, cloudwatch) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
    assert_eq!(facts.bake_stage_succeeded_at, Some(Ok(None)));
    assert_eq!(facts.bake_requests, None);
    assert!(
        cloudwatch.asked().is_empty(),
        "no traffic is read before the bake time has passed"
    );
}

#[tokio::test]
async fn an_upstream_failure_counts_until_a_success_follows_it() {
    let store = MemoryStore::new();
    let policy =
        "version: 1\nname: p\nmax_wait: 1h\nupstream:\n  pipeline: checkout-staging\n  no_unrestored_failure_for: 1h\n";
    record(
        &store,
        "checkout-staging",
        "s-1",
        None,
        "STARTED",
        "2026-11-20T12:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-1",
        None,
        "SUCCEEDED",
        "2026-11-20T12:20:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-2",
        None,
        "STARTED",
        "2026-11-20T13:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-2",
        None,
        "FAILED",
        "2026-11-20T13:20:00Z",
    )
    .await;
    let (facts, _) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
    assert_eq!(
        facts.upstream_unrestored_failure_at,
        Some(Ok(Some(at("2026-11-20T13:20:00Z"))))
    );
    record(
        &store,
        "checkout-staging",
        "s-3",
        None,
        "STARTED",
        "2026-11-20T13:30:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-3",
        None,
        "SUCCEEDED",
        "2026-11-20T13:50:00Z",
    )
    .await;
    let (facts, _) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
    assert_eq!(facts.upstream_unrestored_failure_at, Some(Ok(None)));
}

#[tokio::test]
async fn an_upstream_stage_failure_is_read_from_the_timelines() {
    let store = MemoryStore::new();
    let policy = "version: 1\nname: p\nmax_wait: 1h\nupstream:\n  pipeline: checkout-staging\n  stage: Integration\n  no_unrestored_failure_for: 1h\n";
    record(
        &store,
        "checkout-staging",
        "s-1",
        None,
        "STARTED",
        "2026-11-20T13:00:00Z",
    )
    .await;
    record(
        &store,
        "checkout-staging",
        "s-1",
        Some("Integration"),
        "FAILED",
        "2026-11-20T13:20:00Z",
    )
    .await;
    let (facts, _) = facts_for(policy, &store, at("2026-11-20T14:00:00Z")).await;
    assert_eq!(
        facts.upstream_unrestored_failure_at,
        Some(Ok(Some(at("2026-11-20T13:20:00Z"))))
    );
}

// ------------------------------------------------------------------ concurrency: deployment leases

const CONCURRENT: &str = "version: 1\nname: p\nmax_wait: 1h\nconcurrency:\n  environment: production\n  wave: 1\n";

fn ctx_of(pipeline: &str, execution: &str) -> JobContext {
    JobContext {
        pipeline: pipeline.into(),
        execution_id: execution.into(),
        ..job_context()
    }
}

async fn in_progress(
    leases: &MemoryGateStore,
    store: &MemoryStore,
    policy: &Policy,
    ctx: &JobContext,
) -> Result<Vec<String>, String> {
    let cloudwatch = MemoryCloudWatch::new();
    let sources = FactSources {
        alarms: &cloudwatch,
        metrics: &cloudwatch,
        timelines: store,
        approvals: leases,
        leases,
    };
    let now = at("2026-11-20T14:00:00Z");
    gather_facts(policy, ctx, now, now, &sources)
        .await
        .deployments_in_progress
        .unwrap()
}

#[tokio::test]
async fn a_lease_is_held_while_its_execution_is_in_progress_and_freed_when_it_ends() {
    let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
    let policy = crate::gate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
    let now = at("2026-11-20T14:00:00Z");
    let (payments, checkout) = (ctx_of("payments", "pay-1"), ctx_of("checkout-service", "prod-1"));
    record(&store, "payments", "pay-1", None, "STARTED", "2026-11-20T13:50:00Z").await;

    // Nobody holds it: free for both, and the first gate to pass takes it.
    assert_eq!(in_progress(&leases, &store, &policy, &checkout).await, Ok(vec![]));
    let claimed = claim_deployment_lease(&policy, &payments, "job-p", &leases, &store, now).await;
    assert_eq!(claimed, LeaseResult::Acquired);
    let lease = leases.lease("production", Some("1")).await.unwrap().unwrap();
    assert_eq!(
        (lease.holder.pipeline.as_str(), lease.decision_id.as_str()),
        ("payments", "job-p")
    );
    assert_eq!(lease.expires_at, now + LEASE_EXPIRY);

    // Another execution waits for it; the holder re-evaluating keeps it.
    let held = "payments execution pay-1 (Production, since 2026-11-20 14:00 UTC)".to_string();
    assert_eq!(
        in_progress(&leases, &store, &policy, &checkout).await,
        Ok(vec![held.clone()])
    );
    assert_eq!(in_progress(&leases, &store, &policy, &payments).await, Ok(vec![]));
    let later = now + chrono::TimeDelta::minutes(5);
    assert_eq!(
        claim_deployment_lease(&policy, &checkout, "job-c", &leases, &store, later).await,
        LeaseResult::HeldBy(vec![held])
    );
    assert_eq!(
        claim_deployment_lease(&policy, &payments, "job-p2", &leases, &store, later).await,
        LeaseResult::Acquired
    );
    let renewed = leases.lease("production", Some("1")).await.unwrap().unwrap();
    assert_eq!(renewed.acquired_at, now, "a renewal keeps the first acquisition");
    assert_eq!(renewed.expires_at, later + LEASE_EXPIRY);

    // The holder's execution ends: the lease is free and the next gate replaces it.
    record(&store, "payments", "pay-1", None, "SUCCEEDED", "2026-11-20T14:10:00Z").await;
    assert_eq!(in_progress(&leases, &store, &policy, &checkout).await, Ok(vec![]));
    assert_eq!(
        claim_deployment_lease(&policy, &checkout, "job-c2", &leases, &store, later).await,
        LeaseResult::Acquired
    );
    let now_held = leases.lease("production", Some("1")).await.unwrap().unwrap();
    assert_eq!(now_held.holder, checkout.execution_key());
}

#[tokio::test]
async fn failed_superseded_and_expired_holders_free_the_lease() {
    let policy = crate::gate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
    let checkout = ctx_of("checkout-service", "prod-1");
    for (state, now) in [
        (Some("FAILED"), "2026-11-20T14:00:00Z"),
        (Some("SUPERSEDED"), "2026-11-20T14:00:00Z"),
        (Some("STOPPED"), "2026-11-20T14:00:00Z"),
        // No end recorded, but the lease is older than LEASE_EXPIRY: a stuck lease clears itself.
        (None, "2026-11-21T13:00:01Z"),
    ] {
        let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
        record(&store, "payments", "pay-1", None, "STARTED", "2026-11-20T12:00:00Z").await;
        let payments = ctx_of("payments", "pay-1");
        let took = at("2026-11-20T13:00:00Z");
        assert_eq!(
            claim_deployment_lease(&policy, &payments, "j", &leases, &store, took).await,
            LeaseResult::Acquired
        );
        if let Some(state) = state {
            record(&store, "payments", "pay-1", None, state, "2026-11-20T13:30:00Z").await;
        }
        let claimed = claim_deployment_lease(&policy, &checkout, "k", &leases, &store, at(now)).await;
        assert_eq!(claimed, LeaseResult::Acquired, "{state:?}");
        let lease = leases.lease("production", Some("1")).await.unwrap().unwrap();
        assert_eq!(lease.holder, checkout.execution_key(), "{state:?}");
    }
}

#[tokio::test]
async fn a_holder_with_no_recorded_events_yet_counts_as_in_progress() {
    let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
    let policy = crate::gate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
    let now = at("2026-11-20T14:00:00Z");
    claim_deployment_lease(&policy, &ctx_of("payments", "pay-1"), "j", &leases, &store, now).await;
    let others = in_progress(&leases, &store, &policy, &ctx_of("checkout-service", "prod-1"))
        .await
        .unwrap();
    assert_eq!(others.len(), 1);
    assert!(others[0].starts_with("payments execution pay-1"), "{others:?}");
}

#[tokio::test]
async fn of_two_gates_that_saw_the_lease_free_exactly_one_takes_it() {
    let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
    let policy = crate::gate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
    let now = at("2026-11-20T14:00:00Z");
    let (a, b) = (ctx_of("payments", "pay-1"), ctx_of("search", "s-1"));
    // Both evaluated the lease free...
    assert_eq!(in_progress(&leases, &store, &policy, &a).await, Ok(vec![]));
    assert_eq!(in_progress(&leases, &store, &policy, &b).await, Ok(vec![]));
    // ... and both passed: the claims run concurrently.
    let (ra, rb) = tokio::join!(
        claim_deployment_lease(&policy, &a, "ja", &leases, &store, now),
        claim_deployment_lease(&policy, &b, "jb", &leases, &store, now)
    );
    let won = [&ra, &rb].iter().filter(|r| ***r == LeaseResult::Acquired).count();
    assert_eq!(won, 1, "{ra:?} {rb:?}");
    assert!(matches!(ra, LeaseResult::HeldBy(_)) || matches!(rb, LeaseResult::HeldBy(_)));
}

#[tokio::test]
async fn waves_and_environments_have_their_own_leases_and_no_policy_needs_none() {
    let (leases, store) = (MemoryGateStore::new(), MemoryStore::new());
    let now = at("2026-11-20T14:00:00Z");
    let wave2 = crate::gate::policy::parse_policy("p.yaml", &CONCURRENT.replace("wave: 1", "wave: 2")).unwrap();
    let wave1 = crate::gate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
    claim_deployment_lease(&wave1, &ctx_of("payments", "pay-1"), "j", &leases, &store, now).await;
    assert_eq!(
        claim_deployment_lease(&wave2, &ctx_of("search", "s-1"), "k", &leases, &store, now).await,
        LeaseResult::Acquired
    );
    assert_eq!(lease_pk("production", Some("1")), "LEASE#production#WAVE#1");
    assert_eq!(lease_pk("staging", None), "LEASE#staging");
    let none = crate::gate::policy::parse_policy("p.yaml", "version: 1\nname: p\nmax_wait: 1h\n").unwrap();
    assert_eq!(
        claim_deployment_lease(&none, &ctx_of("x", "y"), "z", &leases, &store, now).await,
        LeaseResult::NotNeeded
    );
}

struct BrokenLeases;

#[async_trait]
impl DeploymentLeases for BrokenLeases {
    async fn lease(&self, _: &str, _: Option<&str>) -> Result<Option<DeploymentLease>, StoreError> {
        Err(StoreError::Transient("ThrottlingException".into()))
    }
    async fn claim_lease(&self, _: &DeploymentLease, _: Option<&DeploymentLease>) -> Result<LeaseClaim, StoreError> {
        Err(StoreError::Transient("ThrottlingException".into()))
    }
}

#[tokio::test]
async fn an_unreadable_lease_is_an_error_of_the_check() {
    let store = MemoryStore::new();
    let policy = crate::gate::policy::parse_policy("p.yaml", CONCURRENT).unwrap();
    let cloudwatch = MemoryCloudWatch::new();
    let approvals = MemoryGateStore::new();
    let sources = FactSources {
        alarms: &cloudwatch,
        metrics: &cloudwatch,
        timelines: &store,
        approvals: &approvals,
        leases: &BrokenLeases,
    };
    let now = at("2026-11-20T14:00:00Z");
    let facts = gather_facts(&policy, &job_context(), now, now, &sources).await;
    let err = facts.deployments_in_progress.unwrap().unwrap_err();
    assert!(
        err.contains("cannot read the deployment lease") && err.contains("Throttling"),
        "{err}"
    );
    match claim_deployment_lease(&policy, &job_context(), "j", &BrokenLeases, &store, now).await {
        LeaseResult::Error(why) => assert!(why.contains("Throttling"), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ alarms by tag

fn alarm(name: &str, state: crate::gate::policy::AlarmState) -> AlarmFact {
    AlarmFact {
        name: name.into(),
        state,
        since: at("2026-11-20T13:00:00Z"),
    }
}

#[tokio::test]
async fn tagged_alarms_join_the_named_ones() {
    use crate::gate::policy::AlarmState::{Alarm, Ok as Fine};
    let index = MemoryAlarmTags::new()
        .with_alarm("checkout-5xx", &[("service", "checkout"), ("team", "payments")])
        .with_alarm("checkout-latency", &[("service", "checkout")])
        .with_alarm("search-5xx", &[("service", "search")]);
    let states = MemoryCloudWatch::new().with_alarms(Ok(vec![
        alarm("checkout-5xx", Alarm),
        alarm("checkout-latency", Fine),
        alarm("search-5xx", Alarm),
        alarm("named", Fine),
    ]));
    let alarms = TaggedAlarms::new(index, states);
    let tags = BTreeMap::from([("service".to_string(), "checkout".to_string())]);
    let found = alarms
        .alarm_states(&["named".into(), "checkout-5xx".into()], &tags)
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["checkout-5xx", "checkout-latency", "named"]);
    assert_eq!(
        alarms.states.asked(),
        vec!["alarms named,checkout-5xx,checkout-latency".to_string()]
    );

    let both = BTreeMap::from([
        ("service".to_string(), "checkout".to_string()),
        ("team".to_string(), "payments".to_string()),
    ]);
    let found = alarms.alarm_states(&[], &both).await.unwrap();
    assert_eq!(
        found.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["checkout-5xx"]
    );
}

#[tokio::test]
async fn tags_that_select_no_alarm_or_cannot_be_read_are_errors() {
    let index = MemoryAlarmTags::new().with_alarm("search-5xx", &[("service", "search")]);
    let alarms = TaggedAlarms::new(index, MemoryCloudWatch::new());
    let tags = BTreeMap::from([("service".to_string(), "checkout".to_string())]);
    let err = alarms.alarm_states(&["named".into()], &tags).await.unwrap_err();
    assert_eq!(
        err.0,
        "no CloudWatch alarm carries the tags service=checkout (tag:GetResources found none in this account and region)"
    );
    assert!(
        alarms.states.asked().is_empty(),
        "no alarm state is read for a selection that failed"
    );

    let alarms = TaggedAlarms::new(
        MemoryAlarmTags::new().failing("AccessDeniedException"),
        MemoryCloudWatch::new(),
    );
    let err = alarms.alarm_states(&[], &tags).await.unwrap_err();
    assert_eq!(
        err.0,
        "cannot find the alarms tagged service=checkout: AccessDeniedException"
    );

    // Without tags the index is never asked.
    let alarms = TaggedAlarms::new(MemoryAlarmTags::new().failing("never"), MemoryCloudWatch::new());
    assert!(alarms.alarm_states(&["named".into()], &BTreeMap::new()).await.is_ok());
}

#[test]
fn freeze_scopes_are_global_or_a_pipeline() {
    assert_eq!(parse_freeze_scope(" global ").unwrap(), "global");
    let p = "pipeline:111122223333/eu-west-1/checkout-service";
    assert_eq!(parse_freeze_scope(p).unwrap(), p);
    for bad in [
        "",
        "pipeline:checkout",
        "pipeline:1/r/",
        "pipeline:1/r/p/x",
        "Global",
        "account:1",
    ] {
        assert!(parse_freeze_scope(bad).is_err(), "{bad}");
    }
    assert_eq!(freeze_scopes(&job_context()), vec![p.to_string(), "global".into()]);
    assert_eq!(freeze_pk("global"), "FREEZE#global");
    assert_eq!(
        override_pk(&job_context().approval_key()),
        "OVERRIDE#111122223333#eu-west-1#checkout-service#prod-1#Production"
    );
}

#[test]
fn ad_hoc_freezes_join_the_policys_unless_they_are_over() {
    let policy = crate::gate::policy::parse_policy("p.yaml", "version: 1\nname: p\nmax_wait: 1h\n").unwrap();
    let record = |until: &str| FreezeRecord {
        scope: "global".into(),
        from: FreezeBound::parse("2026-11-20").unwrap(),
        until: FreezeBound::parse(until).unwrap(),
        reason: "INC-42".into(),
        by: "arn:aws:iam::1:user/bob".into(),
        at: at("2026-11-20T09:00:00Z"),
    };
    let now = at("2026-11-21T12:00:00Z");
    let p = with_ad_hoc_freezes(&policy, &[record("2026-11-22"), record("2026-11-20")], now);
    let freezes = p.freezes.unwrap();
    assert_eq!(freezes.len(), 1);
    assert_eq!(freezes[0].name, "ad-hoc freeze by arn:aws:iam::1:user/bob: INC-42");
    assert_eq!(with_ad_hoc_freezes(&policy, &[record("2026-11-20")], now).freezes, None);
}

#[test]
fn a_blocked_gate_reads_in_chat_with_its_explanation() {
    let decision = GateDecision {
        id: "job-1".into(),
        job_id: "job-1".into(),
        decided_by: GATE_PRINCIPAL.into(),
        decided_at: at("2026-11-20T14:28:00Z"),
        context: Some(job_context()),
        policy: Some(PolicyRef {
            file: "policies/production.yaml".into(),
            name: "production-gate".into(),
        }),
        outcome: Outcome::Fail,
        summary: "failed: alarms".into(),
        checks: vec![],
        explanation: "FAIL: failed: alarms\n  ✗ alarms       alarm x in ALARM\n".into(),
        first_evaluated_at: at("2026-11-20T14:28:00Z"),
        previous: vec![],
        answer: JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: "m".into(),
            external_execution_id: "job-1".into(),
        },
        override_applied: None,
    };
    let n = gate_blocked_notification(&decision);
    assert_eq!((n.kind.as_str(), n.severity.as_str()), ("gate_blocked", "warning"));
    assert_eq!(n.title, "checkout-service: production-gate blocked Production / Gate");
    assert_eq!(n.thread, "checkout-service/prod-1");
    assert_eq!(n.lines[1], "  ✗ alarms       alarm x in ALARM");
    assert_eq!(n.key, "gate_blocked@job-1");
}
