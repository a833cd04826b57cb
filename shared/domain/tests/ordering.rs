//! Delivery is at-least-once and unordered. These properties feed the same events through the ingest service in
//! any order, each delivered one to three times (some redeliveries under another EventBridge id, as when an event
//! reaches the control plane by two routes), and check that the outcome is the one of the in-order stream: the same
//! timelines, every event recorded new exactly once, no notification key sent twice for a record, every notification
//! published marked sent (and no claim left behind), and the same failure notifications.
//!
//! Two sources of events: the demo story, and generated pipelines (random stages and actions, successes and
//! failures, builds and deployments, realistic increasing times with same-second ties). The generator has no
//! retries on purpose: when a retried stage's success arrives before its earlier failure, the failure is (rightly)
//! never announced, so the failure notifications of a retried run depend on arrival order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use tollgate_domain::ingest::service::Outcome;
use tollgate_domain::record::event::DeliveryEvent;
use tollgate_domain::record::keys::{ExecutionKey, Subject};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, Mark};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::{
    fold_build, fold_deployment, BuildTimeline, DeploymentTimeline, ExecutionTimeline,
};
use tollgate_domain::tell::notify::{human_duration, Notification, NotificationKind};

/// What one delivery sequence produced.
#[derive(Debug)]
struct Run {
    timelines: BTreeMap<ExecutionKey, ExecutionTimeline>,
    /// Messages recorded with `new: true`.
    recorded_new: usize,
    /// Every notification sent, with the partition key of the record whose event sent it.
    sent: Vec<(String, Notification)>,
}

impl Run {
    /// (record, kind, key) of the notifications of `kinds`.
    fn keys_of(&self, kinds: &[NotificationKind]) -> BTreeSet<(String, &'static str, String)> {
        self.sent
            .iter()
            .filter(|(_, n)| kinds.contains(&n.kind))
            .map(|(record, n)| (record.clone(), n.kind.as_str(), n.key.clone()))
            .collect()
    }

    /// A notification key sent twice for the same record, if any.
    fn repeated_key(&self) -> Option<(String, String)> {
        let mut seen = BTreeSet::new();
        self.sent
            .iter()
            .map(|(record, n)| (record.clone(), n.key.clone()))
            .find(|k| !seen.insert(k.clone()))
    }
}

const FAILURES: [NotificationKind; 3] = [
    NotificationKind::ExecutionFailed,
    NotificationKind::StageFailed,
    NotificationKind::DeploymentFailed,
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

/// Feeds `bodies` in order through a fresh ingestor over in-memory ports.
fn deliver(bodies: &[String]) -> Run {
    runtime().block_on(async {
        let (ingestor, store, notifier) = ingestor();
        let mut recorded_new = 0;
        let mut sent = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let outcome = ingestor
                .ingest(body, &ctx(format!("m-{i}")))
                .await
                .unwrap_or_else(|e| panic!("in-memory ports do not fail, got {e} on message {i}"));
            let Outcome::Recorded { new, notifications, .. } = outcome else {
                panic!("message {i} was rejected: {outcome:?}\n{body}")
            };
            recorded_new += usize::from(new);
            let record = parse_event(body.as_bytes()).unwrap().subject().pk();
            sent.extend(notifications.into_iter().map(|n| (record.clone(), n)));
        }
        let published: Vec<Notification> = sent.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(
            notifier.sent(),
            published,
            "the outcomes report exactly what was published"
        );
        // Each record's markers, read back by recording its events again: exactly the notifications published,
        // all marked sent.
        let mut marked = BTreeSet::new();
        for body in bodies {
            let event = parse_event(body.as_bytes()).unwrap();
            let recorded = store.record(&event).await.unwrap();
            assert!(!recorded.new);
            for (key, mark) in recorded.notified {
                assert_eq!(
                    mark,
                    Mark::Sent,
                    "notification {key} of event {} is not marked sent",
                    event.id
                );
                marked.insert((event.subject().pk(), key));
            }
        }
        let published_keys: BTreeSet<(String, String)> = sent.iter().map(|(r, n)| (r.clone(), n.key.clone())).collect();
        assert_eq!(marked, published_keys, "the markers are the notifications published");
        let mut timelines = BTreeMap::new();
        for key in store.execution_keys() {
            let t = execution_timeline(&*store, &key).await.unwrap().expect("recorded");
            timelines.insert(key, t);
        }
        Run {
            timelines,
            recorded_new,
            sent,
        }
    })
}

