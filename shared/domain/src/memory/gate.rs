//! In-memory adapters of the gate's ports.

use crate::gate::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::gate::policy::{AlarmFact, MinRequests};
use crate::record::ports::StoreError;

// ---------------------------------------------------------------------------------------------------------------
// In memory.

/// Decisions and approvals in memory, with the semantics of the DynamoDB adapter.
#[derive(Debug, Default)]
pub struct MemoryGateStore {
    decisions: Mutex<BTreeMap<String, (GateDecision, bool)>>,
    approvals: Mutex<BTreeMap<ApprovalKey, Vec<ApprovalRecord>>>,
    freezes: Mutex<BTreeMap<String, FreezeRecord>>,
    overrides: Mutex<BTreeMap<ApprovalKey, Vec<OverrideRecord>>>,
    leases: Mutex<BTreeMap<String, DeploymentLease>>,
    writes: Mutex<u64>,
}

impl MemoryGateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every decision recorded, by id.
    pub fn decisions(&self) -> Vec<GateDecision> {
        lock(&self.decisions).values().map(|(d, _)| d.clone()).collect()
    }

    /// Decision writes so far (a duplicate writes nothing).
    pub fn decision_writes(&self) -> u64 {
        *lock(&self.writes)
    }

    pub fn notified(&self, decision_id: &str) -> bool {
        lock(&self.decisions).get(decision_id).is_some_and(|(_, n)| *n)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl GateDecisions for MemoryGateStore {
    async fn record_decision(&self, decision: &GateDecision) -> Result<DecisionWrite, StoreError> {
        let mut decisions = lock(&self.decisions);
        if let Some((stored, notified)) = decisions.get(&decision.job_id) {
            return Ok(DecisionWrite::Duplicate {
                stored: Box::new(stored.clone()),
                notified: *notified,
            });
        }
        decisions.insert(decision.job_id.clone(), (decision.clone(), false));
        *lock(&self.writes) += 1;
        Ok(DecisionWrite::New)
    }

    async fn mark_notified(&self, decision_id: &str) -> Result<(), StoreError> {
        match lock(&self.decisions).get_mut(decision_id) {
            Some(entry) => {
                entry.1 = true;
                Ok(())
            }
            None => Err(StoreError::Permanent(format!("no gate decision {decision_id}"))),
        }
    }

    async fn decision(&self, decision_id: &str) -> Result<Option<GateDecision>, StoreError> {
        Ok(lock(&self.decisions).get(decision_id).map(|(d, _)| d.clone()))
    }
}

#[async_trait]
impl ApprovalRecords for MemoryGateStore {
    async fn record_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        lock(&self.approvals)
            .entry(approval.key.clone())
            .or_default()
            .push(approval.clone());
        Ok(())
    }

    async fn latest_approval(&self, key: &ApprovalKey) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(lock(&self.approvals)
            .get(key)
            .and_then(|all| all.iter().max_by_key(|a| a.at).cloned()))
    }
}

#[async_trait]
impl GateControls for MemoryGateStore {
    async fn active_freezes(&self, scopes: &[String]) -> Result<Vec<FreezeRecord>, StoreError> {
        let freezes = lock(&self.freezes);
        Ok(scopes.iter().filter_map(|s| freezes.get(s).cloned()).collect())
    }

    async fn record_freeze(&self, freeze: &FreezeRecord) -> Result<(), StoreError> {
        lock(&self.freezes).insert(freeze.scope.clone(), freeze.clone());
        Ok(())
    }

    async fn lift_freeze(&self, scope: &str) -> Result<Option<FreezeRecord>, StoreError> {
        Ok(lock(&self.freezes).remove(scope))
    }

    async fn record_override(&self, o: &OverrideRecord) -> Result<(), StoreError> {
        lock(&self.overrides).entry(o.key.clone()).or_default().push(o.clone());
        Ok(())
    }

    async fn latest_override(&self, key: &ApprovalKey) -> Result<Option<OverrideRecord>, StoreError> {
        Ok(lock(&self.overrides)
            .get(key)
            .and_then(|all| all.iter().max_by_key(|o| o.at).cloned()))
    }
}

#[async_trait]
impl DeploymentLeases for MemoryGateStore {
    async fn lease(&self, environment: &str, wave: Option<&str>) -> Result<Option<DeploymentLease>, StoreError> {
        Ok(lock(&self.leases).get(&lease_pk(environment, wave)).cloned())
    }

    async fn claim_lease(
        &self,
        lease: &DeploymentLease,
        replacing: Option<&DeploymentLease>,
    ) -> Result<LeaseClaim, StoreError> {
        let mut leases = lock(&self.leases);
        let pk = lease.pk();
        // The same condition as the DynamoDB adapter's: absent, ours, or exactly the one the caller saw.
        let may = match leases.get(&pk) {
            None => true,
            Some(current) => {
                current.holder == lease.holder
                    || replacing.is_some_and(|r| r.holder == current.holder && r.acquired_at == current.acquired_at)
            }
        };
        if !may {
            let held = leases.get(&pk).cloned().map(Box::new);
            return Ok(held.map(LeaseClaim::HeldBy).unwrap_or(LeaseClaim::Acquired));
        }
        leases.insert(pk, lease.clone());
        Ok(LeaseClaim::Acquired)
    }
}

/// Alarm tags held in memory: each alarm's tags.
#[derive(Debug, Default)]
pub struct MemoryAlarmTags {
    alarms: BTreeMap<String, BTreeMap<String, String>>,
    error: Option<FactError>,
}

