//! One invocation of the changeset action: the job event in, one answer to CodePipeline out. Each invocation looks at
//! CloudFormation as it is now and takes the next step, so a retried or duplicated invocation takes the same step:
//!
//! 1. The job is parsed (its artifact credentials go only to the artifact reader; the event is never logged), its
//!    UserParameters validated (a bad one fails the job naming the field), its continuation token read.
//! 2. GetJobDetails says which execution and stage the job is for; the change set's name derives from the execution
//!    (`tollgate-<execution id>`), so a retried invocation, or a retry of the action, finds the same change set.
//! 3. No change set yet: the template (and parameters file) are read from the input artifact with the job's
//!    credentials, CreateChangeSet (CREATE if the stack does not exist, else UPDATE), then a continuation token.
//! 4. Being created: a continuation token. Failed with "didn't contain changes": success, nothing to execute.
//!    Failed otherwise: the job fails with CloudFormation's reason.
//! 5. Created: every change is classified (`tollgate_domain::rollback::changeset`) and the policy applied. Execute: the change
//!    set is executed and a continuation token follows the stack. Approve: executed if an approval for this
//!    execution's stage was recorded after the change set was created (`tollgate approve`), failed by a rejection,
//!    else the job fails with the risk report and how to approve; a retry of the action then passes. Deny: the job
//!    fails with the report.
//! 6. Executed: continuation tokens while the stack updates; then success, or failure with the stack's status and the
//!    first failed resource's reason (DescribeStackEvents).
//!
//! Reviews and results are appended to the pipeline's audit trail and risk reports announced, once per change set and
//! outcome: the audit trail is looked up first, so a duplicated invocation does not say it twice.

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::{json, Value};
use tollgate_domain::audit::{action as audit_action, pipeline_scope, AuditLog, NewAuditEntry};
use tollgate_domain::gate::policy::ApprovalDecision;
use tollgate_domain::gate::{
    truncate_with_note, AnswerSent, ApprovalRecord, ApprovalRecords, ArtifactCredentials, ArtifactLocation,
    FailureKind, JobAnswer, JobApiError, JobContext, PipelineJobs, PolicySource, MAX_EXECUTION_SUMMARY_CHARS,
    MAX_FAILURE_MESSAGE_CHARS,
};
use tollgate_domain::record::keys::PipelineKey;
use tollgate_domain::record::ports::{StoreError, TimelineQueries};
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_domain::rollback::changeset::{
    change_set_console_url, change_set_name, is_no_changes, parse_parameters_file, parse_params, review,
    stack_progress, ChangeSetDescription, ChangeSets, ChangesetParams, ChangesetToken, NewChangeSet, Phase, Review,
    StackApiError, StackProgress, Template, Verdict,
};
use tollgate_domain::tell::notify::{Notification, NotificationKind, Severity};
use tollgate_domain::tell::ports::Notifier;

use crate::job::{ChangesetJob, JobEventError};

/// Who records reviews: the action itself.
pub const CHANGESET_PRINCIPAL: &str = "tollgate:changeset";
/// CloudFormation's limit on a template passed in the request (TemplateBody).
pub const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;
/// Audit entries read back to see whether a review or result was recorded already.
const AUDIT_LOOKBACK: usize = 50;

/// The adapters the action works through.
pub struct Ports<'a> {
    pub jobs: &'a dyn PipelineJobs,
    /// Reads files from the input artifact with the job's credentials (the gate's artifact reader).
    pub artifacts: &'a dyn PolicySource,
    pub stacks: &'a dyn ChangeSets,
    pub approvals: &'a dyn ApprovalRecords,
    pub audit: &'a dyn AuditLog,
    pub notifier: &'a dyn Notifier,
    /// The recorded executions: who started this one (its author), whose approval does not count.
    pub timelines: &'a dyn TimelineQueries,
}

