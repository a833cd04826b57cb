//! SQS batch in, partial batch response out.
//!
//! Each message is processed on its own task: the ingest service is order-independent, so a batch needs no ordering.
//! A message that can never be processed is kept with its reason by the service and acknowledged; only retryable
//! failures (throttling, timeouts, a notification not yet published) and messages whose task panicked are returned in
//! `batchItemFailures` for SQS to deliver again, and after the queue's maxReceiveCount they land in the dead-letter
//! queue, never dropped.

use std::collections::HashMap;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::Utc;
use serde_json::json;
use tokio::task::JoinSet;
use tollgate_domain::ingest::service::{Ingestor, MessageContext, Outcome, RetryableError};
use tollgate_domain::record::event::EventKind;
use tollgate_domain::record::ports::{EventRecorder, TimelineQueries};
use tollgate_domain::tell::ports::Notifier;

/// Counts of one batch, also written as a CloudWatch embedded-metric-format line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub recorded: u32,
    pub duplicates: u32,
    pub unknown_kinds: u32,
    pub rejected: u32,
    pub retried: u32,
    pub notifications: u32,
}

pub async fn handle_batch<S, N>(ingestor: &Ingestor<S, N>, event: SqsEvent) -> (SqsBatchResponse, BatchStats)
where
    S: EventRecorder + TimelineQueries + 'static,
    N: Notifier + 'static,
{
    let mut tasks = JoinSet::new();
    // Which message each task holds, so that a task that panics fails its own message.
    let mut held: HashMap<tokio::task::Id, String> = HashMap::new();
    for record in event.records {
        let ingestor = ingestor.clone();
        let message_id = record.message_id.clone().unwrap_or_default();
        let task = tasks.spawn(async move {
            let message_id = record.message_id.unwrap_or_default();
            // SQS's SentTimestamp, not the time of this delivery: a redelivered message that is kept as rejected
            // must land on the same item.
            let received_at = record
                .attributes
                .get("SentTimestamp")
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis)
                .unwrap_or_else(Utc::now);
            let receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let ctx = MessageContext {
                message_id: message_id.clone(),
                received_at,
                receive_count,
            };
            let body = record.body.unwrap_or_default();
            (message_id, ingestor.ingest(&body, &ctx).await)
        });
        held.insert(task.id(), message_id);
    }
    let mut stats = BatchStats::default();
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (message_id, result) = match joined {
            Ok((_, done)) => done,
            Err(e) => {
                // The task panicked (or was cancelled) before its message was processed: that message is reported as
                // failed, so SQS delivers it again and, after maxReceiveCount, keeps it in the dead-letter queue.
                // An empty list would acknowledge it.
                let message_id = held.get(&e.id()).cloned().unwrap_or_default();
                tracing::error!(message_id, error = %e, "ingest task panicked; the message will be retried");
                stats.retried += 1;
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
                continue;
            }
        };
        match result {
            Ok(Outcome::Recorded {
                kind,
                event_id,
                new,
                notifications,
            }) => {
                if new {
                    stats.recorded += 1;
                } else {
                    stats.duplicates += 1;
                }
                if kind == EventKind::Unknown {
                    stats.unknown_kinds += 1;
                }
                stats.notifications += notifications.len() as u32;
                tracing::info!(
                    message_id,
                    event_id,
                    kind = kind.as_str(),
                    new,
                    notifications = notifications.len(),
                    "recorded"
                );
            }
            Ok(Outcome::Rejected { reason }) => {
                stats.rejected += 1;
                tracing::warn!(message_id, reason, "rejected: kept with its reason, not retried");
            }
            Err(e) => {
                stats.retried += 1;
                match e {
                    // Expected under concurrency and reordering: not a fault.
                    RetryableError::InFlight(_) | RetryableError::Deferred(_) => {
                        tracing::info!(message_id, reason = %e, "deferred to a redelivery")
                    }
                    _ => tracing::warn!(message_id, error = %e, "will be retried"),
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    (response, stats)
}

/// The batch's counts in CloudWatch embedded metric format: one log line, metrics without an API call.
pub fn emf_line(stats: &BatchStats, now_millis: i64) -> String {
    json!({
        "_aws": {
            "Timestamp": now_millis,
            "CloudWatchMetrics": [{
                "Namespace": "Tollgate",
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": "EventsRecorded", "Unit": "Count"},
                    {"Name": "DuplicateDeliveries", "Unit": "Count"},
                    {"Name": "UnknownEventKinds", "Unit": "Count"},
                    {"Name": "MessagesRejected", "Unit": "Count"},
                    {"Name": "MessagesRetried", "Unit": "Count"},
                    {"Name": "NotificationsSent", "Unit": "Count"}
                ]
            }]
        },
        "Function": "ingest",
        "EventsRecorded": stats.recorded,
        "DuplicateDeliveries": stats.duplicates,
        "UnknownEventKinds": stats.unknown_kinds,
        "MessagesRejected": stats.rejected,
        "MessagesRetried": stats.retried,
        "NotificationsSent": stats.notifications,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
    use tollgate_domain::tell::ports::NotifyError;

    use super::*;

    fn sqs_event(bodies: &[(&str, String)]) -> SqsEvent {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"}))
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("valid SQS event")
    }

    fn story() -> Vec<String> {
        tollgate_test_support::story_bodies()
    }

    fn ingestor() -> (
        Ingestor<MemoryStore, MemoryNotifier>,
        Arc<MemoryStore>,
        Arc<MemoryNotifier>,
    ) {
        let (store, notifier) = (Arc::new(MemoryStore::new()), Arc::new(MemoryNotifier::new()));
        (Ingestor::new(store.clone(), notifier.clone()), store, notifier)
    }

    #[tokio::test]
    async fn malformed_message_is_kept_and_acknowledged_not_retried() {
        let (ingestor, store, _) = ingestor();
        let batch = sqs_event(&[("m-1", "{ not json".into()), ("m-2", story()[0].clone())]);
        let (response, stats) = handle_batch(&ingestor, batch).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((stats.rejected, stats.recorded), (1, 1));
        let day = Utc::now().date_naive();
        let kept = store.rejected(day, 10).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].message_id, "m-1");
        assert!(kept[0].reason.contains("line 1, column 3"), "{}", kept[0].reason);
        assert_eq!(kept[0].body, "{ not json");
    }

    #[tokio::test]
    async fn duplicate_in_the_same_batch_is_recorded_once() {
        let (ingestor, store, _) = ingestor();
        let body = story()[0].clone();
        let batch = sqs_event(&[("m-1", body.clone()), ("m-2", body)]);
        let (response, stats) = handle_batch(&ingestor, batch).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((stats.recorded, stats.duplicates), (1, 1));
        assert_eq!(store.writes(), 1);
    }

    #[tokio::test]
    async fn notification_failure_is_reported_for_that_message_only() {
        let (ingestor, _, notifier) = ingestor();
        let events = story();
        // Everything up to (not including) the first pipeline FAILED event, then that event with the notifier down.
        let failed_at = events
            .iter()
            .position(|e| e.contains("Pipeline Execution State Change") && e.contains("\"FAILED\""))
            .expect("the story has a failed execution");
        let first: Vec<(String, String)> = events[..failed_at]
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("m-{i}"), b.clone()))
            .collect();
        for chunk in first.chunks(10) {
            let batch: Vec<(&str, String)> = chunk.iter().map(|(id, b)| (id.as_str(), b.clone())).collect();
            handle_batch(&ingestor, sqs_event(&batch)).await;
        }
        let sent_before = notifier.sent().len();
        notifier.fail_next(1);
        let failing = sqs_event(&[("m-failed", events[failed_at].clone()), ("m-other", events[0].clone())]);
        let (response, _) = handle_batch(&ingestor, failing).await;
        let failed_ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed_ids, vec!["m-failed"]);
        // SQS delivers it again: the notification goes out exactly once.
        let (response, _) = handle_batch(&ingestor, sqs_event(&[("m-failed", events[failed_at].clone())])).await;
        assert!(response.batch_item_failures.is_empty());
        let (response, _) = handle_batch(&ingestor, sqs_event(&[("m-failed", events[failed_at].clone())])).await;
        assert!(response.batch_item_failures.is_empty());
        let failed_notes: Vec<_> = notifier.sent()[sent_before..]
            .iter()
            .filter(|n| n.kind.as_str() == "execution_failed")
            .cloned()
            .collect();
        assert_eq!(failed_notes.len(), 1, "{failed_notes:#?}");
    }

    /// A notifier that panics on an execution-failed notification: the test seam for a message that makes processing
    /// panic.
    struct PanickingNotifier(MemoryNotifier);

    #[async_trait::async_trait]
    impl Notifier for PanickingNotifier {
        async fn publish(&self, n: &tollgate_domain::tell::notify::Notification) -> Result<(), NotifyError> {
            assert_ne!(n.kind.as_str(), "execution_failed", "poisoned message");
            self.0.publish(n).await
        }
    }

    #[tokio::test]
    async fn a_panic_fails_the_poisoned_message_and_leaves_the_healthy_ones_recorded() {
        let store = Arc::new(MemoryStore::new());
        let ingestor = Ingestor::new(store.clone(), Arc::new(PanickingNotifier(MemoryNotifier::new())));
        let events = story();
        let poisoned = events
            .iter()
            .position(|e| e.contains("Pipeline Execution State Change") && e.contains("\"FAILED\""))
            .expect("the story has a failed execution");
        let before: Vec<(String, String)> = events[..poisoned]
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("m-{i}"), b.clone()))
            .collect();
        let (ids, bodies): (Vec<_>, Vec<_>) = before.iter().cloned().unzip();
        for chunk in before.chunks(9) {
            // Each batch carries the poisoned message among healthy ones.
            let mut batch: Vec<(&str, String)> = chunk.iter().map(|(id, b)| (id.as_str(), b.clone())).collect();
            batch.insert(batch.len() / 2, ("m-poisoned", events[poisoned].clone()));
            let (response, stats) = handle_batch(&ingestor, sqs_event(&batch)).await;
            let failed: Vec<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            assert_eq!(
                failed,
                vec!["m-poisoned"],
                "only the poisoned message fails; it is not acknowledged"
            );
            assert_eq!(stats.retried, 1);
            assert_eq!(stats.recorded + stats.duplicates, chunk.len() as u32);
        }
        // Every healthy event is recorded: delivered again, each is a duplicate.
        let again: Vec<(&str, String)> = ids.iter().map(String::as_str).zip(bodies).collect();
        for chunk in again.chunks(10) {
            let (response, stats) = handle_batch(&ingestor, sqs_event(chunk)).await;
            assert!(response.batch_item_failures.is_empty());
            assert_eq!((stats.recorded, stats.duplicates), (0, chunk.len() as u32));
        }
    }

    #[tokio::test]
    async fn the_sample_sqs_batch_records_two_ignores_one_duplicate_and_keeps_one_malformed() {
        let (ingestor, _, _) = ingestor();
        let batch: SqsEvent = serde_json::from_str(include_str!("../../../events/sqs/ingest-batch.json")).unwrap();
        let (response, stats) = handle_batch(&ingestor, batch).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((stats.recorded, stats.duplicates, stats.rejected), (2, 1, 1));
    }

    #[test]
    fn emf_line_declares_every_metric_it_carries() {
        let stats = BatchStats {
            recorded: 3,
            unknown_kinds: 1,
            ..BatchStats::default()
        };
        let line: serde_json::Value = serde_json::from_str(&emf_line(&stats, 1_700_000_000_000)).unwrap();
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert_eq!(declared.len(), 6);
        for m in declared {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} is declared but not set");
        }
        assert_eq!(line["EventsRecorded"], 3);
        assert_eq!(line["UnknownEventKinds"], 1);
    }
}
