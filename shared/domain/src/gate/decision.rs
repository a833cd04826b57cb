//! The gate's decisions: the job's answer to CodePipeline, the decision record and its port, and the chat message
//! of a blocked gate.

use super::*;
use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gate::policy::{CheckResult, Decision, Outcome};
use crate::record::ports::StoreError;

use crate::tell::notify::{Notification, NotificationKind, Severity};

// ---------------------------------------------------------------------------------------------------------------
// The answer and the decision record.

/// CodePipeline's failure types the gate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The policy said no.
    JobFailed,
    /// The gate could not be configured: bad UserParameters, a missing or invalid policy, an unreadable artifact.
    ConfigurationError,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::JobFailed => "JobFailed",
            FailureKind::ConfigurationError => "ConfigurationError",
        }
    }
}

/// What the gate answers CodePipeline: exactly what is sent, kept with the decision so a retry re-sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub enum JobAnswer {
    /// PutJobSuccessResult: with a continuation token (wait: invoke me again), or with output variables (pass).
    Success {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continuation_token: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        output_variables: BTreeMap<String, String>,
        external_execution_id: String,
        summary: String,
    },
    /// PutJobFailureResult.
    Failure {
        kind: FailureKind,
        message: String,
        external_execution_id: String,
    },
}

/// Which policy a decision applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The path in the input artifact.
    pub file: String,
    pub name: String,
}

/// One evaluation of a gate: who (the gate), when, for which job, pipeline, execution and stage, the outcome and
/// every check with what it observed and required. Recorded once per job id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    /// The decision's id: the CodePipeline job id it answers (unique, and the same when Lambda retries the job).
    pub id: String,
    pub job_id: String,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// None only when the job's details could not be read.
    pub context: Option<JobContext>,
    pub policy: Option<PolicyRef>,
    pub outcome: Outcome,
    /// One line: the engine's summary, or why the gate could not evaluate.
    pub summary: String,
    /// Every check's result (empty when the policy could not be read).
    pub checks: Vec<CheckResult>,
    /// What engineers read: `Decision::explain()`, or the configuration error.
    pub explanation: String,
    pub first_evaluated_at: DateTime<Utc>,
    /// The earlier decisions of the same wait, oldest first (from the continuation token).
    pub previous: Vec<String>,
    pub answer: JobAnswer,
    /// An override found for this execution and stage, and whether it was honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_applied: Option<OverrideOutcome>,
}

impl GateDecision {
    /// True for the decisions engineers are told about: every failure, and a wait when it starts.
    pub fn notifies(&self) -> bool {
        match self.outcome {
            Outcome::Fail => true,
            Outcome::Wait { .. } => self.previous.is_empty(),
            Outcome::Pass => false,
        }
    }

    pub fn outcome_word(&self) -> &'static str {
        outcome_word(&self.outcome)
    }
}

pub fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Wait { .. } => "wait",
        Outcome::Fail => "fail",
    }
}

/// Cuts `text` to `max` characters; a cut text ends with a note saying how much was left out and where to read it.
pub fn truncate_with_note(text: &str, max: usize, whole_at: &str) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let note_for = |left_out: usize| format!("\n… (truncated: {left_out} more characters; {whole_at})");
    // The note's own length depends on the number in it; the longest number it can hold is `count`.
    let keep = max.saturating_sub(note_for(count).chars().count());
    let kept: String = text.chars().take(keep).collect();
    format!("{kept}{}", note_for(count - keep))
}