/// What an invocation did (the function's response, and a log line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangesetReport {
    pub job_id: String,
    /// `wait`, `succeeded` or `failed`.
    pub outcome: &'static str,
    pub summary: String,
    pub verdict: Option<&'static str>,
    /// False when CodePipeline said the job was already answered.
    pub answered_now: bool,
}

/// An invocation that could not answer its job.
#[derive(Debug, thiserror::Error)]
pub enum ChangesetError {
    #[error("not a CodePipeline job event: {0}")]
    NotAJob(#[from] JobEventError),
    /// The answer could not be sent; a retried invocation takes the same step and answers again.
    #[error("answering job {job_id} failed: {source}")]
    Answer {
        job_id: String,
        #[source]
        source: JobApiError,
    },
}

impl From<ChangesetError> for Diagnostic {
    fn from(e: ChangesetError) -> Diagnostic {
        let error_type = match &e {
            ChangesetError::NotAJob(_) => "NonRetryable.NotAJob",
            ChangesetError::Answer {
                source: JobApiError::Transient(_),
                ..
            } => "Retryable.Answer",
            ChangesetError::Answer { .. } => "NonRetryable.Answer",
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The step an invocation ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    answer: JobAnswer,
    summary: String,
    verdict: Option<Verdict>,
}

/// Handles one job event at `now`.
pub async fn handle(event: &Value, ports: &Ports<'_>, now: DateTime<Utc>) -> Result<ChangesetReport, ChangesetError> {
    let job = ChangesetJob::from_value(event)
        .inspect_err(|e| tracing::error!(error = %e, "not a changeset job; not answered"))?;
    let job_id = job.job.id.clone();
    let step = step(&job, ports, now).await;
    let outcome = match &step.answer {
        JobAnswer::Success {
            continuation_token: Some(_),
            ..
        } => "wait",
        JobAnswer::Success { .. } => "succeeded",
        JobAnswer::Failure { .. } => "failed",
    };
    tracing::info!(job_id, outcome, verdict = step.verdict.map(|v| v.as_str()), summary = %step.summary, "changeset step");
    let sent = ports.jobs.answer(&job_id, &step.answer).await.map_err(|source| {
        tracing::error!(job_id, error = %source, "the answer could not be sent");
        ChangesetError::Answer {
            job_id: job_id.clone(),
            source,
        }
    })?;
    if sent == AnswerSent::AlreadyAnswered {
        tracing::info!(job_id, "CodePipeline says the job was already answered");
    }
    Ok(ChangesetReport {
        job_id,
        outcome,
        summary: step.summary,
        verdict: step.verdict.map(|v| v.as_str()),
        answered_now: sent == AnswerSent::Sent,
    })
}

fn fail(kind: FailureKind, message: String, external_id: &str) -> Step {
    Step {
        summary: message.lines().next().unwrap_or("").to_string(),
        answer: JobAnswer::Failure {
            kind,
            message: truncate_with_note(&message, MAX_FAILURE_MESSAGE_CHARS, "see the changeset function's log"),
            external_execution_id: external_id.to_string(),
        },
        verdict: None,
    }
}

fn succeed(summary: String, external_id: &str, token: Option<&ChangesetToken>) -> Step {
    Step {
        answer: JobAnswer::Success {
            continuation_token: token.map(ChangesetToken::encode),
            output_variables: Default::default(),
            external_execution_id: external_id.to_string(),
            summary: truncate_with_note(
                &summary,
                MAX_EXECUTION_SUMMARY_CHARS,
                "see the changeset function's log",
            ),
        },
        summary,
        verdict: None,
    }
}

/// A CloudFormation error: a transient one waits (the next invocation tries again), a refusal fails the job.
fn stack_error(e: StackApiError, token: ChangesetToken, external_id: &str) -> Step {
    match e {
        StackApiError::Transient(m) => succeed(
            format!("CloudFormation unavailable, trying again: {m}"),
            external_id,
            Some(&token),
        ),
        StackApiError::Refused(m) => fail(FailureKind::JobFailed, m, external_id),
    }
}

/// Everything up to the answer: never fails, a problem is a failing step that says what it is.
async fn step(job: &ChangesetJob, ports: &Ports<'_>, now: DateTime<Utc>) -> Step {
    let job_id = job.job.id.as_str();
    let params = match parse_params(job.job.user_parameters.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return fail(FailureKind::ConfigurationError, e.to_string(), job_id),
    };
    let token = match job.job.continuation_token.as_deref().map(ChangesetToken::decode) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(why)) => return fail(FailureKind::JobFailed, why, job_id),
    };
    let context = match ports.jobs.job_context(job_id).await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                FailureKind::JobFailed,
                format!("cannot read the job's pipeline, stage and execution (GetJobDetails): {e}; retry the action"),
                job_id,
            )
        }
    };
    let name = change_set_name(&context.execution_id);
    let first_at = token.as_ref().map(|t| t.first_at).unwrap_or(now.timestamp());
    let next = |phase: Phase| ChangesetToken {
        version: ChangesetToken::VERSION,
        phase,
        change_set: name.clone(),
        first_at,
    };
    let run = Run {
        job,
        ports,
        params: &params,
        context: &context,
        name: &name,
        now,
    };
    if token.as_ref().is_some_and(|t| t.phase == Phase::Execute) {
        return run.follow(next(Phase::Execute)).await;
    }
    let description = match ports.stacks.describe(&params.stack, &name).await {
        Ok(d) => d,
        Err(e) => return stack_error(e, next(Phase::Create), &name),
    };
    match description {
        None => run.create(next(Phase::Create)).await,
        Some(d) => run.created(d, next(Phase::Create), next(Phase::Execute)).await,
    }
}