impl MemoryAlarmTags {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_alarm(mut self, name: &str, tags: &[(&str, &str)]) -> Self {
        let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.alarms.insert(name.to_string(), tags);
        self
    }

    pub fn failing(mut self, error: &str) -> Self {
        self.error = Some(FactError(error.to_string()));
        self
    }
}

#[async_trait]
impl AlarmsByTags for MemoryAlarmTags {
    async fn alarms_tagged(&self, tags: &BTreeMap<String, String>) -> Result<Vec<String>, FactError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        Ok(self
            .alarms
            .iter()
            .filter(|(_, carried)| tags.iter().all(|(k, v)| carried.get(k) == Some(v)))
            .map(|(name, _)| name.clone())
            .collect())
    }
}

/// Alarm states and metric totals held in memory (or an error to answer with), recording what was asked.
#[derive(Debug, Default)]
pub struct MemoryCloudWatch {
    alarms: Mutex<Option<Result<Vec<AlarmFact>, FactError>>>,
    metric: Mutex<Option<Result<f64, FactError>>>,
    asked: Mutex<Vec<String>>,
}

impl MemoryCloudWatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_alarms(self, alarms: Result<Vec<AlarmFact>, FactError>) -> Self {
        *lock(&self.alarms) = Some(alarms);
        self
    }

    pub fn with_metric(self, total: Result<f64, FactError>) -> Self {
        *lock(&self.metric) = Some(total);
        self
    }

    /// What was asked, in order: `alarms <names>` and `metric <namespace>/<name>`.
    pub fn asked(&self) -> Vec<String> {
        lock(&self.asked).clone()
    }
}

#[async_trait]
impl AlarmStates for MemoryCloudWatch {
    async fn alarm_states(
        &self,
        names: &[String],
        _tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError> {
        lock(&self.asked).push(format!("alarms {}", names.join(",")));
        match &*lock(&self.alarms) {
            Some(Ok(all)) => Ok(all.iter().filter(|a| names.contains(&a.name)).cloned().collect()),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl MetricTotals for MemoryCloudWatch {
    async fn metric_total(
        &self,
        metric: &MinRequests,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Result<f64, FactError> {
        lock(&self.asked).push(format!("metric {}/{}", metric.namespace, metric.metric));
        lock(&self.metric).clone().unwrap_or(Ok(0.0))
    }
}

/// CodePipeline's job API in memory: a context per job, and every answer it was sent.
#[derive(Debug, Default)]
pub struct MemoryPipelineJobs {
    contexts: Mutex<BTreeMap<String, JobContext>>,
    answers: Mutex<Vec<(String, JobAnswer)>>,
}

impl MemoryPipelineJobs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_job(self, job_id: &str, ctx: JobContext) -> Self {
        lock(&self.contexts).insert(job_id.to_string(), ctx);
        self
    }

    /// Every answer sent, in order, with its job id.
    pub fn answers(&self) -> Vec<(String, JobAnswer)> {
        lock(&self.answers).clone()
    }
}

#[async_trait]
impl PipelineJobs for MemoryPipelineJobs {
    async fn job_context(&self, job_id: &str) -> Result<JobContext, JobApiError> {
        lock(&self.contexts)
            .get(job_id)
            .cloned()
            .ok_or_else(|| JobApiError::Permanent(format!("JobNotFoundException: job {job_id}")))
    }

    async fn answer(&self, job_id: &str, answer: &JobAnswer) -> Result<AnswerSent, JobApiError> {
        let mut answers = lock(&self.answers);
        let before = answers.iter().any(|(j, _)| j == job_id);
        answers.push((job_id.to_string(), answer.clone()));
        Ok(if before {
            AnswerSent::AlreadyAnswered
        } else {
            AnswerSent::Sent
        })
    }
}

/// Artifact files in memory, by path.
#[derive(Debug, Default)]
pub struct MemoryPolicySource {
    files: BTreeMap<String, String>,
}

impl MemoryPolicySource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }
}

#[async_trait]
impl PolicySource for MemoryPolicySource {
    async fn read_policy(
        &self,
        artifact: &ArtifactLocation,
        _credentials: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError> {
        candidates
            .iter()
            .find_map(|p| {
                self.files.get(p).map(|text| PolicyText {
                    path: p.clone(),
                    text: text.clone(),
                })
            })
            .ok_or_else(|| {
                FactError(format!(
                    "{} not found in input artifact {}",
                    candidates.join(" or "),
                    artifact.name
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Effective policies.

/// The effective policy of each stage, in memory: the newest record wins.
#[derive(Debug, Default)]
pub struct MemoryEffectivePolicies {
    records: Mutex<BTreeMap<String, crate::gate::approval::EffectivePolicyRecord>>,
}

impl MemoryEffectivePolicies {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl crate::gate::approval::EffectivePolicies for MemoryEffectivePolicies {
    async fn record_effective(&self, r: &crate::gate::approval::EffectivePolicyRecord) -> Result<(), StoreError> {
        let pk = crate::gate::approval::effective_pk(&r.account, &r.region, &r.pipeline, &r.stage);
        self.records.lock().unwrap().insert(pk, r.clone());
        Ok(())
    }

    async fn effective(
        &self,
        key: &ApprovalKey,
    ) -> Result<Option<crate::gate::approval::EffectivePolicyRecord>, StoreError> {
        let pk = crate::gate::approval::effective_pk(&key.account, &key.region, &key.pipeline, &key.stage);
        Ok(self.records.lock().unwrap().get(&pk).cloned())
    }
}
