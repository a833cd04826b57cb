//! The ingest service over in-memory ports: what the demo story tells engineers, that redelivery tells them nothing
//! twice (also when two deliveries of an event run at once, or a publisher died holding a claim), that bad messages
//! are kept rather than retried, that a failed publish is retried without loss, and that each notification reads
//! right in chat and in email.

mod common;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use tollgate_domain::ingest::service::{Ingestor, Outcome, RetryableError};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::event::{EventBody, EventKind};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{EventRecorder, Mark, StoreError, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::tell::notify::{human_duration, Notification, NotificationKind, Severity};
use tollgate_domain::tell::ports::Notifier;

/// Feeds `bodies` in order; every message must be recorded.
async fn feed<S, N>(ingestor: &Ingestor<S, N>, bodies: &[String], prefix: &str) -> Vec<Outcome>
where
    S: EventRecorder + TimelineQueries,
    N: Notifier,
{
    let mut outcomes = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let outcome = ingestor
            .ingest(body, &ctx(format!("{prefix}-{i}")))
            .await
            .unwrap_or_else(|e| panic!("message {i} must be processed: {e}"));
        assert!(
            matches!(outcome, Outcome::Recorded { .. }),
            "message {i} must be recorded, got {outcome:?}"
        );
        outcomes.push(outcome);
    }
    outcomes
}

/// The story delivered once, in order: what the notifier was asked to publish.
async fn story_notifications() -> Vec<Notification> {
    let (ingestor, _, notifier) = ingestor();
    feed(&ingestor, &story_bodies(), "story").await;
    notifier.sent()
}