struct Run<'r, 'p> {
    job: &'r ChangesetJob,
    ports: &'r Ports<'p>,
    params: &'r ChangesetParams,
    context: &'r JobContext,
    name: &'r str,
    now: DateTime<Utc>,
}

impl Run<'_, '_> {
    fn artifact(&self) -> Result<(&ArtifactLocation, &ArtifactCredentials), String> {
        let artifact = self.job.artifacts.first().ok_or_else(|| {
            format!(
                "the changeset action has no input artifact: give it the artifact that holds {}",
                self.params.template
            )
        })?;
        let credentials = self
            .job
            .credentials
            .as_ref()
            .ok_or("the job carries no artifactCredentials to read the input artifact with")?;
        Ok((artifact, credentials))
    }

    /// The template's text and the parameters, from the input artifact.
    async fn read_inputs(&self) -> Result<(String, std::collections::BTreeMap<String, String>), String> {
        let (artifact, credentials) = self.artifact()?;
        let template = self
            .ports
            .artifacts
            .read_policy(artifact, credentials, std::slice::from_ref(&self.params.template))
            .await
            .map_err(|e| format!("cannot read the template: {e}"))?;
        let parameters = match &self.params.parameters_file {
            None => Default::default(),
            Some(path) => {
                let file = self
                    .ports
                    .artifacts
                    .read_policy(artifact, credentials, std::slice::from_ref(path))
                    .await
                    .map_err(|e| format!("cannot read the parameters file: {e}"))?;
                parse_parameters_file(path, &file.text).map_err(|e| e.to_string())?
            }
        };
        Ok((template.text, parameters))
    }

