//! The fold rules of a timeline, table by table. Every case is folded in every arrival order of its events: the fold
//! is a function of the set of events, so each order must give the same answer.

mod common;
#[path = "timeline_parts/links.rs"]
mod links;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use tollgate_domain::memory::MemoryStore;
use tollgate_domain::record::event::*;
use tollgate_domain::record::keys::ExecutionKey;
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::EventRecorder;
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::{
    fold_build, fold_deployment, BuildTimeline, DeploymentTimeline, ExecutionTimeline, StageTimeline,
};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap() + Duration::seconds(secs)
}

fn key() -> ExecutionKey {
    exec_key("e-1")
}

fn event(secs: i64, body: EventBody) -> DeliveryEvent {
    // Distinct content, distinct id: the same construction gives the same id, as parse's content digest does.
    let id = format!("{secs}|{body:?}");
    DeliveryEvent {
        id,
        eventbridge_id: None,
        account: ACCOUNT.into(),
        region: REGION.into(),
        time: at(secs),
        body,
    }
}

fn pipeline(secs: i64, state: &str) -> DeliveryEvent {
    event(
        secs,
        EventBody::PipelineExecution(PipelineExecutionChange {
            pipeline: PIPELINE.into(),
            execution_id: "e-1".into(),
            state: state.into(),
            trigger: None,
            source_revisions: Vec::new(),
            attempt: None,
        }),
    )
}

fn stage(secs: i64, name: &str, state: &str) -> DeliveryEvent {
    event(
        secs,
        EventBody::StageExecution(StageExecutionChange {
            pipeline: PIPELINE.into(),
            execution_id: "e-1".into(),
            stage: name.into(),
            state: state.into(),
            source_revisions: Vec::new(),
        }),
    )
}

fn action_with(
    secs: i64,
    stage: &str,
    name: &str,
    state: &str,
    kind: (&str, &str),
    result: ExecutionResult,
) -> DeliveryEvent {
    let (category, provider) = kind;
    event(
        secs,
        EventBody::ActionExecution(ActionExecutionChange {
            pipeline: PIPELINE.into(),
            execution_id: "e-1".into(),
            stage: stage.into(),
            action: name.into(),
            state: state.into(),
            action_type: ActionType {
                owner: "AWS".into(),
                provider: provider.into(),
                category: category.into(),
            },
            result,
        }),
    )
}

fn action(secs: i64, stage: &str, name: &str, state: &str) -> DeliveryEvent {
    action_with(
        secs,
        stage,
        name,
        state,
        ("Invoke", "Lambda"),
        ExecutionResult::default(),
    )
}

fn build_state(secs: i64, status: &str, started_at: Option<i64>, phases: Vec<BuildPhase>) -> DeliveryEvent {
    event(
        secs,
        EventBody::BuildState(BuildStateChange {
            build_id: "proj:b-1".into(),
            project: "proj".into(),
            status: status.into(),
            started_at: started_at.map(at),
            initiator: None,
            logs_url: None,
            phases,
        }),
    )
}

fn build_phase(secs: i64, phase: BuildPhase) -> DeliveryEvent {
    event(
        secs,
        EventBody::BuildPhase(BuildPhaseChange {
            build_id: "proj:b-1".into(),
            project: "proj".into(),
            phase,
            logs_url: None,
        }),
    )
}

fn phase(name: &str, started: i64, ended: Option<i64>) -> BuildPhase {
    BuildPhase {
        phase: name.into(),
        status: ended.map(|_| "SUCCEEDED".into()),
        started_at: Some(at(started)),
        ended_at: ended.map(at),
        duration_secs: ended.map(|e| e - started),
    }
}

fn deployment(secs: i64, state: &str) -> DeliveryEvent {
    event(
        secs,
        EventBody::DeploymentState(DeploymentStateChange {
            deployment_id: "d-1".into(),
            application: "app".into(),
            deployment_group: "production".into(),
            state: state.into(),
        }),
    )
}