fn only(sent: &[Notification], kind: NotificationKind) -> &Notification {
    let found: Vec<&Notification> = sent.iter().filter(|n| n.kind == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind:?} notification, got {found:#?}");
    found[0]
}

const FAILED_ACTION_SUMMARY: &str = "Deployment d-RAPGQL0KO failed: alarm checkout-service-5xx";
const FAILED_DEPLOYMENT_URL: &str =
    "https://console.aws.amazon.com/codedeploy/home?region=eu-west-1#/deployments/d-RAPGQL0KO";

#[tokio::test]
async fn story_in_order_notifies_the_failed_deployment_stage_and_execution_then_the_restore() {
    let sent = story_notifications().await;
    let kinds: Vec<NotificationKind> = sent.iter().map(|n| n.kind).collect();
    // In the story's time order: CodeDeploy's FAILURE (09:24:26), the stage (09:25:00), the pipeline (09:25:01),
    // then execution B's success (10:30:02). The alarm, the stack update and every success in between say nothing.
    assert_eq!(
        kinds,
        vec![
            NotificationKind::DeploymentFailed,
            NotificationKind::StageFailed,
            NotificationKind::ExecutionFailed,
            NotificationKind::ExecutionRestored,
        ]
    );
    let threads: Vec<&str> = sent.iter().map(|n| n.thread.as_str()).collect();
    let thread_a = format!("{PIPELINE}/{EXEC_A}");
    let thread_b = format!("{PIPELINE}/{EXEC_B}");
    assert_eq!(
        threads,
        vec!["checkout-service/production", &thread_a, &thread_a, &thread_b]
    );
}

#[tokio::test]
async fn stage_failed_names_production_the_failing_action_its_error_and_a_link() {
    let sent = story_notifications().await;
    let n = only(&sent, NotificationKind::StageFailed);
    assert_eq!(n.title, "checkout-service: stage Production failed");
    assert_eq!(n.severity, Severity::Warning);
    assert_eq!(n.key, "stage_failed:Production@2026-11-20T09:25:00Z");
    assert_eq!(n.pipeline.as_deref(), Some(PIPELINE));
    let text = n.lines.join("\n");
    assert!(text.contains(EXEC_A), "{text}");
    assert!(
        text.contains("Deploy") && text.contains("CodeDeploy"),
        "names the failing action: {text}"
    );
    assert!(text.contains("[JobFailed]"), "names the error code: {text}");
    assert!(
        text.contains(FAILED_ACTION_SUMMARY),
        "carries the error summary: {text}"
    );
    // The failing action's own page is more useful than the pipeline's.
    assert_eq!(n.link.as_deref(), Some(FAILED_DEPLOYMENT_URL));
    assert!(
        n.next_steps.iter().any(|s| s.contains("Production")),
        "{:?}",
        n.next_steps
    );
}

#[tokio::test]
async fn execution_failed_names_production_the_failing_action_its_error_and_a_link() {
    let sent = story_notifications().await;
    let n = only(&sent, NotificationKind::ExecutionFailed);
    assert_eq!(n.title, "checkout-service failed at Production / Deploy");
    assert_eq!(n.severity, Severity::Critical);
    let failed_at = pipeline_event_time(EXEC_A, "FAILED");
    assert_eq!(
        n.key,
        format!("execution_failed@{}", failed_at.format("%Y-%m-%dT%H:%M:%SZ"))
    );
    let text = n.lines.join("\n");
    assert!(text.contains(FAILED_ACTION_SUMMARY), "{text}");
    assert!(text.contains("[JobFailed]"), "{text}");
    assert!(text.contains(&format!("Logs: {FAILED_DEPLOYMENT_URL}")), "{text}");
    assert!(text.contains(EXEC_A), "{text}");
    assert!(
        text.contains("ec964d3d4496") && text.contains("Add express checkout"),
        "names the commit: {text}"
    );
    let ran_for = (failed_at - pipeline_event_time(EXEC_A, "STARTED")).num_seconds();
    assert!(text.contains(&format!("Ran for {}", human_duration(ran_for))), "{text}");
    let link = n.link.as_deref().expect("a link to the execution");
    assert!(
        link.starts_with("https://eu-west-1.console.aws.amazon.com/codesuite/codepipeline/pipelines/checkout-service/")
    );
    assert!(link.contains(EXEC_A), "{link}");
}

#[tokio::test]
async fn deployment_failed_names_the_failed_production_deployment() {
    let sent = story_notifications().await;
    let n = only(&sent, NotificationKind::DeploymentFailed);
    assert_eq!(n.title, "Deployment d-RAPGQL0KO to checkout-service/production failed");
    assert_eq!(n.key, "deployment_failed@2026-11-20T09:24:26Z");
    assert!(n.lines.iter().any(|l| l.contains("FAILURE")), "{:?}", n.lines);
    assert!(
        n.link.as_deref().is_some_and(|l| l.contains("d-RAPGQL0KO")),
        "{:?}",
        n.link
    );
    assert_eq!(
        n.resources,
        vec!["arn:aws:codedeploy:eu-west-1:111122223333:deploymentgroup:checkout-service/production".to_string()]
    );
}

#[tokio::test]
async fn execution_restored_says_how_long_the_pipeline_was_broken() {
    let sent = story_notifications().await;
    let n = only(&sent, NotificationKind::ExecutionRestored);
    let broken_for = pipeline_event_time(EXEC_B, "SUCCEEDED") - pipeline_event_time(EXEC_A, "FAILED");
    assert!(
        broken_for.num_seconds() > 3600,
        "the story's fix lands over an hour later"
    );
    assert_eq!(
        n.title,
        format!(
            "checkout-service restored after {}",
            human_duration(broken_for.num_seconds())
        )
    );
    assert_eq!(n.severity, Severity::Info);
    assert_eq!(n.thread, format!("{PIPELINE}/{EXEC_B}"));
    let text = n.lines.join("\n");
    assert!(text.contains("1 failed execution before it"), "{text}");
    assert!(
        text.contains("efc8cb0e1936") && text.contains("Fix null basket"),
        "names the fix: {text}"
    );
}

#[tokio::test]
async fn delivering_the_whole_story_again_sends_nothing_and_changes_no_timeline() {
    let (ingestor, store, notifier) = ingestor();
    let bodies = story_bodies();
    feed(&ingestor, &bodies, "first").await;
    let sent_once = notifier.sent();
    let timelines = |store| async move {
        let a = execution_timeline(store, &exec_key(EXEC_A)).await.unwrap();
        let b = execution_timeline(store, &exec_key(EXEC_B)).await.unwrap();
        (a, b)
    };
    let before = timelines(&*store).await;
    let writes = store.writes();

    let again = feed(&ingestor, &bodies, "second").await;
    for (i, outcome) in again.iter().enumerate() {
        let Outcome::Recorded { new, notifications, .. } = outcome else {
            unreachable!()
        };
        assert!(!new, "message {i} was already recorded");
        assert!(notifications.is_empty(), "message {i} sent {notifications:?} again");
    }
    assert_eq!(notifier.sent(), sent_once);
    assert_eq!(store.writes(), writes, "a redelivery writes nothing");
    assert_eq!(timelines(&*store).await, before);
}

#[tokio::test]
async fn the_story_yields_a_failed_and_a_succeeded_timeline() {
    let (ingestor, store, _) = ingestor();
    feed(&ingestor, &story_bodies(), "story").await;
    let a = execution_timeline(&*store, &exec_key(EXEC_A))
        .await
        .unwrap()
        .expect("A recorded");
    let b = execution_timeline(&*store, &exec_key(EXEC_B))
        .await
        .unwrap()
        .expect("B recorded");
    assert_eq!((a.state.as_str(), b.state.as_str()), ("FAILED", "SUCCEEDED"));
    let (stage, action) = a.failing_action().expect("A has a failing action");
    assert_eq!((stage.name.as_str(), action.name.as_str()), ("Production", "Deploy"));
    assert_eq!(action.deployment.as_ref().map(|d| d.state.as_str()), Some("FAILURE"));
    let stages: Vec<&str> = b.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["Source", "Build", "Staging", "Production"]);
    assert!(b.stages.iter().all(|s| s.state == "SUCCEEDED"), "{:#?}", b.stages);
}

