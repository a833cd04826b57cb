//! One rollback per incident, and the truth about it: a simulated AWS in which a rollback request changes what
//! discovery finds next (a stage's newest execution becomes the rollback, a deployment gets CodeDeploy's rollback),
//! answers can be lost after the request took effect, and a stage can still be running. Flaps, duplicate deliveries
//! and lost answers, in any order, send exactly one rollback request and one critical page per incident.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use tollgate_domain::audit::AuditLog;
use tollgate_domain::memory::{MemoryAuditLog, MemoryNotifier, MemoryRollbackStore};
use tollgate_domain::rollback::guard::{
    action, handle_alarm, ActOutcome, AlarmSignal, Candidate, GuardApiError, GuardError, GuardPolicy, GuardPorts,
    RollbackAction, RollbackActions, RollbackOutcome, RollbackRun, Target, TargetDiscovery,
};
use tollgate_domain::tell::notify::Severity;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";
const ALARM: &str = "checkout-service-5xx";
const BAD: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn alarm(state: &str, at: DateTime<Utc>) -> AlarmSignal {
    AlarmSignal {
        account: ACCOUNT.into(),
        region: REGION.into(),
        alarm_name: ALARM.into(),
        state: state.into(),
        reason: Some("Threshold Crossed".into()),
        at,
        previous_state: Some(if state == "ALARM" { "OK" } else { "ALARM" }.into()),
        suppressed_by: None,
    }
}

/// What AWS holds: one pipeline stage and one CodeDeploy deployment, both protected by the alarm.
#[derive(Debug, Clone)]
struct Aws {
    stage_status: String,
    /// The rollback execution, once RollbackStage took effect.
    stage_rollback: Option<String>,
    /// CodeDeploy's rollback deployment, once StopDeployment took effect.
    deployment_rollback: Option<String>,
    /// Requests whose answer will be lost although they take effect.
    lose_answers: u32,
    /// Every request sent.
    sent: Vec<RollbackAction>,
}

struct Sim {
    aws: Mutex<Aws>,
    with_deployment: bool,
}

impl Sim {
    fn new(stage_status: &str, with_deployment: bool) -> Sim {
        Sim {
            aws: Mutex::new(Aws {
                stage_status: stage_status.into(),
                stage_rollback: None,
                deployment_rollback: None,
                lose_answers: 0,
                sent: Vec::new(),
            }),
            with_deployment,
        }
    }

    fn aws(&self) -> std::sync::MutexGuard<'_, Aws> {
        self.aws.lock().unwrap()
    }
}

#[async_trait]
impl TargetDiscovery for Sim {
    async fn candidates(&self, _alarm: &AlarmSignal, _since: DateTime<Utc>) -> Result<Vec<Candidate>, GuardApiError> {
        let aws = self.aws();
        let run = |id: &Option<String>| {
            id.as_ref().map(|id| RollbackRun {
                id: id.clone(),
                status: "InProgress".into(),
                by: None,
            })
        };
        let mut found = vec![Candidate {
            account: ACCOUNT.into(),
            region: REGION.into(),
            target: Target::Stage {
                pipeline: "checkout-service".into(),
                stage: "Production".into(),
                first_stage: false,
                // After the rollback, the newest execution is the rollback; discovery reports what it rolled back from.
                execution_id: BAD.into(),
                status: if aws.stage_rollback.is_some() {
                    "InProgress".into()
                } else {
                    aws.stage_status.clone()
                },
                changed_at: Some(t("2026-11-20T09:15:00Z")),
                rollback: run(&aws.stage_rollback),
            },
        }];
        if self.with_deployment {
            found.push(Candidate {
                account: ACCOUNT.into(),
                region: REGION.into(),
                target: Target::Deployment {
                    application: "checkout-service".into(),
                    deployment_group: "production".into(),
                    deployment_id: "d-RAPGQL0KO".into(),
                    status: "IN_PROGRESS".into(),
                    finished_at: None,
                    rollback: run(&aws.deployment_rollback),
                },
            });
        }
        Ok(found)
    }
}