/// Every order of `items` (the tables keep cases small: at most 5 events, 120 orders).
fn orders<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in orders(&rest) {
            tail.insert(0, first.clone());
            out.push(tail);
        }
    }
    out
}

/// Folds `events` in every order (and with every event delivered twice) and checks they all agree; returns the fold.
fn fold_every_order(events: &[DeliveryEvent]) -> ExecutionTimeline {
    let expected = ExecutionTimeline::fold(&key(), events);
    for order in orders(events) {
        assert_eq!(
            ExecutionTimeline::fold(&key(), &order),
            expected,
            "order {:?}",
            ids(&order)
        );
    }
    let twice: Vec<DeliveryEvent> = events.iter().chain(events.iter().rev()).cloned().collect();
    assert_eq!(
        ExecutionTimeline::fold(&key(), &twice),
        expected,
        "duplicates count once"
    );
    expected
}

fn ids(events: &[DeliveryEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.time.format("%H:%M:%S"), state_of(e)))
        .collect()
}

fn state_of(e: &DeliveryEvent) -> &str {
    match &e.body {
        EventBody::PipelineExecution(x) => &x.state,
        EventBody::StageExecution(x) => &x.state,
        EventBody::ActionExecution(x) => &x.state,
        EventBody::BuildState(x) => &x.status,
        EventBody::DeploymentState(x) => &x.state,
        _ => "",
    }
}

/// One table row: observations of one entity as (seconds, state), and what they resolve to.
struct Case {
    rule: &'static str,
    obs: &'static [(i64, &'static str)],
    state: &'static str,
    started: Option<i64>,
    ended: Option<i64>,
}

impl Case {
    fn duration(&self) -> Option<i64> {
        Some(self.ended? - self.started?)
    }
}

/// Pipelines, stages and actions share these rules: the latest observation wins, a terminal one wins a tie, and a
/// later non-terminal observation (a retry or a resume) reopens the entity.
const RETRYABLE: &[Case] = &[
    Case {
        rule: "started then succeeded",
        obs: &[(0, "STARTED"), (90, "SUCCEEDED")],
        state: "SUCCEEDED",
        started: Some(0),
        ended: Some(90),
    },
    Case {
        rule: "a started in the same second as the success never reopens it",
        obs: &[(90, "STARTED"), (90, "SUCCEEDED")],
        state: "SUCCEEDED",
        started: Some(90),
        ended: Some(90),
    },
    Case {
        rule: "a started in the same second as the failure never reopens it",
        obs: &[(0, "STARTED"), (60, "FAILED"), (60, "STARTED")],
        state: "FAILED",
        started: Some(0),
        ended: Some(60),
    },
    Case {
        rule: "only the terminal event arrived: ended, start unknown",
        obs: &[(90, "FAILED")],
        state: "FAILED",
        started: None,
        ended: Some(90),
    },
    Case {
        rule: "still running",
        obs: &[(0, "STARTED")],
        state: "STARTED",
        started: Some(0),
        ended: None,
    },
    Case {
        rule: "failed, retried with STARTED, then succeeded",
        obs: &[(0, "STARTED"), (60, "FAILED"), (300, "STARTED"), (420, "SUCCEEDED")],
        state: "SUCCEEDED",
        started: Some(0),
        ended: Some(420),
    },
    Case {
        rule: "failed, resumed, then succeeded",
        obs: &[(0, "STARTED"), (60, "FAILED"), (300, "RESUMED"), (420, "SUCCEEDED")],
        state: "SUCCEEDED",
        started: Some(0),
        ended: Some(420),
    },
    Case {
        rule: "failed and resumed: running again, not ended",
        obs: &[(0, "STARTED"), (60, "FAILED"), (300, "RESUMED")],
        state: "RESUMED",
        started: Some(0),
        ended: None,
    },
    Case {
        rule: "failed, resumed, failed again: the second failure ends it",
        obs: &[(0, "STARTED"), (60, "FAILED"), (300, "RESUMED"), (360, "FAILED")],
        state: "FAILED",
        started: Some(0),
        ended: Some(360),
    },
];

