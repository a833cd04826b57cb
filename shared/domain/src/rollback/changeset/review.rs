//! The review of a change set, its progress, the continuation token, and the CloudFormation port.

use super::*;
use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------------------
// The review.

/// What the policy says about a whole change set, with the reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub stack: String,
    pub change_set: String,
    pub change_set_id: Option<String>,
    pub verdict: Verdict,
    /// The classes present, each with the policy's verdict for it.
    pub classes: BTreeMap<RiskClass, Verdict>,
    pub changes: Vec<ClassifiedChange>,
}

/// Applies the policy: the strictest verdict of the classes present, or `harmless` when there are none.
pub fn review(
    stack: &str,
    description: &ChangeSetDescription,
    template: Option<&Template>,
    policy: &RiskPolicy,
) -> Review {
    let changes = classify(&description.changes, template);
    let mut classes = BTreeMap::new();
    for c in &changes {
        for r in &c.risks {
            classes.insert(r.class, policy.verdict(r.class));
        }
    }
    let verdict = classes.values().copied().max().unwrap_or(policy.harmless);
    Review {
        stack: stack.to_string(),
        change_set: description.name.clone(),
        change_set_id: description.id.clone(),
        verdict,
        classes,
        changes,
    }
}

impl Review {
    pub fn risky(&self) -> usize {
        self.changes.iter().filter(|c| !c.risks.is_empty()).count()
    }

    /// One line: "3 changes, 2 risky (iam: approve, removal: approve): approval required".
    pub fn summary(&self) -> String {
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|(c, v)| format!("{}: {}", c.as_str(), v.as_str()))
            .collect();
        let outcome = match self.verdict {
            Verdict::Execute => "executing",
            Verdict::Approve => "approval required",
            Verdict::Deny => "denied",
        };
        let n = self.changes.len();
        if classes.is_empty() {
            format!("{n} change{}, none risky: {outcome}", if n == 1 { "" } else { "s" })
        } else {
            format!(
                "{n} change{}, {} risky ({}): {outcome}",
                if n == 1 { "" } else { "s" },
                self.risky(),
                classes.join(", ")
            )
        }
    }

    /// The risk report, for people: the verdict, then each class present with its changes, then the harmless ones.
    pub fn report(&self) -> String {
        let mut out = format!(
            "Change set {} for stack {}: {}\n",
            self.change_set,
            self.stack,
            self.summary()
        );
        for class in RiskClass::ALL {
            let Some(verdict) = self.classes.get(&class) else {
                continue;
            };
            out.push_str(&format!(
                "\n{} ({}) -> {}\n",
                class.title(),
                class.as_str(),
                verdict.as_str()
            ));
            for c in &self.changes {
                for r in c.risks.iter().filter(|r| r.class == class) {
                    out.push_str(&format!("  - {}: {}\n", c.change.action.as_str(), r.why));
                }
            }
        }
        let harmless: Vec<String> = self
            .changes
            .iter()
            .filter(|c| c.risks.is_empty())
            .map(|c| {
                let replacement = match c.change.replacement {
                    Some(Replacement::True) => " (replaced)",
                    _ => "",
                };
                format!(
                    "  - {} {} ({}){replacement}\n",
                    c.change.action.as_str(),
                    c.change.logical_id,
                    c.change.resource_type
                )
            })
            .collect();
        if !harmless.is_empty() {
            out.push_str("\nother changes\n");
            out.extend(harmless);
        }
        out
    }

    /// The structured record (audit entry detail).
    pub fn record(&self) -> serde_json::Value {
        let classes: BTreeMap<&str, &str> = self.classes.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect();
        let risky: Vec<serde_json::Value> = self
            .changes
            .iter()
            .filter(|c| !c.risks.is_empty())
            .map(|c| {
                serde_json::json!({
                    "logical_id": c.change.logical_id,
                    "type": c.change.resource_type,
                    "action": c.change.action.as_str(),
                    "risks": c.risks.iter().map(|r| serde_json::json!({"class": r.class.as_str(), "why": r.why})).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "stack": self.stack,
            "change_set": self.change_set,
            "change_set_id": self.change_set_id,
            "verdict": self.verdict.as_str(),
            "changes": self.changes.len(),
            "classes": classes,
            "risky": risky,
        })
    }
}

/// The console page of a change set.
pub fn change_set_console_url(region: &str, stack_id: Option<&str>, change_set_id: Option<&str>) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "https://{region}.console.aws.amazon.com/cloudformation/home?region={region}#/stacks/changesets/changes?stackId={}&changeSetId={}",
        enc(stack_id.unwrap_or("")),
        enc(change_set_id.unwrap_or(""))
    )
}