#[tokio::test]
async fn a_late_deployment_event_does_not_make_a_redelivered_failure_notify_again() {
    let (ingestor, _, notifier) = ingestor();
    let production: Vec<Value> = story_values()
        .into_iter()
        .filter(|v| v["detail"]["deploymentId"] == "d-RAPGQL0KO")
        .collect();
    assert_eq!(production.len(), 2, "START and FAILURE");
    let failure = production[1].to_string();
    // CodeDeploy reports the deployment again, later (a redrive, or a clock ahead): it stays failed.
    let mut late = production[0].clone();
    late["time"] = json!("2026-11-20T09:45:00Z");
    let bodies = [production[0].to_string(), failure.clone(), late.to_string(), failure];
    feed(&ingestor, &bodies, "deploy").await;
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].key, "deployment_failed@2026-11-20T09:24:26Z");
}

/// A body, and what its rejection reason must name.
struct Malformed {
    case: &'static str,
    body: String,
    reason_names: &'static [&'static str],
}

fn malformed_bodies() -> Vec<Malformed> {
    let story = story_values();
    let action_failed = story
        .iter()
        .find(|e| e["detail"]["state"] == "FAILED" && e["detail"]["action"] == "Deploy")
        .expect("the story's failed action")
        .clone();
    let mut missing_execution_id = action_failed.clone();
    missing_execution_id["detail"]
        .as_object_mut()
        .unwrap()
        .remove("execution-id");
    let mut wrong_type = action_failed.clone();
    wrong_type["detail"]["execution-result"]["external-execution-id"] = json!(42);
    let mut bad_time = action_failed;
    bad_time["time"] = json!("yesterday");
    vec![
        Malformed {
            case: "not JSON",
            body: "{\"version\": \"0\",\n \"id\": oops}".into(),
            reason_names: &["invalid JSON", "line 2, column 8"],
        },
        Malformed {
            case: "truncated JSON",
            body: STORY[..200].to_string(),
            reason_names: &["invalid JSON", "line"],
        },
        Malformed {
            case: "JSON array, not an object",
            body: "[1, 2, 3]".into(),
            reason_names: &["expected a JSON object, found an array"],
        },
        Malformed {
            case: "JSON object without an envelope",
            body: r#"{"hello": "world"}"#.into(),
            reason_names: &["`source` is missing"],
        },
        Malformed {
            case: "time is not RFC 3339",
            body: bad_time.to_string(),
            reason_names: &["`time`", "yesterday"],
        },
        Malformed {
            case: "known detail-type missing a required field",
            body: missing_execution_id.to_string(),
            reason_names: &["CodePipeline Action Execution State Change", "execution-id"],
        },
        Malformed {
            case: "known detail-type with a field of the wrong type",
            body: wrong_type.to_string(),
            reason_names: &["`detail.execution-result.external-execution-id`"],
        },
    ]
}