#[test]
fn pipeline_state_follows_the_retryable_rules_in_any_arrival_order() {
    for case in RETRYABLE {
        let events: Vec<DeliveryEvent> = case.obs.iter().map(|(t, s)| pipeline(*t, s)).collect();
        let t = fold_every_order(&events);
        assert_eq!(t.state, case.state, "{}", case.rule);
        assert_eq!(t.started_at, case.started.map(at), "{}: started", case.rule);
        assert_eq!(t.ended_at, case.ended.map(at), "{}: ended", case.rule);
        assert_eq!(t.duration_secs, case.duration(), "{}: duration", case.rule);
        assert_eq!(t.event_count, events.len(), "{}", case.rule);
    }
}

#[test]
fn stage_state_follows_the_retryable_rules_in_any_arrival_order() {
    for case in RETRYABLE {
        let mut events: Vec<DeliveryEvent> = case.obs.iter().map(|(t, s)| stage(*t, "Deploy", s)).collect();
        // An action of the stage, seen before the stage's own events, must not change the stage's times.
        events.push(action(-5, "Deploy", "Run", "STARTED"));
        let t = fold_every_order(&events);
        let s = t.stage("Deploy").expect("the stage");
        assert_eq!(s.state, case.state, "{}", case.rule);
        assert_eq!(s.started_at, case.started.map(at), "{}: started", case.rule);
        assert_eq!(s.ended_at, case.ended.map(at), "{}: ended", case.rule);
        assert_eq!(s.duration_secs, case.duration(), "{}: duration", case.rule);
    }
}

#[test]
fn action_state_follows_the_retryable_rules_in_any_arrival_order() {
    for case in RETRYABLE {
        let events: Vec<DeliveryEvent> = case.obs.iter().map(|(t, s)| action(*t, "Deploy", "Run", s)).collect();
        let t = fold_every_order(&events);
        let a = &t.stage("Deploy").expect("the stage").actions[0];
        assert_eq!(a.state, case.state, "{}", case.rule);
        assert_eq!(a.started_at, case.started.map(at), "{}: started", case.rule);
        assert_eq!(a.ended_at, case.ended.map(at), "{}: ended", case.rule);
        assert_eq!(a.duration_secs, case.duration(), "{}: duration", case.rule);
    }
}

#[test]
fn succeeded_arriving_before_started_gives_the_same_timeline() {
    let in_order = vec![
        pipeline(0, "STARTED"),
        stage(1, "Build", "STARTED"),
        action(2, "Build", "Compile", "STARTED"),
        action(50, "Build", "Compile", "SUCCEEDED"),
        stage(51, "Build", "SUCCEEDED"),
        pipeline(52, "SUCCEEDED"),
    ];
    let mut successes_first = in_order.clone();
    successes_first.reverse();
    let a = ExecutionTimeline::fold(&key(), &in_order);
    let b = ExecutionTimeline::fold(&key(), &successes_first);
    assert_eq!(a, b);
    assert_eq!(a.state, "SUCCEEDED");
    assert_eq!(a.duration_secs, Some(52));
    assert_eq!(a.stages[0].duration_secs, Some(50));
    assert_eq!(a.stages[0].actions[0].duration_secs, Some(48));
}

#[test]
fn stages_and_actions_are_listed_in_the_order_they_ran_not_by_name() {
    let events = vec![
        stage(0, "Source", "STARTED"),
        action(1, "Source", "Source", "STARTED"),
        stage(10, "Build", "STARTED"),
        action(11, "Build", "Unit", "STARTED"),
        action(12, "Build", "Compile", "STARTED"),
        stage(100, "Approve", "STARTED"),
    ];
    let t = ExecutionTimeline::fold(&key(), &events);
    let names: Vec<&str> = t.stages.iter().map(|s: &StageTimeline| s.name.as_str()).collect();
    assert_eq!(names, ["Source", "Build", "Approve"]);
    let actions: Vec<&str> = t.stages[1].actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(actions, ["Unit", "Compile"]);
}

