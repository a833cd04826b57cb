//! `tollgate approve` / `tollgate reject`: a decision on a gated stage, recorded with the caller's identity; and
//! `tollgate identity link|unlink`: which IAM principal a chat user decides as on the chat approval endpoint.
//!
//! The approver is whoever the AWS credentials say the caller is (STS GetCallerIdentity): never a name taken from a
//! flag or a request body. The gate's policy decides whether that principal may approve; a refusal is explained and
//! recorded in the gate's decision. When the stage has a pending CodePipeline Manual approval for the execution, the
//! decision is sent to CodePipeline with PutApprovalResult (once: a repeated decision sends nothing), with the
//! caller's own credentials, so IAM decides who may. Every decision is appended to the pipeline's audit trail
//! (docs/approvals.md).

use chrono::{DateTime, Utc};
use serde_json::json;
use tollgate_domain::audit::{AuditLog, NewAuditEntry, GLOBAL_SCOPE};
use tollgate_domain::gate::approval::{
    decide, ChatIdentities, ChatUser, DecideError, Decided, Decider, DecisionKind, DecisionPorts, LinkedIdentity,
};
use tollgate_domain::gate::policy::{ApprovalDecision, ArnPattern};
use tollgate_domain::gate::ApprovalKey;
use tollgate_domain::record::ports::StoreError;

