//! The hook over in-memory ports: each check's verdict, the time budget, once-only results, and reporting.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::TimeZone;
use serde_json::json;
use tollgate_domain::gate::policy::{AlarmFact, AlarmState};
use tollgate_domain::gate::FactError;
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryNotifier;
use tollgate_domain::rollback::hook::{HookStatus, InsufficientData, MemoryHookResults, Probe, ProbeUrl};

use super::*;

struct Alarms(Result<Vec<(&'static str, AlarmState)>, &'static str>);

#[async_trait]
impl AlarmStates for Alarms {
    async fn alarm_states(&self, _: &[String], _: &BTreeMap<String, String>) -> Result<Vec<AlarmFact>, FactError> {
        match &self.0 {
            Ok(list) => Ok(list
                .iter()
                .map(|(name, state)| AlarmFact {
                    name: name.to_string(),
                    state: *state,
                    since: Utc.with_ymd_and_hms(2026, 11, 20, 14, 0, 0).unwrap(),
                })
                .collect()),
            Err(e) => Err(FactError(e.to_string())),
        }
    }
}

/// Answers the scripted statuses in turn, then the last one again.
struct Script(Mutex<Vec<Result<u16, String>>>);

impl Script {
    fn new(answers: Vec<Result<u16, String>>) -> Self {
        Script(Mutex::new(answers))
    }
}

#[async_trait]
impl HttpProbe for Script {
    async fn get_status(&self, _: &ProbeUrl, _: Duration) -> Result<u16, String> {
        let mut all = self.0.lock().unwrap();
        if all.len() > 1 {
            all.remove(0)
        } else {
            all[0].clone()
        }
    }
}

#[derive(Default)]
struct Reporter {
    sent: Mutex<Vec<(String, HookStatus)>>,
    answer: Option<HookReportError>,
}

#[async_trait]
impl HookStatusReporter for Reporter {
    async fn report(&self, inv: &HookInvocation, status: HookStatus) -> Result<Reported, HookReportError> {
        self.sent.lock().unwrap().push((inv.hook_execution_id.clone(), status));
        match &self.answer {
            Some(e) => Err(e.clone()),
            None => Ok(Reported::Now),
        }
    }
}

fn checks(alarms: &[&str], probe: bool) -> HookChecks {
    HookChecks {
        alarms: alarms.iter().map(|s| s.to_string()).collect(),
        insufficient_data: InsufficientData::Pass,
        probe: probe.then(|| Probe {
            url: ProbeUrl::parse("http://test-listener.internal:8080/health").unwrap(),
            expected_status: 200,
            timeout: Duration::from_secs(1),
        }),
        budget: Duration::from_secs(2),
    }
}

fn settings(checks: &HookChecks) -> Settings {
    Settings {
        checks: checks.clone(),
        place: Place {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
        },
        probe_retry: Duration::from_millis(20),
    }
}

fn event(hook: &str) -> Value {
    json!({"DeploymentId": "d-9ZPLQX4KO", "LifecycleEventHookExecutionId": hook})
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap()
}

struct World {
    alarms: Alarms,
    probe: Script,
    results: MemoryHookResults,
    reporter: Reporter,
    notifier: MemoryNotifier,
    audit: MemoryAuditLog,
}

impl World {
    fn new(alarms: Alarms, probe: Script) -> Self {
        World {
            alarms,
            probe,
            results: MemoryHookResults::new(),
            reporter: Reporter::default(),
            notifier: MemoryNotifier::new(),
            audit: MemoryAuditLog::default(),
        }
    }

    fn ports(&self) -> Ports<'_> {
        Ports {
            alarms: &self.alarms,
            probe: &self.probe,
            results: &self.results,
            reporter: &self.reporter,
            notifier: &self.notifier,
            audit: &self.audit,
        }
    }

    async fn run(&self, checks: &HookChecks, hook: &str) -> Result<HookReport, HookError> {
        handle(&event(hook), &settings(checks), &self.ports(), None, now()).await
    }

    fn reported(&self) -> Vec<(String, HookStatus)> {
        self.reporter.sent.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn quiet_alarms_and_a_healthy_probe_succeed() {
    let w = World::new(
        Alarms(Ok(vec![("checkout-5xx", AlarmState::Ok)])),
        Script::new(vec![Ok(200)]),
    );
    let r = w.run(&checks(&["checkout-5xx"], true), "h-1").await.unwrap();
    assert_eq!(r.status, "Succeeded");
    assert_eq!(w.reported(), vec![("h-1".to_string(), HookStatus::Succeeded)]);
    assert!(w.notifier.sent().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_alarm_in_alarm_fails_the_hook_and_tells_engineers_once() {
    let w = World::new(
        Alarms(Ok(vec![("checkout-5xx", AlarmState::Alarm)])),
        Script::new(vec![Ok(200)]),
    );
    let r = w.run(&checks(&["checkout-5xx"], false), "h-1").await.unwrap();
    assert_eq!(r.status, "Failed");
    assert!(r.summary.contains("alarm checkout-5xx: in ALARM"), "{}", r.summary);
    let sent = w.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].title.contains("d-9ZPLQX4KO"), "{}", sent[0].title);
    assert_eq!(w.reported(), vec![("h-1".to_string(), HookStatus::Failed)]);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_recovers_within_the_budget_passes() {
    let w = World::new(
        Alarms(Ok(vec![])),
        Script::new(vec![Err("connection refused".into()), Ok(502), Ok(200)]),
    );
    let r = w.run(&checks(&[], true), "h-1").await.unwrap();
    assert_eq!(r.status, "Succeeded");
    assert!(r.summary.contains("1 checks passed"), "{}", r.summary);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_answers_as_expected_fails_when_the_budget_runs_out() {
    let w = World::new(Alarms(Ok(vec![])), Script::new(vec![Ok(503)]));
    let started = Instant::now();
    let r = w.run(&checks(&[], true), "h-1").await.unwrap();
    assert_eq!(r.status, "Failed");
    assert!(r.summary.contains("answered 503, expected 200"), "{}", r.summary);
    // Time is paused (virtual): the probing stopped at the 2 s budget, whatever the machine's load.
    let spent = Instant::now() - started;
    assert!(spent <= Duration::from_secs(2), "stayed within the budget: {spent:?}");
    assert_eq!(w.reported().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_check_that_errors_fails_the_hook_saying_why() {
    let w = World::new(
        Alarms(Err("AccessDenied: cloudwatch:DescribeAlarms")),
        Script::new(vec![Ok(200)]),
    );
    let r = w.run(&checks(&["checkout-5xx"], true), "h-1").await.unwrap();
    assert_eq!(r.status, "Failed");
    assert!(
        r.summary.contains("cannot read the alarms' states: AccessDenied"),
        "{}",
        r.summary
    );
    assert_eq!(w.reported(), vec![("h-1".to_string(), HookStatus::Failed)]);
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_invocation_reports_the_first_status_and_does_not_notify_again() {
    let w = World::new(
        Alarms(Ok(vec![("checkout-5xx", AlarmState::Alarm)])),
        Script::new(vec![Ok(200)]),
    );
    let c = checks(&["checkout-5xx"], false);
    w.run(&c, "h-1").await.unwrap();
    // The alarm recovers before the duplicate arrives: the duplicate still says what the first one decided.
    let w2 = World {
        alarms: Alarms(Ok(vec![("checkout-5xx", AlarmState::Ok)])),
        ..w
    };
    let r = w2.run(&c, "h-1").await.unwrap();
    assert!(r.duplicate);
    assert_eq!(r.status, "Failed");
    assert_eq!(
        w2.reported(),
        vec![
            ("h-1".to_string(), HookStatus::Failed),
            ("h-1".to_string(), HookStatus::Failed)
        ]
    );
    assert_eq!(w2.notifier.sent().len(), 1);
    // One audit entry, the first decision's: the duplicate appends nothing.
    let entries = w2
        .audit
        .entries("deployment:111122223333/eu-west-1/d-9ZPLQX4KO")
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].action, "hook.result");
    assert_eq!(entries[0].actor, "tollgate:hook");
    assert_eq!(entries[0].subject, "h-1");
    assert_eq!(entries[0].detail["outcome"], "Failed");
    assert!(
        entries[0].detail["summary"].as_str().unwrap().contains("checkout-5xx"),
        "{entries:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_report_is_a_non_retryable_error_and_a_throttled_one_is_retryable() {
    let mut w = World::new(Alarms(Ok(vec![("a", AlarmState::Ok)])), Script::new(vec![Ok(200)]));
    w.reporter.answer = Some(HookReportError::Refused(
        "InvalidLifecycleEventHookExecutionIdException".into(),
    ));
    let err = w.run(&checks(&["a"], false), "h-1").await.unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "NonRetryable.Report");
    w.reporter.answer = Some(HookReportError::Transient("ThrottlingException".into()));
    let err = w.run(&checks(&["a"], false), "h-2").await.unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "Retryable.Report");
}

#[tokio::test(start_paused = true)]
async fn an_invocation_without_ids_is_refused_before_any_check() {
    let w = World::new(Alarms(Ok(vec![])), Script::new(vec![Ok(200)]));
    let err = handle(
        &json!({"DeploymentId": "d-1"}),
        &settings(&checks(&["a"], false)),
        &w.ports(),
        None,
        now(),
    )
    .await
    .unwrap_err();
    assert_eq!(Diagnostic::from(err).error_type, "NonRetryable.NotAHook");
    assert!(w.reported().is_empty());
}

#[test]
fn the_checks_end_before_the_lambda_deadline() {
    let start = Instant::now();
    let d = checks_deadline(start, Duration::from_secs(240), Some(start + Duration::from_secs(60)));
    assert_eq!(d, start + Duration::from_secs(55));
    assert_eq!(
        checks_deadline(start, Duration::from_secs(20), None),
        start + Duration::from_secs(20)
    );
}
