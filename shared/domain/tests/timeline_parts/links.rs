//! Linking builds and deployments to the actions that ran them, and action results.

use super::*;

/// Records `bodies` (raw JSON, as delivered) in a fresh store and returns execution A's linked timeline.
async fn linked_timeline_of_a(bodies: &[String]) -> ExecutionTimeline {
    let store = MemoryStore::new();
    for body in bodies {
        store.record(&parse_event(body.as_bytes()).unwrap()).await.unwrap();
    }
    execution_timeline(&store, &exec_key(EXEC_A))
        .await
        .unwrap()
        .expect("A is recorded")
}

#[tokio::test]
async fn builds_link_to_actions_through_the_short_build_id_of_the_codebuild_arn() {
    let values = story_values();
    let raw_build_id = values
        .iter()
        .find(|v| v["detail-type"] == "CodeBuild Build State Change")
        .map(|v| v["detail"]["build-id"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        raw_build_id.starts_with("arn:aws:codebuild:"),
        "CodeBuild names its build by ARN: {raw_build_id}"
    );
    let a = linked_timeline_of_a(&story_bodies()).await;
    let action = &a.stage("Build").expect("the Build stage").actions[0];
    let short = "checkout-service-build:9819ab2e-072d-45f1-994e-a17e21683b95";
    assert_eq!(
        action.external_execution_id.as_deref(),
        Some(short),
        "CodePipeline names it project:uuid"
    );
    assert!(raw_build_id.ends_with(short));
    let build = action.build.as_ref().expect("the build is linked");
    assert_eq!(build.build_id, short);
    assert_eq!(build.status, "SUCCEEDED");
    assert_eq!(build.phases.len(), 11);
    // The build's logs are the best link for an engineer.
    assert_eq!(action.link(), build.logs_url.as_deref());
    assert!(action
        .link()
        .unwrap()
        .contains("logEvent:group=/aws/codebuild/checkout-service-build"));
    // Deployments link by CodeDeploy's id; the production one failed.
    let deploy = &a.stage("Production").unwrap().actions[0];
    let d = deploy.deployment.as_ref().expect("the deployment is linked");
    assert_eq!((d.deployment_id.as_str(), d.state.as_str()), ("d-RAPGQL0KO", "FAILURE"));
    // START at 09:11:35, FAILURE at 09:24:26.
    assert_eq!(d.duration_secs, Some(771));
    assert!(a.stage("Staging").unwrap().actions[0].deployment.is_some());
}

#[tokio::test]
async fn a_build_with_another_id_is_not_linked() {
    // Only execution A's pipeline events and execution B's build: A's Build action has no build of its own.
    let events = story_events();
    let bodies: Vec<String> = story_bodies()
        .into_iter()
        .zip(events.iter())
        .filter(|(_, e)| match &e.body {
            EventBody::BuildState(b) => b.build_id.contains("5095b173"),
            EventBody::BuildPhase(b) => b.build_id.contains("5095b173"),
            _ => {
                matches!(e.subject(), tollgate_domain::record::keys::Subject::Execution(k) if k.execution_id == EXEC_A)
            }
        })
        .map(|(b, _)| b)
        .collect();
    let a = linked_timeline_of_a(&bodies).await;
    let action = &a.stage("Build").unwrap().actions[0];
    assert!(action.build.is_none(), "B's build was linked to A: {:?}", action.build);
    assert_eq!(
        action.link(),
        action.external_execution_url.as_deref(),
        "falls back to the action's own page"
    );
}

#[test]
fn link_attaches_builds_and_deployments_by_external_id_only() {
    let events = vec![
        action_with(
            1,
            "Build",
            "Build",
            "STARTED",
            ("Build", "CodeBuild"),
            ExecutionResult {
                external_execution_id: Some("proj:b-1".into()),
                ..ExecutionResult::default()
            },
        ),
        action_with(
            2,
            "Deploy",
            "Deploy",
            "STARTED",
            ("Deploy", "CodeDeploy"),
            ExecutionResult {
                external_execution_id: Some("d-1".into()),
                ..ExecutionResult::default()
            },
        ),
        // A Lambda action's external id names neither a build nor a deployment.
        action_with(
            3,
            "Deploy",
            "Smoke",
            "STARTED",
            ("Invoke", "Lambda"),
            ExecutionResult {
                external_execution_id: Some("d-1".into()),
                ..ExecutionResult::default()
            },
        ),
    ];
    let mut t = ExecutionTimeline::fold(&key(), &events);
    let build = fold_build(&[build_state(1, "IN_PROGRESS", None, vec![])]).unwrap();
    let deploy = fold_deployment(&[deployment(2, "START")]).unwrap();
    t.link(
        &BTreeMap::from([("proj:b-1".to_string(), build.clone())]),
        &BTreeMap::from([("d-1".to_string(), deploy.clone())]),
    );
    assert_eq!(t.stage("Build").unwrap().actions[0].build.as_ref(), Some(&build));
    let deploy_stage = t.stage("Deploy").unwrap();
    assert_eq!(deploy_stage.actions[0].deployment.as_ref(), Some(&deploy));
    assert!(deploy_stage.actions[1].deployment.is_none() && deploy_stage.actions[1].build.is_none());
}

#[test]
fn failing_action_is_the_first_failure_in_stage_order() {
    let events = vec![
        stage(0, "Test", "STARTED"),
        action(1, "Test", "Lint", "SUCCEEDED"),
        action(2, "Test", "Unit", "FAILED"),
        stage(10, "Deploy", "STARTED"),
        action(11, "Deploy", "Canary", "FAILED"),
    ];
    let t = fold_every_order(&events);
    let (s, a) = t.failing_action().expect("a failing action");
    assert_eq!((s.name.as_str(), a.name.as_str()), ("Test", "Unit"));
}

#[test]
fn action_result_fields_survive_events_that_lack_them() {
    // Build and Deploy actions carry their external id from STARTED; the failure adds the summary and error code.
    let started = action_with(
        1,
        "Production",
        "Deploy",
        "STARTED",
        ("Deploy", "CodeDeploy"),
        ExecutionResult {
            external_execution_id: Some("d-1".into()),
            external_execution_url: Some("https://example.com/d-1".into()),
            ..ExecutionResult::default()
        },
    );
    let failed = action_with(
        90,
        "Production",
        "Deploy",
        "FAILED",
        ("Deploy", "CodeDeploy"),
        ExecutionResult {
            external_execution_id: Some("d-1".into()),
            external_execution_summary: Some("Deployment d-1 failed".into()),
            error_code: Some("JobFailed".into()),
            ..ExecutionResult::default()
        },
    );
    let t = fold_every_order(&[started, failed]);
    let a = &t.stages[0].actions[0];
    assert_eq!(a.external_execution_url.as_deref(), Some("https://example.com/d-1"));
    assert_eq!(a.summary.as_deref(), Some("Deployment d-1 failed"));
    assert_eq!(a.error_code.as_deref(), Some("JobFailed"));
    assert_eq!((a.provider.as_str(), a.category.as_str()), ("CodeDeploy", "Deploy"));
}

#[test]
fn a_retried_action_shows_the_result_of_its_latest_attempt() {
    const DEPLOY: (&str, &str) = ("Deploy", "CodeDeploy");
    let attempt = |id: &str| ExecutionResult {
        external_execution_id: Some(id.into()),
        external_execution_url: Some(format!("https://example.com/{id}")),
        ..ExecutionResult::default()
    };
    let failed = ExecutionResult {
        external_execution_summary: Some("Deployment d-1 failed: alarm checkout-service-5xx".into()),
        error_code: Some("JobFailed".into()),
        ..attempt("d-1")
    };
    let first_attempt = vec![
        action_with(0, "Production", "Deploy", "STARTED", DEPLOY, attempt("d-1")),
        action_with(60, "Production", "Deploy", "FAILED", DEPLOY, failed),
    ];
    let t = fold_every_order(&first_attempt);
    assert_eq!(t.stages[0].actions[0].error_code.as_deref(), Some("JobFailed"));

    // The stage is retried: a new attempt with a new deployment starts, then succeeds without a summary.
    let mut retried = first_attempt.clone();
    retried.push(action_with(
        300,
        "Production",
        "Deploy",
        "STARTED",
        DEPLOY,
        attempt("d-2"),
    ));
    let running = fold_every_order(&retried);
    let a = &running.stages[0].actions[0];
    assert_eq!(
        (a.state.as_str(), a.external_execution_id.as_deref()),
        ("STARTED", Some("d-2"))
    );
    assert_eq!(a.error_code, None, "the running attempt has not failed: {a:#?}");
    assert_eq!(
        a.summary, None,
        "the failed attempt's summary is not the running one's: {a:#?}"
    );

    retried.push(action_with(
        420,
        "Production",
        "Deploy",
        "SUCCEEDED",
        DEPLOY,
        attempt("d-2"),
    ));
    let t = fold_every_order(&retried);
    let a = &t.stages[0].actions[0];
    assert_eq!(a.state, "SUCCEEDED");
    assert_eq!(a.external_execution_id.as_deref(), Some("d-2"));
    assert_eq!(a.external_execution_url.as_deref(), Some("https://example.com/d-2"));
    assert_eq!(
        a.error_code, None,
        "a succeeded action must not show the failed attempt's error: {a:#?}"
    );
    assert_eq!(a.summary, None, "{a:#?}");
    assert!(t.failing_action().is_none());
}