#[tokio::test]
async fn malformed_bodies_are_kept_with_a_reason_and_not_retried() {
    let (ingestor, store, notifier) = ingestor();
    let cases = malformed_bodies();
    for (i, m) in cases.iter().enumerate() {
        let outcome = ingestor.ingest(&m.body, &ctx(format!("bad-{i}"))).await;
        let reason = match outcome {
            Ok(Outcome::Rejected { reason }) => reason,
            other => panic!("{}: expected Ok(Rejected), got {other:?}", m.case),
        };
        for name in m.reason_names {
            assert!(
                reason.contains(name),
                "{}: reason {reason:?} must name {name:?}",
                m.case
            );
        }
    }
    let kept = store.rejected(ctx("").received_at.date_naive(), 100).await.unwrap();
    assert_eq!(kept.len(), cases.len(), "every malformed message is kept");
    for (i, m) in cases.iter().enumerate() {
        let r = kept
            .iter()
            .find(|r| r.message_id == format!("bad-{i}"))
            .unwrap_or_else(|| panic!("{}: not kept", m.case));
        assert_eq!(r.body, m.body, "{}: the body is kept as received", m.case);
        assert!(!r.reason.is_empty());
    }
    assert!(notifier.sent().is_empty());
    assert!(
        store.execution_keys().is_empty(),
        "nothing malformed is recorded as an event"
    );
}

#[tokio::test]
async fn a_rejected_message_delivered_again_is_kept_once() {
    let (ingestor, store, _) = ingestor();
    for _ in 0..2 {
        let outcome = ingestor.ingest("not json", &ctx("same-message")).await.unwrap();
        assert!(matches!(outcome, Outcome::Rejected { .. }), "{outcome:?}");
    }
    let kept = store.rejected(ctx("").received_at.date_naive(), 100).await.unwrap();
    assert_eq!(kept.len(), 1);
}

#[tokio::test]
async fn unknown_detail_type_is_recorded_not_rejected() {
    let (ingestor, store, notifier) = ingestor();
    let body = json!({
        "version": "0",
        "id": "4c9a1f2e-0000-4000-8000-000000000001",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": "2026-11-20T09:30:00Z",
        "region": REGION,
        "resources": [],
        "detail": {"action-type": "PUSH", "repository-name": "checkout-service", "result": "SUCCESS"}
    })
    .to_string();
    let first = ingestor.ingest(&body, &ctx("ecr-1")).await.unwrap();
    let Outcome::Recorded {
        kind,
        new,
        notifications,
        ..
    } = first
    else {
        panic!("an unknown kind is recorded, got {first:?}")
    };
    assert_eq!(kind, EventKind::Unknown);
    assert!(new);
    assert!(notifications.is_empty());
    let second = ingestor.ingest(&body, &ctx("ecr-2")).await.unwrap();
    assert!(matches!(second, Outcome::Recorded { new: false, .. }), "{second:?}");
    assert!(store
        .rejected(ctx("").received_at.date_naive(), 100)
        .await
        .unwrap()
        .is_empty());
    assert!(notifier.sent().is_empty());
}

fn index_of_stage_failed() -> usize {
    story_index(|e| matches!(&e.body, EventBody::StageExecution(s) if s.state == "FAILED"))
}

/// The notification the story's stage failure calls for.
const STAGE_FAILED_KEY: &str = "stage_failed:Production@2026-11-20T09:25:00Z";

#[tokio::test]
async fn failed_publish_is_retryable_and_the_redelivery_sends_it_exactly_once() {
    let (ingestor, store, notifier) = ingestor();
    let bodies = story_bodies();
    let stage_failed = index_of_stage_failed();
    feed(&ingestor, &bodies[..stage_failed], "before").await;
    let sent_before = notifier.sent().len();

    notifier.fail_next(1);
    let err = ingestor
        .ingest(&bodies[stage_failed], &ctx("stage-failed-1"))
        .await
        .expect_err("a notifier failure must be retryable");
    assert!(matches!(err, RetryableError::Notify(_)), "{err:?}");
    assert_eq!(notifier.sent().len(), sent_before, "nothing was published");
    assert_eq!(
        marks(&*store, &bodies[stage_failed]).await.get(STAGE_FAILED_KEY),
        None,
        "the failed publisher released its claim, so the redelivery need not wait out the lease"
    );

    let retry = ingestor
        .ingest(&bodies[stage_failed], &ctx("stage-failed-2"))
        .await
        .unwrap();
    let Outcome::Recorded { new, notifications, .. } = retry else {
        panic!("{retry:?}")
    };
    assert!(!new, "the event was recorded by the failed attempt");
    let kinds: Vec<NotificationKind> = notifications.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, vec![NotificationKind::StageFailed]);
    assert_eq!(
        marks(&*store, &bodies[stage_failed]).await.get(STAGE_FAILED_KEY),
        Some(&Mark::Sent)
    );

    let third = ingestor
        .ingest(&bodies[stage_failed], &ctx("stage-failed-3"))
        .await
        .unwrap();
    assert!(
        matches!(&third, Outcome::Recorded { notifications, .. } if notifications.is_empty()),
        "{third:?}"
    );

    feed(&ingestor, &bodies[stage_failed + 1..], "after").await;
    let clean = story_notifications().await;
    let keys = |ns: &[Notification]| ns.iter().map(|n| n.key.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&notifier.sent()),
        keys(&clean),
        "no loss and no duplicate over the whole story"
    );
}

