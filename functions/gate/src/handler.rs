//! One invocation of the gate: the job event in, one recorded decision and one answer to CodePipeline out.
//!
//! 1. The job is parsed (its artifact credentials go only to the artifact reader; the event is never logged).
//! 2. The continuation token, if any, says when the wait began and which decisions came before.
//! 3. GetJobDetails says which pipeline, stage and execution the job is for.
//! 4. UserParameters name the policy; it is read from the input artifact with the job's credentials, parsed and
//!    overridden. Any problem there fails the job with the error (file, line, field): never a crash, never a retry.
//!    With an organisation baseline deployed, the policy is merged with it (`policy::apply_baseline`): a policy that
//!    loosens the baseline fails the job closed, naming each loosened field with its file and line.
//! 5. Active ad-hoc freezes of the pipeline and of `global` join the policy's freezes; the facts the policy needs are
//!    gathered (`tollgate_domain::gate::gather_facts`) and the policy evaluated. An override of this execution's
//!    stage by an authorised approver then makes it pass, every check still explained; any other is refused, saying
//!    why (`tollgate_domain::gate::apply_override`).
//!    A gate that passes a policy with a `concurrency` check then takes its environment's deployment lease
//!    (`tollgate_domain::gate::claim_deployment_lease`); if a concurrent gate took it first, the decision becomes a
//!    wait on that deployment, as if it had been seen while gathering.
//! 6. The decision is recorded with one conditional write keyed by the job id. A retried invocation of the same job
//!    finds the first decision there and sends that answer again, so a job is decided once.
//! 7. A failure, or the first wait of a job, is published to engineers.
//! 8. A pass of a policy with alarm checks registers the stage as watched by those alarms (names, and the alarms
//!    its tags selected), for the guard to roll it back when one fires. A failed registration is only logged: the
//!    answer does not depend on it, and the guard still finds stages through their `tollgate:rollback-alarm:` tags.
//! 9. The answer goes to CodePipeline: pass (output variables), wait (continuation token) or fail (explanation).
//!    A job CodePipeline says is already answered counts as answered.

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use tollgate_domain::audit::{action as audit_action, pipeline_scope, AuditLog, NewAuditEntry, GLOBAL_SCOPE};
use tollgate_domain::gate::approval::{EffectivePolicies, EffectivePolicyRecord};
use tollgate_domain::gate::policy::{
    apply_baseline, evaluate, parse_policy, parse_user_parameters, BaselineSource, GateSite, Outcome, PipelineTags,
};
use tollgate_domain::gate::AlarmWatches;
use tollgate_domain::gate::{
    answer_for, apply_override, claim_deployment_lease, freeze_scopes, gate_blocked_notification, gather_facts,
    register_alarm_watches, truncate_with_note, watched_alarms, with_ad_hoc_freezes, AlarmStates, AnswerSent,
    ApprovalRecords, Continuation, DecisionWrite, DeploymentLeases, FactSources, FailureKind, GateControls,
    GateDecision, GateDecisions, JobAnswer, JobApiError, JobContext, LeaseResult, MetricTotals, PipelineJobs,
    PolicyRef, PolicySource, GATE_PRINCIPAL, MAX_FAILURE_MESSAGE_CHARS,
};
use tollgate_domain::record::keys::PipelineKey;
use tollgate_domain::record::ports::TimelineQueries;
use tollgate_domain::tell::ports::Notifier;

use crate::job::{GateJob, JobEventError};

