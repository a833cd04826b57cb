//! Approvals from chat and CodePipeline Manual approval actions (docs/approvals.md).
//!
//! The `approval` function authenticates a chat request by its signature (in `tollgate-aws`), then hands this module
//! a parsed [`ChatCommand`]. Who decides is the chat user the platform signed for, mapped to an IAM principal by a
//! [`LinkedIdentity`] an administrator made with `tollgate identity link`: a body field naming a principal or an
//! approver is never read. Authorisation uses the policy's `approval` rules ([`ApprovalCheck`]: ARN patterns and
//! groups). A refusal answers 403 and is appended to the pipeline's audit trail as `approval.refused`.
//!
//! Manual approvals: the SNS message of a Manual approval action is stored with its token ([`ManualApproval`]),
//! enriched with what Tollgate knows of the execution and announced once; a decision on that stage calls
//! `PutApprovalResult` once ([`ApprovalResults`]), whatever the number of deliveries or repeated decisions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::audit::{action, pipeline_scope, AuditLog, NewAuditEntry};
use crate::gate::policy::{authorise_by_check, ApprovalCheck, ApprovalDecision, AuthorisedBy, CheckStatus, Groups};
use crate::gate::{ApprovalKey, ApprovalRecord, ApprovalRecords, GateControls, GateDecisions, OverrideRecord};
use crate::record::keys::{ExecutionKey, PipelineKey};
use crate::record::parse::ApprovalRequest;
use crate::record::ports::{Notifier, NotifyError, StoreError, TimelineQueries};
use crate::record::query::execution_timeline;
use crate::tell::notify::{Notification, NotificationKind, Severity};

/// Who Tollgate's own entries about manual approvals are by.
pub const APPROVAL_FUNCTION: &str = "tollgate:approval";
/// A signed request is accepted this many seconds either side of its timestamp.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// `PutApprovalResult`'s `result.summary` is at most 512 characters.
pub const MAX_SUMMARY_CHARS: usize = 512;
/// How many recent audit entries of a pipeline are searched for the execution's gate decisions.
pub const GATE_DECISIONS_SEARCHED: usize = 100;
/// How many of a pipeline's latest executions are searched for the one waiting at a Manual approval action.
pub const EXECUTIONS_SEARCHED: usize = 10;

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

// ---------------------------------------------------------------------------------------------------------------
// Identities.

/// A chat user as the platform identified it: `chat:<workspace>:<user>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChatUser {
    pub workspace: String,
    pub user: String,
}

impl ChatUser {
    pub fn new(workspace: &str, user: &str) -> Result<ChatUser, ChatError> {
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !ok(workspace) || !ok(user) {
            return Err(ChatError::Invalid(format!(
                "chat identity {workspace:?}:{user:?} is not usable (letters, digits, - _ . only, 1 to 64 each)"
            )));
        }
        Ok(ChatUser {
            workspace: workspace.to_string(),
            user: user.to_string(),
        })
    }

    /// `chat:T0001:U0001` or `T0001:U0001`.
    pub fn parse(text: &str) -> Result<ChatUser, ChatError> {
        let t = text.trim();
        let t = t.strip_prefix("chat:").unwrap_or(t);
        match t.split_once(':') {
            Some((w, u)) => ChatUser::new(w, u),
            None => Err(ChatError::Invalid(format!(
                "{text:?} is not a chat identity (expected chat:<workspace>:<user>, e.g. chat:T0001:U0001)"
            ))),
        }
    }

    pub fn id(&self) -> String {
        format!("chat:{}:{}", self.workspace, self.user)
    }
}

impl fmt::Display for ChatUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chat:{}:{}", self.workspace, self.user)
    }
}

/// A chat user linked to the IAM principal it decides as (`tollgate identity link`). Groups are not part of the
/// link: membership is decided by the approvers' group declarations from the principal's ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedIdentity {
    pub chat_user: ChatUser,
    pub principal_arn: String,
    /// Who linked it (the administrator's ARN, from STS).
    pub linked_by: String,
    pub at: DateTime<Utc>,
}