    async fn create(&self, wait: ChangesetToken) -> Step {
        let (body, parameters) = match self.read_inputs().await {
            Ok(x) => x,
            Err(m) => return fail(FailureKind::ConfigurationError, m, self.name),
        };
        if body.len() > MAX_TEMPLATE_BODY_BYTES {
            return fail(
                FailureKind::ConfigurationError,
                format!(
                    "{} is {} bytes; CloudFormation takes at most {MAX_TEMPLATE_BODY_BYTES} bytes in a request: \
                     shrink it (e.g. `aws cloudformation package` moves code out) or deploy it with the \
                     CloudFormation action",
                    self.params.template,
                    body.len()
                ),
                self.name,
            );
        }
        if let Err(e) = Template::parse(&self.params.template, &body, &parameters) {
            return fail(FailureKind::ConfigurationError, e.to_string(), self.name);
        }
        let stack = match self.ports.stacks.stack(&self.params.stack).await {
            Ok(s) => s,
            Err(e) => return stack_error(e, wait, self.name),
        };
        if let Some(s) = &stack {
            if stack_progress(&s.status) == StackProgress::InProgress && s.status != "REVIEW_IN_PROGRESS" {
                return succeed(
                    format!(
                        "stack {} is {}: waiting for it before creating the change set",
                        self.params.stack, s.status
                    ),
                    self.name,
                    Some(&wait),
                );
            }
        }
        // A stack that only ever had change sets created (REVIEW_IN_PROGRESS) is still created by a CREATE one.
        let create_stack = stack.as_ref().is_none_or(|s| s.status == "REVIEW_IN_PROGRESS");
        let new = NewChangeSet {
            stack: self.params.stack.clone(),
            name: self.name.to_string(),
            template_body: body,
            parameters,
            capabilities: self.params.capabilities.clone(),
            role_arn: self.params.role_arn.clone(),
            create_stack,
            description: format!(
                "Tollgate review of {} execution {} ({})",
                self.context.pipeline, self.context.execution_id, self.context.stage
            ),
        };
        match self.ports.stacks.create(&new).await {
            Ok(_) => succeed(
                format!(
                    "change set {} ({}) of stack {} is being created",
                    self.name,
                    if create_stack { "CREATE" } else { "UPDATE" },
                    self.params.stack
                ),
                self.name,
                Some(&wait),
            ),
            Err(e) => stack_error(e, wait, self.name),
        }
    }

