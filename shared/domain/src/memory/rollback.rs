//! In-memory adapters of the guard's ports.

use crate::rollback::guard::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::gate::{alarm_key, AlarmWatches, WatchedStage};
use crate::record::ports::StoreError;

// ---------------------------------------------------------------------------------------------------------------
// In-memory adapters, for tests and offline use.

#[derive(Debug, Clone)]
struct MemoryClaim {
    record: RollbackRecord,
    token: String,
    claimed_at: DateTime<Utc>,
    done: bool,
    released: bool,
}

/// [`RollbackStore`] in memory, with the DynamoDB adapter's semantics.
#[derive(Debug, Default)]
pub struct MemoryRollbackStore {
    items: Mutex<BTreeMap<String, MemoryClaim>>,
}

impl MemoryRollbackStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MemoryClaim>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every record, finished or not.
    pub fn records(&self) -> Vec<RollbackRecord> {
        self.lock().values().map(|c| c.record.clone()).collect()
    }
}

#[async_trait]
impl RollbackStore for MemoryRollbackStore {
    async fn claim(
        &self,
        record: &RollbackRecord,
        token: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut items = self.lock();
        let previous = match items.get(&record.id) {
            Some(existing) if existing.done => return Ok(Claim::Done(Box::new(existing.record.clone()))),
            Some(existing) if !existing.released && existing.claimed_at >= stale_before => return Ok(Claim::Held),
            Some(existing) => Some(Box::new(existing.record.clone())),
            None => None,
        };
        items.insert(
            record.id.clone(),
            MemoryClaim {
                record: record.clone(),
                token: token.to_string(),
                claimed_at: now,
                done: false,
                released: false,
            },
        );
        Ok(Claim::Won { previous })
    }

    async fn finish(&self, record: &RollbackRecord, token: &str) -> Result<bool, StoreError> {
        let mut items = self.lock();
        match items.get_mut(&record.id) {
            Some(c) if c.token == token && !c.done && !c.released => {
                c.record = record.clone();
                c.done = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, record: &RollbackRecord, token: &str) -> Result<(), StoreError> {
        let mut items = self.lock();
        if let Some(c) = items
            .get_mut(&record.id)
            .filter(|c| c.token == token && !c.done && !c.released)
        {
            c.record = record.clone();
            c.released = true;
        }
        Ok(())
    }

    async fn mark(&self, id: &str, step: Step) -> Result<(), StoreError> {
        if let Some(c) = self.lock().get_mut(id) {
            match step {
                Step::Audited => c.record.audited = true,
                Step::Notified => c.record.notified = true,
            }
        }
        Ok(())
    }

    async fn mark_restored(&self, alarm: &str, ok_at: DateTime<Utc>) -> Result<Vec<RollbackRecord>, StoreError> {
        let mut restored = Vec::new();
        for c in self.lock().values_mut() {
            let r = &mut c.record;
            if c.done
                && r.alarm == alarm
                && r.restored_at.is_none()
                && r.outcome == Some(RollbackOutcome::RolledBack)
                && r.acted_at.is_some_and(|a| a <= ok_at)
            {
                r.restored_at = Some(ok_at);
                restored.push(r.clone());
            }
        }
        Ok(restored)
    }

    async fn rollbacks_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RollbackRecord>, StoreError> {
        let mut out: Vec<RollbackRecord> = self
            .lock()
            .values()
            .filter(|c| c.done && c.record.decided_at >= from && c.record.decided_at < to)
            .map(|c| c.record.clone())
            .collect();
        out.sort_by(|a, b| (a.decided_at, &a.id).cmp(&(b.decided_at, &b.id)));
        Ok(out)
    }
}

/// [`TargetDiscovery`] over a fixed list of candidates per alarm name.
#[derive(Debug, Default)]
pub struct MemoryDiscovery {
    targets: Mutex<BTreeMap<String, Vec<Candidate>>>,
}

impl MemoryDiscovery {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn protect(&self, alarm_name: &str, candidate: Candidate) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(alarm_name.to_string())
            .or_default()
            .push(candidate);
    }
}

#[async_trait]
impl TargetDiscovery for MemoryDiscovery {
    async fn candidates(&self, alarm: &AlarmSignal, _since: DateTime<Utc>) -> Result<Vec<Candidate>, GuardApiError> {
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        Ok(targets
            .get(&alarm.alarm_name)
            .into_iter()
            .flatten()
            .filter(|c| c.account == alarm.account && c.region == alarm.region)
            .cloned()
            .collect())
    }
}

/// [`AlarmWatches`] in memory: per alarm key, each stage's `until`; [`MemoryAlarmWatches::failing`] refuses writes.
#[derive(Debug, Default)]
pub struct MemoryAlarmWatches {
    watches: Mutex<BTreeMap<String, BTreeMap<WatchedStage, DateTime<Utc>>>>,
    failing: Option<String>,
}

impl MemoryAlarmWatches {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every write fails with `error` (a store that is down).
    pub fn failing(error: &str) -> Self {
        MemoryAlarmWatches {
            failing: Some(error.to_string()),
            ..Self::default()
        }
    }

    /// Every watch: (`<account>/<region>/<alarm>`, stage, until), in key order.
    pub fn all(&self) -> Vec<(String, WatchedStage, DateTime<Utc>)> {
        let watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        watches
            .iter()
            .flat_map(|(k, stages)| stages.iter().map(|(s, u)| (k.clone(), s.clone(), *u)))
            .collect()
    }
}

#[async_trait]
impl AlarmWatches for MemoryAlarmWatches {
    async fn watch(
        &self,
        account: &str,
        region: &str,
        alarms: &[String],
        stage: &WatchedStage,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(e) = &self.failing {
            return Err(StoreError::Transient(e.clone()));
        }
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for alarm in alarms {
            watches
                .entry(alarm_key(account, region, alarm))
                .or_default()
                .insert(stage.clone(), until);
        }
        Ok(())
    }

    async fn watchers(
        &self,
        account: &str,
        region: &str,
        alarm_name: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<WatchedStage>, StoreError> {
        let watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        Ok(watches
            .get(&alarm_key(account, region, alarm_name))
            .into_iter()
            .flatten()
            .filter(|(_, until)| **until > at)
            .map(|(s, _)| s.clone())
            .collect())
    }
}

/// [`RollbackActions`] that records each request and answers from a script (accepted unless told otherwise).
#[derive(Debug, Default)]
pub struct MemoryActions {
    sent: Mutex<Vec<RollbackAction>>,
    answers: Mutex<Vec<Result<ActOutcome, GuardApiError>>>,
}

impl MemoryActions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next requests get these answers, in order.
    pub fn answer_next(&self, answers: Vec<Result<ActOutcome, GuardApiError>>) {
        let mut queue = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend(answers);
    }

    pub fn sent(&self) -> Vec<RollbackAction> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl RollbackActions for MemoryActions {
    async fn execute(
        &self,
        _account: &str,
        _region: &str,
        action: &RollbackAction,
    ) -> Result<ActOutcome, GuardApiError> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(action.clone());
        let mut queue = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_empty() {
            Ok(ActOutcome::Accepted {
                detail: format!("{action} accepted"),
            })
        } else {
            queue.remove(0)
        }
    }
}
