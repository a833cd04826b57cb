//! Chat approvals: who the chat user is (linked identities, replay guard), the commands a chat request carries,
//! and the approvers of the approval endpoint.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::action;
use crate::gate::policy::{authorise_by_check, ApprovalCheck, ApprovalDecision, AuthorisedBy, Groups};
use crate::gate::ApprovalKey;
use crate::record::ports::StoreError;

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

    pub(super) fn past(self) -> &'static str {
        match self {
            DecisionKind::Approve => "approved",
            DecisionKind::Reject => "rejected",
            DecisionKind::Override => "overrode",
        }
    }

    pub(super) fn audit_action(self) -> &'static str {
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

pub(super) fn target_of(pipeline: &str, stage: &str, execution_id: &str) -> Result<Target, ChatError> {
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

pub(super) fn validate_target(t: &Target) -> Result<(), ChatError> {
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
pub(super) struct Interactive {
    #[serde(default)]
    team: Option<IdOnly>,
    user: InteractiveUser,
    actions: Vec<InteractiveAction>,
}

#[derive(Deserialize)]
pub(super) struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
pub(super) struct InteractiveUser {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct InteractiveAction {
    value: String,
}

/// What Tollgate puts in a button's `value`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ButtonValue {
    decision: DecisionKind,
    #[serde(flatten)]
    target: Target,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) fn parse_interactive(payload: &str) -> Result<ChatCommand, ChatError> {
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

pub(super) fn percent_decode(s: &str) -> Result<String, ChatError> {
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