/// The answer to a job for a decision of the policy engine.
pub fn answer_for(decision_id: &str, decision: &Decision, continuation: Option<&Continuation>) -> JobAnswer {
    let external_execution_id: String = decision_id.chars().take(MAX_EXTERNAL_EXECUTION_ID_CHARS).collect();
    let whole_at = format!("the whole explanation is gate decision {decision_id}");
    match &decision.outcome {
        Outcome::Pass => JobAnswer::Success {
            continuation_token: None,
            output_variables: BTreeMap::from([
                (DECISION_ID_VARIABLE.to_string(), decision_id.to_string()),
                (OUTCOME_VARIABLE.to_string(), "PASS".to_string()),
            ]),
            external_execution_id,
            summary: truncate_with_note(&decision.summary, MAX_EXECUTION_SUMMARY_CHARS, &whole_at),
        },
        Outcome::Wait { .. } => JobAnswer::Success {
            continuation_token: continuation.map(Continuation::encode),
            output_variables: BTreeMap::new(),
            external_execution_id,
            summary: truncate_with_note(
                &format!("waiting: {}", decision.summary),
                MAX_EXECUTION_SUMMARY_CHARS,
                &whole_at,
            ),
        },
        Outcome::Fail => JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: truncate_with_note(&decision.explain(), MAX_FAILURE_MESSAGE_CHARS, &whole_at),
            external_execution_id,
        },
    }
}

/// What recording a decision found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionWrite {
    /// Recorded now.
    New,
    /// This job was decided before (a retried invocation): the stored decision, which is the answer to send again.
    Duplicate { stored: Box<GateDecision>, notified: bool },
}

/// Where gate decisions are kept.
#[async_trait]
pub trait GateDecisions: Send + Sync {
    /// Records `decision` with one conditional write keyed by its job id; a second decision for the same job is not
    /// written and the first one is returned instead.
    async fn record_decision(&self, decision: &GateDecision) -> Result<DecisionWrite, StoreError>;
    /// Notes that engineers were told about the decision.
    async fn mark_notified(&self, decision_id: &str) -> Result<(), StoreError>;
    async fn decision(&self, decision_id: &str) -> Result<Option<GateDecision>, StoreError>;
}

// ---------------------------------------------------------------------------------------------------------------
// Telling engineers.

/// The chat and email message of a failed gate, or of a gate that starts waiting.
pub fn gate_blocked_notification(decision: &GateDecision) -> Notification {
    let (account, region, pipeline, stage, thread, link) = match &decision.context {
        Some(c) => (
            c.account.clone(),
            c.region.clone(),
            Some(c.pipeline.clone()),
            format!("{} / {}", c.stage, c.action),
            format!("{}/{}", c.pipeline, c.execution_id),
            Some(format!(
                "https://{r}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{p}/executions/{e}/timeline?region={r}",
                r = c.region,
                p = c.pipeline,
                e = c.execution_id
            )),
        ),
        None => (
            String::new(),
            String::new(),
            None,
            "a gate".to_string(),
            format!("gate/{}", decision.job_id),
            None,
        ),
    };
    let gate = decision.policy.as_ref().map(|p| p.name.as_str()).unwrap_or("gate");
    let title = match (&decision.outcome, &pipeline) {
        (Outcome::Wait { .. }, Some(p)) => format!("{p}: {gate} is holding {stage}"),
        (_, Some(p)) => format!("{p}: {gate} blocked {stage}"),
        (_, None) => format!("{gate} blocked {stage}"),
    };
    let mut lines: Vec<String> = decision.explanation.lines().map(|l| l.trim_end().to_string()).collect();
    if let Some(c) = &decision.context {
        lines.push(format!("Execution `{}`", c.execution_id));
    }
    lines.push(format!("Decision `{}`", decision.id));
    let mut next_steps = Vec::new();
    match decision.outcome {
        Outcome::Wait { recheck_at } => next_steps.push(format!(
            "Nothing to do if the wait is expected: the gate checks again (next at {} UTC) and goes on by itself",
            recheck_at.format("%H:%M")
        )),
        _ => {
            next_steps.push("Read the failed checks above: each says what it observed and what it requires".into());
            next_steps.push("Fix the cause, then retry the stage to evaluate the gate again".into());
        }
    }
    if let Some(policy) = &decision.policy {
        next_steps.push(format!("The policy is {} in the pipeline's source", policy.file));
    }
    Notification {
        key: format!("gate_blocked@{}", decision.id),
        kind: NotificationKind::GateBlocked,
        severity: Severity::Warning,
        account,
        region,
        pipeline,
        thread,
        title,
        lines,
        next_steps,
        link,
        resources: Vec::new(),
    }
}
