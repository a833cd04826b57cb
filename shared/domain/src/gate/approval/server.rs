//! The one server-side entry point for human decisions (the `decide` function, and chat through
//! [`decide_authorised`]): the caller is the authenticated principal the platform vouches for, the time is the
//! server's, and every decision is authorised here before it is recorded.
//!
//! - approve / reject / override: the stage's effective policy as the gate recorded it ([`EffectivePolicies`]),
//!   failing closed when no gate has evaluated the stage, and separation of duties ([`authorise_stage_decision`]).
//! - freeze / unfreeze / identity link and unlink: the platform team's administrators.
//!
//! A refusal answers 403 with one sentence and is appended to the audit trail.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::audit::{NewAuditEntry, GLOBAL_SCOPE};
use crate::gate::policy::ArnPattern;
use crate::gate::ApprovalKey;
use crate::record::ports::StoreError;

/// Audit action of a refused administrative request (freeze, unfreeze, identity).
pub const ADMIN_REFUSED: &str = "admin.refused";

/// One request to the decide function, as its body names it (the caller and the time are never in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideRequest {
    Decide {
        key: ApprovalKey,
        decision: DecisionKind,
        reason: Option<String>,
    },
    Freeze {
        scope: String,
        from: Option<String>,
        until: String,
        reason: String,
    },
    Unfreeze {
        scope: String,
        reason: String,
    },
    Link {
        chat: String,
        principal: String,
    },
    Unlink {
        chat: String,
    },
}

impl DecideRequest {
    fn operation(&self) -> &'static str {
        match self {
            DecideRequest::Decide { decision, .. } => decision.as_str(),
            DecideRequest::Freeze { .. } => "freeze",
            DecideRequest::Unfreeze { .. } => "unfreeze",
            DecideRequest::Link { .. } => "identity link",
            DecideRequest::Unlink { .. } => "identity unlink",
        }
    }
}

/// The answer: an HTTP status and one sentence for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideReply {
    pub status: u16,
    pub message: String,
}

impl DecideReply {
    fn new(status: u16, message: impl Into<String>) -> DecideReply {
        DecideReply {
            status,
            message: message.into(),
        }
    }
}

/// What the decide function reads and writes.
pub struct ServerPorts<'a> {
    pub decisions: DecisionPorts<'a>,
    pub identities: &'a dyn ChatIdentities,
}