#[tokio::test]
async fn notification_lost_to_a_failed_publish_is_sent_when_its_event_comes_back_later() {
    let (ingestor, _, notifier) = ingestor();
    let bodies = story_bodies();
    let stage_failed = index_of_stage_failed();
    feed(&ingestor, &bodies[..stage_failed], "before").await;
    notifier.fail_next(1);
    assert!(ingestor.ingest(&bodies[stage_failed], &ctx("first")).await.is_err());
    // Meanwhile the rest of the story arrives (the queue redelivers the failed message only after its timeout).
    feed(&ingestor, &bodies[stage_failed + 1..], "after").await;
    assert!(
        !notifier.sent().iter().any(|n| n.kind == NotificationKind::StageFailed),
        "the stage failure is still unpublished"
    );

    let late = ingestor
        .ingest(&bodies[stage_failed], &ctx("redelivered"))
        .await
        .unwrap();
    let Outcome::Recorded { notifications, .. } = late else {
        panic!("{late:?}")
    };
    assert_eq!(notifications.len(), 1, "{notifications:#?}");
    assert_eq!(notifications[0].key, STAGE_FAILED_KEY);
    let stage_failed_sent = notifier
        .sent()
        .iter()
        .filter(|n| n.kind == NotificationKind::StageFailed)
        .count();
    assert_eq!(stage_failed_sent, 1);
}

/// Delivers the story up to its stage failure, then two copies of the stage failure at once (as SQS may, to two
/// instances of the function); returns both results in the order of the copies, and the (claims asked for, claims
/// refused) of the two copies.
async fn two_deliveries_at_once(ingestor: &RacingIngestor) -> ([Result<Outcome, RetryableError>; 2], (usize, usize)) {
    let bodies = story_bodies();
    let stage_failed = index_of_stage_failed();
    feed(ingestor, &bodies[..stage_failed], "before").await;
    let body = &bodies[stage_failed];
    let (ctx_a, ctx_b) = (ctx("copy-a"), ctx("copy-b"));
    let before = ingestor.store().claims();
    let (a, b) = tokio::join!(ingestor.ingest(body, &ctx_a), ingestor.ingest(body, &ctx_b));
    let after = ingestor.store().claims();
    ([a, b], (after.0 - before.0, after.1 - before.1))
}

/// Checks that exactly one of two concurrent deliveries published the stage failure and the other was told to retry;
/// redelivers the loser and checks that it then succeeds without publishing anything.
async fn one_publishes_and_the_other_is_retried(
    ingestor: &RacingIngestor,
    store: &CountingStore,
    notifier: &SlowNotifier,
    results: [Result<Outcome, RetryableError>; 2],
) {
    let stage_failures = || {
        notifier
            .inner
            .sent()
            .iter()
            .filter(|n| n.kind == NotificationKind::StageFailed)
            .count()
    };
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    for (copy, result) in ["copy-a", "copy-b"].into_iter().zip(results) {
        match result {
            Ok(outcome) => won.push((copy, outcome)),
            Err(err) => lost.push((copy, err)),
        }
    }
    assert_eq!((won.len(), lost.len()), (1, 1), "won {won:#?}, lost {lost:#?}");
    let Outcome::Recorded { notifications, .. } = &won[0].1 else {
        panic!("{won:?}")
    };
    let keys: Vec<&str> = notifications.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, [STAGE_FAILED_KEY], "the winner published the stage failure");
    let (loser, err) = &lost[0];
    assert_eq!(
        err,
        &RetryableError::InFlight(STAGE_FAILED_KEY.to_string()),
        "the loser is retried rather than acknowledged"
    );
    assert_eq!(stage_failures(), 1, "published once");
    let bodies = story_bodies();
    let body = &bodies[index_of_stage_failed()];
    assert_eq!(marks(store, body).await.get(STAGE_FAILED_KEY), Some(&Mark::Sent));

    // The queue delivers the loser's message again, after the winner finished.
    let retried = ingestor.ingest(body, &ctx(format!("{loser}-again"))).await.unwrap();
    assert!(
        matches!(&retried, Outcome::Recorded { new: false, notifications, .. } if notifications.is_empty()),
        "{retried:?}"
    );
    assert_eq!(stage_failures(), 1, "still published once");
}

