//! Shared by the integration tests: the demo story (events/story/failed-deploy-and-fix.json) as delivery messages,
//! the keys of its two executions, and an ingestor over the in-memory ports.
//!
//! Each test file uses a different part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;
use tollgate_domain::ingest::service::{Ingestor, MessageContext};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::event::{DeliveryEvent, EventBody};
use tollgate_domain::record::keys::{BuildKey, DeploymentKey, ExecutionKey, PipelineKey, StackKey};
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{
    EventRecorder, ExecutionSummary, Mark, Recorded, Rejected, StoreError, TimelineQueries,
};
use tollgate_domain::tell::notify::Notification;
use tollgate_domain::tell::ports::{Notifier, NotifyError};

pub const STORY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../events/story/failed-deploy-and-fix.json"
));

pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "eu-west-1";
pub const PIPELINE: &str = "checkout-service";
/// Execution A: fails in Production (deployment d-RAPGQL0KO, alarm checkout-service-5xx).
pub const EXEC_A: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";
/// Execution B: the fix, succeeds.
pub const EXEC_B: &str = "ab085ce4-dd66-42b3-88e3-098729751027";

pub type MemoryIngestor = Ingestor<MemoryStore, MemoryNotifier>;

/// The story's events, in the file's (time) order, one JSON document each, as a queue would deliver them.
pub fn story_values() -> Vec<Value> {
    match serde_json::from_str(STORY).expect("the story is valid JSON") {
        Value::Array(events) => events,
        other => panic!("the story must be a JSON array, found {other}"),
    }
}

pub fn story_bodies() -> Vec<String> {
    story_values().iter().map(Value::to_string).collect()
}

/// The story's events, parsed.
pub fn story_events() -> Vec<DeliveryEvent> {
    story_bodies()
        .iter()
        .map(|b| parse_event(b.as_bytes()).expect("every story event parses"))
        .collect()
}

pub fn exec_key(execution_id: &str) -> ExecutionKey {
    ExecutionKey {
        account: ACCOUNT.into(),
        region: REGION.into(),
        pipeline: PIPELINE.into(),
        execution_id: execution_id.into(),
    }
}

/// The time of the story's pipeline-level event of `execution_id` in `state`.
pub fn pipeline_event_time(execution_id: &str, state: &str) -> DateTime<Utc> {
    story_events()
        .into_iter()
        .find_map(|e| match &e.body {
            EventBody::PipelineExecution(p) if p.execution_id == execution_id && p.state == state => Some(e.time),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the story has no {state} event for execution {execution_id}"))
}

/// Index, in the story, of the first event matching `pred`.
pub fn story_index(pred: impl Fn(&DeliveryEvent) -> bool) -> usize {
    story_events()
        .iter()
        .position(pred)
        .expect("the story has such an event")
}

pub fn ctx(message_id: impl Into<String>) -> MessageContext {
    MessageContext::new(message_id, Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap())
}

pub fn ingestor() -> (MemoryIngestor, Arc<MemoryStore>, Arc<MemoryNotifier>) {
    let store = Arc::new(MemoryStore::new());
    let notifier = Arc::new(MemoryNotifier::new());
    (Ingestor::new(store.clone(), notifier.clone()), store, notifier)
}

/// The notification markers of the record of the event in `body`, read by recording it again (a duplicate, which
/// writes nothing).
pub async fn marks(store: &impl EventRecorder, body: &str) -> BTreeMap<String, Mark> {
    let event = parse_event(body.as_bytes()).expect("the body parses");
    let recorded = store.record(&event).await.expect("the store answers");
    assert!(!recorded.new, "event {} must have been recorded already", event.id);
    recorded.notified
}

/// A notifier that takes its time: it sleeps before publishing, so that a concurrent delivery runs meanwhile.
#[derive(Default)]
pub struct SlowNotifier {
    pub inner: MemoryNotifier,
}

impl SlowNotifier {
    pub const DELAY: Duration = Duration::from_millis(10);
}

#[async_trait]
impl Notifier for SlowNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        tokio::time::sleep(Self::DELAY).await;
        self.inner.publish(notification).await
    }
}

/// The in-memory store, counting the claims it was asked for and refused. With `yield_after_record`, it lets other
/// tasks run once an event is recorded, so two concurrent deliveries of an event both record it (and see no
/// marker) before either claims its notification: only the claim itself can then tell them apart.
#[derive(Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub yield_after_record: bool,
    claims: AtomicUsize,
    refused: AtomicUsize,
    /// Marking a notification sent fails this many more times (a throttled or lost write).
    pub failing_finishes: AtomicUsize,
    finishes: AtomicUsize,
}

impl CountingStore {
    pub fn yielding() -> Self {
        CountingStore {
            yield_after_record: true,
            ..Self::default()
        }
    }

    /// Marks asked for (including failed ones).
    pub fn finishes(&self) -> usize {
        self.finishes.load(Ordering::SeqCst)
    }

    /// (claims asked for, claims refused).
    pub fn claims(&self) -> (usize, usize) {
        (self.claims.load(Ordering::SeqCst), self.refused.load(Ordering::SeqCst))
    }
}

#[async_trait]
impl EventRecorder for CountingStore {
    async fn record(&self, event: &DeliveryEvent) -> Result<Recorded, StoreError> {
        let recorded = self.inner.record(event).await;
        if self.yield_after_record {
            tokio::task::yield_now().await;
        }
        recorded
    }

    async fn claim_notification(
        &self,
        event: &DeliveryEvent,
        key: &str,
        claim: &Mark,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        let claimed = self.inner.claim_notification(event, key, claim, stale_before).await?;
        if !claimed {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        Ok(claimed)
    }

    async fn finish_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .failing_finishes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::Transient("throttled marking the notification sent".into()));
        }
        self.inner.finish_notification(event, key, claim).await
    }

    async fn release_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        self.inner.release_notification(event, key, claim).await
    }

    async fn keep_rejected(&self, rejected: &Rejected) -> Result<(), StoreError> {
        self.inner.keep_rejected(rejected).await
    }
}

#[async_trait]
impl TimelineQueries for CountingStore {
    async fn execution_events(&self, key: &ExecutionKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.execution_events(key).await
    }

    async fn build_events(&self, key: &BuildKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.build_events(key).await
    }

    async fn deployment_events(&self, key: &DeploymentKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.deployment_events(key).await
    }

    async fn stack_events(
        &self,
        key: &StackKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        self.inner.stack_events(key, from, to).await
    }

    async fn executions(&self, pipeline: &PipelineKey, limit: usize) -> Result<Vec<ExecutionSummary>, StoreError> {
        self.inner.executions(pipeline, limit).await
    }

    async fn rejected(&self, day: NaiveDate, limit: usize) -> Result<Vec<Rejected>, StoreError> {
        self.inner.rejected(day, limit).await
    }

    async fn executions_started_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ExecutionKey>, StoreError> {
        self.inner.executions_started_between(from, to).await
    }
}

pub type RacingIngestor = Ingestor<CountingStore, SlowNotifier>;

/// An ingestor whose publishes are slow, over `store`.
pub fn racing_ingestor(store: CountingStore) -> (RacingIngestor, Arc<CountingStore>, Arc<SlowNotifier>) {
    let store = Arc::new(store);
    let notifier = Arc::new(SlowNotifier::default());
    (Ingestor::new(store.clone(), notifier.clone()), store, notifier)
}
