//! What engineers are told, and how it reads in chat and in email.
//!
//! A notification is decided from a record's history before and after one event, so the decision is the same when
//! the event is delivered again: a redelivery re-sends only what was not yet marked published, never a second copy.
//! Each notification has a key unique within its record (kind, entity, and the time of the transition).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::record::event::{DeliveryEvent, EventBody};
use crate::record::keys::ExecutionKey;
use crate::record::ports::ExecutionSummary;
use crate::record::timeline::{fold_deployment, is_failure, ExecutionTimeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    ExecutionFailed,
    ExecutionRestored,
    StageFailed,
    DeploymentFailed,
    StackRollback,
    ApprovalNeeded,
    /// The weekly delivery metrics digest (not about one record).
    WeeklyDigest,
    /// A gate failed, or started waiting (`tollgate_domain::gate`).
    GateBlocked,
    /// A Manual approval request CodePipeline was not waiting for was published on the approval topic and refused.
    ApprovalRequestRefused,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::ExecutionFailed => "execution_failed",
            NotificationKind::ExecutionRestored => "execution_restored",
            NotificationKind::StageFailed => "stage_failed",
            NotificationKind::DeploymentFailed => "deployment_failed",
            NotificationKind::StackRollback => "stack_rollback",
            NotificationKind::ApprovalNeeded => "approval_needed",
            NotificationKind::WeeklyDigest => "weekly_digest",
            NotificationKind::GateBlocked => "gate_blocked",
            NotificationKind::ApprovalRequestRefused => "approval_request_refused",
        }
    }
}

/// One message to engineers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique within the record the event belongs to; what marks it published.
    pub key: String,
    pub kind: NotificationKind,
    pub severity: Severity,
    pub account: String,
    pub region: String,
    pub pipeline: Option<String>,
    /// Groups related messages in one chat thread (the execution, deployment or stack).
    pub thread: String,
    pub title: String,
    /// Facts, one per line, in order of importance.
    pub lines: Vec<String>,
    pub next_steps: Vec<String>,
    pub link: Option<String>,
    pub resources: Vec<String>,
}

/// Formats a duration the way engineers say it: "1h 12m", "4m 05s", "35s".
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m"),
    }
}

fn console_pipeline_url(region: &str, pipeline: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}/view?region={region}")
}

fn console_execution_url(region: &str, pipeline: &str, execution_id: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}/executions/{execution_id}/timeline?region={region}"
    )
}

fn pipeline_arn(k: &ExecutionKey) -> String {
    format!("arn:aws:codepipeline:{}:{}:{}", k.region, k.account, k.pipeline)
}

impl Notification {
    /// The Amazon Q Developer in chat applications (AWS Chatbot) custom notification document.
    pub fn chat_message(&self) -> Value {
        let icon = match self.severity {
            Severity::Critical => ":rotating_light:",
            Severity::Warning => ":warning:",
            Severity::Info => ":white_check_mark:",
        };
        let mut description = self.lines.join("\n");
        if let Some(link) = &self.link {
            description.push_str(&format!("\n<{link}|Open in the console>"));
        }
        let mut keywords: Vec<String> = vec![self.kind.as_str().to_string(), self.severity.as_str().to_string()];
        keywords.extend(self.pipeline.clone());
        json!({
            "version": "1.0",
            "source": "custom",
            "id": self.key,
            "content": {
                "textType": "client-markdown",
                "title": format!("{icon} {}", self.title),
                "description": description,
                "nextSteps": self.next_steps,
                "keywords": keywords,
            },
            "metadata": {
                "threadId": self.thread,
                "summary": self.title,
                "eventType": self.kind.as_str(),
                "relatedResources": self.resources,
                "additionalContext": {
                    "account": self.account,
                    "region": self.region,
                    "severity": self.severity.as_str(),
                },
            },
        })
    }