/// The adapters the gate works through.
pub struct Ports<'a> {
    pub jobs: &'a dyn PipelineJobs,
    pub policies: &'a dyn PolicySource,
    pub alarms: &'a dyn AlarmStates,
    pub metrics: &'a dyn MetricTotals,
    pub timelines: &'a dyn TimelineQueries,
    pub decisions: &'a dyn GateDecisions,
    pub approvals: &'a dyn ApprovalRecords,
    /// Ad-hoc freezes and overrides.
    pub controls: &'a dyn GateControls,
    /// Deployment leases (the concurrency check).
    pub leases: &'a dyn DeploymentLeases,
    /// Which stages each alarm protects, registered on a pass (read by the guard).
    pub watches: &'a dyn AlarmWatches,
    /// Every new decision is appended to the pipeline's audit trail.
    pub audit: &'a dyn AuditLog,
    pub notifier: &'a dyn Notifier,
    /// The organisation baseline (none deployed: the pipeline's policy alone).
    pub baselines: &'a dyn BaselineSource,
    /// Pipeline tags, for baseline rules that match on them.
    pub pipeline_tags: &'a dyn PipelineTags,
    /// The effective policy of each evaluated stage, for the decide and approval functions to authorise against.
    pub effective: &'a dyn EffectivePolicies,
}

/// What an invocation did (the function's response, and a log line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateReport {
    pub job_id: String,
    pub decision_id: String,
    pub outcome: &'static str,
    /// The job had been decided before (a retried invocation): its first decision was sent again.
    pub duplicate: bool,
    /// False when the decision could not be recorded (the job was failed closed, saying so).
    pub recorded: bool,
    /// False when CodePipeline said the job was already answered.
    pub answered_now: bool,
    pub notified: bool,
    /// How many alarms the stage was registered as watched by (0 unless it passed a policy with alarm checks, or
    /// when the registration failed).
    pub watches: usize,
}

/// An invocation that could not answer its job.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("not a CodePipeline job event: {0}")]
    NotAJob(#[from] JobEventError),
    /// The answer could not be sent; a retried invocation sends the recorded one.
    #[error("answering job {job_id} failed: {source}")]
    Answer {
        job_id: String,
        #[source]
        source: JobApiError,
    },
}