/// The same event as a second route delivers it: another EventBridge id, keys in another order.
fn redelivered_under_another_id(body: &str, copy: usize) -> String {
    let mut v: Value = serde_json::from_str(body).expect("JSON");
    v["id"] = json!(format!("redelivery-{copy}-{}", v["id"].as_str().unwrap_or("none")));
    let Value::Object(map) = v else {
        unreachable!("events are objects")
    };
    // serde_json's map is sorted; rebuilding it reversed changes the order of the keys as sent.
    let mut text = String::from("{");
    for (i, (k, val)) in map.iter().rev().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{}:{}", Value::String(k.clone()), val));
    }
    text.push('}');
    text
}

/// A delivery plan: (event index, copy number), shuffled, with whether each event's extra copies come by another
/// route. Each event is delivered one to three times.
fn delivery_plan(events: usize) -> impl Strategy<Value = (Vec<(usize, usize)>, Vec<bool>)> {
    (
        prop::collection::vec(1usize..=3, events),
        prop::collection::vec(any::<bool>(), events),
    )
        .prop_flat_map(|(copies, other_route)| {
            let plan: Vec<(usize, usize)> = copies
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| (0..n).map(move |copy| (i, copy)))
                .collect();
            (Just(plan).prop_shuffle(), Just(other_route))
        })
}

fn bodies_of_plan(bodies: &[String], plan: &[(usize, usize)], other_route: &[bool]) -> Vec<String> {
    plan.iter()
        .map(|&(i, copy)| {
            if copy > 0 && other_route[i] {
                redelivered_under_another_id(&bodies[i], copy)
            } else {
                bodies[i].clone()
            }
        })
        .collect()
}

fn distinct_events(bodies: &[String]) -> usize {
    bodies
        .iter()
        .map(|b| parse_event(b.as_bytes()).unwrap().id)
        .collect::<BTreeSet<_>>()
        .len()
}

/// The checks shared by both properties: `shuffled` must agree with `in_order`.
fn check_against_in_order(in_order: &Run, shuffled: &Run, distinct: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        shuffled.timelines.keys().collect::<Vec<_>>(),
        in_order.timelines.keys().collect::<Vec<_>>()
    );
    for (key, expected) in &in_order.timelines {
        prop_assert_eq!(&shuffled.timelines[key], expected, "timeline of {}", key.execution_id);
    }
    prop_assert_eq!(
        shuffled.recorded_new,
        distinct,
        "each event is recorded new exactly once"
    );
    prop_assert_eq!(
        shuffled.repeated_key(),
        None,
        "a notification key was sent twice for one record"
    );
    prop_assert_eq!(shuffled.keys_of(&FAILURES), in_order.keys_of(&FAILURES));
    Ok(())
}

fn story_in_order() -> &'static (Vec<String>, Run) {
    static IN_ORDER: OnceLock<(Vec<String>, Run)> = OnceLock::new();
    IN_ORDER.get_or_init(|| {
        let bodies = story_bodies();
        let run = deliver(&bodies);
        (bodies, run)
    })
}

#[test]
fn story_in_order_is_the_reference_the_properties_compare_with() {
    let (bodies, run) = story_in_order();
    assert_eq!(bodies.len(), 55);
    assert_eq!(distinct_events(bodies), 55);
    assert_eq!(run.recorded_new, 55);
    let states: Vec<(&str, &str)> = run
        .timelines
        .iter()
        .map(|(k, t)| (k.execution_id.as_str(), t.state.as_str()))
        .collect();
    assert_eq!(states, [(EXEC_B, "SUCCEEDED"), (EXEC_A, "FAILED")]);
    let failures = run.keys_of(&FAILURES);
    let kinds: Vec<&str> = failures.iter().map(|(_, kind, _)| *kind).collect();
    assert_eq!(
        kinds,
        ["deployment_failed", "execution_failed", "stage_failed"],
        "{failures:#?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn story_in_any_order_with_duplicates_gives_the_in_order_outcome(
        (plan, other_route) in delivery_plan(55)
    ) {
        let (bodies, in_order) = story_in_order();
        let shuffled = deliver(&bodies_of_plan(bodies, &plan, &other_route));
        check_against_in_order(in_order, &shuffled, bodies.len())?;
    }
}

