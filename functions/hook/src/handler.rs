//! One invocation of the hook: `{DeploymentId, LifecycleEventHookExecutionId}` in, one
//! PutLifecycleEventHookExecutionStatus out.
//!
//! 1. The invocation is parsed; without both ids no status can be reported, so that is the only error before it.
//! 2. The checks run within the budget: the configured one, cut to end [`REPORT_MARGIN`] before the Lambda deadline.
//!    Alarms first (one DescribeAlarms), then the probe, tried again every [`PROBE_RETRY`] until it answers the
//!    expected status or the budget is spent. A check that errors or runs out of time fails, saying why.
//! 3. The result is recorded with one conditional write keyed by the hook execution id; when an earlier invocation of
//!    the same hook execution recorded one, that status is the one reported, so duplicates never disagree. If the
//!    record cannot be written the status is reported all the same (CodeDeploy accepts one status per hook anyway).
//! 4. The status goes to CodeDeploy. "Already completed" counts as reported.
//! 5. A first Failed result is announced to engineers.
//! 6. A first result is appended to the deployment's audit trail (`hook.result`), so the hook's decisions are in the
//!    tamper-evident record and in the automation-health figures; a duplicate appends nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tollgate_domain::audit::{action, AuditLog, NewAuditEntry};
use tollgate_domain::gate::AlarmStates;
use tollgate_domain::rollback::hook::{
    judge_alarms, verdict, CheckOutcome, HookChecks, HookInvocation, HookReportError, HookResult, HookResults,
    HookStatus, HookStatusReporter, HookWrite, HttpProbe, NotAHook, Reported,
};
use tollgate_domain::tell::ports::Notifier;

/// Time kept after the checks to record, report and notify before the Lambda deadline.
pub const REPORT_MARGIN: Duration = Duration::from_secs(5);
/// Pause between probe attempts.
pub const PROBE_RETRY: Duration = Duration::from_secs(2);

/// The adapters the hook works through.
pub struct Ports<'a> {
    pub alarms: &'a dyn AlarmStates,
    pub probe: &'a dyn HttpProbe,
    pub results: &'a dyn HookResults,
    pub reporter: &'a dyn HookStatusReporter,
    pub notifier: &'a dyn Notifier,
    pub audit: &'a dyn AuditLog,
}

/// The hook's audit trail entry: scope `deployment:<account>/<region>/<deployment id>`, one per hook execution.
pub fn audit_entry(result: &HookResult, place: &Place, started_at: DateTime<Utc>) -> NewAuditEntry {
    NewAuditEntry {
        scope: format!("deployment:{}/{}/{}", place.account, place.region, result.deployment_id),
        at: result.decided_at,
        actor: "tollgate:hook".into(),
        action: action::HOOK_RESULT.into(),
        subject: result.hook_execution_id.clone(),
        detail: serde_json::json!({
            "deployment_id": result.deployment_id,
            "outcome": result.status.as_str(),
            "summary": result.summary(),
            "checks": result.checks,
            // From the invocation to the decision: the automation-health latency of the `hook` family.
            "started_at": started_at,
        }),
    }
}

/// What the handler is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub checks: HookChecks,
    /// Where the function runs, for the notification.
    pub place: Place,
    /// Pause between probe attempts ([`PROBE_RETRY`]).
    pub probe_retry: Duration,
}

/// Where the function runs, for the notification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    pub account: String,
    pub region: String,
}

/// What an invocation did (the function's response, and a log line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookReport {
    pub deployment_id: String,
    pub status: &'static str,
    /// An earlier invocation for this hook execution decided the status reported now.
    pub duplicate: bool,
    pub recorded: bool,
    /// False when CodeDeploy said the lifecycle event was already completed.
    pub reported_now: bool,
    pub notified: bool,
    pub summary: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    NotAHook(#[from] NotAHook),
    /// The status could not be reported; Lambda's retry reports the recorded one.
    #[error("reporting {status} for deployment {deployment_id} failed: {source}")]
    Report {
        deployment_id: String,
        status: &'static str,
        #[source]
        source: HookReportError,
    },
}