/// Audit actions of identity links (in the `global` scope).
pub const IDENTITY_LINK: &str = "identity.link";
pub const IDENTITY_UNLINK: &str = "identity.unlink";

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("a reason is required: say why with --reason")]
    NoReason,
    #[error("{0}")]
    NotDecided(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not linked to a principal")]
    NotLinked(String),
    #[error("could not record the decision: {0}")]
    Store(#[from] StoreError),
}

/// Records `decision` by `principal_arn` on the stage (and decides its pending Manual approval, if any), then
/// appends it to the pipeline's audit trail. Returns what to print.
pub async fn record(
    ports: &DecisionPorts<'_>,
    key: ApprovalKey,
    principal_arn: &str,
    decision: ApprovalDecision,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<String, ApproveError> {
    if reason.trim().is_empty() {
        return Err(ApproveError::NoReason);
    }
    let who = Decider {
        principal_arn: principal_arn.to_string(),
        groups: Vec::new(),
        chat_user: None,
    };
    match decide(ports, &key, &who, DecisionKind::from(decision), Some(reason), true, at).await {
        Ok(Decided::Recorded { message, .. }) => Ok(message),
        Ok(Decided::AlreadyDecided { message }) | Ok(Decided::RefusedByCodePipeline { message }) => {
            Err(ApproveError::NotDecided(message))
        }
        Err(DecideError::NoReason(_)) => Err(ApproveError::NoReason),
        Err(DecideError::Store(e)) => Err(ApproveError::Store(e)),
        Err(e) => Err(ApproveError::NotDecided(e.to_string())),
    }
}

/// Links chat user `chat` (`T0001:U0001` or `chat:T0001:U0001`) to `principal_arn`, as `by`, and audits it.
pub async fn link_identity(
    identities: &dyn ChatIdentities,
    audit: &dyn AuditLog,
    chat: &str,
    principal_arn: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<LinkedIdentity, ApproveError> {
    let user = ChatUser::parse(chat).map_err(|e| ApproveError::Invalid(e.to_string()))?;
    // A principal is an ARN without wildcards: a link names one identity.
    let principal = principal_arn.trim();
    if principal.contains('*') || ArnPattern::parse(principal).is_err() {
        return Err(ApproveError::Invalid(format!(
            "{principal_arn:?} is not a principal ARN (e.g. arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice)"
        )));
    }
    let link = LinkedIdentity {
        chat_user: user.clone(),
        principal_arn: principal.to_string(),
        linked_by: by.to_string(),
        at,
    };
    identities.link(&link).await?;
    audit
        .append(NewAuditEntry {
            scope: GLOBAL_SCOPE.to_string(),
            at,
            actor: by.to_string(),
            action: IDENTITY_LINK.to_string(),
            subject: user.id(),
            detail: json!({"principal_arn": link.principal_arn}),
        })
        .await?;
    Ok(link)
}

/// Removes a chat user's link, as `by`, and audits it.
pub async fn unlink_identity(
    identities: &dyn ChatIdentities,
    audit: &dyn AuditLog,
    chat: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<LinkedIdentity, ApproveError> {
    let user = ChatUser::parse(chat).map_err(|e| ApproveError::Invalid(e.to_string()))?;
    let removed = identities
        .unlink(&user)
        .await?
        .ok_or_else(|| ApproveError::NotLinked(user.id()))?;
    audit
        .append(NewAuditEntry {
            scope: GLOBAL_SCOPE.to_string(),
            at,
            actor: by.to_string(),
            action: IDENTITY_UNLINK.to_string(),
            subject: user.id(),
            detail: json!({"principal_arn": removed.principal_arn}),
        })
        .await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use tollgate_domain::audit::verify;
    use tollgate_domain::gate::approval::{ApprovalResultRequest, ApprovalToken, ManualApproval, ManualApprovals};
    use tollgate_domain::gate::ApprovalRecords;
    use tollgate_domain::memory::MemoryAuditLog;
    use tollgate_domain::memory::MemoryGateStore;
    use tollgate_domain::memory::MemoryStore;
    use tollgate_domain::memory::{MemoryApprovalResults, MemoryChatStore};

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

    struct World {
        gate: MemoryGateStore,
        chat: MemoryChatStore,
        results: MemoryApprovalResults,
        audit: MemoryAuditLog,
        timelines: MemoryStore,
    }

    impl World {
        fn new() -> World {
            World {
                gate: MemoryGateStore::default(),
                chat: MemoryChatStore::new(),
                results: MemoryApprovalResults::new(),
                audit: MemoryAuditLog::default(),
                timelines: MemoryStore::new(),
            }
        }
        fn ports(&self) -> DecisionPorts<'_> {
            DecisionPorts {
                approvals: &self.gate,
                controls: &self.gate,
                manual: &self.chat,
                results: &self.results,
                audit: &self.audit,
                timelines: &self.timelines,
            }
        }
    }

    const WHO: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";

    #[tokio::test]
    async fn an_approval_is_recorded_with_the_callers_identity_and_audited() {
        let w = World::new();
        let message = record(
            &w.ports(),
            key(),
            WHO,
            ApprovalDecision::Approve,
            " looks good ",
            Utc::now(),
        )
        .await
        .unwrap();
        assert!(
            message.starts_with("approved checkout-service / Production / e-1 as"),
            "{message}"
        );
        let latest = w.gate.latest_approval(&key()).await.unwrap().unwrap();
        assert_eq!(latest.principal_arn, WHO);
        assert_eq!(latest.reason.as_deref(), Some("looks good"));
        let scope = "pipeline:111122223333/eu-west-1/checkout-service";
        let entries = w.audit.entries(scope).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].actor.as_str(), entries[0].action.as_str()),
            (WHO, "approval.approve")
        );
        assert_eq!(entries[0].detail["via"], "cli");
        let head = w.audit.head(scope).await.unwrap();
        verify(scope, &entries, head.as_ref()).unwrap();
    }

    #[tokio::test]
    async fn a_decision_without_a_reason_is_refused_and_nothing_is_recorded() {
        let w = World::new();
        let err = record(
            &w.ports(),
            key(),
            "arn:aws:iam::1:user/bob",
            ApprovalDecision::Reject,
            "  ",
            Utc::now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ApproveError::NoReason));
        assert!(w.gate.latest_approval(&key()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_pending_manual_approval_is_decided_with_put_approval_result_once() {
        let w = World::new();
        let request = ManualApproval {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
            stage: "Production".into(),
            action: "Approve".into(),
            token: ApprovalToken::new("tok-123"),
            execution_id: Some("e-1".into()),
            requested_at: Utc::now(),
            expires: None,
            custom_data: None,
            notified: true,
            outcome: None,
        };
        w.chat.record_request(&request).await.unwrap();
        record(
            &w.ports(),
            key(),
            WHO,
            ApprovalDecision::Reject,
            "bad canary",
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(
            w.results.calls(),
            vec![ApprovalResultRequest {
                pipeline: "checkout-service".into(),
                stage: "Production".into(),
                action: "Approve".into(),
                token: ApprovalToken::new("tok-123"),
                decision: ApprovalDecision::Reject,
                summary: format!("Rejected by {WHO} via Tollgate: bad canary"),
            }]
        );
        let again = record(&w.ports(), key(), WHO, ApprovalDecision::Approve, "oops", Utc::now())
            .await
            .unwrap_err();
        assert!(again.to_string().contains("already decided"), "{again}");
        assert_eq!(w.results.calls().len(), 1);
    }

    #[tokio::test]
    async fn identities_are_linked_and_unlinked_with_an_audit_entry_each() {
        let (ids, audit) = (MemoryChatStore::new(), MemoryAuditLog::default());
        let admin = "arn:aws:iam::111122223333:role/Admin";
        let link = link_identity(&ids, &audit, "T0001:U0001", WHO, admin, Utc::now())
            .await
            .unwrap();
        assert_eq!(link.chat_user.id(), "chat:T0001:U0001");
        assert_eq!(ids.identity(&link.chat_user).await.unwrap().unwrap().principal_arn, WHO);
        for bad in ["arn:aws:sts::111122223333:assumed-role/ReleaseManager/*", "alice"] {
            let err = link_identity(&ids, &audit, "T0001:U0002", bad, admin, Utc::now())
                .await
                .unwrap_err();
            assert!(matches!(err, ApproveError::Invalid(_)), "{bad}: {err}");
        }
        unlink_identity(&ids, &audit, "chat:T0001:U0001", admin, Utc::now())
            .await
            .unwrap();
        assert!(ids.identity(&link.chat_user).await.unwrap().is_none());
        let err = unlink_identity(&ids, &audit, "T0001:U0001", admin, Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(err, ApproveError::NotLinked(_)), "{err}");
        let actions: Vec<String> = audit
            .entries("global")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, vec!["identity.link", "identity.unlink"]);
    }
}
