//! Evaluating a policy against gathered facts into an explained decision.
//!
//! Every configured check is evaluated and explained, not only the first that blocks. Each says what it observed,
//! what it requires, and when it would pass; times are shown in the policy's zone, with its name.
//!
//! The outcome: **Fail** if any check fails (or cannot be evaluated and fails closed); else **Wait** if any check
//! waits, with a recheck at the earliest time one of them could pass (or in a minute when that is unknown); else
//! **Pass**. A wait turns into a failure once the gate has waited `max_wait` in total, and at once when a check
//! cannot pass before then: a window that opens, a freeze or a bake that ends, after the gate would have given up.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::{OffsetName, Tz};
use serde::{Deserialize, Serialize};

use super::model::{compact_secs, OnError, Policy};
use super::window::is_ambiguous;

use super::checks::*;

/// What the gate learned before evaluating. Each fact may be unavailable (`Err`, with why); a fact the policy does
/// not need may be left `None`. A fact the policy needs but that was not gathered (`None`) is a bug in the gate and
/// always fails closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// When this job was first evaluated (carried in the continuation token).
    pub first_evaluated_at: DateTime<Utc>,
    /// The named alarms and those carrying the policy's tags.
    pub alarms: Result<Vec<AlarmFact>, String>,
    /// When `bake.after_stage` last succeeded (in this execution, or in `bake.pipeline`); `Ok(None)`: not yet.
    pub bake_stage_succeeded_at: Option<Result<Option<DateTime<Utc>>, String>>,
    /// `bake.min_requests`'s metric, totalled from the stage's success to now.
    pub bake_requests: Option<Result<f64, String>>,
    /// When the upstream pipeline (or stage) last failed, if no success has followed that failure.
    pub upstream_unrestored_failure_at: Option<Result<Option<DateTime<Utc>>, String>>,
    /// The latest approval decision recorded for this execution and gate.
    pub approval: Option<Result<Option<ApprovalFact>, String>>,
    /// Other executions deploying to the same environment (and wave).
    pub deployments_in_progress: Option<Result<Vec<String>, String>>,
}

impl Facts {
    /// Facts with nothing gathered yet (no alarms, every optional fact `None`).
    pub fn new(now: DateTime<Utc>, first_evaluated_at: DateTime<Utc>) -> Facts {
        Facts {
            now,
            first_evaluated_at,
            alarms: Ok(Vec::new()),
            bake_stage_succeeded_at: None,
            bake_requests: None,
            upstream_unrestored_failure_at: None,
            approval: None,
            deployments_in_progress: None,
        }
    }
}

/// A CloudWatch alarm's current state and when it entered it (`StateUpdatedTimestamp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmFact {
    pub name: String,
    pub state: AlarmState,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    /// Counted as "not in ALARM", as CloudWatch's own composite alarms do.
    InsufficientData,
}

impl AlarmState {
    /// CloudWatch's `StateValue` text.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl std::str::FromStr for AlarmState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "OK" => Ok(AlarmState::Ok),
            "ALARM" => Ok(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Ok(AlarmState::InsufficientData),
            other => Err(format!("unknown alarm state {other:?}")),
        }
    }
}

/// A recorded approval or rejection. The principal comes from the authenticated caller, never from a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalFact {
    pub principal_arn: String,
    /// The groups the principal belongs to.
    pub groups: Vec<String>,
    pub decision: ApprovalDecision,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    Approve,
    Reject,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Pass,
    /// Not yet: evaluate again at `recheck_at` (never later than when the gate gives up).
    Wait {
        recheck_at: DateTime<Utc>,
    },
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Window,
    Freeze,
    Alarms,
    Bake,
    Upstream,
    Approval,
    Concurrency,
    MaxWait,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Window => "window",
            CheckKind::Freeze => "freeze",
            CheckKind::Alarms => "alarms",
            CheckKind::Bake => "bake",
            CheckKind::Upstream => "upstream",
            CheckKind::Approval => "approval",
            CheckKind::Concurrency => "concurrency",
            CheckKind::MaxWait => "max_wait",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Wait,
    Fail,
    /// Could not be evaluated; blocks under `fail_closed`, is ignored under `fail_open` (the message says which).
    Error,
}

