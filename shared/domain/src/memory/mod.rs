//! In-memory adapters of the ports, for unit tests and offline use (`tollgate replay`). They keep the same
//! semantics as the DynamoDB adapter: one record per subject, idempotency by event id, notification markers on the
//! item that recorded the event.

mod approval;
mod audit;
mod gate;
mod rollback;

pub use self::approval::*;
pub use self::audit::*;
pub use self::gate::*;
pub use self::rollback::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::record::event::{DeliveryEvent, EventBody};
use crate::record::keys::*;
use crate::record::ports::*;
use crate::tell::notify::Notification;
use crate::tell::ports::{Notifier, NotifyError};

#[derive(Default)]
struct Aggregate {
    events: BTreeMap<String, DeliveryEvent>,
    notified: BTreeMap<String, String>,
    /// Executions only: the key, and what GSI1 would hold.
    execution: Option<ExecutionKey>,
    started_at: Option<DateTime<Utc>>,
    pipeline_states: BTreeSet<(DateTime<Utc>, String)>,
}

struct SeriesItem {
    event: DeliveryEvent,
    notified: BTreeMap<String, String>,
}

fn decode_marks(notified: &BTreeMap<String, String>) -> BTreeMap<String, Mark> {
    notified.iter().map(|(k, v)| (k.clone(), Mark::decode(v))).collect()
}

#[derive(Default)]
struct Inner {
    aggregates: HashMap<String, Aggregate>,
    /// The execution records of each pipeline (what GSI1 serves), so listing one pipeline does not scan them all.
    by_pipeline: HashMap<PipelineKey, BTreeSet<String>>,
    series: BTreeMap<(String, String), SeriesItem>,
    rejected: Vec<Rejected>,
    writes: u64,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every execution recorded, for offline listings.
    pub fn execution_keys(&self) -> Vec<ExecutionKey> {
        let inner = self.lock();
        let mut keys: Vec<ExecutionKey> = inner.aggregates.values().filter_map(|a| a.execution.clone()).collect();
        keys.sort();
        keys
    }

    /// Successful writes so far (records, markers, rejections).
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }
}

#[async_trait]
impl EventRecorder for MemoryStore {
    async fn record(&self, event: &DeliveryEvent) -> Result<Recorded, StoreError> {
        let subject = event.subject();
        let mut inner = self.lock();
        match subject.layout() {
            Layout::Aggregate => {
                let pk = subject.pk();
                if let Subject::Execution(key) = &subject {
                    inner
                        .by_pipeline
                        .entry(key.pipeline_key())
                        .or_default()
                        .insert(pk.clone());
                }
                let agg = inner.aggregates.entry(pk).or_default();
                let new = !agg.events.contains_key(&event.id);
                if new {
                    agg.events.insert(event.id.clone(), event.clone());
                    if let EventBody::PipelineExecution(p) = &event.body {
                        agg.pipeline_states.insert((event.time, p.state.clone()));
                        if p.state == "STARTED" {
                            agg.started_at = Some(event.time);
                        }
                    }
                    if let Subject::Execution(key) = &subject {
                        if agg.started_at.is_none() {
                            agg.started_at = Some(event.time);
                        }
                        if agg.execution.is_none() {
                            agg.execution = Some(key.clone());
                        }
                    }
                }
                let recorded = Recorded {
                    new,
                    history: agg.events.values().cloned().collect(),
                    notified: decode_marks(&agg.notified),
                };
                if new {
                    inner.writes += 1;
                }
                Ok(recorded)
            }
            Layout::Series => {
                let key = (subject.pk(), series_sk(&event.time, &event.id));
                let new = !inner.series.contains_key(&key);
                if new {
                    inner.writes += 1;
                }
                let item = inner.series.entry(key).or_insert_with(|| SeriesItem {
                    event: event.clone(),
                    notified: BTreeMap::new(),
                });
                Ok(Recorded {
                    new,
                    history: vec![item.event.clone()],
                    notified: decode_marks(&item.notified),
                })
            }
        }
    }

    async fn claim_notification(
        &self,
        event: &DeliveryEvent,
        key: &str,
        claim: &Mark,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update_marker(event, |markers| {
            let free = match markers.get(key) {
                None => true,
                Some(current) => {
                    current.starts_with("claim@") && *current < crate::record::ports::claim_prefix_at(&stale_before)
                }
            };
            if free {
                markers.insert(key.to_string(), claim.encode());
            }
            free
        })
    }