/// Builds and deployments cannot be retried under their id: a terminal observation is final whatever its time.
struct FinalCase {
    rule: &'static str,
    obs: &'static [(i64, &'static str)],
    state: &'static str,
    started: Option<i64>,
    ended: Option<i64>,
}

const BUILD_CASES: &[FinalCase] = &[
    FinalCase {
        rule: "in progress then succeeded",
        obs: &[(0, "IN_PROGRESS"), (100, "SUCCEEDED")],
        state: "SUCCEEDED",
        started: Some(0),
        ended: Some(100),
    },
    FinalCase {
        rule: "a later-timestamped IN_PROGRESS does not reopen a success",
        obs: &[(0, "IN_PROGRESS"), (100, "SUCCEEDED"), (160, "IN_PROGRESS")],
        state: "SUCCEEDED",
        started: Some(0),
        ended: Some(100),
    },
    FinalCase {
        rule: "a later-timestamped IN_PROGRESS does not reopen a failure",
        obs: &[(0, "IN_PROGRESS"), (100, "FAILED"), (160, "IN_PROGRESS")],
        state: "FAILED",
        started: Some(0),
        ended: Some(100),
    },
    FinalCase {
        rule: "a stopped build stays stopped",
        obs: &[(0, "IN_PROGRESS"), (30, "STOPPED"), (31, "IN_PROGRESS")],
        state: "STOPPED",
        started: Some(0),
        ended: Some(30),
    },
    FinalCase {
        rule: "still running",
        obs: &[(0, "IN_PROGRESS")],
        state: "IN_PROGRESS",
        started: Some(0),
        ended: None,
    },
];

const DEPLOYMENT_CASES: &[FinalCase] = &[
    FinalCase {
        rule: "start then success",
        obs: &[(0, "START"), (270, "SUCCESS")],
        state: "SUCCESS",
        started: Some(0),
        ended: Some(270),
    },
    FinalCase {
        rule: "a later-timestamped START does not reopen a failure",
        obs: &[(0, "START"), (171, "FAILURE"), (200, "START")],
        state: "FAILURE",
        started: Some(0),
        ended: Some(171),
    },
    FinalCase {
        rule: "a later-timestamped READY does not reopen a success",
        obs: &[(0, "START"), (60, "SUCCESS"), (61, "READY")],
        state: "SUCCESS",
        started: Some(0),
        ended: Some(60),
    },
    FinalCase {
        rule: "stopped",
        obs: &[(0, "START"), (45, "STOP")],
        state: "STOP",
        started: Some(0),
        ended: Some(45),
    },
    FinalCase {
        rule: "only the failure arrived",
        obs: &[(171, "FAILURE")],
        state: "FAILURE",
        started: None,
        ended: Some(171),
    },
];

fn fold_build_every_order(events: &[DeliveryEvent]) -> BuildTimeline {
    let expected = fold_build(events).expect("a build");
    for order in orders(events) {
        assert_eq!(fold_build(&order).as_ref(), Some(&expected), "order {:?}", ids(&order));
    }
    expected
}

fn fold_deployment_every_order(events: &[DeliveryEvent]) -> DeploymentTimeline {
    let expected = fold_deployment(events).expect("a deployment");
    for order in orders(events) {
        assert_eq!(
            fold_deployment(&order).as_ref(),
            Some(&expected),
            "order {:?}",
            ids(&order)
        );
    }
    expected
}