/// Where chat identities are linked to principals.
#[async_trait]
pub trait ChatIdentities: Send + Sync {
    async fn identity(&self, user: &ChatUser) -> Result<Option<LinkedIdentity>, StoreError>;
    async fn link(&self, identity: &LinkedIdentity) -> Result<(), StoreError>;
    /// Removes the link; returns it, None when there was none.
    async fn unlink(&self, user: &ChatUser) -> Result<Option<LinkedIdentity>, StoreError>;
}

/// Remembers the signatures of accepted requests, so a captured request cannot be sent again.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    /// True the first time `signature_digest` is seen; false if it was seen before. Kept at least until `keep_until`.
    async fn first_sighting(&self, signature_digest: &str, keep_until: DateTime<Utc>) -> Result<bool, StoreError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Commands.

/// What a chat user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    Reject,
    /// Pass the gate whatever its checks say (the gate honours it for its policy's approvers); reason mandatory.
    Override,
}

impl DecisionKind {
    pub fn parse(word: &str) -> Option<DecisionKind> {
        match word.trim().to_ascii_lowercase().as_str() {
            "approve" => Some(DecisionKind::Approve),
            "reject" => Some(DecisionKind::Reject),
            "override" => Some(DecisionKind::Override),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Approve => "approve",
            DecisionKind::Reject => "reject",
            DecisionKind::Override => "override",
        }
    }

    fn past(self) -> &'static str {
        match self {
            DecisionKind::Approve => "approved",
            DecisionKind::Reject => "rejected",
            DecisionKind::Override => "overrode",
        }
    }

    fn audit_action(self) -> &'static str {
        match self {
            DecisionKind::Approve => action::APPROVAL_APPROVE,
            DecisionKind::Reject => action::APPROVAL_REJECT,
            DecisionKind::Override => action::OVERRIDE,
        }
    }
}

impl From<ApprovalDecision> for DecisionKind {
    fn from(d: ApprovalDecision) -> Self {
        match d {
            ApprovalDecision::Approve => DecisionKind::Approve,
            ApprovalDecision::Reject => DecisionKind::Reject,
        }
    }
}

/// The stage of an execution a decision is about; account and region default to the endpoint's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub pipeline: String,
    pub stage: String,
    pub execution_id: String,
}

impl Target {
    pub fn key(&self, default_account: &str, default_region: &str) -> ApprovalKey {
        ApprovalKey {
            account: self.account.clone().unwrap_or_else(|| default_account.to_string()),
            region: self.region.clone().unwrap_or_else(|| default_region.to_string()),
            pipeline: self.pipeline.clone(),
            execution_id: self.execution_id.clone(),
            stage: self.stage.clone(),
        }
    }
}

/// A decision asked for in chat, by the user the platform signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCommand {
    pub user: ChatUser,
    pub decision: DecisionKind,
    pub target: Target,
    pub reason: Option<String>,
}

/// Why a chat request or a decision could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The request is malformed: the message says what to send instead.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The slash command's usage, shown with every malformed command.
pub const USAGE: &str = "usage: /tollgate approve|reject|override <pipeline> <stage> <execution-id> <reason...>";

/// Parses an `application/x-www-form-urlencoded` body: an interactive message (`payload=<JSON>`, as chat buttons
/// send) or a slash command (`team_id`, `user_id`, `text=approve <pipeline> <stage> <execution-id> <reason...>`).
/// The user is the one the platform put in the signed body; fields naming a principal or an approver are ignored.
pub fn parse_chat_body(body: &str) -> Result<ChatCommand, ChatError> {
    let form = parse_form(body)?;
    if let Some(payload) = form.get("payload") {
        return parse_interactive(payload);
    }
    let field = |name: &str| {
        form.get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ChatError::Invalid(format!("the request has no `{name}` field ({USAGE})")))
    };
    let user = ChatUser::new(field("team_id")?, field("user_id")?)?;
    let text = field("text")?;
    let mut words = text.split_whitespace();
    let decision = words
        .next()
        .and_then(DecisionKind::parse)
        .ok_or_else(|| ChatError::Invalid(format!("unknown command {text:?}; {USAGE}")))?;
    let (Some(pipeline), Some(stage), Some(execution_id)) = (words.next(), words.next(), words.next()) else {
        return Err(ChatError::Invalid(format!(
            "missing pipeline, stage or execution id; {USAGE}"
        )));
    };
    let reason = words.collect::<Vec<_>>().join(" ");
    Ok(ChatCommand {
        user,
        decision,
        target: target_of(pipeline, stage, execution_id)?,
        reason: Some(reason).filter(|r| !r.is_empty()),
    })
}

