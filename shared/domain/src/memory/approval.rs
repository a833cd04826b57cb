//! In-memory adapters of the approval ports.

use crate::gate::approval::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::record::ports::StoreError;

// ---------------------------------------------------------------------------------------------------------------
// In memory.

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Identities, replay digests and manual approvals in memory, with the DynamoDB adapters' semantics.
#[derive(Debug, Default)]
pub struct MemoryChatStore {
    identities: Mutex<BTreeMap<ChatUser, LinkedIdentity>>,
    seen: Mutex<BTreeMap<String, DateTime<Utc>>>,
    manual: Mutex<BTreeMap<(String, String), ManualApproval>>,
}

impl MemoryChatStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn manual_approvals(&self) -> Vec<ManualApproval> {
        lock(&self.manual).values().cloned().collect()
    }
}

fn manual_key(r: &ManualApproval) -> (String, String) {
    (
        manual_pk(&r.account, &r.region, &r.pipeline, &r.stage),
        r.token.digest(),
    )
}

#[async_trait]
impl ChatIdentities for MemoryChatStore {
    async fn identity(&self, user: &ChatUser) -> Result<Option<LinkedIdentity>, StoreError> {
        Ok(lock(&self.identities).get(user).cloned())
    }
    async fn link(&self, identity: &LinkedIdentity) -> Result<(), StoreError> {
        lock(&self.identities).insert(identity.chat_user.clone(), identity.clone());
        Ok(())
    }
    async fn unlink(&self, user: &ChatUser) -> Result<Option<LinkedIdentity>, StoreError> {
        Ok(lock(&self.identities).remove(user))
    }
}

#[async_trait]
impl ReplayGuard for MemoryChatStore {
    async fn first_sighting(&self, signature_digest: &str, keep_until: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut seen = lock(&self.seen);
        if seen.contains_key(signature_digest) {
            return Ok(false);
        }
        seen.insert(signature_digest.to_string(), keep_until);
        Ok(true)
    }
}

#[async_trait]
impl ManualApprovals for MemoryChatStore {
    async fn record_request(&self, request: &ManualApproval) -> Result<ManualApproval, StoreError> {
        // As in the table: the token's digest only, never the token.
        let stored = ManualApproval {
            token: request.token.digest_only(),
            ..request.clone()
        };
        Ok(lock(&self.manual).entry(manual_key(request)).or_insert(stored).clone())
    }
    async fn mark_notified(&self, request: &ManualApproval) -> Result<(), StoreError> {
        match lock(&self.manual).get_mut(&manual_key(request)) {
            Some(r) => {
                r.notified = true;
                Ok(())
            }
            None => Err(StoreError::Permanent("no such manual approval".into())),
        }
    }
    async fn requests(
        &self,
        account: &str,
        region: &str,
        pipeline: &str,
        stage: &str,
    ) -> Result<Vec<ManualApproval>, StoreError> {
        let pk = manual_pk(account, region, pipeline, stage);
        let mut v: Vec<ManualApproval> = lock(&self.manual)
            .iter()
            .filter(|((p, _), _)| *p == pk)
            .map(|(_, r)| r.clone())
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
        Ok(v)
    }
    async fn claim(&self, request: &ManualApproval, outcome: &ManualOutcome) -> Result<Claim, StoreError> {
        let mut all = lock(&self.manual);
        let r = all
            .get_mut(&manual_key(request))
            .ok_or_else(|| StoreError::Permanent("no such manual approval".into()))?;
        match &r.outcome {
            Some(o) => Ok(Claim::AlreadyDecided(o.clone())),
            None => {
                r.outcome = Some(outcome.clone());
                Ok(Claim::Claimed)
            }
        }
    }
    async fn settle(&self, request: &ManualApproval, outcome: &ManualOutcome) -> Result<(), StoreError> {
        if let Some(r) = lock(&self.manual).get_mut(&manual_key(request)) {
            r.outcome = Some(outcome.clone());
        }
        Ok(())
    }
    async fn release(&self, request: &ManualApproval) -> Result<(), StoreError> {
        if let Some(r) = lock(&self.manual).get_mut(&manual_key(request)) {
            r.outcome = None;
        }
        Ok(())
    }
}

/// CodePipeline's approval API in memory: records every call and answers with queued results (default: accepted).
#[derive(Debug, Default)]
pub struct MemoryApprovalResults {
    calls: Mutex<Vec<ApprovalResultRequest>>,
    answers: Mutex<Vec<Result<(), ApprovalResultError>>>,
}

impl MemoryApprovalResults {
    pub fn new() -> Self {
        Self::default()
    }
    /// The next call gets `answer`.
    pub fn answer_next(&self, answer: Result<(), ApprovalResultError>) {
        lock(&self.answers).push(answer);
    }
    pub fn calls(&self) -> Vec<ApprovalResultRequest> {
        lock(&self.calls).clone()
    }
}

#[async_trait]
impl ApprovalResults for MemoryApprovalResults {
    async fn put_approval_result(&self, request: &ApprovalResultRequest) -> Result<(), ApprovalResultError> {
        lock(&self.calls).push(request.clone());
        let mut answers = lock(&self.answers);
        if answers.is_empty() {
            Ok(())
        } else {
            answers.remove(0)
        }
    }
}

/// CodePipeline's pipeline state in memory: the approval actions waiting, with their tokens.
#[derive(Debug, Default)]
pub struct MemoryPipelineApprovals {
    waiting: Mutex<BTreeMap<(String, String, String), PendingApproval>>,
    reads: Mutex<usize>,
}

impl MemoryPipelineApprovals {
    pub fn new() -> Self {
        Self::default()
    }
    /// `pipeline` / `stage` / `action` now waits for `token` in `execution_id`.
    pub fn wait(&self, pipeline: &str, stage: &str, action: &str, execution_id: &str, token: &str) {
        lock(&self.waiting).insert(
            (pipeline.into(), stage.into(), action.into()),
            PendingApproval {
                execution_id: Some(execution_id.into()),
                token: ApprovalToken::new(token),
            },
        );
    }
    /// The action is no longer waiting (decided, expired).
    pub fn done(&self, pipeline: &str, stage: &str, action: &str) {
        lock(&self.waiting).remove(&(pipeline.into(), stage.into(), action.into()));
    }
    pub fn reads(&self) -> usize {
        *lock(&self.reads)
    }
}

#[async_trait]
impl PipelineApprovals for MemoryPipelineApprovals {
    async fn pending(&self, pipeline: &str, stage: &str, action: &str) -> Result<Option<PendingApproval>, StoreError> {
        *lock(&self.reads) += 1;
        Ok(lock(&self.waiting)
            .get(&(pipeline.into(), stage.into(), action.into()))
            .cloned())
    }
}