/// The store hands a record's events back in its own order (the in-memory one sorts them by id), so the service
/// path alone never shows the fold an arrival order: fold the story's events directly, in the order they arrived.
type StoryFolds = (
    Vec<ExecutionTimeline>,
    Vec<Option<BuildTimeline>>,
    Vec<Option<DeploymentTimeline>>,
);

fn story_folds(events: &[DeliveryEvent]) -> StoryFolds {
    let of = |subject: &Subject| -> Vec<DeliveryEvent> {
        events.iter().filter(|e| e.subject() == *subject).cloned().collect()
    };
    let subjects: BTreeSet<Subject> = story_events().iter().map(DeliveryEvent::subject).collect();
    let mut executions = Vec::new();
    let mut builds = Vec::new();
    let mut deployments = Vec::new();
    for subject in &subjects {
        match subject {
            Subject::Execution(k) => executions.push(ExecutionTimeline::fold(k, &of(subject))),
            Subject::Build(_) => builds.push(fold_build(&of(subject))),
            Subject::Deployment(_) => deployments.push(fold_deployment(&of(subject))),
            _ => {}
        }
    }
    (executions, builds, deployments)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn folding_the_story_in_arrival_order_with_duplicates_gives_the_in_order_timelines(
        (plan, _) in delivery_plan(55)
    ) {
        static IN_ORDER: OnceLock<(Vec<DeliveryEvent>, StoryFolds)> = OnceLock::new();
        let (events, expected) = IN_ORDER.get_or_init(|| {
            let events = story_events();
            let folds = story_folds(&events);
            (events, folds)
        });
        prop_assert_eq!(expected.0.len(), 2);
        prop_assert_eq!(expected.1.len(), 2);
        prop_assert_eq!(expected.2.len(), 4);
        let arrived: Vec<DeliveryEvent> = plan.iter().map(|&(i, _)| events[i].clone()).collect();
        prop_assert_eq!(&story_folds(&arrived), expected);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Generated pipelines.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionKind {
    Build,
    Deploy,
    Invoke,
}

#[derive(Debug, Clone)]
struct ActionSpec {
    kind: ActionKind,
    fails: bool,
    /// How long the action's work runs, in seconds.
    secs: i64,
    /// Bookkeeping delay between the state changes around it (0 gives same-second events).
    lag: i64,
}

#[derive(Debug, Clone)]
struct ExecutionSpec {
    /// Seconds between the previous execution's end and this one's start.
    idle: i64,
    /// After the Source stage (which always succeeds), stages of one to three actions run one after another.
    stages: Vec<Vec<ActionSpec>>,
}

fn action_spec() -> impl Strategy<Value = ActionSpec> {
    (
        prop_oneof![
            Just(ActionKind::Build),
            Just(ActionKind::Deploy),
            Just(ActionKind::Invoke)
        ],
        prop::bool::weighted(0.2),
        1i64..900,
        0i64..=2,
    )
        .prop_map(|(kind, fails, secs, lag)| ActionSpec { kind, fails, secs, lag })
}

fn execution_spec() -> impl Strategy<Value = ExecutionSpec> {
    (
        60i64..7200,
        prop::collection::vec(prop::collection::vec(action_spec(), 1..=3), 1..=3),
    )
        .prop_map(|(idle, stages)| ExecutionSpec { idle, stages })
}

const GEN_PIPELINE: &str = "generated-service";

/// What the generator knows each execution must come to.
#[derive(Debug, Clone)]
struct Expected {
    execution_id: String,
    failed: bool,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
    /// (stage, state) in run order.
    stages: Vec<(String, &'static str)>,
    /// (stage, action, state, the build status or deployment state it must be linked to).
    actions: Vec<(String, String, &'static str, Option<&'static str>)>,
    failing: Option<(String, String)>,
    /// The failing action ran a deployment.
    deployment_failed: bool,
    commit: String,
    events: usize,
}

/// Renders executions as EventBridge messages, in time order.
struct Writer {
    bodies: Vec<String>,
    now: DateTime<Utc>,
    exec_events: usize,
}

impl Writer {
    fn envelope(&mut self, source: &str, detail_type: &str, detail: Value) {
        let n = self.bodies.len();
        self.bodies.push(
            json!({
                "version": "0",
                "id": format!("00000000-0000-4000-8000-{n:012}"),
                "detail-type": detail_type,
                "source": source,
                "account": ACCOUNT,
                "time": self.now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "region": REGION,
                "resources": [],
                "detail": detail,
            })
            .to_string(),
        );
    }

    fn pipeline(&mut self, exec: &str, state: &str) {
        self.exec_events += 1;
        let detail = json!({"pipeline": GEN_PIPELINE, "execution-id": exec, "state": state, "version": 1});
        self.envelope(
            "aws.codepipeline",
            "CodePipeline Pipeline Execution State Change",
            detail,
        );
    }

    fn stage(&mut self, exec: &str, stage: &str, state: &str) {
        self.exec_events += 1;
        let detail =
            json!({"pipeline": GEN_PIPELINE, "execution-id": exec, "stage": stage, "state": state, "version": 1});
        self.envelope("aws.codepipeline", "CodePipeline Stage Execution State Change", detail);
    }

    fn action(&mut self, exec: &str, stage: &str, action: &str, state: &str, kind: (&str, &str), result: Value) {
        self.exec_events += 1;
        let (category, provider) = kind;
        let mut detail = json!({
            "pipeline": GEN_PIPELINE, "execution-id": exec, "stage": stage, "action": action, "state": state,
            "region": REGION, "version": 1,
            "type": {"owner": "AWS", "provider": provider, "category": category, "version": "1"},
        });
        if !result.is_null() {
            detail["execution-result"] = result;
        }
        self.envelope("aws.codepipeline", "CodePipeline Action Execution State Change", detail);
    }

    fn build(&mut self, build_id: &str, status: &str, started: DateTime<Utc>) {
        let detail = json!({
            "build-status": status,
            "project-name": "generated-build",
            "build-id": format!("arn:aws:codebuild:{REGION}:{ACCOUNT}:build/{build_id}"),
            "additional-information": {
                "initiator": format!("codepipeline/{GEN_PIPELINE}"),
                "build-start-time": started.format("%b %-d, %Y %-I:%M:%S %p").to_string(),
                "logs": {"deep-link": format!("https://console.aws.amazon.com/cloudwatch/home#logs:{build_id}")},
            },
            "version": "1",
        });
        self.envelope("aws.codebuild", "CodeBuild Build State Change", detail);
    }

    fn build_phase(&mut self, build_id: &str, start: DateTime<Utc>) {
        let detail = json!({
            "completed-phase": "BUILD",
            "completed-phase-status": "SUCCEEDED",
            "completed-phase-start": start.format("%b %-d, %Y %-I:%M:%S %p").to_string(),
            "completed-phase-end": self.now.format("%b %-d, %Y %-I:%M:%S %p").to_string(),
            "completed-phase-duration-seconds": (self.now - start).num_seconds(),
            "project-name": "generated-build",
            "build-id": format!("arn:aws:codebuild:{REGION}:{ACCOUNT}:build/{build_id}"),
            "version": "1",
        });
        self.envelope("aws.codebuild", "CodeBuild Build Phase Change", detail);
    }

    fn deployment(&mut self, deployment_id: &str, state: &str) {
        let detail = json!({
            "deploymentId": deployment_id, "state": state, "application": GEN_PIPELINE,
            "deploymentGroup": "production", "region": REGION,
        });
        self.envelope(
            "aws.codedeploy",
            "CodeDeploy Deployment State-change Notification",
            detail,
        );
    }

    fn wait(&mut self, secs: i64) {
        self.now += Duration::seconds(secs);
    }
}

/// Writes the executions' events in time order and says what each execution must come to.
fn render(specs: &[ExecutionSpec]) -> (Vec<String>, Vec<Expected>) {
    let mut w = Writer {
        bodies: Vec::new(),
        now: Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap(),
        exec_events: 0,
    };
    let mut expected = Vec::new();
    for (x, spec) in specs.iter().enumerate() {
        w.wait(spec.idle);
        w.exec_events = 0;
        let exec = format!("0e0e0e0e-0000-4000-8000-{x:012}");
        let commit = format!("{x:04}c0ffee{:028x}", spec.idle);
        let started_at = w.now;
        w.pipeline(&exec, "STARTED");
        w.wait(1);
        w.stage(&exec, "Source", "STARTED");
        w.action(
            &exec,
            "Source",
            "Source",
            "STARTED",
            ("Source", "CodeStarSourceConnection"),
            Value::Null,
        );
        w.wait(3);
        let source_result = json!({
            "external-execution-id": commit,
            "external-execution-summary": format!("Change number {x}"),
            "external-execution-url": format!("https://github.com/example/generated/commit/{commit}"),
        });
        w.action(
            &exec,
            "Source",
            "Source",
            "SUCCEEDED",
            ("Source", "CodeStarSourceConnection"),
            source_result,
        );
        w.wait(1);
        w.stage(&exec, "Source", "SUCCEEDED");
        let mut e = Expected {
            execution_id: exec.clone(),
            failed: false,
            started_at,
            ended_at: started_at,
            stages: vec![("Source".into(), "SUCCEEDED")],
            actions: vec![("Source".into(), "Source".into(), "SUCCEEDED", None)],
            failing: None,
            deployment_failed: false,
            commit,
            events: 0,
        };
        'stages: for (s, actions) in spec.stages.iter().enumerate() {
            let stage = format!("Stage{s}");
            w.wait(1);
            w.stage(&exec, &stage, "STARTED");
            for (a, act) in actions.iter().enumerate() {
                let name = format!("Action{a}");
                let run_id = format!("{x}{s}{a}");
                let state = if act.fails { "FAILED" } else { "SUCCEEDED" };
                w.wait(act.lag);
                let (kind, result, linked) = match act.kind {
                    ActionKind::Build => {
                        let id = format!("generated-build:{run_id}-aaaa-4bbb-8ccc-dddddddddddd");
                        let result = json!({"external-execution-id": id,
                            "external-execution-url": format!("https://console.aws.amazon.com/codebuild/{id}")});
                        (
                            ("Build", "CodeBuild"),
                            result,
                            Some(if act.fails { "FAILED" } else { "SUCCEEDED" }),
                        )
                    }
                    ActionKind::Deploy => {
                        let id = format!("d-GEN{run_id:0>6}");
                        let result = json!({"external-execution-id": id,
                            "external-execution-url": format!("https://console.aws.amazon.com/codedeploy/{id}")});
                        (
                            ("Deploy", "CodeDeploy"),
                            result,
                            Some(if act.fails { "FAILURE" } else { "SUCCESS" }),
                        )
                    }
                    ActionKind::Invoke => (("Invoke", "Lambda"), Value::Null, None),
                };
                w.action(&exec, &stage, &name, "STARTED", kind, result.clone());
                let external = result["external-execution-id"].as_str().unwrap_or_default().to_string();
                match act.kind {
                    ActionKind::Build => {
                        let build_started = w.now;
                        w.wait(1);
                        w.build(&external, "IN_PROGRESS", build_started);
                        let phase_start = w.now;
                        w.wait(act.secs / 2);
                        w.build_phase(&external, phase_start);
                        w.wait(act.secs - act.secs / 2);
                        w.build(&external, linked.unwrap(), build_started);
                    }
                    ActionKind::Deploy => {
                        w.wait(1);
                        w.deployment(&external, "START");
                        w.wait(act.secs);
                        w.deployment(&external, linked.unwrap());
                    }
                    ActionKind::Invoke => w.wait(act.secs),
                }
                w.wait(act.lag);
                let mut result = result;
                if act.fails {
                    result = json!({"external-execution-summary": format!("{name} failed"), "error-code": "JobFailed"});
                }
                w.action(&exec, &stage, &name, state, kind, result);
                e.actions.push((stage.clone(), name.clone(), state, linked));
                if act.fails {
                    w.wait(act.lag);
                    w.stage(&exec, &stage, "FAILED");
                    w.wait(act.lag);
                    w.pipeline(&exec, "FAILED");
                    e.stages.push((stage.clone(), "FAILED"));
                    e.failed = true;
                    e.failing = Some((stage, name));
                    e.deployment_failed = act.kind == ActionKind::Deploy;
                    break 'stages;
                }
            }
            w.wait(1);
            w.stage(&exec, &stage, "SUCCEEDED");
            e.stages.push((stage, "SUCCEEDED"));
        }
        if !e.failed {
            w.wait(1);
            w.pipeline(&exec, "SUCCEEDED");
        }
        e.ended_at = w.now;
        e.events = w.exec_events;
        expected.push(e);
    }
    (w.bodies, expected)
}

fn gen_key(execution_id: &str) -> ExecutionKey {
    ExecutionKey {
        account: ACCOUNT.into(),
        region: REGION.into(),
        pipeline: GEN_PIPELINE.into(),
        execution_id: execution_id.into(),
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The in-order run is right, not only stable: each timeline and each notification is what the generator implies.
fn check_in_order_against_the_generator(run: &Run, expected: &[Expected]) -> Result<(), TestCaseError> {
    prop_assert_eq!(run.timelines.len(), expected.len());
    let mut previous_failures: Vec<&Expected> = Vec::new();
    for e in expected {
        let key = gen_key(&e.execution_id);
        let t = &run.timelines[&key];
        let record = tollgate_domain::record::keys::execution_pk(&key);
        prop_assert_eq!(t.state.as_str(), if e.failed { "FAILED" } else { "SUCCEEDED" });
        prop_assert_eq!(t.started_at, Some(e.started_at));
        prop_assert_eq!(t.ended_at, Some(e.ended_at));
        prop_assert_eq!(t.duration_secs, Some((e.ended_at - e.started_at).num_seconds()));
        prop_assert_eq!(t.event_count, e.events);
        let stages: Vec<(String, &str)> = t.stages.iter().map(|s| (s.name.clone(), s.state.as_str())).collect();
        let want: Vec<(String, &str)> = e.stages.iter().map(|(n, s)| (n.clone(), *s)).collect();
        prop_assert_eq!(stages, want);
        let actions: Vec<(String, String, &str, Option<&str>)> = t
            .stages
            .iter()
            .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
            .map(|(s, a)| {
                let linked = a
                    .build
                    .as_ref()
                    .map(|b| b.status.as_str())
                    .or(a.deployment.as_ref().map(|d| d.state.as_str()));
                (s.name.clone(), a.name.clone(), a.state.as_str(), linked)
            })
            .collect();
        let want: Vec<(String, String, &str, Option<&str>)> = e
            .actions
            .iter()
            .map(|(s, a, st, l)| (s.clone(), a.clone(), *st, *l))
            .collect();
        prop_assert_eq!(actions, want);
        prop_assert_eq!(t.source_revisions.len(), 1);
        prop_assert_eq!(t.source_revisions[0].revision_id.as_deref(), Some(e.commit.as_str()));
        let failing = t.failing_action().map(|(s, a)| (s.name.clone(), a.name.clone()));
        prop_assert_eq!(failing, e.failing.clone());

        let mine: Vec<&Notification> = run.sent.iter().filter(|(r, _)| *r == record).map(|(_, n)| n).collect();
        let kinds: Vec<NotificationKind> = mine.iter().map(|n| n.kind).collect();
        if let Some((stage, _)) = &e.failing {
            prop_assert_eq!(
                &kinds,
                &vec![NotificationKind::StageFailed, NotificationKind::ExecutionFailed]
            );
            prop_assert_eq!(&mine[0].title, &format!("{GEN_PIPELINE}: stage {stage} failed"));
            prop_assert_eq!(&mine[1].key, &format!("execution_failed@{}", stamp(e.ended_at)));
            previous_failures.push(e);
        } else if let Some(first) = previous_failures.first() {
            prop_assert_eq!(&kinds, &vec![NotificationKind::ExecutionRestored]);
            let broken_for = human_duration((e.ended_at - first.ended_at).num_seconds());
            prop_assert_eq!(&mine[0].title, &format!("{GEN_PIPELINE} restored after {broken_for}"));
            previous_failures.clear();
        } else {
            prop_assert!(kinds.is_empty(), "a success after a success is silent: {:?}", kinds);
        }
    }
    let deployment_failures = run
        .sent
        .iter()
        .filter(|(_, n)| n.kind == NotificationKind::DeploymentFailed)
        .count();
    prop_assert_eq!(
        deployment_failures,
        expected.iter().filter(|e| e.deployment_failed).count()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_pipelines_in_any_order_with_duplicates_give_the_in_order_outcome(
        ((bodies, expected), (plan, other_route)) in prop::collection::vec(execution_spec(), 1..=3)
            .prop_map(|specs| render(&specs))
            .prop_flat_map(|(bodies, expected)| {
                let n = bodies.len();
                (Just((bodies, expected)), delivery_plan(n))
            })
    ) {
        let distinct = distinct_events(&bodies);
        prop_assert_eq!(distinct, bodies.len(), "the generator writes distinct events");
        let in_order = deliver(&bodies);
        prop_assert_eq!(in_order.recorded_new, distinct);
        check_in_order_against_the_generator(&in_order, &expected)?;
        let shuffled = deliver(&bodies_of_plan(&bodies, &plan, &other_route));
        check_against_in_order(&in_order, &shuffled, distinct)?;
    }
}
