//! The ingest service: one delivery message in, recorded exactly once, engineers told what changed.
//!
//! Generic over the ports, so the Lambda handler, the local runner and the offline replay share this code.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::record::event::{DeliveryEvent, EventKind};
use crate::record::keys::{Layout, Subject};
use crate::record::parse::{parse_event, ParseError};
use crate::record::ports::{EventRecorder, Mark, Recorded, Rejected, StoreError, TimelineQueries};
use crate::record::query::link_runs;
use crate::record::timeline::{is_failure, ExecutionTimeline};
use crate::tell::notify::{
    deployment_notifications, execution_notifications, restore_undecided, stack_notifications, Notification,
    NotificationKind,
};
use crate::tell::ports::Notifier;

/// How long a notification claim protects its holder. Far longer than a publish takes, and shorter than the ingest
/// queue's visibility timeout, so the redelivery of a message whose publisher died finds the claim expired.
const NOTIFY_LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// How many of a pipeline's previous executions are read to decide whether a success restored it.
const RESTORE_LOOKBACK: usize = 25;

/// Attempts at marking a published notification sent before the delivery is failed (and the claim left to expire).
pub const FINISH_ATTEMPTS: u32 = 5;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The event is recorded (now, or by an earlier delivery when `new` is false).
    Recorded {
        kind: EventKind,
        event_id: String,
        new: bool,
        notifications: Vec<Notification>,
    },
    /// The message can never be processed; it was kept with the reason and must not be retried.
    Rejected { reason: String },
}

/// A failure worth retrying: nothing was lost, the message should be delivered again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryableError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] crate::tell::ports::NotifyError),
    #[error("notification {0} is being published by another delivery of this event; try again later")]
    InFlight(String),
    #[error("waiting for more events before notifying: {0}")]
    Deferred(String),
}

/// Where a message came from, for keeping it when it is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    /// How many times the transport has delivered this message, this delivery included (SQS
    /// `ApproximateReceiveCount`; 1 when unknown).
    pub receive_count: u32,
}

impl MessageContext {
    /// A first delivery.
    pub fn new(message_id: impl Into<String>, received_at: DateTime<Utc>) -> MessageContext {
        MessageContext {
            message_id: message_id.into(),
            received_at,
            receive_count: 1,
        }
    }
}

/// How long a failure notification may wait for the event that says what failed.
///
/// CodePipeline emits an action's, its stage's and the pipeline's FAILED events within a second; they often reach
/// Tollgate in one batch, processed concurrently, or the pipeline's first. An execution-failed message that cannot
/// name the failing action first waits `settle` and reads the execution again (same batch), then is deferred to a
/// redelivery up to `defer_receives` times (a later batch), and only then goes out without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureWait {
    pub settle: std::time::Duration,
    pub defer_receives: u32,
}

impl FailureWait {
    /// No waiting at all: for offline replay, where every event is already at hand.
    pub const NONE: FailureWait = FailureWait {
        settle: std::time::Duration::ZERO,
        defer_receives: 0,
    };
}

impl Default for FailureWait {
    fn default() -> Self {
        FailureWait {
            settle: std::time::Duration::from_millis(1500),
            defer_receives: 2,
        }
    }
}

pub struct Ingestor<S, N> {
    store: Arc<S>,
    notifier: Arc<N>,
    failure_wait: FailureWait,
}

impl<S, N> Clone for Ingestor<S, N> {
    fn clone(&self) -> Self {
        Ingestor {
            store: self.store.clone(),
            notifier: self.notifier.clone(),
            failure_wait: self.failure_wait,
        }
    }
}