    async fn created(&self, d: ChangeSetDescription, wait: ChangesetToken, executing: ChangesetToken) -> Step {
        let reason = d.status_reason.clone().unwrap_or_default();
        match d.status.as_str() {
            "CREATE_PENDING" | "CREATE_IN_PROGRESS" => {
                return succeed(
                    format!("change set {} is {}", self.name, d.status),
                    self.name,
                    Some(&wait),
                )
            }
            "FAILED" if is_no_changes(&reason) => {
                return succeed(
                    format!(
                        "stack {}: the template and parameters change nothing; nothing to execute",
                        self.params.stack
                    ),
                    self.name,
                    None,
                )
            }
            "CREATE_COMPLETE" => {}
            other => {
                return fail(
                    FailureKind::JobFailed,
                    format!(
                        "change set {} of stack {} is {other}: {reason}",
                        self.name, self.params.stack
                    ),
                    self.name,
                )
            }
        }
        match d.execution_status.as_deref() {
            Some("AVAILABLE") => {}
            Some("EXECUTE_IN_PROGRESS" | "EXECUTE_COMPLETE" | "EXECUTE_FAILED") => return self.follow(executing).await,
            other => {
                return fail(
                    FailureKind::JobFailed,
                    format!(
                        "change set {} cannot be executed (execution status {}); {reason}",
                        self.name,
                        other.unwrap_or("unknown")
                    ),
                    self.name,
                )
            }
        }

        // The template is read again for what a change set does not carry (ingress rules, deletion policies).
        let template = match self.read_inputs().await {
            Ok((body, parameters)) => Template::parse(&self.params.template, &body, &parameters)
                .inspect_err(|e| tracing::warn!(error = %e, "template unreadable; ingress changes count as open"))
                .ok(),
            Err(e) => {
                tracing::warn!(error = %e, "template unreadable; ingress changes count as open");
                None
            }
        };
        let r = review(&self.params.stack, &d, template.as_ref(), &self.params.policy);
        let link = change_set_console_url(&self.context.region, d.stack_id.as_deref(), d.id.as_deref());
        let mut step = match r.verdict {
            Verdict::Execute => self.execute(&r, None, executing).await,
            Verdict::Deny => {
                self.announce(&r, &link, None).await;
                fail(
                    FailureKind::JobFailed,
                    format!(
                        "DENIED by the risk policy: {}\n{}\nChange set: {link}",
                        r.summary(),
                        r.report()
                    ),
                    self.name,
                )
            }
            Verdict::Approve => match self.counted_approval().await {
                Err(why) => {
                    self.announce(&r, &link, None).await;
                    fail(
                        FailureKind::JobFailed,
                        format!(
                            "APPROVAL REQUIRED: {why}\n{}\nChange set: {link}\nTo let it run, another approver: {}\n\
                             then retry the stage {}.",
                            r.report(),
                            self.approve_command(),
                            self.context.stage
                        ),
                        self.name,
                    )
                }
                Ok(Ok(Some(a))) if d.created_at.is_none_or(|created| a.at >= created) => match a.decision {
                    ApprovalDecision::Approve => {
                        let by = format!(
                            "approved by {} ({})",
                            a.principal_arn,
                            a.reason.as_deref().unwrap_or("")
                        );
                        self.execute(&r, Some(by), executing).await
                    }
                    ApprovalDecision::Reject => {
                        let by = format!("rejected by {}: {}", a.principal_arn, a.reason.as_deref().unwrap_or(""));
                        self.announce(&r, &link, Some(&by)).await;
                        fail(
                            FailureKind::JobFailed,
                            format!("REJECTED: {by}\n{}\nChange set: {link}", r.report()),
                            self.name,
                        )
                    }
                },
                Ok(Ok(_)) => {
                    self.announce(&r, &link, None).await;
                    fail(
                        FailureKind::JobFailed,
                        format!(
                            "APPROVAL REQUIRED: {}\n{}\nChange set: {link}\nTo let it run: {}\nthen retry the stage \
                             {}.",
                            r.summary(),
                            r.report(),
                            self.approve_command(),
                            self.context.stage
                        ),
                        self.name,
                    )
                }
                Ok(Err(e)) => fail(
                    FailureKind::JobFailed,
                    format!(
                        "approval required, but the approvals cannot be read ({e}); retry the stage\n{}",
                        r.report()
                    ),
                    self.name,
                ),
            },
        };
        step.verdict = Some(r.verdict);
        step
    }

    /// The stage's latest approval, unless it was given by the change's author (the principal that started the
    /// execution): that one does not count (`Err` says why). The outer `Ok` holds the approvals' read.
    async fn counted_approval(&self) -> Result<Result<Option<ApprovalRecord>, StoreError>, String> {
        let a = match self.ports.approvals.latest_approval(&self.context.approval_key()).await {
            Ok(Some(a)) => a,
            other => return Ok(other),
        };
        // The execution's own events only (one read of its EXEC# item): who started it is folded from them.
        let key = self.context.execution_key();
        let timeline = self
            .ports
            .timelines
            .execution_events(&key)
            .await
            .map(|events| (!events.is_empty()).then(|| ExecutionTimeline::fold(&key, &events)))
            .map_err(|e| {
                format!(
                    "the approval by {} cannot be counted: who started execution {} cannot be read ({e}); retry the \
                     stage",
                    a.principal_arn, self.context.execution_id
                )
            })?;
        let author = timeline
            .as_ref()
            .and_then(|t| t.trigger.as_ref())
            .and_then(|t| t.detail.as_deref())
            .map(str::trim);
        if author.is_some_and(|author| same_principal(author, &a.principal_arn)) {
            return Err(format!(
                "the approval by {} does not count: {} started execution {} (the change's author)",
                a.principal_arn, a.principal_arn, self.context.execution_id
            ));
        }
        Ok(Ok(Some(a)))
    }

