//! Deciding on an approval (chat or CLI): authorise, record, answer a pending Manual approval, audit.

use super::*;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::{action, pipeline_scope, AuditLog, NewAuditEntry};
use crate::gate::policy::ApprovalDecision;
use crate::gate::{ApprovalKey, ApprovalRecord, ApprovalRecords, GateControls, OverrideRecord};
use crate::record::keys::PipelineKey;
use crate::record::ports::{StoreError, TimelineQueries};
use crate::record::query::execution_timeline;

// ---------------------------------------------------------------------------------------------------------------
// Deciding.

/// Who decides: the principal (from STS for the CLI, from the linked identity for chat), and how they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub principal_arn: String,
    pub groups: Vec<String>,
    /// The chat user, for decisions made in chat.
    pub chat_user: Option<ChatUser>,
}

impl Decider {
    fn via(&self) -> &'static str {
        if self.chat_user.is_some() {
            "chat"
        } else {
            "cli"
        }
    }
}

/// Every store and service a decision touches.
pub struct DecisionPorts<'a> {
    pub approvals: &'a dyn ApprovalRecords,
    pub controls: &'a dyn GateControls,
    pub manual: &'a dyn ManualApprovals,
    pub results: &'a dyn ApprovalResults,
    pub audit: &'a dyn AuditLog,
    pub timelines: &'a dyn TimelineQueries,
    /// The effective policy the gate evaluated for each stage: who may decide on it.
    pub effective: &'a dyn EffectivePolicies,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Recorded for the gate (and, for a manual approval, accepted by CodePipeline).
    Recorded { message: String, manual: Option<String> },
    /// The stage's manual approval was decided before: nothing was called again.
    AlreadyDecided { message: String },
    /// CodePipeline refused the result (recorded and audited).
    RefusedByCodePipeline { message: String },
}

impl Decided {
    pub fn message(&self) -> &str {
        match self {
            Decided::Recorded { message, .. }
            | Decided::AlreadyDecided { message }
            | Decided::RefusedByCodePipeline { message } => message,
        }
    }
}