    /// Plain text for email.
    pub fn email_text(&self) -> String {
        let mut out = format!("{}\n{}\n\n", self.title, "=".repeat(self.title.chars().count().min(72)));
        for line in &self.lines {
            out.push_str(&line.replace(['*', '`'], ""));
            out.push('\n');
        }
        if !self.next_steps.is_empty() {
            out.push_str("\nWhat to do next:\n");
            for step in &self.next_steps {
                out.push_str(&format!("  - {step}\n"));
            }
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\nDetails: {link}\n"));
        }
        out.push_str(&format!(
            "\n-- Tollgate ({} {}, {}; kind {}, severity {})\n",
            self.account,
            self.region,
            self.pipeline.as_deref().unwrap_or("no pipeline"),
            self.kind.as_str(),
            self.severity.as_str()
        ));
        out
    }

    /// The email subject line: at most 100 printable ASCII characters (an SNS limit).
    pub fn email_subject(&self) -> String {
        let ascii: String = self
            .title
            .chars()
            .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '-' })
            .collect();
        let subject = format!("[Tollgate] {ascii}");
        subject.chars().take(100).collect()
    }
}

/// Notifications an execution event causes. `before` is the record without the event, `after` with it.
/// `previous` lists the pipeline's executions (newest first), used only when this execution just succeeded.
pub fn execution_notifications(
    key: &ExecutionKey,
    before: &ExecutionTimeline,
    after: &ExecutionTimeline,
    previous: Option<&[ExecutionSummary]>,
) -> Vec<Notification> {
    let mut out = Vec::new();
    let base = |kind, severity, key_text: String, title: String| Notification {
        key: key_text,
        kind,
        severity,
        account: key.account.clone(),
        region: key.region.clone(),
        pipeline: Some(key.pipeline.clone()),
        thread: format!("{}/{}", key.pipeline, key.execution_id),
        title,
        lines: Vec::new(),
        next_steps: Vec::new(),
        link: Some(console_execution_url(&key.region, &key.pipeline, &key.execution_id)),
        resources: vec![pipeline_arn(key)],
    };
    let commit_line = |t: &ExecutionTimeline| {
        t.source_revisions.first().map(|r| {
            let id = r
                .revision_id
                .as_deref()
                .map(crate::record::event::short_revision)
                .unwrap_or("unknown revision");
            match &r.summary {
                Some(s) => format!("Change: `{id}` {s}"),
                None => format!("Change: `{id}`"),
            }
        })
    };

    // Stages that failed with this event.
    for stage in &after.stages {
        let was = before.stage(&stage.name).map(|s| s.state.as_str());
        if is_failure(&stage.state) && was != Some(stage.state.as_str()) {
            let mut n = base(
                NotificationKind::StageFailed,
                Severity::Warning,
                format!("stage_failed:{}@{}", stage.name, stamp(stage.ended_at)),
                format!("{}: stage {} failed", key.pipeline, stage.name),
            );
            n.lines.push(format!("Execution `{}`", key.execution_id));
            if let Some(a) = stage.actions.iter().find(|a| is_failure(&a.state)) {
                n.lines.push(action_line(a));
                if let Some(link) = a.link() {
                    n.link = Some(link.to_string());
                }
            }
            n.next_steps.push(format!(
                "Retry the {} stage once the cause is fixed, or let a new change supersede it",
                stage.name
            ));
            out.push(n);
        }
    }

    // The execution failed.
    if is_failure(&after.state) && before.state != after.state {
        let mut n = base(
            NotificationKind::ExecutionFailed,
            Severity::Critical,
            format!("execution_failed@{}", stamp(after.ended_at)),
            String::new(),
        );
        match after.failing_action() {
            Some((stage, action)) => {
                n.title = format!("{} failed at {} / {}", key.pipeline, stage.name, action.name);
                n.lines.push(action_line(action));
                if let Some(link) = action.link() {
                    n.lines.push(format!("Logs: {link}"));
                }
            }
            None => {
                n.title = format!("{} failed", key.pipeline);
                n.lines
                    .push("The failing action is not known yet (its event has not arrived).".into());
            }
        }
        n.lines.push(format!("Execution `{}`", key.execution_id));
        n.lines.extend(commit_line(after));
        if let Some(d) = after.duration_secs {
            n.lines.push(format!("Ran for {}", human_duration(d)));
        }
        n.next_steps.push("Read the failing action's summary and logs".into());
        n.next_steps
            .push("Fix forward with a new commit, or retry the failed stage if the cause was transient".into());
        out.push(n);
    }

    // The execution succeeded: restored, if the pipeline's previous completed execution had failed.
    if after.state == "SUCCEEDED" && before.state != "SUCCEEDED" {
        if let (Some(previous), Some(ended)) = (previous, after.ended_at) {
            if let Some((first_failure, failed_runs)) = failure_streak(key, after, previous) {
                let mut n = base(
                    NotificationKind::ExecutionRestored,
                    Severity::Info,
                    format!("restored@{}", stamp(after.ended_at)),
                    format!(
                        "{} restored after {}",
                        key.pipeline,
                        human_duration((ended - first_failure).num_seconds())
                    ),
                );
                n.lines.push(format!(
                    "Execution `{}` succeeded at {}, {} after the first failure at {} ({} failed execution{} before it).",
                    key.execution_id,
                    ended.format("%Y-%m-%d %H:%M:%SZ"),
                    human_duration((ended - first_failure).num_seconds()),
                    first_failure.format("%H:%M:%SZ"),
                    failed_runs,
                    if failed_runs == 1 { "" } else { "s" }
                ));
                n.lines.extend(commit_line(after));
                out.push(n);
            }
        }
    }

    // Approvals waiting.
    for stage in &after.stages {
        for action in stage.actions.iter().filter(|a| a.category == "Approval") {
            let was = before
                .stage(&stage.name)
                .and_then(|s| s.actions.iter().find(|a| a.name == action.name))
                .map(|a| a.state.as_str());
            if action.state == "STARTED" && was != Some("STARTED") {
                let mut n = base(
                    NotificationKind::ApprovalNeeded,
                    Severity::Warning,
                    format!("approval:{}/{}@{}", stage.name, action.name, stamp(action.started_at)),
                    format!("{}: approval needed at {} / {}", key.pipeline, stage.name, action.name),
                );
                n.lines
                    .push(format!("Execution `{}` waits for a decision.", key.execution_id));
                n.lines.extend(commit_line(after));
                n.link = Some(console_pipeline_url(&key.region, &key.pipeline));
                n.next_steps
                    .push("Review the change and approve or reject it in the pipeline".into());
                out.push(n);
            }
        }
    }
    out
}

