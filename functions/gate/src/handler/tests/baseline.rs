//! The organisation baseline as the gate applies it.

use super::*;

// ------------------------------------------------------------------ the organisation baseline

const ORG_BASELINE: &str = "version: 1
name: org
max_wait: 6h
alarms:
  names: [checkout-service-5xx]
  wait: 30m
bake:
  after_stage: Staging
  duration: 2h
rules:
  - name: production
    match:
      tags: {environment: production}
    approval:
      approvers: [\"arn:aws:iam::111122223333:role/ReleaseManager\"]
";

#[tokio::test]
async fn a_policy_that_loosens_the_baseline_fails_closed_naming_the_field_and_is_recorded_and_announced() {
    let loosened = BAKE_POLICY.replace("duration: 2h", "duration: 10m");
    let mut world = World::new(&loosened);
    world.baselines = MemoryBaselines::new().with_text(ORG_BASELINE);
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let report = world.run(JOB, "policies/production.yaml", None, now()).await;
    assert_eq!((report.outcome, report.recorded, report.notified), ("fail", true, true));
    let (kind, message) = failure_message(&world.last_answer());
    assert_eq!(kind, FailureKind::JobFailed);
    assert!(
        message.contains("loosens the organisation baseline (baseline org)"),
        "{message}"
    );
    assert!(
        message.contains("policies/production.yaml:9:13: bake.duration: 10m is shorter"),
        "{message}"
    );
    let recorded = &world.store.decisions()[0];
    assert_eq!(recorded.outcome, Outcome::Fail);
    assert!(
        recorded.explanation.contains("bake.duration"),
        "{}",
        recorded.explanation
    );
    // Without the baseline the same policy passes: the baseline alone refused it.
    let world = World::new(&loosened);
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    assert_eq!(
        world.run(JOB, "policies/production.yaml", None, now()).await.outcome,
        "pass"
    );
}

#[tokio::test]
async fn the_baselines_checks_apply_to_a_policy_that_has_none() {
    let mut world = World::new("version: 1\nname: empty\nmax_wait: 1h\n");
    world.baselines = MemoryBaselines::new().with_text(ORG_BASELINE);
    world.pipeline_tags = MemoryPipelineTags::new(&[("environment", "production")]);
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let report = world.run(JOB, "policies/production.yaml", None, now()).await;
    // The production rule's approval is required: nobody has approved, so the gate waits for it.
    assert_eq!(report.outcome, "wait");
    let recorded = &world.store.decisions()[0];
    let kinds: Vec<_> = recorded.checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        kinds,
        ["alarms", "bake", "approval", "max_wait"],
        "{}",
        recorded.explanation
    );
    assert!(
        recorded
            .explanation
            .contains("merged with baseline org, rule production"),
        "{}",
        recorded.explanation
    );
    // Who may decide on the stage is recorded for the decide and approval functions: the baseline's approvers, and
    // separation of duties on for the production rule.
    use tollgate_domain::gate::approval::EffectivePolicies;
    let key = context().approval_key();
    let effective = world.effective.effective(&key).await.unwrap().expect("recorded");
    let approvers: Vec<&str> = effective
        .policy
        .approval
        .as_ref()
        .unwrap()
        .approvers
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(approvers, ["arn:aws:iam::111122223333:role/ReleaseManager"]);
    assert_eq!(effective.baseline.as_deref(), Some("baseline org, rule production"));
    assert!(effective.separation_of_duties);
    assert_eq!(effective.at, now());
}

#[tokio::test]
async fn a_baseline_that_cannot_be_read_or_matched_fails_closed() {
    let mut world = World::new(BAKE_POLICY);
    world.baselines = MemoryBaselines::new().failing(StoreError::Transient("throttled".into()));
    world.stage("Staging", "SUCCEEDED", now() - Duration::hours(3)).await;
    let report = world.run(JOB, "policies/production.yaml", None, now()).await;
    assert_eq!(report.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(message.contains("cannot read the organisation baseline"), "{message}");

    let mut world = World::new(BAKE_POLICY);
    world.baselines = MemoryBaselines::new().with_text(ORG_BASELINE);
    world.pipeline_tags = MemoryPipelineTags::failing("AccessDeniedException");
    let report = world.run(JOB, "policies/production.yaml", None, now()).await;
    assert_eq!(report.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(
        message.contains("tags") && message.contains("AccessDeniedException"),
        "{message}"
    );
}

#[tokio::test]
async fn fail_open_is_refused_where_the_baseline_does_not_allow_it() {
    let policy = format!("{BAKE_POLICY}  on_error: fail_open\n");
    let mut world = World::new(&policy);
    world.baselines = MemoryBaselines::new().with_text(ORG_BASELINE);
    let report = world.run(JOB, "policies/production.yaml", None, now()).await;
    assert_eq!(report.outcome, "fail");
    let (_, message) = failure_message(&world.last_answer());
    assert!(message.contains("bake.on_error: bake may not fail open"), "{message}");
}
