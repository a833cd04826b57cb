//! The gate over in-memory ports, continued: ad-hoc freezes and overrides, and the alarm watches a pass registers.

use super::*;

// ------------------------------------------------------------------ ad-hoc freezes and overrides

fn ad_hoc_freeze(scope: &str, until: &str) -> FreezeRecord {
    FreezeRecord {
        scope: scope.into(),
        from: FreezeBound::Instant((now() - Duration::hours(1)).fixed_offset()),
        until: FreezeBound::parse(until).unwrap(),
        reason: "incident INC-42".into(),
        by: ALICE.into(),
        at: now() - Duration::hours(1),
    }
}

#[tokio::test]
async fn an_ad_hoc_freeze_blocks_the_gate_explained_and_lifting_it_lets_it_pass() {
    let world = two_jobs(World::new(BAKE_POLICY));
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let scope = "pipeline:111122223333/eu-west-1/checkout-service";
    world
        .store
        .record_freeze(&ad_hoc_freeze(scope, "2026-11-21"))
        .await
        .unwrap();
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(
        message.contains(&format!(
            "freeze ad-hoc freeze by {ALICE}: incident INC-42 until 2026-11-21 23:59 UTC"
        )),
        "{message}"
    );
    let recorded = world.store.decisions();
    assert!(
        recorded[0].explanation.contains("✗ freeze"),
        "{}",
        recorded[0].explanation
    );

    world.store.lift_freeze(scope).await.unwrap().unwrap();
    assert_eq!(world.run(JOB2, "production", None, now()).await.outcome, "pass");
}

#[tokio::test]
async fn a_global_freeze_holds_every_pipeline_and_an_ended_one_is_ignored() {
    let world = two_jobs(World::new(BAKE_POLICY));
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    // Ends in an hour: the gate waits for it.
    let until = (now() + Duration::hours(1)).to_rfc3339();
    world
        .store
        .record_freeze(&ad_hoc_freeze("global", &until))
        .await
        .unwrap();
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "wait");
    assert!(world.store.decisions()[0].explanation.contains("ad-hoc freeze by"));
    // Once it has ended it is not even listed.
    let report = world.run(JOB2, "production", None, now() + Duration::hours(2)).await;
    assert_eq!(report.outcome, "pass");
    let d = world.store.decision(JOB2).await.unwrap().unwrap();
    assert!(!d.explanation.contains("ad-hoc"), "{}", d.explanation);
}

#[tokio::test]
async fn an_override_by_an_authorised_approver_passes_with_every_check_explained() {
    let world = World::new(APPROVAL_POLICY);
    world.store.record_override(&an_override(ALICE)).await.unwrap();
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "pass");
    let JobAnswer::Success { output_variables, .. } = world.last_answer() else {
        panic!("not a success")
    };
    assert_eq!(output_variables[OUTCOME_VARIABLE], "PASS");
    let d = world.store.decision(JOB).await.unwrap().unwrap();
    assert!(d.explanation.starts_with("PASS: overridden by"), "{}", d.explanation);
    assert!(
        d.explanation.contains("… approval"),
        "the approval check is still explained: {}",
        d.explanation
    );
    assert!(
        d.explanation.contains(&format!(
            "  overridden by {ALICE} (matches arn:aws:sts::111122223333:assumed-role/ReleaseManager/*): hotfix for \
             INC-42, checked by hand\n"
        )),
        "{}",
        d.explanation
    );
    let applied = d.override_applied.unwrap();
    assert!(applied.honoured);
    assert_eq!(applied.by, ALICE);
}

#[tokio::test]
async fn an_override_by_someone_who_may_not_approve_is_refused() {
    let world = World::new(APPROVAL_POLICY);
    world.store.record_override(&an_override(MALLORY)).await.unwrap();
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "wait");
    let d = world.store.decision(JOB).await.unwrap().unwrap();
    let line = format!("override by {MALLORY} refused: not an authorised approver");
    assert!(d.explanation.contains(&line), "{}", d.explanation);
    assert!(d.summary.contains(&line), "{}", d.summary);
    assert!(!d.override_applied.unwrap().honoured);
}