    async fn finish_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        self.update_marker(event, |markers| {
            let ours = markers.get(key) == Some(&claim.encode());
            if ours {
                markers.insert(key.to_string(), Mark::Sent.encode());
            }
            ours
        })
        .map(|_| ())
    }

    async fn release_notification(&self, event: &DeliveryEvent, key: &str, claim: &Mark) -> Result<(), StoreError> {
        self.update_marker(event, |markers| {
            let ours = markers.get(key) == Some(&claim.encode());
            if ours {
                markers.remove(key);
            }
            ours
        })
        .map(|_| ())
    }

    async fn keep_rejected(&self, rejected: &Rejected) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.rejected.iter().any(|r| r.message_id == rejected.message_id) {
            inner.rejected.push(rejected.clone());
            inner.writes += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl TimelineQueries for MemoryStore {
    async fn execution_events(&self, key: &ExecutionKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        Ok(self.aggregate_events(&execution_pk(key)))
    }

    async fn build_events(&self, key: &BuildKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        Ok(self.aggregate_events(&Subject::Build(key.clone()).pk()))
    }

    async fn deployment_events(&self, key: &DeploymentKey) -> Result<Vec<DeliveryEvent>, StoreError> {
        Ok(self.aggregate_events(&deployment_pk(key)))
    }

    async fn stack_events(
        &self,
        key: &StackKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        let pk = Subject::Stack(key.clone()).pk();
        let inner = self.lock();
        Ok(inner
            .series
            .range((pk.clone(), String::new())..)
            .take_while(|((p, _), _)| *p == pk)
            .map(|(_, item)| item.event.clone())
            .filter(|e| e.time >= from && e.time <= to)
            .collect())
    }

    async fn executions(&self, pipeline: &PipelineKey, limit: usize) -> Result<Vec<ExecutionSummary>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<ExecutionSummary> = inner
            .by_pipeline
            .get(pipeline)
            .into_iter()
            .flatten()
            .filter_map(|pk| {
                let agg = inner.aggregates.get(pk)?;
                Some(ExecutionSummary {
                    key: agg.execution.clone()?,
                    started_at: agg.started_at?,
                    pipeline_states: agg.pipeline_states.iter().cloned().collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (b.started_at, &b.key.execution_id).cmp(&(a.started_at, &a.key.execution_id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn rejected(&self, day: NaiveDate, limit: usize) -> Result<Vec<Rejected>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<Rejected> = inner
            .rejected
            .iter()
            .filter(|r| r.received_at.date_naive() == day)
            .cloned()
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        out.truncate(limit);
        Ok(out)
    }

    async fn executions_started_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ExecutionKey>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<(DateTime<Utc>, ExecutionKey)> = inner
            .aggregates
            .values()
            .filter_map(|agg| {
                let (key, started_at) = (agg.execution.clone()?, agg.started_at?);
                (from <= started_at && started_at < to).then_some((started_at, key))
            })
            .collect();
        out.sort();
        Ok(out.into_iter().map(|(_, key)| key).collect())
    }
}

impl MemoryStore {
    /// Applies a change to the markers of the item that recorded `event`; counts a write when `change` says it wrote.
    fn update_marker(
        &self,
        event: &DeliveryEvent,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> bool,
    ) -> Result<bool, StoreError> {
        let subject = event.subject();
        let mut inner = self.lock();
        let markers = match subject.layout() {
            Layout::Aggregate => inner.aggregates.get_mut(&subject.pk()).map(|a| &mut a.notified),
            Layout::Series => inner
                .series
                .get_mut(&(subject.pk(), series_sk(&event.time, &event.id)))
                .map(|i| &mut i.notified),
        };
        let Some(markers) = markers else {
            return Err(StoreError::Permanent(format!(
                "no record of event {} to mark",
                event.id
            )));
        };
        let wrote = change(markers);
        if wrote {
            inner.writes += 1;
        }
        Ok(wrote)
    }

    fn aggregate_events(&self, pk: &str) -> Vec<DeliveryEvent> {
        self.lock()
            .aggregates
            .get(pk)
            .map(|a| a.events.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// A notifier that keeps what it was asked to publish; it can be told to fail the next N publishes.
#[derive(Default)]
pub struct MemoryNotifier {
    sent: Mutex<Vec<Notification>>,
    fail_next: Mutex<u32>,
}

impl MemoryNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn fail_next(&self, n: u32) {
        *self.fail_next.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        {
            let mut fail = self.fail_next.lock().unwrap_or_else(|p| p.into_inner());
            if *fail > 0 {
                *fail -= 1;
                return Err(NotifyError("injected failure".into()));
            }
        }
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notification.clone());
        Ok(())
    }
}