#[async_trait]
impl RollbackActions for Sim {
    async fn execute(&self, _: &str, _: &str, action: &RollbackAction) -> Result<ActOutcome, GuardApiError> {
        let mut aws = self.aws();
        aws.sent.push(action.clone());
        let detail = match action {
            RollbackAction::RollbackStage { .. } => {
                if aws.stage_status == "InProgress" {
                    return Ok(ActOutcome::Refused {
                        code: "StageNotCompletedException".into(),
                        message: "the stage is still running".into(),
                    });
                }
                aws.stage_rollback = Some("rb-1".into());
                "rollback execution rb-1"
            }
            RollbackAction::StopDeployment { .. } => {
                aws.deployment_rollback = Some("d-ROLLBACK".into());
                "stopping"
            }
            other => panic!("unexpected {other}"),
        };
        if aws.lose_answers > 0 {
            aws.lose_answers -= 1;
            return Err(GuardApiError::Transient(
                "connection reset after the request was sent".into(),
            ));
        }
        Ok(ActOutcome::Accepted { detail: detail.into() })
    }
}

struct World {
    sim: Sim,
    store: MemoryRollbackStore,
    audit: MemoryAuditLog,
    notifier: MemoryNotifier,
}

impl World {
    fn new(sim: Sim) -> World {
        World {
            sim,
            store: MemoryRollbackStore::new(),
            audit: MemoryAuditLog::new(),
            notifier: MemoryNotifier::new(),
        }
    }

    fn ports(&self) -> GuardPorts<'_> {
        GuardPorts {
            discovery: &self.sim,
            actions: &self.sim,
            store: &self.store,
            audit: &self.audit,
            notifier: &self.notifier,
        }
    }

    async fn deliver(&self, signal: &AlarmSignal, now: DateTime<Utc>, token: &str) -> Result<(), GuardError> {
        handle_alarm(&self.ports(), &GuardPolicy::default(), signal, now, token)
            .await
            .map(|_| ())
    }

    fn critical_pages(&self) -> usize {
        self.notifier
            .sent()
            .iter()
            .filter(|n| n.severity == Severity::Critical)
            .count()
    }
}

fn start() -> DateTime<Utc> {
    t("2026-11-20T09:20:00Z")
}

#[tokio::test]
async fn a_flap_after_the_stage_was_rolled_back_neither_rolls_back_again_nor_pages_again() {
    let world = World::new(Sim::new("Failed", false));
    world.deliver(&alarm("ALARM", start()), start(), "m-1").await.unwrap();
    assert_eq!(world.sim.aws().sent.len(), 1);
    // The stage's newest execution is now the rollback; the alarm flaps OK, then ALARM again.
    let later = start() + Duration::minutes(2);
    world.deliver(&alarm("OK", later), later, "m-2").await.unwrap();
    world
        .deliver(
            &alarm("ALARM", later + Duration::seconds(30)),
            later + Duration::seconds(31),
            "m-3",
        )
        .await
        .unwrap();
    assert_eq!(world.sim.aws().sent.len(), 1, "one RollbackStage");
    assert_eq!(world.notifier.sent().len(), 1, "one page");
    let records = world.store.records();
    assert_eq!(records.len(), 1);
    // Time to restore from the transition that started the incident.
    assert_eq!(records[0].alarm_at, start());
}