#[tokio::test]
async fn a_delivery_that_finds_the_notification_being_published_is_retried_and_then_publishes_nothing() {
    // The first copy claims and is publishing (slowly) when the second records the event: the second sees the
    // fresh claim in the record and does not even try to claim.
    let (ingestor, store, notifier) = racing_ingestor(CountingStore::default());
    let (results, claims) = two_deliveries_at_once(&ingestor).await;
    assert_eq!(claims, (1, 0), "(claims asked for, refused)");
    one_publishes_and_the_other_is_retried(&ingestor, &store, &notifier, results).await;
}

#[tokio::test]
async fn two_deliveries_that_both_try_to_claim_publish_once_and_the_loser_is_retried() {
    // Both copies record the event before either claims, so both see no marker: the claim alone decides.
    let (ingestor, store, notifier) = racing_ingestor(CountingStore::yielding());
    let (results, claims) = two_deliveries_at_once(&ingestor).await;
    assert_eq!(claims, (2, 1), "(claims asked for, refused)");
    one_publishes_and_the_other_is_retried(&ingestor, &store, &notifier, results).await;
}

/// The story delivered up to its stage failure, and the stage failure recorded by a delivery that then claimed its
/// notification at `claimed_at` and did nothing more (it died, or is still publishing). Returns the body of the stage
/// failure and the claim.
async fn stage_failure_claimed_at(
    ingestor: &MemoryIngestor,
    store: &MemoryStore,
    claimed_at: DateTime<Utc>,
) -> (String, Mark) {
    let bodies = story_bodies();
    let stage_failed = index_of_stage_failed();
    feed(ingestor, &bodies[..stage_failed], "before").await;
    let body = bodies[stage_failed].clone();
    let event = parse_event(body.as_bytes()).unwrap();
    assert!(store.record(&event).await.unwrap().new);
    let claim = Mark::Claimed {
        at: claimed_at,
        token: "first-delivery.1".into(),
    };
    let claimed = store
        .claim_notification(&event, STAGE_FAILED_KEY, &claim, claimed_at - Duration::seconds(60))
        .await
        .unwrap();
    assert!(claimed);
    assert_eq!(marks(store, &body).await.get(STAGE_FAILED_KEY), Some(&claim));
    (body, claim)
}

/// A time `secs` ago, in whole seconds as claims are stored.
fn seconds_ago(secs: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::seconds(secs)).trunc_subsecs(0)
}

fn stage_failures(notifier: &MemoryNotifier) -> usize {
    notifier
        .sent()
        .iter()
        .filter(|n| n.kind == NotificationKind::StageFailed)
        .count()
}

#[tokio::test]
async fn a_claim_left_by_a_publisher_that_died_is_taken_over_and_published_once() {
    let (ingestor, store, notifier) = ingestor();
    // Well past the service's 60 s lease.
    let (body, _) = stage_failure_claimed_at(&ingestor, &store, seconds_ago(300)).await;

    let redelivered = ingestor.ingest(&body, &ctx("redelivered")).await.unwrap();
    let Outcome::Recorded { new, notifications, .. } = &redelivered else {
        panic!("{redelivered:?}")
    };
    assert!(!new);
    let keys: Vec<&str> = notifications.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, [STAGE_FAILED_KEY], "the abandoned notification is published");
    assert_eq!(stage_failures(&notifier), 1);
    assert_eq!(marks(&*store, &body).await.get(STAGE_FAILED_KEY), Some(&Mark::Sent));

    let again = ingestor.ingest(&body, &ctx("redelivered-again")).await.unwrap();
    assert!(
        matches!(&again, Outcome::Recorded { notifications, .. } if notifications.is_empty()),
        "{again:?}"
    );
    assert_eq!(stage_failures(&notifier), 1, "published once");
}