/// If the last completed execution before `this` failed, returns when the run of failures began and how many
/// executions failed in it. Each earlier execution is read as it stood when `this` ended (states recorded after that
/// are ignored), so an execution that failed only later never makes `this` a restore, whatever the delivery order.
fn failure_streak(
    key: &ExecutionKey,
    this: &ExecutionTimeline,
    previous: &[ExecutionSummary],
) -> Option<(DateTime<Utc>, usize)> {
    let this_start = this.started_at.or(this.ended_at)?;
    let this_end = this.ended_at;
    let mut first_failure = None;
    let mut count = 0;
    for summary in earlier(key, this_start, previous) {
        let r = as_of(summary, this_end);
        match r.state.as_str() {
            s if is_failure(s) => {
                first_failure = r.ended_at.or(Some(summary.started_at));
                count += 1;
            }
            "SUCCEEDED" => break,
            // Still running, superseded or stopped: neither a failure nor a restore point.
            _ => continue,
        }
    }
    first_failure.map(|t| (t, count))
}

/// Whether deciding that `this` success is (or is not) a restore depends on an earlier execution whose end is not
/// recorded yet: one started before `this` and still running as far as the record goes. In time order that is an
/// execution that overlaps `this`; delivered out of order it may be one whose end is late, so the caller waits for a
/// redelivery (a bounded number of times) before deciding.
pub fn restore_undecided(key: &ExecutionKey, this: &ExecutionTimeline, previous: &[ExecutionSummary]) -> bool {
    let Some(this_start) = this.started_at.or(this.ended_at) else {
        return false;
    };
    for summary in earlier(key, this_start, previous) {
        let r = as_of(summary, this.ended_at);
        match r.state.as_str() {
            "SUCCEEDED" => return false,
            s if crate::record::timeline::is_terminal(s) => continue,
            _ => return true,
        }
    }
    false
}

fn earlier<'a>(
    key: &'a ExecutionKey,
    this_start: DateTime<Utc>,
    previous: &'a [ExecutionSummary],
) -> impl Iterator<Item = &'a ExecutionSummary> {
    previous
        .iter()
        .filter(move |s| s.key.execution_id != key.execution_id && s.started_at < this_start)
}