#[tokio::test]
async fn a_lost_answer_is_recorded_as_the_rollback_it_was_not_sent_again_and_timed_from_the_alarm() {
    let world = World::new(Sim::new("Failed", false));
    world.sim.aws().lose_answers = 1;
    let first = world.deliver(&alarm("ALARM", start()), start(), "m-1").await;
    assert!(matches!(first, Err(GuardError::Retry(_))), "{first:?}");
    assert!(world.notifier.sent().is_empty(), "no page yet, and never 'AWS refused'");
    // SQS delivers the message again; a flap's ALARM comes in between.
    let flap = start() + Duration::minutes(1);
    world.deliver(&alarm("ALARM", flap), flap, "m-2").await.unwrap();
    world
        .deliver(&alarm("ALARM", start()), start() + Duration::minutes(6), "m-1")
        .await
        .unwrap();
    assert_eq!(world.sim.aws().sent.len(), 1, "read first, not sent again");
    let records = world.store.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Some(RollbackOutcome::RolledBack), "{r:#?}");
    assert_eq!(r.acted_at, Some(start()), "acted when the first request was sent");
    assert_eq!(r.alarm_at, start(), "the incident started with the first transition");
    assert!(r.detail.contains("lost its answer but took effect"), "{}", r.detail);
    let notes = world.notifier.sent();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].title.contains("rolled back"), "{}", notes[0].title);
    // The OK restores it, measured from the first ALARM.
    let ok = start() + Duration::minutes(10);
    world.deliver(&alarm("OK", ok), ok, "m-ok").await.unwrap();
    assert_eq!(world.store.records()[0].time_to_restore_secs(), Some(600));
}

#[tokio::test]
async fn a_running_stage_is_waited_for_then_rolled_back_once() {
    let world = World::new(Sim::new("InProgress", false));
    let first = world.deliver(&alarm("ALARM", start()), start(), "m-1").await;
    assert!(
        matches!(&first, Err(GuardError::Retry(m)) if m.contains("still running")),
        "{first:?}"
    );
    assert!(
        world.sim.aws().sent.is_empty(),
        "RollbackStage is never sent to a running stage"
    );
    assert!(world.store.records().is_empty());
    world.sim.aws().stage_status = "Failed".into();
    world
        .deliver(&alarm("ALARM", start()), start() + Duration::minutes(6), "m-1")
        .await
        .unwrap();
    assert_eq!(world.sim.aws().sent.len(), 1);
    assert_eq!(world.store.records()[0].outcome, Some(RollbackOutcome::RolledBack));
}

#[tokio::test]
async fn a_stage_still_running_past_the_alarm_age_is_told_once_and_audited() {
    let world = World::new(Sim::new("InProgress", false));
    for minutes in [0, 6, 12] {
        let r = world
            .deliver(&alarm("ALARM", start()), start() + Duration::minutes(minutes), "m-1")
            .await;
        assert!(r.is_err());
    }
    // Past 15 minutes: told, recorded, acknowledged; a duplicate tells nothing more.
    for minutes in [18, 19] {
        world
            .deliver(&alarm("ALARM", start()), start() + Duration::minutes(minutes), "m-1")
            .await
            .unwrap();
    }
    assert!(world.sim.aws().sent.is_empty());
    assert_eq!(world.critical_pages(), 1);
    let audit = world
        .audit
        .entries(&format!("alarm:{ACCOUNT}/{REGION}/{ALARM}"))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, action::UNHANDLED);
}

#[tokio::test]
async fn a_suppressed_composite_alarm_rolls_nothing_back() {
    let world = World::new(Sim::new("Failed", true));
    let mut suppressed = alarm("ALARM", start());
    suppressed.suppressed_by = Some("Alarm: Actions suppressed by ServiceMaintenanceAlarm".into());
    let report = handle_alarm(&world.ports(), &GuardPolicy::default(), &suppressed, start(), "m-1")
        .await
        .unwrap();
    assert!(
        report.skipped.as_deref().unwrap_or("").contains("suppressed"),
        "{report:?}"
    );
    assert!(world.sim.aws().sent.is_empty());
    assert!(world.notifier.sent().is_empty());
    // When the suppression ends (ALARM -> ALARM, not suppressed), the guard acts.
    let mut released = alarm("ALARM", start() + Duration::minutes(2));
    released.previous_state = Some("ALARM".into());
    world
        .deliver(&released, start() + Duration::minutes(2), "m-2")
        .await
        .unwrap();
    assert_eq!(world.sim.aws().sent.len(), 2);
}

struct Nothing(Result<Vec<Candidate>, GuardApiError>);

#[async_trait]
impl TargetDiscovery for Nothing {
    async fn candidates(&self, _: &AlarmSignal, _: DateTime<Utc>) -> Result<Vec<Candidate>, GuardApiError> {
        self.0.clone()
    }
}