#[tokio::test]
async fn a_fresh_claim_makes_the_delivery_retry_until_its_holder_finished() {
    let (ingestor, store, notifier) = ingestor();
    let (body, claim) = stage_failure_claimed_at(&ingestor, &store, seconds_ago(10)).await;

    let err = ingestor.ingest(&body, &ctx("while-publishing")).await.unwrap_err();
    assert_eq!(err, RetryableError::InFlight(STAGE_FAILED_KEY.to_string()));
    assert_eq!(stage_failures(&notifier), 0, "the holder is still publishing");
    assert_eq!(
        marks(&*store, &body).await.get(STAGE_FAILED_KEY),
        Some(&claim),
        "the holder's claim is left alone"
    );

    // The holder publishes (elsewhere) and marks it sent; the retried delivery then has nothing to publish.
    let event = parse_event(body.as_bytes()).unwrap();
    store
        .finish_notification(&event, STAGE_FAILED_KEY, &claim)
        .await
        .unwrap();
    let retried = ingestor.ingest(&body, &ctx("retried")).await.unwrap();
    assert!(
        matches!(&retried, Outcome::Recorded { new: false, notifications, .. } if notifications.is_empty()),
        "{retried:?}"
    );
    assert_eq!(stage_failures(&notifier), 0);
}

/// Checks one notification's chat document against the custom notification schema of Amazon Q Developer in chat
/// applications (AWS Chatbot): required `version` "1.0" and `source` "custom", strings where strings are expected.
fn assert_valid_chat_message(n: &Notification) {
    let text = serde_json::to_string(&n.chat_message()).expect("serialises");
    let doc: Value = serde_json::from_str(&text).expect("the chat message is valid JSON");
    let what = &n.key;
    assert_eq!(doc["version"], "1.0", "{what}");
    assert_eq!(doc["source"], "custom", "{what}");
    let content = &doc["content"];
    assert_eq!(content["textType"], "client-markdown", "{what}");
    for field in ["title", "description"] {
        let s = content[field]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: content.{field} is a string"));
        assert!(!s.trim().is_empty(), "{what}: content.{field} is empty");
    }
    assert!(content["title"].as_str().unwrap().contains(&n.title), "{what}");
    for list in ["nextSteps", "keywords"] {
        let items = content[list]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: content.{list} is an array"));
        assert!(
            items.iter().all(Value::is_string),
            "{what}: content.{list} holds strings"
        );
    }
    let metadata = &doc["metadata"];
    assert_eq!(metadata["threadId"].as_str(), Some(n.thread.as_str()), "{what}");
    assert!(
        metadata["summary"].is_string() && metadata["eventType"].is_string(),
        "{what}"
    );
    let resources = metadata["relatedResources"]
        .as_array()
        .expect("relatedResources is an array");
    assert!(resources.iter().all(Value::is_string), "{what}");
    let context = metadata["additionalContext"]
        .as_object()
        .expect("additionalContext is an object");
    assert!(
        context.values().all(Value::is_string),
        "{what}: additionalContext values are strings"
    );
    if let Some(link) = &n.link {
        assert!(
            content["description"].as_str().unwrap().contains(link.as_str()),
            "{what}: the link is shown"
        );
    }
}

#[tokio::test]
async fn every_story_notification_is_a_valid_chat_custom_notification() {
    let sent = story_notifications().await;
    assert!(!sent.is_empty());
    for n in &sent {
        assert_valid_chat_message(n);
    }
    // Chat keeps the markdown that email drops.
    let failed = only(&sent, NotificationKind::ExecutionFailed).chat_message();
    let description = failed["content"]["description"].as_str().unwrap();
    assert!(
        description.contains("*Deploy*") && description.contains('`'),
        "{description}"
    );
}

#[tokio::test]
async fn email_text_has_no_markdown_and_keeps_the_facts() {
    let sent = story_notifications().await;
    for n in &sent {
        let text = n.email_text();
        assert!(
            !text.contains('*') && !text.contains('`'),
            "{}: markdown in email:\n{text}",
            n.key
        );
        assert!(text.starts_with(&n.title), "{}: starts with the title:\n{text}", n.key);
        if let Some(link) = &n.link {
            assert!(
                text.contains(link.as_str()),
                "{}: the link is in the email:\n{text}",
                n.key
            );
        }
    }
    let failed = only(&sent, NotificationKind::ExecutionFailed).email_text();
    assert!(
        failed.contains("Action Deploy (CodeDeploy) FAILED [JobFailed]"),
        "{failed}"
    );
    assert!(failed.contains("Change: ec964d3d4496 Add express checkout"), "{failed}");
}

fn assert_valid_subject(subject: &str) {
    assert!(
        subject.chars().count() <= 100,
        "{} chars: {subject:?}",
        subject.chars().count()
    );
    assert!(
        subject.chars().all(|c| c.is_ascii_graphic() || c == ' '),
        "not printable ASCII: {subject:?}"
    );
}

