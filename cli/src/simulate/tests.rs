use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tollgate_domain::ingest::service::{Ingestor, MessageContext, Outcome};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::event::{DeliveryEvent, EventBody, EventKind};
use tollgate_domain::record::keys::ExecutionKey;
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;

use super::*;

const STORY: &str = include_str!("../../../events/story/failed-deploy-and-fix.json");

fn parse(e: &Value) -> DeliveryEvent {
    parse_event(e.to_string().as_bytes()).unwrap_or_else(|err| panic!("{err}: {e}"))
}

fn small() -> SimOptions {
    SimOptions {
        seed: 7,
        ..SimOptions::default()
    }
}

/// The final pipeline state of every execution.
fn outcomes(events: &[DeliveryEvent]) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    for e in events {
        if let EventBody::PipelineExecution(p) = &e.body {
            if p.state != "STARTED" {
                states.insert(p.execution_id.clone(), p.state.clone());
            }
        }
    }
    states
}

#[test]
fn same_options_give_identical_streams_and_seeds_differ() {
    let opts = small();
    let a: Vec<Value> = simulate(&opts).collect();
    let b: Vec<Value> = simulate(&opts).collect();
    assert_eq!(a, b);
    let text = |v: &[Value]| v.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert_eq!(text(&a), text(&b), "byte-identical");
    let clean: Vec<Value> = clean_stream(&opts).collect();
    assert_eq!(clean, clean_stream(&opts).collect::<Vec<_>>());

    let other: Vec<Value> = simulate(&SimOptions {
        seed: 8,
        ..opts.clone()
    })
    .collect();
    assert_ne!(a, other);
    let other_clean: Vec<Value> = clean_stream(&SimOptions { seed: 8, ..opts }).collect();
    assert_ne!(clean, other_clean);
}

