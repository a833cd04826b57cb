//! The hook's domain: its invocation, the alarm and probe verdicts, the probe URL and the once-only result.

use chrono::{TimeZone, Utc};
use serde_json::json;
use tollgate_domain::gate::policy::{AlarmFact, AlarmState};
use tollgate_domain::rollback::hook::{
    judge_alarms, verdict, CheckOutcome, HookInvocation, HookResult, HookResults, HookStatus, HookWrite,
    InsufficientData, MemoryHookResults, ProbeUrl,
};

fn fact(name: &str, state: AlarmState) -> AlarmFact {
    AlarmFact {
        name: name.into(),
        state,
        since: Utc.with_ymd_and_hms(2026, 11, 20, 14, 0, 0).unwrap(),
    }
}

#[test]
fn the_sample_invocation_parses_and_others_are_refused_naming_the_field() {
    let text = std::fs::read_to_string(format!(
        "{}/../../events/hook/lifecycle-hook.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let inv = HookInvocation::from_value(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(inv.deployment_id, "d-9ZPLQX4KO");
    let err = HookInvocation::from_value(&json!({"DeploymentId": "d-1"})).unwrap_err();
    assert!(err.to_string().contains("LifecycleEventHookExecutionId"), "{err}");
    let err =
        HookInvocation::from_value(&json!({"DeploymentId": 3, "LifecycleEventHookExecutionId": "x"})).unwrap_err();
    assert!(err.to_string().contains("`DeploymentId`"), "{err}");
}

#[test]
fn an_alarm_in_alarm_or_missing_fails_and_insufficient_data_counts_as_configured() {
    let names = vec![
        "a-ok".to_string(),
        "b-alarm".to_string(),
        "c-missing".to_string(),
        "d-nodata".to_string(),
    ];
    let facts = vec![
        fact("a-ok", AlarmState::Ok),
        fact("b-alarm", AlarmState::Alarm),
        fact("d-nodata", AlarmState::InsufficientData),
    ];
    let passed: Vec<bool> = judge_alarms(&names, &facts, InsufficientData::Pass)
        .iter()
        .map(|o| o.passed)
        .collect();
    assert_eq!(passed, vec![true, false, false, true]);
    let strict = judge_alarms(&names, &facts, InsufficientData::Fail);
    assert!(!strict[3].passed);
    assert!(strict[2].detail.contains("not found"));
    assert_eq!(verdict(&strict), HookStatus::Failed);
}

#[test]
fn succeeded_needs_every_check_passing_and_at_least_one_check() {
    let ok = CheckOutcome {
        check: "alarm a".into(),
        passed: true,
        detail: "OK".into(),
    };
    assert_eq!(verdict(std::slice::from_ref(&ok)), HookStatus::Succeeded);
    assert_eq!(verdict(&[]), HookStatus::Failed);
    let bad = CheckOutcome {
        passed: false,
        ..ok.clone()
    };
    assert_eq!(verdict(&[ok, bad]), HookStatus::Failed);
}

#[test]
fn probe_urls_are_http_only_and_parsed() {
    let u = ProbeUrl::parse("http://internal-test-alb-123.eu-west-1.elb.amazonaws.com:8080/health?deep=1").unwrap();
    assert_eq!(u.host, "internal-test-alb-123.eu-west-1.elb.amazonaws.com");
    assert_eq!(u.port, 8080);
    assert_eq!(u.path, "/health?deep=1");
    assert_eq!(ProbeUrl::parse("http://10.0.0.5").unwrap().path, "/");
    assert_eq!(ProbeUrl::parse("http://10.0.0.5").unwrap().port, 80);
    assert!(ProbeUrl::parse("https://x/health")
        .unwrap_err()
        .contains("https is not supported"));
    assert!(ProbeUrl::parse("http://user:pw@x/").is_err());
    assert!(ProbeUrl::parse("http://x:http/").is_err());
    assert!(ProbeUrl::parse("ftp://x/").is_err());
}

#[tokio::test]
async fn the_first_result_of_a_hook_execution_is_kept() {
    let store = MemoryHookResults::new();
    let first = HookResult {
        deployment_id: "d-1".into(),
        hook_execution_id: "h-1".into(),
        status: HookStatus::Failed,
        checks: vec![],
        decided_at: Utc::now(),
    };
    assert_eq!(store.record_first(&first).await.unwrap(), HookWrite::New);
    let second = HookResult {
        status: HookStatus::Succeeded,
        ..first.clone()
    };
    assert_eq!(
        store.record_first(&second).await.unwrap(),
        HookWrite::Duplicate(Box::new(first))
    );
    assert_eq!(store.results().len(), 1);
}
