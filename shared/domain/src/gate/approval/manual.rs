//! CodePipeline Manual approval actions: the stored request and its token, the result sent back once, and the
//! announcement of a new request enriched with what Tollgate knows of the execution.

use super::*;
use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{action, pipeline_scope, AuditLog};
use crate::gate::policy::{ApprovalDecision, CheckStatus};
use crate::gate::GateDecisions;
use crate::record::keys::{ExecutionKey, PipelineKey};
use crate::record::parse::ApprovalRequest;
use crate::record::ports::{StoreError, TimelineQueries};
use crate::record::query::execution_timeline;
use crate::tell::notify::{Notification, NotificationKind, Severity};
use crate::tell::ports::{Notifier, NotifyError};

// ---------------------------------------------------------------------------------------------------------------
// Manual approvals.

/// A Manual approval action's token. Its `Debug` shows only a digest: the token decides the action. A token read
/// back from the table is its digest alone ([`ApprovalToken::from_digest`]): the raw token is never stored, and a
/// decision reads it fresh from CodePipeline (GetPipelineState) and checks it against the digest.
#[derive(Clone, Serialize, Deserialize)]
pub struct ApprovalToken {
    digest: String,
    #[serde(skip)]
    raw: Option<String>,
}

impl ApprovalToken {
    pub fn new(token: &str) -> Self {
        ApprovalToken {
            digest: digest(token),
            raw: Some(token.to_string()),
        }
    }
    /// A token known by its digest only (as stored).
    pub fn from_digest(digest: &str) -> Self {
        ApprovalToken {
            digest: digest.to_string(),
            raw: None,
        }
    }
    /// The token itself, when this copy holds it (fresh from SNS or CodePipeline); None for a stored copy.
    pub fn expose(&self) -> Option<&str> {
        self.raw.as_deref()
    }
    /// Hex SHA-256 of the token: its name in keys and logs, and all that is stored of it.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }
    /// Whether `token` is this token.
    pub fn matches(&self, token: &str) -> bool {
        digest(token) == self.digest
    }
    /// The same token without its raw value, as it may be stored.
    pub fn digest_only(&self) -> Self {
        Self::from_digest(&self.digest)
    }
}

impl PartialEq for ApprovalToken {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}
impl Eq for ApprovalToken {}

impl fmt::Debug for ApprovalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ApprovalToken(sha256:{})",
            self.digest.get(..16).unwrap_or(&self.digest)
        )
    }
}

/// A Manual approval action CodePipeline reports waiting (GetPipelineState: the stage's action `InProgress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// The stage's current pipeline execution.
    pub execution_id: Option<String>,
    pub token: ApprovalToken,
}

/// CodePipeline's view of a pipeline's Manual approval actions.
#[async_trait]
pub trait PipelineApprovals: Send + Sync {
    /// The approval `action` of `stage` when it is in progress, with its current token; None when it is not
    /// waiting (or the pipeline, stage or action does not exist).
    async fn pending(&self, pipeline: &str, stage: &str, action: &str) -> Result<Option<PendingApproval>, StoreError>;
}

/// Where a manual approval's decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualState {
    /// A decision claimed it and is calling PutApprovalResult.
    Deciding,
    /// CodePipeline accepted the result.
    Accepted,
    /// CodePipeline refused it (expired, already completed...): final for this token.
    Refused,
}

/// The decision made on a manual approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualOutcome {
    pub state: ManualState,
    pub decision: ApprovalDecision,
    pub by: String,
    pub summary: String,
    pub at: DateTime<Utc>,
    /// CodePipeline's refusal, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// A Manual approval action waiting for a decision, as its SNS message announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualApproval {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub token: ApprovalToken,
    /// The execution waiting at the action, found in the recorded timelines (None if not recorded yet).
    pub execution_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub expires: Option<String>,
    pub custom_data: Option<String>,
    pub notified: bool,
    pub outcome: Option<ManualOutcome>,
}

impl ManualApproval {
    pub fn pipeline_key(&self) -> PipelineKey {
        PipelineKey {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
        }
    }
}

/// `MANUAL#<account>#<region>#<pipeline>#<stage>`: a stage's manual approvals, one item per token.
pub fn manual_pk(account: &str, region: &str, pipeline: &str, stage: &str) -> String {
    format!("MANUAL#{account}#{region}#{pipeline}#{stage}")
}

/// Claiming a manual approval for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// Someone decided it before: their outcome.
    AlreadyDecided(ManualOutcome),
}