/// How one check stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: CheckKind,
    pub status: CheckStatus,
    pub observed: String,
    pub required: String,
    /// When the check would pass if nothing else changes (waiting checks), when known.
    pub earliest_pass: Option<DateTime<Utc>>,
    /// One line for an engineer: "bake time 1h12m of 2h; earliest 15:40 Europe/Berlin".
    pub message: String,
}

/// The outcome and every check's explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub checks: Vec<CheckResult>,
    /// One line: what the gate decided and why (the failure message of a failed job).
    pub summary: String,
}

impl Decision {
    /// One line per check, with ✓ (pass), … (wait), ✗ (fail) or ! (could not be evaluated), under a line with the
    /// outcome. For `tollgate gate explain` and chat.
    pub fn explain(&self) -> String {
        let word = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Wait { .. } => "WAIT",
            Outcome::Fail => "FAIL",
        };
        let mut out = format!("{word}: {}\n", self.summary);
        for c in &self.checks {
            let symbol = match c.status {
                CheckStatus::Pass => "✓",
                CheckStatus::Wait => "…",
                CheckStatus::Fail => "✗",
                CheckStatus::Error => "!",
            };
            let _ = writeln!(out, "  {symbol} {:<12} {}", c.check.as_str(), c.message);
        }
        out
    }

    /// The result of one check, if the policy has it.
    pub fn check(&self, kind: CheckKind) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == kind)
    }
}

/// A check's result with what the outcome needs to know about it.
pub(super) struct Eval {
    pub(super) result: CheckResult,
    pub(super) on_error: OnError,
    /// `earliest_pass` is a lower bound: the check cannot pass before it, whatever happens.
    pub(super) certain: bool,
}

pub(super) struct Ctx<'a> {
    pub(super) policy: &'a Policy,
    pub(super) tz: Tz,
    pub(super) now: DateTime<Utc>,
}

/// When a check would be rechecked if it cannot say when it will pass.
pub(super) const DEFAULT_RECHECK: TimeDelta = TimeDelta::minutes(1);