/// An execution's state as it stood at `at` (all of it when `at` is unknown).
fn as_of(summary: &ExecutionSummary, at: Option<DateTime<Utc>>) -> crate::record::timeline::Resolved {
    match at {
        None => summary.resolved(),
        Some(at) => {
            let states: Vec<_> = summary
                .pipeline_states
                .iter()
                .filter(|(t, _)| *t <= at)
                .cloned()
                .collect();
            crate::record::timeline::resolve_states(&states)
        }
    }
}

fn stamp(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn action_line(a: &crate::record::timeline::ActionTimeline) -> String {
    let mut line = format!("Action *{}* ({}) {}", a.name, a.provider, a.state);
    if let Some(code) = &a.error_code {
        line.push_str(&format!(" [{code}]"));
    }
    if let Some(summary) = &a.summary {
        line.push_str(&format!(": {summary}"));
    }
    line
}

/// Notifications a deployment event causes.
pub fn deployment_notifications(before: &[DeliveryEvent], after: &[DeliveryEvent]) -> Vec<Notification> {
    let (Some(now), was) = (fold_deployment(after), fold_deployment(before)) else {
        return Vec::new();
    };
    let Some(event) = after.first() else { return Vec::new() };
    if !(is_failure(&now.state) || now.state == "STOP") || was.as_ref().map(|w| w.state.as_str()) == Some(&now.state) {
        return Vec::new();
    }
    let verb = if now.state == "STOP" { "was stopped" } else { "failed" };
    vec![Notification {
        key: format!("deployment_failed@{}", stamp(now.ended_at)),
        kind: NotificationKind::DeploymentFailed,
        severity: Severity::Warning,
        account: event.account.clone(),
        region: event.region.clone(),
        pipeline: None,
        thread: format!("{}/{}", now.application, now.deployment_group),
        title: format!(
            "Deployment {} to {}/{} {verb}",
            now.deployment_id, now.application, now.deployment_group
        ),
        lines: vec![
            format!("CodeDeploy reports {}.", now.state),
            "If the deployment group has automatic rollback enabled, CodeDeploy is redeploying the last good revision."
                .into(),
        ],
        next_steps: vec!["Check the deployment's lifecycle events and the alarms of the deployment group".into()],
        link: Some(format!(
            "https://{r}.console.aws.amazon.com/codesuite/codedeploy/deployments/{id}?region={r}",
            r = event.region,
            id = now.deployment_id
        )),
        resources: vec![format!(
            "arn:aws:codedeploy:{}:{}:deploymentgroup:{}/{}",
            event.region, event.account, now.application, now.deployment_group
        )],
    }]
}

/// Notifications a stack event causes: a rollback starting.
pub fn stack_notifications(event: &DeliveryEvent) -> Vec<Notification> {
    let EventBody::StackStatus(s) = &event.body else {
        return Vec::new();
    };
    if !s.status.ends_with("ROLLBACK_IN_PROGRESS") {
        return Vec::new();
    }
    let mut lines = vec![format!("CloudFormation reports {}.", s.status)];
    lines.extend(s.reason.as_ref().map(|r| format!("Reason: {r}")));
    vec![Notification {
        key: format!("stack_rollback:{}@{}", s.status, stamp(Some(event.time))),
        kind: NotificationKind::StackRollback,
        severity: Severity::Warning,
        account: event.account.clone(),
        region: event.region.clone(),
        pipeline: None,
        thread: s.stack_name.clone(),
        title: format!("Stack {} is rolling back", s.stack_name),
        lines,
        next_steps: vec!["Read the stack's events for the first resource that failed".into()],
        link: Some(format!(
            "https://{r}.console.aws.amazon.com/cloudformation/home?region={r}#/stacks/events?stackId={id}",
            r = event.region,
            id = s.stack_id
        )),
        resources: vec![s.stack_id.clone()],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_engineers_say_them() {
        assert_eq!(human_duration(35), "35s");
        assert_eq!(human_duration(245), "4m 05s");
        assert_eq!(human_duration(4320), "1h 12m");
        assert_eq!(human_duration(-3), "0s");
    }
}