#[tokio::test]
async fn an_alarm_with_no_target_or_a_refused_discovery_is_told_once_and_recorded() {
    for (discovery, expected) in [
        (Nothing(Ok(Vec::new())), "found nothing it protects"),
        (
            Nothing(Err(GuardApiError::Permanent(
                "AccessDeniedException: not authorized".into(),
            ))),
            "AccessDeniedException",
        ),
    ] {
        let world = World::new(Sim::new("Failed", false));
        let ports = GuardPorts {
            discovery: &discovery,
            ..world.ports()
        };
        for token in ["m-1", "m-1", "m-2"] {
            let report = handle_alarm(
                &ports,
                &GuardPolicy::default(),
                &alarm("ALARM", start()),
                start(),
                token,
            )
            .await
            .unwrap();
            assert_eq!(report.rolled_back, 0);
        }
        let notes = world.notifier.sent();
        assert_eq!(notes.len(), 1, "once per alarm transition");
        assert!(
            notes[0].lines.iter().any(|l| l.contains(expected)),
            "{:?}",
            notes[0].lines
        );
        let records = world.store.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, Some(RollbackOutcome::Unhandled));
        let audit = world
            .audit
            .entries(&format!("alarm:{ACCOUNT}/{REGION}/{ALARM}"))
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
    }
}

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Step {
    /// The alarm's n-th transition to ALARM (n seconds apart), delivered as message `m-<n>`.
    Alarm(u8),
    /// A transition back to OK.
    Ok(u8),
    /// The next rollback request's answer is lost after it took effect.
    LoseNextAnswer,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6).prop_map(Step::Alarm),
        2 => (0u8..6).prop_map(Step::Ok),
        1 => Just(Step::LoseNextAnswer),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn flaps_duplicates_and_lost_answers_in_any_order_send_one_rollback_per_incident(
        steps in proptest::collection::vec(step(), 1..30)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let world = World::new(Sim::new("Failed", true));
            let mut queue: VecDeque<(AlarmSignal, String)> = VecDeque::new();
            let mut any_alarm = false;
            let mut clock = start();
            for step in &steps {
                match step {
                    Step::Alarm(n) => {
                        any_alarm = true;
                        queue.push_back((alarm("ALARM", start() + Duration::seconds(*n as i64 * 20)), format!("m-{n}")));
                    }
                    Step::Ok(n) => {
                        queue.push_back((alarm("OK", start() + Duration::seconds(*n as i64 * 20 + 10)), format!("ok-{n}")));
                    }
                    Step::LoseNextAnswer => world.sim.aws().lose_answers += 1,
                }
                // Deliver what is queued; a retryable failure goes back to the end of the queue, as SQS does.
                if let Some((signal, token)) = queue.pop_front() {
                    clock = clock.max(signal.at) + Duration::seconds(1);
                    if world.deliver(&signal, clock, &token).await.is_err() {
                        queue.push_back((signal, token));
                    }
                }
            }
            // Drain, the lease aside: a redelivery comes back after the visibility timeout.
            let mut rounds = 0;
            while let Some((signal, token)) = queue.pop_front() {
                rounds += 1;
                prop_assert!(rounds < 200, "the queue never drains");
                clock += Duration::seconds(20);
                if world.deliver(&signal, clock.min(signal.at + Duration::minutes(14)), &token).await.is_err() {
                    queue.push_back((signal, token));
                }
            }
            let sent = world.sim.aws().sent.clone();
            let stages = sent.iter().filter(|a| matches!(a, RollbackAction::RollbackStage { .. })).count();
            let stops = sent.iter().filter(|a| matches!(a, RollbackAction::StopDeployment { .. })).count();
            let expected = usize::from(any_alarm);
            prop_assert_eq!((stages, stops), (expected, expected), "{:?}", sent);
            prop_assert_eq!(world.critical_pages(), 2 * expected);
            let records = world.store.records();
            prop_assert!(records.iter().all(|r| r.outcome == Some(RollbackOutcome::RolledBack)), "{:#?}", records);
            Ok(())
        })?;
    }
}
