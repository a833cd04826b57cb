//! The metrics function's own ports, beyond the domain's [`TimelineQueries`](tollgate_domain::record::ports::TimelineQueries):
//! where a pipeline's configuration comes from ([`PipelineConfigs`]) and where the markers of digests live
//! ([`DigestLog`]), what the automation-health figures are read from ([`AutomationRecords`]), with their adapters over
//! `tollgate-aws` and in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tollgate_aws::{CodePipelineTags, DynamoDbStore};
use tollgate_domain::audit::{AuditEntry, AuditLog};
use tollgate_domain::gate::{GateDecision, GateDecisions};
use tollgate_domain::measure::metrics::PipelineConfig;
use tollgate_domain::record::keys::PipelineKey;
use tollgate_domain::record::ports::{claim_prefix_at, Mark, StoreError};

/// A pipeline's configuration could not be looked up, for a reason worth retrying the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration of pipeline {pipeline} not read: {reason}")]
pub struct ConfigLookupError {
    pub pipeline: String,
    pub reason: String,
}

/// Where a pipeline's team and production stages come from.
#[async_trait]
pub trait PipelineConfigs: Send + Sync {
    /// The pipeline's configuration; the default one when it has none or cannot be read (never an error for that).
    async fn pipeline_config(&self, pipeline: &PipelineKey) -> Result<PipelineConfig, ConfigLookupError>;
}

#[async_trait]
impl PipelineConfigs for CodePipelineTags {
    async fn pipeline_config(&self, pipeline: &PipelineKey) -> Result<PipelineConfig, ConfigLookupError> {
        CodePipelineTags::pipeline_config(self, &pipeline.account, &pipeline.region, &pipeline.pipeline)
            .await
            .map_err(|e| ConfigLookupError {
                pipeline: pipeline.pipeline.clone(),
                reason: e.to_string(),
            })
    }
}

/// Markers of digests (notifications about no single record), with the claim protocol of notification markers.
#[async_trait]
pub trait DigestLog: Send + Sync {
    /// Claims digest `key` for `claim`: succeeds (`Ok(None)`) when there is no marker, or when it is a claim made
    /// before `stale_before`; otherwise `Ok(Some(current))`: sent, or claimed by another run still within its lease.
    async fn claim(&self, key: &str, claim: &Mark, stale_before: DateTime<Utc>) -> Result<Option<Mark>, StoreError>;
    /// Marks `key` sent if `claim` still holds it; false when it was taken over in between.
    async fn finish(&self, key: &str, claim: &Mark) -> Result<bool, StoreError>;
    /// Drops `claim` after a failed publish, so the next attempt can claim at once; false when it no longer held it.
    async fn release(&self, key: &str, claim: &Mark) -> Result<bool, StoreError>;
}

/// Digest markers in the timeline table: one small item per digest key (see docs/table-design.md).
#[async_trait]
impl DigestLog for DynamoDbStore {
    async fn claim(&self, key: &str, claim: &Mark, stale_before: DateTime<Utc>) -> Result<Option<Mark>, StoreError> {
        self.claim_digest(key, claim, stale_before).await
    }

    async fn finish(&self, key: &str, claim: &Mark) -> Result<bool, StoreError> {
        self.finish_digest(key, claim).await
    }

    async fn release(&self, key: &str, claim: &Mark) -> Result<bool, StoreError> {
        self.release_digest(key, claim).await
    }
}

/// Digest markers in memory, with the same semantics, for tests and offline runs.
#[derive(Debug, Default)]
pub struct MemoryDigestLog {
    markers: Mutex<BTreeMap<String, String>>,
}

impl MemoryDigestLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The marker of `key`, if any.
    pub fn marker(&self, key: &str) -> Option<Mark> {
        self.lock().get(key).map(|m| Mark::decode(m))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.markers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl DigestLog for MemoryDigestLog {
    async fn claim(&self, key: &str, claim: &Mark, stale_before: DateTime<Utc>) -> Result<Option<Mark>, StoreError> {
        let mut markers = self.lock();
        if let Some(current) = markers.get(key) {
            let stale = current.starts_with("claim@") && *current < claim_prefix_at(&stale_before);
            if !stale {
                return Ok(Some(Mark::decode(current)));
            }
        }
        markers.insert(key.to_string(), claim.encode());
        Ok(None)
    }

    async fn finish(&self, key: &str, claim: &Mark) -> Result<bool, StoreError> {
        let mut markers = self.lock();
        let ours = markers.get(key) == Some(&claim.encode());
        if ours {
            markers.insert(key.to_string(), Mark::Sent.encode());
        }
        Ok(ours)
    }

    async fn release(&self, key: &str, claim: &Mark) -> Result<bool, StoreError> {
        let mut markers = self.lock();
        let ours = markers.get(key) == Some(&claim.encode());
        if ours {
            markers.remove(key);
        }
        Ok(ours)
    }
}

/// Where the automation-health figures come from: the audit trail (every automated action and every human decision)
/// and the gate decisions its `gate.decision` entries name.
#[async_trait]
pub trait AutomationRecords: Send + Sync {
    /// The entries of `scope` from `since` on (newest first or in any order; a few older ones may come too).
    async fn audit_since(&self, scope: &str, since: DateTime<Utc>) -> Result<Vec<AuditEntry>, StoreError>;
    /// The gate decision `id` (a CodePipeline job id), if it was recorded.
    async fn gate_decision(&self, id: &str) -> Result<Option<GateDecision>, StoreError>;
}

/// The first page of a scope's newest entries; each next read asks for twice as many, so a scope is read in at most
/// twice the entries it has since `since`, whatever its history before.
pub const AUDIT_FIRST_PAGE: usize = 64;
/// The most entries read of one scope in one run: a scope busier than this over the period is measured on its newest
/// entries, with a warning.
pub const AUDIT_MAX_ENTRIES: usize = 65_536;

/// [`AutomationRecords`] over any [`AuditLog`] and [`GateDecisions`]: the DynamoDB adapters in the function, the
/// in-memory ones in tests.
pub struct AuditAndDecisions<L: ?Sized, G: ?Sized> {
    pub audit: Arc<L>,
    pub decisions: Arc<G>,
}

#[async_trait]
impl<L: AuditLog + ?Sized, G: GateDecisions + ?Sized> AutomationRecords for AuditAndDecisions<L, G> {
    async fn audit_since(&self, scope: &str, since: DateTime<Utc>) -> Result<Vec<AuditEntry>, StoreError> {
        // The log is read newest first (a backward query on its sort key): only the period's end of a long history.
        let mut limit = AUDIT_FIRST_PAGE;
        loop {
            let newest = self.audit.recent(scope, limit).await?;
            let complete = newest.len() < limit || newest.last().is_some_and(|e| e.at < since);
            if complete || limit >= AUDIT_MAX_ENTRIES {
                if !complete {
                    tracing::warn!(
                        scope,
                        entries = newest.len(),
                        "audit scope busier than a run reads: newest entries only"
                    );
                }
                return Ok(newest);
            }
            limit = (limit * 2).min(AUDIT_MAX_ENTRIES);
        }
    }

    async fn gate_decision(&self, id: &str) -> Result<Option<GateDecision>, StoreError> {
        self.decisions.decision(id).await
    }
}