/// Authorises `principal_arn` (with `chat_user` when the decision comes from chat) for `decision` on `key` against
/// the stage's recorded effective policy and separation of duties, then decides. `Ok(Err(why))`: refused, and the
/// refusal is audited.
pub async fn decide_authorised(
    ports: &DecisionPorts<'_>,
    key: &ApprovalKey,
    principal_arn: &str,
    chat_user: Option<&ChatUser>,
    decision: DecisionKind,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Result<Decided, String>, DecideError> {
    let effective = ports.effective.effective(key).await?;
    let owners = change_owners(ports.timelines, key).await?;
    let groups = match authorise_stage_decision(effective.as_ref(), key, principal_arn, decision, &owners) {
        Ok(groups) => groups,
        Err(why) => {
            let chat_id = chat_user.map(ChatUser::id);
            record_refusal(
                ports.audit,
                key,
                chat_id.as_deref().unwrap_or(principal_arn),
                decision,
                &why,
                json!({"via": if chat_user.is_some() { "chat" } else { "decide" },
                    "chat_user": chat_id, "principal_arn": principal_arn, "reason": reason}),
                now,
            )
            .await?;
            return Ok(Err(why));
        }
    };
    let reason_required = effective
        .as_ref()
        .and_then(|e| e.policy.approval.as_ref())
        .is_none_or(|a| a.reason_required);
    let who = Decider {
        principal_arn: principal_arn.to_string(),
        groups,
        chat_user: chat_user.cloned(),
    };
    decide(ports, key, &who, decision, reason, reason_required, now)
        .await
        .map(Ok)
}

/// Serves one request of `caller` (the authenticated principal ARN) at the server's `now`.
pub async fn serve(
    ports: &ServerPorts<'_>,
    administrators: &[ArnPattern],
    caller: &str,
    request: DecideRequest,
    now: DateTime<Utc>,
) -> Result<DecideReply, StoreError> {
    if let DecideRequest::Decide { key, decision, reason } = &request {
        let result = decide_authorised(&ports.decisions, key, caller, None, *decision, reason.as_deref(), now).await;
        return Ok(match result {
            Ok(Ok(Decided::Recorded { message, .. })) => DecideReply::new(200, message),
            Ok(Ok(Decided::AlreadyDecided { message })) => DecideReply::new(409, message),
            Ok(Ok(Decided::RefusedByCodePipeline { message })) => DecideReply::new(409, message),
            Ok(Err(why)) => DecideReply::new(403, format!("refused: {why}; the refusal is recorded")),
            Err(e @ DecideError::NoReason(_)) => DecideReply::new(400, e.to_string()),
            Err(e @ DecideError::Unauthorised(_)) => DecideReply::new(403, e.to_string()),
            Err(DecideError::Transient(_)) => {
                DecideReply::new(503, "CodePipeline could not be reached; nothing was decided, try again")
            }
            Err(DecideError::Store(e)) => return Err(e),
        });
    }
    if !administrators.iter().any(|p| p.matches(caller)) {
        let why = format!(
            "{caller} is not one of the platform team's administrators, who alone may {}",
            request.operation()
        );
        let scope = match &request {
            DecideRequest::Freeze { scope, .. } | DecideRequest::Unfreeze { scope, .. } => scope.clone(),
            _ => GLOBAL_SCOPE.to_string(),
        };
        ports
            .decisions
            .audit
            .append(NewAuditEntry {
                scope: crate::gate::parse_freeze_scope(&scope).unwrap_or_else(|_| GLOBAL_SCOPE.to_string()),
                at: now,
                actor: cut(caller, 1000),
                action: ADMIN_REFUSED.to_string(),
                subject: request.operation().to_string(),
                detail: json!({"refused": why}),
            })
            .await?;
        return Ok(DecideReply::new(
            403,
            format!("refused: {why}; the refusal is recorded"),
        ));
    }
    let (controls, audit) = (ports.decisions.controls, ports.decisions.audit);
    let done = match request {
        DecideRequest::Decide { .. } => unreachable!("handled above"),
        DecideRequest::Freeze {
            scope,
            from,
            until,
            reason,
        } => freeze(controls, audit, &scope, from.as_deref(), &until, &reason, caller, now)
            .await
            .map(|f| {
                format!(
                    "froze {} from {} until {} as {caller} ({})",
                    f.scope, f.from, f.until, f.reason
                )
            }),
        DecideRequest::Unfreeze { scope, reason } => {
            unfreeze(controls, audit, &scope, &reason, caller, now).await.map(|f| {
                format!(
                    "lifted the freeze of {} (by {}: {}) as {caller} ({})",
                    f.scope,
                    f.by,
                    f.reason,
                    reason.trim()
                )
            })
        }
        DecideRequest::Link { chat, principal } => {
            link_identity(ports.identities, audit, &chat, &principal, caller, now)
                .await
                .map(|l| format!("linked {} to {} as {caller}", l.chat_user, l.principal_arn))
        }
        DecideRequest::Unlink { chat } => unlink_identity(ports.identities, audit, &chat, caller, now)
            .await
            .map(|l| format!("unlinked {} (was {}) as {caller}", l.chat_user, l.principal_arn)),
    };
    Ok(match done {
        Ok(message) => DecideReply::new(200, message),
        Err(ControlError::Store(e)) => return Err(e),
        Err(e @ (ControlError::NotFrozen(_) | ControlError::NotLinked(_))) => DecideReply::new(404, e.to_string()),
        Err(e) => DecideReply::new(400, e.to_string()),
    })
}
