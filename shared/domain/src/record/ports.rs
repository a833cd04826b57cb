//! Ports: what the domain needs from the outside world, as narrow traits. Adapters implement them over DynamoDB and
//! SNS (`tollgate-aws`) and in memory (the `memory` module).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::event::DeliveryEvent;
use crate::record::keys::{BuildKey, DeploymentKey, ExecutionKey, PipelineKey, StackKey};
use crate::record::timeline::{resolve_states, Resolved};

/// A store failure, split by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Throttling, timeouts, 5xx, lost connections: try again later.
    #[error("store temporarily unavailable: {0}")]
    Transient(String),
    /// The request itself cannot succeed (validation, item too large, missing table): retrying will not help.
    #[error("store refused the request: {0}")]
    Permanent(String),
}

/// What recording one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// False when the event had been recorded before (a duplicate delivery).
    pub new: bool,
    /// Every event of the event's record after the write, this one included. For series records (stacks, alarms,
    /// instances), just this event.
    pub history: Vec<DeliveryEvent>,
    /// Notifications of this record already published or being published, by key.
    pub notified: BTreeMap<String, Mark>,
}

/// Where a notification stands. A publisher first claims it, publishes, then marks it sent; a claim that is older
/// than the lease is considered abandoned (its holder died) and may be taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Claimed { at: DateTime<Utc>, token: String },
    Sent,
}

impl Mark {
    /// The stored form: `sent` or `claim@<RFC 3339 seconds>@<token>`. Claims sort by time, so "older than" is a
    /// string comparison a conditional write can make.
    pub fn encode(&self) -> String {
        match self {
            Mark::Sent => "sent".into(),
            Mark::Claimed { at, token } => format!("{}{token}", claim_prefix_at(at)),
        }
    }

    pub fn decode(text: &str) -> Mark {
        let claimed = text.strip_prefix("claim@").and_then(|rest| {
            let (at, token) = rest.split_once('@')?;
            let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
            Some(Mark::Claimed {
                at,
                token: token.to_string(),
            })
        });
        // Anything that is not a readable claim counts as sent: never publish twice because of an odd marker.
        claimed.unwrap_or(Mark::Sent)
    }
}

/// `claim@<time>@`: the part of an encoded claim up to its token.
pub fn claim_prefix_at(at: &DateTime<Utc>) -> String {
    format!("claim@{}@", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A message that could not be processed, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The transport's id of the message (the SQS message id), or a digest of the body.
    pub message_id: String,
    pub received_at: DateTime<Utc>,
    pub reason: String,
    /// The body as received, cut to [`Rejected::MAX_BODY_BYTES`].
    pub body: String,
}

impl Rejected {
    pub const MAX_BODY_BYTES: usize = 300 * 1024;

    pub fn new(message_id: &str, received_at: DateTime<Utc>, reason: String, body: &str) -> Rejected {
        let mut end = body.len().min(Self::MAX_BODY_BYTES);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        Rejected {
            message_id: message_id.to_string(),
            received_at,
            reason,
            body: body[..end].to_string(),
        }
    }
}

/// Writes events exactly once.
#[async_trait]
pub trait EventRecorder: Send + Sync {
    /// Records the event with one conditional write keyed by its id; a duplicate changes nothing.
    async fn record(&self, event: &DeliveryEvent) -> Result<Recorded, StoreError>;
    /// Claims the right to publish notification `key` of the event's record: succeeds when there is no marker, or
    /// when the marker is a claim made before `stale_before`. Returns false when someone else holds it.
    async fn claim_notification(
        &self,
        event: &DeliveryEvent,
        key: &str,
        claim: &Mark,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Marks the notification sent, if `claim` still holds it.
    async fn finish_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError>;
    /// Drops `claim` after a failed publish, so a redelivery can claim again at once.
    async fn release_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError>;
    /// Keeps a message that cannot be processed, with the reason.
    async fn keep_rejected(&self, rejected: &Rejected) -> Result<(), StoreError>;
}

/// One execution of a pipeline as listed by time (no events, only its pipeline-level states).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSummary {
    pub key: ExecutionKey,
    pub started_at: DateTime<Utc>,
    pub pipeline_states: Vec<(DateTime<Utc>, String)>,
}

impl ExecutionSummary {
    pub fn resolved(&self) -> Resolved {
        resolve_states(&self.pipeline_states)
    }
}

/// Reads what was recorded.
#[async_trait]
pub trait TimelineQueries: Send + Sync {
    async fn execution_events(&self, key: &ExecutionKey) -> Result<Vec<DeliveryEvent>, StoreError>;
    async fn build_events(&self, key: &BuildKey) -> Result<Vec<DeliveryEvent>, StoreError>;
    async fn deployment_events(&self, key: &DeploymentKey) -> Result<Vec<DeliveryEvent>, StoreError>;
    /// A stack's events between two times, oldest first.
    async fn stack_events(
        &self,
        key: &StackKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeliveryEvent>, StoreError>;
    /// A pipeline's executions, newest first, at most `limit`.
    async fn executions(&self, pipeline: &PipelineKey, limit: usize) -> Result<Vec<ExecutionSummary>, StoreError>;
    /// Messages kept because they could not be processed, newest first, at most `limit`, received on `day`.
    async fn rejected(&self, day: chrono::NaiveDate, limit: usize) -> Result<Vec<Rejected>, StoreError>;
    /// Every execution, of every pipeline, whose start (as in [`ExecutionSummary::started_at`]: the pipeline's
    /// STARTED time, else its first recorded event's) is in `[from, to)`; oldest first, ties by key.
    async fn executions_started_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ExecutionKey>, StoreError>;
}