    fn approve_command(&self) -> String {
        format!(
            "tollgate approve --pipeline {} --execution {} --stage {} --account {} --region {} --reason \"...\"",
            self.context.pipeline,
            self.context.execution_id,
            self.context.stage,
            self.context.account,
            self.context.region
        )
    }

    async fn execute(&self, r: &Review, approval: Option<String>, executing: ChangesetToken) -> Step {
        if let Err(e) = self.ports.stacks.execute(&self.params.stack, self.name).await {
            return stack_error(e, executing, self.name);
        }
        let mut detail = r.record();
        detail["key"] = json!(format!("{}:execute", r.change_set_id.as_deref().unwrap_or(self.name)));
        if let Some(a) = &approval {
            detail["approval"] = json!(a);
        }
        self.audit_once(audit_action::CHANGESET_EXECUTE, detail).await;
        let mut summary = format!("executing change set {}: {}", self.name, r.summary());
        if let Some(a) = approval {
            summary.push_str(&format!("; {a}"));
        }
        succeed(summary, self.name, Some(&executing))
    }

    /// Follows the stack after ExecuteChangeSet.
    async fn follow(&self, executing: ChangesetToken) -> Step {
        let stack = match self.ports.stacks.stack(&self.params.stack).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return fail(
                    FailureKind::JobFailed,
                    format!(
                        "stack {} no longer exists (a failed creation is deleted on rollback)",
                        self.params.stack
                    ),
                    self.name,
                )
            }
            Err(e) => return stack_error(e, executing, self.name),
        };
        let description = match self.ports.stacks.describe(&self.params.stack, self.name).await {
            Ok(d) => d,
            Err(e) => return stack_error(e, executing, self.name),
        };
        let execution = description.as_ref().and_then(|d| d.execution_status.clone());
        // Right after ExecuteChangeSet the stack may still show its previous, completed status.
        let started = !matches!(execution.as_deref(), Some("AVAILABLE"));
        match stack_progress(&stack.status) {
            StackProgress::InProgress => succeed(
                format!("stack {} is {}", self.params.stack, stack.status),
                self.name,
                Some(&executing),
            ),
            _ if !started => succeed(
                format!("change set {} is starting", self.name),
                self.name,
                Some(&executing),
            ),
            StackProgress::Succeeded => {
                self.result_once("succeeded", &stack.status, None, executing.first_at)
                    .await;
                succeed(
                    format!(
                        "stack {} is {}: change set {} executed",
                        self.params.stack, stack.status, self.name
                    ),
                    self.name,
                    None,
                )
            }
            StackProgress::Failed => {
                let since = description.as_ref().and_then(|d| d.created_at);
                let reason = match self.ports.stacks.failure_reason(&self.params.stack, since).await {
                    Ok(Some(r)) => r,
                    Ok(None) => stack.status_reason.clone().unwrap_or_else(|| "no reason given".into()),
                    Err(e) => format!(
                        "{} (the stack's events could not be read: {e})",
                        stack.status_reason.clone().unwrap_or_default()
                    ),
                };
                self.result_once("failed", &stack.status, Some(&reason), executing.first_at)
                    .await;
                fail(
                    FailureKind::JobFailed,
                    format!("stack {} is {}: {reason}", self.params.stack, stack.status),
                    self.name,
                )
            }
        }
    }

    fn scope(&self) -> String {
        pipeline_scope(&PipelineKey {
            account: self.context.account.clone(),
            region: self.context.region.clone(),
            pipeline: self.context.pipeline.clone(),
        })
    }

    /// Appends an entry unless one with the same `detail.key` is among the scope's recent entries (a duplicated
    /// invocation). A failure is logged, not fatal: the job must still be answered.
    async fn audit_once(&self, action: &str, detail: Value) -> bool {
        let scope = self.scope();
        let key = detail["key"].clone();
        match self.ports.audit.recent(&scope, AUDIT_LOOKBACK).await {
            Ok(recent) if recent.iter().any(|e| e.action == action && e.detail["key"] == key) => return false,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the audit trail cannot be read; appending anyway"),
        }
        let entry = NewAuditEntry {
            scope,
            at: self.now,
            actor: CHANGESET_PRINCIPAL.to_string(),
            action: action.to_string(),
            subject: format!("{}/{}", self.context.execution_id, self.context.stage),
            detail,
        };
        match self.ports.audit.append(entry).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "the change set review could not be appended to the audit trail");
                false
            }
        }
    }

    /// Records the review of a change set that is not executed now and tells engineers, once per outcome.
    async fn announce(&self, r: &Review, link: &str, rejected: Option<&str>) {
        let mut detail = r.record();
        let key = format!(
            "{}:{}",
            r.change_set_id.as_deref().unwrap_or(self.name),
            r.verdict.as_str()
        );
        detail["key"] = json!(key);
        if let Some(by) = rejected {
            detail["rejected"] = json!(by);
        }
        if !self.audit_once(audit_action::CHANGESET_REVIEW, detail).await {
            return;
        }
        let (kind, severity, title) = match (r.verdict, rejected) {
            (Verdict::Approve, None) => (
                NotificationKind::ApprovalNeeded,
                Severity::Warning,
                format!(
                    "{}: change set for stack {} needs an approval",
                    self.context.pipeline, r.stack
                ),
            ),
            _ => (
                NotificationKind::GateBlocked,
                Severity::Critical,
                format!(
                    "{}: change set for stack {} was stopped",
                    self.context.pipeline, r.stack
                ),
            ),
        };
        let mut lines: Vec<String> = r.report().lines().map(str::to_string).collect();
        if let Some(by) = rejected {
            lines.insert(0, format!("Rejected: {by}"));
        }
        lines.push(format!(
            "Execution `{}`, stage {}",
            self.context.execution_id, self.context.stage
        ));
        let next_steps = match (r.verdict, rejected) {
            (Verdict::Approve, None) => vec![
                format!("Review the changes, then: {}", self.approve_command()),
                format!("Then retry the stage {} in CodePipeline", self.context.stage),
            ],
            _ => vec![
                "Change the template so that it passes the policy, or change the policy in the action's UserParameters"
                    .into(),
            ],
        };
        let n = Notification {
            key,
            kind,
            severity,
            account: self.context.account.clone(),
            region: self.context.region.clone(),
            pipeline: Some(self.context.pipeline.clone()),
            thread: format!("{}/{}", self.context.pipeline, self.context.execution_id),
            title,
            lines,
            next_steps,
            link: Some(link.to_string()),
            resources: Vec::new(),
        };
        if let Err(e) = self.ports.notifier.publish(&n).await {
            tracing::warn!(error = %e, "the risk report could not be announced");
        }
    }

    /// The stack's end. Its result is `stack_result`, not `outcome`: a stack that rolls back is the template's failure,
    /// not the action's (automation health counts `outcome: failed` as Tollgate's own error).
    async fn result_once(&self, result: &str, status: &str, reason: Option<&str>, first_at: i64) {
        let started_at = DateTime::from_timestamp(first_at, 0).map(|t| t.to_rfc3339());
        let detail = json!({
            "key": format!("{}:{result}", self.name),
            "stack": self.params.stack,
            "change_set": self.name,
            "stack_result": result,
            "started_at": started_at,
            "stack_status": status,
            "reason": reason,
        });
        self.audit_once(audit_action::CHANGESET_RESULT, detail).await;
    }
}

/// Whether two principal ARNs name the same caller: equal, or the same role session written as `sts` and `iam`.
fn same_principal(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().replacen(":iam::", ":sts::", 1).to_ascii_lowercase();
    !a.trim().is_empty() && norm(a) == norm(b)
}