#[test]
fn every_event_parses_and_every_kind_appears() {
    let opts = SimOptions {
        accounts: vec!["111122223333".into(), "444455556666".into()],
        regions: vec!["eu-west-1".into(), "us-east-1".into()],
        ..small()
    };
    let mut kinds = BTreeSet::new();
    let mut envelope_ids = BTreeSet::new();
    let mut places = BTreeSet::new();
    let uuid_shape = |s: &str| {
        s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    };
    for v in clean_stream(&opts) {
        assert_eq!(v["version"], "0");
        let id = v["id"].as_str().unwrap();
        assert!(uuid_shape(id), "{id}");
        assert!(envelope_ids.insert(id.to_string()), "envelope ids are unique: {id}");
        let time = v["time"].as_str().unwrap();
        assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
        assert!(!v["resources"].as_array().unwrap().is_empty());
        let e = parse(&v);
        places.insert((e.account.clone(), e.region.clone()));
        kinds.insert(e.kind());
        match &e.body {
            EventBody::BuildState(b) => {
                assert!(b.started_at.is_some(), "CodeBuild's time format parses: {v}");
                assert!(b.build_id.starts_with(&b.project) && b.build_id.contains(':'));
                assert!(b.initiator.as_deref().unwrap().starts_with("codepipeline/"));
                assert!(!b.phases.is_empty());
                if b.status != "IN_PROGRESS" {
                    assert_eq!(b.phases.len(), 11);
                    assert_eq!(b.phases.last().unwrap().phase, "COMPLETED");
                }
            }
            EventBody::BuildPhase(p) => {
                assert!(p.phase.started_at.is_some() && p.phase.ended_at.is_some());
                assert!(p.phase.duration_secs.is_some());
            }
            EventBody::DeploymentState(d) => {
                let id = d.deployment_id.as_str();
                assert!(id.len() == 11 && id.starts_with("d-"), "{id}");
                assert!(
                    id[2..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
                    "{id}"
                );
            }
            EventBody::AlarmState(a) => {
                assert!(a.changed_at.is_some(), "CloudWatch's time format parses: {v}");
                assert_ne!(a.previous_state.as_deref(), Some(a.state.as_str()));
            }
            EventBody::PipelineExecution(p) if p.state == "STARTED" => {
                let t = p.trigger.as_ref().expect("a trigger");
                assert_eq!(t.trigger_type, "Webhook");
                assert!(t
                    .detail
                    .as_deref()
                    .unwrap()
                    .starts_with("arn:aws:codestar-connections:"));
            }
            EventBody::ActionExecution(a) if a.stage == "Source" && a.state == "SUCCEEDED" => {
                let commit = a.result.external_execution_id.as_deref().unwrap();
                assert!(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(a.result.external_execution_summary.is_some());
            }
            _ => {}
        }
    }
    for kind in [
        EventKind::PipelineExecution,
        EventKind::StageExecution,
        EventKind::ActionExecution,
        EventKind::BuildState,
        EventKind::BuildPhase,
        EventKind::DeploymentState,
        EventKind::AlarmState,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} missing from {kinds:?}");
    }
    assert_eq!(
        places.len(),
        4,
        "pipelines spread over every account and region: {places:?}"
    );
}

/// Every key the simulator writes is one the samples and the story use, per detail-type.
#[test]
fn shapes_follow_the_story() {
    fn keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = format!("{prefix}.{k}");
                    out.insert(path.clone());
                    keys(v, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    keys(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }
    let story: Vec<Value> = serde_json::from_str(STORY).unwrap();
    let mut known: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut envelope = BTreeSet::new();
    for e in &story {
        keys(
            e,
            "",
            known.entry(e["detail-type"].as_str().unwrap().to_string()).or_default(),
        );
        envelope.extend(e.as_object().unwrap().keys().cloned());
    }
    let opts = SimOptions {
        approval_rate: 1.0,
        deploy_failure_rate: 0.5,
        ..small()
    };
    let mut seen = BTreeSet::new();
    for e in clean_stream(&opts) {
        let detail_type = e["detail-type"].as_str().unwrap().to_string();
        assert_eq!(
            e.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>(),
            envelope
        );
        let mut mine = BTreeSet::new();
        keys(&e, "", &mut mine);
        let theirs = &known[&detail_type];
        let extra: Vec<&String> = mine.difference(theirs).collect();
        assert!(
            extra.is_empty(),
            "{detail_type}: keys the story does not have: {extra:?}"
        );
        seen.insert(detail_type);
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
}

#[test]
fn delivery_adds_only_duplicates() {
    let opts = SimOptions {
        pipelines: 10,
        executions_per_pipeline: 10,
        ..small()
    };
    let clean: Vec<String> = clean_stream(&opts).map(|e| parse(&e).id).collect();
    let clean_set: BTreeSet<&String> = clean.iter().collect();
    assert_eq!(clean_set.len(), clean.len(), "the clean stream has no duplicates");
    let delivered: Vec<String> = simulate(&opts).map(|e| parse(&e).id).collect();
    assert_eq!(delivered.iter().collect::<BTreeSet<_>>(), clean_set);
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for id in &delivered {
        *counts.entry(id).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c <= 2), "each event at most twice");
    let n = clean.len() as f64;
    let r = opts.duplicate_rate;
    let extra = delivered.len() as f64 - n;
    let sigma = (n * r * (1.0 - r)).sqrt();
    assert!(
        (extra - n * r).abs() <= 5.0 * sigma,
        "{} delivered for {} events at duplicate rate {r}",
        delivered.len(),
        clean.len()
    );

    let none = SimOptions {
        duplicate_rate: 0.0,
        ..opts.clone()
    };
    assert_eq!(simulate(&none).count(), clean.len());
    let all = SimOptions {
        duplicate_rate: 1.0,
        ..opts
    };
    assert_eq!(simulate(&all).count(), 2 * clean.len());
}

#[test]
fn no_event_is_displaced_beyond_the_window() {
    for window in [0usize, 1, 3, 8, 25] {
        let opts = SimOptions {
            reorder_window: window,
            duplicate_rate: 0.3,
            ..small()
        };
        let clean: HashMap<String, usize> = clean_stream(&opts)
            .enumerate()
            .map(|(i, e)| (parse(&e).id, i))
            .collect();
        let mut first = BTreeSet::new();
        let mut max = 0usize;
        let mut moved = 0;
        let mut position = 0usize;
        for e in simulate(&opts) {
            let id = parse(&e).id;
            if !first.insert(id.clone()) {
                continue; // a copy
            }
            let at = clean[&id];
            max = max.max(at.abs_diff(position));
            moved += usize::from(at != position);
            position += 1;
        }
        assert_eq!(position, clean.len());
        assert!(max <= window, "window {window}: an event moved {max} positions");
        if window > 0 {
            assert!(moved > clean.len() / 4, "window {window}: only {moved} events moved");
            assert_eq!(max, window, "window {window}: the whole window is used");
        }
    }
}

#[test]
fn times_are_written_as_aws_writes_them() {
    let mut rng = Rng::new(3);
    for _ in 0..2000 {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + Duration::milliseconds(between(&mut rng, 0, 400 * 86_400_000));
        assert_eq!(event_time(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        assert_eq!(codebuild_time(t), t.format("%b %-d, %Y %-I:%M:%S %p").to_string());
        assert_eq!(cloudwatch_time(t), t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
        let parsed = tollgate_domain::record::parse::parse_codebuild_time(&codebuild_time(t)).unwrap();
        assert_eq!(parsed.timestamp(), t.timestamp());
    }
    let t = Utc.with_ymd_and_hms(2026, 11, 20, 9, 12, 29).unwrap();
    assert_eq!(codebuild_time(t), "Nov 20, 2026 9:12:29 AM");
    assert_eq!(codebuild_time(t + Duration::hours(3)), "Nov 20, 2026 12:12:29 PM");
    assert_eq!(codebuild_time(t - Duration::hours(9)), "Nov 20, 2026 12:12:29 AM");
}

#[test]
fn time_order_of_the_clean_stream() {
    let times: Vec<DateTime<Utc>> = clean_stream(&small()).map(|e| parse(&e).time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn failure_rates_decide_how_executions_end() {
    let ok = SimOptions {
        build_failure_rate: 0.0,
        deploy_failure_rate: 0.0,
        approval_rate: 0.5,
        ..small()
    };
    let events: Vec<DeliveryEvent> = clean_stream(&ok).map(|e| parse(&e)).collect();
    let states = outcomes(&events);
    assert_eq!(states.len(), ok.pipelines * ok.executions_per_pipeline);
    assert!(states.values().all(|s| s == "SUCCEEDED"), "{states:?}");
    assert!(events.iter().all(|e| e.kind() != EventKind::AlarmState));

    for rollback_rate in [0.0, 1.0] {
        let failing = SimOptions {
            build_failure_rate: 0.3,
            deploy_failure_rate: 1.0,
            rollback_rate,
            ..small()
        };
        let events: Vec<DeliveryEvent> = clean_stream(&failing).map(|e| parse(&e)).collect();
        let states = outcomes(&events);
        assert_eq!(states.len(), failing.pipelines * failing.executions_per_pipeline);
        assert!(states.values().all(|s| s == "FAILED"), "{states:?}");
        let mut reached = BTreeSet::new();
        let mut build_failures = 0;
        let mut deployments: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut alarms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in &events {
            match &e.body {
                EventBody::StageExecution(s) if s.stage == "Production" && s.state == "STARTED" => {
                    reached.insert(s.execution_id.clone());
                }
                EventBody::StageExecution(s) if s.stage == "Production" => assert_eq!(s.state, "FAILED"),
                EventBody::BuildState(b) if b.status == "FAILED" => build_failures += 1,
                EventBody::DeploymentState(d) if d.deployment_group == "production" => deployments
                    .entry(d.application.clone())
                    .or_default()
                    .push(d.state.clone()),
                EventBody::AlarmState(a) => alarms.entry(a.alarm_name.clone()).or_default().push(a.state.clone()),
                _ => {}
            }
        }
        assert!(!reached.is_empty() && build_failures > 0);
        assert_eq!(reached.len() + build_failures, states.len());
        let alarm_events: usize = alarms.values().map(Vec::len).sum();
        assert_eq!(
            alarm_events,
            2 * reached.len(),
            "ALARM then OK for every failed deployment"
        );
        for states in alarms.values() {
            assert!(states.chunks(2).all(|c| c == ["ALARM", "OK"]), "{states:?}");
        }
        for states in deployments.values() {
            let per_deploy = if rollback_rate == 1.0 {
                ["START", "FAILURE", "START", "SUCCESS"].as_slice()
            } else {
                ["START", "FAILURE"].as_slice()
            };
            assert!(states.chunks(per_deploy.len()).all(|c| c == per_deploy), "{states:?}");
        }
    }
}

async fn ingest_all(events: impl Iterator<Item = Value>) -> (Arc<MemoryStore>, usize) {
    let store = Arc::new(MemoryStore::new());
    let ingestor = Ingestor::new(store.clone(), Arc::new(MemoryNotifier::new()));
    let received = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
    let mut new = 0;
    for (i, e) in events.enumerate() {
        let ctx = MessageContext::new(format!("m-{i}"), received);
        match ingestor.ingest(&e.to_string(), &ctx).await.unwrap() {
            Outcome::Recorded { new: true, .. } => new += 1,
            Outcome::Recorded { .. } => {}
            Outcome::Rejected { reason } => panic!("rejected: {reason}"),
        }
    }
    (store, new)
}

async fn timelines(store: &MemoryStore) -> BTreeMap<ExecutionKey, ExecutionTimeline> {
    let mut out = BTreeMap::new();
    for key in store.execution_keys() {
        let t = execution_timeline(store, &key).await.unwrap().expect("a timeline");
        out.insert(key, t);
    }
    out
}

#[tokio::test]
async fn ingested_delivery_gives_the_clean_timelines() {
    let opts = SimOptions {
        approval_rate: 0.5,
        accounts: vec!["111122223333".into(), "444455556666".into()],
        ..small()
    };
    let (clean_store, clean_new) = ingest_all(clean_stream(&opts)).await;
    let (store, new) = ingest_all(simulate(&opts)).await;
    assert_eq!(new, clean_new, "every distinct event recorded once");
    assert_eq!(new, clean_stream(&opts).count());
    let expected = timelines(&clean_store).await;
    let got = timelines(&store).await;
    assert_eq!(got.len(), opts.pipelines * opts.executions_per_pipeline);
    assert_eq!(expected.len(), got.len());
    for (key, t) in &expected {
        assert_eq!(got.get(key), Some(t), "{key:?}");
    }
    // The links hold: every CodeBuild and CodeDeploy action finds its build or deployment.
    let (mut failed, mut succeeded) = (0, 0);
    for t in got.values() {
        match t.state.as_str() {
            "SUCCEEDED" => succeeded += 1,
            "FAILED" => {
                failed += 1;
                let (_, action) = t.failing_action().expect("the failing action is known");
                assert_eq!(action.error_code.as_deref(), Some("JobFailed"));
            }
            other => panic!("execution ended {other}"),
        }
        assert!(t.trigger.is_some() && t.duration_secs.is_some());
        for a in t.stages.iter().flat_map(|s| s.actions.iter()) {
            match a.provider.as_str() {
                "CodeBuild" => {
                    let b = a.build.as_ref().expect("build linked");
                    assert!(b.phases.len() >= 10 && b.duration_secs.is_some());
                }
                "CodeDeploy" => assert!(a.deployment.is_some(), "deployment linked"),
                _ => {}
            }
        }
    }
    assert!(
        failed > 0 && succeeded > failed,
        "{failed} failed, {succeeded} succeeded"
    );
}

#[test]
fn streams_many_pipelines_lazily() {
    let opts = SimOptions {
        pipelines: 200,
        executions_per_pipeline: 50,
        accounts: vec!["111122223333".into(), "444455556666".into(), "777788889999".into()],
        regions: vec!["eu-west-1".into(), "us-east-1".into()],
        ..SimOptions::default()
    };
    let started = std::time::Instant::now();
    let mut sim = simulate(&opts);
    let mut count = 0usize;
    let mut held = 0;
    while let Some(e) = sim.next() {
        assert!(e.is_object());
        count += 1;
        if count % 97 == 0 {
            held = held.max(sim.held());
        }
    }
    let took = started.elapsed();
    let executions = opts.pipelines * opts.executions_per_pipeline;
    let per_execution = count as f64 / (1.0 + opts.duplicate_rate) / executions as f64;
    eprintln!(
        "{count} events for {executions} executions (~{per_execution:.1} distinct events each) in {took:?}: \
         {:.0} events/s",
        count as f64 / took.as_secs_f64()
    );
    assert!((25.0..60.0).contains(&per_execution), "{per_execution}");
    // At most one execution in flight per pipeline, plus the delivery buffer and its copies.
    assert!(
        held <= opts.pipelines * 60 + 2 * (opts.reorder_window + 1),
        "{held} events held"
    );
    eprintln!("at most {held} events held at once");
    assert!(sim.next().is_none());
    // Names run out after 30 pipelines and come back with a suffix.
    assert_eq!(pipeline_name(0), "checkout-service");
    assert_eq!(pipeline_name(30), "checkout-service-2");
    assert_eq!(pipeline_name(61), "payments-api-3");
}
