//! `tollgate approve` / `tollgate reject`: a decision on a gated stage, recorded with the caller's identity.
//!
//! The approver is whoever the AWS credentials say the caller is (STS GetCallerIdentity): never a name taken from a
//! flag or a request body. The gate's policy decides whether that principal may approve; a refusal is explained and
//! recorded in the gate's decision. Every approval and rejection is also appended to the pipeline's audit trail.

use chrono::{DateTime, Utc};
use serde_json::json;
use tollgate_domain::audit::{action, pipeline_scope, AuditLog, NewAuditEntry};
use tollgate_domain::gate::{ApprovalKey, ApprovalRecord, ApprovalRecords};
use tollgate_domain::keys::PipelineKey;
use tollgate_domain::policy::ApprovalDecision;
use tollgate_domain::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("a reason is required: say why with --reason")]
    NoReason,
    #[error("could not record the decision: {0}")]
    Store(#[from] StoreError),
}

/// Records `decision` by `principal_arn` on the stage, then appends it to the pipeline's audit trail.
pub async fn record<A: ApprovalRecords + ?Sized, L: AuditLog + ?Sized>(
    approvals: &A,
    audit: &L,
    key: ApprovalKey,
    principal_arn: &str,
    decision: ApprovalDecision,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<ApprovalRecord, ApproveError> {
    if reason.trim().is_empty() {
        return Err(ApproveError::NoReason);
    }
    let record = ApprovalRecord {
        key: key.clone(),
        principal_arn: principal_arn.to_string(),
        groups: Vec::new(),
        decision,
        reason: Some(reason.trim().to_string()),
        at,
    };
    approvals.record_approval(&record).await?;
    let pipeline = PipelineKey {
        account: key.account.clone(),
        region: key.region.clone(),
        pipeline: key.pipeline.clone(),
    };
    audit
        .append(NewAuditEntry {
            scope: pipeline_scope(&pipeline),
            at,
            actor: principal_arn.to_string(),
            action: match decision {
                ApprovalDecision::Approve => action::APPROVAL_APPROVE,
                ApprovalDecision::Reject => action::APPROVAL_REJECT,
            }
            .to_string(),
            subject: format!("{}/{}", key.execution_id, key.stage),
            detail: json!({ "reason": reason.trim(), "execution_id": key.execution_id, "stage": key.stage }),
        })
        .await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use tollgate_domain::audit::{verify, MemoryAuditLog};
    use tollgate_domain::gate::MemoryGateStore;

    use super::*;

    fn key() -> ApprovalKey {
        ApprovalKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
            execution_id: "e-1".into(),
            stage: "Production".into(),
        }
    }

    #[tokio::test]
    async fn an_approval_is_recorded_with_the_callers_identity_and_audited() {
        let (store, audit) = (MemoryGateStore::default(), MemoryAuditLog::default());
        let who = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
        record(
            &store,
            &audit,
            key(),
            who,
            ApprovalDecision::Approve,
            " looks good ",
            Utc::now(),
        )
        .await
        .unwrap();
        let latest = store.latest_approval(&key()).await.unwrap().unwrap();
        assert_eq!(latest.principal_arn, who);
        assert_eq!(latest.reason.as_deref(), Some("looks good"));
        let scope = "pipeline:111122223333/eu-west-1/checkout-service";
        let entries = audit.entries(scope).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].actor.as_str(), entries[0].action.as_str()),
            (who, "approval.approve")
        );
        let head = audit.head(scope).await.unwrap();
        verify(scope, &entries, head.as_ref()).unwrap();
    }

    #[tokio::test]
    async fn a_decision_without_a_reason_is_refused_and_nothing_is_recorded() {
        let (store, audit) = (MemoryGateStore::default(), MemoryAuditLog::default());
        let err = record(
            &store,
            &audit,
            key(),
            "arn:aws:iam::1:user/bob",
            ApprovalDecision::Reject,
            "  ",
            Utc::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ApproveError::NoReason));
        assert!(store.latest_approval(&key()).await.unwrap().is_none());
    }
}