#[test]
fn build_terminal_status_is_final_in_any_arrival_order() {
    for case in BUILD_CASES {
        let events: Vec<DeliveryEvent> = case.obs.iter().map(|(t, s)| build_state(*t, s, None, vec![])).collect();
        let b = fold_build_every_order(&events);
        assert_eq!(b.status, case.state, "{}", case.rule);
        assert_eq!(b.started_at, case.started.map(at), "{}: started", case.rule);
        assert_eq!(b.ended_at, case.ended.map(at), "{}: ended", case.rule);
        let duration = case.ended.zip(case.started).map(|(e, s)| e - s);
        assert_eq!(b.duration_secs, duration, "{}: duration", case.rule);
    }
}

#[test]
fn deployment_terminal_state_is_final_in_any_arrival_order() {
    for case in DEPLOYMENT_CASES {
        let events: Vec<DeliveryEvent> = case.obs.iter().map(|(t, s)| deployment(*t, s)).collect();
        let d = fold_deployment_every_order(&events);
        assert_eq!(d.state, case.state, "{}", case.rule);
        assert_eq!(d.started_at, case.started.map(at), "{}: started", case.rule);
        assert_eq!(d.ended_at, case.ended.map(at), "{}: ended", case.rule);
        let duration = case.ended.zip(case.started).map(|(e, s)| e - s);
        assert_eq!(d.duration_secs, duration, "{}: duration", case.rule);
        assert_eq!(
            (d.application.as_str(), d.deployment_group.as_str()),
            ("app", "production")
        );
    }
}

#[test]
fn build_duration_counts_from_codebuilds_own_start_time() {
    // CodeBuild says when the build started (`build-start-time`), which can be earlier than the first state event.
    let events = vec![
        build_state(5, "IN_PROGRESS", Some(2), vec![]),
        build_state(300, "SUCCEEDED", Some(2), vec![]),
    ];
    let b = fold_build_every_order(&events);
    assert_eq!(b.started_at, Some(at(2)));
    assert_eq!(b.duration_secs, Some(298));
    // Only the terminal event arrived: its start time still gives the duration.
    let b = fold_build(&[build_state(300, "FAILED", Some(2), vec![])]).unwrap();
    assert_eq!((b.status.as_str(), b.duration_secs), ("FAILED", Some(298)));
}

#[test]
fn build_known_only_from_phase_events_is_in_progress() {
    let b = fold_build(&[build_phase(60, phase("PROVISIONING", 10, Some(60)))]).unwrap();
    assert_eq!(b.status, "IN_PROGRESS");
    assert_eq!(b.ended_at, None);
    assert!(fold_build(&[]).is_none());
    assert!(
        fold_deployment(&[pipeline(0, "STARTED")]).is_none(),
        "other kinds are not a deployment"
    );
}