#[tokio::test]
async fn without_an_approval_section_an_override_is_refused_saying_so() {
    let policy = BAKE_POLICY.replace("  wait: 30m\n", "");
    let mut world = World::new(&policy);
    world.cloudwatch = MemoryCloudWatch::new().with_alarms(Ok(vec![AlarmFact {
        name: "checkout-service-5xx".into(),
        state: AlarmState::Alarm,
        since: now() - Duration::minutes(3),
    }]));
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    world.store.record_override(&an_override(ALICE)).await.unwrap();
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(report.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(
        message.contains(&format!(
            "override by {ALICE} refused: the policy has no approval section"
        )),
        "{message}"
    );
}

// ------------------------------------------------------------------ alarm watches

/// A policy checking one alarm by name and others by tag.
const WATCHED_POLICY: &str = "version: 1
name: production-gate
max_wait: 1h
alarms:
  names: [checkout-service-5xx]
  tags: {team: checkout}
";

fn alarm_ok(name: &str) -> AlarmFact {
    AlarmFact {
        name: name.into(),
        state: AlarmState::Ok,
        since: now() - Duration::days(2),
    }
}

fn production() -> WatchedStage {
    WatchedStage {
        pipeline: "checkout-service".into(),
        stage: "Production".into(),
    }
}

/// Runs the job with `alarms` instead of the world's CloudWatch (tags resolved to alarms).
async fn run_with_alarms(world: &World, alarms: &dyn AlarmStates, job: &str, at: DateTime<Utc>) -> GateReport {
    let ports = Ports {
        alarms,
        ..world.ports()
    };
    handle(&event(job, "production", None), &ports, at).await.unwrap()
}

#[tokio::test]
async fn a_pass_registers_the_stage_as_watched_by_the_named_and_the_tagged_alarms_it_checked() {
    let mut world = World::new(WATCHED_POLICY);
    // The tags select the latency alarm; the named one is read as well.
    let alarms = TaggedAlarms::new(
        MemoryAlarmTags::new()
            .with_alarm("checkout-latency", &[("team", "checkout")])
            .with_alarm("payments-latency", &[("team", "payments")]),
        MemoryCloudWatch::new().with_alarms(Ok(vec![
            alarm_ok("checkout-service-5xx"),
            alarm_ok("checkout-latency"),
            alarm_ok("payments-latency"),
        ])),
    );
    let report = run_with_alarms(&world, &alarms, JOB, now()).await;
    assert_eq!((report.outcome, report.watches), ("pass", 2));
    let until = now() + Duration::days(ALARM_WATCH_DAYS);
    assert_eq!(
        world.watches.all(),
        vec![
            (
                "111122223333/eu-west-1/checkout-latency".to_string(),
                production(),
                until
            ),
            (
                "111122223333/eu-west-1/checkout-service-5xx".to_string(),
                production(),
                until
            ),
        ]
    );

    // A later pass of the stage (a new execution) moves `until`: still one watch per alarm.
    let later = now() + Duration::days(3);
    let job2 = "4d0b6a1f-2c3e-4f70-9b8c-0d1e2f3a4b5c";
    world.jobs = MemoryPipelineJobs::new().with_job(job2, context());
    assert_eq!(run_with_alarms(&world, &alarms, job2, later).await.watches, 2);
    let all = world.watches.all();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .all(|(_, _, u)| *u == later + Duration::days(ALARM_WATCH_DAYS)),
        "{all:?}"
    );
}

#[tokio::test]
async fn a_wait_or_a_fail_registers_no_watch() {
    // Waiting on the bake.
    let world = World::new(BAKE_POLICY);
    world.stage("Staging", "STARTED", now() - Duration::minutes(5)).await;
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!((report.outcome, report.watches), ("wait", 0));
    assert!(world.watches.all().is_empty());

    // Failing on the alarm.
    let mut world = World::new(WATCHED_POLICY);
    world.cloudwatch = MemoryCloudWatch::new().with_alarms(Ok(vec![AlarmFact {
        name: "checkout-service-5xx".into(),
        state: AlarmState::Alarm,
        since: now() - Duration::minutes(18),
    }]));
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!((report.outcome, report.watches), ("fail", 0));
    assert!(world.watches.all().is_empty());
}

#[tokio::test]
async fn a_pass_without_alarm_checks_registers_no_watch() {
    let world =
        World::new("version: 1\nname: no-alarms\nmax_wait: 1h\nbake:\n  after_stage: Staging\n  duration: 2h\n");
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!((report.outcome, report.watches), ("pass", 0));
    assert!(world.watches.all().is_empty());
}

#[tokio::test]
async fn watches_that_cannot_be_written_do_not_change_the_pass() {
    let mut world = World::new(WATCHED_POLICY);
    world.watches = MemoryAlarmWatches::failing("DynamoDB unavailable");
    let report = world.run(JOB, "production", None, now()).await;
    assert_eq!(
        (report.outcome, report.recorded, report.answered_now, report.watches),
        ("pass", true, true, 0)
    );
    assert!(matches!(
        world.last_answer(),
        JobAnswer::Success {
            continuation_token: None,
            ..
        }
    ));
}