/// The deterministic change-set name of an execution: a retried invocation, or a retry of the action in the same
/// execution, finds the change set the first one created.
pub fn change_set_name(execution_id: &str) -> String {
    let clean: String = execution_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(100)
        .collect();
    format!("tollgate-{clean}")
}

// ---------------------------------------------------------------------------------------------------------------
// The stack's progress.

/// Where a stack is after the change set ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackProgress {
    InProgress,
    Succeeded,
    Failed,
}

/// From a stack status (`UPDATE_COMPLETE`, `UPDATE_ROLLBACK_IN_PROGRESS`, ...). A rollback is a failure even when it
/// completes.
pub fn stack_progress(status: &str) -> StackProgress {
    if status.ends_with("_IN_PROGRESS") {
        StackProgress::InProgress
    } else if status.contains("ROLLBACK") || status.ends_with("_FAILED") {
        StackProgress::Failed
    } else if status.ends_with("_COMPLETE") {
        StackProgress::Succeeded
    } else {
        StackProgress::Failed
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The continuation token.

/// The phase a job is in between invocations: `{"v":1,"p":"create"|"execute","cs":<name>,"f":<epoch s>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesetToken {
    #[serde(rename = "v")]
    pub version: u8,
    #[serde(rename = "p")]
    pub phase: Phase,
    #[serde(rename = "cs")]
    pub change_set: String,
    /// When the job was first invoked, epoch seconds.
    #[serde(rename = "f")]
    pub first_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the change set to be created.
    Create,
    /// The change set was executed: following the stack.
    Execute,
}

impl ChangesetToken {
    pub const VERSION: u8 = 1;

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<ChangesetToken, String> {
        let t: ChangesetToken = serde_json::from_str(text)
            .map_err(|e| format!("the continuation token is not one the changeset action wrote: {e}"))?;
        if t.version != Self::VERSION {
            return Err(format!(
                "continuation token version {} is not {}",
                t.version,
                Self::VERSION
            ));
        }
        Ok(t)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The port.

/// A CloudFormation call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackApiError {
    /// Throttling, a timeout, a 5xx: a later invocation may succeed.
    #[error("{0}")]
    Transient(String),
    /// Refused for good (validation, capabilities, permissions): the job fails with it.
    #[error("{0}")]
    Refused(String),
}

/// A stack as DescribeStacks shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackState {
    pub stack_id: String,
    pub status: String,
    pub status_reason: Option<String>,
}

/// What CreateChangeSet needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChangeSet {
    pub stack: String,
    pub name: String,
    pub template_body: String,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub role_arn: Option<String>,
    /// CREATE for a stack that does not exist yet, else UPDATE.
    pub create_stack: bool,
    pub description: String,
}

/// CloudFormation, as the changeset action uses it.
#[async_trait]
pub trait ChangeSets: Send + Sync {
    /// DescribeStacks; `None` when the stack does not exist.
    async fn stack(&self, stack: &str) -> Result<Option<StackState>, StackApiError>;
    /// CreateChangeSet; `Ok(false)` when a change set of that name exists already (a retried invocation).
    async fn create(&self, change_set: &NewChangeSet) -> Result<bool, StackApiError>;
    /// DescribeChangeSet, every page; `None` when there is no such change set.
    async fn describe(&self, stack: &str, name: &str) -> Result<Option<ChangeSetDescription>, StackApiError>;
    /// ExecuteChangeSet (idempotent through its client request token).
    async fn execute(&self, stack: &str, name: &str) -> Result<(), StackApiError>;
    /// The first `*_FAILED` reason of the stack's latest operation (DescribeStackEvents), if any.
    async fn failure_reason(&self, stack: &str, since: Option<DateTime<Utc>>) -> Result<Option<String>, StackApiError>;
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