/// A table of phase merges: events (each a state or a phase change) and the phases expected, in CodeBuild's order.
#[test]
fn codebuild_phases_merge_from_state_and_phase_events_in_codebuild_order() {
    struct PhaseCase {
        rule: &'static str,
        events: Vec<DeliveryEvent>,
        expected: Vec<BuildPhase>,
    }
    let cases = vec![
        PhaseCase {
            rule: "a state event's phases and later phase changes, sorted by CodeBuild's order not by name",
            events: vec![
                build_state(
                    1,
                    "IN_PROGRESS",
                    Some(0),
                    vec![phase("SUBMITTED", 0, Some(1)), phase("QUEUED", 1, None)],
                ),
                build_phase(45, phase("PROVISIONING", 3, Some(44))),
                build_phase(364, phase("BUILD", 75, Some(363))),
            ],
            expected: vec![
                phase("SUBMITTED", 0, Some(1)),
                phase("QUEUED", 1, None),
                phase("PROVISIONING", 3, Some(44)),
                phase("BUILD", 75, Some(363)),
            ],
        },
        PhaseCase {
            rule: "a finished phase is not overwritten by a later snapshot that shows it still running",
            events: vec![
                build_phase(364, phase("BUILD", 75, Some(363))),
                build_state(370, "IN_PROGRESS", Some(0), vec![phase("BUILD", 75, None)]),
            ],
            expected: vec![phase("BUILD", 75, Some(363))],
        },
        PhaseCase {
            rule: "a running phase is completed by its phase change",
            events: vec![
                build_state(80, "IN_PROGRESS", Some(0), vec![phase("BUILD", 75, None)]),
                build_phase(364, phase("BUILD", 75, Some(363))),
            ],
            expected: vec![phase("BUILD", 75, Some(363))],
        },
        PhaseCase {
            rule: "unknown phases go after the known ones",
            events: vec![
                build_phase(50, phase("NEW_PHASE", 40, Some(50))),
                build_phase(30, phase("INSTALL", 20, Some(30))),
                build_phase(10, phase("SUBMITTED", 0, Some(10))),
            ],
            expected: vec![
                phase("SUBMITTED", 0, Some(10)),
                phase("INSTALL", 20, Some(30)),
                phase("NEW_PHASE", 40, Some(50)),
            ],
        },
    ];
    for case in cases {
        let b = fold_build_every_order(&case.events);
        assert_eq!(b.phases, case.expected, "{}", case.rule);
    }
}

#[test]
fn story_build_phases_are_complete_and_in_codebuild_order() {
    let events: Vec<DeliveryEvent> = story_events()
        .into_iter()
        .filter(|e| matches!(&e.body, EventBody::BuildState(b) if b.build_id.ends_with("9819ab2e-072d-45f1-994e-a17e21683b95"))
            || matches!(&e.body, EventBody::BuildPhase(b) if b.build_id.ends_with("9819ab2e-072d-45f1-994e-a17e21683b95")))
        .collect();
    assert_eq!(events.len(), 4, "execution A's build: 2 state and 2 phase events");
    let b = fold_build_every_order(&events);
    let names: Vec<&str> = b.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        names,
        [
            "SUBMITTED",
            "QUEUED",
            "PROVISIONING",
            "DOWNLOAD_SOURCE",
            "INSTALL",
            "PRE_BUILD",
            "BUILD",
            "POST_BUILD",
            "UPLOAD_ARTIFACTS",
            "FINALIZING",
            "COMPLETED"
        ]
    );
    let build = b.phases.iter().find(|p| p.phase == "BUILD").unwrap();
    assert_eq!(build.duration_secs, Some(288));
    assert_eq!(b.status, "SUCCEEDED");
    // build-start-time 9:00:09 AM, SUCCEEDED event at 09:06:34.
    assert_eq!(b.duration_secs, Some(385));
    assert_eq!(b.initiator.as_deref(), Some("codepipeline/checkout-service"));
}

fn source_result(commit: &str, summary: &str) -> ExecutionResult {
    ExecutionResult {
        external_execution_id: Some(commit.into()),
        external_execution_url: Some(format!(
            "https://github.com/example-shop/checkout-service/commit/{commit}"
        )),
        external_execution_summary: Some(summary.into()),
        error_code: None,
    }
}

const SOURCE: (&str, &str) = ("Source", "CodeStarSourceConnection");

#[test]
fn source_revision_comes_from_the_source_actions_success() {
    let commit = "ec964d3d4496eba592913bcbacbb07b7df1db1af";
    let events = vec![
        stage(1, "Source", "STARTED"),
        action_with(2, "Source", "Source", "STARTED", SOURCE, ExecutionResult::default()),
        action_with(
            5,
            "Source",
            "Source",
            "SUCCEEDED",
            SOURCE,
            source_result(commit, "Add express checkout"),
        ),
        stage(6, "Source", "SUCCEEDED"),
    ];
    let t = fold_every_order(&events);
    assert_eq!(
        t.source_revisions,
        vec![SourceRevision {
            action: "Source".into(),
            provider: Some("CodeStarSourceConnection".into()),
            revision_id: Some(commit.into()),
            summary: Some("Add express checkout".into()),
            url: Some(format!(
                "https://github.com/example-shop/checkout-service/commit/{commit}"
            )),
            branch: None,
            repository: None,
            author: None,
        }]
    );
}