impl From<GateError> for Diagnostic {
    fn from(e: GateError) -> Diagnostic {
        let error_type = match &e {
            GateError::NotAJob(_) => "NonRetryable.NotAJob",
            GateError::Answer {
                source: JobApiError::Transient(_),
                ..
            } => "Retryable.Answer",
            GateError::Answer { .. } => "NonRetryable.Answer",
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// Handles one job event at `now`.
pub async fn handle(event: &Value, ports: &Ports<'_>, now: DateTime<Utc>) -> Result<GateReport, GateError> {
    let job =
        GateJob::from_value(event).inspect_err(|e| tracing::error!(error = %e, "not a gate job; not answered"))?;
    let job_id = job.job.id.clone();
    let mut alarms = Vec::new();
    let decision = decide(&job, ports, now, &mut alarms).await;

    let (decision, duplicate, recorded, mut notified) = match ports.decisions.record_decision(&decision).await {
        Ok(DecisionWrite::New) => (decision, false, true, false),
        Ok(DecisionWrite::Duplicate { stored, notified }) => (*stored, true, true, notified),
        Err(e) => {
            tracing::error!(job_id, error = %e, "the decision cannot be recorded; failing the job closed");
            (unrecorded(decision, &e.to_string()), false, false, false)
        }
    };
    log_decision(&decision, duplicate);
    if recorded && !duplicate {
        audit_decision(ports.audit, &decision).await;
    }

    if decision.notifies() && !notified {
        match ports.notifier.publish(&gate_blocked_notification(&decision)).await {
            Ok(()) => {
                notified = true;
                if recorded {
                    if let Err(e) = ports.decisions.mark_notified(&decision.id).await {
                        tracing::warn!(job_id, error = %e, "published, but not marked notified");
                    }
                }
            }
            // Engineers not told is not a reason to hold the pipeline: the answer still goes out.
            Err(e) => tracing::warn!(job_id, error = %e, "the blocked gate could not be announced"),
        }
    }

    let watches = match (&decision.outcome, &decision.context) {
        // Registered before the answer, so the stage is watched before its deployment starts. A duplicate refreshes
        // the same items.
        (Outcome::Pass, Some(ctx)) if !alarms.is_empty() => {
            match register_alarm_watches(ports.watches, ctx, &alarms, now).await {
                Ok(()) => alarms.len(),
                Err(e) => {
                    tracing::warn!(job_id, alarms = ?alarms, error = %e,
                        "the stage could not be registered as watched by its alarms; the guard finds it only by tag");
                    0
                }
            }
        }
        _ => 0,
    };

    let sent = ports.jobs.answer(&job_id, &decision.answer).await.map_err(|source| {
        tracing::error!(job_id, error = %source, "the answer could not be sent");
        GateError::Answer {
            job_id: job_id.clone(),
            source,
        }
    })?;
    if sent == AnswerSent::AlreadyAnswered {
        tracing::info!(job_id, "CodePipeline says the job was already answered");
    }
    Ok(GateReport {
        job_id,
        decision_id: decision.id.clone(),
        outcome: decision.outcome_word(),
        duplicate,
        recorded,
        answered_now: sent == AnswerSent::Sent,
        notified,
        watches,
    })
}

/// Appends a new decision to its pipeline's audit trail. A failure is logged, not fatal: the decision itself is
/// recorded and the job must still be answered; `tollgate audit verify` shows the chain stays whole either way.
async fn audit_decision(audit: &dyn AuditLog, d: &GateDecision) {
    let (scope, subject) = match d.context.as_ref() {
        Some(c) => (
            pipeline_scope(&PipelineKey {
                account: c.account.clone(),
                region: c.region.clone(),
                pipeline: c.pipeline.clone(),
            }),
            format!("{}/{}", c.execution_id, c.stage),
        ),
        None => (GLOBAL_SCOPE.to_string(), format!("job {}", d.job_id)),
    };
    let entry = NewAuditEntry {
        scope,
        at: d.decided_at,
        actor: d.decided_by.clone(),
        action: audit_action::GATE_DECISION.to_string(),
        subject,
        detail: serde_json::json!({
            "decision_id": d.id,
            "outcome": d.outcome_word(),
            "summary": d.summary,
        }),
    };
    if let Err(e) = audit.append(entry).await {
        tracing::error!(decision_id = %d.id, error = %e, "the decision could not be appended to the audit trail");
    }
}

fn log_decision(d: &GateDecision, duplicate: bool) {
    let c = d.context.as_ref();
    tracing::info!(
        job_id = %d.job_id,
        decision_id = %d.id,
        pipeline = c.map(|c| c.pipeline.as_str()).unwrap_or(""),
        stage = c.map(|c| c.stage.as_str()).unwrap_or(""),
        execution_id = c.map(|c| c.execution_id.as_str()).unwrap_or(""),
        outcome = d.outcome_word(),
        evaluations = d.previous.len() + 1,
        duplicate,
        summary = %d.summary,
        "gate decided"
    );
}

/// The job failed closed because its decision could not be recorded.
fn unrecorded(mut d: GateDecision, why: &str) -> GateDecision {
    let message = format!(
        "FAIL: the gate could not record its decision ({why}); failing closed rather than deciding without a record.\n\
         The decision it would have made:\n{}",
        d.explanation
    );
    d.outcome = Outcome::Fail;
    d.answer = JobAnswer::Failure {
        kind: FailureKind::JobFailed,
        message: truncate_with_note(&message, MAX_FAILURE_MESSAGE_CHARS, "see the gate function's log"),
        external_execution_id: d.id.clone(),
    };
    d
}

/// Everything up to the answer: never fails, a problem is a failing decision that says what it is. `alarms` receives
/// the alarms the policy checked, once they are known (for the watches of a pass).
async fn decide(job: &GateJob, ports: &Ports<'_>, now: DateTime<Utc>, alarms: &mut Vec<String>) -> GateDecision {
    let job_id = job.job.id.clone();
    let mut d = GateDecision {
        id: job_id.clone(),
        job_id: job_id.clone(),
        decided_by: GATE_PRINCIPAL.to_string(),
        decided_at: now,
        context: None,
        policy: None,
        outcome: Outcome::Fail,
        summary: String::new(),
        checks: Vec::new(),
        explanation: String::new(),
        first_evaluated_at: now,
        previous: Vec::new(),
        answer: JobAnswer::Failure {
            kind: FailureKind::JobFailed,
            message: String::new(),
            external_execution_id: job_id.clone(),
        },
        override_applied: None,
    };

    let continuation = match job.job.continuation_token.as_deref().map(Continuation::decode) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(why)) => return failed(d, FailureKind::JobFailed, why),
    };
    if let Some(c) = &continuation {
        d.first_evaluated_at = c.first_evaluated_at();
        d.previous = c.decisions.clone();
    }

    let context = ports.jobs.job_context(&job_id).await;
    if let Ok(c) = &context {
        d.context = Some(c.clone());
    }

    let params = match parse_user_parameters(job.job.user_parameters.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return failed(d, FailureKind::ConfigurationError, e.to_string()),
    };
    let Some(artifact) = job.artifacts.first() else {
        return failed(
            d,
            FailureKind::ConfigurationError,
            format!(
                "the gate action has no input artifact: give it the source artifact that holds {}",
                params.policy
            ),
        );
    };
    let Some(credentials) = &job.credentials else {
        return failed(
            d,
            FailureKind::ConfigurationError,
            "the job carries no artifactCredentials to read the input artifact with".into(),
        );
    };
    let text = match ports
        .policies
        .read_policy(artifact, credentials, &params.candidate_paths())
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return failed(
                d,
                FailureKind::ConfigurationError,
                format!("cannot read the policy: {e}"),
            )
        }
    };
    let policy = match parse_policy(&text.path, &text.text) {
        Ok(p) => p,
        Err(e) => return failed(d, FailureKind::ConfigurationError, e.to_string()),
    };
    d.policy = Some(PolicyRef {
        file: text.path.clone(),
        name: policy.name.clone(),
    });
    let policy = match policy.with_overrides(&params.overrides) {
        Ok(p) => p,
        Err(e) => return failed(d, FailureKind::ConfigurationError, e.to_string()),
    };

    let context: JobContext = match context {
        Ok(c) => c,
        Err(e) => {
            return failed(
                d,
                FailureKind::JobFailed,
                format!("could not evaluate: cannot read the job's pipeline, stage and execution (GetJobDetails): {e}; failing closed"),
            )
        }
    };
    // The organisation baseline: the policy may only tighten it. A loosening fails the gate closed, naming each field.
    let site = GateSite {
        account: &context.account,
        region: &context.region,
        pipeline: &context.pipeline,
        stage: &context.stage,
    };
    let (policy, baseline) = match apply_baseline(
        ports.baselines,
        ports.pipeline_tags,
        site,
        &text.path,
        &text.text,
        policy,
    )
    .await
    {
        Ok(w) => {
            // Who may decide on this stage: the decide and approval functions authorise against what the gate
            // evaluated. Without it they refuse (fail closed), so a failure to write it fails the gate closed too.
            let record = EffectivePolicyRecord {
                account: context.account.clone(),
                region: context.region.clone(),
                pipeline: context.pipeline.clone(),
                stage: context.stage.clone(),
                policy: w.policy.clone(),
                baseline: w.applied.clone(),
                separation_of_duties: w.separation_of_duties,
                at: now,
            };
            if let Err(e) = ports.effective.record_effective(&record).await {
                return failed(
                    d,
                    FailureKind::JobFailed,
                    format!("could not record the effective policy for approvers: {e}; failing closed"),
                );
            }
            (w.policy, w.applied)
        }
        Err(why) => return failed(d, FailureKind::JobFailed, why),
    };
    let freezes = match ports.controls.active_freezes(&freeze_scopes(&context)).await {
        Ok(f) => f,
        Err(e) => {
            return failed(
                d,
                FailureKind::JobFailed,
                format!("could not evaluate: cannot read the ad-hoc freezes: {e}; failing closed"),
            )
        }
    };
    let policy = with_ad_hoc_freezes(&policy, &freezes, now);
    let sources = FactSources {
        alarms: ports.alarms,
        metrics: ports.metrics,
        timelines: ports.timelines,
        approvals: ports.approvals,
        leases: ports.leases,
    };
    let mut facts = gather_facts(&policy, &context, now, d.first_evaluated_at, &sources).await;
    *alarms = watched_alarms(&policy, &facts);
    let mut decision = evaluate(&policy, &facts);
    if decision.outcome == Outcome::Pass {
        // Only a passing gate holds the environment: a waiting one would block others while it waits.
        let claimed = claim_deployment_lease(&policy, &context, &d.id, ports.leases, ports.timelines, now).await;
        let lost = match claimed {
            LeaseResult::NotNeeded | LeaseResult::Acquired => None,
            LeaseResult::HeldBy(others) => Some(Ok(others)),
            LeaseResult::Error(why) => Some(Err(why)),
        };
        if let Some(fact) = lost {
            tracing::info!(job_id, "the deployment lease was not taken; evaluating with it");
            facts.deployments_in_progress = Some(fact);
            decision = evaluate(&policy, &facts);
        }
    }
    let mut explanation = None;
    match ports.controls.latest_override(&context.approval_key()).await {
        Ok(None) => {}
        Ok(Some(o)) => {
            let (text, applied) = apply_override(&policy, &mut decision, &o);
            if applied.honoured && policy.concurrency.is_some() {
                // An override passes whatever the checks say, but the deployment it lets through still holds the
                // environment, so that other gates wait for it. It cannot be held back by a lease it overrides.
                match claim_deployment_lease(&policy, &context, &d.id, ports.leases, ports.timelines, now).await {
                    LeaseResult::HeldBy(others) => {
                        tracing::warn!(job_id, holders = ?others, "overridden while another deployment holds the lease")
                    }
                    LeaseResult::Error(why) => tracing::warn!(job_id, error = %why, "overridden; lease not taken"),
                    LeaseResult::NotNeeded | LeaseResult::Acquired => {}
                }
            }
            explanation = Some(text);
            d.override_applied = Some(applied);
        }
        // Without the override the gate can only be stricter: it goes on, and says so.
        Err(e) => {
            tracing::warn!(job_id, error = %e, "overrides cannot be read; deciding without them");
            decision.summary = format!(
                "{}; overrides could not be read ({e}) and were ignored",
                decision.summary
            );
        }
    }
    let next = match decision.outcome {
        Outcome::Wait { .. } => Some(Continuation::after(continuation.as_ref(), d.first_evaluated_at, &d.id)),
        _ => None,
    };
    d.answer = answer_for(&d.id, &decision, next.as_ref());
    d.outcome = decision.outcome.clone();
    d.summary = decision.summary.clone();
    d.explanation = explanation.unwrap_or_else(|| decision.explain());
    if let Some(baseline) = baseline {
        d.explanation
            .push_str(&format!("  (policy {} merged with {baseline})\n", text.path));
    }
    d.checks = decision.checks;
    d
}

/// A decision that fails the job with `message` (an error that names its file, line and field, when it has them).
fn failed(mut d: GateDecision, kind: FailureKind, message: String) -> GateDecision {
    d.outcome = Outcome::Fail;
    d.summary = format!("the gate cannot evaluate: {message}");
    d.explanation = format!("FAIL: {message}\n");
    d.answer = JobAnswer::Failure {
        kind,
        message: truncate_with_note(
            &message,
            MAX_FAILURE_MESSAGE_CHARS,
            &format!("the whole message is gate decision {}", d.id),
        ),
        external_execution_id: d.id.clone(),
    };
    d
}

#[cfg(test)]
mod tests;
