//! Ad-hoc freezes of a pipeline (or of every pipeline), overrides of one gate, and chat identity links, recorded
//! with the caller's identity and appended to the audit trail. The decide function calls these once it has
//! authenticated the caller (from the request context, never a body's claim) and authorised it.
//! A freeze is kept until lifted: one per scope, a new one replacing the old; `unfreeze` deletes it
//! (the audit trail keeps both). The gate decides whether an override counts: only when the policy has an `approval`
//! section and the caller matches one of its `approvers`.

use crate::audit::{action, pipeline_scope, AuditLog, NewAuditEntry};
use crate::gate::policy::window::freeze_span;
use crate::gate::policy::{Freeze, FreezeBound};
use crate::gate::{parse_freeze_scope, ApprovalKey, FreezeRecord, GateControls, OverrideRecord};
use crate::record::keys::PipelineKey;
use crate::record::ports::StoreError;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{ChatIdentities, ChatUser, LinkedIdentity};
use crate::audit::GLOBAL_SCOPE;
use crate::gate::policy::ArnPattern;

/// Audit actions of identity links (in the `global` scope).
pub const IDENTITY_LINK: &str = "identity.link";
pub const IDENTITY_UNLINK: &str = "identity.unlink";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("a reason is required: say why with --reason")]
    NoReason,
    #[error("{0}")]
    Invalid(String),
    #[error("there is no ad-hoc freeze on {0} to lift")]
    NotFrozen(String),
    #[error("{0} is not linked to a principal")]
    NotLinked(String),
    #[error("could not record it: {0}")]
    Store(#[from] StoreError),
}

fn reason_of(reason: &str) -> Result<String, ControlError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(ControlError::NoReason);
    }
    Ok(r.to_string())
}

/// A freeze bound from the command line: a date (a whole day, in the zone of each policy it applies to) or an
/// RFC 3339 instant with an offset. A wall-clock time without an offset is refused: it would mean a different
/// instant for each policy's zone.
pub fn parse_bound(flag: &str, text: &str) -> Result<FreezeBound, ControlError> {
    match FreezeBound::parse(text) {
        Ok(b @ (FreezeBound::Date(_) | FreezeBound::Instant(_))) => Ok(b),
        Ok(FreezeBound::Local(_)) => Err(ControlError::Invalid(format!(
            "{flag} {text:?} has a time but no offset: write YYYY-MM-DD or RFC 3339 (2026-11-26T18:00:00Z)"
        ))),
        Err(e) => Err(ControlError::Invalid(format!("{flag}: {e}"))),
    }
}