impl<S, N> Ingestor<S, N>
where
    S: EventRecorder + TimelineQueries,
    N: Notifier,
{
    /// An ingestor that does not wait for missing failure details (see [`Ingestor::with_failure_wait`]).
    pub fn new(store: Arc<S>, notifier: Arc<N>) -> Self {
        Ingestor {
            store,
            notifier,
            failure_wait: FailureWait::NONE,
        }
    }

    pub fn with_failure_wait(mut self, wait: FailureWait) -> Self {
        self.failure_wait = wait;
        self
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Processes one message body. `Ok` means the message is done with (recorded or kept as rejected) and can be
    /// acknowledged; `Err` means it must be delivered again.
    pub async fn ingest(&self, body: &str, ctx: &MessageContext) -> Result<Outcome, RetryableError> {
        let event = match parse_event(body.as_bytes()) {
            Ok(event) => event,
            Err(e) => return self.reject(body, ctx, describe(&e)).await,
        };
        let recorded = match self.store.record(&event).await {
            Ok(r) => r,
            Err(StoreError::Permanent(reason)) => {
                return self
                    .reject(body, ctx, format!("the store refused the event: {reason}"))
                    .await
            }
            Err(e) => return Err(e.into()),
        };
        let sent = self.notify(&event, &recorded, ctx).await?;
        Ok(Outcome::Recorded {
            kind: event.kind(),
            event_id: event.id.clone(),
            new: recorded.new,
            notifications: sent,
        })
    }

    /// Publishes the notifications the event calls for that are not yet published, each exactly once: claim,
    /// publish, mark sent. A claim held by another delivery that is still fresh means "being published right now":
    /// this delivery is retried later rather than acknowledged, so a publisher that fails cannot lose it.
    async fn notify(
        &self,
        event: &DeliveryEvent,
        recorded: &Recorded,
        ctx: &MessageContext,
    ) -> Result<Vec<Notification>, RetryableError> {
        let now = Utc::now();
        let due = self.notifications(event, recorded, ctx).await?;
        let mut sent = Vec::new();
        for n in due {
            match recorded.notified.get(&n.key) {
                Some(Mark::Sent) => continue,
                Some(Mark::Claimed { at, .. }) if *at > now - NOTIFY_LEASE => {
                    return Err(RetryableError::InFlight(n.key.clone()))
                }
                _ => {}
            }
            let claim = Mark::Claimed {
                at: now,
                token: format!("{}.{}", ctx.message_id, now.timestamp_subsec_nanos()),
            };
            if !self
                .store
                .claim_notification(event, &n.key, &claim, now - NOTIFY_LEASE)
                .await?
            {
                return Err(RetryableError::InFlight(n.key.clone()));
            }
            if let Err(e) = self.notifier.publish(&n).await {
                // If the release fails too, the claim expires after the lease and a redelivery takes it over.
                if let Err(release) = self.store.release_notification(event, &n.key, &claim).await {
                    tracing::warn!(key = n.key, error = %release, "could not release a notification claim");
                }
                return Err(e.into());
            }
            self.finish_sent(event, &n.key, &claim).await?;
            sent.push(n);
        }
        Ok(sent)
    }

    /// Marks a published notification sent, trying again a few times at once: the message is already out, and a mark
    /// that never lands leaves the claim to expire, after which a redelivery would publish it a second time. Marking
    /// is idempotent (a mark already there is success), so a retry after a lost answer is harmless.
    async fn finish_sent(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        let mut attempt = 0u32;
        loop {
            match self.store.finish_notification(event, key, claim).await {
                Ok(()) => return Ok(()),
                Err(e @ StoreError::Transient(_)) if attempt + 1 < FINISH_ATTEMPTS => {
                    tracing::warn!(key, error = %e, attempt, "marking a published notification sent failed; again");
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn reject(&self, body: &str, ctx: &MessageContext, reason: String) -> Result<Outcome, RetryableError> {
        let rejected = Rejected::new(&ctx.message_id, ctx.received_at, reason.clone(), body);
        self.store.keep_rejected(&rejected).await?;
        Ok(Outcome::Rejected { reason })
    }

    /// The notifications this event calls for, given its record's history (which includes it).
    async fn notifications(
        &self,
        event: &DeliveryEvent,
        recorded: &Recorded,
        ctx: &MessageContext,
    ) -> Result<Vec<Notification>, RetryableError> {
        let history = &recorded.history;
        let subject = event.subject();
        let before: Vec<DeliveryEvent> = history.iter().filter(|e| e.id != event.id).cloned().collect();
        Ok(match (&subject, subject.layout()) {
            (Subject::Execution(key), _) => {
                let was = ExecutionTimeline::fold(key, &before);
                let mut now = ExecutionTimeline::fold(key, history);
                let previous = if now.state == "SUCCEEDED" && was.state != "SUCCEEDED" {
                    Some(self.store.executions(&key.pipeline_key(), RESTORE_LOOKBACK).await?)
                } else {
                    None
                };
                if let Some(previous) = previous.as_deref() {
                    if restore_undecided(key, &now, previous) && ctx.receive_count <= self.failure_wait.defer_receives {
                        return Err(RetryableError::Deferred(format!(
                            "execution {} succeeded but an earlier execution's end is not recorded yet",
                            key.execution_id
                        )));
                    }
                }
                let due = execution_notifications(key, &was, &now, previous.as_deref());
                let failure_to_tell = due.iter().any(|n| {
                    matches!(
                        n.kind,
                        NotificationKind::ExecutionFailed | NotificationKind::StageFailed
                    ) && !matches!(recorded.notified.get(&n.key), Some(Mark::Sent))
                });
                if !failure_to_tell {
                    return Ok(due);
                }
                let mut was = was;
                let unexplained = |t: &ExecutionTimeline| is_failure(&t.state) && t.failing_action().is_none();
                if unexplained(&now) && !self.failure_wait.settle.is_zero() {
                    tokio::time::sleep(self.failure_wait.settle).await;
                    let fresh = self.store.execution_events(key).await?;
                    let before: Vec<DeliveryEvent> = fresh.iter().filter(|e| e.id != event.id).cloned().collect();
                    was = ExecutionTimeline::fold(key, &before);
                    now = ExecutionTimeline::fold(key, &fresh);
                }
                if unexplained(&now) && ctx.receive_count <= self.failure_wait.defer_receives {
                    return Err(RetryableError::Deferred(format!(
                        "execution {} failed but its failing action is not recorded yet",
                        key.execution_id
                    )));
                }
                // A failure message links the failing build's logs: worth a read or two, only when one is sent.
                link_runs(self.store.as_ref(), &mut now).await?;
                execution_notifications(key, &was, &now, previous.as_deref())
            }
            (Subject::Deployment(_), _) => deployment_notifications(&before, history),
            (Subject::Stack(_), Layout::Series) => stack_notifications(event),
            _ => Vec::new(),
        })
    }
}

/// A rejection reason that says what and where.
fn describe(e: &ParseError) -> String {
    format!("cannot parse the message as an EventBridge event: {e}")
}
