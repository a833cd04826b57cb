//! A failure notification waits for the event that says what failed, within limits.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tollgate_domain::ingest::service::{FailureWait, Ingestor, MessageContext, Outcome, RetryableError};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::tell::notify::NotificationKind;

fn event(detail_type: &str, time: &str, detail: Value) -> String {
    json!({"source": "aws.codepipeline", "detail-type": detail_type, "account": "111122223333",
           "region": "eu-west-1", "time": time, "detail": detail})
    .to_string()
}

fn pipeline_failed() -> String {
    event(
        "CodePipeline Pipeline Execution State Change",
        "2026-11-20T09:25:01Z",
        json!({"pipeline": "p", "execution-id": "e-1", "state": "FAILED", "version": 1}),
    )
}

fn action_failed() -> String {
    event(
        "CodePipeline Action Execution State Change",
        "2026-11-20T09:24:59Z",
        json!({"pipeline": "p", "execution-id": "e-1", "stage": "Production", "action": "Deploy", "state": "FAILED",
               "type": {"owner": "AWS", "provider": "CodeDeploy", "category": "Deploy", "version": "1"},
               "execution-result": {"external-execution-id": "d-1", "error-code": "JobFailed",
                                    "external-execution-summary": "Deployment d-1 failed"}}),
    )
}

fn delivery(n: u32) -> MessageContext {
    MessageContext {
        receive_count: n,
        ..MessageContext::new("m-1", Utc::now())
    }
}

fn setup(wait: FailureWait) -> (Ingestor<MemoryStore, MemoryNotifier>, Arc<MemoryNotifier>) {
    let notifier = Arc::new(MemoryNotifier::new());
    let ingestor = Ingestor::new(Arc::new(MemoryStore::new()), notifier.clone()).with_failure_wait(wait);
    (ingestor, notifier)
}

#[tokio::test]
async fn unexplained_failure_is_deferred_then_sent_with_the_failing_action() {
    let (ingestor, notifier) = setup(FailureWait {
        settle: Duration::ZERO,
        defer_receives: 2,
    });
    let first = ingestor.ingest(&pipeline_failed(), &delivery(1)).await;
    assert!(matches!(first, Err(RetryableError::Deferred(_))), "{first:?}");
    assert!(notifier.sent().is_empty(), "nothing is sent while waiting");
    ingestor.ingest(&action_failed(), &delivery(1)).await.unwrap();
    // The redelivery now knows the failing action.
    ingestor.ingest(&pipeline_failed(), &delivery(2)).await.unwrap();
    let failed: Vec<_> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::ExecutionFailed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].title, "p failed at Production / Deploy");
}

#[tokio::test]
async fn failure_is_sent_without_details_once_the_deferrals_are_spent() {
    let (ingestor, notifier) = setup(FailureWait {
        settle: Duration::ZERO,
        defer_receives: 2,
    });
    assert!(ingestor.ingest(&pipeline_failed(), &delivery(2)).await.is_err());
    let Outcome::Recorded { notifications, .. } = ingestor.ingest(&pipeline_failed(), &delivery(3)).await.unwrap()
    else {
        panic!("recorded")
    };
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].title, "p failed");
    assert!(notifications[0].lines[0].contains("not known yet"));
    assert_eq!(notifier.sent().len(), 1);
}

#[tokio::test]
async fn the_settle_wait_picks_up_an_action_recorded_meanwhile_in_the_same_batch() {
    let (ingestor, notifier) = setup(FailureWait {
        settle: Duration::from_millis(100),
        defer_receives: 0,
    });
    let other = ingestor.clone();
    let (body, ctx) = (pipeline_failed(), delivery(1));
    let (failed, action) = tokio::join!(ingestor.ingest(&body, &ctx), async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        other.ingest(&action_failed(), &delivery(1)).await
    });
    failed.unwrap();
    action.unwrap();
    let titles: Vec<String> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::ExecutionFailed)
        .map(|n| n.title)
        .collect();
    assert_eq!(titles, vec!["p failed at Production / Deploy".to_string()]);
}