/// Why a decision was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("a reason is required to {0}: say why")]
    NoReason(&'static str),
    #[error("not authorised: {0}")]
    Unauthorised(String),
    #[error("CodePipeline could not be reached, nothing was decided; try again: {0}")]
    Transient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

pub(super) fn scope_of(key: &ApprovalKey) -> String {
    pipeline_scope(&PipelineKey {
        account: key.account.clone(),
        region: key.region.clone(),
        pipeline: key.pipeline.clone(),
    })
}

/// Appends a refused decision to the pipeline's audit trail (`approval.refused`), so `tollgate audit list` shows who
/// tried what and why they were refused.
pub async fn record_refusal(
    audit: &dyn AuditLog,
    key: &ApprovalKey,
    actor: &str,
    decision: DecisionKind,
    why: &str,
    detail: Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut d = json!({"decision": decision.as_str(), "refused": why, "execution_id": key.execution_id,
        "stage": key.stage});
    if let (Value::Object(d), Value::Object(extra)) = (&mut d, detail) {
        d.extend(extra);
    }
    audit
        .append(NewAuditEntry {
            scope: scope_of(key),
            at,
            actor: cut(actor, 1000),
            action: action::APPROVAL_REFUSED.to_string(),
            subject: format!("{}/{}", key.execution_id, key.stage),
            detail: d,
        })
        .await
        .map(|_| ())
}

/// Makes a decision on a stage of an execution: decides the stage's pending Manual approval, if there is one, with
/// `PutApprovalResult` (once), records the approval (or override) for the gate, and appends it to the pipeline's
/// audit trail with who, when, why and how. The caller has authenticated and authorised `who`.
pub async fn decide(
    ports: &DecisionPorts<'_>,
    key: &ApprovalKey,
    who: &Decider,
    decision: DecisionKind,
    reason: Option<&str>,
    reason_required: bool,
    now: DateTime<Utc>,
) -> Result<Decided, DecideError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_none() && (reason_required || decision == DecisionKind::Override) {
        return Err(DecideError::NoReason(decision.as_str()));
    }
    let by = match &who.chat_user {
        Some(u) => format!("{} ({u})", who.principal_arn),
        None => who.principal_arn.clone(),
    };
    let manual_decision = match decision {
        DecisionKind::Reject => ApprovalDecision::Reject,
        DecisionKind::Approve | DecisionKind::Override => ApprovalDecision::Approve,
    };
    let summary = cut(
        &format!(
            "{} by {by} via Tollgate{}",
            match decision {
                DecisionKind::Approve => "Approved",
                DecisionKind::Reject => "Rejected",
                DecisionKind::Override => "Overridden",
            },
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ),
        MAX_SUMMARY_CHARS,
    );

    // The stage's pending manual approval for this execution, if any.
    let mut manual_note: Option<(String, Value)> = None;
    if let Some(request) = pending_manual(ports, key).await? {
        let outcome = ManualOutcome {
            state: ManualState::Deciding,
            decision: manual_decision,
            by: who.principal_arn.clone(),
            summary: summary.clone(),
            at: now,
            refusal: None,
        };
        match ports.manual.claim(&request, &outcome).await? {
            Claim::AlreadyDecided(o) => {
                return Ok(Decided::AlreadyDecided {
                    message: already_message(&request, &o),
                })
            }
            Claim::Claimed => {}
        }
        let call = ApprovalResultRequest {
            pipeline: request.pipeline.clone(),
            stage: request.stage.clone(),
            action: request.action.clone(),
            token: request.token.clone(),
            decision: manual_decision,
            summary: summary.clone(),
        };
        match ports.results.put_approval_result(&call).await {
            Ok(()) => {
                ports
                    .manual
                    .settle(
                        &request,
                        &ManualOutcome {
                            state: ManualState::Accepted,
                            ..outcome
                        },
                    )
                    .await?;
                manual_note = Some((
                    format!(
                        "CodePipeline's Manual approval {} / {} {}",
                        request.stage,
                        request.action,
                        if manual_decision == ApprovalDecision::Approve {
                            "approved"
                        } else {
                            "rejected"
                        }
                    ),
                    json!({"action": request.action, "result": "accepted", "summary": summary}),
                ));
            }
            Err(ApprovalResultError::Transient(e)) => {
                ports.manual.release(&request).await?;
                return Err(DecideError::Transient(e));
            }
            Err(ApprovalResultError::Refused { code, message }) => {
                let refusal = format!("{code}: {message}");
                ports
                    .manual
                    .settle(
                        &request,
                        &ManualOutcome {
                            state: ManualState::Refused,
                            refusal: Some(refusal.clone()),
                            ..outcome
                        },
                    )
                    .await?;
                let why = format!(
                    "CodePipeline refused the result for {} / {}: {refusal}",
                    request.stage, request.action
                );
                record_refusal(
                    ports.audit,
                    key,
                    &who.principal_arn,
                    decision,
                    &why,
                    json!({"via": who.via(), "chat_user": who.chat_user.as_ref().map(ChatUser::id),
                        "reason": reason, "manual_approval": {"action": request.action, "result": "refused",
                        "refusal": refusal}}),
                    now,
                )
                .await?;
                return Ok(Decided::RefusedByCodePipeline { message: why });
            }
        }
    }

    match decision {
        DecisionKind::Override => {
            ports
                .controls
                .record_override(&OverrideRecord {
                    key: key.clone(),
                    by: who.principal_arn.clone(),
                    reason: reason.unwrap_or_default().to_string(),
                    at: now,
                })
                .await?
        }
        DecisionKind::Approve | DecisionKind::Reject => {
            ports
                .approvals
                .record_approval(&ApprovalRecord {
                    key: key.clone(),
                    principal_arn: who.principal_arn.clone(),
                    groups: who.groups.clone(),
                    decision: manual_decision,
                    reason: reason.map(str::to_string),
                    at: now,
                })
                .await?
        }
    }
    let mut detail = json!({"reason": reason, "execution_id": key.execution_id, "stage": key.stage,
        "via": who.via(), "groups": who.groups});
    if let Some(u) = &who.chat_user {
        detail["chat_user"] = json!(u.id());
    }
    if let Some((_, m)) = &manual_note {
        detail["manual_approval"] = m.clone();
    }
    ports
        .audit
        .append(NewAuditEntry {
            scope: scope_of(key),
            at: now,
            actor: who.principal_arn.clone(),
            action: decision.audit_action().to_string(),
            subject: format!("{}/{}", key.execution_id, key.stage),
            detail,
        })
        .await?;
    let mut message = format!(
        "{} {} / {} / {} as {}{}",
        decision.past(),
        key.pipeline,
        key.stage,
        key.execution_id,
        by,
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    if let Some((m, _)) = &manual_note {
        message.push_str(&format!(" ({m})"));
    }
    Ok(Decided::Recorded {
        message,
        manual: manual_note.map(|(m, _)| m),
    })
}

pub(super) fn already_message(r: &ManualApproval, o: &ManualOutcome) -> String {
    let what = match (o.state, o.decision) {
        (ManualState::Refused, _) => format!(
            "CodePipeline refused {}'s decision: {}",
            o.by,
            o.refusal.as_deref().unwrap_or("no reason given")
        ),
        (ManualState::Deciding, _) => format!("{} is deciding it right now", o.by),
        (ManualState::Accepted, ApprovalDecision::Approve) => format!("approved by {}", o.by),
        (ManualState::Accepted, ApprovalDecision::Reject) => format!("rejected by {}", o.by),
    };
    format!(
        "the Manual approval {} / {} of {} was already decided at {}: {what}; nothing was sent again",
        r.stage,
        r.action,
        r.pipeline,
        o.at.format("%Y-%m-%d %H:%M:%SZ")
    )
}

/// The newest manual approval of the key's stage for its execution (an execution not known when the request came
/// is looked up again now). Decided ones count too, so a repeated decision finds them and calls nothing.
pub(super) async fn pending_manual(
    ports: &DecisionPorts<'_>,
    key: &ApprovalKey,
) -> Result<Option<ManualApproval>, StoreError> {
    let requests = ports
        .manual
        .requests(&key.account, &key.region, &key.pipeline, &key.stage)
        .await?;
    for r in requests {
        let execution = match &r.execution_id {
            Some(e) => Some(e.clone()),
            None => waiting_execution(ports.timelines, &r.pipeline_key(), &r.stage, &r.action).await?,
        };
        if execution.as_deref() == Some(key.execution_id.as_str()) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// The execution whose `stage` / `action` is in progress, among the pipeline's latest executions.
pub async fn waiting_execution(
    timelines: &dyn TimelineQueries,
    pipeline: &PipelineKey,
    stage: &str,
    action_name: &str,
) -> Result<Option<String>, StoreError> {
    for summary in timelines.executions(pipeline, EXECUTIONS_SEARCHED).await? {
        let Some(t) = execution_timeline(timelines, &summary.key).await? else {
            continue;
        };
        let waiting = t
            .stages
            .iter()
            .filter(|s| s.name == stage)
            .flat_map(|s| &s.actions)
            .any(|a| a.name == action_name && a.state == "STARTED");
        if waiting {
            return Ok(Some(summary.key.execution_id));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------------------------
// Chat requests.

/// The answer to a chat request: an HTTP status and a short message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    pub status: u16,
    pub text: String,
}

/// The endpoint's settings.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub default_account: String,
    pub default_region: String,
}

/// Handles an authenticated (signed, fresh, first-seen) chat command: identity, authorisation, decision.
pub async fn handle_chat_command(
    ports: &DecisionPorts<'_>,
    identities: &dyn ChatIdentities,
    settings: &ChatSettings,
    command: &ChatCommand,
    now: DateTime<Utc>,
) -> Result<ChatReply, DecideError> {
    let key = command.target.key(&settings.default_account, &settings.default_region);
    let user_id = command.user.id();
    let (key_ref, user_ref) = (&key, &user_id);
    let refuse = |why: String| async move {
        record_refusal(
            ports.audit,
            key_ref,
            user_ref,
            command.decision,
            &why,
            json!({"via": "chat", "chat_user": command.user.id(), "reason": command.reason}),
            now,
        )
        .await?;
        Ok::<ChatReply, DecideError>(ChatReply {
            status: 403,
            text: format!("Refused: {why}. The refusal is recorded."),
        })
    };
    let Some(identity) = identities.identity(&command.user).await? else {
        return refuse(format!(
            "{} is not linked to a Tollgate principal (an administrator links it with `tollgate identity link`)",
            command.user
        ))
        .await;
    };
    // Authorised per pipeline and stage by the effective policy the gate recorded (and separation of duties).
    let result = match decide_authorised(
        ports,
        &key,
        &identity.principal_arn,
        Some(&command.user),
        command.decision,
        command.reason.as_deref(),
        now,
    )
    .await
    {
        Ok(Err(why)) => {
            return Ok(ChatReply {
                status: 403,
                text: format!("Refused: {why}. The refusal is recorded."),
            })
        }
        Ok(Ok(decided)) => Ok(decided),
        Err(e) => Err(e),
    };
    Ok(match result {
        Ok(Decided::Recorded { message, .. }) => ChatReply {
            status: 200,
            text: format!("Done: {message}"),
        },
        Ok(Decided::AlreadyDecided { message }) => ChatReply {
            status: 409,
            text: format!("Not sent: {message}"),
        },
        Ok(Decided::RefusedByCodePipeline { message }) => ChatReply {
            status: 409,
            text: format!("Not accepted: {message}. The refusal is recorded."),
        },
        Err(e @ DecideError::NoReason(_)) => ChatReply {
            status: 400,
            text: format!("{e} ({USAGE})"),
        },
        Err(e) => return Err(e),
    })
}