impl From<HookError> for Diagnostic {
    fn from(e: HookError) -> Diagnostic {
        let error_type = match &e {
            HookError::NotAHook(_) => "NonRetryable.NotAHook",
            HookError::Report {
                source: HookReportError::Transient(_),
                ..
            } => "Retryable.Report",
            HookError::Report { .. } => "NonRetryable.Report",
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The instant the checks must be done by: the budget from `started`, or the margin before `lambda_deadline`.
pub fn checks_deadline(started: Instant, budget: Duration, lambda_deadline: Option<Instant>) -> Instant {
    let by_budget = started + budget;
    match lambda_deadline {
        Some(d) => by_budget.min(d.checked_sub(REPORT_MARGIN).unwrap_or(started)),
        None => by_budget,
    }
}

/// Runs the checks, never longer than `deadline`.
pub async fn run_checks(
    checks: &HookChecks,
    probe_retry: Duration,
    ports: &Ports<'_>,
    deadline: Instant,
) -> Vec<CheckOutcome> {
    let mut outcomes = Vec::new();
    if !checks.alarms.is_empty() {
        let no_tags = BTreeMap::new();
        let read = tokio::time::timeout_at(deadline, ports.alarms.alarm_states(&checks.alarms, &no_tags));
        match read.await {
            Ok(Ok(facts)) => outcomes.extend(judge_alarms(&checks.alarms, &facts, checks.insufficient_data)),
            Ok(Err(e)) => outcomes.push(CheckOutcome {
                check: "alarms".into(),
                passed: false,
                detail: format!("cannot read the alarms' states: {e}"),
            }),
            Err(_) => outcomes.push(CheckOutcome {
                check: "alarms".into(),
                passed: false,
                detail: "the time budget ran out before CloudWatch answered".into(),
            }),
        }
    }
    if let Some(probe) = &checks.probe {
        let check = format!("probe {}", probe.url);
        let mut attempts = 0u32;
        let mut last = String::from("not tried: the time budget was already spent");
        let passed = loop {
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            attempts += 1;
            let timeout = probe.timeout.min(deadline - now);
            match ports.probe.get_status(&probe.url, timeout).await {
                Ok(status) if status == probe.expected_status => {
                    last = format!("answered {status} (attempt {attempts})");
                    break true;
                }
                Ok(status) => last = format!("answered {status}, expected {}", probe.expected_status),
                Err(e) => last = e,
            }
            if Instant::now() + probe_retry >= deadline {
                break false;
            }
            tokio::time::sleep(probe_retry).await;
        };
        let detail = if passed {
            last
        } else {
            format!("{last} (after {attempts} attempts, within the time budget)")
        };
        outcomes.push(CheckOutcome { check, passed, detail });
    }
    outcomes
}

/// Handles one invocation.
pub async fn handle(
    event: &Value,
    settings: &Settings,
    ports: &Ports<'_>,
    lambda_deadline: Option<Instant>,
    now: DateTime<Utc>,
) -> Result<HookReport, HookError> {
    let invocation = HookInvocation::from_value(event)
        .inspect_err(|e| tracing::error!(error = %e, "not a lifecycle hook invocation; no status can be reported"))?;
    let started_at = now;
    let deadline = checks_deadline(Instant::now(), settings.checks.budget, lambda_deadline);
    let checks_started = Instant::now();
    let outcomes = run_checks(&settings.checks, settings.probe_retry, ports, deadline).await;
    let mine = HookResult {
        deployment_id: invocation.deployment_id.clone(),
        hook_execution_id: invocation.hook_execution_id.clone(),
        status: verdict(&outcomes),
        checks: outcomes,
        decided_at: now + chrono::Duration::from_std(Instant::now() - checks_started).unwrap_or_default(),
    };
    let (result, duplicate, recorded) = match ports.results.record_first(&mine).await {
        Ok(HookWrite::New) => (mine, false, true),
        Ok(HookWrite::Duplicate(first)) => (*first, true, true),
        Err(e) => {
            tracing::error!(deployment_id = %mine.deployment_id, error = %e, "the hook result cannot be recorded; reporting it anyway");
            (mine, false, false)
        }
    };
    let summary = result.summary();
    tracing::info!(
        deployment_id = %result.deployment_id,
        status = result.status.as_str(),
        duplicate,
        recorded,
        summary = %summary,
        "hook decided"
    );

    if recorded && !duplicate {
        // The record of the decision comes first: an audit trail that cannot be written does not hold the deployment.
        if let Err(e) = ports
            .audit
            .append(audit_entry(&result, &settings.place, started_at))
            .await
        {
            tracing::warn!(deployment_id = %result.deployment_id, error = %e, "the hook result could not be audited");
        }
    }

    let mut notified = false;
    if result.status == HookStatus::Failed && !duplicate {
        match ports
            .notifier
            .publish(&result.notification(&settings.place.account, &settings.place.region))
            .await
        {
            Ok(()) => notified = true,
            // Not telling engineers is no reason to hold the deployment: the status still goes out.
            Err(e) => {
                tracing::warn!(deployment_id = %result.deployment_id, error = %e, "the failed hook could not be announced")
            }
        }
    }

    let reported = ports
        .reporter
        .report(&invocation, result.status)
        .await
        .map_err(|source| {
            tracing::error!(deployment_id = %invocation.deployment_id, error = %source, "the status could not be reported");
            HookError::Report {
                deployment_id: invocation.deployment_id.clone(),
                status: result.status.as_str(),
                source,
            }
        })?;
    if reported == Reported::AlreadyCompleted {
        tracing::info!(deployment_id = %invocation.deployment_id, "CodeDeploy says the lifecycle event was already completed");
    }
    Ok(HookReport {
        deployment_id: invocation.deployment_id,
        status: result.status.as_str(),
        duplicate,
        recorded,
        reported_now: reported == Reported::Now,
        notified,
        summary,
    })
}

#[cfg(test)]
mod tests;