fn target_of(pipeline: &str, stage: &str, execution_id: &str) -> Result<Target, ChatError> {
    // `account/region/pipeline` names a pipeline of another account or region than the endpoint's.
    let parts: Vec<&str> = pipeline.split('/').collect();
    let (account, region, pipeline) = match parts.as_slice() {
        [p] => (None, None, *p),
        [a, r, p] => (Some(a.to_string()), Some(r.to_string()), *p),
        _ => {
            return Err(ChatError::Invalid(format!(
                "{pipeline:?} is not a pipeline (a name, or account/region/name)"
            )))
        }
    };
    let t = Target {
        account,
        region,
        pipeline: pipeline.to_string(),
        stage: stage.to_string(),
        execution_id: execution_id.to_string(),
    };
    validate_target(&t)?;
    Ok(t)
}

fn validate_target(t: &Target) -> Result<(), ChatError> {
    let fields = [
        ("account", t.account.as_deref().unwrap_or("x")),
        ("region", t.region.as_deref().unwrap_or("x")),
        ("pipeline", t.pipeline.as_str()),
        ("stage", t.stage.as_str()),
        ("execution id", t.execution_id.as_str()),
    ];
    for (name, value) in fields {
        // CodePipeline names are [A-Za-z0-9.@_-]{1,100}; `#` would break the table's keys.
        if value.is_empty()
            || value.len() > 100
            || !value.chars().all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c))
        {
            return Err(ChatError::Invalid(format!("{name} {value:?} is not valid ({USAGE})")));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Interactive {
    #[serde(default)]
    team: Option<IdOnly>,
    user: InteractiveUser,
    actions: Vec<InteractiveAction>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct InteractiveUser {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct InteractiveAction {
    value: String,
}

/// What Tollgate puts in a button's `value`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ButtonValue {
    decision: DecisionKind,
    #[serde(flatten)]
    target: Target,
    #[serde(default)]
    reason: Option<String>,
}

fn parse_interactive(payload: &str) -> Result<ChatCommand, ChatError> {
    let p: Interactive = serde_json::from_str(payload)
        .map_err(|e| ChatError::Invalid(format!("the interactive payload is not understood: {e}")))?;
    let workspace = p
        .team
        .map(|t| t.id)
        .or(p.user.team_id)
        .ok_or_else(|| ChatError::Invalid("the interactive payload names no workspace (team.id)".into()))?;
    let user = ChatUser::new(&workspace, &p.user.id)?;
    let [action] = p.actions.as_slice() else {
        return Err(ChatError::Invalid(format!(
            "the interactive payload has {} actions, expected one",
            p.actions.len()
        )));
    };
    let v: ButtonValue = serde_json::from_str(&action.value)
        .map_err(|e| ChatError::Invalid(format!("the button's value is not a Tollgate decision: {e}")))?;
    validate_target(&v.target)?;
    Ok(ChatCommand {
        user,
        decision: v.decision,
        target: v.target,
        reason: v.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty()),
    })
}

/// The value of a chat button that decides a stage (the enriched message's actions carry it).
pub fn button_value(decision: DecisionKind, key: &ApprovalKey) -> String {
    json!({"decision": decision.as_str(), "account": key.account, "region": key.region, "pipeline": key.pipeline,
        "stage": key.stage, "execution_id": key.execution_id})
    .to_string()
}

/// Decodes `a=b&c=d` with `+` as space and `%XX` escapes. A repeated field is refused: which one counts would be a
/// guess, and the body is what was signed.
pub fn parse_form(body: &str) -> Result<BTreeMap<String, String>, ChatError> {
    let mut out = BTreeMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if out.insert(k.clone(), v).is_some() {
            return Err(ChatError::Invalid(format!("the form repeats the field `{k}`")));
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ChatError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hexits = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hexits
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ChatError::Invalid("the form has a malformed %-escape".to_string()))?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ChatError::Invalid("the form is not UTF-8".to_string()))
}

// ---------------------------------------------------------------------------------------------------------------
// Authorisation.