/// Evaluates every check of `policy` against `facts`.
pub fn evaluate(policy: &Policy, facts: &Facts) -> Decision {
    let ctx = Ctx {
        policy,
        tz: policy.zone(),
        now: facts.now,
    };
    let mut evals: Vec<Eval> = Vec::new();
    if let Some(windows) = &policy.windows {
        evals.push(window_check(&ctx, windows));
    }
    if let Some(freezes) = &policy.freezes {
        evals.push(freeze_check(&ctx, freezes));
    }
    if let Some(alarms) = &policy.alarms {
        evals.push(alarms_check(&ctx, alarms, &facts.alarms));
    }
    if let Some(bake) = &policy.bake {
        evals.push(bake_check(&ctx, bake, facts));
    }
    if let Some(upstream) = &policy.upstream {
        evals.push(upstream_check(&ctx, upstream, &facts.upstream_unrestored_failure_at));
    }
    if let Some(approval) = &policy.approval {
        evals.push(approval_check(&ctx, approval, &facts.approval));
    }
    if let Some(concurrency) = &policy.concurrency {
        evals.push(concurrency_check(&ctx, concurrency, &facts.deployments_in_progress));
    }

    let max_wait = policy.max_wait;
    let deadline = facts.first_evaluated_at + max_wait.to_chrono();
    let waited = (facts.now - facts.first_evaluated_at).max(TimeDelta::zero());

    // A wait that cannot end before the gate gives up is a failure now, not in `max_wait`.
    for e in &mut evals {
        let r = &mut e.result;
        if r.status == CheckStatus::Wait && e.certain && r.earliest_pass.is_some_and(|t| t > deadline) {
            r.status = CheckStatus::Fail;
            let _ = write!(
                r.message,
                "; that is after the gate gives up at {} (max_wait {max_wait})",
                ctx.at(deadline)
            );
        }
    }

    let waiting: Vec<&Eval> = evals.iter().filter(|e| e.result.status == CheckStatus::Wait).collect();
    let timed_out = !waiting.is_empty() && waited >= max_wait.to_chrono();
    let waited_text = elapsed(waited);
    let max_wait_result = if timed_out {
        CheckResult {
            check: CheckKind::MaxWait,
            status: CheckStatus::Fail,
            observed: format!("waited {waited_text} since {}", ctx.at(facts.first_evaluated_at)),
            required: format!("at most {max_wait}"),
            earliest_pass: None,
            message: format!(
                "gave up after waiting {waited_text} (max_wait {max_wait}); still waiting for {}",
                list_with_messages(&waiting)
            ),
        }
    } else {
        CheckResult {
            check: CheckKind::MaxWait,
            status: CheckStatus::Pass,
            observed: format!("waited {waited_text}"),
            required: format!("at most {max_wait}"),
            earliest_pass: None,
            message: format!("waited {waited_text} of {max_wait}; gives up at {}", ctx.at(deadline)),
        }
    };

    let blocking: Vec<&Eval> = evals
        .iter()
        .filter(|e| match e.result.status {
            CheckStatus::Fail => true,
            CheckStatus::Error => e.on_error == OnError::FailClosed,
            _ => false,
        })
        .collect();
    let ignored: Vec<&Eval> = evals
        .iter()
        .filter(|e| e.result.status == CheckStatus::Error && e.on_error == OnError::FailOpen)
        .collect();

    let (outcome, summary) = if !blocking.is_empty() || timed_out {
        let mut summary = String::from("failed: ");
        let mut parts = Vec::new();
        if !blocking.is_empty() {
            parts.push(list_with_messages(&blocking));
        }
        if timed_out {
            parts.push(format!("max_wait ({})", max_wait_result.message));
        } else if !waiting.is_empty() {
            parts.push(format!("also waiting for {}", list_kinds(&waiting)));
        }
        summary.push_str(&parts.join("; "));
        (Outcome::Fail, summary)
    } else if !waiting.is_empty() {
        let recheck_at = waiting
            .iter()
            .map(|e| e.result.earliest_pass.unwrap_or(ctx.now + DEFAULT_RECHECK))
            .min()
            .unwrap_or(ctx.now + DEFAULT_RECHECK)
            .min(deadline);
        let summary = format!(
            "waiting for {}; recheck at {}",
            list_with_messages(&waiting),
            ctx.at(recheck_at)
        );
        (Outcome::Wait { recheck_at }, summary)
    } else {
        let total = evals.len() + 1;
        let summary = if ignored.is_empty() {
            format!("passed: all {total} checks pass")
        } else {
            format!(
                "passed: {} of {total} checks pass; {} could not be evaluated and {} ignored (on_error: fail_open)",
                total - ignored.len(),
                list_kinds(&ignored),
                if ignored.len() == 1 { "is" } else { "are" }
            )
        };
        (Outcome::Pass, summary)
    };

    let mut checks: Vec<CheckResult> = evals.into_iter().map(|e| e.result).collect();
    checks.push(max_wait_result);
    Decision {
        outcome,
        checks,
        summary,
    }
}

pub(super) fn list_kinds(evals: &[&Eval]) -> String {
    join_and(evals.iter().map(|e| e.result.check.as_str().to_string()).collect())
}

pub(super) fn list_with_messages(evals: &[&Eval]) -> String {
    join_and(
        evals
            .iter()
            .map(|e| format!("{} ({})", e.result.check.as_str(), e.result.message))
            .collect(),
    )
}