/// Where manual approvals are kept.
#[async_trait]
pub trait ManualApprovals: Send + Sync {
    /// Stores the request once (keyed by its token); returns what is stored (the earlier copy for a duplicate).
    async fn record_request(&self, request: &ManualApproval) -> Result<ManualApproval, StoreError>;
    async fn mark_notified(&self, request: &ManualApproval) -> Result<(), StoreError>;
    /// The stage's manual approvals, newest first.
    async fn requests(
        &self,
        account: &str,
        region: &str,
        pipeline: &str,
        stage: &str,
    ) -> Result<Vec<ManualApproval>, StoreError>;
    /// Sets the outcome if the request has none (`Deciding`), so one decision alone calls PutApprovalResult.
    async fn claim(&self, request: &ManualApproval, outcome: &ManualOutcome) -> Result<Claim, StoreError>;
    /// Replaces the outcome of a claimed request with the final one.
    async fn settle(&self, request: &ManualApproval, outcome: &ManualOutcome) -> Result<(), StoreError>;
    /// Drops a claim whose call failed transiently, so the decision can be made again.
    async fn release(&self, request: &ManualApproval) -> Result<(), StoreError>;
}

/// `PutApprovalResult`'s request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalResultRequest {
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub token: ApprovalToken,
    pub decision: ApprovalDecision,
    pub summary: String,
}

/// `PutApprovalResult` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalResultError {
    /// CodePipeline refused the result (the approval expired, was decided already, the action is gone...).
    /// Final: calling again gets the same answer.
    #[error("CodePipeline refused the result: {code}: {message}")]
    Refused { code: String, message: String },
    /// Throttling, a timeout, a 5xx: the decision can be made again.
    #[error("CodePipeline could not be reached: {0}")]
    Transient(String),
}

/// CodePipeline's approval API.
#[async_trait]
pub trait ApprovalResults: Send + Sync {
    async fn put_approval_result(&self, request: &ApprovalResultRequest) -> Result<(), ApprovalResultError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Manual approval requests (SNS).

/// Everything announcing a manual approval reads or writes.
pub struct RequestPorts<'a> {
    pub manual: &'a dyn ManualApprovals,
    pub timelines: &'a dyn TimelineQueries,
    pub audit: &'a dyn AuditLog,
    pub decisions: &'a dyn GateDecisions,
    pub notifier: &'a dyn Notifier,
    /// CodePipeline's own state: a request is announced only if it names the approval that is waiting.
    pub pipelines: &'a dyn PipelineApprovals,
}

/// What handling an approval request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    Published {
        token_digest: String,
    },
    /// A duplicate delivery of a request already announced: nothing published.
    Duplicate {
        token_digest: String,
    },
    /// CodePipeline has no such approval waiting (a forged request, or one decided or expired already): nothing
    /// stored or announced. The caller records and tells it.
    NotPending {
        token_digest: String,
        why: String,
    },
}

/// Why an approval request could not be handled; every case is worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// The replay guard's name for "this refused request was told": one per token, apart from signature digests.
pub fn refused_request_marker(token_digest: &str) -> String {
    digest(&format!("refused-approval-request:{token_digest}"))
}

/// Stores a Manual approval request (once per token), enriches it with the execution's change and its gate
/// decisions, and publishes it once.
pub async fn handle_approval_request(
    ports: &RequestPorts<'_>,
    request: &ApprovalRequest,
    account: &str,
    default_region: &str,
    received_at: DateTime<Utc>,
) -> Result<Announced, AnnounceError> {
    let region = request.region.clone().unwrap_or_else(|| default_region.to_string());
    let pipeline = PipelineKey {
        account: account.to_string(),
        region: region.clone(),
        pipeline: request.pipeline.clone(),
    };
    let token = ApprovalToken::new(&request.token);
    // Only a request naming the approval CodePipeline has waiting, with its current token, is announced: anyone who
    // can publish on the topic could otherwise announce a request of their own.
    let pending = ports
        .pipelines
        .pending(&request.pipeline, &request.stage, &request.action)
        .await?;
    let pending = match pending {
        Some(p) if p.token == token => p,
        Some(_) => {
            return Ok(Announced::NotPending {
                token_digest: token.digest(),
                why: format!(
                    "CodePipeline's {} / {} of {} waits with another token",
                    request.stage, request.action, request.pipeline
                ),
            })
        }
        None => {
            return Ok(Announced::NotPending {
                token_digest: token.digest(),
                why: format!(
                    "CodePipeline has no approval waiting at {} / {} of {}",
                    request.stage, request.action, request.pipeline
                ),
            })
        }
    };
    let execution_id = match pending.execution_id {
        Some(e) => Some(e),
        None => waiting_execution(ports.timelines, &pipeline, &request.stage, &request.action).await?,
    };
    let fresh = ManualApproval {
        account: account.to_string(),
        region,
        pipeline: request.pipeline.clone(),
        stage: request.stage.clone(),
        action: request.action.clone(),
        token,
        execution_id,
        requested_at: received_at,
        expires: request.expires.clone(),
        custom_data: request.custom_data.clone(),
        notified: false,
        outcome: None,
    };
    let stored = ports.manual.record_request(&fresh).await?;
    let token_digest = stored.token.digest();
    if stored.notified {
        return Ok(Announced::Duplicate { token_digest });
    }
    let notification = enriched_notification(ports, &stored).await;
    ports.notifier.publish(&notification).await?;
    ports.manual.mark_notified(&stored).await?;
    Ok(Announced::Published { token_digest })
}