/// Who may decide from chat: a policy's `approval` section and the `groups` it names, written as in a policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointApprovers {
    pub approval: ApprovalCheck,
    #[serde(default)]
    pub groups: Option<Groups>,
}

/// Reads the endpoint's approvers (YAML or JSON):
///
/// ```yaml
/// approval: {approvers: ["arn:aws:sts::111122223333:assumed-role/ReleaseManager/*"], groups: [release-managers]}
/// groups: {release-managers: ["sso:111122223333:ReleaseManager"]}
/// ```
pub fn parse_approvers(text: &str) -> Result<EndpointApprovers, String> {
    let a: EndpointApprovers = serde_yaml::from_str(text).map_err(|e| format!("approvers: {e}"))?;
    if a.approval.approvers.is_empty() && a.approval.groups.is_empty() {
        return Err("approvers: no one can approve: give `approvers` (IAM ARN patterns), `groups`, or both".into());
    }
    if let Some(missing) = a
        .approval
        .groups
        .iter()
        .find(|g| a.groups.as_ref().and_then(|d| d.get(g)).is_none())
    {
        return Err(format!("approvers: group {missing} is not declared under `groups`"));
    }
    Ok(a)
}

/// Whether `principal_arn` may decide under the endpoint's approvers: the policy's own rule
/// ([`authorise_by_check`]), so chat, the CLI and the gate agree.
pub fn authorise(approvers: &EndpointApprovers, principal_arn: &str) -> Result<AuthorisedBy, String> {
    authorise_by_check(&approvers.approval, approvers.groups.as_ref(), principal_arn).map_err(|r| r.message)
}

// ---------------------------------------------------------------------------------------------------------------
// Manual approvals.

/// A Manual approval action's token. Its `Debug` and `Display` show only a digest: the token decides the action.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalToken(String);

impl ApprovalToken {
    pub fn new(token: &str) -> Self {
        ApprovalToken(token.to_string())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Hex SHA-256 of the token: its name in keys and logs.
    pub fn digest(&self) -> String {
        digest(&self.0)
    }
}

impl fmt::Debug for ApprovalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApprovalToken(sha256:{})", &self.digest()[..16])
    }
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

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn scope_of(key: &ApprovalKey) -> String {
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

fn already_message(r: &ManualApproval, o: &ManualOutcome) -> String {
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
async fn pending_manual(ports: &DecisionPorts<'_>, key: &ApprovalKey) -> Result<Option<ManualApproval>, StoreError> {
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
    pub approvers: EndpointApprovers,
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
    let authorised = match authorise(&settings.approvers, &identity.principal_arn) {
        Ok(a) => a,
        Err(why) => return refuse(why).await,
    };
    let who = Decider {
        principal_arn: identity.principal_arn.clone(),
        groups: authorised.groups,
        chat_user: Some(command.user.clone()),
    };
    let result = decide(
        ports,
        &key,
        &who,
        command.decision,
        command.reason.as_deref(),
        settings.approvers.approval.reason_required,
        now,
    )
    .await;
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

// ---------------------------------------------------------------------------------------------------------------
// Manual approval requests (SNS).

/// Everything announcing a manual approval reads or writes.
pub struct RequestPorts<'a> {
    pub manual: &'a dyn ManualApprovals,
    pub timelines: &'a dyn TimelineQueries,
    pub audit: &'a dyn AuditLog,
    pub decisions: &'a dyn GateDecisions,
    pub notifier: &'a dyn Notifier,
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
}

/// Why an approval request could not be handled; every case is worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
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
    let execution_id = waiting_execution(ports.timelines, &pipeline, &request.stage, &request.action).await?;
    let fresh = ManualApproval {
        account: account.to_string(),
        region,
        pipeline: request.pipeline.clone(),
        stage: request.stage.clone(),
        action: request.action.clone(),
        token: ApprovalToken::new(&request.token),
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
                            .map(|c| &c[..c.len().min(12)])
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
async fn gate_lines(ports: &RequestPorts<'_>, r: &ManualApproval, execution_id: &str) -> Vec<String> {
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
        Ok(lock(&self.manual)
            .entry(manual_key(request))
            .or_insert_with(|| request.clone())
            .clone())
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