#[test]
fn a_source_action_that_did_not_succeed_gives_no_revision() {
    let events = vec![
        action_with(2, "Source", "Source", "STARTED", SOURCE, ExecutionResult::default()),
        action_with(5, "Source", "Source", "FAILED", SOURCE, ExecutionResult::default()),
    ];
    assert!(fold_every_order(&events).source_revisions.is_empty());
    // A non-Source action's external id is not a revision.
    let build = vec![action_with(
        2,
        "Build",
        "Build",
        "SUCCEEDED",
        ("Build", "CodeBuild"),
        source_result("proj:b-1", "built"),
    )];
    assert!(fold_every_order(&build).source_revisions.is_empty());
}

#[test]
fn source_revision_takes_branch_and_repository_from_a_processed_notification() {
    let commit = "efc8cb0e1936524a9ad401f808250218c791b143";
    let mut started = pipeline(0, "STARTED");
    if let EventBody::PipelineExecution(p) = &mut started.body {
        p.source_revisions.push(SourceRevision {
            action: "Source".into(),
            provider: Some("CodeStarSourceConnection".into()),
            revision_id: Some(commit.into()),
            summary: Some("Fix null basket in express checkout".into()),
            url: None,
            branch: Some("main".into()),
            repository: Some("example-shop/checkout-service".into()),
            author: Some("alice@example.com".into()),
        });
    }
    let events = vec![
        started.clone(),
        action_with(
            5,
            "Source",
            "Source",
            "SUCCEEDED",
            SOURCE,
            source_result(commit, "Fix null basket in express checkout"),
        ),
    ];
    let t = fold_every_order(&events);
    assert_eq!(
        t.source_revisions.len(),
        1,
        "one revision, not one per route: {:?}",
        t.source_revisions
    );
    let r = &t.source_revisions[0];
    assert_eq!(r.revision_id.as_deref(), Some(commit));
    assert_eq!(r.branch.as_deref(), Some("main"));
    assert_eq!(r.repository.as_deref(), Some("example-shop/checkout-service"));
    assert_eq!(
        r.author.as_deref(),
        Some("alice@example.com"),
        "the author is kept for separation of duties"
    );
    assert!(r.url.is_some(), "the action's link is kept");
    // Before the action's success arrives, the notification alone names the revision.
    let t = ExecutionTimeline::fold(&key(), &[started]);
    assert_eq!(t.source_revisions[0].revision_id.as_deref(), Some(commit));
}

#[test]
fn story_source_revisions_are_the_commits_of_each_execution() {
    let events = story_events();
    let of = |id: &str| {
        let k = exec_key(id);
        let mine: Vec<DeliveryEvent> = events
            .iter()
            .filter(|e| matches!(e.subject(), tollgate_domain::record::keys::Subject::Execution(x) if x == k))
            .cloned()
            .collect();
        ExecutionTimeline::fold(&k, &mine)
    };
    let a = of(EXEC_A);
    assert_eq!(a.source_revisions.len(), 1);
    assert_eq!(
        a.source_revisions[0].revision_id.as_deref(),
        Some("ec964d3d4496eba592913bcbacbb07b7df1db1af")
    );
    assert_eq!(a.source_revisions[0].summary.as_deref(), Some("Add express checkout"));
    let b = of(EXEC_B);
    assert_eq!(
        b.source_revisions[0].revision_id.as_deref(),
        Some("efc8cb0e1936524a9ad401f808250218c791b143")
    );
    assert_eq!(b.trigger.as_ref().map(|t| t.trigger_type.as_str()), Some("Webhook"));
}