/// Records a freeze of `scope` from `from` (None: now) until `until`, by `by`, and audits it.
#[allow(clippy::too_many_arguments)]
pub async fn freeze<C: GateControls + ?Sized, L: AuditLog + ?Sized>(
    controls: &C,
    audit: &L,
    scope: &str,
    from: Option<&str>,
    until: &str,
    reason: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<FreezeRecord, ControlError> {
    let reason = reason_of(reason)?;
    let scope = parse_freeze_scope(scope).map_err(ControlError::Invalid)?;
    let from = match from {
        Some(f) => parse_bound("--from", f)?,
        None => FreezeBound::Instant(at.fixed_offset()),
    };
    let until = parse_bound("--until", until)?;
    // Checked in UTC; a date's day is the policy's own when the gate applies it.
    let span = freeze_span(
        &Freeze {
            name: String::new(),
            from,
            to: until,
            reason: None,
        },
        chrono_tz::UTC,
    );
    match span {
        Some((start, end)) if end > start && end > at => {}
        Some((_, end)) if end <= at => {
            return Err(ControlError::Invalid(format!("--until {until} is already over")));
        }
        _ => {
            return Err(ControlError::Invalid(format!(
                "the freeze ends ({until}) before it starts ({from})"
            )))
        }
    }
    let record = FreezeRecord {
        scope: scope.clone(),
        from,
        until,
        reason: reason.clone(),
        by: by.to_string(),
        at,
    };
    controls.record_freeze(&record).await?;
    audit
        .append(NewAuditEntry {
            scope: scope.clone(),
            at,
            actor: by.to_string(),
            action: action::FREEZE.to_string(),
            subject: scope,
            detail: json!({ "from": from.to_string(), "until": until.to_string(), "reason": reason }),
        })
        .await?;
    Ok(record)
}

/// Lifts the freeze of `scope` (deletes it) and audits it; an error when there is none.
pub async fn unfreeze<C: GateControls + ?Sized, L: AuditLog + ?Sized>(
    controls: &C,
    audit: &L,
    scope: &str,
    reason: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<FreezeRecord, ControlError> {
    let reason = reason_of(reason)?;
    let scope = parse_freeze_scope(scope).map_err(ControlError::Invalid)?;
    let lifted = controls
        .lift_freeze(&scope)
        .await?
        .ok_or_else(|| ControlError::NotFrozen(scope.clone()))?;
    audit
        .append(NewAuditEntry {
            scope: scope.clone(),
            at,
            actor: by.to_string(),
            action: action::UNFREEZE.to_string(),
            subject: scope,
            detail: json!({
                "reason": reason,
                "lifted": { "from": lifted.from.to_string(), "until": lifted.until.to_string(),
                    "reason": lifted.reason, "by": lifted.by, "at": lifted.at },
            }),
        })
        .await?;
    Ok(lifted)
}

/// Records an override of the gate at `key` by `by`, and audits it.
pub async fn override_gate<C: GateControls + ?Sized, L: AuditLog + ?Sized>(
    controls: &C,
    audit: &L,
    key: ApprovalKey,
    reason: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<OverrideRecord, ControlError> {
    let reason = reason_of(reason)?;
    let record = OverrideRecord {
        key: key.clone(),
        by: by.to_string(),
        reason: reason.clone(),
        at,
    };
    controls.record_override(&record).await?;
    let pipeline = PipelineKey {
        account: key.account.clone(),
        region: key.region.clone(),
        pipeline: key.pipeline.clone(),
    };
    audit
        .append(NewAuditEntry {
            scope: pipeline_scope(&pipeline),
            at,
            actor: by.to_string(),
            action: action::OVERRIDE.to_string(),
            subject: format!("{}/{}", key.execution_id, key.stage),
            detail: json!({ "reason": reason, "execution_id": key.execution_id, "stage": key.stage }),
        })
        .await?;
    Ok(record)
}

/// Links chat user `chat` (`T0001:U0001` or `chat:T0001:U0001`) to `principal_arn`, as `by`, and audits it.
pub async fn link_identity(
    identities: &dyn ChatIdentities,
    audit: &dyn AuditLog,
    chat: &str,
    principal_arn: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<LinkedIdentity, ControlError> {
    let user = ChatUser::parse(chat).map_err(|e| ControlError::Invalid(e.to_string()))?;
    // A principal is an ARN without wildcards: a link names one identity.
    let principal = principal_arn.trim();
    if principal.contains('*') || ArnPattern::parse(principal).is_err() {
        return Err(ControlError::Invalid(format!(
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
) -> Result<LinkedIdentity, ControlError> {
    let user = ChatUser::parse(chat).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let removed = identities
        .unlink(&user)
        .await?
        .ok_or_else(|| ControlError::NotLinked(user.id()))?;
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
    use crate::audit::verify;
    use crate::memory::MemoryAuditLog;
    use crate::memory::MemoryChatStore;
    use crate::memory::MemoryGateStore;

    use super::*;

    const WHO: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
    const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[tokio::test]
    async fn a_freeze_is_recorded_as_the_caller_audited_and_lifted() {
        let (store, audit) = (MemoryGateStore::new(), MemoryAuditLog::default());
        let f = freeze(&store, &audit, SCOPE, None, "2026-11-27", " INC-42 ", WHO, now())
            .await
            .unwrap();
        assert_eq!((f.by.as_str(), f.reason.as_str()), (WHO, "INC-42"));
        assert_eq!(f.from, FreezeBound::Instant(now().fixed_offset()));
        assert_eq!(store.active_freezes(&[SCOPE.to_string()]).await.unwrap(), vec![f]);

        let lifted = unfreeze(&store, &audit, SCOPE, "resolved", WHO, now()).await.unwrap();
        assert_eq!(lifted.reason, "INC-42");
        assert!(store.active_freezes(&[SCOPE.to_string()]).await.unwrap().is_empty());
        let entries = audit.entries(SCOPE).await.unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, vec!["freeze", "unfreeze"]);
        assert!(entries.iter().all(|e| e.actor == WHO));
        verify(SCOPE, &entries, audit.head(SCOPE).await.unwrap().as_ref()).unwrap();

        let err = unfreeze(&store, &audit, SCOPE, "again", WHO, now()).await.unwrap_err();
        assert!(matches!(err, ControlError::NotFrozen(_)));
        assert_eq!(audit.entries(SCOPE).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn bad_freezes_are_refused_and_nothing_is_recorded() {
        let (store, audit) = (MemoryGateStore::new(), MemoryAuditLog::default());
        for (scope, from, until, reason) in [
            (SCOPE, None, "2026-11-27", " "),
            ("pipeline:checkout", None, "2026-11-27", "r"),
            (SCOPE, None, "2026-11-27T18:00", "r"),
            (SCOPE, None, "next week", "r"),
            (SCOPE, None, "2026-11-19", "r"),
            (SCOPE, Some("2026-11-28"), "2026-11-27", "r"),
        ] {
            let r = freeze(&store, &audit, scope, from, until, reason, WHO, now()).await;
            assert!(r.is_err(), "{scope} {from:?} {until} {reason:?}");
        }
        let global = freeze(
            &store,
            &audit,
            "global",
            None,
            "2026-11-20T18:00:00+01:00",
            "r",
            WHO,
            now(),
        )
        .await;
        assert!(global.is_ok());
        assert_eq!(store.active_freezes(&[SCOPE.to_string()]).await.unwrap(), vec![]);
        assert_eq!(audit.entries(SCOPE).await.unwrap().len(), 0);
        assert_eq!(audit.entries("global").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_override_needs_a_reason_and_is_audited() {
        let (store, audit) = (MemoryGateStore::new(), MemoryAuditLog::default());
        let key = ApprovalKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
            execution_id: "e-1".into(),
            stage: "Production".into(),
        };
        let err = override_gate(&store, &audit, key.clone(), "", WHO, now())
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::NoReason));
        assert_eq!(store.latest_override(&key).await.unwrap(), None);
        override_gate(&store, &audit, key.clone(), "hotfix", WHO, now())
            .await
            .unwrap();
        assert_eq!(store.latest_override(&key).await.unwrap().unwrap().by, WHO);
        let entries = audit.entries(SCOPE).await.unwrap();
        assert_eq!(
            (entries[0].action.as_str(), entries[0].subject.as_str()),
            ("override", "e-1/Production")
        );
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
            assert!(matches!(err, ControlError::Invalid(_)), "{bad}: {err}");
        }
        unlink_identity(&ids, &audit, "chat:T0001:U0001", admin, Utc::now())
            .await
            .unwrap();
        assert!(ids.identity(&link.chat_user).await.unwrap().is_none());
        let err = unlink_identity(&ids, &audit, "T0001:U0001", admin, Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::NotLinked(_)), "{err}");
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
