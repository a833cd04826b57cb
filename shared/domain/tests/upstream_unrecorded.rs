//! An upstream the gate has never seen is an error of the check (failing closed by default), never "no failures".

use chrono::{DateTime, Utc};
use tollgate_domain::gate::policy::{evaluate, parse_policy, CheckKind, CheckStatus, Outcome};
use tollgate_domain::gate::{gather_facts, FactSources, JobContext};
use tollgate_domain::memory::MemoryStore;
use tollgate_domain::memory::{MemoryCloudWatch, MemoryGateStore};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ctx() -> JobContext {
    JobContext {
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        action: "Gate".into(),
        execution_id: "prod-1".into(),
    }
}

async fn decide(policy: &str, store: &MemoryStore) -> tollgate_domain::gate::policy::Decision {
    let policy = parse_policy("p.yaml", policy).unwrap();
    let cloudwatch = MemoryCloudWatch::new();
    let approvals = MemoryGateStore::new();
    let sources = FactSources {
        alarms: &cloudwatch,
        metrics: &cloudwatch,
        timelines: store,
        approvals: &approvals,
        leases: &approvals,
    };
    let now = at("2026-11-20T14:00:00Z");
    let facts = gather_facts(&policy, &ctx(), now, now, &sources).await;
    evaluate(&policy, &facts)
}

async fn record_success(store: &MemoryStore, pipeline: &str) {
    for (state, time) in [
        ("STARTED", "2026-11-20T12:00:00Z"),
        ("SUCCEEDED", "2026-11-20T12:20:00Z"),
    ] {
        let body = serde_json::json!({"version": "0", "id": format!("{pipeline}-{state}"),
            "detail-type": "CodePipeline Pipeline Execution State Change", "source": "aws.codepipeline",
            "account": "111122223333", "time": time, "region": "eu-west-1", "resources": [],
            "detail": {"pipeline": pipeline, "execution-id": "s-1", "state": state}});
        store
            .record(&parse_event(body.to_string().as_bytes()).unwrap())
            .await
            .unwrap();
    }
}

const POLICY: &str =
    "version: 1\nname: p\nmax_wait: 1h\nupstream:\n  pipeline: checkout-stagin\n  no_unrestored_failure_for: 1h\n";

#[tokio::test]
async fn a_pipeline_never_recorded_fails_the_gate_saying_so() {
    let store = MemoryStore::new();
    record_success(&store, "checkout-staging").await;
    let d = decide(POLICY, &store).await;
    assert_eq!(d.outcome, Outcome::Fail, "{}", d.explain());
    let check = d.check(CheckKind::Upstream).unwrap();
    assert_eq!(check.status, CheckStatus::Error);
    assert!(
        check.message.contains("no execution of checkout-stagin is recorded"),
        "{}",
        check.message
    );
    assert!(d.summary.contains("upstream"), "{}", d.summary);
}

#[tokio::test]
async fn a_stage_never_run_upstream_fails_the_gate() {
    let store = MemoryStore::new();
    record_success(&store, "checkout-staging").await;
    let policy = POLICY.replace("checkout-stagin\n", "checkout-staging\n  stage: Integration\n");
    let d = decide(&policy, &store).await;
    assert_eq!(d.outcome, Outcome::Fail, "{}", d.explain());
    assert!(d.summary.contains("ran stage Integration"), "{}", d.summary);
}

#[tokio::test]
async fn a_recorded_healthy_upstream_still_passes() {
    let store = MemoryStore::new();
    record_success(&store, "checkout-staging").await;
    let d = decide(&POLICY.replace("checkout-stagin\n", "checkout-staging\n"), &store).await;
    assert_eq!(d.outcome, Outcome::Pass, "{}", d.explain());
}
