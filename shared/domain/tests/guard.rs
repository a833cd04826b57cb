//! The guard's decisions with in-memory ports: an alarm storm acts once per target, OK never undoes, AWS's refusals
//! are recorded and not retried, transient failures act once on redelivery, and the rollback window's edges.

use chrono::{DateTime, Duration, Utc};
use tollgate_domain::audit::AuditLog;
use tollgate_domain::memory::MemoryAuditLog;
use tollgate_domain::memory::MemoryNotifier;
use tollgate_domain::memory::{MemoryActions, MemoryDiscovery, MemoryRollbackStore};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::rollback::guard::{
    action, decide, handle_alarm, rollback_stats, ActOutcome, AlarmSignal, Candidate, Decision, GuardApiError,
    GuardError, GuardPolicy, GuardPorts, Mode, RollbackAction, RollbackOutcome, RollbackStore, Target,
};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";
const ALARM: &str = "checkout-service-5xx";

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn alarm(state: &str, at: &str) -> AlarmSignal {
    AlarmSignal {
        account: ACCOUNT.into(),
        region: REGION.into(),
        alarm_name: ALARM.into(),
        state: state.into(),
        reason: Some("Threshold Crossed: 42 > 10".into()),
        at: t(at),
        previous_state: Some("OK".into()),
        suppressed_by: None,
    }
}

fn candidate(target: Target) -> Candidate {
    Candidate {
        account: ACCOUNT.into(),
        region: REGION.into(),
        target,
    }
}

fn deployment(status: &str, finished_at: Option<&str>) -> Candidate {
    candidate(Target::Deployment {
        application: "checkout-service".into(),
        deployment_group: "production".into(),
        deployment_id: "d-RAPGQL0KO".into(),
        status: status.into(),
        finished_at: finished_at.map(t),
        rollback: None,
    })
}

fn stage(status: &str, changed_at: &str, first_stage: bool) -> Candidate {
    candidate(Target::Stage {
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
        first_stage,
        execution_id: "ed085d02-372a-4b03-ba8a-c1df62a84ced".into(),
        status: status.into(),
        changed_at: Some(t(changed_at)),
        rollback: None,
    })
}

fn stack(status: &str) -> Candidate {
    candidate(Target::Stack {
        stack_name: "checkout-service-prod".into(),
        stack_id: "arn:aws:cloudformation:eu-west-1:111122223333:stack/checkout-service-prod/5b1f".into(),
        status: status.into(),
        updated_at: Some(t("2026-11-20T09:10:00Z")),
    })
}

struct World {
    discovery: MemoryDiscovery,
    actions: MemoryActions,
    store: MemoryRollbackStore,
    audit: MemoryAuditLog,
    notifier: MemoryNotifier,
}

impl World {
    fn new(candidates: Vec<Candidate>) -> World {
        let discovery = MemoryDiscovery::new();
        for c in candidates {
            discovery.protect(ALARM, c);
        }
        World {
            discovery,
            actions: MemoryActions::new(),
            store: MemoryRollbackStore::new(),
            audit: MemoryAuditLog::new(),
            notifier: MemoryNotifier::new(),
        }
    }

    fn ports(&self) -> GuardPorts<'_> {
        GuardPorts {
            discovery: &self.discovery,
            actions: &self.actions,
            store: &self.store,
            audit: &self.audit,
            notifier: &self.notifier,
        }
    }
}

fn now() -> DateTime<Utc> {
    t("2026-11-20T09:21:00Z")
}

