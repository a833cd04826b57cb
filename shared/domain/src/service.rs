//! The ingest service: one delivery message in, recorded exactly once, engineers told what changed.
//!
//! Generic over the ports, so the Lambda handler, the local runner and the offline replay share this code.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::{DeliveryEvent, EventKind};
use crate::keys::{Layout, Subject};
use crate::notify::{deployment_notifications, execution_notifications, stack_notifications, Notification};
use crate::parse::{parse_event, ParseError};
use crate::ports::{EventRecorder, Notifier, Rejected, StoreError, TimelineQueries};
use crate::timeline::ExecutionTimeline;

/// How many of a pipeline's previous executions are read to decide whether a success restored it.
const RESTORE_LOOKBACK: usize = 25;

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
    Notify(#[from] crate::ports::NotifyError),
}

/// Where a message came from, for keeping it when it is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    pub message_id: String,
    pub received_at: DateTime<Utc>,
}

pub struct Ingestor<S, N> {
    store: Arc<S>,
    notifier: Arc<N>,
}

impl<S, N> Clone for Ingestor<S, N> {
    fn clone(&self) -> Self {
        Ingestor {
            store: self.store.clone(),
            notifier: self.notifier.clone(),
        }
    }
}

impl<S, N> Ingestor<S, N>
where
    S: EventRecorder + TimelineQueries,
    N: Notifier,
{
    pub fn new(store: Arc<S>, notifier: Arc<N>) -> Self {
        Ingestor { store, notifier }
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
                return self.reject(body, ctx, format!("the store refused the event: {reason}")).await
            }
            Err(e) => return Err(e.into()),
        };
        let due = self.notifications(&event, &recorded.history).await?;
        let mut sent = Vec::new();
        for n in due.into_iter().filter(|n| !recorded.notified.contains(&n.key)) {
            self.notifier.publish(&n).await?;
            self.store.mark_notified(&event, &n.key).await?;
            sent.push(n);
        }
        Ok(Outcome::Recorded {
            kind: event.kind(),
            event_id: event.id.clone(),
            new: recorded.new,
            notifications: sent,
        })
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
        history: &[DeliveryEvent],
    ) -> Result<Vec<Notification>, StoreError> {
        let subject = event.subject();
        let before: Vec<DeliveryEvent> = history.iter().filter(|e| e.id != event.id).cloned().collect();
        Ok(match (&subject, subject.layout()) {
            (Subject::Execution(key), _) => {
                let was = ExecutionTimeline::fold(key, &before);
                let now = ExecutionTimeline::fold(key, history);
                let previous = if now.state == "SUCCEEDED" && was.state != "SUCCEEDED" {
                    Some(self.store.executions(&key.pipeline_key(), RESTORE_LOOKBACK).await?)
                } else {
                    None
                };
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