/// The enriched message. What cannot be read is said in the message rather than holding it back.
pub async fn enriched_notification(ports: &RequestPorts<'_>, r: &ManualApproval) -> Notification {
    let mut lines = Vec::new();
    if let Some(c) = r.custom_data.as_deref().filter(|c| !c.trim().is_empty()) {
        lines.push(format!("Note from the pipeline: {}", cut(c.trim(), 500)));
    }
    let execution = r.execution_id.clone();
    match &execution {
        None => {
            lines.push("Execution: not recorded yet (decide in the console, or wait for Tollgate to record it)".into())
        }
        Some(e) => {
            lines.push(format!("Execution `{e}` waits at {} / {}.", r.stage, r.action));
            let key = ExecutionKey {
                account: r.account.clone(),
                region: r.region.clone(),
                pipeline: r.pipeline.clone(),
                execution_id: e.clone(),
            };
            match execution_timeline(ports.timelines, &key).await {
                Ok(Some(t)) => {
                    for s in &t.source_revisions {
                        let id = s
                            .revision_id
                            .as_deref()
                            .map(crate::record::event::short_revision)
                            .unwrap_or("unknown revision");
                        lines.push(match &s.summary {
                            Some(m) => format!("Change: `{id}` {}", cut(m.lines().next().unwrap_or(""), 200)),
                            None => format!("Change: `{id}`"),
                        });
                    }
                    if t.source_revisions.is_empty() {
                        lines.push("Change: no source revision recorded".into());
                    }
                }
                Ok(None) => lines.push("Change: nothing recorded for this execution".into()),
                Err(err) => lines.push(format!("Change: could not be read ({err})")),
            }
            lines.extend(gate_lines(ports, r, e).await);
        }
    }
    if let Some(x) = &r.expires {
        lines.push(format!("Expires: {x}"));
    }
    let mut next_steps = Vec::new();
    match &execution {
        Some(e) => {
            let target = format!("--pipeline {} --stage {} --execution {}", r.pipeline, r.stage, e);
            next_steps.push(format!("tollgate approve {target} --reason \"...\""));
            next_steps.push(format!("tollgate reject {target} --reason \"...\""));
            next_steps.push(format!("/tollgate approve {} {} {e} <reason>", r.pipeline, r.stage));
        }
        None => next_steps.push("Approve or reject in the CodePipeline console".into()),
    }
    Notification {
        key: format!("manual-approval:{}", &r.token.digest()[..16]),
        kind: NotificationKind::ApprovalNeeded,
        severity: Severity::Warning,
        account: r.account.clone(),
        region: r.region.clone(),
        pipeline: Some(r.pipeline.clone()),
        thread: match &execution {
            Some(e) => format!("{}/{e}", r.pipeline),
            None => r.pipeline.clone(),
        },
        title: format!("{}: approval needed at {} / {}", r.pipeline, r.stage, r.action),
        lines,
        next_steps,
        // The console's own review link carries the token; the pipeline's page does not.
        link: Some(format!(
            "https://{0}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{1}/view?region={0}",
            r.region, r.pipeline
        )),
        resources: vec![format!(
            "arn:aws:codepipeline:{}:{}:{}",
            r.region, r.account, r.pipeline
        )],
    }
}

/// The execution's latest gate decision per stage, found in the pipeline's audit trail, with every check.
pub(super) async fn gate_lines(ports: &RequestPorts<'_>, r: &ManualApproval, execution_id: &str) -> Vec<String> {
    let entries = match ports
        .audit
        .recent(&pipeline_scope(&r.pipeline_key()), GATE_DECISIONS_SEARCHED)
        .await
    {
        Ok(e) => e,
        Err(e) => return vec![format!("Gate: decisions could not be read ({e})")],
    };
    let prefix = format!("{execution_id}/");
    // Newest first: the first entry of a stage is its latest decision.
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.action == action::GATE_DECISION) {
        if let Some(stage) = e.subject.strip_prefix(&prefix) {
            if let Some(id) = e.detail.get("decision_id").and_then(Value::as_str) {
                latest.entry(stage.to_string()).or_insert_with(|| id.to_string());
            }
        }
    }
    if latest.is_empty() {
        return vec!["Gate: no Tollgate gate decision recorded for this execution".into()];
    }
    let mut lines = Vec::new();
    for (stage, id) in latest {
        match ports.decisions.decision(&id).await {
            Ok(Some(d)) => {
                lines.push(format!(
                    "Gate at {stage}: {} ({})",
                    d.outcome_word(),
                    cut(&d.summary, 300)
                ));
                for c in &d.checks {
                    let mark = match c.status {
                        CheckStatus::Pass => "✓",
                        CheckStatus::Wait => "…",
                        _ => "✗",
                    };
                    lines.push(format!("  {mark} {}", cut(&c.message, 200)));
                }
            }
            Ok(None) => lines.push(format!("Gate at {stage}: decision {id} (expired from the table)")),
            Err(e) => lines.push(format!("Gate at {stage}: decision {id} could not be read ({e})")),
        }
    }
    lines
}