#[tokio::test]
async fn a_storm_of_twenty_flaps_and_duplicates_rolls_back_each_target_exactly_once() {
    let world = World::new(vec![
        deployment("IN_PROGRESS", None),
        stage("Failed", "2026-11-20T09:11:32Z", false),
        stack("UPDATE_IN_PROGRESS"),
    ]);
    let policy = GuardPolicy::default();
    // 20 flaps, one a few seconds apart, each ALARM and OK delivered twice, all at once.
    let mut signals = Vec::new();
    for i in 0..20 {
        let at = t("2026-11-20T09:20:00Z") + Duration::seconds(i * 3);
        let mut a = alarm("ALARM", "2026-11-20T09:20:00Z");
        a.at = at;
        let mut ok = a.clone();
        ok.state = "OK".into();
        ok.at = at + Duration::seconds(1);
        signals.extend([a.clone(), a, ok.clone(), ok]);
    }
    let ports = world.ports();
    let tokens: Vec<String> = (0..signals.len()).map(|i| format!("token-{i}")).collect();
    let runs = signals
        .iter()
        .zip(&tokens)
        .map(|(s, token)| handle_alarm(&ports, &policy, s, now(), token));
    let results = join_all(runs).await;
    // A delivery that met a claim held by another delivery is retried by SQS: run those again, as SQS would.
    for (i, r) in results.iter().enumerate() {
        if let Err(GuardError::Retry(_)) = r {
            handle_alarm(&ports, &policy, &signals[i], now(), "retry")
                .await
                .unwrap();
        }
    }
    let sent = world.actions.sent();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert!(sent.contains(&RollbackAction::StopDeployment {
        deployment_id: "d-RAPGQL0KO".into()
    }));
    assert!(sent.contains(&RollbackAction::CancelUpdateStack {
        stack_name: "checkout-service-prod".into()
    }));
    assert!(sent
        .iter()
        .any(|a| matches!(a, RollbackAction::RollbackStage { stage, .. } if stage == "Production")));
    assert_eq!(world.notifier.sent().len(), 3);
    let records = world.store.records();
    assert_eq!(records.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.outcome == Some(RollbackOutcome::RolledBack) && r.audited && r.notified));
    for r in &records {
        assert_eq!(
            world.audit.entries(&r.target.audit_scope()).await.unwrap().len(),
            1,
            "{} audited once",
            r.id
        );
    }
    // The flaps' OKs came before the rollbacks were made (09:21): the first OK after them is the restore time.
    assert!(records.iter().all(|r| r.restored_at.is_none()), "{records:#?}");
    let ok = alarm("OK", "2026-11-20T09:24:00Z");
    let report = handle_alarm(&ports, &policy, &ok, now(), "ok").await.unwrap();
    assert_eq!(report.restored, 3);
    assert_eq!(world.actions.sent().len(), 3, "OK undoes nothing");
}

/// Runs every future concurrently on this task, interleaved at each of their awaits (no extra dependency).
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

#[tokio::test]
async fn an_alarm_back_to_ok_undoes_nothing_and_records_the_time_to_restore() {
    let world = World::new(vec![deployment("IN_PROGRESS", None)]);
    let policy = GuardPolicy::default();
    let report = handle_alarm(
        &world.ports(),
        &policy,
        &alarm("ALARM", "2026-11-20T09:20:00Z"),
        now(),
        "a",
    )
    .await
    .unwrap();
    assert_eq!(report.rolled_back, 1);
    let ok = handle_alarm(
        &world.ports(),
        &policy,
        &alarm("OK", "2026-11-20T09:32:30Z"),
        now(),
        "b",
    )
    .await
    .unwrap();
    assert_eq!(ok.restored, 1);
    assert_eq!(world.actions.sent().len(), 1, "OK sent no request");
    let record = &world.store.records()[0];
    assert_eq!(record.restored_at, Some(t("2026-11-20T09:32:30Z")));
    assert_eq!(record.time_to_restore_secs(), Some(12 * 60 + 30));
    // A second OK does not move the restore time.
    handle_alarm(
        &world.ports(),
        &policy,
        &alarm("OK", "2026-11-20T09:40:00Z"),
        now(),
        "c",
    )
    .await
    .unwrap();
    assert_eq!(world.store.records()[0].restored_at, Some(t("2026-11-20T09:32:30Z")));
}

#[tokio::test]
async fn a_refused_rollback_is_recorded_with_aws_reason_and_not_retried() {
    let world = World::new(vec![deployment("IN_PROGRESS", None)]);
    world.actions.answer_next(vec![Ok(ActOutcome::Refused {
        code: "DeploymentAlreadyCompletedException".into(),
        message: "The deployment d-RAPGQL0KO has already completed.".into(),
    })]);
    let policy = GuardPolicy::default();
    let a = alarm("ALARM", "2026-11-20T09:20:00Z");
    let report = handle_alarm(&world.ports(), &policy, &a, now(), "a").await.unwrap();
    assert_eq!(report.refused, 1);
    let again = handle_alarm(&world.ports(), &policy, &a, now(), "b").await.unwrap();
    assert_eq!(again.already_handled, 1);
    assert_eq!(world.actions.sent().len(), 1, "a refusal is never retried");
    let record = &world.store.records()[0];
    assert_eq!(record.outcome, Some(RollbackOutcome::Refused));
    assert!(
        record.detail.contains("DeploymentAlreadyCompletedException"),
        "{}",
        record.detail
    );
    assert!(record.detail.contains("has already completed"), "{}", record.detail);
    let note = &world.notifier.sent()[0];
    assert!(note.title.contains("refused"), "{}", note.title);
    assert!(
        note.lines.iter().any(|l| l.contains("has already completed")),
        "{:?}",
        note.lines
    );
    let entries = world.audit.entries(&record.target.audit_scope()).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, action::REFUSED);
    assert_eq!(entries[0].actor, "tollgate:guard");
}