#[tokio::test]
async fn email_subject_is_short_printable_ascii() {
    for n in story_notifications().await {
        let subject = n.email_subject();
        assert_valid_subject(&subject);
        assert_eq!(
            subject,
            format!("[Tollgate] {}", n.title),
            "a short ASCII title is kept whole"
        );
    }
}

fn notification_titled(title: String) -> Notification {
    Notification {
        key: "k".into(),
        kind: NotificationKind::StageFailed,
        severity: Severity::Warning,
        account: ACCOUNT.into(),
        region: REGION.into(),
        pipeline: Some(PIPELINE.into()),
        thread: "t".into(),
        title,
        lines: vec!["*bold* and `code`".into()],
        next_steps: Vec::new(),
        link: None,
        resources: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn email_subject_is_at_most_100_printable_ascii_chars_for_any_title(title in any::<String>()) {
        let subject = notification_titled(title.clone()).email_subject();
        assert_valid_subject(&subject);
        prop_assert!(subject.starts_with("[Tollgate] "));
        if title.len() <= 89 && title.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            prop_assert_eq!(subject, format!("[Tollgate] {title}"));
        }
    }

    #[test]
    fn a_long_pipeline_name_still_fits_the_subject(name in "[A-Za-z0-9_.@-]{1,100}") {
        let subject = notification_titled(format!("{name} failed at Production / Deploy")).email_subject();
        assert_valid_subject(&subject);
    }
}

#[tokio::test]
async fn a_failing_mark_sent_is_tried_again_at_once_so_the_notification_is_never_published_twice() {
    let (ingestor, store, notifier) = racing_ingestor(CountingStore::default());
    let bodies = story_bodies();
    let stage_failed = index_of_stage_failed();
    feed(&ingestor, &bodies[..stage_failed], "before").await;
    let sent_before = notifier.inner.sent().len();
    let finishes_before = store.finishes();

    // Published, then the mark fails twice (throttled): marked on the third try, inside this delivery.
    store.failing_finishes.store(2, Ordering::SeqCst);
    let outcome = ingestor
        .ingest(&bodies[stage_failed], &ctx("stage-failed-1"))
        .await
        .expect("the mark lands on a later attempt");
    assert!(
        matches!(&outcome, Outcome::Recorded { notifications, .. } if notifications.len() == 1),
        "{outcome:?}"
    );
    assert_eq!(store.finishes() - finishes_before, 3);
    assert_eq!(notifier.inner.sent().len(), sent_before + 1);
    assert_eq!(
        marks(&*store, &bodies[stage_failed]).await.get(STAGE_FAILED_KEY),
        Some(&Mark::Sent)
    );

    // A mark that never lands fails the delivery after FINISH_ATTEMPTS tries, leaving the claim to its lease.
    let next = stage_failed + 1;
    store.failing_finishes.store(
        tollgate_domain::ingest::service::FINISH_ATTEMPTS as usize,
        Ordering::SeqCst,
    );
    let before = store.finishes();
    let story_left: Vec<_> = bodies[next..].to_vec();
    let mut failed = false;
    for (i, body) in story_left.iter().enumerate() {
        if let Err(e) = ingestor.ingest(body, &ctx(format!("rest-{i}"))).await {
            assert!(matches!(e, RetryableError::Store(StoreError::Transient(_))), "{e:?}");
            failed = true;
            break;
        }
    }
    assert!(failed, "some later notification met the failing marks");
    assert_eq!(
        store.finishes() - before,
        tollgate_domain::ingest::service::FINISH_ATTEMPTS as usize
    );
}

#[tokio::test]
async fn a_non_ascii_revision_id_is_shortened_by_characters_without_panicking() {
    // Byte 12 of this id falls inside an `é`: slicing it by byte index would panic.
    let id = "aéééééééééééééb";
    assert!(!id.is_char_boundary(12));
    let bodies: Vec<String> = story_bodies()
        .into_iter()
        .map(|b| b.replace("ec964d3d4496eba592913bcbacbb07b7df1db1af", id))
        .collect();
    let (ingestor, _, notifier) = ingestor();
    feed(&ingestor, &bodies, "story").await;
    let failed = only(&notifier.sent(), NotificationKind::ExecutionFailed).email_text();
    assert!(failed.contains("Change: aééééééééééé Add express checkout"), "{failed}");
}