pub(super) fn join_and(mut items: Vec<String>) -> String {
    match items.len() {
        0 => String::new(),
        1 => items.remove(0),
        _ => {
            let last = items.pop().unwrap_or_default();
            format!("{} and {last}", items.join(", "))
        }
    }
}

// -------------------------------------------------------------------------------------------------------------------
// Formatting.

/// An elapsed time the way the policy writes durations, to the minute once it is a minute or more: `1h12m`, `45s`.
pub(super) fn elapsed(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    if secs >= 60 {
        compact_secs(secs - secs % 60)
    } else {
        format!("{secs}s")
    }
}

pub(super) fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n:.2}")
    }
}

impl Ctx<'_> {
    /// `15:40 Europe/Berlin` today, `Mon 09:00 Europe/Berlin` within a week, else with the date. A wall time that
    /// happens twice (the autumn hour) also shows its abbreviation.
    pub(super) fn at(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.tz);
        let days = (local.date_naive() - self.now.with_timezone(&self.tz).date_naive()).num_days();
        let format = match days {
            0 => "%H:%M",
            -6..=6 => "%a %H:%M",
            _ => "%Y-%m-%d %H:%M",
        };
        self.stamp(t, format)
    }

    /// Like [`Ctx::at`], rounded up to the minute: an "earliest" time is never shown before it is true.
    pub(super) fn at_ceil(&self, t: DateTime<Utc>) -> String {
        let secs = t.timestamp().rem_euclid(60);
        let nanos = t.timestamp_subsec_nanos();
        if secs == 0 && nanos == 0 {
            return self.at(t);
        }
        let up = t + TimeDelta::seconds(60 - secs) - TimeDelta::nanoseconds(i64::from(nanos));
        self.at(up)
    }

    /// Always with the date: `2027-01-04 23:59 Europe/Berlin`.
    pub(super) fn at_full(&self, t: DateTime<Utc>) -> String {
        self.stamp(t, "%Y-%m-%d %H:%M")
    }

    pub(super) fn stamp(&self, t: DateTime<Utc>, format: &str) -> String {
        let local = t.with_timezone(&self.tz);
        let mut out = format!("{} {}", local.format(format), self.tz.name());
        if is_ambiguous(self.tz, t) {
            if let Some(abbreviation) = local.offset().abbreviation() {
                let _ = write!(out, " ({abbreviation})");
            }
        }
        out
    }

    pub(super) fn eval(
        &self,
        check: CheckKind,
        status: CheckStatus,
        observed: String,
        required: String,
        message: String,
    ) -> Eval {
        Eval {
            result: CheckResult {
                check,
                status,
                observed,
                required,
                earliest_pass: None,
                message,
            },
            on_error: self.policy.on_error,
            certain: false,
        }
    }

    /// A check that could not be evaluated, resolved by its `on_error`.
    pub(super) fn error(&self, check: CheckKind, on_error: OnError, required: String, why: String) -> Eval {
        let message = match on_error {
            OnError::FailClosed => format!("could not evaluate: {why}; failing closed (on_error: fail_closed)"),
            OnError::FailOpen => format!("could not evaluate: {why}; ignored (on_error: fail_open)"),
        };
        let mut e = self.eval(check, CheckStatus::Error, "unknown".into(), required, message);
        e.on_error = on_error;
        e
    }

    /// A fact the policy needs was not gathered: a bug in the gate, which never opens it.
    pub(super) fn not_gathered(&self, check: CheckKind, required: String, fact: &str) -> Eval {
        let mut e = self.eval(
            check,
            CheckStatus::Error,
            "unknown".into(),
            required,
            format!(
                "could not evaluate: the gate did not gather {fact} (a bug); failing closed whatever on_error says"
            ),
        );
        e.on_error = OnError::FailClosed;
        e
    }
}