#[tokio::test]
async fn a_throttled_request_is_retried_by_redelivery_and_acts_once() {
    let world = World::new(vec![stack("UPDATE_FAILED")]);
    world
        .actions
        .answer_next(vec![Err(GuardApiError::Transient("Throttling: Rate exceeded".into()))]);
    let policy = GuardPolicy::default();
    let a = alarm("ALARM", "2026-11-20T09:20:00Z");
    let first = handle_alarm(&world.ports(), &policy, &a, now(), "a").await;
    assert!(
        matches!(&first, Err(GuardError::Retry(m)) if m.contains("Rate exceeded")),
        "{first:?}"
    );
    let released = world.store.records();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].outcome, None, "the claim was given back");
    assert_eq!(released[0].attempted_at, Some(now()), "with when the request was sent");
    assert!(world.notifier.sent().is_empty());
    let second = handle_alarm(&world.ports(), &policy, &a, now(), "b").await.unwrap();
    assert_eq!(second.rolled_back, 1);
    let third = handle_alarm(&world.ports(), &policy, &a, now(), "c").await.unwrap();
    assert_eq!(third.already_handled, 1);
    assert_eq!(
        world.actions.sent(),
        vec![
            RollbackAction::RollbackStack {
                stack_name: "checkout-service-prod".into()
            };
            2
        ]
    );
    assert_eq!(world.notifier.sent().len(), 1);
}

#[tokio::test]
async fn a_failed_notification_is_sent_on_redelivery_without_acting_again() {
    let world = World::new(vec![deployment("IN_PROGRESS", None)]);
    world.notifier.fail_next(1);
    let policy = GuardPolicy::default();
    let a = alarm("ALARM", "2026-11-20T09:20:00Z");
    assert!(matches!(
        handle_alarm(&world.ports(), &policy, &a, now(), "a").await,
        Err(GuardError::Retry(_))
    ));
    // Another delivery of the alarm, within the lease, leaves the unfinished steps to the first one's redelivery.
    assert!(matches!(
        handle_alarm(&world.ports(), &policy, &a, now(), "b").await,
        Err(GuardError::Retry(m)) if m.contains("still auditing and notifying")
    ));
    assert!(world.notifier.sent().is_empty());
    // The same message delivered again ("a") finishes them.
    handle_alarm(&world.ports(), &policy, &a, now(), "a").await.unwrap();
    assert_eq!(world.actions.sent().len(), 1);
    assert_eq!(world.notifier.sent().len(), 1);
    let scope = world.store.records()[0].target.audit_scope();
    assert_eq!(world.audit.entries(&scope).await.unwrap().len(), 1, "audited once");
}

#[test]
fn the_rollback_window_includes_its_start_and_excludes_a_second_before() {
    let policy = GuardPolicy::default();
    let a = alarm("ALARM", "2026-11-20T10:00:00Z");
    // Finished exactly 30 minutes before the alarm: inside.
    assert!(matches!(
        decide(&stage("Succeeded", "2026-11-20T09:30:00Z", false), &a, &policy),
        Decision::Act(RollbackAction::RollbackStage { .. })
    ));
    // One second earlier: outside.
    assert!(matches!(
        decide(&stage("Succeeded", "2026-11-20T09:29:59Z", false), &a, &policy),
        Decision::Ignore(_)
    ));
    // In flight, however old: RollbackStage waits for the stage to end.
    assert!(matches!(
        decide(&stage("InProgress", "2026-11-20T05:00:00Z", false), &a, &policy),
        Decision::Wait(_)
    ));
    assert!(matches!(
        decide(&stage("Failed", "2026-11-20T09:59:00Z", false), &a, &policy),
        Decision::Act(_)
    ));
    // A deployment that finished inside the window cannot be stopped: engineers are told.
    assert!(matches!(
        decide(&deployment("SUCCESS", Some("2026-11-20T09:45:00Z")), &a, &policy),
        Decision::Notify(m) if m.contains("cannot stop a finished deployment")
    ));
    assert!(matches!(
        decide(&deployment("SUCCESS", Some("2026-11-20T09:29:00Z")), &a, &policy),
        Decision::Ignore(_)
    ));
}

#[test]
fn stacks_are_cancelled_in_update_and_rolled_back_when_failed() {
    let policy = GuardPolicy::default();
    let a = alarm("ALARM", "2026-11-20T09:20:00Z");
    let name = || "checkout-service-prod".to_string();
    assert_eq!(
        decide(&stack("UPDATE_IN_PROGRESS"), &a, &policy),
        Decision::Act(RollbackAction::CancelUpdateStack { stack_name: name() })
    );
    for failed in ["UPDATE_FAILED", "CREATE_FAILED"] {
        assert_eq!(
            decide(&stack(failed), &a, &policy),
            Decision::Act(RollbackAction::RollbackStack { stack_name: name() })
        );
    }
    assert!(matches!(
        decide(&stack("UPDATE_COMPLETE"), &a, &policy),
        Decision::Notify(_)
    ));
    assert!(matches!(
        decide(&stack("UPDATE_ROLLBACK_IN_PROGRESS"), &a, &policy),
        Decision::AlreadyRolledBack(_)
    ));
    assert!(matches!(
        decide(&stack("UPDATE_ROLLBACK_COMPLETE"), &a, &policy),
        Decision::AlreadyRolledBack(_)
    ));
}

#[tokio::test]
async fn the_source_stage_and_a_notify_only_policy_are_notified_not_acted_on() {
    let world = World::new(vec![
        stage("Succeeded", "2026-11-20T09:15:00Z", true),
        deployment("IN_PROGRESS", None),
    ]);
    let policy = GuardPolicy {
        deployments: Mode::Notify,
        ..GuardPolicy::default()
    };
    let report = handle_alarm(
        &world.ports(),
        &policy,
        &alarm("ALARM", "2026-11-20T09:20:00Z"),
        now(),
        "a",
    )
    .await
    .unwrap();
    assert_eq!((report.notified, report.rolled_back), (2, 0));
    assert!(world.actions.sent().is_empty());
    let notes = world.notifier.sent();
    assert!(notes.iter().any(|n| n.lines.iter().any(|l| l.contains("source stage"))));
    assert!(notes.iter().any(|n| n
        .lines
        .iter()
        .any(|l| l.contains("would have run StopDeployment d-RAPGQL0KO"))));
}

#[tokio::test]
async fn an_alarm_processed_too_late_is_reported_not_acted_on() {
    let world = World::new(vec![deployment("IN_PROGRESS", None)]);
    let report = handle_alarm(
        &world.ports(),
        &GuardPolicy::default(),
        &alarm("ALARM", "2026-11-20T09:00:00Z"),
        now(),
        "a",
    )
    .await
    .unwrap();
    assert_eq!(report.unhandled, 1);
    assert!(world.actions.sent().is_empty());
    // Told once, as critical, and recorded in the audit trail.
    let notes = world.notifier.sent();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].title.contains("could not act"), "{}", notes[0].title);
    assert!(
        notes[0].lines.iter().any(|l| l.contains("more than 15 minutes later")),
        "{:?}",
        notes[0].lines
    );
    let scope = format!("alarm:{ACCOUNT}/{REGION}/{ALARM}");
    let audit = world.audit.entries(&scope).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, action::UNHANDLED);
}

#[tokio::test]
async fn an_alarm_in_another_account_finds_nothing_to_roll_back() {
    let world = World::new(vec![deployment("IN_PROGRESS", None)]);
    let mut other = alarm("ALARM", "2026-11-20T09:20:00Z");
    other.account = "444455556666".into();
    let report = handle_alarm(&world.ports(), &GuardPolicy::default(), &other, now(), "a")
        .await
        .unwrap();
    assert_eq!(report.rolled_back + report.notified, 0);
}

#[tokio::test]
async fn rollbacks_of_a_period_count_outcomes_and_the_median_time_to_restore() {
    let world = World::new(vec![deployment("IN_PROGRESS", None), stack("UPDATE_FAILED")]);
    world.actions.answer_next(vec![
        Ok(ActOutcome::Accepted {
            detail: "stopped".into(),
        }),
        Ok(ActOutcome::Refused {
            code: "ValidationError".into(),
            message: "Stack is in a state that cannot be rolled back".into(),
        }),
    ]);
    let policy = GuardPolicy::default();
    handle_alarm(
        &world.ports(),
        &policy,
        &alarm("ALARM", "2026-11-20T09:20:00Z"),
        now(),
        "a",
    )
    .await
    .unwrap();
    handle_alarm(
        &world.ports(),
        &policy,
        &alarm("OK", "2026-11-20T09:30:00Z"),
        now(),
        "b",
    )
    .await
    .unwrap();
    let records = world
        .store
        .rollbacks_between(t("2026-11-20T00:00:00Z"), t("2026-11-21T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    let stats = rollback_stats(&records);
    assert_eq!((stats.rolled_back, stats.refused, stats.restored), (1, 1, 1));
    assert_eq!(stats.median_time_to_restore_secs, Some(600));
    let none = world
        .store
        .rollbacks_between(t("2026-11-21T00:00:00Z"), t("2026-11-22T00:00:00Z"))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn the_guard_reads_the_sample_alarm_event() {
    let event = parse_event(include_bytes!("../../../events/cloudwatch-alarm-state-change.json")).unwrap();
    let signal = AlarmSignal::from_event(&event).unwrap();
    assert_eq!(signal.alarm_name, ALARM);
    assert_eq!(signal.state, "ALARM");
    assert_eq!(signal.key(), "111122223333/eu-west-1/checkout-service-5xx");
    assert_eq!(signal.at, t("2026-11-18T14:20:57.873Z"));
}
